//! Job names from paths, and which file names are never job files
//! (spec §1.1; libnih's `nih_file_ignore`).

/// The job name for a path relative to its conf dir: the path without its
/// `.conf` suffix (`net/apache.conf` → `net/apache`). `None` for paths that
/// do not name a job file (no `.conf` suffix, an empty name, or an ignored
/// component).
pub fn job_name(relative_path: &str) -> Option<String> {
    let stem = relative_path.strip_suffix(".conf")?;
    if stem.is_empty() || stem.ends_with('/') || stem.starts_with('/') {
        return None;
    }
    if relative_path
        .split('/')
        .any(|part| part.is_empty() || is_ignored(part))
    {
        return None;
    }
    Some(stem.to_string())
}

/// The job name for a path relative to its conf dir if it is an override
/// file (`net/apache.override` → `net/apache`).
pub fn override_job_name(relative_path: &str) -> Option<String> {
    let stem = relative_path.strip_suffix(".override")?;
    job_name(&format!("{stem}.conf"))
}

/// True for names a conf dir scan skips, exactly libnih's `nih_file_ignore`:
/// hidden (`.*`); backups (`*~`, `*.bak`, `*.BAK`, `#*#`); editor swap files
/// (`*.swp`, `*.swo`, `*.swn`, `.#*`); revision control (`*,v`, `RCS`,
/// `CVS`, `CVS.adm`, `SCCS`, `.bzr`, `.bzr.log`, `.hg`, `.git`, `.svn`,
/// `BitKeeper`, `.arch-ids`, `.arch-inventory`, `{arch}`, `_darcs`); and
/// packaging leftovers (a last extension starting `.dpkg-`, or exactly
/// `.rpmsave`, `.rpmorig`, `.rpmnew`, or `;` and eight hex digits at the end).
pub fn is_ignored(name: &str) -> bool {
    const SUFFIXES: &[&str] = &["~", ".bak", ".BAK", ".swp", ".swo", ".swn", ",v"];
    const RCS: &[&str] = &[
        "RCS",
        "CVS",
        "CVS.adm",
        "SCCS",
        ".bzr",
        ".bzr.log",
        ".hg",
        ".git",
        ".svn",
        "BitKeeper",
        ".arch-ids",
        ".arch-inventory",
        "{arch}",
        "_darcs",
    ];
    if name.starts_with('.') || RCS.contains(&name) || SUFFIXES.iter().any(|s| name.ends_with(s)) {
        return true;
    }
    if name.len() >= 2 && name.starts_with('#') && name.ends_with('#') {
        return true;
    }
    if let Some(dot) = name.rfind('.') {
        let ext = &name[dot..];
        if ext.starts_with(".dpkg-") || matches!(ext, ".rpmsave" | ".rpmorig" | ".rpmnew") {
            return true;
        }
    }
    matches!(name.rsplit_once(';'), Some((_, tail)) if tail.len() == 8 && tail.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_names_come_from_paths_without_the_conf_suffix() {
        assert_eq!(job_name("foo.conf").as_deref(), Some("foo"));
        assert_eq!(job_name("net/apache.conf").as_deref(), Some("net/apache"));
        assert_eq!(job_name("foo.override"), None);
        assert_eq!(job_name("foo"), None);
        assert_eq!(job_name(".conf"), None);
        assert_eq!(job_name(".hidden.conf"), None);
        assert_eq!(job_name("CVS/foo.conf"), None);
        assert_eq!(
            override_job_name("net/apache.override").as_deref(),
            Some("net/apache")
        );
    }

    #[test]
    fn backup_editor_and_package_files_are_ignored() {
        for name in [
            ".foo.conf",
            "foo.conf~",
            "foo.conf.bak",
            "foo.conf.BAK",
            "#foo.conf#",
            ".foo.conf.swp",
            "foo.conf.swp",
            "foo.conf.dpkg-old",
            "foo.conf.dpkg-new",
            "foo.conf.dpkg-dist",
            "foo.conf.rpmsave",
            "foo.conf.rpmorig",
            "foo.conf.rpmnew",
            "foo.conf;4f3a9b01",
            "foo.conf,v",
            ".#foo.conf",
            "CVS",
            "CVS.adm",
            "RCS",
            "BitKeeper",
            "{arch}",
            "_darcs",
        ] {
            assert!(is_ignored(name), "{name} should be ignored");
        }
        for name in [
            "foo.conf",
            "foo.override",
            "net",
            "foo;bar.conf",
            "#foo.conf",
            "foo.dpkg-old.conf",
            "foo.conf.tmp",
            "foo.rpmnewer",
        ] {
            assert!(!is_ignored(name), "{name} should not be ignored");
        }
    }
}

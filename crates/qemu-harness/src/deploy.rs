//! Action 1, deploy: the initramfs the VM boots.
//!
//! 1.1 builds the job's workspace binaries static, 1.2 fetches busybox
//! from its Debian package (cached by the package's checksum), 1.3 picks
//! the kernel modules the job names, with what they need, from the boot
//! kernel's package ([`crate::modules`]; cached by the package's checksum
//! and the names), 1.4 puts the archive together — directories, busybox
//! and a link per applet, the modules, the binaries, copied job files,
//! written files, links, device nodes, in that order, so a later entry
//! replaces an earlier one at the same path — and writes it unless the
//! cache already has an archive of the same entries.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use crate::cache::{self, Cache, KeyBuilder, Outcome};
use crate::cpio::{Archive, Node};
use crate::error::{Failure, Result};
use crate::job::{Busybox, Copy, Deploy};
use crate::level::{Level, Log};
use crate::{debian, exec, kernel, modules, static_build};

/// Where the lab keeps things and writes its logs.
pub struct Lab<'a> {
    pub workspace: &'a Path,
    pub cache: &'a Cache,
    pub log: &'a Log,
    /// This run's output directory.
    pub run_dir: &'a Path,
}

/// Builds (or finds) the initramfs; returns its path. `kernel_package` is
/// the boot kernel's (meta)package, where the modules come from.
pub fn deploy(
    lab: &Lab,
    spec: &Deploy,
    kernel_package: &str,
    level: &Level,
    deadline: Instant,
) -> Result<PathBuf> {
    let l1 = level.child(1);

    let what: Vec<&str> = spec.binaries.iter().map(|b| b.bin.as_str()).collect();
    lab.log.line(
        &l1,
        "deploy/build",
        &format!(
            "cargo build {} ({} profile, static)",
            what.join(" "),
            spec.profile
        ),
    );
    let t = Instant::now();
    let build_log = lab.run_dir.join("build.log");
    let (triple, built, fallback) = step(
        &l1,
        "deploy/build",
        static_build::build(lab.workspace, spec, &build_log, lab.cache.root(), deadline),
    )?;
    if let Some(why) = fallback {
        lab.log.line(
            &l1,
            "deploy/build",
            &format!("the musl build failed, so glibc it is: {why}"),
        );
    }
    lab.log.line(
        &l1,
        "deploy/build",
        &format!("{} in {:.1} s", triple.name, t.elapsed().as_secs_f64()),
    );
    let built = if spec.strip {
        step(&l1, "deploy/build", strip(lab.run_dir, &built, deadline))?
    } else {
        built
    };

    let l2 = level.child(2);
    let (busybox, applets) = step(&l2, "deploy/busybox", busybox(lab, &spec.busybox, &l2, deadline))?;

    let l3 = level.child(3);
    let module_tree = if spec.modules.is_empty() {
        lab.log.line(&l3, "deploy/modules", "none");
        None
    } else {
        let r = kernel_modules(lab, &spec.modules, kernel_package, &l3, deadline);
        Some(step(&l3, "deploy/modules", r)?)
    };

    let l4 = level.child(4);
    let mut archive = Archive::new();
    let r = assemble(
        &mut archive,
        spec,
        &built,
        &busybox,
        &applets,
        module_tree.as_deref(),
    );
    step(&l4, "deploy/initramfs", r)?;
    let key = archive_key(&archive);
    let (path, outcome) = step(
        &l4,
        "deploy/initramfs",
        lab.cache
            .get_or_build("initramfs", &key, "initramfs.cpio", |dir| {
                let file = fs::File::create(dir.join("initramfs.cpio"))
                    .map_err(|e| Failure::infra(format!("creating the initramfs: {e}")))?;
                archive
                    .write_to(std::io::BufWriter::new(file))
                    .map_err(|e| Failure::infra(format!("writing the initramfs: {e}")))
            }),
    )?;
    let size = fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    lab.log.line(
        &l4,
        "deploy/initramfs",
        &format!(
            "{} entries, {:.1} MB, key {} ({})",
            archive.entries().count(),
            size as f64 / 1e6,
            &key[..12],
            if outcome == Outcome::Hit {
                "cached"
            } else {
                "written"
            }
        ),
    );
    Ok(path)
}

/// Stripped copies of `binaries` (in `run_dir/stripped/`).
fn strip(run_dir: &Path, binaries: &[PathBuf], deadline: Instant) -> Result<Vec<PathBuf>> {
    let dir = run_dir.join("stripped");
    fs::create_dir_all(&dir).map_err(|e| Failure::infra(format!("{}: {e}", dir.display())))?;
    let mut out = Vec::new();
    for (i, b) in binaries.iter().enumerate() {
        let copy = dir.join(format!(
            "{i}-{}",
            b.file_name().unwrap_or_default().to_string_lossy()
        ));
        exec::run_ok(
            Command::new("strip")
                .arg("--strip-all")
                .arg("-o")
                .arg(&copy)
                .arg(b),
            None,
            deadline,
        )?;
        out.push(copy);
    }
    Ok(out)
}

/// Names the sub-action a failure happened in.
fn step<T>(level: &Level, name: &str, r: Result<T>) -> Result<T> {
    r.map_err(|f| f.in_action(level, name))
}

/// The busybox binary (from the cache or its package) and its applets.
fn busybox(lab: &Lab, spec: &Busybox, level: &Level, deadline: Instant) -> Result<(PathBuf, Vec<String>)> {
    let package = debian::candidate(&spec.package, lab.cache, deadline)?;
    let mut key = KeyBuilder::new("busybox", 1);
    key.field("deb-sha256", package.sha256.as_bytes());
    let (path, outcome) = lab
        .cache
        .get_or_build("busybox", &key.finish(), "busybox", |dir| {
            let deb = debian::download(&package, dir, deadline)?;
            debian::extract(&deb, &["./bin/busybox"], dir, deadline)?;
            fs::rename(dir.join("bin/busybox"), dir.join("busybox"))
                .map_err(|e| Failure::infra(format!("{} has no bin/busybox: {e}", deb.display())))?;
            let _ = fs::remove_file(&deb);
            Ok(())
        })?;
    let out = exec::run_ok(Command::new(&path).arg("--list"), None, deadline)?;
    let applets: Vec<String> = out.stdout_text().lines().map(str::to_string).collect();
    lab.log.line(
        level,
        "deploy/busybox",
        &format!(
            "{} {}: {} applets ({})",
            package.name,
            package.version,
            applets.len(),
            if outcome == Outcome::Hit {
                "cached"
            } else {
                "downloaded"
            }
        ),
    );
    Ok((path, applets))
}

/// What 1.3 leaves in the cache: the `lib/modules/RELEASE` tree of the
/// chosen modules, and this list of them.
const MODULES_LIST: &str = "modules.txt";

/// The job's modules with what they need, from the cache or the kernel
/// package; returns the directory holding their `lib/` tree.
fn kernel_modules(
    lab: &Lab,
    wanted: &[String],
    kernel_package: &str,
    level: &Level,
    deadline: Instant,
) -> Result<PathBuf> {
    let package = kernel::package(lab.cache, kernel_package, deadline)?;
    let mut key = KeyBuilder::new("modules", 1);
    key.field("deb-sha256", package.sha256.as_bytes());
    for name in wanted {
        key.field("module", name.as_bytes());
    }
    let (list, outcome) = lab
        .cache
        .get_or_build("modules", &key.finish(), MODULES_LIST, |dir| {
            let deb = debian::download(&package, dir, deadline)?;
            let unpacked = dir.join("package");
            fs::create_dir_all(&unpacked)
                .map_err(|e| Failure::infra(format!("{}: {e}", unpacked.display())))?;
            debian::extract(&deb, &[], &unpacked, deadline)?;
            let _ = fs::remove_file(&deb);
            let r = pick_modules(&unpacked, wanted, dir);
            let _ = fs::remove_dir_all(&unpacked);
            r
        })?;
    let text = fs::read_to_string(&list).map_err(|e| Failure::infra(format!("{}: {e}", list.display())))?;
    let mut lines = text.lines();
    let release = lines.next().unwrap_or_default();
    let chosen: Vec<&str> = lines.collect();
    lab.log.line(
        level,
        "deploy/modules",
        &format!(
            "{} {} ({release}): {} for {} ({})",
            package.name,
            package.version,
            chosen.join(" "),
            wanted.join(" "),
            if outcome == Outcome::Hit {
                "cached"
            } else {
                "unpacked"
            }
        ),
    );
    Ok(list.parent().expect("a cache entry's directory").to_path_buf())
}

/// Copies the modules `wanted` needs from the unpacked kernel package to
/// `out/lib/modules/RELEASE/`, with their index files, and lists them in
/// `out/modules.txt` (the release first, then the modules in load order).
fn pick_modules(unpacked: &Path, wanted: &[String], out: &Path) -> Result<()> {
    let io = |p: &Path, e: std::io::Error| Failure::infra(format!("{}: {e}", p.display()));
    let (from, release) = modules::release_dir(unpacked)?;
    let index = modules::index_tree(&from)?;
    let chosen = index.resolve(wanted).map_err(Failure::job)?;
    let to = out.join("lib/modules").join(&release);
    for m in &chosen {
        let dest = to.join(&m.path);
        if let Some(parent) = dest.parent() {
            fs::create_dir_all(parent).map_err(|e| io(parent, e))?;
        }
        fs::copy(from.join(&m.path), &dest).map_err(|e| io(&dest, e))?;
    }
    fs::create_dir_all(&to).map_err(|e| io(&to, e))?;
    let [dep, alias, softdep] = index.index_files(&chosen);
    let builtin = fs::read_to_string(from.join("modules.builtin")).unwrap_or_default();
    for (name, text) in [
        ("modules.dep", dep),
        ("modules.alias", alias),
        ("modules.softdep", softdep),
        ("modules.builtin", builtin),
    ] {
        fs::write(to.join(name), text).map_err(|e| io(&to.join(name), e))?;
    }
    let mut list = release;
    for m in &chosen {
        list.push('\n');
        list.push_str(&m.name);
    }
    list.push('\n');
    fs::write(out.join(MODULES_LIST), list).map_err(|e| io(&out.join(MODULES_LIST), e))
}

/// Puts every entry of the deploy section into `archive`; `module_tree`
/// is the directory with the kernel modules' `lib/` tree, if any.
pub fn assemble(
    archive: &mut Archive,
    spec: &Deploy,
    built: &[PathBuf],
    busybox: &Path,
    applets: &[String],
    module_tree: Option<&Path>,
) -> Result<()> {
    let read = |p: &Path| fs::read(p).map_err(|e| Failure::infra(format!("{}: {e}", p.display())));
    for dir in &spec.dirs {
        archive.dir(dir, 0o755);
    }
    let bb_dir = spec.busybox.dir.trim_end_matches('/');
    archive.file(&format!("{bb_dir}/busybox"), read(busybox)?, 0o755);
    for applet in applets {
        if applet != "busybox" && !spec.busybox.skip.contains(applet) {
            archive.symlink(&format!("{bb_dir}/{applet}"), "busybox");
        }
    }
    if let Some(dir) = module_tree {
        add_copy(
            archive,
            &Copy {
                from: dir.join("lib"),
                to: "/lib".into(),
                mode: 0o644,
            },
        )?;
    }
    for (binary, path) in spec.binaries.iter().zip(built) {
        archive.file(&binary.path, read(path)?, 0o755);
    }
    for copy in &spec.copies {
        add_copy(archive, copy)?;
    }
    for w in &spec.writes {
        archive.file(&w.path, w.content.clone().into_bytes(), w.mode);
    }
    for l in &spec.links {
        archive.symlink(&l.path, &l.target);
    }
    for d in &spec.devices {
        archive.char_device(&d.path, d.major, d.minor, d.mode);
    }
    Ok(())
}

/// A file goes to `to`; a directory's files go under `to`, keeping their
/// relative paths (sorted, so the archive does not depend on the order
/// the file system lists them in).
fn add_copy(archive: &mut Archive, copy: &Copy) -> Result<()> {
    let io = |p: &Path, e: std::io::Error| Failure::infra(format!("{}: {e}", p.display()));
    if copy.from.is_file() {
        archive.file(
            &copy.to,
            fs::read(&copy.from).map_err(|e| io(&copy.from, e))?,
            copy.mode,
        );
        return Ok(());
    }
    let mut stack = vec![(copy.from.clone(), copy.to.trim_end_matches('/').to_string())];
    archive.dir(&copy.to, 0o755);
    while let Some((dir, to)) = stack.pop() {
        let mut entries: Vec<_> = fs::read_dir(&dir).map_err(|e| io(&dir, e))?.flatten().collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let name = e.file_name().to_string_lossy().into_owned();
            let path = e.path();
            let guest = format!("{to}/{name}");
            if path.is_dir() {
                archive.dir(&guest, 0o755);
                stack.push((path, guest));
            } else {
                archive.file(&guest, fs::read(&path).map_err(|e| io(&path, e))?, copy.mode);
            }
        }
    }
    Ok(())
}

/// The cache key of an archive: every entry's path, type, mode and
/// content.
pub fn archive_key(archive: &Archive) -> String {
    let mut key = KeyBuilder::new("initramfs", 1);
    for (path, entry) in archive.entries() {
        key.field("path", path.as_bytes());
        key.field("mode", &entry.mode.to_le_bytes());
        match &entry.node {
            Node::Dir => key.field("dir", b""),
            Node::File(data) => key.field("file-sha256", cache::sha256(data).as_bytes()),
            Node::Symlink(target) => key.field("symlink", target.as_bytes()),
            Node::CharDevice { major, minor } => key.field("chardev", format!("{major}:{minor}").as_bytes()),
        };
    }
    key.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_change_of_an_entry_changes_the_archive_key() {
        let base = || {
            let mut a = Archive::new();
            a.file("/sbin/init", b"binary".to_vec(), 0o755);
            a.symlink("/bin/sh", "busybox");
            a
        };
        let k = archive_key(&base());
        assert_eq!(k, archive_key(&base()));
        let mut content = base();
        content.file("/sbin/init", b"binary2".to_vec(), 0o755);
        let mut mode = base();
        mode.file("/sbin/init", b"binary".to_vec(), 0o700);
        let mut link = base();
        link.symlink("/bin/sh", "dash");
        let mut more = base();
        more.dir("/run", 0o755);
        for (what, a) in [
            ("content", content),
            ("mode", mode),
            ("link", link),
            ("entry", more),
        ] {
            assert_ne!(archive_key(&a), k, "{what}");
        }
    }

    #[test]
    fn a_copied_directory_keeps_its_layout() {
        let src = std::env::temp_dir().join(format!("qemu-harness-copy-{}", std::process::id()));
        let _ = fs::remove_dir_all(&src);
        fs::create_dir_all(src.join("sub")).unwrap();
        fs::write(src.join("a.conf"), "a").unwrap();
        fs::write(src.join("sub/b.conf"), "b").unwrap();
        let mut archive = Archive::new();
        add_copy(
            &mut archive,
            &Copy {
                from: src.clone(),
                to: "/etc/init/".into(),
                mode: 0o644,
            },
        )
        .unwrap();
        let paths: Vec<&str> = archive.entries().map(|(p, _)| p).collect();
        assert_eq!(
            paths,
            [
                "etc",
                "etc/init",
                "etc/init/a.conf",
                "etc/init/sub",
                "etc/init/sub/b.conf"
            ]
        );
        assert_eq!(archive.get("/etc/init/a.conf").unwrap().mode, 0o644);
        fs::remove_dir_all(src).unwrap();
    }
}

//! Session-init duties (spec §5): the XDG directories, the private address,
//! and the session file that tells `initctl` where to find us.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// The private peer-to-peer address of a session init.
pub fn address(uid: u32, pid: u32) -> String {
    format!("unix:abstract=/com/ubuntu/upstart-session/{uid}/{pid}")
}

/// `$XDG_CACHE_HOME/upstart` (default `~/.cache/upstart`): job logs.
pub fn log_dir(env: &dyn Fn(&str) -> Option<String>) -> PathBuf {
    match env("XDG_CACHE_HOME").filter(|v| v.starts_with('/')) {
        Some(dir) => Path::new(&dir).join("upstart"),
        None => home(env).join(".cache/upstart"),
    }
}

/// `$HOME`, or `/` when unset.
pub fn home(env: &dyn Fn(&str) -> Option<String>) -> PathBuf {
    PathBuf::from(env("HOME").unwrap_or_else(|| "/".into()))
}

/// `$XDG_RUNTIME_DIR/upstart/sessions/PID.session`, when the runtime dir
/// is known.
pub fn session_file(env: &dyn Fn(&str) -> Option<String>, pid: u32) -> Option<PathBuf> {
    let dir = env("XDG_RUNTIME_DIR").filter(|v| v.starts_with('/'))?;
    Some(
        Path::new(&dir)
            .join("upstart/sessions")
            .join(format!("{pid}.session")),
    )
}

/// Writes the session file in place (`UPSTART_SESSION=ADDRESS` and a
/// newline), creating its directory (0700).
pub fn write_session_file(path: &Path, address: &str) -> io::Result<()> {
    if let Some(dir) = path.parent() {
        fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    }
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    writeln!(f, "UPSTART_SESSION={address}")?;
    f.sync_data()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn xdg_paths_with_and_without_the_variables() {
        let e = env(&[("HOME", "/home/u")]);
        assert_eq!(log_dir(&e), Path::new("/home/u/.cache/upstart"));
        assert_eq!(session_file(&e, 42), None);
        let e = env(&[
            ("HOME", "/home/u"),
            ("XDG_CACHE_HOME", "/c"),
            ("XDG_RUNTIME_DIR", "/run/user/1000"),
        ]);
        assert_eq!(log_dir(&e), Path::new("/c/upstart"));
        assert_eq!(
            session_file(&e, 42).unwrap(),
            Path::new("/run/user/1000/upstart/sessions/42.session")
        );
        assert_eq!(
            address(1000, 42),
            "unix:abstract=/com/ubuntu/upstart-session/1000/42"
        );
    }

    #[test]
    fn session_file_holds_the_address() {
        let dir = std::env::temp_dir().join(format!("upshot-session-{}", std::process::id()));
        let path = dir.join("upstart/sessions/7.session");
        write_session_file(&path, "unix:abstract=/x").unwrap();
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            "UPSTART_SESSION=unix:abstract=/x\n"
        );
        fs::remove_dir_all(dir).unwrap();
    }
}

//! `list-sessions`: the session inits of this user, found through the
//! files they write (`$XDG_RUNTIME_DIR/upstart/sessions/PID.session`,
//! holding `UPSTART_SESSION=ADDRESS`).

use std::fs;
use std::path::{Path, PathBuf};

/// The directory of session files, if `XDG_RUNTIME_DIR` is an absolute
/// path.
pub fn session_dir(xdg_runtime_dir: Option<&str>) -> Option<PathBuf> {
    let dir = xdg_runtime_dir.filter(|d| d.starts_with('/'))?;
    Some(Path::new(dir).join("upstart/sessions"))
}

/// What a scan found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Scan {
    /// `(pid, address)` of each live session, by pid.
    pub sessions: Vec<(i32, String)>,
    /// Pids whose session file outlived them.
    pub stale: Vec<i32>,
}

/// Reads every `PID.session` file in `dir`; `alive` tells whether a pid
/// still runs.
pub fn scan(dir: &Path, alive: impl Fn(i32) -> bool) -> std::io::Result<Scan> {
    let mut found = Scan::default();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(".session")) else {
            continue;
        };
        if stem.is_empty() || !stem.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(pid) = stem.parse::<i32>() else { continue };
        let Ok(contents) = fs::read_to_string(entry.path()) else {
            continue;
        };
        let Some(address) = contents.lines().find_map(|l| l.strip_prefix("UPSTART_SESSION=")) else {
            continue;
        };
        if alive(pid) {
            found.sessions.push((pid, address.to_string()));
        } else {
            found.stale.push(pid);
        }
    }
    found.sessions.sort();
    found.stale.sort();
    Ok(found)
}

/// Whether process `pid` exists (signal 0 reaches it, or would but for
/// permissions).
pub fn pid_alive(pid: i32) -> bool {
    if pid <= 0 {
        return false;
    }
    // SAFETY: kill with signal 0 only checks for existence.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_dir_needs_an_absolute_runtime_dir() {
        assert_eq!(
            session_dir(Some("/run/user/1000")),
            Some(PathBuf::from("/run/user/1000/upstart/sessions"))
        );
        assert_eq!(session_dir(Some("run")), None);
        assert_eq!(session_dir(None), None);
    }

    #[test]
    fn scan_keeps_live_sessions_with_all_digit_names() {
        let dir = std::env::temp_dir().join(format!("initctl-sessions-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let write = |name: &str, text: &str| fs::write(dir.join(name), text).unwrap();
        write(
            "200.session",
            "UPSTART_SESSION=unix:abstract=/com/ubuntu/upstart-session/1000/200\n",
        );
        write("100.session", "UPSTART_SESSION=unix:abstract=/b\n");
        write("300.session", "UPSTART_SESSION=unix:abstract=/c\n");
        write("x1.session", "UPSTART_SESSION=unix:abstract=/d\n");
        write("400.session.tmp", "UPSTART_SESSION=unix:abstract=/e\n");
        write("500.session", "nothing here\n");
        let found = scan(&dir, |pid| pid != 300).unwrap();
        assert_eq!(
            found.sessions,
            [
                (100, "unix:abstract=/b".to_string()),
                (
                    200,
                    "unix:abstract=/com/ubuntu/upstart-session/1000/200".to_string()
                )
            ]
        );
        assert_eq!(found.stale, [300]);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn pid_alive_sees_this_process() {
        assert!(pid_alive(std::process::id() as i32));
        assert!(!pid_alive(0));
        assert!(!pid_alive(-1));
    }
}

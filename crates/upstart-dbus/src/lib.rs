//! Upstart's D-Bus contract, shared by the daemon and `initctl` (spec §3):
//! the well-known name, interfaces, object paths with their escaping, the
//! error names and the private-socket addresses.

/// The well-known bus name.
pub const BUS_NAME: &str = "com.ubuntu.Upstart";
/// The manager interface.
pub const MANAGER_INTERFACE: &str = "com.ubuntu.Upstart0_6";
/// The job interface.
pub const JOB_INTERFACE: &str = "com.ubuntu.Upstart0_6.Job";
/// The instance interface.
pub const INSTANCE_INTERFACE: &str = "com.ubuntu.Upstart0_6.Instance";
/// The manager object.
pub const MANAGER_PATH: &str = "/com/ubuntu/Upstart";
/// The parent of every job object.
pub const JOBS_PATH: &str = "/com/ubuntu/Upstart/jobs";
/// upshot's own interface on the manager object, beside Upstart's:
/// `Shutdown(s how)` with `how` one of `poweroff`, `reboot`, `halt`.
pub const UPSHOT_INTERFACE: &str = "io.upshot.Init1";
/// PID 1's private peer-to-peer address.
pub const SYSTEM_ADDRESS: &str = "unix:abstract=/com/ubuntu/upstart";
/// The prefix of every Upstart error name.
pub const ERROR_PREFIX: &str = "com.ubuntu.Upstart0_6.Error.";
/// Argument errors.
pub const INVALID_ARGS: &str = "org.freedesktop.DBus.Error.InvalidArgs";

/// A session init's private peer-to-peer address.
pub fn session_address(uid: u32, pid: u32) -> String {
    format!("unix:abstract=/com/ubuntu/upstart-session/{uid}/{pid}")
}

/// Escapes one path element: ASCII letters and digits are kept, every
/// other byte becomes `_` and two lower-case hex digits (so a UTF-8
/// character gives one `_XX` per byte); the empty string is `_`.
pub fn escape(s: &str) -> String {
    if s.is_empty() {
        return "_".to_string();
    }
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() {
            out.push(b as char);
        } else {
            out.push('_');
            out.push(char::from_digit(u32::from(b >> 4), 16).unwrap_or('0'));
            out.push(char::from_digit(u32::from(b & 15), 16).unwrap_or('0'));
        }
    }
    out
}

/// Reverses [`escape`]; `None` if `s` is not an escaped element (or does
/// not decode to UTF-8).
pub fn unescape(s: &str) -> Option<String> {
    if s == "_" {
        return Some(String::new());
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b.is_ascii_alphanumeric() {
            out.push(b);
            i += 1;
        } else if b == b'_' && i + 2 < bytes.len() {
            let hex = |c: u8| (c as char).to_digit(16).filter(|_| !c.is_ascii_uppercase());
            let (hi, lo) = (hex(bytes[i + 1])?, hex(bytes[i + 2])?);
            out.push((hi * 16 + lo) as u8);
            i += 3;
        } else {
            return None;
        }
    }
    String::from_utf8(out).ok()
}

/// The object path of a job.
pub fn job_path(job: &str) -> String {
    format!("{JOBS_PATH}/{}", escape(job))
}

/// The object path of an instance (`instance` empty for a single-instance
/// job).
pub fn instance_path(job: &str, instance: &str) -> String {
    format!("{JOBS_PATH}/{}/{}", escape(job), escape(instance))
}

/// What an object path under [`JOBS_PATH`] names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Object {
    Manager,
    Job(String),
    Instance(String, String),
}

/// Parses an object path this API serves; `None` for any other path.
pub fn parse_path(path: &str) -> Option<Object> {
    if path == MANAGER_PATH {
        return Some(Object::Manager);
    }
    let rest = path.strip_prefix(JOBS_PATH)?.strip_prefix('/')?;
    let mut parts = rest.split('/');
    let job = unescape(parts.next()?)?;
    let object = match parts.next() {
        None => Object::Job(job),
        Some(inst) => Object::Instance(job, unescape(inst)?),
    };
    if parts.next().is_some() {
        return None;
    }
    Some(object)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_as_upstart_does_for_ascii() {
        assert_eq!(escape("net/apache"), "net_2fapache");
        assert_eq!(escape("foo-bar"), "foo_2dbar");
        assert_eq!(escape("a_b"), "a_5fb");
        assert_eq!(escape(""), "_");
        assert_eq!(escape("tty1"), "tty1");
    }

    #[test]
    fn escapes_utf8_byte_by_byte() {
        assert_eq!(escape("é"), "_c3_a9");
        assert_eq!(unescape("_c3_a9").as_deref(), Some("é"));
    }

    #[test]
    fn unescape_reverses_escape() {
        for s in ["", "a", "net/apache", "a_b", "x y z", "ü-ß/€", "_", "__"] {
            assert_eq!(unescape(&escape(s)).as_deref(), Some(s), "{s:?}");
        }
        assert_eq!(unescape("a_2"), None);
        assert_eq!(unescape("a_2F"), None);
        assert_eq!(unescape("a-b"), None);
        assert_eq!(unescape("_ff"), None);
    }

    #[test]
    fn paths() {
        assert_eq!(job_path("net/apache"), "/com/ubuntu/Upstart/jobs/net_2fapache");
        assert_eq!(instance_path("tty", ""), "/com/ubuntu/Upstart/jobs/tty/_");
        assert_eq!(instance_path("tty", "tty1"), "/com/ubuntu/Upstart/jobs/tty/tty1");
        assert_eq!(parse_path("/com/ubuntu/Upstart"), Some(Object::Manager));
        assert_eq!(
            parse_path("/com/ubuntu/Upstart/jobs/foo_2dbar"),
            Some(Object::Job("foo-bar".into()))
        );
        assert_eq!(
            parse_path("/com/ubuntu/Upstart/jobs/tty/_"),
            Some(Object::Instance("tty".into(), String::new()))
        );
        assert_eq!(parse_path("/com/ubuntu/Upstart/jobs"), None);
        assert_eq!(parse_path("/com/ubuntu/Upstart/jobs/a/b/c"), None);
        assert_eq!(parse_path("/org/x"), None);
    }
}

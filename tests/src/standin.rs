//! What the stand-in programs (`src/bin/*.rs`) share: flag parsing, atomic
//! writes, sleeping forever. Std and libc only.

use std::path::Path;
use std::str::FromStr;

/// `--flag VALUE` and `--flag` arguments.
pub struct Args(Vec<String>);

impl Args {
    pub fn parse() -> Args {
        Args(std::env::args().skip(1).collect())
    }

    /// Whether `--flag` is present.
    pub fn flag(&self, flag: &str) -> bool {
        self.0.iter().any(|a| a == flag)
    }

    /// The value after `--flag`.
    pub fn value(&self, flag: &str) -> Option<String> {
        let i = self.0.iter().position(|a| a == flag)?;
        self.0.get(i + 1).cloned()
    }

    /// The value after `--flag`; exits with status 2 if it is missing.
    pub fn req(&self, flag: &str) -> String {
        self.value(flag).unwrap_or_else(|| {
            eprintln!("{}: missing {flag} VALUE", program());
            std::process::exit(2)
        })
    }

    /// A number after `--flag`, or `default`; exits with status 2 if it
    /// does not parse.
    pub fn num<T: FromStr>(&self, flag: &str, default: T) -> T {
        match self.value(flag) {
            None => default,
            Some(v) => v.parse().unwrap_or_else(|_| {
                eprintln!("{}: {flag}: not a number: {v}", program());
                std::process::exit(2)
            }),
        }
    }
}

fn program() -> String {
    std::env::args().next().unwrap_or_default()
}

/// Writes `text` to a temporary file beside `path`, then renames it into
/// place: whoever sees `path` sees all of it.
pub fn write_atomic(path: impl AsRef<Path>, text: &str) {
    let path = path.as_ref();
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".tmp-{}", std::process::id()));
    std::fs::write(&tmp, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    std::fs::rename(&tmp, path).unwrap_or_else(|e| panic!("rename to {}: {e}", path.display()));
}

/// Sleeps until a signal ends the process.
pub fn sleep_forever() -> ! {
    loop {
        // SAFETY: pause has no arguments; it returns after a caught signal.
        unsafe { libc::pause() };
    }
}

/// Blocks `signals` (call before starting threads, so they inherit the
/// mask) and returns the set for [`next_signal`].
pub fn block_signals(signals: &[i32]) -> libc::sigset_t {
    // SAFETY: a zeroed sigset_t is valid storage for sigemptyset; the
    // calls only write to it and to the thread's signal mask.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for &s in signals {
            libc::sigaddset(&mut set, s);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}

/// Waits at most `ms` milliseconds for one of the blocked `set`; the
/// signal, or `None` on time-out.
pub fn next_signal(set: &libc::sigset_t, ms: u64) -> Option<i32> {
    let ts = libc::timespec {
        tv_sec: (ms / 1000) as libc::time_t,
        tv_nsec: ((ms % 1000) * 1_000_000) as libc::c_long,
    };
    // SAFETY: valid pointers to a sigset and a timespec; no siginfo wanted.
    let sig = unsafe { libc::sigtimedwait(set, std::ptr::null_mut(), &ts) };
    (sig > 0).then_some(sig)
}

/// `uid U`, `euid U`, `gid G`, `egid G`, `groups G,G` lines of the calling
/// process.
pub fn credentials_line() -> String {
    // SAFETY: plain system calls without memory arguments.
    let (uid, euid, gid, egid) =
        unsafe { (libc::getuid(), libc::geteuid(), libc::getgid(), libc::getegid()) };
    let groups: Vec<String> = nix::unistd::getgroups()
        .unwrap_or_default()
        .iter()
        .map(|g| g.as_raw().to_string())
        .collect();
    format!(
        "uid {uid}\neuid {euid}\ngid {gid}\negid {egid}\ngroups {}\n",
        groups.join(",")
    )
}

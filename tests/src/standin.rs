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

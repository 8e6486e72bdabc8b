//! Level numbers of actions (`1`, `1.1`, `1.2`, `2`, …) and the log lines
//! that carry them.
//!
//! Every line the harness prints about its work goes through a [`Log`]: it
//! starts with the time since the run began and the level of the action,
//! so a reader can find where a run spent its time and which action a
//! failure belongs to. The same lines go to `harness.log` in the run's
//! output directory.

use std::fmt;
use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;
use std::time::Instant;

/// A position in the action tree: `[2, 3]` is `2.3`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Level(Vec<u32>);

impl Level {
    /// A top-level action: `1`, `2`, …
    pub fn root(n: u32) -> Level {
        Level(vec![n])
    }

    /// The `n`th sub-action of this one.
    pub fn child(&self, n: u32) -> Level {
        let mut v = self.0.clone();
        v.push(n);
        Level(v)
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, n) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(".")?;
            }
            write!(f, "{n}")?;
        }
        Ok(())
    }
}

/// Where the log lines go: stderr, and a file once the run has one.
pub struct Log {
    start: Instant,
    file: Mutex<Option<File>>,
    quiet: bool,
}

impl Log {
    /// A log that prints to stderr unless `quiet` (the file still gets
    /// every line).
    pub fn new(quiet: bool) -> Log {
        Log {
            start: Instant::now(),
            file: Mutex::new(None),
            quiet,
        }
    }

    /// Also writes every later line to `path`.
    pub fn to_file(&self, path: &Path) -> std::io::Result<()> {
        let file = File::create(path)?;
        *self.file.lock().unwrap_or_else(|e| e.into_inner()) = Some(file);
        Ok(())
    }

    /// Seconds since the run started.
    pub fn elapsed(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }

    /// One line about the action at `level`.
    pub fn line(&self, level: &Level, name: &str, message: &str) {
        self.raw(&format!("[{:7.2}s] {level} {name}: {message}", self.elapsed()));
    }

    /// A line that belongs to no action (the start and end of a run).
    pub fn note(&self, message: &str) {
        self.raw(&format!("[{:7.2}s] {message}", self.elapsed()));
    }

    fn raw(&self, line: &str) {
        if !self.quiet {
            eprintln!("{line}");
        }
        if let Some(file) = self.file.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
            let _ = writeln!(file, "{line}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_print_dotted() {
        assert_eq!(Level::root(1).to_string(), "1");
        assert_eq!(Level::root(3).child(2).child(10).to_string(), "3.2.10");
    }
}

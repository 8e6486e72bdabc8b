//! How a harness run fails: every failure names the action it happened in
//! and is one of three kinds, each with its own exit status, so a caller
//! (CI, a test) can tell a broken machine from a broken job file from a
//! broken init.

use std::fmt;

use crate::level::Level;

/// The kind of a failure, which decides the exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The lab itself is missing something or broken: QEMU or the kernel
    /// cannot be had, KVM was required but is unusable, a build or a
    /// download failed, a file could not be written.
    Infrastructure,
    /// The harness job file is wrong: it does not parse, names an unknown
    /// key, misses a required one, or asks for something impossible.
    Job,
    /// The system under test misbehaved: a prompt never came, a command's
    /// output or exit status was not the expected one, QEMU did not power
    /// off cleanly.
    Test,
}

impl Kind {
    /// The process exit status for a failure of this kind (see the crate
    /// documentation and the README: 0 success, 1 test error, 2 usage,
    /// 65 job error, 69 infrastructure error).
    pub fn exit_code(self) -> u8 {
        match self {
            Kind::Test => EXIT_TEST,
            Kind::Job => EXIT_JOB,
            Kind::Infrastructure => EXIT_INFRASTRUCTURE,
        }
    }

    /// The word used in messages.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Infrastructure => "infrastructure error",
            Kind::Job => "job error",
            Kind::Test => "test error",
        }
    }
}

/// Exit status of a run whose check failed (like a test runner's).
pub const EXIT_TEST: u8 = 1;
/// Exit status of a bad command line (clap's).
pub const EXIT_USAGE: u8 = 2;
/// Exit status of a bad harness job file (sysexits' `EX_DATAERR`).
pub const EXIT_JOB: u8 = 65;
/// Exit status of a lab that cannot run the job (sysexits' `EX_UNAVAILABLE`).
pub const EXIT_INFRASTRUCTURE: u8 = 69;

/// A failure of one action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub kind: Kind,
    /// The action's level and name, e.g. `2.3 boot/qemu`; empty when the
    /// failure happened before any action (reading the job file).
    pub action: String,
    pub message: String,
}

impl Failure {
    pub fn new(kind: Kind, message: impl Into<String>) -> Failure {
        Failure {
            kind,
            action: String::new(),
            message: message.into(),
        }
    }

    pub fn infra(message: impl Into<String>) -> Failure {
        Failure::new(Kind::Infrastructure, message)
    }

    pub fn job(message: impl Into<String>) -> Failure {
        Failure::new(Kind::Job, message)
    }

    pub fn test(message: impl Into<String>) -> Failure {
        Failure::new(Kind::Test, message)
    }

    /// Names the action the failure happened in, unless a deeper action
    /// already did.
    pub fn in_action(mut self, level: &Level, name: &str) -> Failure {
        if self.action.is_empty() {
            self.action = format!("{level} {name}");
        }
        self
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.action.is_empty() {
            write!(f, "{}: {}", self.kind.name(), self.message)
        } else {
            write!(
                f,
                "{}: action {}: {}",
                self.kind.name(),
                self.action,
                self.message
            )
        }
    }
}

impl std::error::Error for Failure {}

pub type Result<T, E = Failure> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_has_its_own_exit_code_and_none_is_success_or_usage() {
        let codes = [Kind::Test, Kind::Job, Kind::Infrastructure].map(Kind::exit_code);
        assert_eq!(codes, [1, 65, 69]);
        assert!(!codes.contains(&0) && !codes.contains(&EXIT_USAGE));
    }

    #[test]
    fn the_innermost_action_names_the_failure() {
        let level = Level::root(2).child(3);
        let f = Failure::test("no prompt")
            .in_action(&level, "boot/qemu")
            .in_action(&Level::root(2), "boot");
        assert_eq!(f.to_string(), "test error: action 2.3 boot/qemu: no prompt");
    }
}

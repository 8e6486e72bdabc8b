//! Signal names as libnih's `nih_signal_from_name`/`nih_signal_to_name`
//! know them (Linux numbering), so `kill signal`, `reload signal`, `normal
//! exit` and `EXIT_SIGNAL=` agree with Upstart.

use serde::{Deserialize, Serialize};

/// A signal number. Job files may name any number up to `INT_MAX`, so this is
/// not limited to the signals the kernel knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Signal(pub i32);

/// libnih's table, in its order: the first name for a number is the one
/// printed (`ABRT` before `IOT`, `CHLD` before `CLD`, `IO` before `POLL`).
const NAMES: &[(i32, &str)] = &[
    (1, "HUP"),
    (2, "INT"),
    (3, "QUIT"),
    (4, "ILL"),
    (5, "TRAP"),
    (6, "ABRT"),
    (6, "IOT"),
    (7, "BUS"),
    (8, "FPE"),
    (9, "KILL"),
    (10, "USR1"),
    (11, "SEGV"),
    (12, "USR2"),
    (13, "PIPE"),
    (14, "ALRM"),
    (15, "TERM"),
    (16, "STKFLT"),
    (17, "CHLD"),
    (17, "CLD"),
    (18, "CONT"),
    (19, "STOP"),
    (20, "TSTP"),
    (21, "TTIN"),
    (22, "TTOU"),
    (23, "URG"),
    (24, "XCPU"),
    (25, "XFSZ"),
    (26, "VTALRM"),
    (27, "PROF"),
    (28, "WINCH"),
    (29, "IO"),
    (29, "POLL"),
    (30, "PWR"),
    (31, "SYS"),
];

impl Signal {
    pub const HUP: Signal = Signal(1);
    pub const INT: Signal = Signal(2);
    pub const KILL: Signal = Signal(9);
    pub const TERM: Signal = Signal(15);

    /// The number.
    pub fn number(self) -> i32 {
        self.0
    }

    /// Looks a name up with or without the `SIG` prefix (case-sensitive, as
    /// libnih does).
    pub fn from_name(name: &str) -> Option<Signal> {
        let bare = name.strip_prefix("SIG").unwrap_or(name);
        NAMES
            .iter()
            .find(|(_, n)| *n == bare)
            .map(|(num, _)| Signal(*num))
    }

    /// The name without `SIG` (`TERM`), if the number has one.
    pub fn name(self) -> Option<&'static str> {
        NAMES.iter().find(|(num, _)| *num == self.0).map(|(_, n)| *n)
    }

    /// What Upstart puts in `EXIT_SIGNAL=`: the name without `SIG`, or the
    /// number for an unnamed signal.
    pub fn to_event_value(self) -> String {
        match self.name() {
            Some(n) => n.to_string(),
            None => self.0.to_string(),
        }
    }
}

impl std::fmt::Display for Signal {
    /// `SIGTERM`, or the bare number for an unnamed signal.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.name() {
            Some(n) => write!(f, "SIG{n}"),
            None => write!(f, "{}", self.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_with_and_without_sig_prefix() {
        assert_eq!(Signal::from_name("TERM"), Some(Signal(15)));
        assert_eq!(Signal::from_name("SIGTERM"), Some(Signal(15)));
        assert_eq!(Signal::from_name("SIGUSR2"), Some(Signal(12)));
        assert_eq!(Signal::from_name("term"), None);
        assert_eq!(Signal::from_name("SIG"), None);
        assert_eq!(Signal::from_name("30"), None);
    }

    #[test]
    fn first_name_wins_when_printing() {
        assert_eq!(Signal(6).name(), Some("ABRT"));
        assert_eq!(Signal::from_name("IOT"), Some(Signal(6)));
        assert_eq!(Signal(17).to_string(), "SIGCHLD");
        assert_eq!(Signal(64).to_string(), "64");
        assert_eq!(Signal(64).to_event_value(), "64");
        assert_eq!(Signal(9).to_event_value(), "KILL");
    }
}

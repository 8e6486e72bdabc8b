//! What `initctl` prints and where, the way libnih's logger does it
//! (spec §4): normal output on standard output without a prefix, warnings
//! and errors on standard error as `PROG: MESSAGE`, usage errors followed
//! by a hint to `--help`. `-q` hides normal output, `-v` adds
//! informational messages.

use std::io::{self, BufWriter, Stdout, Write};

/// Message priorities, lowest first (libnih's `NihLogLevel`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Priority {
    Debug,
    Info,
    Message,
    Warn,
    Error,
}

/// `PROG: MESSAGE`, or `PROG:MESSAGE` when the message itself starts with
/// `word:` (a colon before any space), as GNU programs and libnih do.
pub fn error_line(program: &str, message: &str) -> String {
    let prefixed = message
        .find([' ', ':'])
        .is_some_and(|i| message.as_bytes()[i] == b':');
    if prefixed {
        format!("{program}:{message}")
    } else {
        format!("{program}: {message}")
    }
}

/// The line every usage error ends with.
pub fn suggest_help(program: &str) -> String {
    format!("Try `{program} --help' for more information.")
}

/// A usage error: the message (always with a space after the program
/// name, as libnih's parsers print it) and the hint to `--help`.
pub fn usage_error_text(program: &str, message: &str) -> String {
    format!("{program}: {message}\n{}\n", suggest_help(program))
}

/// Where a command's messages go.
pub struct Ui {
    /// The name messages are prefixed with: the basename `initctl` was
    /// invoked as.
    pub program: String,
    /// The lowest priority still printed.
    pub priority: Priority,
    out: BufWriter<Stdout>,
}

impl Ui {
    pub fn new(program: &str, priority: Priority) -> Ui {
        Ui {
            program: program.to_string(),
            priority,
            out: BufWriter::new(io::stdout()),
        }
    }

    /// Normal output (libnih's `nih_message`): hidden by `--quiet`.
    pub fn message(&mut self, text: &str) {
        if self.priority <= Priority::Message {
            let _ = writeln!(self.out, "{text}");
        }
    }

    /// Informational output (`nih_info`): shown with `--verbose`.
    pub fn info(&mut self, text: &str) {
        if self.priority <= Priority::Info {
            let _ = writeln!(self.out, "{text}");
        }
    }

    /// An error (`nih_error`), on standard error.
    pub fn error(&mut self, message: &str) {
        self.flush();
        let _ = writeln!(io::stderr().lock(), "{}", error_line(&self.program, message));
    }

    /// A usage error, as libnih's option and command parsers print it.
    pub fn usage_error(&mut self, message: &str) {
        self.flush();
        let _ = io::stderr()
            .lock()
            .write_all(usage_error_text(&self.program, message).as_bytes());
    }

    pub fn flush(&mut self) {
        let _ = self.out.flush();
    }
}

impl Drop for Ui {
    fn drop(&mut self) {
        self.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_line_puts_a_space_after_the_program_name() {
        assert_eq!(
            error_line("initctl", "Unknown job: foo"),
            "initctl: Unknown job: foo"
        );
        assert_eq!(error_line("initctl", "Event failed"), "initctl: Event failed");
        assert_eq!(
            error_line("stop", "Unknown instance: "),
            "stop: Unknown instance: "
        );
        assert_eq!(error_line("initctl", ""), "initctl: ");
    }

    #[test]
    fn error_line_drops_the_space_when_the_message_starts_with_a_word_and_colon() {
        assert_eq!(error_line("initctl", "foo: bar"), "initctl:foo: bar");
        assert_eq!(error_line("initctl", "foo:bar baz"), "initctl:foo:bar baz");
        assert_eq!(error_line("initctl", ":sys:x failed"), "initctl::sys:x failed");
        // A space before the first colon keeps the space.
        assert_eq!(
            error_line("initctl", "Unable to connect to Upstart: x"),
            "initctl: Unable to connect to Upstart: x"
        );
    }

    #[test]
    fn usage_errors_end_with_the_help_hint() {
        assert_eq!(
            usage_error_text("initctl", "missing job name"),
            "initctl: missing job name\nTry `initctl --help' for more information.\n"
        );
        // The parsers print the space even before a colon.
        assert_eq!(
            usage_error_text("start", "invalid option: --x"),
            "start: invalid option: --x\nTry `start --help' for more information.\n"
        );
    }
}

//! Parse errors: a position and one of Upstart's messages (spec §6.3).

use std::fmt;
use std::path::{Path, PathBuf};

/// What went wrong. The `Display` text is Upstart's message, word for word,
/// except for [`ErrorKind::TooDeep`] and [`ErrorKind::NulByte`], which
/// Upstart does not have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    ExpectedToken,
    UnexpectedToken,
    UnknownStanza,
    UnterminatedQuote,
    TrailingSlash,
    UnterminatedBlock,
    IllegalInterval,
    IllegalExit,
    IllegalSignal,
    IllegalUmask,
    IllegalNice,
    IllegalOom,
    IllegalOomScore,
    IllegalLimit,
    ExpectedEvent,
    ExpectedOperator,
    ExpectedVariable,
    MismatchedParens,
    /// An event expression nested deeper than [`crate::MAX_EXPR_DEPTH`]
    /// (upshot's own limit, so that no input can exhaust the stack).
    TooDeep,
    /// A NUL byte: a job file is text (upshot's own error; Upstart cut
    /// words at a NUL as C strings end there, with odd results).
    NulByte,
}

impl ErrorKind {
    /// Upstart's message text.
    pub fn message(self) -> &'static str {
        match self {
            ErrorKind::ExpectedToken => "Expected token",
            ErrorKind::UnexpectedToken => "Unexpected token",
            ErrorKind::UnknownStanza => "Unknown stanza",
            ErrorKind::UnterminatedQuote => "Unterminated quoted string",
            ErrorKind::TrailingSlash => "Trailing slash in file",
            ErrorKind::UnterminatedBlock => "Unterminated block",
            ErrorKind::IllegalInterval => "Illegal interval, expected number of seconds",
            ErrorKind::IllegalExit => "Illegal exit status, expected integer",
            ErrorKind::IllegalSignal => "Illegal signal status, expected integer",
            ErrorKind::IllegalUmask => "Illegal file creation mask, expected octal integer",
            ErrorKind::IllegalNice => "Illegal nice value, expected -20 to 19",
            ErrorKind::IllegalOom => "Illegal oom adjustment, expected -16 to 15 or 'never'",
            ErrorKind::IllegalOomScore => "Illegal oom score adjustment, expected -999 to 1000 or 'never'",
            ErrorKind::IllegalLimit => "Illegal limit, expected 'unlimited' or integer",
            ErrorKind::ExpectedEvent => "Expected event",
            ErrorKind::ExpectedOperator => "Expected operator",
            ErrorKind::ExpectedVariable => "Expected variable name before value",
            ErrorKind::MismatchedParens => "Mismatched parentheses",
            ErrorKind::TooDeep => "Event expression nested too deeply",
            ErrorKind::NulByte => "NUL byte in job file",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

/// A parse error in one text: where, and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub kind: ErrorKind,
    /// Byte offset into the text where Upstart reports the error (its `pos`).
    pub offset: usize,
    /// 1-based line of `offset`.
    pub line: usize,
    /// 1-based column (in bytes) of `offset` on its line.
    pub column: usize,
    /// The text of that line (without its newline), for a caret display.
    pub line_text: String,
}

impl ParseError {
    pub(crate) fn at(text: &[u8], offset: usize, kind: ErrorKind) -> ParseError {
        let offset = offset.min(text.len());
        let before = &text[..offset];
        let line = 1 + before.iter().filter(|&&b| b == b'\n').count();
        let line_start = before.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        let line_end = text[offset..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(text.len(), |i| offset + i);
        ParseError {
            kind,
            offset,
            line,
            column: offset - line_start + 1,
            line_text: String::from_utf8_lossy(&text[line_start..line_end]).into_owned(),
        }
    }

    /// The offending line and a caret under the column, for humans.
    pub fn caret(&self) -> String {
        let mut pad = String::new();
        for (i, ch) in self.line_text.char_indices() {
            if i + 1 >= self.column {
                break;
            }
            pad.push(if ch == '\t' { '\t' } else { ' ' });
        }
        format!("    {}\n    {}^", self.line_text, pad)
    }
}

impl fmt::Display for ParseError {
    /// `LINE:COL: MESSAGE`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.line, self.column, self.kind)
    }
}

impl std::error::Error for ParseError {}

/// A parse error in a named file: `FILE:LINE:COL: MESSAGE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileError {
    pub path: PathBuf,
    pub error: ParseError,
}

impl FileError {
    pub fn new(path: impl AsRef<Path>, error: ParseError) -> FileError {
        FileError {
            path: path.as_ref().to_path_buf(),
            error,
        }
    }

    /// The one-line form followed by the caret display.
    pub fn with_caret(&self) -> String {
        format!("{self}\n{}", self.error.caret())
    }
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.path.display(), self.error)
    }
}

impl std::error::Error for FileError {}

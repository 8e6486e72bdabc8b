//! The tokenizer of libnih's `nih/config.c`, which every Upstart job file
//! goes through (spec §1.3).
//!
//! This is a byte-for-byte port of its rules, positions included, because
//! the error positions and the odd corners (quotes spanning lines, escaped
//! newlines collapsing to one space, the common-indent stripping of script
//! blocks) are part of the language. It is a state machine over bytes, which
//! is why it is written out rather than composed from parser combinators.
//!
//! Text with a NUL byte never gets here: the parser rejects it first (a
//! job file is text; libnih's C strings made a NUL cut words short).
//!
//! One deliberate difference: libnih copies a backslash that escapes an
//! ordinary character (`\x`, which keeps its backslash) *before* the
//! whitespace pending ahead of it, and so loses one whitespace character
//! (`a \x` became `a\\x`). upshot keeps the text in order (`a \x`). Whether a
//! file parses is not affected.

use crate::error::ErrorKind;

/// Whitespace (`NIH_CONFIG_WS`).
pub(crate) const WS: &[u8] = b" \t\r";
/// Ends of a line (`NIH_CONFIG_CNL`).
pub(crate) const CNL: &[u8] = b"#\n";
/// Token separators (`NIH_CONFIG_CNLWS`).
pub(crate) const CNLWS: &[u8] = b" \t\r#\n";
/// Token separators inside event expressions (`"()" NIH_CONFIG_CNLWS`).
pub(crate) const PAREN_CNLWS: &[u8] = b"() \t\r#\n";

/// An error and the byte offset where libnih leaves its position.
pub(crate) type Fail = (ErrorKind, usize);
pub(crate) type Res<T> = Result<T, Fail>;

/// `strchr(set, c) != NULL` for the non-NUL bytes the lexer sees.
#[inline]
pub(crate) fn in_set(set: &[u8], c: u8) -> bool {
    set.contains(&c)
}

/// A position in a job file's text.
pub(crate) struct Lexer<'a> {
    pub text: &'a [u8],
    pub pos: usize,
}

/// What `nih_config_token` found.
struct Token {
    text: Vec<u8>,
    /// libnih's token length, which decides "empty" (it can differ from
    /// `text.len()` by a dangling escaped newline).
    len: usize,
}

impl<'a> Lexer<'a> {
    pub fn new(text: &'a [u8]) -> Lexer<'a> {
        Lexer { text, pos: 0 }
    }

    pub fn at_end(&self) -> bool {
        self.pos >= self.text.len()
    }

    /// The byte at the position, if any.
    pub fn peek(&self) -> Option<u8> {
        self.text.get(self.pos).copied()
    }

    /// `nih_config_has_token`: not at the end, a comment or a newline.
    pub fn has_token(&self) -> bool {
        matches!(self.peek(), Some(c) if !in_set(CNL, c))
    }

    /// Skips plain whitespace (no continuations), as `nih_config_parse_file`
    /// does before each stanza.
    pub fn skip_plain_whitespace(&mut self) {
        while let Some(c) = self.peek() {
            if !in_set(WS, c) {
                break;
            }
            self.pos += 1;
        }
    }

    /// `nih_config_skip_whitespace`: whitespace and escaped newlines.
    pub fn skip_whitespace(&mut self) {
        let t = self.text;
        while self.pos < t.len() {
            if t[self.pos] == b'\\' {
                if t.len() - self.pos > 1 && t[self.pos + 1] == b'\n' {
                    self.pos += 1;
                } else {
                    break;
                }
            } else if !in_set(WS, t[self.pos]) {
                break;
            }
            self.pos += 1;
        }
    }

    /// `nih_config_next_line`: past the next newline (or to the end).
    pub fn next_line(&mut self) {
        match self.text[self.pos.min(self.text.len())..]
            .iter()
            .position(|&c| c == b'\n')
        {
            Some(i) => self.pos += i + 1,
            None => self.pos = self.text.len(),
        }
    }

    /// `nih_config_skip_comment`: at a comment, newline or the end, moves
    /// past the line; anything else is `Unexpected token` here.
    pub fn skip_comment(&mut self) -> Res<()> {
        if self.has_token() {
            return Err((ErrorKind::UnexpectedToken, self.pos));
        }
        self.next_line();
        Ok(())
    }

    /// `nih_config_token`: scans one token from the position, stopping at an
    /// unquoted, unescaped byte of `delim`, and builds its text (newlines and
    /// the whitespace around them collapse to one space; with `dequote`,
    /// quotes are removed and `\\`, `\ `, `\<tab>` become the character).
    /// Leaves the position at the delimiter or the end, errors included.
    fn token(&mut self, delim: &[u8], dequote: bool) -> Res<Token> {
        let t = self.text;
        let start = self.pos;
        let mut p = start;
        let (mut ws, mut nlws, mut qc) = (0usize, 0usize, 0usize);
        let (mut slash, mut nl) = (false, false);
        let mut quote = 0u8;
        let mut out = Vec::new();

        while p < t.len() {
            let c = t[p];
            // `escaped`: a backslash escaped this byte; `special`: the escape
            // is consumed by dequoting (`\\`, `\ `, `\<tab>`).
            let (mut escaped, mut special, mut isq) = (false, false, false);
            if slash {
                slash = false;
                if c == b'\n' {
                    nlws += 1;
                    nl = true;
                    p += 1;
                    continue;
                }
                escaped = true;
                if c == b'\\' || in_set(WS, c) {
                    special = true;
                    if dequote {
                        qc += 1;
                    }
                }
            } else if c == b'\\' {
                slash = true;
                p += 1;
                continue;
            } else if quote != 0 {
                if c == quote {
                    quote = 0;
                    isq = true;
                } else if c == b'\n' {
                    nl = true;
                    p += 1;
                    continue;
                } else if in_set(WS, c) {
                    ws += 1;
                    p += 1;
                    continue;
                }
            } else if c == b'"' || c == b'\'' {
                quote = c;
                isq = true;
            } else if in_set(delim, c) {
                break;
            } else if in_set(WS, c) {
                ws += 1;
                p += 1;
                continue;
            }

            if nl {
                // A newline and the whitespace around it become one space.
                nlws += ws;
                out.push(b' ');
            } else if ws > 0 {
                let end = p - usize::from(escaped);
                out.extend_from_slice(&t[end - ws..end]);
            }
            if escaped && !(special && dequote) {
                out.push(b'\\');
            }
            if !(isq && dequote) {
                out.push(c);
            }
            if isq && dequote {
                qc += 1;
            }
            ws = 0;
            nl = false;
            p += 1;
        }

        self.pos = p;
        if slash {
            return Err((ErrorKind::TrailingSlash, p));
        }
        if quote != 0 {
            return Err((ErrorKind::UnterminatedQuote, p));
        }
        Ok(Token {
            text: out,
            len: p - start - ws - nlws - qc,
        })
    }

    /// `nih_config_next_token`: a non-empty token, then the whitespace after
    /// it (continuations included) is skipped.
    pub fn next_token(&mut self, delim: &[u8], dequote: bool) -> Res<String> {
        let tok = self.token(delim, dequote)?;
        if tok.len == 0 {
            return Err((ErrorKind::ExpectedToken, self.pos));
        }
        self.skip_whitespace();
        Ok(bytes_to_string(tok.text))
    }

    /// `nih_config_next_arg`: a dequoted argument.
    pub fn next_arg(&mut self) -> Res<String> {
        self.next_token(CNLWS, true)
    }

    /// `nih_config_parse_args`: dequoted arguments up to the end of the line,
    /// which is consumed.
    pub fn parse_args(&mut self) -> Res<Vec<String>> {
        let mut args = Vec::new();
        while self.has_token() {
            args.push(self.next_arg()?);
        }
        self.next_line();
        Ok(args)
    }

    /// `nih_config_parse_command`: the raw rest of the line up to an unquoted,
    /// unescaped `#` or newline (quotes and backslashes kept, continuations
    /// collapsed, trailing whitespace dropped); the line is consumed.
    pub fn parse_command(&mut self) -> Res<String> {
        let tok = self.token(CNL, false)?;
        self.next_line();
        Ok(bytes_to_string(tok.text))
    }

    /// `nih_config_parse_block`: the lines up to `end TYPE`, with the leading
    /// whitespace that every line shares with the first line removed (an
    /// empty line shares none, so it turns stripping off for the block).
    pub fn parse_block(&mut self, kind: &str) -> Res<String> {
        let t = self.text;
        let start = self.pos;
        let mut ws = 0usize;
        let mut lines = 0usize;
        let block_end;
        loop {
            if let Some(end) = self.block_end(kind) {
                block_end = end;
                break;
            }
            lines += 1;
            let line_start = self.pos;
            let mut p = line_start;
            if lines == 1 {
                while p < t.len() && in_set(WS, t[p]) {
                    p += 1;
                }
                ws = p - line_start;
            } else {
                while p < t.len() && p - line_start < ws && t[start + p - line_start] == t[p] {
                    p += 1;
                }
                ws = ws.min(p - line_start);
            }
            self.pos = p;
            self.next_line();
            if self.pos >= t.len() {
                return Err((ErrorKind::UnterminatedBlock, self.pos));
            }
        }

        let mut out = Vec::with_capacity(block_end - start);
        let mut pp = start;
        while pp < block_end {
            pp += ws;
            let nl = t[pp..block_end]
                .iter()
                .position(|&c| c == b'\n')
                .map_or(block_end, |i| pp + i + 1);
            out.extend_from_slice(&t[pp..nl]);
            pp = nl;
        }
        Ok(bytes_to_string(out))
    }

    /// `nih_config_block_end`: if the line at the position is
    /// `WS? end WS TYPE WS? (# comment)?`, moves past it and returns where
    /// the line starts.
    fn block_end(&mut self, kind: &str) -> Option<usize> {
        let t = self.text;
        let mut p = self.pos;
        while p < t.len() && in_set(WS, t[p]) {
            p += 1;
        }
        if t.len() - p < 4 || &t[p..p + 3] != b"end" {
            return None;
        }
        if !in_set(WS, t[p + 3]) {
            return None;
        }
        p += 3;
        while p < t.len() && in_set(WS, t[p]) {
            p += 1;
        }
        let k = kind.as_bytes();
        if t.len() - p < k.len() || &t[p..p + k.len()] != k {
            return None;
        }
        p += k.len();
        while p < t.len() && in_set(WS, t[p]) {
            p += 1;
        }
        if p < t.len() && t[p] == b'#' {
            while p < t.len() && t[p] != b'\n' {
                p += 1;
            }
        }
        if p < t.len() && t[p] != b'\n' {
            return None;
        }
        if p < t.len() {
            p += 1;
        }
        let end = self.pos;
        self.pos = p;
        Some(end)
    }
}

/// Job files are text; bytes that are not UTF-8 are replaced (U+FFFD) rather
/// than rejected, since Upstart itself accepts any bytes.
fn bytes_to_string(bytes: Vec<u8>) -> String {
    match String::from_utf8(bytes) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arg(s: &str) -> Res<String> {
        Lexer::new(s.as_bytes()).next_arg()
    }

    fn command(s: &str) -> Res<String> {
        Lexer::new(s.as_bytes()).parse_command()
    }

    #[test]
    fn dequoting_removes_quotes_anywhere_in_a_token() {
        assert_eq!(arg("FRODO=\"foo bar\"").unwrap(), "FRODO=foo bar");
        assert_eq!(arg("'a'\"b\"c").unwrap(), "abc");
        assert_eq!(arg("\"it's\"'\"'").unwrap(), "it's\"");
    }

    #[test]
    fn escapes_of_backslash_and_whitespace_become_the_character() {
        assert_eq!(arg("a\\\\b").unwrap(), "a\\b");
        assert_eq!(arg("a\\ b").unwrap(), "a b");
        assert_eq!(arg("a\\\tb").unwrap(), "a\tb");
        assert_eq!(arg("a\\xb").unwrap(), "a\\xb");
        // An escaped quote keeps its backslash and does not close the quote.
        assert_eq!(arg("\"a\\\"b\"").unwrap(), "a\\\"b");
        assert_eq!(arg("\"a\\\"").unwrap_err().0, ErrorKind::UnterminatedQuote);
    }

    #[test]
    fn quoted_newline_collapses_with_its_whitespace_to_one_space() {
        assert_eq!(arg("\"a  \n   b\"").unwrap(), "a b");
        assert_eq!(arg("\"  lead and trail  \"").unwrap(), "  lead and trail  ");
    }

    #[test]
    fn command_text_keeps_quotes_and_collapses_continuations() {
        assert_eq!(
            command("\"this   is\" a \"test \\\n of\"\n").unwrap(),
            "\"this   is\" a \"test of\""
        );
        assert_eq!(
            command("/sbin/daemon -d \"foo\"   # c\n").unwrap(),
            "/sbin/daemon -d \"foo\""
        );
        assert_eq!(
            command("echo \"#not a comment\"\n").unwrap(),
            "echo \"#not a comment\""
        );
        assert_eq!(command("a \\\\ b \\# c\n").unwrap(), "a \\\\ b \\# c");
        assert_eq!(command("a \\x\n").unwrap(), "a \\x");
    }

    #[test]
    fn tokenizer_errors_point_at_the_end() {
        assert_eq!(arg("\"abc").unwrap_err(), (ErrorKind::UnterminatedQuote, 4));
        assert_eq!(arg("abc\\").unwrap_err(), (ErrorKind::TrailingSlash, 4));
        assert_eq!(arg("\"\"").unwrap_err(), (ErrorKind::ExpectedToken, 2));
        assert_eq!(arg("\n").unwrap_err(), (ErrorKind::ExpectedToken, 0));
    }

    #[test]
    fn next_token_skips_whitespace_and_continuations_after_it() {
        let mut lx = Lexer::new(b"one \\\n   two\n");
        assert_eq!(lx.next_arg().unwrap(), "one");
        assert_eq!(lx.next_arg().unwrap(), "two");
        assert_eq!(lx.peek(), Some(b'\n'));
    }

    fn block(s: &str) -> Res<String> {
        Lexer::new(s.as_bytes()).parse_block("script")
    }

    #[test]
    fn block_strips_indent_shared_with_the_first_line() {
        assert_eq!(block("    echo\nend script\n").unwrap(), "echo\n");
        assert_eq!(
            block("    this is\n  \t a test\nend script\n").unwrap(),
            "  this is\n\t a test\n"
        );
        assert_eq!(block("  a\n\n  b\nend script\n").unwrap(), "  a\n\n  b\n");
        assert_eq!(block("end script\n").unwrap(), "");
    }

    #[test]
    fn block_end_forms() {
        assert_eq!(block("x\n  end \t script  \n").unwrap(), "x\n");
        assert_eq!(block("x\nend script # comment\n").unwrap(), "x\n");
        assert_eq!(block("x\nend script").unwrap(), "x\n");
        assert_eq!(
            block("x\nend scripts\n").unwrap_err().0,
            ErrorKind::UnterminatedBlock
        );
        assert_eq!(
            block("x\nendscript\n").unwrap_err().0,
            ErrorKind::UnterminatedBlock
        );
        assert_eq!(block("x\n").unwrap_err(), (ErrorKind::UnterminatedBlock, 2));
    }
}

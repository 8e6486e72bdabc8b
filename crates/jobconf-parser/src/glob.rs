//! Glob matching of event values: [`glob_match`] behaves as glibc's
//! `fnmatch(pattern, text, 0)` (spec `upstart-reference.md` §1.5, matching
//! rule 4: after `$` expansion a match value is an `fnmatch(3)` pattern with
//! flags 0).
//!
//! With flags 0 nothing is special about `/` or a leading `.`: `*` matches
//! any run of characters, `?` any one character, `[...]` one character of a
//! bracket expression, and `\` makes the next character literal, also
//! inside brackets.
//!
//! Bracket expressions follow glibc's parser in the C locale, including its
//! handling of ill-formed ones: a `[` whose expression never closes is a
//! literal `[`; `!` or `^` first negates; `]` first (after the negation) is
//! literal; `-` first or last is literal; `a-z` ranges compare code points;
//! `[:class:]` takes the twelve POSIX classes with their ASCII meaning, and
//! an unknown class name makes the expression match nothing; `[=c=]` and
//! `[.c.]` stand for the single character `c` (a longer collating element
//! matches nothing). A trailing lone `\` matches nothing, as in glibc
//! ("trailing \ loses"). The pattern and the text are compared as Unicode
//! characters, not bytes.
//!
//! The matcher is the classic iterative one that remembers only the last
//! `*` and retries from one character further on a mismatch: no recursion,
//! and O(pattern × text) steps at worst.

/// Longest `[:name:]` glibc accepts (`CHARCLASS_NAME_MAX`).
const CHAR_CLASS_MAX_LENGTH: usize = 2048;

/// True when `text` matches the shell pattern `pattern` as glibc's
/// `fnmatch(pattern, text, 0)` would.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    let text: Vec<char> = text.chars().collect();
    Pattern { chars: &pattern }.matches(&text)
}

/// What one pattern element does at the current text position.
enum Step {
    /// `*`: remember this place and go on with the next element.
    Star,
    /// The pattern is exhausted.
    End,
    /// The element matched one text character; the next element is here.
    Consume(usize),
    /// The element does not match here.
    Fail,
}

/// The result of a bracket expression against one text character.
enum Bracket {
    /// It matched; the pattern continues at this index (after the `]`).
    Match(usize),
    /// It did not match (or the expression is one glibc rejects).
    NoMatch,
    /// It never closes: the `[` is an ordinary character.
    Literal,
}

/// A POSIX character class, with its C-locale meaning.
#[derive(Debug, Clone, Copy)]
enum Class {
    Alnum,
    Alpha,
    Blank,
    Cntrl,
    Digit,
    Graph,
    Lower,
    Print,
    Punct,
    Space,
    Upper,
    Xdigit,
}

impl Class {
    fn from_name(name: &str) -> Option<Class> {
        Some(match name {
            "alnum" => Class::Alnum,
            "alpha" => Class::Alpha,
            "blank" => Class::Blank,
            "cntrl" => Class::Cntrl,
            "digit" => Class::Digit,
            "graph" => Class::Graph,
            "lower" => Class::Lower,
            "print" => Class::Print,
            "punct" => Class::Punct,
            "space" => Class::Space,
            "upper" => Class::Upper,
            "xdigit" => Class::Xdigit,
            _ => return None,
        })
    }

    fn contains(self, c: char) -> bool {
        match self {
            Class::Alnum => c.is_ascii_alphanumeric(),
            Class::Alpha => c.is_ascii_alphabetic(),
            Class::Blank => c == ' ' || c == '\t',
            Class::Cntrl => c.is_ascii_control(),
            Class::Digit => c.is_ascii_digit(),
            Class::Graph => c.is_ascii_graphic(),
            Class::Lower => c.is_ascii_lowercase(),
            Class::Print => c == ' ' || c.is_ascii_graphic(),
            Class::Punct => c.is_ascii_punctuation(),
            // C's isspace includes the vertical tab, unlike
            // `char::is_ascii_whitespace`.
            Class::Space => matches!(c, ' ' | '\t' | '\n' | '\x0b' | '\x0c' | '\r'),
            Class::Upper => c.is_ascii_uppercase(),
            Class::Xdigit => c.is_ascii_hexdigit(),
        }
    }
}

struct Pattern<'a> {
    chars: &'a [char],
}

impl Pattern<'_> {
    /// The pattern character at `i`; `None` past the end (C's NUL).
    fn at(&self, i: usize) -> Option<char> {
        self.chars.get(i).copied()
    }

    fn matches(&self, text: &[char]) -> bool {
        let mut p = 0;
        let mut t = 0;
        // Pattern index after the last `*`, and the text index it is tried at.
        let mut star: Option<(usize, usize)> = None;
        loop {
            match self.step(p, text.get(t).copied()) {
                Step::Star => {
                    p += 1;
                    star = Some((p, t));
                }
                Step::Consume(next) => {
                    p = next;
                    t += 1;
                }
                Step::End if t == text.len() => return true,
                Step::End | Step::Fail => match star {
                    // Let the last `*` swallow one more character, retry.
                    Some((star_p, star_t)) if star_t < text.len() => {
                        star = Some((star_p, star_t + 1));
                        p = star_p;
                        t = star_t + 1;
                    }
                    _ => return false,
                },
            }
        }
    }

    /// Matches the element at `p` against the text character `t`.
    fn step(&self, p: usize, t: Option<char>) -> Step {
        let Some(c) = self.at(p) else {
            return Step::End;
        };
        if c == '*' {
            return Step::Star;
        }
        let Some(t) = t else {
            return Step::Fail;
        };
        let matched = match c {
            '?' => Some(p + 1),
            '\\' => match self.at(p + 1) {
                Some(escaped) if escaped == t => Some(p + 2),
                // Includes a trailing `\`, which glibc never matches.
                _ => None,
            },
            '[' => match self.bracket(p + 1, t) {
                Bracket::Match(next) => Some(next),
                Bracket::NoMatch => None,
                Bracket::Literal => (t == '[').then_some(p + 1),
            },
            _ => (c == t).then_some(p + 1),
        };
        matched.map_or(Step::Fail, Step::Consume)
    }

    /// Scans a `[.x.]` whose `[` is at `open - 1` (`open` is the `.`).
    /// Returns the element's character and the index after `.]`, or `None`
    /// when glibc rejects it (unclosed, or not exactly one character).
    fn collating_symbol(&self, open: usize) -> Option<(char, usize)> {
        let mut q = open;
        let mut len = 0usize;
        loop {
            q += 1;
            let c = self.at(q)?;
            if c == '.' && self.at(q + 1) == Some(']') {
                break;
            }
            len += 1;
        }
        if len != 1 {
            return None;
        }
        Some((self.at(open + 1)?, q + 2))
    }

    /// Evaluates the bracket expression whose `[` is at `start - 1` against
    /// the text character `t`, following glibc's `fnmatch_loop.c`.
    fn bracket(&self, start: usize, t: char) -> Bracket {
        let mut p = start;
        let negated = matches!(self.at(p), Some('!' | '^'));
        if negated {
            p += 1;
        }
        let mut c = self.at(p);
        p += 1;
        loop {
            // Either a single character that may start a range (`normal`),
            // or an element already dealt with (class, equivalence class).
            let normal: Option<char> = match c {
                None => return Bracket::Literal,
                Some('\\') => {
                    let Some(escaped) = self.at(p) else {
                        return Bracket::NoMatch;
                    };
                    p += 1;
                    Some(escaped)
                }
                Some('[') if self.at(p) == Some(':') => match self.class_name(p) {
                    ClassName::NotAClass => Some('['),
                    ClassName::TooLong => return Bracket::NoMatch,
                    ClassName::Name(name, after) => {
                        let Some(class) = Class::from_name(&name) else {
                            return Bracket::NoMatch;
                        };
                        if class.contains(t) {
                            return self.skip_rest(after, negated);
                        }
                        p = after;
                        c = self.at(p);
                        p += 1;
                        None
                    }
                },
                Some('[') if self.at(p) == Some('=') => {
                    match (self.at(p + 1), self.at(p + 2), self.at(p + 3)) {
                        (Some(e), Some('='), Some(']')) => {
                            if e == t {
                                return self.skip_rest(p + 4, negated);
                            }
                            p += 4;
                            c = self.at(p);
                            p += 1;
                            None
                        }
                        _ => Some('['),
                    }
                }
                Some('[') if self.at(p) == Some('.') => {
                    let Some((symbol, after)) = self.collating_symbol(p) else {
                        return Bracket::NoMatch;
                    };
                    p = after;
                    let is_range = self.at(p) == Some('-') && self.at(p + 1).is_some();
                    if !is_range && symbol == t {
                        return self.skip_rest(p, negated);
                    }
                    c = self.at(p);
                    p += 1;
                    match self.range_end(c, &mut p, symbol, t) {
                        RangeEnd::Matched => return self.skip_rest(p, negated),
                        RangeEnd::Rejected => return Bracket::NoMatch,
                        RangeEnd::NotMatched(next) => c = next,
                    }
                    None
                }
                Some(other) => Some(other),
            };

            if let Some(first) = normal {
                let next = self.at(p);
                let is_range = next == Some('-') && !matches!(self.at(p + 1), None | Some(']'));
                if !is_range && first == t {
                    return self.skip_rest(p, negated);
                }
                c = next;
                p += 1;
                match self.range_end(c, &mut p, first, t) {
                    RangeEnd::Matched => return self.skip_rest(p, negated),
                    RangeEnd::Rejected => return Bracket::NoMatch,
                    RangeEnd::NotMatched(next) => c = next,
                }
            }

            if c == Some(']') {
                break;
            }
        }
        if negated {
            Bracket::Match(p)
        } else {
            Bracket::NoMatch
        }
    }

    /// After a single character `low`, with `c` the following pattern
    /// character and `p` just past it: if `c` is `-` starting a range, reads
    /// the upper bound and tests `t`. Returns the next element's first
    /// character (with `p` just past it) when the bracket goes on.
    fn range_end(&self, c: Option<char>, p: &mut usize, low: char, t: char) -> RangeEnd {
        if c != Some('-') || self.at(*p) == Some(']') {
            return RangeEnd::NotMatched(c);
        }
        let mut high = self.at(*p);
        *p += 1;
        if high == Some('[') && self.at(*p) == Some('.') {
            let Some((symbol, after)) = self.collating_symbol(*p) else {
                return RangeEnd::Rejected;
            };
            high = Some(symbol);
            *p = after;
        } else if high == Some('\\') {
            high = self.at(*p);
            *p += 1;
        }
        let Some(high) = high else {
            return RangeEnd::Rejected;
        };
        if low <= t && t <= high {
            return RangeEnd::Matched;
        }
        let next = self.at(*p);
        *p += 1;
        RangeEnd::NotMatched(next)
    }

    /// Reads a `[:name:]` whose `:` is at `colon`.
    fn class_name(&self, colon: usize) -> ClassName {
        let mut name = String::new();
        let mut q = colon;
        loop {
            if name.len() == CHAR_CLASS_MAX_LENGTH {
                return ClassName::TooLong;
            }
            q += 1;
            match self.at(q) {
                Some(':') if self.at(q + 1) == Some(']') => return ClassName::Name(name, q + 2),
                // glibc's test is `c < 'a' || c >= 'z'`.
                Some(c @ 'a'..='y') => name.push(c),
                _ => return ClassName::NotAClass,
            }
        }
    }

    /// After a bracket expression matched at `p`: skips to just past its
    /// closing `]`, the way glibc does.
    fn skip_rest(&self, mut p: usize, negated: bool) -> Bracket {
        loop {
            let c = self.at(p);
            p += 1;
            match c {
                Some(']') => break,
                None => return Bracket::Literal,
                Some('\\') => {
                    if self.at(p).is_none() {
                        return Bracket::NoMatch;
                    }
                    p += 1;
                }
                Some('[') if self.at(p) == Some(':') => {
                    let colon = p;
                    let mut q = p;
                    let mut len = 0usize;
                    p = loop {
                        q += 1;
                        len += 1;
                        if len == CHAR_CLASS_MAX_LENGTH {
                            return Bracket::NoMatch;
                        }
                        if self.at(q) == Some(':') && self.at(q + 1) == Some(']') {
                            break q + 2;
                        }
                        if !matches!(self.at(q), Some('a'..='y')) {
                            break colon;
                        }
                    };
                }
                Some('[') if self.at(p) == Some('=') => {
                    if self.at(p + 1).is_none() || self.at(p + 2) != Some('=') || self.at(p + 3) != Some(']')
                    {
                        return Bracket::NoMatch;
                    }
                    p += 4;
                }
                Some('[') if self.at(p) == Some('.') => {
                    let mut q = p;
                    p = loop {
                        q += 1;
                        match self.at(q) {
                            None => return Bracket::NoMatch,
                            Some('.') if self.at(q + 1) == Some(']') => break q + 2,
                            Some(_) => {}
                        }
                    };
                }
                Some(_) => {}
            }
        }
        if negated {
            Bracket::NoMatch
        } else {
            Bracket::Match(p)
        }
    }
}

enum RangeEnd {
    /// The character is in the range.
    Matched,
    /// No range, or not in it; the next element starts with this character.
    NotMatched(Option<char>),
    /// An ill-formed range end that glibc rejects.
    Rejected,
}

enum ClassName {
    /// A well-formed `[:name:]`; the pattern goes on at the index.
    Name(String, usize),
    /// Not a class after all: the `[` is an ordinary character.
    NotAClass,
    /// Longer than glibc accepts.
    TooLong,
}

#[cfg(test)]
mod tests {
    use super::glob_match;
    use std::time::{Duration, Instant};

    #[track_caller]
    fn yes(pattern: &str, text: &str) {
        assert!(glob_match(pattern, text), "{pattern:?} should match {text:?}");
    }

    #[track_caller]
    fn no(pattern: &str, text: &str) {
        assert!(
            !glob_match(pattern, text),
            "{pattern:?} should not match {text:?}"
        );
    }

    #[test]
    fn spec_cases() {
        yes("b?r", "bar");
        no("b?r", "bear");
        yes("f*", "foo");
        yes("f*", "f");
        no("f*", "of");
        yes("[!2345]", "1");
        no("[!2345]", "3");
        yes("[016]", "6");
        no("[016]", "2");
        yes("*-device-added", "block-device-added");
        yes("*-device-added", "-device-added");
        no("*-device-added", "block-device-removed");
        yes(":sys:*", ":sys:/devices/virtual/net/lo");
        no(":sys:*", "/sys/devices");
        // No FNM_PATHNAME, no FNM_PERIOD.
        yes("*", "/dev/sda1");
        yes("*", ".x");
        yes("/dev/*", "/dev/disk/by-uuid/x");
        yes("?x", ".x");
        yes("a?c", "a/c");
        yes("[./]", "/");
        yes("[./]", ".");
    }

    #[test]
    fn literals() {
        yes("foo", "foo");
        no("foo", "foobar");
        no("foobar", "foo");
        no("foo", "Foo");
        yes("é€", "é€");
        yes("!+@()", "!+@()");
        yes("a]b", "a]b");
    }

    #[test]
    fn empty_pattern_and_text() {
        yes("", "");
        no("", "a");
        no("a", "");
        yes("*", "");
        yes("**", "");
        no("?", "");
        no("[a]", "");
        no("[!a]", "");
    }

    #[test]
    fn star() {
        yes("*", "anything at all");
        yes("a*b", "ab");
        yes("a*b", "axxxb");
        yes("a*b", "abab");
        no("a*b", "abba");
        yes("*a*b*", "xxaxxbxx");
        yes("*?", "a");
        no("*?", "");
        yes("*??*", "ab");
        no("*??*", "a");
        yes("a**b", "ab");
        yes("*.conf", "x.y.conf");
    }

    #[test]
    fn question_mark_is_one_character() {
        yes("?", "é");
        no("?", "ab");
        yes("??", "é€");
        yes("?é", "xé");
    }

    #[test]
    fn bracket_sets_and_ranges() {
        yes("[abc]", "b");
        no("[abc]", "d");
        yes("[a-c]", "b");
        yes("[a-c]", "a");
        yes("[a-c]", "c");
        no("[a-c]", "d");
        yes("[0-9a-f]", "e");
        no("[0-9a-f]", "g");
        yes("[a-cx-z]", "y");
        // A reversed range matches nothing.
        no("[z-a]", "m");
        no("[z-a]", "z");
        // Ranges compare code points, also beyond ASCII.
        yes("[à-ü]", "é");
        yes("[é]", "é");
        yes("x[ab]y", "xby");
        no("x[ab]y", "xy");
    }

    #[test]
    fn bracket_negation() {
        yes("[!a]", "b");
        no("[!a]", "a");
        yes("[^a]", "b");
        no("[^a]", "a");
        yes("[!a-c]", "d");
        no("[!a-c]", "b");
        // Only first is `!` special.
        yes("[a!]", "!");
        yes("[a^]", "^");
    }

    #[test]
    fn bracket_close_and_dash_literals() {
        yes("[]]", "]");
        no("[]]", "a");
        yes("[]a]", "a");
        yes("[]a]", "]");
        yes("[!]]", "a");
        no("[!]]", "]");
        yes("[^]]", "a");
        yes("[-a]", "-");
        yes("[a-]", "-");
        yes("[a-]", "a");
        no("[a-]", "b");
        yes("[!-]", "a");
        no("[!-]", "-");
        // `]-a`: a range starting at `]`.
        yes("[]-a]", "^");
        // `--0`: a range from `-` to `0`.
        yes("[--0]", ".");
        no("[--0]", "1");
    }

    #[test]
    fn bracket_classes() {
        yes("[[:alpha:]]", "q");
        no("[[:alpha:]]", "1");
        yes("[[:digit:]]", "7");
        no("[[:digit:]]", "x");
        yes("[[:alnum:]]", "Z");
        yes("[[:alnum:]]", "0");
        no("[[:alnum:]]", "_");
        yes("[[:upper:]]", "Q");
        no("[[:upper:]]", "q");
        yes("[[:lower:]]", "q");
        no("[[:lower:]]", "Q");
        yes("[[:space:]]", " ");
        yes("[[:space:]]", "\x0b");
        no("[[:space:]]", "x");
        yes("[[:xdigit:]]", "F");
        no("[[:xdigit:]]", "g");
        yes("[[:punct:]]", "!");
        no("[[:punct:]]", "a");
        yes("[[:print:]]", " ");
        no("[[:print:]]", "\n");
        yes("[[:graph:]]", "~");
        no("[[:graph:]]", " ");
        yes("[[:cntrl:]]", "\x07");
        no("[[:cntrl:]]", "a");
        yes("[[:blank:]]", "\t");
        no("[[:blank:]]", "\n");
        // ASCII meaning only.
        no("[[:alpha:]]", "é");
        // Mixed with other members, and negated.
        yes("[x[:digit:]]", "x");
        yes("[x[:digit:]]", "5");
        yes("[![:digit:]]", "x");
        no("[![:digit:]]", "5");
        yes("[[:digit:][:upper:]]", "Q");
        // An unknown class makes the whole expression match nothing.
        no("[[:foo:]]", "f");
        no("[![:foo:]]", "f");
        // Not a class at all: `[` and `:` are members.
        yes("[[:]", ":");
        yes("[[:]", "[");
    }

    #[test]
    fn bracket_equivalence_and_collating_elements() {
        yes("[[=a=]]", "a");
        no("[[=a=]]", "b");
        yes("[[.a.]]", "a");
        yes("[[.-.]]", "-");
        yes("[[.a.]-c]", "b");
        yes("[a-[.c.]]", "b");
        no("[[.ab.]]", "a");
    }

    #[test]
    fn escapes() {
        yes("\\*", "*");
        no("\\*", "x");
        yes("\\?", "?");
        no("\\?", "x");
        yes("\\[a]", "[a]");
        yes("\\\\", "\\");
        yes("\\a", "a");
        yes("a\\*b*", "a*bc");
        yes("*\\*", "xx*");
        no("*\\*", "xx");
        // Inside brackets.
        yes("[\\]]", "]");
        yes("[\\!a]", "!");
        yes("[!\\]]", "a");
        no("[!\\]]", "]");
        yes("[a\\-z]", "-");
        no("[a\\-z]", "b");
        yes("[\\a-c]", "b");
        yes("[a-\\c]", "b");
    }

    #[test]
    fn trailing_backslash_matches_nothing() {
        // glibc: "Trailing \ loses".
        no("\\", "\\");
        no("\\", "");
        no("foo\\", "foo\\");
        no("foo\\", "foo");
        no("*\\", "x\\");
    }

    #[test]
    fn unterminated_bracket_is_a_literal() {
        yes("[", "[");
        no("[", "a");
        yes("a[", "a[");
        yes("[a", "[a");
        no("[a", "a");
        yes("[!a", "[!a");
        yes("[!]", "[!]");
        yes("[]", "[]");
        yes("[[", "[[");
        yes("*[", "ab[");
        yes("[ab", "[ab");
        no("[ab", "b");
        // Also when a member matched before the end was found.
        yes("[^a[", "[^a[");
        // But glibc rejects a range or an escape cut short by the end.
        no("[a-", "[a-");
        no("[a\\", "[a\\");
    }

    #[test]
    fn pathological_patterns_are_fast() {
        let started = Instant::now();
        let text = "a".repeat(200);
        no("a*a*a*a*a*a*a*b", &text);
        yes("a*a*a*a*a*a*a*", &text);
        let long = "a".repeat(20_000);
        no(&format!("{}b", "*a".repeat(200)), &long);
        no(&format!("*{}b", "?".repeat(100)), &long);
        let brackets = "[!b]*".repeat(100);
        no(&format!("{brackets}b"), &long);
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    proptest::proptest! {
        #[test]
        fn never_panics(pattern in "[-\\[\\]!^*?\\\\:.=a-c]{0,24}", text in "[-\\[\\]!^\\\\:.=a-c]{0,12}") {
            let _ = glob_match(&pattern, &text);
        }

        #[test]
        fn plain_text_matches_itself(text in "[a-z0-9/._-]{0,30}") {
            proptest::prop_assert!(glob_match(&text, &text));
        }
    }
}

//! `$` expansion of job-file text: instance names, event-match values and
//! cgroup names (spec `upstart-reference.md` §1.7, and §1.5 item 4 for its
//! use in event matching).
//!
//! This module owns the [`Lookup`] abstraction over environments and
//! [`expand`], a reimplementation of Upstart's `environ_expand`
//! (`init/environ.c`). The forms are `$NAME`, `${NAME}`, `${NAME-def}`,
//! `${NAME:-def}`, `${NAME+alt}`, `${NAME:+alt}` and `${}` (a literal `$`).
//!
//! Upstart behaviours kept on purpose:
//! * the text after an operator is expanded *before* the variable is looked
//!   up, whether or not it ends up being used, so `${SET:-$UNSET}` is an
//!   error exactly as in Upstart;
//! * the name part of a bracketed reference is itself expanded, so
//!   `${$KEY}` looks up the variable named by `$KEY` (documented in
//!   `environ.c`);
//! * only `${` opens a nested group: a bare `{` is plain text, and the first
//!   `}` not consumed by a nested reference closes the group;
//! * substituted values are never re-scanned.
//!
//! Upstart reports a name part that is not a valid variable name (`${1}`,
//! `${A?x}`) as `Illegal parameter`; this module reports
//! [`ExpandError::ExpectedOperator`] for those, as the crate's error set has
//! no separate kind for it.
//!
//! The implementation is iterative (an explicit stack of open `${` groups)
//! and writes into a single output buffer, so nesting depth is limited only
//! by memory and the running time is linear in the input plus the output.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use nom::branch::alt;
use nom::bytes::complete::{tag, take_till, take_while};
use nom::character::complete::{char, satisfy};
use nom::combinator::{all_consuming, peek, recognize, value};
use nom::sequence::pair;
use nom::{IResult, Parser};

/// Something variables can be looked up in.
pub trait Lookup {
    /// The value of `name`, or `None` when it is not set.
    fn lookup(&self, name: &str) -> Option<&str>;
}

/// An environment table of `KEY=VALUE` entries, as Upstart keeps them.
///
/// An entry `KEY` without `=` means "not set". When a key appears several
/// times the last entry wins.
impl Lookup for [String] {
    fn lookup(&self, name: &str) -> Option<&str> {
        for entry in self.iter().rev() {
            match entry.split_once('=') {
                Some((key, value)) if key == name => return Some(value),
                None if entry == name => return None,
                _ => {}
            }
        }
        None
    }
}

impl Lookup for Vec<String> {
    fn lookup(&self, name: &str) -> Option<&str> {
        self.as_slice().lookup(name)
    }
}

impl Lookup for HashMap<String, String> {
    fn lookup(&self, name: &str) -> Option<&str> {
        self.get(name).map(String::as_str)
    }
}

impl Lookup for BTreeMap<String, String> {
    fn lookup(&self, name: &str) -> Option<&str> {
        self.get(name).map(String::as_str)
    }
}

impl<L: Lookup + ?Sized> Lookup for &L {
    fn lookup(&self, name: &str) -> Option<&str> {
        (**self).lookup(name)
    }
}

/// The empty environment: nothing is set. `start on` values are expanded
/// against it (spec §1.5 item 5).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EmptyEnv;

impl Lookup for EmptyEnv {
    fn lookup(&self, _name: &str) -> Option<&str> {
        None
    }
}

/// Why [`expand`] failed. The messages are Upstart's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExpandError {
    /// `$NAME` or `${NAME}` with `NAME` not set.
    UnknownParameter(String),
    /// Something other than `}`, `-`, `:-`, `+` or `:+` after the name in
    /// `${...}`, or a name part that is not a valid variable name.
    ExpectedOperator,
    /// A `${` without its closing `}`.
    MismatchedBraces,
}

impl fmt::Display for ExpandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExpandError::UnknownParameter(name) => write!(f, "Unknown parameter: {name}"),
            ExpandError::ExpectedOperator => f.write_str("Expected operator"),
            ExpandError::MismatchedBraces => f.write_str("Mismatched braces"),
        }
    }
}

impl std::error::Error for ExpandError {}

/// What a `${NAME...}` group does with the variable's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    /// `${NAME}`: the value; an error when unset.
    Value,
    /// `${NAME-def}` / `${NAME:-def}`: the value, else the argument.
    Default,
    /// `${NAME+alt}` / `${NAME:+alt}`: the argument if set, else nothing.
    Alternate,
}

/// An operator and whether it treats an empty value as unset (the `:` forms).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Operator {
    op: Op,
    colon: bool,
}

/// An open `${` group. `start` is where its text begins in the output.
#[derive(Debug)]
enum Frame {
    /// Collecting (and expanding) the name part, up to `}`, `:`, `-` or `+`.
    Name { start: usize },
    /// Collecting (and expanding) the argument after the operator, up to `}`.
    Arg {
        name: String,
        operator: Operator,
        start: usize,
    },
}

fn is_name_start(c: char) -> bool {
    c == '_' || c.is_ascii_alphabetic()
}

fn is_name_char(c: char) -> bool {
    c == '_' || c.is_ascii_alphanumeric()
}

/// `[A-Za-z_][A-Za-z0-9_]*`, longest match.
fn name(input: &str) -> IResult<&str, &str> {
    recognize(pair(satisfy(is_name_start), take_while(is_name_char))).parse(input)
}

/// The operator after a bracketed name; a closing `}` (not consumed) means
/// plain substitution.
fn operator(input: &str) -> IResult<&str, Operator> {
    alt((
        value(
            Operator {
                op: Op::Default,
                colon: true,
            },
            tag(":-"),
        ),
        value(
            Operator {
                op: Op::Alternate,
                colon: true,
            },
            tag(":+"),
        ),
        value(
            Operator {
                op: Op::Default,
                colon: false,
            },
            tag("-"),
        ),
        value(
            Operator {
                op: Op::Alternate,
                colon: false,
            },
            tag("+"),
        ),
        value(
            Operator {
                op: Op::Value,
                colon: false,
            },
            peek(char('}')),
        ),
    ))
    .parse(input)
}

fn is_valid_name(text: &str) -> bool {
    all_consuming(name).parse(text).is_ok()
}

/// Removes and returns `out[start..]`.
fn take_tail(out: &mut String, start: usize) -> String {
    if out.is_char_boundary(start) {
        out.split_off(start)
    } else {
        String::new()
    }
}

/// Replaces `out[start..]` with `value`.
fn replace_tail(out: &mut String, start: usize, value: &str) {
    if out.is_char_boundary(start) {
        out.truncate(start);
    }
    out.push_str(value);
}

/// Expands every `$` reference in `text` against `env`, as Upstart's
/// `environ_expand` does.
///
/// Errors: [`ExpandError::UnknownParameter`] for `$NAME`/`${NAME}` with
/// `NAME` unset (also inside a default or alternate text, used or not),
/// [`ExpandError::ExpectedOperator`] for a bad operator or name inside
/// `${...}`, [`ExpandError::MismatchedBraces`] for an unclosed `${`.
pub fn expand<L: Lookup + ?Sized>(text: &str, env: &L) -> Result<String, ExpandError> {
    let mut out = String::with_capacity(text.len());
    let mut stack: Vec<Frame> = Vec::new();
    let mut rest = text;

    loop {
        // Copy plain text up to the next character that matters here.
        let stops: &[char] = match stack.last() {
            None => &['$'],
            Some(Frame::Name { .. }) => &['$', '}', ':', '-', '+'],
            Some(Frame::Arg { .. }) => &['$', '}'],
        };
        let run: IResult<&str, &str> = take_till(|c: char| stops.contains(&c)).parse(rest);
        if let Ok((after, literal)) = run {
            out.push_str(literal);
            rest = after;
        }

        if rest.is_empty() {
            return if stack.is_empty() {
                Ok(out)
            } else {
                Err(ExpandError::MismatchedBraces)
            };
        }

        if let Some(after) = rest.strip_prefix('$') {
            rest = reference(after, env, &mut out, &mut stack)?;
            continue;
        }

        match stack.pop() {
            // Only `$` stops the scan at top level, so this is unreachable;
            // copying the character keeps the loop total.
            None => {
                let mut chars = rest.chars();
                if let Some(c) = chars.next() {
                    out.push(c);
                }
                rest = chars.as_str();
            }
            Some(Frame::Name { start }) => {
                let name = take_tail(&mut out, start);
                if !is_valid_name(&name) {
                    return Err(ExpandError::ExpectedOperator);
                }
                let (after, operator) = operator(rest).map_err(|_| ExpandError::ExpectedOperator)?;
                rest = after;
                stack.push(Frame::Arg {
                    name,
                    operator,
                    start: out.len(),
                });
            }
            Some(Frame::Arg {
                name,
                operator,
                start,
            }) => {
                // The only other stop in an argument is the closing brace.
                rest = rest.strip_prefix('}').unwrap_or(rest);
                close_group(&name, operator, start, env, &mut out)?;
            }
        }
    }
}

/// Handles the text right after a `$`; returns the input left to scan.
fn reference<'a, L: Lookup + ?Sized>(
    after: &'a str,
    env: &L,
    out: &mut String,
    stack: &mut Vec<Frame>,
) -> Result<&'a str, ExpandError> {
    if let Ok((rest, key)) = name(after) {
        let value = env
            .lookup(key)
            .ok_or_else(|| ExpandError::UnknownParameter(key.to_owned()))?;
        out.push_str(value);
        Ok(rest)
    } else if let Some(rest) = after.strip_prefix("{}") {
        out.push('$');
        Ok(rest)
    } else if let Some(rest) = after.strip_prefix('{') {
        stack.push(Frame::Name { start: out.len() });
        Ok(rest)
    } else {
        // `$1`, `$ `, `$$`, a trailing `$`: the dollar is plain text and the
        // character after it is scanned normally.
        out.push('$');
        Ok(after)
    }
}

/// Resolves a complete `${name<op>arg}` whose expanded argument is
/// `out[start..]`, leaving the result there.
fn close_group<L: Lookup + ?Sized>(
    name: &str,
    operator: Operator,
    start: usize,
    env: &L,
    out: &mut String,
) -> Result<(), ExpandError> {
    let value = env.lookup(name);
    let usable = value.filter(|v| !(operator.colon && v.is_empty()));
    match operator.op {
        Op::Value => {
            let value = value.ok_or_else(|| ExpandError::UnknownParameter(name.to_owned()))?;
            replace_tail(out, start, value);
        }
        Op::Default => {
            if let Some(value) = usable {
                replace_tail(out, start, value);
            }
        }
        Op::Alternate => {
            if usable.is_none() {
                replace_tail(out, start, "");
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn env(entries: &[&str]) -> Vec<String> {
        entries.iter().map(|e| (*e).to_owned()).collect()
    }

    fn ok(text: &str, entries: &[&str]) -> String {
        match expand(text, &env(entries)) {
            Ok(s) => s,
            Err(e) => panic!("expanding {text:?}: unexpected error {e}"),
        }
    }

    fn err(text: &str, entries: &[&str]) -> ExpandError {
        match expand(text, &env(entries)) {
            Ok(s) => panic!("expanding {text:?}: expected an error, got {s:?}"),
            Err(e) => e,
        }
    }

    fn unknown(name: &str) -> ExpandError {
        ExpandError::UnknownParameter(name.to_owned())
    }

    #[test]
    fn text_without_references_is_unchanged() {
        assert_eq!(ok("", &[]), "");
        assert_eq!(ok("hello world", &[]), "hello world");
        assert_eq!(ok("{braces} and }", &[]), "{braces} and }");
        assert_eq!(ok("é€ ünïcode", &[]), "é€ ünïcode");
    }

    #[test]
    fn simple_reference() {
        let e = ["FOO=foo", "FOO_BAR1=long", "A=1"];
        assert_eq!(ok("$FOO", &e), "foo");
        assert_eq!(ok("x$FOO/y", &e), "xfoo/y");
        assert_eq!(ok("$FOO.conf", &e), "foo.conf");
        assert_eq!(ok("$FOO-$A", &e), "foo-1");
        // Longest match: `$FOO_BAR1` is one name, not `$FOO` + `_BAR1`.
        assert_eq!(ok("$FOO_BAR1", &e), "long");
        assert_eq!(ok("é$Aé", &e), "é1é");
        assert_eq!(ok("$_", &["_=u"]), "u");
    }

    #[test]
    fn simple_reference_unknown_is_an_error() {
        assert_eq!(err("$FOO", &[]), unknown("FOO"));
        // Longest match again: `$FOOx` names FOOx, which is unset.
        assert_eq!(err("$FOOx", &["FOO=1"]), unknown("FOOx"));
    }

    #[test]
    fn braced_reference() {
        let e = ["FOO=foo"];
        assert_eq!(ok("${FOO}", &e), "foo");
        assert_eq!(ok("${FOO}bar", &e), "foobar");
        assert_eq!(ok("a${FOO}b${FOO}c", &e), "afoobfooc");
        assert_eq!(err("${BAR}", &e), unknown("BAR"));
    }

    #[test]
    fn empty_value_is_set() {
        assert_eq!(ok("[$E]", &["E="]), "[]");
        assert_eq!(ok("[${E}]", &["E="]), "[]");
    }

    #[test]
    fn dash_default() {
        assert_eq!(ok("${X-def}", &[]), "def");
        assert_eq!(ok("${X-def}", &["X="]), "");
        assert_eq!(ok("${X-def}", &["X=val"]), "val");
        assert_eq!(ok("${X-}", &[]), "");
    }

    #[test]
    fn colon_dash_default() {
        assert_eq!(ok("${X:-def}", &[]), "def");
        assert_eq!(ok("${X:-def}", &["X="]), "def");
        assert_eq!(ok("${X:-def}", &["X=val"]), "val");
        assert_eq!(ok("${X:-}", &[]), "");
        assert_eq!(ok("${X:-a:b-c+d}", &[]), "a:b-c+d");
        assert_eq!(ok("${X:-{x}", &[]), "{x");
    }

    #[test]
    fn plus_alternate() {
        assert_eq!(ok("[${X+alt}]", &[]), "[]");
        assert_eq!(ok("[${X+alt}]", &["X="]), "[alt]");
        assert_eq!(ok("[${X+alt}]", &["X=val"]), "[alt]");
    }

    #[test]
    fn colon_plus_alternate() {
        assert_eq!(ok("[${X:+alt}]", &[]), "[]");
        assert_eq!(ok("[${X:+alt}]", &["X="]), "[]");
        assert_eq!(ok("[${X:+alt}]", &["X=val"]), "[alt]");
    }

    #[test]
    fn default_and_alternate_text_is_expanded() {
        let e = ["B=bee", "C=sea"];
        assert_eq!(ok("${A:-$B}", &e), "bee");
        assert_eq!(ok("${A-x${B}y}", &e), "xbeey");
        assert_eq!(ok("${B:+<$C>}", &e), "<sea>");
        assert_eq!(ok("${B+$C$C}", &e), "seasea");
    }

    #[test]
    fn nested_defaults() {
        assert_eq!(ok("${A:-${B:-x}}", &[]), "x");
        assert_eq!(ok("${A:-${B:-x}}", &["B=b"]), "b");
        assert_eq!(ok("${A:-${B:-x}}", &["A=a", "B=b"]), "a");
        assert_eq!(ok("${A:-${B:-${C:-deep}}}!", &[]), "deep!");
        assert_eq!(ok("${A:+${B:+both}}", &["A=1", "B=2"]), "both");
        assert_eq!(ok("${A:+${B:+both}}", &["A=1"]), "");
    }

    #[test]
    fn deep_nesting_does_not_overflow() {
        let depth = 100_000;
        let text = format!("{}x{}", "${A:-".repeat(depth), "}".repeat(depth));
        assert_eq!(ok(&text, &[]), "x");
        let unclosed = "${A:-".repeat(depth);
        assert_eq!(err(&unclosed, &[]), ExpandError::MismatchedBraces);
    }

    #[test]
    fn unknown_in_operator_forms_is_not_an_error() {
        assert_eq!(ok("${U-d}${U:-d}${U+a}${U:+a}", &[]), "dd");
    }

    #[test]
    fn unused_argument_is_still_expanded_like_upstart() {
        // Upstart expands the argument before looking the name up.
        assert_eq!(err("${A:-$UNSET}", &["A=1"]), unknown("UNSET"));
        assert_eq!(err("${A:+$UNSET}", &[]), unknown("UNSET"));
        assert_eq!(err("${A:-${B:-x}$C}", &["A=1"]), unknown("C"));
    }

    #[test]
    fn values_are_not_rescanned() {
        assert_eq!(ok("$A", &["A=$B"]), "$B");
        assert_eq!(ok("${A}", &["A=${B}"]), "${B}");
        assert_eq!(ok("${X:-$A}", &["A=}{$"]), "}{$");
        assert_eq!(ok("${A:-x}", &["A=a}b"]), "a}b");
    }

    #[test]
    fn empty_braces_are_a_literal_dollar() {
        assert_eq!(ok("${}", &[]), "$");
        assert_eq!(ok("a${}b", &[]), "a$b");
        assert_eq!(ok("${}{FOO}", &[]), "${FOO}");
        assert_eq!(ok("${A:-${}}", &[]), "$");
    }

    #[test]
    fn lone_dollar_is_literal() {
        assert_eq!(ok("$1", &[]), "$1");
        assert_eq!(ok("$ x", &[]), "$ x");
        assert_eq!(ok("$$", &[]), "$$");
        assert_eq!(ok("$", &[]), "$");
        assert_eq!(ok("cost: 5$", &[]), "cost: 5$");
        assert_eq!(ok("$-$/$.$é", &[]), "$-$/$.$é");
        // `$$A`: the first dollar is literal, the second starts `$A`.
        assert_eq!(ok("$$A", &["A=1"]), "$1");
        assert_eq!(ok("${A:-$}", &[]), "$");
    }

    #[test]
    fn name_part_is_expanded() {
        // `${$KEY}`: indirect reference, documented in Upstart's environ.c.
        assert_eq!(ok("${$KEY}", &["KEY=TARGET", "TARGET=hit"]), "hit");
        assert_eq!(ok("${X$N:-d}", &["N=1", "X1=one"]), "one");
        assert_eq!(err("${$KEY}", &[]), unknown("KEY"));
    }

    #[test]
    fn bad_operator() {
        assert_eq!(err("${A?x}", &["A=1"]), ExpandError::ExpectedOperator);
        assert_eq!(err("${A:x}", &["A=1"]), ExpandError::ExpectedOperator);
        assert_eq!(err("${A:}", &["A=1"]), ExpandError::ExpectedOperator);
        assert_eq!(err("${A x}", &["A=1"]), ExpandError::ExpectedOperator);
        assert_eq!(err("${1}", &[]), ExpandError::ExpectedOperator);
        assert_eq!(err("${:-x}", &[]), ExpandError::ExpectedOperator);
        assert_eq!(err("${-x}", &[]), ExpandError::ExpectedOperator);
        assert_eq!(err("${é}", &[]), ExpandError::ExpectedOperator);
        assert_eq!(err("${A:-${B?}}", &[]), ExpandError::ExpectedOperator);
    }

    #[test]
    fn mismatched_braces() {
        for text in ["${", "${A", "${A:-x", "${A-", "${A:-${B}", "${A?x", "${A:-${}"] {
            assert_eq!(
                err(text, &["A=1", "B=2"]),
                ExpandError::MismatchedBraces,
                "{text}"
            );
        }
    }

    #[test]
    fn instance_patterns_from_real_job_files() {
        let text = "$JOB${INTERFACE:+/}${INTERFACE:-}";
        assert_eq!(ok(text, &["JOB=network-interface"]), "network-interface");
        assert_eq!(
            ok(text, &["JOB=network-interface", "INTERFACE=eth0"]),
            "network-interface/eth0"
        );
        assert_eq!(
            ok(text, &["JOB=network-interface", "INTERFACE="]),
            "network-interface"
        );

        assert_eq!(ok("${cluster:-ceph}/$id", &["id=0"]), "ceph/0");
        assert_eq!(ok("${cluster:-ceph}/$id", &["cluster=prod", "id=a"]), "prod/a");
        assert_eq!(err("${cluster:-ceph}/$id", &[]), unknown("id"));

        let e = ["HELPER_TYPE=url", "INSTANCE_ID=42", "APP_ID=com.example"];
        assert_eq!(
            ok("${HELPER_TYPE}:${INSTANCE_ID}:${APP_ID}", &e),
            "url:42:com.example"
        );
        assert_eq!(
            err("${HELPER_TYPE}:${INSTANCE_ID}:${APP_ID}", &e[..2]),
            unknown("APP_ID")
        );

        assert_eq!(ok("$dev/$pid", &["dev=sda1", "pid=123"]), "sda1/123");
    }

    #[test]
    fn string_slice_lookup_last_entry_wins() {
        let e = env(&["A=1", "B=x", "A=2"]);
        assert_eq!(e.as_slice().lookup("A"), Some("2"));
        assert_eq!(e.lookup("A"), Some("2"));
        assert_eq!(expand("$A$B", e.as_slice()), Ok("2x".to_owned()));

        // A bare `KEY` entry means unset, and it wins when it is last.
        let e = env(&["A=1", "A"]);
        assert_eq!(e.lookup("A"), None);
        assert_eq!(expand("$A", &e), Err(unknown("A")));
        let e = env(&["A", "A=3"]);
        assert_eq!(e.lookup("A"), Some("3"));

        // Values may contain `=`; keys are compared whole.
        let e = env(&["A=x=y", "AB=no"]);
        assert_eq!(e.lookup("A"), Some("x=y"));
        assert_eq!(e.lookup("AB"), Some("no"));
        assert_eq!(e.lookup("B"), None);
        assert_eq!(e.lookup(""), None);
    }

    #[test]
    fn map_lookups() {
        let mut h = HashMap::new();
        h.insert("A".to_owned(), "h".to_owned());
        assert_eq!(expand("$A", &h), Ok("h".to_owned()));
        assert_eq!(expand("$B", &h), Err(unknown("B")));

        let mut b = BTreeMap::new();
        b.insert("A".to_owned(), "b".to_owned());
        assert_eq!(expand("${A}", &b), Ok("b".to_owned()));

        assert_eq!(expand("${A:-none}", &EmptyEnv), Ok("none".to_owned()));
        assert_eq!(expand("$A", &EmptyEnv), Err(unknown("A")));
        assert_eq!(expand("$A", &&b), Ok("b".to_owned()));
    }

    #[test]
    fn display_messages() {
        assert_eq!(unknown("FOO").to_string(), "Unknown parameter: FOO");
        assert_eq!(ExpandError::ExpectedOperator.to_string(), "Expected operator");
        assert_eq!(ExpandError::MismatchedBraces.to_string(), "Mismatched braces");
        let boxed: Box<dyn std::error::Error> = Box::new(ExpandError::MismatchedBraces);
        assert_eq!(boxed.to_string(), "Mismatched braces");
    }

    #[test]
    fn large_inputs_are_linear() {
        let long = "v".repeat(10_000);
        let e = vec![format!("A={long}")];
        let started = Instant::now();
        let text = "$A".repeat(2_000);
        assert_eq!(expand(&text, &e).map(|s| s.len()), Ok(20_000_000));
        let text = "${B:-${A}}".repeat(2_000);
        assert_eq!(expand(&text, &e).map(|s| s.len()), Ok(20_000_000));
        let text = "$".repeat(1_000_000);
        assert_eq!(expand(&text, &e).map(|s| s.len()), Ok(1_000_000));
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    proptest::proptest! {
        #[test]
        fn never_panics(text in "[${}:+\\-?A-Ca-c_1 é]{0,40}") {
            let _ = expand(&text, &env(&["A=1", "B=", "C=${A}"]));
        }

        #[test]
        fn text_without_dollar_is_identity(text in "[^$]{0,40}") {
            proptest::prop_assert_eq!(expand(&text, &EmptyEnv), Ok(text.clone()));
        }
    }
}

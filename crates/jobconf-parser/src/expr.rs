//! `start on` / `stop on` expressions (spec §1.5): the tree and its printed
//! forms. Parsing lives with the other stanzas in [`crate::parse`].

use std::fmt;

use serde::{Deserialize, Serialize};

/// An event expression: `and`/`or` of event matches.
///
/// With serde it is written as its job-file text ([`EventExpr::render`])
/// and read back by the parser: compact, readable in saved state, and free
/// of the nesting limits of recursive formats.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventExpr {
    Match(EventMatch),
    And(Box<EventExpr>, Box<EventExpr>),
    Or(Box<EventExpr>, Box<EventExpr>),
}

/// `EVENT-NAME ARG…`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventMatch {
    /// Compared byte for byte with an event's name (no globbing of names).
    pub name: String,
    /// Positional arguments first, then named ones (the parser enforces it).
    pub args: Vec<MatchArg>,
}

/// One argument of an event match. Values are unexpanded patterns: they are
/// `$`-expanded, then matched as globs, at match time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MatchArg {
    /// `VALUE`: matched against the value of the event's i-th variable.
    Positional(String),
    /// `KEY=VALUE`.
    Equals(String, String),
    /// `KEY!=VALUE`.
    NotEquals(String, String),
}

impl MatchArg {
    /// Classifies an argument token as Upstart's `event_operator_match`
    /// does: no `=` is positional; otherwise the first `=` splits key and
    /// value, and a key ending in `!` makes it a negated match.
    pub fn from_token(token: &str) -> MatchArg {
        match token.find('=') {
            None => MatchArg::Positional(token.to_string()),
            Some(eq) => {
                let (key, value) = (&token[..eq], &token[eq + 1..]);
                match key.strip_suffix('!') {
                    Some(k) => MatchArg::NotEquals(k.to_string(), value.to_string()),
                    None => MatchArg::Equals(key.to_string(), value.to_string()),
                }
            }
        }
    }

    /// The token as written in the job file (before quoting).
    pub fn to_token(&self) -> String {
        match self {
            MatchArg::Positional(v) => v.clone(),
            MatchArg::Equals(k, v) => format!("{k}={v}"),
            MatchArg::NotEquals(k, v) => format!("{k}!={v}"),
        }
    }

    /// True for `KEY=VALUE` and `KEY!=VALUE`.
    pub fn is_named(&self) -> bool {
        !matches!(self, MatchArg::Positional(_))
    }
}

impl Serialize for EventExpr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.render())
    }
}

impl<'de> Deserialize<'de> for EventExpr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<EventExpr, D::Error> {
        let text = String::deserialize(d)?;
        let job = crate::parse_job(format!("start on {text}\n").as_bytes())
            .map_err(|e| serde::de::Error::custom(format!("event expression {text:?}: {e}")))?;
        job.start_on()
            .map(crate::PackedExpr::unpack)
            .ok_or_else(|| serde::de::Error::custom("empty event expression"))
    }
}

impl EventExpr {
    /// Depth of the tree (a lone match is 1).
    pub fn depth(&self) -> usize {
        match self {
            EventExpr::Match(_) => 1,
            EventExpr::And(l, r) | EventExpr::Or(l, r) => 1 + l.depth().max(r.depth()),
        }
    }

    /// Every event match, left to right.
    pub fn matches(&self) -> Vec<&EventMatch> {
        let mut out = Vec::new();
        self.collect(&mut out);
        out
    }

    fn collect<'a>(&'a self, out: &mut Vec<&'a EventMatch>) {
        match self {
            EventExpr::Match(m) => out.push(m),
            EventExpr::And(l, r) | EventExpr::Or(l, r) => {
                l.collect(out);
                r.collect(out);
            }
        }
    }

    /// The expression in job-file syntax, quoting what needs quoting, so that
    /// parsing it again gives the same tree. Always fully bracketed.
    pub fn render(&self) -> String {
        let mut s = String::new();
        self.render_into(&mut s);
        s
    }

    fn render_into(&self, s: &mut String) {
        match self {
            EventExpr::Match(m) => {
                s.push_str(&quote_operand(&m.name));
                for a in &m.args {
                    s.push(' ');
                    s.push_str(&quote_operand(&a.to_token()));
                }
            }
            EventExpr::And(l, r) | EventExpr::Or(l, r) => {
                let op = if matches!(self, EventExpr::And(..)) {
                    " and "
                } else {
                    " or "
                };
                s.push('(');
                l.render_into(s);
                s.push_str(op);
                r.render_into(s);
                s.push(')');
            }
        }
    }
}

impl fmt::Display for EventExpr {
    /// Upstart's `show-config` / `start_on` property form: fully
    /// parenthesised infix, arguments printed as they are (unquoted), e.g.
    /// `(A and (B FOO=BAR or starting C x=y))`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EventExpr::Match(m) => {
                f.write_str(&m.name)?;
                for a in &m.args {
                    write!(f, " {}", a.to_token())?;
                }
                Ok(())
            }
            EventExpr::And(l, r) => write!(f, "({l} and {r})"),
            EventExpr::Or(l, r) => write!(f, "({l} or {r})"),
        }
    }
}

/// Quotes an operand of an event expression so the tokenizer reads it back
/// unchanged (`and`/`or` are quoted so they stay operands).
pub(crate) fn quote_operand(token: &str) -> String {
    if token == "and" || token == "or" {
        return format!("\"{token}\"");
    }
    crate::render::quote_token(token, b"()")
}

#[cfg(test)]
mod tests {
    use crate::{MAX_EXPR_DEPTH, parse_job};

    #[test]
    fn serde_form_is_the_text_and_survives_any_accepted_depth() {
        let mut text = "e0".to_string();
        for i in 1..MAX_EXPR_DEPTH {
            text = format!("({text} or e{i})");
        }
        let job = parse_job(format!("start on {text}\n").as_bytes()).unwrap();
        let json = serde_json::to_string(&job).unwrap();
        let back: crate::JobConf = serde_json::from_str(&json).unwrap();
        assert_eq!(back, job);
        let small = parse_job(b"start on a X=\"1 2\" and (b or c)\n").unwrap();
        assert_eq!(
            serde_json::to_value(small.start_on()).unwrap(),
            "(a \"X=1 2\" and (b or c))"
        );
    }
}

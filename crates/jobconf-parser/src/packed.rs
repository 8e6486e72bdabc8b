//! [`PackedExpr`]: an event expression packed into one shared buffer, the
//! form a [`JobConf`](crate::JobConf) keeps and the engine matches against.
//!
//! A tree of [`EventExpr`] costs an allocation per operand, per name, per
//! argument list and per argument; a job with a few `and`s and `or`s holds
//! a kilobyte that way. Packed, the same expression is one allocation of
//! about the size of its text.
//!
//! The buffer holds the nodes in post-order (operands before their
//! operator), so that evaluation is one pass with a stack and the matches
//! come left to right:
//!
//! ```text
//! node  := AND | OR | MATCH len(args) str(name) arg*
//! arg   := POSITIONAL str(value) | EQUALS str(key) str(value) | NOT_EQUALS str(key) str(value)
//! str   := len bytes
//! len   := unsigned LEB128
//! ```
//!
//! (Lengths and strings are encoded as in the crate's `bytes` module.)

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::bytes::{Reader, Writer};
use crate::expr::{EventExpr, EventMatch, MatchArg};

const AND: u8 = 0;
const OR: u8 = 1;
const MATCH: u8 = 2;
const POSITIONAL: u8 = 0;
const EQUALS: u8 = 1;
const NOT_EQUALS: u8 = 2;

/// An event expression packed into one shared, immutable buffer (module
/// documentation). Cloning shares the buffer. Serialises as its job-file
/// text, like [`EventExpr`].
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct PackedExpr(Arc<[u8]>);

/// A node of a [`PackedExpr`], in post-order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PackedNode<'a> {
    Match(PackedMatch<'a>),
    /// `and` of the two values below it on the stack.
    And,
    /// `or` of the two values below it on the stack.
    Or,
}

/// `EVENT-NAME ARG…` inside a [`PackedExpr`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackedMatch<'a> {
    /// Compared byte for byte with an event's name.
    pub name: &'a str,
    count: usize,
    args: &'a [u8],
}

/// An argument of a [`PackedMatch`]: [`MatchArg`], borrowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArgRef<'a> {
    Positional(&'a str),
    Equals(&'a str, &'a str),
    NotEquals(&'a str, &'a str),
}

impl ArgRef<'_> {
    pub fn to_owned(self) -> MatchArg {
        match self {
            ArgRef::Positional(v) => MatchArg::Positional(v.into()),
            ArgRef::Equals(k, v) => MatchArg::Equals(k.into(), v.into()),
            ArgRef::NotEquals(k, v) => MatchArg::NotEquals(k.into(), v.into()),
        }
    }
}

fn pack(e: &EventExpr, out: &mut Writer) {
    match e {
        EventExpr::Match(m) => {
            out.byte(MATCH);
            out.len(m.args.len());
            out.str(&m.name);
            for a in &m.args {
                match a {
                    MatchArg::Positional(v) => {
                        out.byte(POSITIONAL);
                        out.str(v);
                    }
                    MatchArg::Equals(k, v) | MatchArg::NotEquals(k, v) => {
                        let eq = matches!(a, MatchArg::Equals(..));
                        out.byte(if eq { EQUALS } else { NOT_EQUALS });
                        out.str(k);
                        out.str(v);
                    }
                }
            }
        }
        EventExpr::And(l, r) | EventExpr::Or(l, r) => {
            pack(l, out);
            pack(r, out);
            out.byte(if matches!(e, EventExpr::And(..)) { AND } else { OR });
        }
    }
}

fn arg<'a>(r: &mut Reader<'a>) -> Option<ArgRef<'a>> {
    Some(match r.byte()? {
        POSITIONAL => ArgRef::Positional(r.str()),
        EQUALS => ArgRef::Equals(r.str(), r.str()),
        _ => ArgRef::NotEquals(r.str(), r.str()),
    })
}

/// The nodes of a [`PackedExpr`], in post-order.
#[derive(Debug, Clone)]
pub struct Nodes<'a>(Reader<'a>);

impl<'a> Iterator for Nodes<'a> {
    type Item = PackedNode<'a>;

    fn next(&mut self) -> Option<PackedNode<'a>> {
        let r = &mut self.0;
        Some(match r.byte()? {
            AND => PackedNode::And,
            OR => PackedNode::Or,
            _ => {
                let count = r.len();
                let name = r.str();
                let start = r.0;
                for _ in 0..count {
                    if arg(r).is_none() {
                        break;
                    }
                }
                let args = &start[..start.len() - r.0.len()];
                PackedNode::Match(PackedMatch { name, count, args })
            }
        })
    }
}

/// The arguments of a [`PackedMatch`], in order.
#[derive(Debug, Clone)]
pub struct Args<'a> {
    reader: Reader<'a>,
    left: usize,
}

impl<'a> Iterator for Args<'a> {
    type Item = ArgRef<'a>;

    fn next(&mut self) -> Option<ArgRef<'a>> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        arg(&mut self.reader)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(self.left))
    }
}

impl<'a> PackedMatch<'a> {
    /// Positional arguments first, then named ones.
    pub fn args(&self) -> Args<'a> {
        Args {
            reader: Reader(self.args),
            left: self.count,
        }
    }

    /// The first argument, if any.
    pub fn first_arg(&self) -> Option<ArgRef<'a>> {
        self.args().next()
    }
}

impl PackedExpr {
    /// Packs a tree.
    pub fn new(e: &EventExpr) -> PackedExpr {
        let mut out = Writer(Vec::new());
        pack(e, &mut out);
        PackedExpr(out.0.into())
    }

    /// The nodes in post-order: each match, then `and`/`or` once both its
    /// operands are done; the root comes last.
    pub fn nodes(&self) -> Nodes<'_> {
        Nodes(Reader(&self.0))
    }

    /// The matches, left to right.
    pub fn matches(&self) -> impl Iterator<Item = PackedMatch<'_>> {
        self.nodes().filter_map(|n| match n {
            PackedNode::Match(m) => Some(m),
            _ => None,
        })
    }

    /// The tree.
    pub fn unpack(&self) -> EventExpr {
        let mut stack: Vec<EventExpr> = Vec::new();
        for node in self.nodes() {
            let e = match node {
                PackedNode::Match(m) => EventExpr::Match(EventMatch {
                    name: m.name.into(),
                    args: m.args().map(ArgRef::to_owned).collect(),
                }),
                PackedNode::And | PackedNode::Or => {
                    let (Some(r), Some(l)) = (stack.pop(), stack.pop()) else {
                        break;
                    };
                    let (l, r) = (Box::new(l), Box::new(r));
                    if node == PackedNode::And {
                        EventExpr::And(l, r)
                    } else {
                        EventExpr::Or(l, r)
                    }
                }
            };
            stack.push(e);
        }
        stack.pop().unwrap_or_else(|| {
            EventExpr::Match(EventMatch {
                name: String::new(),
                args: Vec::new(),
            })
        })
    }

    /// The expression in job-file syntax ([`EventExpr::render`]).
    pub fn render(&self) -> String {
        self.unpack().render()
    }
}

impl From<&EventExpr> for PackedExpr {
    fn from(e: &EventExpr) -> PackedExpr {
        PackedExpr::new(e)
    }
}

impl fmt::Display for PackedExpr {
    /// Upstart's `show-config` form, as [`EventExpr`]'s.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.unpack().fmt(f)
    }
}

impl fmt::Debug for PackedExpr {
    /// As the tree.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.unpack().fmt(f)
    }
}

impl Serialize for PackedExpr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.render())
    }
}

impl<'de> Deserialize<'de> for PackedExpr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<PackedExpr, D::Error> {
        EventExpr::deserialize(d).map(|e| PackedExpr::new(&e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse_job;

    fn tree(text: &str) -> EventExpr {
        parse_job(format!("start on {text}\n").as_bytes())
            .unwrap()
            .fields()
            .start_on
            .unwrap()
    }

    #[test]
    fn unpacks_to_the_same_tree() {
        for text in [
            "a",
            "a and b",
            "(a or b) and c X=1 Y!=2",
            "a or (b and (c or d))",
            "started foo JOB=bar and \"\"\\\n",
        ] {
            let e = tree(text);
            assert_eq!(PackedExpr::new(&e).unpack(), e, "{text}");
        }
    }

    #[test]
    fn any_match_argument_survives_even_if_no_token_spells_it() {
        let e = EventExpr::Match(EventMatch {
            name: "é".repeat(100),
            args: vec![
                MatchArg::Positional("x=y".into()),
                MatchArg::Equals("a!".into(), "b=c".into()),
                MatchArg::NotEquals("k=".into(), "v".repeat(300)),
            ],
        });
        assert_eq!(PackedExpr::new(&e).unpack(), e);
    }

    #[test]
    fn post_order_with_matches_left_to_right() {
        let p = PackedExpr::new(&tree("(a x and b) or c K=v"));
        let names: Vec<&str> = p.matches().map(|m| m.name).collect();
        assert_eq!(names, ["a", "b", "c"]);
        let kinds: Vec<String> = p
            .nodes()
            .map(|n| match n {
                PackedNode::Match(m) => m.name.to_string(),
                PackedNode::And => "and".into(),
                PackedNode::Or => "or".into(),
            })
            .collect();
        assert_eq!(kinds, ["a", "b", "and", "c", "or"]);
        let c = p.matches().last().unwrap();
        assert_eq!(c.args().collect::<Vec<_>>(), [ArgRef::Equals("K", "v")]);
        assert_eq!(
            p.matches().next().unwrap().first_arg(),
            Some(ArgRef::Positional("x"))
        );
    }

    #[test]
    fn a_match_costs_about_its_text() {
        let p = PackedExpr::new(&tree(
            "never-emitted-1 and (local-filesystems or remote-filesystems)",
        ));
        assert_eq!(p.0.len(), 3 * 3 + 15 + 17 + 18 + 2);
    }

    #[test]
    fn serde_form_is_the_text() {
        let p = PackedExpr::new(&tree("a X=\"1 2\" and (b or c)"));
        let json = serde_json::to_value(&p).unwrap();
        assert_eq!(json, "(a \"X=1 2\" and (b or c))");
        assert_eq!(serde_json::from_value::<PackedExpr>(json).unwrap(), p);
    }
}

//! The live form of a `start on`/`stop on` expression (spec §1.5, §2.1;
//! Upstart's `event_operator.c`): each event match remembers the event that
//! satisfied it, and holds a reference on that event until the tree is
//! reset, which is how partial `and` matches keep an event in `handling`.
//!
//! The expression itself is the job's [`PackedExpr`], shared: a tree only
//! adds the events its matches hold, and nothing at all while none holds
//! one, which is the state of almost every job most of the time. The packed
//! nodes come in post-order, so values are computed in one pass with a
//! stack as deep as the expression ([`MAX_EXPR_DEPTH`] at most, which the
//! parser guarantees).
//!
//! [`MAX_EXPR_DEPTH`]: jobconf_parser::MAX_EXPR_DEPTH

use std::hash::{DefaultHasher, Hash, Hasher};

use jobconf_parser::expand::{Lookup, expand};
use jobconf_parser::glob::glob_match;
use jobconf_parser::{ArgRef, PackedExpr, PackedNode};
use serde::{Deserialize, Serialize};

use super::event::EventId;

/// An expression with its matching state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperatorTree {
    expr: PackedExpr,
    /// The event each match holds, matches left to right; empty while no
    /// match holds one.
    #[serde(default, skip_serializing_if = "<[_]>::is_empty")]
    held: Box<[Option<EventId>]>,
}

/// A stack of values as deep as an expression, without allocating for
/// any a parser accepts (deeper ones, only built by hand, spill to the
/// heap).
struct ValueStack {
    bits: [u64; 5],
    len: usize,
    spill: Vec<bool>,
}

impl ValueStack {
    fn new() -> ValueStack {
        ValueStack {
            bits: [0; 5],
            len: 0,
            spill: Vec::new(),
        }
    }

    fn push(&mut self, v: bool) {
        if self.len < 320 {
            let (w, b) = (self.len / 64, self.len % 64);
            self.bits[w] = (self.bits[w] & !(1 << b)) | (u64::from(v) << b);
        } else {
            self.spill.push(v);
        }
        self.len += 1;
    }

    fn pop(&mut self) -> bool {
        if self.len == 0 {
            return false;
        }
        self.len -= 1;
        if self.len < 320 {
            self.bits[self.len / 64] & (1 << (self.len % 64)) != 0
        } else {
            self.spill.pop().unwrap_or(false)
        }
    }
}

impl OperatorTree {
    /// A tree over `expr` (shared, not copied) with no match holding an
    /// event.
    pub fn new(expr: &PackedExpr) -> OperatorTree {
        OperatorTree {
            expr: expr.clone(),
            held: Box::default(),
        }
    }

    /// The expression.
    pub fn expr(&self) -> &PackedExpr {
        &self.expr
    }

    /// The value of the whole expression.
    pub fn value(&self) -> bool {
        if self.held.is_empty() {
            return false;
        }
        let mut stack = ValueStack::new();
        let mut next = 0;
        for node in self.expr.nodes() {
            let v = match node {
                PackedNode::Match(_) => {
                    next += 1;
                    self.held.get(next - 1).is_some_and(Option::is_some)
                }
                PackedNode::And => stack.pop() & stack.pop(),
                PackedNode::Or => stack.pop() | stack.pop(),
            };
            stack.push(v);
        }
        stack.pop()
    }

    /// The event names the expression mentions.
    pub fn event_names(&self) -> impl Iterator<Item = &str> {
        self.expr.matches().map(|m| m.name)
    }

    /// The dispatch-index keys of the expression: for each match, its event
    /// name, refined by its first positional argument when that is a
    /// literal (see [`index_key`]), so that `started foo` is only offered
    /// `started` events whose first value is `foo`.
    pub fn index_keys(&self) -> impl Iterator<Item = IndexKey> + '_ {
        self.expr.matches().map(|m| match m.first_arg() {
            Some(ArgRef::Positional(p)) if is_literal(p) => index_key(m.name, Some(p)),
            _ => index_key(m.name, None),
        })
    }

    /// The events the matches hold, one entry per reference.
    pub fn held_events(&self) -> impl Iterator<Item = EventId> + '_ {
        self.held.iter().flatten().copied()
    }

    /// Offers an event to every match that is not yet true
    /// (`event_operator_handle`). Returns how many matches took it; the
    /// caller adds that many blockers to the event.
    pub fn handle<L: Lookup + ?Sized>(&mut self, id: EventId, name: &str, env: &[String], vars: &L) -> u32 {
        let mut taken = 0;
        for (i, m) in self.expr.matches().enumerate() {
            if m.name == name
                && self.held.get(i).is_none_or(Option::is_none)
                && args_match(m.args(), env, vars)
            {
                if self.held.is_empty() {
                    self.held = vec![None; self.expr.matches().count()].into_boxed_slice();
                }
                self.held[i] = Some(id);
                taken += 1;
            }
        }
        taken
    }

    /// Clears every match (`event_operator_reset`) and returns the events
    /// whose references it held, one entry per reference.
    pub fn reset(&mut self) -> Vec<EventId> {
        std::mem::take(&mut self.held).iter().flatten().copied().collect()
    }

    /// The events that made the expression true, left to right, skipping
    /// branches that are false (`event_operator_events` and the walk of
    /// `event_operator_environment`).
    pub fn true_events(&self) -> Vec<EventId> {
        let mut out = Vec::new();
        if self.held.is_empty() {
            return out;
        }
        // Per node on the stack: its value and where its events start.
        let mut stack: Vec<(bool, usize)> = Vec::new();
        let mut next = 0;
        for node in self.expr.nodes() {
            let entry = match node {
                PackedNode::Match(_) => {
                    let start = out.len();
                    let held = self.held.get(next).copied().flatten();
                    next += 1;
                    out.extend(held);
                    (held.is_some(), start)
                }
                PackedNode::And | PackedNode::Or => {
                    let (Some((r, _)), Some((l, start))) = (stack.pop(), stack.pop()) else {
                        break;
                    };
                    let v = if node == PackedNode::And { l && r } else { l || r };
                    if !v {
                        out.truncate(start);
                    }
                    (v, start)
                }
            };
            stack.push(entry);
        }
        if !stack.pop().is_some_and(|(v, _)| v) {
            out.clear();
        }
        out
    }
}

/// A key of the engine's dispatch index: a hash of an event name, or of a
/// name and the literal its first positional argument must equal.
///
/// Two keys can collide, which only offers an event to a class that does
/// not listen to it: its trees compare names and arguments themselves, so
/// that offer takes nothing. A hash costs no memory per key, and no
/// allocation per event dispatched.
pub type IndexKey = u64;

/// The index key of an event name, or of a name and the literal its first
/// positional argument must equal (`str` hashes end with a byte no UTF-8
/// text holds, so the pair cannot read as another name).
pub fn index_key(name: &str, first: Option<&str>) -> IndexKey {
    let mut h = DefaultHasher::new();
    name.hash(&mut h);
    if let Some(v) = first {
        v.hash(&mut h);
    }
    h.finish()
}

/// A pattern that matches only itself: no glob characters, no escapes and
/// nothing to expand.
fn is_literal(pattern: &str) -> bool {
    !pattern.contains(['*', '?', '[', '\\', '$'])
}

/// The value of an `env` entry (`KEY=VALUE` → `VALUE`).
fn entry_value(entry: &str) -> &str {
    entry.split_once('=').map_or(entry, |(_, v)| v)
}

fn lookup<'a>(env: &'a [String], key: &str) -> Option<&'a str> {
    env.iter()
        .find_map(|e| e.strip_prefix(key).and_then(|rest| rest.strip_prefix('=')))
}

/// `event_operator_match` for the arguments (the name already matched):
/// the i-th positional pattern against the i-th variable's value, `KEY=`
/// and `KEY!=` against the variable of that name (missing: no match, for
/// `!=` too). Patterns are `$`-expanded from `vars` first; an expansion
/// error is no match.
pub fn args_match<'a, L: Lookup + ?Sized>(
    args: impl IntoIterator<Item = ArgRef<'a>>,
    env: &[String],
    vars: &L,
) -> bool {
    args.into_iter().enumerate().all(|(i, arg)| match arg {
        ArgRef::Positional(pat) => match (env.get(i), expand(pat, vars)) {
            (Some(entry), Ok(p)) => glob_match(&p, entry_value(entry)),
            _ => false,
        },
        ArgRef::Equals(key, pat) => match (lookup(env, key), expand(pat, vars)) {
            (Some(v), Ok(p)) => glob_match(&p, v),
            _ => false,
        },
        ArgRef::NotEquals(key, pat) => match (lookup(env, key), expand(pat, vars)) {
            (Some(v), Ok(p)) => !glob_match(&p, v),
            _ => false,
        },
    })
}

#[cfg(test)]
mod tests {
    //! The matcher cases of Upstart's `test_event_operator.c` (spec §6.1).
    use super::*;
    use jobconf_parser::expand::EmptyEnv;
    use jobconf_parser::parse_job;

    fn env(s: &[&str]) -> Vec<String> {
        s.iter().map(|e| e.to_string()).collect()
    }

    fn tree(expr: &str) -> OperatorTree {
        let job = parse_job(format!("start on {expr}\n").as_bytes()).unwrap();
        OperatorTree::new(job.start_on().unwrap())
    }

    /// Whether a one-event expression matches the event.
    fn matches(expr: &str, name: &str, ev: &[&str], vars: &[&str]) -> bool {
        let mut t = tree(expr);
        t.handle(EventId(1), name, &env(ev), &env(vars)) > 0
    }

    #[test]
    fn different_names_do_not_match() {
        assert!(!matches("foo", "bar", &[], &[]));
    }

    #[test]
    fn same_name_matches() {
        assert!(matches("foo", "foo", &[], &[]));
    }

    #[test]
    fn identical_key_value_lists_match() {
        assert!(matches(
            "foo FRODO=foo BILBO=bar",
            "foo",
            &["FRODO=foo", "BILBO=bar"],
            &[]
        ));
    }

    #[test]
    fn wrong_values_do_not_match() {
        assert!(!matches(
            "foo FRODO=foo BILBO=baz",
            "foo",
            &["FRODO=foo", "BILBO=bar"],
            &[]
        ));
    }

    #[test]
    fn negated_match_of_a_different_value_matches() {
        assert!(matches("foo BILBO!=baz", "foo", &["FRODO=foo", "BILBO=bar"], &[]));
    }

    #[test]
    fn negated_match_of_the_same_value_does_not_match() {
        assert!(!matches(
            "foo BILBO!=bar",
            "foo",
            &["FRODO=foo", "BILBO=bar"],
            &[]
        ));
    }

    #[test]
    fn negated_match_of_a_missing_variable_does_not_match() {
        assert!(!matches("foo SAM!=bar", "foo", &["FRODO=foo", "BILBO=bar"], &[]));
    }

    #[test]
    fn operator_list_shorter_than_event_matches() {
        assert!(matches("foo FRODO=foo", "foo", &["FRODO=foo", "BILBO=bar"], &[]));
    }

    #[test]
    fn positional_arguments_match_in_order() {
        let ev = &["FRODO=foo", "BILBO=bar", "MERRY=baz"];
        assert!(matches("foo foo bar baz", "foo", ev, &[]));
        assert!(!matches("foo bar foo baz", "foo", ev, &[]), "wrong order");
        assert!(matches("foo foo bar", "foo", ev, &[]), "fewer positionals");
        assert!(
            !matches("foo foo bar baz quux", "foo", ev, &[]),
            "more positionals than variables"
        );
    }

    #[test]
    fn named_variables_in_any_order_match() {
        assert!(matches(
            "foo BILBO=bar FRODO=foo",
            "foo",
            &["FRODO=foo", "BILBO=bar"],
            &[]
        ));
    }

    #[test]
    fn positional_then_named_matches() {
        assert!(matches(
            "foo foo bar PIPPIN=quux",
            "foo",
            &["FRODO=foo", "BILBO=bar", "PIPPIN=quux"],
            &[]
        ));
    }

    #[test]
    fn unknown_variable_does_not_match() {
        assert!(!matches("foo MERRY=baz", "foo", &["FRODO=foo", "BILBO=bar"], &[]));
    }

    #[test]
    fn globs_in_named_and_positional_arguments() {
        assert!(matches("foo BILBO=b?r", "foo", &["FRODO=foo", "BILBO=bar"], &[]));
        assert!(matches("foo f*", "foo", &["FRODO=foo", "BILBO=bar"], &[]));
        assert!(matches("runlevel [!06]", "runlevel", &["RUNLEVEL=2"], &[]));
        assert!(!matches("runlevel [!06]", "runlevel", &["RUNLEVEL=0"], &[]));
    }

    #[test]
    fn variables_expand_from_the_given_environment() {
        assert!(matches("foo BILBO=$FOO", "foo", &["BILBO=foo"], &["FOO=foo"]));
        assert!(!matches("foo BILBO=$WIBBLE", "foo", &["BILBO=foo"], &["FOO=foo"]));
    }

    #[test]
    fn start_on_expands_from_nothing_so_only_defaults_work() {
        let mut t = tree("foo A=$A");
        assert_eq!(t.handle(EventId(1), "foo", &env(&["A=x"]), &EmptyEnv), 0);
        let mut t = tree("foo A=${A:-x}");
        assert_eq!(t.handle(EventId(1), "foo", &env(&["A=x"]), &EmptyEnv), 1);
    }

    /// `(foo and bar) or baz BAR=$WIBBLE`, step by step as in §6.1.
    #[test]
    fn tree_handling_blocks_resets_and_releases() {
        let mut t = tree("(foo and bar) or baz BAR=$WIBBLE");
        let vars = env(&["WIBBLE=wobble"]);
        assert_eq!(
            t.handle(EventId(1), "frodo", &[], &vars),
            0,
            "non-matching event leaves the tree"
        );
        assert!(!t.value());
        assert_eq!(
            t.handle(EventId(2), "foo", &[], &vars),
            1,
            "foo sets its leaf and blocks once"
        );
        assert!(!t.value());
        assert_eq!(
            t.handle(EventId(3), "foo", &[], &vars),
            0,
            "a second foo is ignored"
        );
        assert_eq!(t.handle(EventId(4), "bar", &[], &vars), 1);
        assert!(t.value(), "bar completes the and");
        assert_eq!(t.true_events(), vec![EventId(2), EventId(4)]);
        assert_eq!(t.reset(), vec![EventId(2), EventId(4)]);
        assert!(!t.value());
        assert!(t.true_events().is_empty());
        assert_eq!(
            t.handle(EventId(5), "baz", &env(&["BAR=wobble"]), &vars),
            1,
            "environment used for $WIBBLE"
        );
        assert!(t.value());
    }

    #[test]
    fn true_events_skip_false_branches() {
        let mut t = tree("(a and b) or c");
        t.handle(EventId(1), "a", &[], &EmptyEnv);
        t.handle(EventId(2), "c", &[], &EmptyEnv);
        assert!(t.value());
        assert_eq!(
            t.true_events(),
            vec![EventId(2)],
            "a is held but its branch is false"
        );
        assert_eq!(t.reset().len(), 2, "both references are released");
    }
}

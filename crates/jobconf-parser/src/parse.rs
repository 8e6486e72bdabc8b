//! Stanzas (spec §1.4) and event expressions (spec §1.5): the job-file
//! grammar over the [`Lexer`], one small function per stanza as in Upstart's
//! `init/parse_job.c`, with the same error positions.
//!
//! Error positions follow Upstart: a bad value is reported at the start of
//! the value, an extra argument at that argument, a missing one where it was
//! expected (usually the end of the line), an unknown sub-keyword at the
//! start of the sub-keyword.

use crate::error::{ErrorKind, ParseError};
use crate::expr::{EventExpr, EventMatch, MatchArg};
use crate::job::{
    Bound, Console, DEFAULT_CGROUP_NAME, Expect, JobConf, JobFields, Limit, LimitValue, NormalExit, Process,
    ProcessKind, Resource,
};
use crate::lexer::{CNLWS, Lexer, PAREN_CNLWS, Res};
use crate::number::{strtol, strtoul};
use crate::signal::Signal;

/// The deepest event expression accepted (a lone event is depth 1).
/// Real job files stay below 10; the limit keeps every later walk of the
/// tree (matching, printing, dropping) far from the stack's end.
pub const MAX_EXPR_DEPTH: usize = 256;

/// Parses a job file's text into a fresh job.
pub fn parse_job(text: &[u8]) -> Result<JobConf, ParseError> {
    let mut job = JobFields::default();
    parse_fields(&mut job, text)?;
    Ok(job.into())
}

/// Parses `text` into an existing job, as Upstart parses an override file
/// "into the same job object after the conf file". On error `job` may hold
/// part of the text: callers wanting all-or-nothing parse into a copy (see
/// [`crate::apply_override`]).
pub fn parse_into(job: &mut JobConf, text: &[u8]) -> Result<(), ParseError> {
    let mut fields = std::mem::take(job).into();
    let result = parse_fields(&mut fields, text);
    *job = fields.into();
    result
}

/// [`parse_into`] on the plain form.
pub(crate) fn parse_fields(job: &mut JobFields, text: &[u8]) -> Result<(), ParseError> {
    if let Some(nul) = text.iter().position(|&b| b == 0) {
        return Err(ParseError::at(text, nul, ErrorKind::NulByte));
    }
    let mut lx = Lexer::new(text);
    parse_file(job, &mut lx).map_err(|(kind, offset)| ParseError::at(text, offset, kind))
}

/// `nih_config_parse_file`.
fn parse_file(job: &mut JobFields, lx: &mut Lexer) -> Res<()> {
    while !lx.at_end() {
        lx.skip_plain_whitespace();
        if !lx.has_token() {
            lx.next_line();
            continue;
        }
        parse_stanza(job, lx)?;
    }
    Ok(())
}

/// `nih_config_parse_stanza`: the stanza name is compared raw (a quoted
/// name is unknown).
fn parse_stanza(job: &mut JobFields, lx: &mut Lexer) -> Res<()> {
    let start = lx.pos;
    let name = lx.next_token(CNLWS, false)?;
    match name.as_str() {
        "instance" => job.instance = value(lx)?,
        "description" => job.description = Some(value(lx)?),
        "author" => job.author = Some(value(lx)?),
        "version" => job.version = Some(value(lx)?),
        "usage" => job.usage = Some(value(lx)?),
        "env" => {
            let v = value(lx)?;
            job.env.push(v);
        }
        "export" => {
            let args = arg_list(lx)?;
            job.export.extend(args);
        }
        "emits" => {
            let args = arg_list(lx)?;
            job.emits.extend(args);
        }
        "start" => job.start_on = Some(on_stanza(lx)?),
        "stop" => job.stop_on = Some(on_stanza(lx)?),
        "manual" => job.start_on = None,
        "exec" => *job.process.slot(ProcessKind::Main) = Some(exec(lx)?),
        "script" => *job.process.slot(ProcessKind::Main) = Some(script(lx)?),
        "pre-start" => process(job, lx, ProcessKind::PreStart)?,
        "post-start" => process(job, lx, ProcessKind::PostStart)?,
        "pre-stop" => process(job, lx, ProcessKind::PreStop)?,
        "post-stop" => process(job, lx, ProcessKind::PostStop)?,
        "expect" => expect(job, lx)?,
        "process" => {
            let kw_pos = lx.pos;
            if keyword(lx)? != "timeout" {
                return Err((ErrorKind::UnknownStanza, kw_pos));
            }
            job.process_timeout = Some(bound(lx)?);
            lx.skip_comment()?;
        }
        "task" => {
            job.task = true;
            lx.skip_comment()?;
        }
        "kill" => kill(job, lx)?,
        "reload" => reload(job, lx)?,
        "respawn" => respawn(job, lx)?,
        "normal" => normal(job, lx)?,
        "console" => job.console = Some(console(lx)?),
        "umask" => job.umask = Some(umask(lx)?),
        "nice" => job.nice = Some(nice(lx)?),
        "oom" => job.oom_score = Some(oom(lx)?),
        "limit" => {
            let l = limit(lx)?;
            job.set_limit(l);
        }
        "chroot" => job.chroot = Some(value(lx)?),
        "chdir" => job.chdir = Some(value(lx)?),
        "pid" => {
            let kw_pos = lx.pos;
            if keyword(lx)? != "file" {
                return Err((ErrorKind::UnknownStanza, kw_pos));
            }
            job.pid_file = Some(value(lx)?);
        }
        "setuid" => job.setuid = Some(value(lx)?),
        "setgid" => job.setgid = Some(value(lx)?),
        "apparmor" => apparmor(job, lx)?,
        "cgroup" => cgroup(job, lx)?,
        // Like `manual`, Upstart's `debug` does not check the rest of the
        // line, so anything after it is read as the next stanza.
        "debug" => job.debug = true,
        _ => return Err((ErrorKind::UnknownStanza, start)),
    }
    Ok(())
}

/// One dequoted argument and the end of the line.
fn value(lx: &mut Lexer) -> Res<String> {
    let v = lx.next_arg()?;
    lx.skip_comment()?;
    Ok(v)
}

/// One or more dequoted arguments to the end of the line.
fn arg_list(lx: &mut Lexer) -> Res<Vec<String>> {
    if !lx.has_token() {
        return Err((ErrorKind::ExpectedToken, lx.pos));
    }
    lx.parse_args()
}

/// A raw sub-keyword (`on`, `exec`, `limit`, `timeout`, …), compared
/// without dequoting.
fn keyword(lx: &mut Lexer) -> Res<String> {
    lx.next_token(CNLWS, false)
}

/// `start on EXPR` / `stop on EXPR`.
fn on_stanza(lx: &mut Lexer) -> Res<EventExpr> {
    let kw_pos = lx.pos;
    if keyword(lx)? != "on" {
        return Err((ErrorKind::UnknownStanza, kw_pos));
    }
    parse_on(lx)
}

/// `parse_exec`.
fn exec(lx: &mut Lexer) -> Res<Process> {
    if !lx.has_token() {
        return Err((ErrorKind::ExpectedToken, lx.pos));
    }
    Ok(Process {
        command: lx.parse_command()?,
        script: false,
    })
}

/// `parse_script`: only a comment may follow `script` on its line.
fn script(lx: &mut Lexer) -> Res<Process> {
    lx.skip_comment()?;
    Ok(Process {
        command: lx.parse_block("script")?,
        script: true,
    })
}

/// `pre-start exec|script` and the other three.
fn process(job: &mut JobFields, lx: &mut Lexer, kind: ProcessKind) -> Res<()> {
    let kw_pos = lx.pos;
    let p = match keyword(lx)?.as_str() {
        "exec" => exec(lx)?,
        "script" => script(lx)?,
        _ => return Err((ErrorKind::UnknownStanza, kw_pos)),
    };
    *job.process.slot(kind) = Some(p);
    Ok(())
}

/// `expect stop|daemon|fork|none`, or upshot's `expect timeout BOUND`.
fn expect(job: &mut JobFields, lx: &mut Lexer) -> Res<()> {
    let pos = lx.pos;
    job.expect = match lx.next_arg()?.as_str() {
        "stop" => Expect::Stop,
        "daemon" => Expect::Daemon,
        "fork" => Expect::Fork,
        "none" => Expect::None,
        "timeout" => {
            job.expect_timeout = Some(bound(lx)?);
            return lx.skip_comment();
        }
        _ => return Err((ErrorKind::UnknownStanza, pos)),
    };
    lx.skip_comment()
}

/// `SECONDS|unlimited` of upshot's timeout stanzas (a non-negative number,
/// like `kill timeout`).
fn bound(lx: &mut Lexer) -> Res<Bound> {
    let pos = lx.pos;
    let arg = lx.next_arg()?;
    if arg == "unlimited" {
        return Ok(Bound::Unlimited);
    }
    match strtol(&arg, 10) {
        Some(n) if n >= 0 => Ok(Bound::Seconds(n as u64)),
        _ => Err((ErrorKind::IllegalInterval, pos)),
    }
}

/// A signal by name (with or without `SIG`) or a decimal number up to
/// `INT_MAX`.
fn signal_value(lx: &mut Lexer) -> Res<Signal> {
    let pos = lx.pos;
    let arg = lx.next_arg()?;
    if let Some(sig) = Signal::from_name(&arg) {
        return Ok(sig);
    }
    match strtoul(&arg, 10) {
        Some(n) if n <= i32::MAX as u64 => Ok(Signal(n as i32)),
        _ => Err((ErrorKind::IllegalSignal, pos)),
    }
}

/// A non-negative `long` in seconds.
fn seconds(lx: &mut Lexer, bad: ErrorKind) -> Res<u64> {
    let pos = lx.pos;
    let arg = lx.next_arg()?;
    match strtol(&arg, 10) {
        Some(n) if n >= 0 => Ok(n as u64),
        _ => Err((bad, pos)),
    }
}

/// `kill timeout N` / `kill signal SIG`.
fn kill(job: &mut JobFields, lx: &mut Lexer) -> Res<()> {
    let kw_pos = lx.pos;
    match keyword(lx)?.as_str() {
        "timeout" => job.kill_timeout = seconds(lx, ErrorKind::IllegalInterval)?,
        "signal" => job.kill_signal = signal_value(lx)?,
        _ => return Err((ErrorKind::UnknownStanza, kw_pos)),
    }
    lx.skip_comment()
}

/// `reload signal SIG` (1.10+).
fn reload(job: &mut JobFields, lx: &mut Lexer) -> Res<()> {
    let kw_pos = lx.pos;
    if keyword(lx)? != "signal" {
        return Err((ErrorKind::UnknownStanza, kw_pos));
    }
    job.reload_signal = signal_value(lx)?;
    lx.skip_comment()
}

/// `respawn` / `respawn limit COUNT INTERVAL|unlimited`. Setting a limit does
/// not enable respawning.
fn respawn(job: &mut JobFields, lx: &mut Lexer) -> Res<()> {
    if !lx.has_token() {
        job.respawn = true;
        return lx.skip_comment();
    }
    let kw_pos = lx.pos;
    if keyword(lx)? != "limit" {
        return Err((ErrorKind::UnknownStanza, kw_pos));
    }
    let pos = lx.pos;
    let count = lx.next_arg()?;
    if count == "unlimited" {
        job.respawn_limit.count = 0;
        job.respawn_limit.interval = 0;
    } else {
        job.respawn_limit.count = match strtol(&count, 10) {
            Some(n) if n >= 0 => n as u64,
            _ => return Err((ErrorKind::IllegalLimit, pos)),
        };
        job.respawn_limit.interval = seconds(lx, ErrorKind::IllegalInterval)?;
    }
    lx.skip_comment()
}

/// `normal exit STATUS|SIGNAL…` (accumulates).
fn normal(job: &mut JobFields, lx: &mut Lexer) -> Res<()> {
    let kw_pos = lx.pos;
    if keyword(lx)? != "exit" {
        return Err((ErrorKind::UnknownStanza, kw_pos));
    }
    loop {
        let pos = lx.pos;
        let arg = lx.next_arg()?;
        let entry = match Signal::from_name(&arg) {
            Some(sig) => NormalExit::Signal(sig),
            None => match strtoul(&arg, 10) {
                Some(n) if n <= i32::MAX as u64 => NormalExit::Status(n as u32),
                _ => return Err((ErrorKind::IllegalExit, pos)),
            },
        };
        job.normal_exit.push(entry);
        if !lx.has_token() {
            break;
        }
    }
    lx.skip_comment()
}

fn console(lx: &mut Lexer) -> Res<Console> {
    let pos = lx.pos;
    let c = Console::from_name(&lx.next_arg()?).ok_or((ErrorKind::UnknownStanza, pos))?;
    lx.skip_comment()?;
    Ok(c)
}

fn umask(lx: &mut Lexer) -> Res<u32> {
    let pos = lx.pos;
    let m = match strtoul(&lx.next_arg()?, 8) {
        Some(m) if m & !0o777 == 0 => m as u32,
        _ => return Err((ErrorKind::IllegalUmask, pos)),
    };
    lx.skip_comment()?;
    Ok(m)
}

fn nice(lx: &mut Lexer) -> Res<i32> {
    let pos = lx.pos;
    let n = match strtol(&lx.next_arg()?, 10) {
        Some(n) if (-20..=19).contains(&n) => n as i32,
        _ => return Err((ErrorKind::IllegalNice, pos)),
    };
    lx.skip_comment()?;
    Ok(n)
}

/// `oom score N|never` (-1000…1000) or legacy `oom ADJ|never` (-17…15,
/// scaled to a score as Upstart does: `adj*1000/17` below zero, `/15` above).
fn oom(lx: &mut Lexer) -> Res<i32> {
    let pos = lx.pos;
    let arg = lx.next_arg()?;
    let score = if arg == "score" {
        let pos = lx.pos;
        let v = lx.next_arg()?;
        if v == "never" {
            -1000
        } else {
            match strtol(&v, 10) {
                Some(n) if (-1000..=1000).contains(&n) => n as i32,
                _ => return Err((ErrorKind::IllegalOomScore, pos)),
            }
        }
    } else if arg == "never" {
        -1000
    } else {
        match strtol(&arg, 10) {
            Some(adj) if (-17..=15).contains(&adj) => {
                let adj = adj as i32;
                adj * 1000 / if adj < 0 { 17 } else { 15 }
            }
            _ => return Err((ErrorKind::IllegalOom, pos)),
        }
    };
    lx.skip_comment()?;
    Ok(score)
}

/// `limit RESOURCE SOFT HARD`: both values are required.
fn limit(lx: &mut Lexer) -> Res<Limit> {
    let pos = lx.pos;
    let resource = Resource::from_name(&lx.next_arg()?).ok_or((ErrorKind::UnknownStanza, pos))?;
    let soft = limit_value(lx)?;
    let hard = limit_value(lx)?;
    lx.skip_comment()?;
    Ok(Limit { resource, soft, hard })
}

fn limit_value(lx: &mut Lexer) -> Res<LimitValue> {
    let pos = lx.pos;
    let arg = lx.next_arg()?;
    if arg == "unlimited" {
        return Ok(LimitValue::Unlimited);
    }
    strtoul(&arg, 10)
        .map(LimitValue::Value)
        .ok_or((ErrorKind::IllegalLimit, pos))
}

/// `apparmor load PROFILE` / `apparmor switch NAME` (1.9+).
fn apparmor(job: &mut JobFields, lx: &mut Lexer) -> Res<()> {
    let kw_pos = lx.pos;
    match keyword(lx)?.as_str() {
        "load" => job.apparmor_load = Some(lx.next_arg()?),
        "switch" => job.apparmor_switch = Some(lx.next_arg()?),
        _ => return Err((ErrorKind::UnknownStanza, kw_pos)),
    }
    lx.skip_comment()
}

/// `cgroup CONTROLLER [NAME] [KEY VALUE]` (1.13): two arguments name the
/// cgroup, three give a setting of the default cgroup, four both.
fn cgroup(job: &mut JobFields, lx: &mut Lexer) -> Res<()> {
    let controller = lx.next_arg()?;
    let mut rest = Vec::new();
    while rest.len() < 3 && lx.has_token() {
        rest.push(lx.next_arg()?);
    }
    lx.skip_comment()?;
    let mut rest = rest.into_iter();
    let (name, setting) = match (rest.next(), rest.next(), rest.next()) {
        (None, _, _) => (DEFAULT_CGROUP_NAME.to_string(), None),
        (Some(name), None, _) => (name, None),
        (Some(k), Some(v), None) => (DEFAULT_CGROUP_NAME.to_string(), Some((k, v))),
        (Some(name), Some(k), Some(v)) => (name, Some((k, v))),
    };
    job.add_cgroup(controller, name, setting);
    Ok(())
}

/// An entry of the operator stack of `parse_on`.
enum StackItem {
    /// An open parenthesis.
    Group,
    /// `and`/`or` with its left operand (and its depth) already collected.
    Op {
        and: bool,
        left: EventExpr,
        depth: usize,
    },
    /// An event match still taking arguments.
    Match(EventMatch),
}

/// The expression being built: Upstart's `parse_on` shunting of operators
/// and operands, iterative so that no input can recurse without bound.
struct OnParser {
    stack: Vec<StackItem>,
    /// The collected tree and its depth.
    root: Option<(EventExpr, usize)>,
    /// Whether the event on top has had a `KEY=VALUE` argument yet.
    named_seen: bool,
    /// Where the last token or parenthesis started: Upstart's error
    /// position for what is found wrong once the expression has ended.
    last_token_pos: usize,
}

/// `parse_on`: an event expression, which may span lines inside
/// parentheses, with comments after tokens there.
fn parse_on(lx: &mut Lexer) -> Res<EventExpr> {
    let mut on = OnParser {
        stack: Vec::new(),
        root: None,
        named_seen: false,
        last_token_pos: lx.pos,
    };
    let mut paren: usize = 0;
    loop {
        lx.skip_whitespace();
        loop {
            on.last_token_pos = lx.pos;
            match lx.peek() {
                Some(b'(') => {
                    if on.root.is_some() || matches!(on.stack.last(), Some(StackItem::Match(_))) {
                        return Err((ErrorKind::ExpectedOperator, lx.pos));
                    }
                    paren += 1;
                    on.stack.push(StackItem::Group);
                    lx.pos += 1;
                    lx.skip_whitespace();
                }
                Some(b')') => {
                    let pos = lx.pos;
                    on.collect(pos)?;
                    match on.stack.pop() {
                        Some(StackItem::Group) => {}
                        _ => return Err((ErrorKind::MismatchedParens, pos)),
                    }
                    paren = paren.saturating_sub(1);
                    lx.pos += 1;
                    lx.skip_whitespace();
                }
                _ => on.operator_or_operand(lx)?,
            }
            if !lx.has_token() {
                break;
            }
        }
        // At a comment, newline or the end: skip it; go on only inside
        // parentheses.
        lx.next_line();
        if lx.at_end() || paren == 0 {
            break;
        }
    }
    // Errors from here on are reported where the last token started.
    let last = on.last_token_pos;
    on.collect(last)?;
    if !on.stack.is_empty() {
        return Err((ErrorKind::MismatchedParens, lx.pos));
    }
    on.root
        .take()
        .map(|(e, _)| e)
        .ok_or((ErrorKind::ExpectedEvent, last))
}

impl OnParser {
    /// `parse_on_operator` / `parse_on_operand`.
    fn operator_or_operand(&mut self, lx: &mut Lexer) -> Res<()> {
        let start = lx.pos;
        let raw = lx.next_token(PAREN_CNLWS, false)?;
        let and = match raw.as_str() {
            "and" => true,
            "or" => false,
            _ => {
                // An operand: re-read it dequoted.
                lx.pos = start;
                let arg = lx.next_token(PAREN_CNLWS, true)?;
                return self.operand(arg, lx.pos);
            }
        };
        self.collect(start)?;
        let (left, depth) = self.root.take().ok_or((ErrorKind::ExpectedEvent, start))?;
        self.stack.push(StackItem::Op { and, left, depth });
        Ok(())
    }

    /// An event name, or an argument of the event on top of the stack.
    fn operand(&mut self, arg: String, end: usize) -> Res<()> {
        match self.stack.last_mut() {
            Some(StackItem::Match(m)) => {
                let a = MatchArg::from_token(&arg);
                if a.is_named() {
                    self.named_seen = true;
                } else if self.named_seen {
                    return Err((ErrorKind::ExpectedVariable, end));
                }
                m.args.push(a);
            }
            _ => {
                self.named_seen = false;
                self.stack.push(StackItem::Match(EventMatch {
                    name: arg,
                    args: Vec::new(),
                }));
            }
        }
        Ok(())
    }

    /// `parse_on_collect`: folds the stack down to the innermost open group
    /// into `root`; `pos` is where an error is reported.
    fn collect(&mut self, pos: usize) -> Res<()> {
        while let Some(item) = self.stack.pop() {
            if matches!(item, StackItem::Group) {
                self.stack.push(item);
                break;
            }
            self.root = Some(match (item, self.root.take()) {
                (StackItem::Op { and, left, depth }, Some((right, rdepth))) => {
                    let d = 1 + depth.max(rdepth);
                    if d > MAX_EXPR_DEPTH {
                        return Err((ErrorKind::TooDeep, pos));
                    }
                    let (l, r) = (Box::new(left), Box::new(right));
                    (
                        if and {
                            EventExpr::And(l, r)
                        } else {
                            EventExpr::Or(l, r)
                        },
                        d,
                    )
                }
                (StackItem::Op { .. }, None) => return Err((ErrorKind::ExpectedEvent, pos)),
                (StackItem::Match(_), Some(_)) => return Err((ErrorKind::ExpectedOperator, pos)),
                (StackItem::Match(m), None) => (EventExpr::Match(m), 1),
                // Groups end the loop before this match.
                (StackItem::Group, root) => {
                    self.root = root;
                    break;
                }
            });
        }
        if self.root.is_none() {
            return Err((ErrorKind::ExpectedEvent, pos));
        }
        Ok(())
    }
}

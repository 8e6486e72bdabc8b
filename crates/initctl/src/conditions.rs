//! `start on`/`stop on` conditions as the Job object's `start_on` and
//! `stop_on` properties carry them (spec §3.3): a post-order (RPN) list
//! whose elements are `[EVENT, ARG…]`, `["/AND"]` or `["/OR"]`. This
//! module renders them for `show-config` (fully bracketed, spec §1.5, or
//! one line per event with `-e`) and evaluates them for `check-config`,
//! as Upstart's initctl does.

use std::collections::HashSet;
use std::ffi::CString;

const AND: &str = "/AND";
const OR: &str = "/OR";

/// Events init emits itself (spec §2.3); `check-config` never reports
/// them. (Upstart's list, plus the two session events it added later.)
const INIT_EVENTS: &[&str] = &[
    "startup",
    "debug",
    "control-alt-delete",
    "keyboard-request",
    "power-status-changed",
    "session-end",
    "child-subreaper-failed",
    "starting",
    "started",
    "stopping",
    "stopped",
];

fn is_operator(token: &str) -> bool {
    token == AND || token == OR
}

/// Events about jobs, whose first argument names the job.
fn is_job_event(event: &str) -> bool {
    matches!(event, "starting" | "started" | "stopping" | "stopped")
}

/// The elements up to the first empty one, each cut at its first empty
/// string, as Upstart reads the NULL-terminated arrays.
fn elements(rpn: &[Vec<String>]) -> impl Iterator<Item = &[String]> {
    rpn.iter().map_while(|element| {
        let len = element.iter().position(String::is_empty).unwrap_or(element.len());
        (len > 0).then(|| &element[..len])
    })
}

/// The job a job event's argument names: `JOB=NAME` anywhere, or a first
/// positional argument.
fn job_name(index: usize, arg: &str) -> Option<&str> {
    match arg.strip_prefix("JOB=") {
        Some(name) => Some(name),
        None if index == 0 && !arg.contains('=') => Some(arg),
        None => None,
    }
}

/// The job a condition's event refers to, and the remaining arguments.
fn split_job<'a>(event: &str, args: &'a [String]) -> (Option<&'a str>, Vec<&'a str>) {
    let mut name = None;
    let mut rest = Vec::new();
    for (i, arg) in args.iter().enumerate() {
        if name.is_none() && is_job_event(event) {
            name = job_name(i, arg);
            if name.is_some() {
                continue;
            }
        }
        rest.push(arg.as_str());
    }
    (name, rest)
}

/// The fully bracketed form, e.g. `(A and (B FOO=BAR or starting C x=y))`;
/// a single event goes without brackets. `None` for an empty condition
/// (or a malformed list).
pub fn render(rpn: &[Vec<String>]) -> Option<String> {
    let mut stack: Vec<String> = Vec::new();
    for element in elements(rpn) {
        let token = element[0].as_str();
        if is_operator(token) {
            let first = stack.pop()?;
            let second = stack.pop()?;
            let op = if token == AND { "and" } else { "or" };
            stack.push(format!("({second} {op} {first})"));
        } else {
            stack.push(element.join(" "));
        }
    }
    stack.pop()
}

/// `show-config -e`: one line per event of the condition,
/// `  STANZA EVENT (job:[ JOB], env:[ ARG]…)`.
pub fn enumerate(stanza: &str, rpn: &[Vec<String>]) -> Vec<String> {
    elements(rpn)
        .filter(|element| !is_operator(&element[0]))
        .map(|element| {
            let event = element[0].as_str();
            let (name, rest) = split_job(event, &element[1..]);
            let env: String = rest.iter().map(|arg| format!(" {arg}")).collect();
            let job = name.map(|n| format!(" {n}")).unwrap_or_default();
            format!("  {stanza} {event} (job:{job}, env:{env})")
        })
        .collect()
}

/// What `check-config` knows of one job.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobConditions {
    pub name: String,
    pub start_on: Vec<Vec<String>>,
    pub stop_on: Vec<Vec<String>>,
    pub emits: Vec<String>,
}

/// The world a condition is checked against.
pub struct Known<'a> {
    jobs: HashSet<&'a str>,
    emits: Vec<CString>,
    ignored: HashSet<&'a str>,
    /// `--warn`: every unknown event or job counts, even in an `or` with a
    /// reachable alternative.
    warn: bool,
}

impl<'a> Known<'a> {
    pub fn new(jobs: &'a [JobConditions], ignored: &'a [String], warn: bool) -> Known<'a> {
        Known {
            jobs: jobs.iter().map(|j| j.name.as_str()).collect(),
            emits: jobs
                .iter()
                .flat_map(|j| &j.emits)
                .filter_map(|e| CString::new(e.as_str()).ok())
                .collect(),
            ignored: ignored.iter().map(String::as_str).collect(),
            warn,
        }
    }

    fn allows_job(&self, job: &str) -> bool {
        // A variable stands for some job: nothing to check.
        self.jobs.contains(job) || job.starts_with('$')
    }

    fn allows_event(&self, event: &str) -> bool {
        // `emits` values are glob patterns (fnmatch(3) with no flags).
        let emitted = CString::new(event).is_ok_and(|event| {
            self.emits.iter().any(|pattern| {
                // SAFETY: both are valid NUL-terminated strings.
                unsafe { libc::fnmatch(pattern.as_ptr(), event.as_ptr(), 0) == 0 }
            })
        });
        emitted || INIT_EVENTS.contains(&event) || self.ignored.contains(event)
    }
}

/// A node of a condition tree: an event (with the job it names), or an
/// operator whose children are the operand popped first (`left`) and the
/// one popped second (`right`), as Upstart builds it.
enum Node {
    Event {
        event: String,
        job: Option<String>,
        event_ok: bool,
        job_ok: bool,
    },
    Op {
        ok: bool,
        left: Box<Node>,
        right: Box<Node>,
    },
}

impl Node {
    fn ok(&self) -> bool {
        match self {
            Node::Event { event_ok, job_ok, .. } => *event_ok && *job_ok,
            Node::Op { ok, .. } => *ok,
        }
    }

    /// The errors below this node, in post order (left, right, node).
    fn errors(&self, condition: &str, out: &mut Vec<String>) {
        match self {
            Node::Op { left, right, .. } => {
                left.errors(condition, out);
                right.errors(condition, out);
            }
            Node::Event {
                event,
                job,
                event_ok,
                job_ok,
            } => {
                if !event_ok {
                    out.push(format!("  {condition}: unknown event {event}"));
                }
                if let (Some(job), false) = (job, job_ok) {
                    out.push(format!("  {condition}: unknown job {job}"));
                }
            }
        }
    }

    /// The first operator (or the root) in pre-order that does not hold.
    fn first_failing(&self, root: bool) -> Option<&Node> {
        match self {
            Node::Event { .. } => (root && !self.ok()).then_some(self),
            Node::Op { ok, left, right } => {
                if !ok {
                    return Some(self);
                }
                left.first_failing(false).or_else(|| right.first_failing(false))
            }
        }
    }
}

fn tree(rpn: &[Vec<String>], known: &Known) -> Option<Node> {
    let mut stack: Vec<Node> = Vec::new();
    for element in elements(rpn) {
        let token = element[0].as_str();
        if is_operator(token) {
            let left = stack.pop()?;
            let right = stack.pop()?;
            let ok = if token == AND || known.warn {
                left.ok() && right.ok()
            } else {
                left.ok() || right.ok()
            };
            stack.push(Node::Op {
                ok,
                left: Box::new(left),
                right: Box::new(right),
            });
        } else {
            let (job, _) = split_job(token, &element[1..]);
            stack.push(Node::Event {
                event: token.to_string(),
                job: job.map(str::to_string),
                event_ok: known.allows_event(token),
                job_ok: job.is_none_or(|j| known.allows_job(j)),
            });
        }
    }
    stack.pop()
}

/// Checks one condition (`condition` is `start on` or `stop on`); appends
/// the report lines and returns whether it can never be satisfied.
fn check_condition(condition: &str, rpn: &[Vec<String>], known: &Known, out: &mut Vec<String>) -> bool {
    let Some(root) = tree(rpn, known) else {
        return false;
    };
    match root.first_failing(true) {
        Some(node) => {
            node.errors(condition, out);
            true
        }
        None => false,
    }
}

/// `check-config`: the report (each job with problems, then its problem
/// lines) and the number of failing conditions. `only` limits the report
/// to one job; `Err` if there is no such job.
pub fn check_config(
    jobs: &[JobConditions],
    only: Option<&str>,
    ignored: &[String],
    warn: bool,
) -> Result<(Vec<String>, usize), String> {
    if let Some(name) = only
        && !jobs.iter().any(|j| j.name == name)
    {
        return Err(format!("Invalid job class: {name}"));
    }
    let known = Known::new(jobs, ignored, warn);
    let mut report = Vec::new();
    let mut failures = 0;
    for job in jobs.iter().filter(|j| only.is_none_or(|name| j.name == name)) {
        let mut lines = Vec::new();
        failures += usize::from(check_condition("start on", &job.start_on, &known, &mut lines));
        failures += usize::from(check_condition("stop on", &job.stop_on, &known, &mut lines));
        if !lines.is_empty() {
            report.push(job.name.clone());
            report.extend(lines);
        }
    }
    Ok((report, failures))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An RPN list from a compact form: elements separated by `;`, words
    /// by spaces, `&` and `|` for the operators.
    fn rpn(s: &str) -> Vec<Vec<String>> {
        s.split(';')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .map(|e| match e {
                "&" => vec![AND.to_string()],
                "|" => vec![OR.to_string()],
                _ => e.split(' ').map(str::to_string).collect(),
            })
            .collect()
    }

    #[test]
    fn a_single_event_renders_without_brackets() {
        assert_eq!(render(&rpn("startup")).as_deref(), Some("startup"));
        assert_eq!(
            render(&rpn("runlevel [2345]")).as_deref(),
            Some("runlevel [2345]")
        );
        assert_eq!(
            render(&rpn("starting foo X=y")).as_deref(),
            Some("starting foo X=y")
        );
    }

    #[test]
    fn operators_bracket_fully() {
        // A and (B FOO=BAR or starting C x=y)
        let r = rpn("A; B FOO=BAR; starting C x=y; |; &");
        assert_eq!(
            render(&r).as_deref(),
            Some("(A and (B FOO=BAR or starting C x=y))")
        );
        // a or b and c parses as (a or b) and c.
        assert_eq!(render(&rpn("a; b; |; c; &")).as_deref(), Some("((a or b) and c)"));
        assert_eq!(
            render(&rpn("filesystem; net-device-up IFACE!=lo; &")).as_deref(),
            Some("(filesystem and net-device-up IFACE!=lo)")
        );
    }

    #[test]
    fn empty_or_malformed_conditions_render_nothing() {
        assert_eq!(render(&[]), None);
        assert_eq!(render(&rpn("a; &")), None);
        assert_eq!(render(&[vec![]]), None);
        // Reading stops at an empty element, like Upstart's.
        assert_eq!(
            render(&[vec!["a".into()], vec![], vec!["b".into()]]).as_deref(),
            Some("a")
        );
    }

    #[test]
    fn enumerate_lists_each_event_with_its_job_and_env() {
        let r = rpn("A; B FOO=BAR; starting C x=y; |; &");
        assert_eq!(
            enumerate("start on", &r),
            [
                "  start on A (job:, env:)",
                "  start on B (job:, env: FOO=BAR)",
                "  start on starting (job: C, env: x=y)",
            ]
        );
    }

    #[test]
    fn enumerate_finds_the_job_in_a_job_event() {
        let r =
            rpn("stopped JOB=foo RESULT=ok; started A=B JOB=bar; stopping $JOB X=1; starting A=B c; |; |; |");
        assert_eq!(
            enumerate("stop on", &r),
            [
                "  stop on stopped (job: foo, env: RESULT=ok)",
                "  stop on started (job: bar, env: A=B)",
                "  stop on stopping (job: $JOB, env: X=1)",
                // Only a *first* positional argument names the job.
                "  stop on starting (job:, env: A=B c)",
            ]
        );
        // Other events have no job, even with JOB=.
        assert_eq!(
            enumerate("start on", &rpn("custom JOB=x y")),
            ["  start on custom (job:, env: JOB=x y)"]
        );
    }

    fn job(name: &str, start_on: &str, stop_on: &str, emits: &[&str]) -> JobConditions {
        JobConditions {
            name: name.into(),
            start_on: rpn(start_on),
            stop_on: rpn(stop_on),
            emits: emits.iter().map(|e| e.to_string()).collect(),
        }
    }

    fn check(
        jobs: &[JobConditions],
        only: Option<&str>,
        ignored: &[&str],
        warn: bool,
    ) -> (Vec<String>, usize) {
        let ignored: Vec<String> = ignored.iter().map(|e| e.to_string()).collect();
        check_config(jobs, only, &ignored, warn).unwrap()
    }

    #[test]
    fn check_config_reports_unknown_events_and_jobs() {
        let jobs = [
            job("a", "startup", "runlevel [016]", &[]),
            job("b", "started a; mounted; &", "stopped nosuch", &["mounted"]),
            job("c", "fancy-event", "", &[]),
        ];
        let (report, failures) = check(&jobs, None, &[], false);
        assert_eq!(
            report,
            [
                "a",
                "  stop on: unknown event runlevel",
                "b",
                "  stop on: unknown job nosuch",
                "c",
                "  start on: unknown event fancy-event",
            ]
        );
        assert_eq!(failures, 3);
    }

    #[test]
    fn check_config_lists_errors_of_the_failing_subtree_in_upstarts_order() {
        // Upstart's tree puts the operand popped first on the left, so
        // the later events of a chain come out first.
        let jobs = [job(
            "plymouth-stop",
            "starting gdm; starting kdm; |; starting xdm; |",
            "",
            &[],
        )];
        let (report, failures) = check(&jobs, None, &[], false);
        assert_eq!(
            report,
            [
                "plymouth-stop",
                "  start on: unknown job xdm",
                "  start on: unknown job kdm",
                "  start on: unknown job gdm",
            ]
        );
        assert_eq!(failures, 1);
    }

    #[test]
    fn an_or_with_one_reachable_side_is_fine_unless_warn() {
        let jobs = [job("x", "startup; nosuch; |", "", &[])];
        assert_eq!(check(&jobs, None, &[], false), (vec![], 0));
        let (report, failures) = check(&jobs, None, &[], true);
        assert_eq!(report, ["x", "  start on: unknown event nosuch"]);
        assert_eq!(failures, 1);
    }

    #[test]
    fn a_failing_and_inside_a_holding_or_is_reported() {
        let jobs = [job("x", "a1; a2; &; startup; |", "", &[])];
        let (report, _) = check(&jobs, None, &[], false);
        assert_eq!(
            report,
            [
                "x",
                "  start on: unknown event a2",
                "  start on: unknown event a1"
            ]
        );
    }

    #[test]
    fn emits_patterns_builtin_and_ignored_events_are_known() {
        let jobs = [
            job("udev", "", "", &["device-*", "net-device-up"]),
            job(
                "x",
                "device-added; net-device-up; &; control-alt-delete; &; foo; &; bar; &",
                "",
                &[],
            ),
        ];
        assert_eq!(check(&jobs, None, &["foo", "bar"], false), (vec![], 0));
        let (report, _) = check(&jobs, None, &["foo"], false);
        assert_eq!(report, ["x", "  start on: unknown event bar"]);
    }

    #[test]
    fn job_variables_and_known_jobs_pass() {
        let jobs = [
            job("a", "", "", &[]),
            job("b", "starting $JOB; stopped JOB=a; &", "", &[]),
        ];
        assert_eq!(check(&jobs, None, &[], false), (vec![], 0));
    }

    #[test]
    fn an_event_and_its_job_can_both_be_unknown() {
        let jobs = [
            job("x", "", "weird JOB=zz", &[]),
            job("y", "", "stopping zz", &[]),
        ];
        let (report, _) = check(&jobs, None, &[], false);
        // JOB= only names a job for job events.
        assert_eq!(
            report,
            [
                "x",
                "  stop on: unknown event weird",
                "y",
                "  stop on: unknown job zz"
            ]
        );
    }

    #[test]
    fn check_config_of_one_job() {
        let jobs = [job("a", "nosuch", "", &[]), job("b", "nosuch2", "", &[])];
        assert_eq!(
            check(&jobs, Some("b"), &[], false).0,
            ["b", "  start on: unknown event nosuch2"]
        );
        assert_eq!(
            check_config(&jobs, Some("zz"), &[], false),
            Err("Invalid job class: zz".to_string())
        );
    }
}

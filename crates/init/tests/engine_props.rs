//! Property tests of the engine (`init::engine`): random job sets and random
//! input sequences run against a simulated world, with the engine's
//! invariants checked after every step and once more after a drain.
//!
//! A case is 3–8 jobs `j0`… (random mixes of `task`, `respawn`, `respawn
//! limit`, `instance $N`, the four hook processes, `start on`/`stop on`
//! over events `a`, `b`, `c` and the job events of the other jobs, `expect
//! fork|stop`, `kill timeout 1`, `process timeout 3`, `normal exit 2`) and
//! up to [`MAX_STEPS`] actions: emits, start/stop/restart of jobs and
//! instances, reloads, with and without wait, exits of live pids with
//! random statuses, `Ready` and `MainPid` for instances in `spawned`, ticks
//! after random advances of a virtual clock, changed job definitions, job
//! removals, respawn switched off and on, and snapshots.
//!
//! The world ([`Sim`]) answers every `Effect::Spawn` with `Spawned` (a fresh
//! pid) or, when the case says so, `SpawnFailed`; it may also hold spawns
//! back and deliver them later. It keeps the set of live pids and who should
//! own them, and follows the engine's D-Bus signals (jobs, instances, goals,
//! states, failures, finished events) and replies. Properties:
//!
//! - no input panics the engine;
//! - instances: each `InstanceAdded` is matched by exactly one
//!   `InstanceRemoved` (after the drain, none is left), and `classes()`
//!   always agrees with the signals (jobs, instances, goals, states); no
//!   instance rests in `waiting`;
//! - every state change is an edge of the table of spec §1.9, so every run
//!   that entered `starting` passes through `post-stop` exactly once before
//!   `waiting` (its one `stopped`) or before the next `starting`; an
//!   instance is removed only from `waiting`; at most one `Failed` per run;
//! - processes: every live pid is owned by exactly one instance slot
//!   (`process_owner` and the slot agree), no pid that exited or was
//!   replaced (`Ready` or `MainPid` with a new pid) is still owned, no spawn goes to a slot that is
//!   busy, every spawn not yet answered is a `spawning` slot, every `Kill`
//!   names a live process of that slot;
//! - events: for each event (name, and `JOB`/`INSTANCE` for job events, or
//!   the whole environment for others) the number queued (client emits plus
//!   the job events the state changes imply) equals the number finished
//!   (`EventEmitted`) plus the number still in `events()`; `NAME/failed`
//!   never outnumbers `NAME`; after the drain `events()` is empty;
//! - requests: a request without wait gets exactly one reply at once, one
//!   with wait gets at most one, and exactly one once drained;
//! - timers: after a `Tick` no deadline is due;
//! - state: at random points the engine is serialised to JSON, read back
//!   and `.restored()`; from then on both copies get the same inputs and
//!   must give identical effects (and identical state);
//! - references: every unfinished event is `handling` and its `blockers`
//!   equal the references to it (matches held in `start on`/`stop on` trees
//!   and `Blocked::Event` entries); nothing refers to a finished event; an
//!   instance's blocker is an unfinished event that lists the instance.
//!
//! The drain removes every job (releasing partial `start on` matches),
//! stops every instance, delivers held spawns, emits one event of each kind
//! the expressions use (completing partial `stop on` matches) while
//! instances and events remain, and alternately lets every process exit and
//! lets kill timers fire, until nothing is left. Job sets whose references
//! form no cycle must drain completely; a quarter of the cases allow
//! cycles, which can deadlock Upstart's semantics for real (see
//! [`render_expr`]): those may end in a verified wait-for cycle instead.
//!
//! `PROPTEST_CASES` overrides the number of cases (default [`CASES`]),
//! `ENGINE_PROPS_STEPS` the most actions in a case (default [`MAX_STEPS`]);
//! `ENGINE_PROPS_STATS=1` prints what the cases exercised,
//! `ENGINE_PROPS_CHAOS=1` holds back and fails many more spawns,
//! `ENGINE_PROPS_TRACE=1` adds the effects to the input trace of a failure,
//! `ENGINE_PROPS_NO_WORKAROUNDS=1` turns off the simulator's workarounds
//! for known engine bugs (the `WORKAROUND_*` constants).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Mutex;

use init::engine::{
    Blocked, Effect, Engine, EngineConfig, ExitStatus, Goal, Input, InstanceKey, OperatorTree, Pid, Progress,
    ReplyTo, Request, Slot, State, Time,
};
use jobconf_parser::{ProcessKind, Signal, parse_job};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

/// Default number of random cases (each up to [`MAX_STEPS`] actions).
const CASES: u32 = 256;
const MAX_STEPS: usize = 60;
/// Spawns answered per action before the rest are held back.
const MAX_ANSWERS: u32 = 300;
const DRAIN_ROUNDS: usize = 200;
const SECOND: Time = 1_000_000;

/// Known engine bug (`regression_restore_keeps_partial_stop_on_across_respawn`
/// below): after a round trip an instance's `conf` is no longer the same
/// `Arc` as its class's, so `enter_starting` takes the configuration for
/// changed and rebuilds the `stop on` tree, dropping partial matches the
/// original keeps. While this is `true`, a snapshot also replaces the live
/// engine by a restored copy, so both sides compare alike; set it to
/// `false` once the engine is fixed.
const WORKAROUND_RESTORE_CONF_IDENTITY: bool = false;

/// Known engine bug (`regression_spawn_failure_while_stopping_waits_for_the_event`
/// below): a failed spawn of the main process while the instance is in
/// `stopping` moves it on without waiting for its `stopping` event. While
/// this is `true`, the simulator answers such a spawn with success instead
/// of the failure the case asks for; set it to `false` once fixed.
const WORKAROUND_SPAWN_FAILED_WHILE_STOPPING: bool = false;

type Res = Result<(), String>;

macro_rules! ensure {
    ($cond:expr, $($fmt:tt)*) => {
        if !$cond {
            return Err(format!($($fmt)*));
        }
    };
}

// ------------------------------------------------------------- job sets

const PLAIN: [&str; 3] = ["a", "b", "c"];
const JOB_EVENTS: [&str; 4] = ["starting", "started", "stopping", "stopped"];

/// A leaf of a `start on`/`stop on` expression.
#[derive(Debug, Clone)]
enum Leaf {
    /// `a`, `b X=1`, `a X!=2`, …
    Plain(u8, u8),
    /// `started jK`…; `K` is chosen when rendering (see [`render_expr`]).
    Job(u8, u8),
}

#[derive(Debug, Clone)]
enum Expr {
    Leaf(Leaf),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
}

/// Renders an expression of job `i` of `n`. Job events name only jobs with
/// a smaller index (job 0: a plain event instead), so the jobs' references
/// form no cycle, unless `cyclic`: then any job, itself included. A cycle
/// can deadlock Upstart's semantics for real (a task holds the `starting`
/// event of the job that started it until it has stopped, while that job,
/// stopped by the task's `stopping`, holds that event until it has stopped
/// and sits in `starting` meanwhile), which the drain then accepts.
fn render_expr(e: &Expr, cyclic: bool, i: usize, n: usize, out: &mut String) {
    match e {
        Expr::Leaf(Leaf::Plain(name, arg)) => {
            out.push_str(PLAIN[*name as usize % PLAIN.len()]);
            match arg % 5 {
                1 => out.push_str(" X=1"),
                2 => out.push_str(" X!=2"),
                // Expanded from the instance's environment in `stop on`;
                // never matches in `start on` (spec §1.5).
                3 => out.push_str(" N=$N"),
                _ => {}
            }
        }
        Expr::Leaf(Leaf::Job(ev, raw)) => {
            let k = if cyclic {
                *raw as usize % n
            } else if i == 0 {
                out.push('c');
                return;
            } else {
                *raw as usize % i
            };
            out.push_str(&format!("{} j{k}", JOB_EVENTS[*ev as usize % JOB_EVENTS.len()]));
        }
        Expr::And(l, r) | Expr::Or(l, r) => {
            out.push('(');
            render_expr(l, cyclic, i, n, out);
            out.push_str(if matches!(e, Expr::And(..)) {
                " and "
            } else {
                " or "
            });
            render_expr(r, cyclic, i, n, out);
            out.push(')');
        }
    }
}

#[derive(Debug, Clone)]
struct JobDef {
    start_on: Option<Expr>,
    stop_on: Option<Expr>,
    task: bool,
    /// 0 none, 1 `respawn`, 2 `respawn limit 2 5`, 3 `respawn limit 1 1`,
    /// 4 `respawn limit unlimited`.
    respawn: u8,
    instance: bool,
    /// pre-start, post-start, pre-stop, post-stop.
    hooks: [bool; 4],
    /// 0 none, 1 `expect fork`, 2 `expect stop`.
    expect: u8,
    kill_timeout: bool,
    process_timeout: bool,
    normal_exit: bool,
}

fn render_job(d: &JobDef, cyclic: bool, i: usize, n: usize) -> String {
    let mut s = String::new();
    if let Some(e) = &d.start_on {
        s.push_str("start on ");
        render_expr(e, cyclic, i, n, &mut s);
        s.push('\n');
    }
    if let Some(e) = &d.stop_on {
        s.push_str("stop on ");
        render_expr(e, cyclic, i, n, &mut s);
        s.push('\n');
    }
    if d.task {
        s.push_str("task\n");
    }
    match d.respawn {
        1 => s.push_str("respawn\n"),
        2 => s.push_str("respawn\nrespawn limit 2 5\n"),
        3 => s.push_str("respawn\nrespawn limit 1 1\n"),
        4 => s.push_str("respawn\nrespawn limit unlimited\n"),
        _ => {}
    }
    if d.instance {
        s.push_str("instance $N\n");
    }
    match d.expect {
        1 => s.push_str("expect fork\n"),
        2 => s.push_str("expect stop\n"),
        _ => {}
    }
    if d.kill_timeout {
        s.push_str("kill timeout 1\n");
    }
    if d.process_timeout {
        s.push_str("process timeout 3\n");
    }
    if d.normal_exit {
        s.push_str("normal exit 2\n");
    }
    s.push_str("exec sleep 1000\n");
    for (on, name) in d
        .hooks
        .iter()
        .zip(["pre-start", "post-start", "pre-stop", "post-stop"])
    {
        if *on {
            s.push_str(&format!("{name} exec true\n"));
        }
    }
    s
}

fn leaf() -> impl Strategy<Value = Expr> {
    prop_oneof![
        (any::<u8>(), any::<u8>()).prop_map(|(n, a)| Expr::Leaf(Leaf::Plain(n, a))),
        (any::<u8>(), any::<u8>()).prop_map(|(e, k)| Expr::Leaf(Leaf::Job(e, k))),
    ]
}

fn expr() -> impl Strategy<Value = Expr> {
    leaf().prop_recursive(3, 8, 2, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone()).prop_map(|(l, r)| Expr::And(Box::new(l), Box::new(r))),
            (inner.clone(), inner).prop_map(|(l, r)| Expr::Or(Box::new(l), Box::new(r))),
        ]
    })
}

fn job_def() -> impl Strategy<Value = JobDef> {
    (
        prop::option::weighted(0.85, expr()),
        prop::option::weighted(0.6, expr()),
        prop::bool::weighted(0.25),
        prop_oneof![4 => Just(0u8), 1 => Just(1), 1 => Just(2), 1 => Just(3), 1 => Just(4)],
        prop::bool::weighted(0.2),
        prop::array::uniform4(prop::bool::weighted(0.3)),
        prop_oneof![4 => Just(0u8), 1 => Just(1), 1 => Just(2)],
        prop::bool::weighted(0.3),
        prop::bool::weighted(0.3),
        prop::bool::weighted(0.15),
    )
        .prop_map(
            |(
                start_on,
                stop_on,
                task,
                respawn,
                instance,
                hooks,
                expect,
                kill_timeout,
                process_timeout,
                normal_exit,
            )| {
                JobDef {
                    start_on,
                    stop_on,
                    task,
                    respawn,
                    instance,
                    hooks,
                    expect,
                    kill_timeout,
                    process_timeout,
                    normal_exit,
                }
            },
        )
}

// ------------------------------------------------------------- actions

/// How a request is made: not at all, without wait, with wait.
#[derive(Debug, Clone, Copy)]
enum By {
    None,
    NoWait,
    Wait,
}

#[derive(Debug, Clone)]
enum Act {
    /// An event of [`PLAIN`]; env: 0 none, 1 `X=1`, 2 `X=2`, 3 `X=1 N=1`,
    /// 4 `N=2`.
    Emit {
        ev: u8,
        env: u8,
        by: By,
    },
    /// `job` modulo the number of jobs; env: 0 none, 1 `N=1`, 2 `N=2`.
    Start {
        job: u8,
        env: u8,
        by: By,
    },
    Stop {
        job: u8,
        env: u8,
        by: By,
    },
    Restart {
        job: u8,
        env: u8,
        by: By,
    },
    /// An existing instance chosen by `sel` (or, one time in n+1, none).
    InstanceStart {
        sel: u16,
        by: By,
    },
    InstanceStop {
        sel: u16,
        by: By,
    },
    InstanceRestart {
        sel: u16,
        by: By,
    },
    Reload {
        sel: u16,
        by: By,
    },
    /// A live (or stray) pid chosen by `sel` exits.
    Exit {
        sel: u16,
        status: u8,
    },
    /// An instance in `spawned` reaches its `expect`, keeping its pid or
    /// with a fresh one (the daemon after forking).
    Ready {
        sel: u16,
        fresh: bool,
    },
    /// An instance in `spawned` whose main process forked: `MainPid` with
    /// a fresh pid (the parent becomes a stray).
    MainPid {
        sel: u16,
    },
    /// The clock moves on by [`ADVANCE`]`[adv]` (or to the next deadline),
    /// then `Tick`.
    Tick {
        adv: u8,
    },
    /// A changed definition of job `job`.
    Load {
        job: usize,
        text: String,
    },
    Remove {
        job: u8,
    },
    /// A held-back spawn chosen by `sel` is answered.
    Deliver {
        sel: u16,
        fail: bool,
    },
    SetRespawn(bool),
    /// Serialise, deserialise and restore; from then on compare.
    Snapshot,
}

const ADVANCE: [Time; 7] = [
    0,
    SECOND / 10,
    SECOND,
    2 * SECOND,
    4 * SECOND,
    6 * SECOND,
    30 * SECOND,
];

#[derive(Debug, Clone)]
struct Step {
    act: Act,
    /// Bit k: the k-th spawn answered during this action fails.
    fail_mask: u8,
    /// Spawns asked for during this action are held back.
    hold: bool,
}

#[derive(Debug, Clone)]
struct Case {
    /// The jobs' references may form cycles (see [`render_expr`]).
    cyclic: bool,
    jobs: Vec<String>,
    steps: Vec<Step>,
}

fn by() -> impl Strategy<Value = By> {
    prop_oneof![1 => Just(By::None), 1 => Just(By::NoWait), 2 => Just(By::Wait)]
}

fn act(n: usize, cyclic: bool) -> impl Strategy<Value = Act> {
    let load = (0..n, job_def()).prop_map(move |(job, d)| Act::Load {
        job,
        text: render_job(&d, cyclic, job, n),
    });
    prop_oneof![
        4 => (0u8..3, 0u8..5, by()).prop_map(|(ev, env, by)| Act::Emit { ev, env, by }),
        3 => (any::<u8>(), 0u8..3, by()).prop_map(|(job, env, by)| Act::Start { job, env, by }),
        2 => (any::<u8>(), 0u8..3, by()).prop_map(|(job, env, by)| Act::Stop { job, env, by }),
        1 => (any::<u8>(), 0u8..3, by()).prop_map(|(job, env, by)| Act::Restart { job, env, by }),
        1 => (any::<u16>(), by()).prop_map(|(sel, by)| Act::InstanceStart { sel, by }),
        1 => (any::<u16>(), by()).prop_map(|(sel, by)| Act::InstanceStop { sel, by }),
        1 => (any::<u16>(), by()).prop_map(|(sel, by)| Act::InstanceRestart { sel, by }),
        1 => (any::<u16>(), by()).prop_map(|(sel, by)| Act::Reload { sel, by }),
        6 => (any::<u16>(), any::<u8>()).prop_map(|(sel, status)| Act::Exit { sel, status }),
        2 => (any::<u16>(), any::<bool>()).prop_map(|(sel, fresh)| Act::Ready { sel, fresh }),
        3 => (0u8..8).prop_map(|adv| Act::Tick { adv }),
        1 => load,
        1 => any::<u8>().prop_map(|job| Act::Remove { job }),
        1 => (any::<u16>(), prop::bool::weighted(0.3)).prop_map(|(sel, fail)| Act::Deliver { sel, fail }),
        1 => any::<u16>().prop_map(|sel| Act::MainPid { sel }),
        1 => prop::bool::weighted(0.7).prop_map(Act::SetRespawn),
        1 => Just(Act::Snapshot),
    ]
}

fn step(n: usize, cyclic: bool) -> impl Strategy<Value = Step> {
    // `ENGINE_PROPS_CHAOS=1`: many more held and failing spawns.
    let chaos = std::env::var_os("ENGINE_PROPS_CHAOS").is_some();
    (
        act(n, cyclic),
        prop_oneof![if chaos { 2 } else { 6 } => Just(0u8), 1 => any::<u8>()],
        prop::bool::weighted(if chaos { 0.4 } else { 0.1 }),
    )
        .prop_map(|(act, fail_mask, hold)| Step { act, fail_mask, hold })
}

fn case() -> impl Strategy<Value = Case> {
    (3usize..=8, prop::bool::weighted(0.25)).prop_flat_map(|(n, cyclic)| {
        (
            prop::collection::vec(job_def(), n),
            prop::collection::vec(step(n, cyclic), 1..=max_steps()),
        )
            .prop_map(move |(defs, steps)| Case {
                cyclic,
                jobs: defs
                    .iter()
                    .enumerate()
                    .map(|(i, d)| render_job(d, cyclic, i, n))
                    .collect(),
                steps,
            })
    })
}

// ------------------------------------------------------------- the world

/// The edges of spec §1.9's table (the classic states).
fn legal(from: State, to: State) -> bool {
    use State::*;
    matches!(
        (from, to),
        (Waiting, Starting)
            | (Starting, PreStart | Stopping)
            | (PreStart, Spawned | Stopping)
            | (Spawned, PostStart | Stopping)
            | (PostStart, Running | Stopping)
            | (Running, PreStop | Stopping)
            | (PreStop, Running | Stopping)
            | (Stopping, Killed)
            | (Killed, PostStop)
            | (PostStop, Starting | Waiting)
    )
}

fn env_value<'a>(env: &'a [String], key: &str) -> &'a str {
    env.iter()
        .find_map(|e| e.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
        .unwrap_or("")
}

/// What events are counted by: job events by name, `JOB` and `INSTANCE`
/// (the rest of their environment depends on the run); others by name and
/// the whole environment.
fn ev_key(name: &str, env: &[String]) -> String {
    if JOB_EVENTS.contains(&name) {
        format!(
            "{name} JOB={} INSTANCE={}",
            env_value(env, "JOB"),
            env_value(env, "INSTANCE")
        )
    } else {
        format!("{name} {}", env.join(" "))
    }
}

fn job_ev_key(name: &str, key: &InstanceKey) -> String {
    format!("{name} JOB={} INSTANCE={}", key.job, key.instance)
}

#[derive(Debug)]
struct Track {
    state: State,
    goal: Goal,
    starts: u32,
    failed_this_run: bool,
}

#[derive(Debug)]
struct Req {
    wait: bool,
    replies: u32,
    what: String,
}

struct Sim {
    engine: Engine,
    /// A restored copy that must behave the same, once a snapshot was taken.
    twin: Option<Engine>,
    now: Time,
    next_pid: Pid,
    next_token: ReplyTo,
    n: usize,
    cyclic: bool,
    /// See [`WORKAROUND_RESTORE_CONF_IDENTITY`].
    workaround_restore: bool,
    /// See [`WORKAROUND_SPAWN_FAILED_WHILE_STOPPING`].
    workaround_spawn_failed: bool,
    /// `ENGINE_PROPS_TRACE=1`: the trace shows effects too.
    verbose: bool,
    /// `ENGINE_PROPS_STATS=1`: count what the case exercised.
    stats_on: bool,
    /// Pids the engine must own, and the slot.
    live: BTreeMap<Pid, (InstanceKey, ProcessKind)>,
    /// Processes the engine let go (the parent after `Ready` with a new pid).
    stray: BTreeSet<Pid>,
    sigkilled: BTreeSet<Pid>,
    /// Spawns held back.
    held: Vec<(InstanceKey, ProcessKind)>,
    /// Spawns to answer in this action.
    queue: VecDeque<(InstanceKey, ProcessKind)>,
    hold_new: bool,
    fail_mask: u8,
    jobs: BTreeSet<String>,
    insts: BTreeMap<InstanceKey, Track>,
    expected: BTreeMap<String, u64>,
    emitted: BTreeMap<String, u64>,
    requests: BTreeMap<ReplyTo, Req>,
    trace: Vec<String>,
    stats: BTreeMap<String, u64>,
}

fn brief(input: &Input) -> String {
    match input {
        Input::LoadJob { name, .. } => format!("LoadJob {name}"),
        other => format!("{other:?}"),
    }
}

fn roundtrip(e: &Engine) -> Result<Engine, String> {
    let json = serde_json::to_string(e).map_err(|e| format!("serialise: {e}"))?;
    let back: Engine = serde_json::from_str(&json).map_err(|e| format!("deserialise: {e}"))?;
    Ok(back.restored())
}

impl Sim {
    fn new(n: usize, cyclic: bool) -> Sim {
        Sim {
            cyclic,
            workaround_restore: WORKAROUND_RESTORE_CONF_IDENTITY,
            workaround_spawn_failed: WORKAROUND_SPAWN_FAILED_WHILE_STOPPING,
            verbose: std::env::var_os("ENGINE_PROPS_TRACE").is_some(),
            stats_on: std::env::var_os("ENGINE_PROPS_STATS").is_some(),
            engine: Engine::new(EngineConfig::default()),
            twin: None,
            now: 0,
            next_pid: 100,
            next_token: 1,
            n,
            live: BTreeMap::new(),
            stray: BTreeSet::new(),
            sigkilled: BTreeSet::new(),
            held: Vec::new(),
            queue: VecDeque::new(),
            hold_new: false,
            fail_mask: 0,
            jobs: BTreeSet::new(),
            insts: BTreeMap::new(),
            expected: BTreeMap::new(),
            emitted: BTreeMap::new(),
            requests: BTreeMap::new(),
            trace: Vec::new(),
            stats: BTreeMap::new(),
        }
    }

    fn fail(&self, msg: String) -> String {
        let keep = if self.verbose { 400 } else { 60 };
        let tail: Vec<&String> = self.trace.iter().rev().take(keep).collect();
        let mut s = format!("{msg}\n-- last inputs (newest last):\n");
        for t in tail.into_iter().rev() {
            s.push_str(t);
            s.push('\n');
        }
        s
    }

    fn request(&mut self, by: By, what: String) -> Option<Request> {
        let wait = match by {
            By::None => return None,
            By::NoWait => false,
            By::Wait => true,
        };
        let reply = self.next_token;
        self.next_token += 1;
        self.requests.insert(
            reply,
            Req {
                wait,
                replies: 0,
                what,
            },
        );
        Some(Request { reply, wait })
    }

    /// One input to the engine (and its twin), its effects absorbed and
    /// the invariants that hold between any two inputs checked.
    fn feed(&mut self, input: Input) -> Res {
        let line = format!("@{} {}", self.now, brief(&input));
        let kind = line.split([' ', '(', '{']).nth(1).unwrap_or("").to_string();
        if self.stats_on {
            self.count(format!(
                "input {kind}{}",
                if self.twin.is_some() { " (twin)" } else { "" }
            ));
        }
        self.trace.push(line);
        let tick = matches!(input, Input::Tick);
        let mut out = Vec::new();
        let twin_input = self.twin.as_ref().map(|_| input.clone());
        self.engine.handle(self.now, input, &mut out);
        if let (Some(twin), Some(input)) = (self.twin.as_mut(), twin_input) {
            let theirs = twin.step(self.now, input);
            if theirs != out {
                return Err(self.fail(format!(
                    "restored engine diverged:\n original: {out:#?}\n restored: {theirs:#?}"
                )));
            }
            let (a, b) = (self.engine.state_json(), twin.state_json());
            if a != b {
                return Err(self.fail(format!(
                    "restored engine's state diverged:\n original: {a}\n restored: {b}"
                )));
            }
        }
        if self.verbose {
            for e in &out {
                if !matches!(e, Effect::Log { .. }) {
                    self.trace.push(format!("      -> {e:?}"));
                }
            }
        }
        self.absorb(out).map_err(|e| self.fail(e))?;
        if tick && let Some(d) = self.engine.next_deadline() {
            ensure!(
                d > self.now,
                "{}",
                self.fail(format!("deadline {d} still due after Tick at {}", self.now))
            );
        }
        self.check_between().map_err(|e| self.fail(e))
    }

    fn count(&mut self, what: impl Into<String>) {
        *self.stats.entry(what.into()).or_default() += 1;
    }

    fn absorb(&mut self, out: Vec<Effect>) -> Res {
        use init::engine::BusSignal as S;
        for eff in out {
            if self.stats_on {
                self.count(match &eff {
                    Effect::Spawn(s) => format!("spawn {:?}", s.process),
                    Effect::Kill { signal, .. } => format!("kill {signal:?}"),
                    Effect::Reply { result: Ok(_), .. } => "reply ok".into(),
                    Effect::Reply { result: Err(e), .. } => format!("reply {:?}", e.kind),
                    Effect::Signal(S::StateChanged(_, s)) => format!("state {s:?}"),
                    Effect::Signal(S::GoalChanged(_, g)) => format!("goal {g:?}"),
                    Effect::Signal(S::Failed(..)) => "failed".into(),
                    Effect::Signal(S::EventEmitted { name, .. }) if name.ends_with("/failed") => {
                        "event x/failed".into()
                    }
                    Effect::Signal(S::EventEmitted { .. }) => "event finished".into(),
                    Effect::Signal(_) => "signal other".into(),
                    Effect::Log { level, message } if message.contains("respawning too fast") => {
                        format!("log {level:?} respawn limit")
                    }
                    Effect::Log { level, message } if message.contains("in time") => {
                        format!("log {level:?} timeout")
                    }
                    Effect::Log { level, .. } => format!("log {level:?}"),
                });
            }
            match eff {
                Effect::Spawn(s) => {
                    let k = (s.key.clone(), s.process);
                    ensure!(
                        !self.live.values().any(|v| *v == k)
                            && !self.held.contains(&k)
                            && !self.queue.contains(&k),
                        "spawn of {:?} {:?} while that slot is busy",
                        s.key,
                        s.process
                    );
                    ensure!(
                        s.conf.process(s.process).is_some(),
                        "spawn of a process the job lacks: {k:?}"
                    );
                    if self.hold_new {
                        self.held.push(k);
                    } else {
                        self.queue.push_back(k);
                    }
                }
                Effect::Kill {
                    key,
                    process,
                    pid,
                    signal,
                    ..
                } => {
                    ensure!(
                        self.live.get(&pid) == Some(&(key.clone(), process)),
                        "kill {signal:?} of pid {pid} as {key:?} {process:?}, but that pid is {:?}",
                        self.live.get(&pid)
                    );
                    if signal == Signal::KILL {
                        self.sigkilled.insert(pid);
                    }
                }
                Effect::Reply { to, result } => {
                    let Some(r) = self.requests.get_mut(&to) else {
                        return Err(format!("reply to unknown request {to}: {result:?}"));
                    };
                    r.replies += 1;
                    ensure!(
                        r.replies == 1,
                        "second reply to request {to} ({}): {result:?}",
                        r.what
                    );
                }
                Effect::Log { level, message } => {
                    ensure!(
                        !message.contains("no transition from"),
                        "engine hit an impossible transition ({level:?}): {message}"
                    );
                }
                Effect::Signal(sig) => match sig {
                    S::JobAdded(name) => ensure!(self.jobs.insert(name.clone()), "JobAdded({name}) twice"),
                    S::JobRemoved(name) => ensure!(self.jobs.remove(&name), "JobRemoved({name}) of no job"),
                    S::InstanceAdded(k) => {
                        ensure!(!self.insts.contains_key(&k), "InstanceAdded({k:?}) twice");
                        self.insts.insert(
                            k,
                            Track {
                                state: State::Waiting,
                                goal: Goal::Stop,
                                starts: 0,
                                failed_this_run: false,
                            },
                        );
                    }
                    S::InstanceRemoved(k) => {
                        let Some(t) = self.insts.remove(&k) else {
                            return Err(format!("InstanceRemoved({k:?}) of no instance"));
                        };
                        ensure!(
                            t.state == State::Waiting && t.starts > 0,
                            "InstanceRemoved({k:?}) in {:?} after {} starts",
                            t.state,
                            t.starts
                        );
                    }
                    S::GoalChanged(k, g) => {
                        let Some(t) = self.insts.get_mut(&k) else {
                            return Err(format!("GoalChanged({k:?}) of no instance"));
                        };
                        ensure!(t.goal != g, "GoalChanged({k:?}, {g:?}) to the same goal");
                        t.goal = g;
                    }
                    S::StateChanged(k, s) => {
                        let Some(t) = self.insts.get_mut(&k) else {
                            return Err(format!("StateChanged({k:?}) of no instance"));
                        };
                        let from = t.state;
                        ensure!(legal(from, s), "illegal transition of {k:?}: {from:?} -> {s:?}");
                        t.state = s;
                        let ev = match s {
                            State::Starting => {
                                t.starts += 1;
                                t.failed_this_run = false;
                                Some("starting")
                            }
                            State::Running if from != State::PreStop => Some("started"),
                            State::Stopping => Some("stopping"),
                            State::Waiting => Some("stopped"),
                            _ => None,
                        };
                        if let Some(ev) = ev {
                            *self.expected.entry(job_ev_key(ev, &k)).or_default() += 1;
                        }
                    }
                    S::Failed(k, status) => {
                        let Some(t) = self.insts.get_mut(&k) else {
                            return Err(format!("Failed({k:?}) of no instance"));
                        };
                        ensure!(!t.failed_this_run, "second Failed({k:?}, {status}) in one run");
                        t.failed_this_run = true;
                    }
                    S::EventEmitted { name, env } => {
                        let key = ev_key(&name, &env);
                        let got = {
                            let c = self.emitted.entry(key.clone()).or_default();
                            *c += 1;
                            *c
                        };
                        if let Some(base) = name.strip_suffix("/failed") {
                            let b = self.emitted.get(&ev_key(base, &env)).copied().unwrap_or(0);
                            ensure!(got <= b, "{got} × `{key}` finished but only {b} of its event");
                        } else {
                            let want = self.expected.get(&key).copied().unwrap_or(0);
                            ensure!(
                                got <= want,
                                "`{key}` finished {got} times but was queued {want} times"
                            );
                        }
                    }
                },
            }
        }
        Ok(())
    }

    /// What holds between any two inputs.
    fn check_between(&self) -> Res {
        let e = &self.engine;
        let classes: BTreeSet<String> = e.classes().keys().map(String::from).collect();
        ensure!(
            classes == self.jobs,
            "classes() {classes:?} but signals say {:?}",
            self.jobs
        );
        let mut keys = BTreeSet::new();
        let mut owned = BTreeSet::new();
        for (job, class) in e.classes() {
            for (name, inst) in &class.instances {
                let key = InstanceKey::new(job, name.clone());
                let Some(t) = self.insts.get(&key) else {
                    return Err(format!("instance {key:?} in classes() was never added"));
                };
                ensure!(
                    t.state == inst.state && t.goal == inst.goal,
                    "{key:?} is {:?}/{:?} but signals say {:?}/{:?}",
                    inst.goal,
                    inst.state,
                    t.goal,
                    t.state
                );
                for kind in ProcessKind::ALL {
                    match inst.slot(kind) {
                        Slot::Empty => {}
                        Slot::Spawning => ensure!(
                            self.held.contains(&(key.clone(), kind))
                                || self.queue.contains(&(key.clone(), kind)),
                            "{key:?} {kind:?} is spawning but no spawn is outstanding"
                        ),
                        Slot::Alive(pid) => {
                            ensure!(
                                self.live.get(&pid) == Some(&(key.clone(), kind)),
                                "{key:?} {kind:?} slot holds pid {pid}, which is {:?}",
                                self.live.get(&pid)
                            );
                            ensure!(owned.insert(pid), "pid {pid} in two slots");
                        }
                    }
                }
                keys.insert(key);
            }
        }
        let tracked: BTreeSet<InstanceKey> = self.insts.keys().cloned().collect();
        ensure!(keys == tracked, "instances {keys:?} but signals say {tracked:?}");
        for (pid, slot) in &self.live {
            ensure!(
                e.process_owner(*pid) == Some(slot),
                "live pid {pid} of {slot:?} is owned by {:?}",
                e.process_owner(*pid)
            );
            ensure!(owned.contains(pid), "live pid {pid} of {slot:?} is in no slot");
        }
        for pid in 100..self.next_pid {
            if !self.live.contains_key(&pid) {
                ensure!(
                    e.process_owner(pid).is_none(),
                    "pid {pid} is gone or let go but owned by {:?}",
                    e.process_owner(pid)
                );
            }
        }
        for k in self.held.iter().chain(&self.queue) {
            let slot = e.instance(&k.0).map(|i| i.slot(k.1));
            ensure!(
                slot == Some(Slot::Spawning),
                "outstanding spawn {k:?} but the slot is {slot:?}"
            );
        }
        let mut pending: BTreeMap<String, u64> = BTreeMap::new();
        for (_, ev) in e.events() {
            *pending.entry(ev_key(&ev.name, &ev.env)).or_default() += 1;
        }
        let all: BTreeSet<&String> = self
            .expected
            .keys()
            .chain(self.emitted.keys())
            .chain(pending.keys())
            .collect();
        for key in all {
            let (got, left) = (
                self.emitted.get(key).copied().unwrap_or(0),
                pending.get(key).copied().unwrap_or(0),
            );
            let name = key.split(' ').next().unwrap_or("");
            if name.ends_with("/failed") {
                continue;
            }
            let want = self.expected.get(key).copied().unwrap_or(0);
            ensure!(
                want == got + left,
                "`{key}`: queued {want} times, finished {got}, in the queue {left}"
            );
        }
        Ok(())
    }

    /// What holds once an action is complete (spawns answered).
    fn check_rest(&self, first_request: ReplyTo) -> Res {
        for (job, class) in self.engine.classes() {
            for (name, inst) in &class.instances {
                ensure!(
                    inst.state != State::Waiting,
                    "{job} ({name}) rests in waiting with goal {:?}",
                    inst.goal
                );
            }
        }
        for (to, r) in self.requests.range(first_request..) {
            if !r.wait {
                ensure!(
                    r.replies == 1,
                    "request {to} ({}) without wait got {} replies",
                    r.what,
                    r.replies
                );
            }
        }
        Ok(())
    }

    fn answer(&mut self, key: InstanceKey, process: ProcessKind, fail: bool) -> Res {
        let dodge = self.workaround_spawn_failed
            && process == ProcessKind::Main
            && self
                .engine
                .instance(&key)
                .is_some_and(|i| i.state == State::Stopping);
        if fail && !dodge {
            self.feed(Input::SpawnFailed {
                key,
                process,
                error: "simulated failure".into(),
            })
        } else {
            let pid = self.next_pid;
            self.next_pid += 1;
            self.live.insert(pid, (key.clone(), process));
            self.feed(Input::Spawned { key, process, pid })
        }
    }

    fn answer_queue(&mut self) -> Res {
        let mut answered = 0;
        while let Some((key, process)) = self.queue.pop_front() {
            if answered >= MAX_ANSWERS {
                self.held.push((key, process));
                continue;
            }
            answered += 1;
            let fail = self.fail_mask & 1 == 1;
            self.fail_mask >>= 1;
            self.answer(key, process, fail)?;
        }
        Ok(())
    }

    fn instance_keys(&self) -> Vec<InstanceKey> {
        self.engine.instance_keys()
    }

    /// Instances in `spawned` with a live main process, and its pid.
    fn expecting(&self) -> Vec<(InstanceKey, Pid)> {
        self.engine
            .classes()
            .iter()
            .flat_map(|(job, c)| {
                c.instances
                    .iter()
                    .filter_map(move |(name, i)| match (i.state, i.slots[0]) {
                        (State::Spawned, Slot::Alive(pid)) => {
                            Some((InstanceKey::new(job, name.clone()), pid))
                        }
                        _ => None,
                    })
            })
            .collect()
    }

    fn pick_instance(&self, sel: u16) -> InstanceKey {
        let keys = self.instance_keys();
        if keys.is_empty() || sel.is_multiple_of(8) {
            return InstanceKey::new("j0", "nonesuch");
        }
        keys[sel as usize / 8 % keys.len()].clone()
    }

    fn exit(&mut self, pid: Pid, status: ExitStatus) -> Res {
        self.live.remove(&pid);
        self.stray.remove(&pid);
        self.sigkilled.remove(&pid);
        self.feed(Input::Exited { pid, status })
    }

    fn load(&mut self, job: usize, text: &str) -> Res {
        let conf = parse_job(text.as_bytes())
            .map_err(|e| format!("generated job j{job} does not parse: {e:?}\n{text}"))?;
        self.feed(Input::LoadJob {
            name: format!("j{job}").into(),
            conf: std::sync::Arc::new(conf),
        })
    }

    fn run_step(&mut self, s: &Step) -> Res {
        let first_request = self.next_token;
        self.hold_new = s.hold;
        self.fail_mask = s.fail_mask;
        let n = self.n;
        let req_env = |env: u8| match env {
            1 => vec!["N=1".to_string()],
            2 => vec!["N=2".to_string()],
            _ => Vec::new(),
        };
        match &s.act {
            Act::Emit { ev, env, by } => {
                let name = PLAIN[*ev as usize % PLAIN.len()].to_string();
                let env: Vec<String> = match env {
                    1 => vec!["X=1".into()],
                    2 => vec!["X=2".into()],
                    3 => vec!["X=1".into(), "N=1".into()],
                    4 => vec!["N=2".into()],
                    _ => Vec::new(),
                };
                *self.expected.entry(ev_key(&name, &env)).or_default() += 1;
                let by = self.request(*by, format!("emit {name}"));
                self.feed(Input::Emit { name, env, by })?;
            }
            Act::Start { job, env, by } | Act::Stop { job, env, by } | Act::Restart { job, env, by } => {
                let job = format!("j{}", *job as usize % n);
                let env = req_env(*env);
                let by = self.request(*by, format!("{:?}", s.act));
                self.feed(match s.act {
                    Act::Start { .. } => Input::Start { job, env, by },
                    Act::Stop { .. } => Input::Stop { job, env, by },
                    _ => Input::Restart { job, env, by },
                })?;
            }
            Act::InstanceStart { sel, by }
            | Act::InstanceStop { sel, by }
            | Act::InstanceRestart { sel, by }
            | Act::Reload { sel, by } => {
                let key = self.pick_instance(*sel);
                let by = self.request(*by, format!("{:?} {key:?}", s.act));
                self.feed(match s.act {
                    Act::InstanceStart { .. } => Input::InstanceStart { key, by },
                    Act::InstanceStop { .. } => Input::InstanceStop { key, by },
                    Act::InstanceRestart { .. } => Input::InstanceRestart { key, by },
                    _ => Input::Reload { key, by },
                })?;
            }
            Act::Exit { sel, status } => {
                let pids: Vec<Pid> = self.live.keys().chain(&self.stray).copied().collect();
                if !pids.is_empty() {
                    let pid = pids[*sel as usize % pids.len()];
                    let status = match status % 6 {
                        0 | 1 => ExitStatus::Exited(0),
                        2 => ExitStatus::Exited(1),
                        3 => ExitStatus::Exited(2),
                        4 => ExitStatus::Signaled(15),
                        _ => ExitStatus::Signaled(9),
                    };
                    self.exit(pid, status)?;
                }
            }
            Act::MainPid { sel } => {
                let forking = self.expecting();
                if !forking.is_empty() {
                    let (key, old) = forking[*sel as usize % forking.len()].clone();
                    let pid = self.next_pid;
                    self.next_pid += 1;
                    self.live.remove(&old);
                    self.stray.insert(old);
                    self.live.insert(pid, (key.clone(), ProcessKind::Main));
                    self.feed(Input::MainPid { key, pid })?;
                }
            }
            Act::Ready { sel, fresh } => {
                let ready = self.expecting();
                if !ready.is_empty() {
                    let (key, old) = ready[*sel as usize % ready.len()].clone();
                    let pid = if *fresh {
                        let pid = self.next_pid;
                        self.next_pid += 1;
                        self.live.remove(&old);
                        self.stray.insert(old);
                        self.live.insert(pid, (key.clone(), ProcessKind::Main));
                        pid
                    } else {
                        old
                    };
                    self.feed(Input::Ready { key, pid })?;
                }
            }
            Act::Tick { adv } => {
                match ADVANCE.get(*adv as usize) {
                    Some(d) => self.now += d,
                    None => {
                        if let Some(d) = self.engine.next_deadline() {
                            self.now = self.now.max(d);
                        }
                    }
                }
                self.feed(Input::Tick)?;
            }
            Act::Load { job, text } => self.load(*job, text)?,
            Act::Remove { job } => self.feed(Input::RemoveJob {
                name: format!("j{}", *job as usize % n).into(),
            })?,
            Act::Deliver { sel, fail } => {
                if !self.held.is_empty() {
                    let (key, process) = self.held.remove(*sel as usize % self.held.len());
                    // What it spawns in turn is answered below.
                    self.hold_new = false;
                    self.answer(key, process, *fail)?;
                }
            }
            Act::SetRespawn(on) => self.feed(Input::SetRespawn(*on))?,
            Act::Snapshot => {
                if self.workaround_restore {
                    self.engine = roundtrip(&self.engine)?;
                }
                let twin = roundtrip(&self.engine)?;
                ensure!(
                    twin.state_json() == self.engine.state_json(),
                    "state differs right after the round trip"
                );
                self.trace.push("-- snapshot (restored twin follows)".into());
                self.twin = Some(twin);
            }
        }
        self.answer_queue()?;
        self.check_between().map_err(|e| self.fail(e))?;
        self.check_references().map_err(|e| self.fail(e))?;
        self.check_rest(first_request).map_err(|e| self.fail(e))
    }

    /// Brings everything to rest (see the module documentation). Returns
    /// whether it did; `false` only for a verified wait-for cycle between
    /// instances and events, which only cyclic job sets may reach.
    fn drain(&mut self) -> Result<bool, String> {
        self.hold_new = false;
        self.fail_mask = 0;
        let names: Vec<String> = self.engine.classes().keys().map(String::from).collect();
        for name in names {
            self.feed(Input::RemoveJob { name: name.into() })?;
        }
        self.answer_queue()?;
        let mut last = String::new();
        let mut still = 0;
        for round in 0..DRAIN_ROUNDS {
            if self.is_drained() {
                self.count(format!("drain rounds: {}", round.min(10)));
                return Ok(true);
            }
            for key in self.instance_keys() {
                if self.engine.instance(&key).is_some_and(|i| i.goal != Goal::Stop) {
                    let by = self.request(By::NoWait, format!("drain stop {key:?}"));
                    self.feed(Input::InstanceStop { key, by })?;
                    self.answer_queue()?;
                }
            }
            for (key, process) in std::mem::take(&mut self.held) {
                self.queue.push_back((key, process));
            }
            self.answer_queue()?;
            // Complete the partial `stop on` matches that may hold events.
            if !self.instance_keys().is_empty() && self.engine.events().next().is_some() {
                let mut emits: Vec<(String, Vec<String>)> = Vec::new();
                for p in PLAIN {
                    for n in ["N=1", "N=2"] {
                        emits.push((p.to_string(), vec!["X=1".to_string(), n.to_string()]));
                    }
                }
                for ev in JOB_EVENTS {
                    for k in 0..self.n {
                        emits.push((ev.to_string(), vec![format!("JOB=j{k}"), "INSTANCE=".to_string()]));
                    }
                }
                for (name, env) in emits {
                    *self.expected.entry(ev_key(&name, &env)).or_default() += 1;
                    self.feed(Input::Emit { name, env, by: None })?;
                    self.answer_queue()?;
                }
            }
            let deadline = self.engine.next_deadline();
            if round % 2 == 0 && deadline.is_some() {
                self.now = self.now.max(deadline.unwrap_or(0));
                self.feed(Input::Tick)?;
            } else {
                let pids: Vec<Pid> = self.live.keys().chain(&self.stray).copied().collect();
                for pid in pids {
                    let status = if self.sigkilled.contains(&pid) {
                        ExitStatus::Signaled(9)
                    } else {
                        ExitStatus::Exited(0)
                    };
                    if self.live.contains_key(&pid) || self.stray.contains(&pid) {
                        self.exit(pid, status)?;
                    }
                    self.answer_queue()?;
                }
            }
            self.answer_queue()?;
            self.check_references().map_err(|e| self.fail(e))?;
            let now = self.engine.state_json();
            if now == last {
                still += 1;
                if still >= 2 {
                    break;
                }
            } else {
                still = 0;
            }
            last = now;
        }
        if self.is_drained() {
            return Ok(true);
        }
        let stuck = self.wait_cycle();
        match stuck {
            Ok(()) if self.cyclic => {
                self.count("drain ended in a wait-for cycle (cyclic job set)");
                Ok(false)
            }
            Ok(()) => Err(self.fail(format!(
                "drain ended in a wait-for cycle although the jobs' references form none; state:\n{}",
                self.engine.state_json()
            ))),
            Err(why) => Err(self.fail(format!(
                "drain did not settle ({why}); state:\n{}",
                self.engine.state_json()
            ))),
        }
    }

    /// Whether what is left is a genuine wait-for cycle: no process, no
    /// timer, no spawn outstanding, every instance in `starting` or
    /// `stopping` waiting for its event, every event held (the reference
    /// counts are checked separately).
    fn wait_cycle(&self) -> Res {
        ensure!(
            self.live.is_empty() && self.stray.is_empty(),
            "processes left: {:?}",
            self.live
        );
        ensure!(
            self.held.is_empty() && self.queue.is_empty(),
            "spawns outstanding: {:?}",
            self.held
        );
        ensure!(self.engine.next_deadline().is_none(), "a timer is armed");
        for (job, class) in self.engine.classes() {
            for (name, inst) in &class.instances {
                ensure!(
                    matches!(inst.state, State::Starting | State::Stopping) && inst.blocker.is_some(),
                    "{job} ({name}) is {:?} with blocker {:?}",
                    inst.state,
                    inst.blocker
                );
            }
        }
        Ok(())
    }

    /// Every unfinished event is `handling` and held: its `blockers` equal
    /// the references to it (matches in `start on`/`stop on` trees and
    /// `Blocked::Event` entries of instances); nothing refers to a finished
    /// event; an instance's blocker is an unfinished event that lists it,
    /// and only instances in `starting`/`stopping` have one.
    fn check_references(&self) -> Res {
        fn tree_refs(t: &OperatorTree, refs: &mut BTreeMap<u64, u32>) {
            for id in t.held_events() {
                *refs.entry(id.0).or_default() += 1;
            }
        }
        let mut refs: BTreeMap<u64, u32> = BTreeMap::new();
        for (job, class) in self.engine.classes() {
            if let Some(t) = &class.start_on {
                tree_refs(t, &mut refs);
            }
            for (name, inst) in &class.instances {
                if let Some(t) = &inst.stop_on {
                    tree_refs(t, &mut refs);
                }
                for b in &inst.blocking {
                    if let Blocked::Event(id) = b {
                        *refs.entry(id.0).or_default() += 1;
                    }
                }
                if let Some(id) = inst.blocker {
                    let key = InstanceKey::new(job, name.clone());
                    ensure!(
                        matches!(inst.state, State::Starting | State::Stopping),
                        "{key:?} in {:?} has blocker {id:?}",
                        inst.state
                    );
                    let ev = self.engine.events().find(|(i, _)| **i == id).map(|(_, e)| e);
                    ensure!(
                        ev.is_some_and(|e| e.blocking.contains(&Blocked::Job(key.clone()))),
                        "{key:?} waits for event {id:?}, which is {ev:?}"
                    );
                }
            }
        }
        for (id, ev) in self.engine.events() {
            ensure!(
                ev.progress == Progress::Handling,
                "event {id:?} {} still pending after a step",
                ev.name
            );
            let r = refs.remove(&id.0).unwrap_or(0);
            ensure!(
                ev.blockers == r && r > 0,
                "event {id:?} {} {:?} has {} blockers but {r} references",
                ev.name,
                ev.env,
                ev.blockers
            );
        }
        ensure!(refs.is_empty(), "references to finished events: {refs:?}");
        Ok(())
    }

    fn is_drained(&self) -> bool {
        self.engine.classes().is_empty()
            && self.engine.events().next().is_none()
            && self.engine.next_deadline().is_none()
            && self.held.is_empty()
            && self.queue.is_empty()
            && self.live.is_empty()
            && self.stray.is_empty()
    }

    fn check_drained(&self) -> Res {
        ensure!(
            self.insts.is_empty(),
            "instances never removed: {:?}",
            self.insts.keys()
        );
        ensure!(self.jobs.is_empty(), "jobs never removed: {:?}", self.jobs);
        for (to, r) in &self.requests {
            ensure!(
                r.replies == 1,
                "request {to} ({}, wait {}) got {} replies",
                r.what,
                r.wait,
                r.replies
            );
        }
        for (key, want) in &self.expected {
            let got = self.emitted.get(key).copied().unwrap_or(0);
            ensure!(
                *want == got,
                "`{key}` queued {want} times but finished {got} times"
            );
        }
        Ok(())
    }
}

/// Runs a case: load the jobs, apply the steps, drain, check.
fn run(case: &Case) -> Res {
    run_with(case, std::env::var_os("ENGINE_PROPS_NO_WORKAROUNDS").is_none())
}

/// Runs a case with the workarounds for known engine bugs on or off.
fn run_with(case: &Case, workarounds: bool) -> Res {
    let mut sim = Sim::new(case.jobs.len(), case.cyclic);
    sim.workaround_restore = workarounds && WORKAROUND_RESTORE_CONF_IDENTITY;
    sim.workaround_spawn_failed = workarounds && WORKAROUND_SPAWN_FAILED_WHILE_STOPPING;
    sim.count(if case.cyclic {
        "cases: cyclic"
    } else {
        "cases: acyclic"
    });
    for (i, text) in case.jobs.iter().enumerate() {
        sim.load(i, text)?;
    }
    for s in &case.steps {
        sim.run_step(s)?;
    }
    let live_before_drain = sim.instance_keys().len();
    sim.count(format!(
        "instances left before drain: {}",
        live_before_drain.min(5)
    ));
    if sim.drain()? {
        sim.check_drained().map_err(|e| sim.fail(e))?;
    }
    let mut all = STATS.lock().unwrap();
    for (k, v) in sim.stats {
        *all.entry(k).or_default() += v;
    }
    Ok(())
}

fn max_steps() -> usize {
    std::env::var("ENGINE_PROPS_STEPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(MAX_STEPS)
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(CASES)
}

/// Counts of what the cases exercised, printed with `ENGINE_PROPS_STATS=1`.
static STATS: Mutex<BTreeMap<String, u64>> = Mutex::new(BTreeMap::new());

#[test]
fn engine_invariants_hold_for_random_jobs_and_inputs() {
    let config = Config {
        cases: cases(),
        failure_persistence: None,
        max_shrink_iters: 20_000,
        max_shrink_time: 120_000,
        ..Config::default()
    };
    let mut runner = TestRunner::new(config);
    let result = runner.run(&case(), |case| run(&case).map_err(TestCaseError::fail));
    if std::env::var_os("ENGINE_PROPS_STATS").is_some() {
        for (what, n) in STATS.lock().unwrap().iter() {
            eprintln!("{n:>10}  {what}");
        }
    }
    if let Err(e) = result {
        panic!("{e}");
    }
}

// ------------------------------------------------------- fixed cases

fn st(act: Act) -> Step {
    Step {
        act,
        fail_mask: 0,
        hold: false,
    }
}

/// The simulator itself on a plain run: start, stop with wait, drain.
#[test]
fn simulator_runs_a_plain_service_to_rest() {
    let case = Case {
        cyclic: false,
        jobs: vec![
            "start on a\nstop on c\nexec sleep 1000\npre-stop exec true\n".into(),
            "start on started j0\nexec sleep 1000\n".into(),
            "start on b X=1\ntask\nexec sleep 1000\n".into(),
        ],
        steps: vec![
            st(Act::Emit {
                ev: 0,
                env: 0,
                by: By::Wait,
            }),
            st(Act::Emit {
                ev: 1,
                env: 1,
                by: By::Wait,
            }),
            st(Act::Snapshot),
            st(Act::Exit { sel: 0, status: 0 }),
            st(Act::Stop {
                job: 0,
                env: 0,
                by: By::Wait,
            }),
            st(Act::Tick { adv: 7 }),
        ],
    };
    run(&case).unwrap();
}

// ------------------------------------------- regressions of engine bugs

/// Engine bug (found by the round-trip property): `Engine::restored()`
/// leaves each instance with its own deserialised `Arc<JobConf>`, no longer
/// pointer-equal to its class's, so the next `enter_starting` (respawn,
/// restart) takes the configuration for changed and rebuilds the `stop on`
/// tree, releasing partial matches that the original engine keeps: here
/// the restored engine finishes event `a` (held by `stop on (a and b)`)
/// when the job respawns, the original does not. Un-ignore once fixed (and
/// set [`WORKAROUND_RESTORE_CONF_IDENTITY`] to `false`).
#[test]
fn regression_restore_keeps_partial_stop_on_across_respawn() {
    let conf = parse_job(b"stop on (a and b)\nrespawn\nexec sleep 1000\n").unwrap();
    let mut e = Engine::new(EngineConfig::default());
    e.step(
        0,
        Input::LoadJob {
            name: "j0".into(),
            conf: std::sync::Arc::new(conf),
        },
    );
    e.step(
        0,
        Input::Start {
            job: "j0".into(),
            env: Vec::new(),
            by: None,
        },
    );
    let key = InstanceKey::new("j0", "");
    e.step(
        0,
        Input::Spawned {
            key,
            process: ProcessKind::Main,
            pid: 100,
        },
    );
    e.step(
        0,
        Input::Emit {
            name: "a".into(),
            env: Vec::new(),
            by: None,
        },
    );
    let mut r = roundtrip(&e).unwrap();
    let exit = Input::Exited {
        pid: 100,
        status: ExitStatus::Exited(1),
    };
    assert_eq!(e.step(0, exit.clone()), r.step(0, exit), "effects of the respawn");
    assert_eq!(e.state_json(), r.state_json());
}

/// The same through the simulator, without the workaround.
#[test]
fn regression_restore_keeps_partial_stop_on_across_respawn_simulated() {
    let case = Case {
        cyclic: false,
        jobs: vec![
            "stop on (a and b)\nrespawn\nexec sleep 1000\n".into(),
            "exec sleep 1000\n".into(),
            "exec sleep 1000\n".into(),
        ],
        steps: vec![
            st(Act::Start {
                job: 0,
                env: 0,
                by: By::None,
            }),
            st(Act::Emit {
                ev: 0,
                env: 0,
                by: By::None,
            }),
            st(Act::Snapshot),
            st(Act::Exit { sel: 0, status: 2 }),
        ],
    };
    run_with(&case, false).unwrap();
}

/// Feeds inputs to a fresh engine with `jobs` loaded as `j0`, `j1`, ….
fn engine_with(jobs: &[&str]) -> Engine {
    let mut e = Engine::new(EngineConfig::default());
    for (i, text) in jobs.iter().enumerate() {
        e.step(
            0,
            Input::LoadJob {
                name: format!("j{i}").into(),
                conf: std::sync::Arc::new(parse_job(text.as_bytes()).unwrap()),
            },
        );
    }
    e
}

fn start(job: &str) -> Input {
    Input::Start {
        job: job.into(),
        env: Vec::new(),
        by: None,
    }
}

fn stop(job: &str) -> Input {
    Input::Stop {
        job: job.into(),
        env: Vec::new(),
        by: None,
    }
}

/// Engine bug (found by the reference checks): `spawn_failed` advances the
/// instance whatever its state. A stop while the main process is still
/// being spawned moves the instance to `stopping` at once (the `expect`
/// shortcut of `change_goal`); if the spawn then fails while the
/// `stopping` event is still held (here by `j1`, which it started), the
/// instance runs on through `killed` to `post-stop` without waiting for its
/// event, and when the event finishes later, `finish_event` advances it a
/// second time (from `post-stop` to `waiting`, dropping the instance while
/// its post-stop process is still being spawned). `spawn_failed` should
/// advance only when the instance waits for that process (as `exited`
/// does: `spawned`/`killed` for main, the matching state for the others).
#[test]
fn regression_spawn_failure_while_stopping_waits_for_the_event() {
    let mut e = engine_with(&[
        "exec sleep 1000\npost-stop exec true\n",
        "start on stopping j0\nexec sleep 1000\n",
    ]);
    let j0 = InstanceKey::new("j0", "");
    e.step(0, start("j0")); // main of j0 asked for, not yet spawned
    e.step(0, stop("j0")); // j0 stopping; `stopping j0` starts j1 and waits for it
    assert_eq!(e.instance(&j0).map(|i| i.state), Some(State::Stopping));
    e.step(
        0,
        Input::SpawnFailed {
            key: j0.clone(),
            process: ProcessKind::Main,
            error: "exec failed".into(),
        },
    );
    assert_eq!(
        e.instance(&j0).map(|i| i.state),
        Some(State::Stopping),
        "j0 must wait in stopping until `stopping j0` has finished (j1 is not running yet)"
    );
}

/// The same through the simulator.
#[test]
fn regression_spawn_failure_while_stopping_waits_for_the_event_simulated() {
    let hold = |act| Step {
        act,
        fail_mask: 0,
        hold: true,
    };
    let case = Case {
        cyclic: false,
        jobs: vec![
            "exec sleep 1000\npost-stop exec true\n".into(),
            "start on stopping j0\nexec sleep 1000\n".into(),
            "exec sleep 1000\n".into(),
        ],
        steps: vec![
            hold(Act::Start {
                job: 0,
                env: 0,
                by: By::Wait,
            }),
            hold(Act::Stop {
                job: 0,
                env: 0,
                by: By::Wait,
            }),
            st(Act::Deliver { sel: 0, fail: true }),
        ],
    };
    run_with(&case, false).unwrap();
}

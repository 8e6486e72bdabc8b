//! Scenario tests of the engine (spec §1.5–1.10, §2.1–2.3, §3.3–3.4, and
//! upshot's deliberate differences listed in `engine/mod.rs`).
//!
//! A small simulator stands in for the main loop and the supervisor: it owns
//! an [`Engine`], a virtual clock and a pid counter, answers every
//! [`Effect::Spawn`] with [`Input::Spawned`] (a fresh pid) as the real
//! supervisor would, and writes everything the engine says into a readable
//! trace. Tests assert whole traces, so a change of order fails.

use init::engine::{
    Answer, BusSignal, Effect, Engine, EngineConfig, ExitStatus, Goal, Input, InstanceKey, LogLevel, Pid,
    ReplyTo, Request, Spawn, State, Time,
};
use jobconf_parser::{ProcessKind, parse_job};
use std::collections::VecDeque;

use ExitStatus::{Exited, Signaled};
use ProcessKind::{Main, PostStart, PostStop, PreStart, PreStop};

const SECOND: Time = 1_000_000;
const PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/bin:/usr/sbin:/sbin:/bin";
const SIGKILL: i32 = 9;
const SIGTERM: i32 = 15;

// ------------------------------------------------------------------ simulator

/// The main loop and supervisor, simulated.
struct Sim {
    engine: Engine,
    now: Time,
    next_pid: Pid,
    next_reply: ReplyTo,
    trace: Vec<String>,
    /// Every log line, all levels (the trace keeps warnings and errors).
    logs: Vec<(LogLevel, String)>,
    /// Every spawn asked for, in order.
    spawns: Vec<Spawn>,
    /// One-shot spawn failures to answer instead of `Spawned`.
    fail_spawns: Vec<(InstanceKey, ProcessKind, String)>,
    /// Serialise and restore the engine before every input.
    roundtrip: bool,
    /// Keep the supervisor's answers to spawns back (in `held`) instead of
    /// feeding them at once, to test inputs that overtake them.
    hold_spawns: bool,
    held: Vec<Input>,
}

fn key(job: &str, instance: &str) -> InstanceKey {
    InstanceKey::new(job, instance)
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

impl Sim {
    fn new() -> Sim {
        Sim::with_config(EngineConfig::default())
    }

    fn with_config(config: EngineConfig) -> Sim {
        Sim {
            engine: Engine::new(config),
            now: 0,
            next_pid: 100,
            next_reply: 1,
            trace: Vec::new(),
            logs: Vec::new(),
            spawns: Vec::new(),
            fail_spawns: Vec::new(),
            roundtrip: false,
            hold_spawns: false,
            held: Vec::new(),
        }
    }

    /// Feeds one input, then the supervisor's answers to the spawns it
    /// asked for, until nothing is left to answer.
    fn feed(&mut self, input: Input) {
        let mut queue = VecDeque::from([input]);
        while let Some(input) = queue.pop_front() {
            if self.roundtrip {
                let json = serde_json::to_string(&self.engine).expect("engine serialises");
                let back: Engine = serde_json::from_str(&json).expect("engine deserialises");
                self.engine = back.restored();
            }
            for effect in self.engine.step(self.now, input) {
                match self.record(effect) {
                    Some(answer) if self.hold_spawns => self.held.push(answer),
                    Some(answer) => queue.push_back(answer),
                    None => {}
                }
            }
        }
    }

    /// Writes an effect into the trace; a spawn gets the supervisor's answer.
    fn record(&mut self, effect: Effect) -> Option<Input> {
        let line = match effect {
            Effect::Spawn(spawn) => {
                let line = format!("spawn {} {}", spawn.key.display(), spawn.process.name());
                let (key, process) = (spawn.key.clone(), spawn.process);
                self.spawns.push(spawn);
                self.trace.push(line);
                if let Some(i) = self
                    .fail_spawns
                    .iter()
                    .position(|(k, p, _)| *k == key && *p == process)
                {
                    let (_, _, error) = self.fail_spawns.remove(i);
                    return Some(Input::SpawnFailed { key, process, error });
                }
                let pid = self.next_pid;
                self.next_pid += 1;
                return Some(Input::Spawned { key, process, pid });
            }
            Effect::Kill {
                key,
                process,
                signal,
                tree,
                ..
            } => format!(
                "kill {} {} {}{}",
                key.display(),
                process.name(),
                signal.to_event_value(),
                if tree { "" } else { " (pid only)" }
            ),
            Effect::Reply { to, result } => match result {
                Ok(Answer::Done) => format!("reply {to} ok"),
                Ok(Answer::Instance(k)) => format!("reply {to} ok {}", k.display()),
                Err(e) => format!("reply {to} error {:?}: {}", e.kind, e.message),
            },
            Effect::Signal(s) => match s {
                BusSignal::JobAdded(j) => format!("job added {j}"),
                BusSignal::JobRemoved(j) => format!("job removed {j}"),
                BusSignal::InstanceAdded(k) => format!("instance added {}", k.display()),
                BusSignal::InstanceRemoved(k) => format!("instance removed {}", k.display()),
                BusSignal::GoalChanged(k, g) => format!("{}: goal {}", k.display(), g.name()),
                BusSignal::StateChanged(k, s) => format!("{}: state {}", k.display(), s.name()),
                BusSignal::Failed(k, status) => format!("{}: failed {status}", k.display()),
                BusSignal::EventEmitted { name, env } => {
                    let mut line = format!("event {name}");
                    for e in env {
                        line.push(' ');
                        line.push_str(&e);
                    }
                    line
                }
            },
            Effect::Log { level, message } => {
                self.logs.push((level, message.clone()));
                match level {
                    LogLevel::Warn => format!("warn: {message}"),
                    LogLevel::Error => format!("error: {message}"),
                    LogLevel::Debug | LogLevel::Info => return None,
                }
            }
        };
        self.trace.push(line);
        None
    }

    fn request(&mut self, wait: bool) -> Request {
        let reply = self.next_reply;
        self.next_reply += 1;
        Request { reply, wait }
    }

    /// Loads (or reloads) a job from its text.
    fn load(&mut self, name: &str, text: &str) {
        let conf = parse_job(text.as_bytes()).unwrap_or_else(|e| panic!("{name}: {e:?}"));
        self.feed(Input::LoadJob {
            name: name.into(),
            conf: std::sync::Arc::new(conf),
        });
    }

    fn remove(&mut self, name: &str) {
        self.feed(Input::RemoveJob { name: name.into() });
    }

    /// Emits an event nobody waits for.
    fn emit(&mut self, name: &str, env: &[&str]) {
        self.feed(Input::Emit {
            name: name.into(),
            env: strings(env),
            by: None,
        });
    }

    /// Emits an event for a client that waits (`initctl emit`).
    fn emit_wait(&mut self, name: &str, env: &[&str]) -> ReplyTo {
        let by = self.request(true);
        self.feed(Input::Emit {
            name: name.into(),
            env: strings(env),
            by: Some(by),
        });
        by.reply
    }

    fn start(&mut self, job: &str, env: &[&str], wait: bool) -> ReplyTo {
        let by = self.request(wait);
        self.feed(Input::Start {
            job: job.into(),
            env: strings(env),
            by: Some(by),
        });
        by.reply
    }

    fn stop(&mut self, job: &str, env: &[&str], wait: bool) -> ReplyTo {
        let by = self.request(wait);
        self.feed(Input::Stop {
            job: job.into(),
            env: strings(env),
            by: Some(by),
        });
        by.reply
    }

    fn restart(&mut self, job: &str, env: &[&str], wait: bool) -> ReplyTo {
        let by = self.request(wait);
        self.feed(Input::Restart {
            job: job.into(),
            env: strings(env),
            by: Some(by),
        });
        by.reply
    }

    fn reload(&mut self, job: &str, instance: &str) -> ReplyTo {
        let by = self.request(false);
        self.feed(Input::Reload {
            key: key(job, instance),
            by: Some(by),
        });
        by.reply
    }

    /// Starts a job with no client and checks it reached `running`; the
    /// trace of that is dropped.
    fn bring_up(&mut self, job: &str, env: &[&str]) {
        self.feed(Input::Start {
            job: job.into(),
            env: strings(env),
            by: None,
        });
        self.trace.clear();
        assert_eq!(self.state(job, ""), Some(State::Running), "{job} is running");
    }

    /// The process of an instance ends.
    fn exit(&mut self, job: &str, instance: &str, process: ProcessKind, status: ExitStatus) {
        let pid = self.pid(job, instance, process).unwrap_or_else(|| {
            panic!(
                "{job} ({instance}) has no live {} process; trace so far: {:#?}",
                process.name(),
                self.trace
            )
        });
        self.exit_pid(pid, status);
    }

    fn exit_pid(&mut self, pid: Pid, status: ExitStatus) {
        self.feed(Input::Exited { pid, status });
    }

    /// Feeds the answers to spawns held back so far, in order.
    fn release_spawns(&mut self) {
        for answer in std::mem::take(&mut self.held) {
            self.feed(answer);
        }
    }

    /// The next spawn of this process fails with `error`.
    fn fail_spawn(&mut self, job: &str, instance: &str, process: ProcessKind, error: &str) {
        self.fail_spawns.push((key(job, instance), process, error.into()));
    }

    /// Lets `us` microseconds pass, feeding `Tick` at every deadline on the way.
    fn advance_us(&mut self, us: Time) {
        let target = self.now + us;
        while let Some(at) = self.engine.next_deadline() {
            if at > target {
                break;
            }
            self.now = self.now.max(at);
            self.feed(Input::Tick);
        }
        self.now = target;
    }

    fn advance(&mut self, seconds: u64) {
        self.advance_us(seconds * SECOND);
    }

    fn advance_ms(&mut self, ms: u64) {
        self.advance_us(ms * 1000);
    }

    fn state(&self, job: &str, instance: &str) -> Option<State> {
        self.engine.instance(&key(job, instance)).map(|i| i.state)
    }

    fn goal(&self, job: &str, instance: &str) -> Option<Goal> {
        self.engine.instance(&key(job, instance)).map(|i| i.goal)
    }

    fn pid(&self, job: &str, instance: &str, process: ProcessKind) -> Option<Pid> {
        self.engine.instance(&key(job, instance))?.pid(process)
    }

    fn take_trace(&mut self) -> Vec<String> {
        std::mem::take(&mut self.trace)
    }

    /// The last spawn of this process.
    fn last_spawn(&self, job: &str, instance: &str, process: ProcessKind) -> &Spawn {
        let k = key(job, instance);
        self.spawns
            .iter()
            .rev()
            .find(|s| s.key == k && s.process == process)
            .unwrap_or_else(|| panic!("{} {} was never spawned", k.display(), process.name()))
    }

    /// The environment the last spawn of this process got.
    fn spawn_env(&self, job: &str, instance: &str, process: ProcessKind) -> Vec<String> {
        self.last_spawn(job, instance, process).env.clone()
    }

    fn spawned(&self, job: &str, process: ProcessKind) -> usize {
        self.spawns
            .iter()
            .filter(|s| s.key.job == job && s.process == process)
            .count()
    }

    fn logged(&self, level: LogLevel, message: &str) -> bool {
        self.logs.iter().any(|(l, m)| *l == level && m == message)
    }
}

/// The `event …` lines of a trace.
fn events_of(trace: &[String]) -> Vec<&str> {
    trace
        .iter()
        .filter_map(|l| l.strip_prefix("event "))
        .map(|l| l.split(' ').next().unwrap_or(l))
        .collect()
}

// ------------------------------------------------------- services and tasks

const SERVICE: &str = "\
pre-start exec /bin/pre-start
exec /bin/main
post-start exec /bin/post-start
post-stop exec /bin/post-stop
";

/// Spec §1.9/§1.10: starting (blocking) → pre-start → main → post-start →
/// running, and `started` only once post-start is done; a waiting `start`
/// is answered at `running` with the instance (§3.3).
#[test]
fn service_start_runs_pre_start_main_post_start_then_emits_started() {
    let mut sim = Sim::new();
    sim.load("foo", SERVICE);
    assert_eq!(sim.take_trace(), ["job added foo"]);

    let r = sim.start("foo", &[], true);
    assert_eq!(
        sim.take_trace(),
        [
            "instance added foo",
            "foo: goal start",
            "foo: state starting",
            "foo: state pre-start",
            "spawn foo pre-start",
            // EventEmitted goes out when the event is done, after the jobs
            // it held have moved on (`event_finished`).
            "event starting JOB=foo INSTANCE=",
        ]
    );
    sim.exit("foo", "", PreStart, Exited(0));
    assert_eq!(
        sim.take_trace(),
        [
            "foo: state spawned",
            "spawn foo main",
            "foo: state post-start",
            "spawn foo post-start",
        ]
    );
    // post-start holds `started` back (and the waiting start).
    assert_eq!(sim.state("foo", ""), Some(State::PostStart));
    assert!(sim.pid("foo", "", Main).is_some());

    sim.exit("foo", "", PostStart, Exited(0));
    assert_eq!(
        sim.take_trace(),
        [
            "foo: state running",
            &format!("reply {r} ok foo"),
            "event started JOB=foo INSTANCE=",
        ]
    );
    assert_eq!(sim.goal("foo", ""), Some(Goal::Start));
}

/// Spec §1.9: stop runs stopping (blocking) → killed (kill signal to the
/// group) → post-stop → waiting, and `stopped` only after post-stop.
#[test]
fn service_stop_kills_main_runs_post_stop_then_emits_stopped() {
    let mut sim = Sim::new();
    sim.load("foo", SERVICE);
    sim.start("foo", &[], false);
    sim.exit("foo", "", PreStart, Exited(0));
    sim.exit("foo", "", PostStart, Exited(0));
    sim.take_trace();

    let r = sim.stop("foo", &[], true);
    assert_eq!(
        sim.take_trace(),
        [
            "foo: goal stop",
            "foo: state pre-stop",
            "foo: state stopping",
            "foo: state killed",
            "kill foo main TERM",
            "event stopping JOB=foo INSTANCE= RESULT=ok",
        ]
    );
    sim.exit("foo", "", Main, Signaled(SIGTERM));
    assert_eq!(sim.take_trace(), ["foo: state post-stop", "spawn foo post-stop"]);
    sim.exit("foo", "", PostStop, Exited(0));
    assert_eq!(
        sim.take_trace(),
        [
            "foo: state waiting",
            &format!("reply {r} ok"),
            "instance removed foo",
            "event stopped JOB=foo INSTANCE= RESULT=ok",
        ]
    );
    assert_eq!(sim.state("foo", ""), None);
    assert!(sim.logged(LogLevel::Info, "foo main process (101) killed by TERM signal"));
}

/// A non-waiting start is answered at once with the instance, after the
/// goal change but before the `starting` event is handled.
#[test]
fn non_waiting_start_is_answered_at_once_with_the_instance() {
    let mut sim = Sim::new();
    sim.load("foo", "exec /bin/foo\n");
    sim.take_trace();
    let r = sim.start("foo", &[], false);
    assert_eq!(
        sim.take_trace(),
        [
            "instance added foo",
            "foo: goal start",
            "foo: state starting",
            &format!("reply {r} ok foo"),
            "foo: state pre-start",
            "foo: state spawned",
            "spawn foo main",
            "event starting JOB=foo INSTANCE=",
            "foo: state post-start",
            "foo: state running",
            "event started JOB=foo INSTANCE=",
        ]
    );
}

/// Spec §3.3 "wait": a task's waiting start is answered when it has run and
/// reached waiting; §1.9: exit 0 of a task is success, even with `respawn`.
#[test]
fn task_waiting_start_is_answered_when_the_task_has_run_and_is_not_respawned() {
    let mut sim = Sim::new();
    sim.load("t", "task\nrespawn\nexec /bin/t\n");
    sim.take_trace();
    let r = sim.start("t", &[], true);
    assert_eq!(
        sim.take_trace(),
        [
            "instance added t",
            "t: goal start",
            "t: state starting",
            "t: state pre-start",
            "t: state spawned",
            "spawn t main",
            "event starting JOB=t INSTANCE=",
            "t: state post-start",
            "t: state running",
            "event started JOB=t INSTANCE=",
        ]
    );
    sim.exit("t", "", Main, Exited(0));
    assert_eq!(
        sim.take_trace(),
        [
            "t: goal stop",
            "t: state stopping",
            "t: state killed",
            "t: state post-stop",
            "t: state waiting",
            &format!("reply {r} ok t"),
            "instance removed t",
            "event stopping JOB=t INSTANCE= RESULT=ok",
            "event stopped JOB=t INSTANCE= RESULT=ok",
        ]
    );
    assert_eq!(sim.spawned("t", Main), 1);
}

/// Spec §1.9: a failing task fails its waiting start.
#[test]
fn failing_task_fails_the_waiting_start() {
    let mut sim = Sim::new();
    sim.load("t", "task\nexec /bin/t\n");
    let r = sim.start("t", &[], true);
    sim.take_trace();
    sim.exit("t", "", Main, Exited(3));
    assert_eq!(
        sim.take_trace(),
        [
            "warn: t main process (100) terminated with status 3",
            "t: failed 3",
            &format!("reply {r} error JobFailed: Job failed to start"),
            "t: goal stop",
            "t: state stopping",
            "t: state killed",
            "t: state post-stop",
            "t: state waiting",
            "instance removed t",
            "event stopping JOB=t INSTANCE= RESULT=failed PROCESS=main EXIT_STATUS=3",
            "event stopped JOB=t INSTANCE= RESULT=failed PROCESS=main EXIT_STATUS=3",
        ]
    );
}

/// Spec §1.9: a main process that dies of a signal gives EXIT_SIGNAL.
#[test]
fn main_killed_by_a_signal_reports_exit_signal() {
    let mut sim = Sim::new();
    sim.load("d", "exec /bin/d\n");
    sim.bring_up("d", &[]);
    sim.exit("d", "", Main, Signaled(11));
    let trace = sim.take_trace();
    assert_eq!(trace[0], "warn: d main process (100) killed by SEGV signal");
    assert_eq!(trace[1], "d: failed 2816");
    assert!(
        trace.contains(&"event stopped JOB=d INSTANCE= RESULT=failed PROCESS=main EXIT_SIGNAL=SEGV".into())
    );
}

/// Spec §1.9 (table, post-stop row): restart goes round through post-stop
/// to starting, so observers see stopping, starting, started and never
/// `stopped`.
#[test]
fn restart_goes_round_without_a_stopped_event() {
    let mut sim = Sim::new();
    sim.load("d", "exec /bin/d\n");
    sim.bring_up("d", &[]);
    let r = sim.restart("d", &[], true);
    assert_eq!(
        sim.take_trace(),
        [
            "d: goal stop",
            "d: state pre-stop",
            "d: state stopping",
            "d: goal start",
            "d: state killed",
            "kill d main TERM",
            "event stopping JOB=d INSTANCE= RESULT=ok",
        ]
    );
    sim.exit("d", "", Main, Signaled(SIGTERM));
    let trace = sim.take_trace();
    assert_eq!(
        trace,
        [
            "d: state post-stop",
            "d: state starting",
            "d: state pre-start",
            "d: state spawned",
            "spawn d main",
            "event starting JOB=d INSTANCE=",
            "d: state post-start",
            "d: state running",
            &format!("reply {r} ok d"),
            "event started JOB=d INSTANCE=",
        ]
    );
    assert_eq!(sim.spawned("d", Main), 2);
}

/// upshot: `restart` of a job with a pre-stop process really restarts it
/// (Upstart's restart did nothing once the stop was cancelled in pre-stop).
#[test]
fn restart_of_a_job_with_pre_stop_really_restarts_it() {
    let mut sim = Sim::new();
    sim.load("d", "exec /bin/d\npre-stop exec /bin/drain\n");
    sim.bring_up("d", &[]);
    let r = sim.restart("d", &[], true);
    assert_eq!(
        sim.take_trace(),
        [
            "d: goal stop",
            "d: state pre-stop",
            "spawn d pre-stop",
            "d: goal respawn"
        ]
    );
    sim.exit("d", "", PreStop, Exited(0));
    assert_eq!(
        sim.take_trace(),
        [
            "d: goal start",
            "d: state stopping",
            "d: state killed",
            "kill d main TERM",
            "event stopping JOB=d INSTANCE= RESULT=ok",
        ]
    );
    sim.exit("d", "", Main, Signaled(SIGTERM));
    assert_eq!(
        sim.take_trace(),
        [
            "d: state post-stop",
            "d: state starting",
            "d: state pre-start",
            "d: state spawned",
            "spawn d main",
            "event starting JOB=d INSTANCE=",
            "d: state post-start",
            "d: state running",
            &format!("reply {r} ok d"),
            "event started JOB=d INSTANCE=",
        ]
    );
}

/// Spec §1.9: a main process that dies while post-start runs defers the
/// state change until post-start is done.
#[test]
fn main_exit_during_post_start_waits_for_post_start() {
    let mut sim = Sim::new();
    sim.load("m", "exec /bin/m\npost-start exec /bin/wait-ready\n");
    let r = sim.start("m", &[], true);
    sim.take_trace();
    sim.exit("m", "", Main, Exited(1));
    assert_eq!(
        sim.take_trace(),
        [
            "warn: m main process (100) terminated with status 1",
            "m: failed 1",
            &format!("reply {r} error JobFailed: Job failed to start"),
            "m: goal stop",
        ]
    );
    assert_eq!(sim.state("m", ""), Some(State::PostStart));
    sim.exit("m", "", PostStart, Exited(0));
    assert_eq!(
        sim.take_trace(),
        [
            "m: state stopping",
            "m: state killed",
            "m: state post-stop",
            "m: state waiting",
            "instance removed m",
            "event stopping JOB=m INSTANCE= RESULT=failed PROCESS=main EXIT_STATUS=1",
            "event stopped JOB=m INSTANCE= RESULT=failed PROCESS=main EXIT_STATUS=1",
        ]
    );
}

// ------------------------------------------------------------------ respawn

/// The trace of one respawn of the single-instance job `d` whose main
/// process `pid` ended with status 1.
fn respawn_trace(pid: Pid) -> Vec<String> {
    strings(&[
        &format!("warn: d main process ({pid}) terminated with status 1"),
        "warn: d main process ended, respawning",
        "d: goal respawn",
        "d: goal start",
        "d: state stopping",
        "d: state killed",
        "d: state post-stop",
        "d: state starting",
        "event stopping JOB=d INSTANCE= RESULT=ok",
        "d: state pre-start",
        "d: state spawned",
        "spawn d main",
        "event starting JOB=d INSTANCE=",
        "d: state post-start",
        "d: state running",
        "event started JOB=d INSTANCE=",
    ])
}

/// Spec §1.9: an abnormal exit of a `respawn` job logs "main process
/// ended, respawning" and goes round (stopping, starting, started; no
/// `stopped`); so does exit 0 of a service.
#[test]
fn respawn_after_an_abnormal_exit_goes_round_without_stopped() {
    let mut sim = Sim::new();
    sim.load("d", "respawn\nexec /bin/d\n");
    sim.bring_up("d", &[]);
    sim.exit("d", "", Main, Exited(1));
    assert_eq!(sim.take_trace(), respawn_trace(100));
    assert_eq!(sim.pid("d", "", Main), Some(101));

    sim.exit("d", "", Main, Exited(0));
    let trace = sim.take_trace();
    assert!(sim.logged(LogLevel::Info, "d main process (101) exited normally"));
    assert_eq!(trace[..], respawn_trace(101)[1..]);
    assert_eq!(sim.state("d", ""), Some(State::Running));
    assert_eq!(sim.spawned("d", Main), 3);
}

/// Spec §1.9: a status or signal listed in `normal exit` is no failure and
/// no reason to respawn; the job just stops.
#[test]
fn normal_exit_prevents_respawn() {
    let mut sim = Sim::new();
    sim.load("d", "respawn\nnormal exit 0 2 TERM\nexec /bin/d\n");
    sim.bring_up("d", &[]);
    sim.exit("d", "", Main, Exited(2));
    assert_eq!(
        sim.take_trace(),
        [
            "warn: d main process (100) terminated with status 2",
            "d: goal stop",
            "d: state stopping",
            "d: state killed",
            "d: state post-stop",
            "d: state waiting",
            "instance removed d",
            "event stopping JOB=d INSTANCE= RESULT=ok",
            "event stopped JOB=d INSTANCE= RESULT=ok",
        ]
    );

    sim.bring_up("d", &[]);
    sim.exit("d", "", Main, Signaled(SIGTERM));
    let trace = sim.take_trace();
    assert_eq!(trace.last().unwrap(), "event stopped JOB=d INSTANCE= RESULT=ok");
    assert_eq!(sim.state("d", ""), None);

    // Anything else still respawns.
    sim.bring_up("d", &[]);
    let pid = sim.pid("d", "", Main).unwrap();
    sim.exit("d", "", Main, Exited(1));
    assert_eq!(sim.take_trace()[..2], respawn_trace(pid)[..2]);
    assert_eq!(sim.state("d", ""), Some(State::Running));
}

/// Spec §1.9: more than COUNT respawns within INTERVAL seconds of the first
/// counted one stop the job ("respawning too fast, stopped", PROCESS=
/// respawn, `Failed(0)`); the default is 10 in 5 s, on the virtual clock.
#[test]
fn respawn_limit_stops_the_eleventh_respawn_within_five_seconds() {
    let mut sim = Sim::new();
    sim.load("d", "respawn\nexec /bin/d\n");
    sim.bring_up("d", &[]);
    for n in 0..10 {
        sim.advance_ms(400);
        sim.exit("d", "", Main, Exited(1));
        assert_eq!(sim.take_trace(), respawn_trace(100 + n), "respawn {}", n + 1);
    }
    sim.advance_ms(400);
    sim.exit("d", "", Main, Exited(1));
    assert_eq!(
        sim.take_trace(),
        [
            "warn: d main process (110) terminated with status 1",
            "warn: d respawning too fast, stopped",
            "d: failed 0",
            "d: goal stop",
            "d: state stopping",
            "d: state killed",
            "d: state post-stop",
            "d: state waiting",
            "instance removed d",
            "event stopping JOB=d INSTANCE= RESULT=failed PROCESS=respawn",
            "event stopped JOB=d INSTANCE= RESULT=failed PROCESS=respawn",
        ]
    );
    assert_eq!(sim.spawned("d", Main), 11);

    // A fresh start counts afresh.
    sim.bring_up("d", &[]);
    sim.exit("d", "", Main, Exited(1));
    assert_eq!(sim.state("d", ""), Some(State::Running));
}

/// The interval is measured from the first counted respawn: respawns 500 ms
/// apart never reach 11 within 5 s, however many there are.
#[test]
fn spaced_out_respawns_are_not_limited() {
    let mut sim = Sim::new();
    sim.load("d", "respawn\nexec /bin/d\n");
    sim.bring_up("d", &[]);
    for n in 0..40 {
        sim.advance_ms(500);
        sim.exit("d", "", Main, Exited(1));
        assert_eq!(sim.take_trace(), respawn_trace(100 + n), "respawn {}", n + 1);
    }
}

/// `respawn limit unlimited` never stops respawning.
#[test]
fn respawn_limit_unlimited_never_stops() {
    let mut sim = Sim::new();
    sim.load("d", "respawn\nrespawn limit unlimited\nexec /bin/d\n");
    sim.bring_up("d", &[]);
    for n in 0..50 {
        sim.exit("d", "", Main, Exited(1));
        assert_eq!(sim.take_trace(), respawn_trace(100 + n));
    }
}

/// A custom limit: `respawn limit 2 10` stops the third respawn in 10 s.
#[test]
fn respawn_limit_count_and_interval_are_the_job_s() {
    let mut sim = Sim::new();
    sim.load("d", "respawn\nrespawn limit 2 10\nexec /bin/d\n");
    sim.bring_up("d", &[]);
    sim.exit("d", "", Main, Exited(1));
    sim.advance(9);
    sim.exit("d", "", Main, Exited(1));
    assert_eq!(sim.state("d", ""), Some(State::Running));
    sim.advance_ms(900);
    sim.exit("d", "", Main, Exited(1));
    assert!(
        sim.take_trace()
            .contains(&"warn: d respawning too fast, stopped".to_string())
    );
    assert_eq!(sim.state("d", ""), None);
}

/// `SetRespawn(false)` (session shutdown): an abnormal exit is a failure.
#[test]
fn set_respawn_false_disables_respawn() {
    let mut sim = Sim::new();
    sim.load("d", "respawn\nexec /bin/d\n");
    sim.bring_up("d", &[]);
    sim.feed(Input::SetRespawn(false));
    assert_eq!(sim.take_trace(), Vec::<String>::new());
    sim.exit("d", "", Main, Exited(1));
    assert_eq!(
        sim.take_trace(),
        [
            "warn: d main process (100) terminated with status 1",
            "d: failed 1",
            "d: goal stop",
            "d: state stopping",
            "d: state killed",
            "d: state post-stop",
            "d: state waiting",
            "instance removed d",
            "event stopping JOB=d INSTANCE= RESULT=failed PROCESS=main EXIT_STATUS=1",
            "event stopped JOB=d INSTANCE= RESULT=failed PROCESS=main EXIT_STATUS=1",
        ]
    );
    sim.feed(Input::SetRespawn(true));
    sim.bring_up("d", &[]);
    sim.exit("d", "", Main, Exited(1));
    assert_eq!(sim.state("d", ""), Some(State::Running));
}

/// Spec §1.9: a main process that dies while post-start runs is respawned
/// once post-start is done (goal respawn meanwhile).
#[test]
fn respawn_during_post_start_waits_for_post_start() {
    let mut sim = Sim::new();
    sim.load("d", "respawn\nexec /bin/d\npost-start exec /bin/wait-ready\n");
    sim.start("d", &[], false);
    sim.take_trace();
    sim.exit("d", "", Main, Exited(1));
    assert_eq!(
        sim.take_trace(),
        [
            "warn: d main process (100) terminated with status 1",
            "warn: d main process ended, respawning",
            "d: goal respawn",
        ]
    );
    assert_eq!(sim.state("d", ""), Some(State::PostStart));
    sim.exit("d", "", PostStart, Exited(0));
    assert_eq!(
        sim.take_trace(),
        [
            "d: goal start",
            "d: state stopping",
            "d: state killed",
            "d: state post-stop",
            "d: state starting",
            "event stopping JOB=d INSTANCE= RESULT=ok",
            "d: state pre-start",
            "d: state spawned",
            "spawn d main",
            "event starting JOB=d INSTANCE=",
            "d: state post-start",
            "spawn d post-start",
        ]
    );
}

// ------------------------------------------------- start on / stop on chains

/// Spec §2.1: `start on started a` starts b from a's `started`, which is
/// held until b is running; `stop on stopping a` stops b first and holds a
/// in `stopping` until b has fully stopped.
#[test]
fn start_on_started_and_stop_on_stopping_order_the_dependent_job() {
    let mut sim = Sim::new();
    sim.load("a", "exec /bin/a\n");
    sim.load("b", "start on started a\nstop on stopping a\nexec /bin/b\n");
    sim.take_trace();

    sim.feed(Input::Start {
        job: "a".into(),
        env: vec![],
        by: None,
    });
    assert_eq!(
        sim.take_trace(),
        [
            "instance added a",
            "a: goal start",
            "a: state starting",
            "a: state pre-start",
            "a: state spawned",
            "spawn a main",
            "event starting JOB=a INSTANCE=",
            "a: state post-start",
            "a: state running",
            "instance added b",
            "b: goal start",
            "b: state starting",
            "b: state pre-start",
            "b: state spawned",
            "spawn b main",
            "event starting JOB=b INSTANCE=",
            "b: state post-start",
            "b: state running",
            "event started JOB=b INSTANCE=",
            // Held by b until b was running.
            "event started JOB=a INSTANCE=",
        ]
    );

    sim.feed(Input::Stop {
        job: "a".into(),
        env: vec![],
        by: None,
    });
    assert_eq!(
        sim.take_trace(),
        [
            "a: goal stop",
            "a: state pre-stop",
            "a: state stopping",
            "b: goal stop",
            "b: state pre-stop",
            "b: state stopping",
            "b: state killed",
            "kill b main TERM",
            "event stopping JOB=b INSTANCE= RESULT=ok",
        ]
    );
    assert_eq!(sim.state("a", ""), Some(State::Stopping));
    sim.exit("b", "", Main, Signaled(SIGTERM));
    assert_eq!(
        sim.take_trace(),
        [
            "b: state post-stop",
            "b: state waiting",
            "instance removed b",
            "event stopped JOB=b INSTANCE= RESULT=ok",
            "a: state killed",
            "kill a main TERM",
            "event stopping JOB=a INSTANCE= RESULT=ok",
        ]
    );
    sim.exit("a", "", Main, Signaled(SIGTERM));
    assert_eq!(
        sim.take_trace(),
        [
            "a: state post-stop",
            "a: state waiting",
            "instance removed a",
            "event stopped JOB=a INSTANCE= RESULT=ok",
        ]
    );
}

/// Spec §2.1/§1.9: `start on starting a` blocks a in `starting` until b has
/// started; b runs its pre-start meanwhile.
#[test]
fn start_on_starting_blocks_the_job_until_the_dependent_has_started() {
    let mut sim = Sim::new();
    sim.load("a", "exec /bin/a\n");
    sim.load(
        "b",
        "start on starting a\npre-start exec /bin/prepare\nexec /bin/b\n",
    );
    sim.take_trace();
    let r = sim.start("a", &[], true);
    assert_eq!(
        sim.take_trace(),
        [
            "instance added a",
            "a: goal start",
            "a: state starting",
            "instance added b",
            "b: goal start",
            "b: state starting",
            "b: state pre-start",
            "spawn b pre-start",
            "event starting JOB=b INSTANCE=",
        ]
    );
    assert_eq!(sim.state("a", ""), Some(State::Starting));
    assert_eq!(sim.spawned("a", Main), 0);

    sim.exit("b", "", PreStart, Exited(0));
    assert_eq!(
        sim.take_trace(),
        [
            "b: state spawned",
            "spawn b main",
            "b: state post-start",
            "b: state running",
            "event started JOB=b INSTANCE=",
            "a: state pre-start",
            "a: state spawned",
            "spawn a main",
            "event starting JOB=a INSTANCE=",
            "a: state post-start",
            "a: state running",
            &format!("reply {r} ok a"),
            "event started JOB=a INSTANCE=",
        ]
    );
}

/// Spec §2.1: a partial `and` match holds the event (a waiting emit is not
/// answered) until the other half arrives; argument matches use globs and
/// `!=`; the job gets the merged env of the events in expression order,
/// later values replacing earlier, and `UPSTART_EVENTS`.
#[test]
fn start_on_and_holds_the_first_event_and_merges_both_envs() {
    let mut sim = Sim::new();
    sim.load("j", "start on a X=f* and b Y!=no\nexec /bin/j\n");
    sim.take_trace();

    let r1 = sim.emit_wait("a", &["X=bar"]);
    assert_eq!(
        sim.take_trace(),
        [format!("reply {r1} ok"), "event a X=bar".into()]
    );

    let r2 = sim.emit_wait("a", &["X=foo", "ONE=1"]);
    assert_eq!(
        sim.take_trace(),
        Vec::<String>::new(),
        "a is held, its emitter waits"
    );
    assert_eq!(sim.engine.events().count(), 1);

    let r3 = sim.emit_wait("b", &["Y=no"]);
    assert_eq!(
        sim.take_trace(),
        [format!("reply {r3} ok"), "event b Y=no".into()]
    );

    let r4 = sim.emit_wait("b", &["Y=yes", "X=other"]);
    assert_eq!(
        sim.take_trace(),
        [
            "instance added j",
            "j: goal start",
            "j: state starting",
            "j: state pre-start",
            "j: state spawned",
            "spawn j main",
            "event starting JOB=j INSTANCE=",
            "j: state post-start",
            "j: state running",
            "event started JOB=j INSTANCE=",
            &format!("reply {r2} ok"),
            "event a X=foo ONE=1",
            &format!("reply {r4} ok"),
            "event b Y=yes X=other",
        ]
    );
    assert_eq!(
        sim.spawn_env("j", "", Main),
        [
            PATH,
            "X=other",
            "ONE=1",
            "Y=yes",
            "UPSTART_EVENTS=a b",
            "UPSTART_JOB=j",
            "UPSTART_INSTANCE=",
        ]
    );
}

/// `or`: either event starts the job, with only its own env.
#[test]
fn start_on_or_starts_from_either_event_with_its_env() {
    let mut sim = Sim::new();
    sim.load("j", "start on a or b FOO=bar*\nexec /bin/j\n");
    sim.emit("b", &["FOO=baz"]);
    assert_eq!(sim.state("j", ""), None);
    sim.emit("b", &["FOO=barn", "N=1"]);
    assert_eq!(sim.state("j", ""), Some(State::Running));
    assert_eq!(
        sim.spawn_env("j", "", Main),
        [
            PATH,
            "FOO=barn",
            "N=1",
            "UPSTART_EVENTS=b",
            "UPSTART_JOB=j",
            "UPSTART_INSTANCE="
        ]
    );
    sim.stop("j", &[], false);
    sim.exit("j", "", Main, Signaled(SIGTERM));
    sim.emit("a", &["Z=1"]);
    assert_eq!(
        sim.spawn_env("j", "", Main),
        [
            PATH,
            "Z=1",
            "UPSTART_EVENTS=a",
            "UPSTART_JOB=j",
            "UPSTART_INSTANCE="
        ]
    );
}

/// Positional arguments match the values of the event's variables in order
/// (spec §1.10: `start on stopped foo` ≡ `JOB=foo`).
#[test]
fn positional_arguments_match_job_events() {
    let mut sim = Sim::new();
    sim.load("foo", "task\nexec /bin/foo\n");
    sim.load("after", "start on stopped foo RESULT=ok\nexec /bin/after\n");
    sim.load("never", "start on stopped foo x\nexec /bin/never\n");
    sim.start("foo", &[], false);
    sim.exit("foo", "", Main, Exited(0));
    assert_eq!(sim.state("after", ""), Some(State::Running));
    assert_eq!(sim.state("never", ""), None);
}

// ---------------------------------------------------------------- instances

const INSTANCES: &str = "instance $N\nusage \"N=number\"\nexec /bin/w\n";

/// Spec §3.3: `instance $N` makes one instance per value; stop's env picks
/// the instance; a missing one is `Unknown instance: N`.
#[test]
fn instances_run_side_by_side_and_stop_one_by_env() {
    let mut sim = Sim::new();
    sim.load("w", INSTANCES);
    sim.take_trace();
    let r1 = sim.start("w", &["N=1"], false);
    assert_eq!(
        sim.take_trace(),
        [
            "instance added w (1)",
            "w (1): goal start",
            "w (1): state starting",
            &format!("reply {r1} ok w (1)"),
            "w (1): state pre-start",
            "w (1): state spawned",
            "spawn w (1) main",
            "event starting JOB=w INSTANCE=1",
            "w (1): state post-start",
            "w (1): state running",
            "event started JOB=w INSTANCE=1",
        ]
    );
    sim.start("w", &["N=2"], false);
    sim.take_trace();
    assert_eq!(sim.pid("w", "1", Main), Some(100));
    assert_eq!(sim.pid("w", "2", Main), Some(101));
    assert_eq!(
        sim.spawn_env("w", "2", Main),
        [PATH, "N=2", "UPSTART_JOB=w", "UPSTART_INSTANCE=2"]
    );

    let r = sim.stop("w", &["N=1"], false);
    assert_eq!(
        sim.take_trace(),
        [
            "w (1): goal stop",
            "w (1): state pre-stop",
            "w (1): state stopping",
            &format!("reply {r} ok"),
            "w (1): state killed",
            "kill w (1) main TERM",
            "event stopping JOB=w INSTANCE=1 RESULT=ok",
        ]
    );
    assert_eq!(sim.state("w", "2"), Some(State::Running));

    let r = sim.stop("w", &["N=3"], false);
    assert_eq!(
        sim.take_trace(),
        [format!("reply {r} error UnknownInstance: Unknown instance: 3")]
    );
    let r = sim.start("w", &[], false);
    assert_eq!(
        sim.take_trace(),
        [format!(
            "reply {r} error InvalidArgs: Unknown parameter: N\nUsage: N=number"
        )]
    );
    let r = sim.start("w", &["N=2"], true);
    assert_eq!(
        sim.take_trace(),
        [format!(
            "reply {r} error AlreadyStarted: Job is already running: w (2)"
        )]
    );
    sim.exit("w", "1", Main, Signaled(SIGTERM));
    assert_eq!(
        sim.take_trace(),
        [
            "w (1): state post-stop",
            "w (1): state waiting",
            "instance removed w (1)",
            "event stopped JOB=w INSTANCE=1 RESULT=ok",
        ]
    );
    assert_eq!(sim.engine.classes()["w"].instances.len(), 1);
}

/// Spec §1.5 rule 5: `$VAR` in `stop on` expands from each instance's own
/// environment, so an event stops only the instance it names.
#[test]
fn stop_on_variables_bind_to_the_instance_env() {
    let mut sim = Sim::new();
    sim.load(
        "w",
        "instance $N\nstop on bye N=$N\nexec /bin/w\npre-stop exec /bin/drain\n",
    );
    sim.start("w", &["N=1"], false);
    sim.start("w", &["N=2"], false);
    sim.take_trace();
    sim.emit("bye", &["N=2", "WHY=test"]);
    assert_eq!(
        sim.take_trace(),
        [
            "w (2): goal stop",
            "w (2): state pre-stop",
            "spawn w (2) pre-stop"
        ]
    );
    assert_eq!(sim.state("w", "1"), Some(State::Running));
    assert_eq!(
        sim.spawn_env("w", "2", PreStop),
        [
            PATH,
            "N=2",
            "WHY=test",
            "UPSTART_STOP_EVENTS=bye",
            "UPSTART_JOB=w",
            "UPSTART_INSTANCE=2",
        ]
    );
    // The event is held until the instance it stopped is gone.
    assert_eq!(sim.engine.events().count(), 1);
    sim.exit("w", "2", PreStop, Exited(0));
    sim.exit("w", "2", Main, Signaled(SIGTERM));
    let trace = sim.take_trace();
    assert_eq!(events_of(&trace), ["stopping", "stopped", "bye"]);
    assert_eq!(sim.engine.events().count(), 0);
}

// ------------------------------------------------------------------ failures

const FAILS_PRE_START: &str = "\
start on go
pre-start exec /bin/false
exec /bin/j
post-stop exec /bin/cleanup
";

/// Spec §1.9/§2.1: a pre-start exiting 1 fails the job (PROCESS=pre-start
/// EXIT_STATUS=1); main never runs but post-stop does; the event that
/// started it fails, its waiting emitter gets "Event failed", and
/// `go/failed` follows it.
#[test]
fn failed_pre_start_fails_the_job_and_the_event_that_started_it() {
    let mut sim = Sim::new();
    sim.load("j", FAILS_PRE_START);
    sim.take_trace();
    let r = sim.emit_wait("go", &["WHO=me"]);
    assert_eq!(
        sim.take_trace(),
        [
            "instance added j",
            "j: goal start",
            "j: state starting",
            "j: state pre-start",
            "spawn j pre-start",
            "event starting JOB=j INSTANCE=",
        ]
    );
    sim.exit("j", "", PreStart, Exited(1));
    assert_eq!(
        sim.take_trace(),
        [
            "warn: j pre-start process (100) terminated with status 1",
            "j: failed 1",
            "j: goal stop",
            "j: state stopping",
            "j: state killed",
            "j: state post-stop",
            "spawn j post-stop",
            "event stopping JOB=j INSTANCE= RESULT=failed PROCESS=pre-start EXIT_STATUS=1",
            &format!("reply {r} error EventFailed: Event failed"),
            "event go WHO=me",
            "event go/failed WHO=me",
        ]
    );
    sim.exit("j", "", PostStop, Exited(0));
    assert_eq!(
        sim.take_trace(),
        [
            "j: state waiting",
            "instance removed j",
            "event stopped JOB=j INSTANCE= RESULT=failed PROCESS=pre-start EXIT_STATUS=1",
        ]
    );
    assert_eq!(sim.spawned("j", Main), 0);
}

/// Spec §3.3: a waiting start of a job whose pre-start fails gets
/// `JobFailed` "Job failed to start" at the failure.
#[test]
fn failed_pre_start_fails_the_waiting_start() {
    let mut sim = Sim::new();
    sim.load("j", FAILS_PRE_START);
    let r = sim.start("j", &[], true);
    sim.take_trace();
    sim.exit("j", "", PreStart, Exited(1));
    assert_eq!(
        sim.take_trace(),
        [
            "warn: j pre-start process (100) terminated with status 1",
            "j: failed 1",
            &format!("reply {r} error JobFailed: Job failed to start"),
            "j: goal stop",
            "j: state stopping",
            "j: state killed",
            "j: state post-stop",
            "spawn j post-stop",
            "event stopping JOB=j INSTANCE= RESULT=failed PROCESS=pre-start EXIT_STATUS=1",
        ]
    );
}

/// Spec §1.9: a post-stop exiting non-zero fails the job; pre-stop and
/// post-start failures are ignored.
#[test]
fn post_stop_failure_fails_the_job_but_post_start_and_pre_stop_failures_do_not() {
    let mut sim = Sim::new();
    sim.load(
        "j",
        "exec /bin/j\npost-start exec /bin/a\npre-stop exec /bin/b\npost-stop exec /bin/c\n",
    );
    let r = sim.start("j", &[], true);
    sim.take_trace();
    sim.exit("j", "", PostStart, Exited(1));
    assert_eq!(
        sim.take_trace(),
        [
            "warn: j post-start process (101) terminated with status 1",
            "j: state running",
            &format!("reply {r} ok j"),
            "event started JOB=j INSTANCE=",
        ]
    );
    let r2 = sim.stop("j", &[], true);
    sim.take_trace();
    sim.exit("j", "", PreStop, Exited(1));
    assert_eq!(
        sim.take_trace(),
        [
            "warn: j pre-stop process (102) terminated with status 1",
            "j: state stopping",
            "j: state killed",
            "kill j main TERM",
            "event stopping JOB=j INSTANCE= RESULT=ok",
        ]
    );
    sim.exit("j", "", Main, Signaled(SIGTERM));
    sim.take_trace();
    sim.exit("j", "", PostStop, Exited(2));
    assert_eq!(
        sim.take_trace(),
        [
            "warn: j post-stop process (103) terminated with status 2",
            "j: failed 2",
            &format!("reply {r2} error JobFailed: Job failed while stopping"),
            "j: state waiting",
            "instance removed j",
            "event stopped JOB=j INSTANCE= RESULT=failed PROCESS=post-stop EXIT_STATUS=2",
        ]
    );
}

/// Spec §2.1: `NAME/failed` is never chained for a name already ending in
/// `/failed`.
#[test]
fn failed_events_are_never_chained() {
    let mut sim = Sim::new();
    sim.load("f", "start on x\npre-start exec /bin/false\nexec /bin/f\n");
    sim.load("g", "start on x/failed\npre-start exec /bin/false\nexec /bin/g\n");
    sim.emit("x", &["A=1"]);
    sim.exit("f", "", PreStart, Exited(1));
    let trace = sim.take_trace();
    assert_eq!(
        events_of(&trace),
        ["starting", "stopping", "stopped", "x", "starting"],
        "{trace:#?}"
    );
    assert_eq!(sim.state("g", ""), Some(State::PreStart));
    sim.exit("g", "", PreStart, Exited(1));
    let trace = sim.take_trace();
    assert_eq!(
        trace[trace.len() - 3..],
        [
            "event stopping JOB=g INSTANCE= RESULT=failed PROCESS=pre-start EXIT_STATUS=1",
            "event stopped JOB=g INSTANCE= RESULT=failed PROCESS=pre-start EXIT_STATUS=1",
            "event x/failed A=1",
        ]
    );
    assert_eq!(sim.engine.events().count(), 0, "no x/failed/failed");

    // The same for a client's event named …/failed.
    sim.load("h", "start on y/failed\nexec /bin/h\npre-start exec /bin/false\n");
    sim.emit("y/failed", &[]);
    sim.exit("h", "", PreStart, Exited(1));
    let trace = sim.take_trace();
    assert_eq!(trace.last().unwrap(), "event y/failed");
    assert_eq!(sim.engine.events().count(), 0);
}

/// Spec §1.9: a spawn failure of main fails the job with status -1 and no
/// EXIT_* variables.
#[test]
fn spawn_failure_of_main_fails_the_job_without_exit_variables() {
    let mut sim = Sim::new();
    sim.load("f", "exec /bin/missing\n");
    sim.take_trace();
    sim.fail_spawn("f", "", Main, "No such file or directory");
    let r = sim.start("f", &[], true);
    assert_eq!(
        sim.take_trace(),
        [
            "instance added f",
            "f: goal start",
            "f: state starting",
            "f: state pre-start",
            "f: state spawned",
            "spawn f main",
            "event starting JOB=f INSTANCE=",
            "warn: f main process failed to start: No such file or directory",
            "f: failed -1",
            &format!("reply {r} error JobFailed: Job failed to start"),
            "f: goal stop",
            "f: state stopping",
            "f: state killed",
            "f: state post-stop",
            "f: state waiting",
            "instance removed f",
            "event stopping JOB=f INSTANCE= RESULT=failed PROCESS=main",
            "event stopped JOB=f INSTANCE= RESULT=failed PROCESS=main",
        ]
    );
}

/// A spawn failure of post-start is ignored (spec §1.9), the job runs.
#[test]
fn spawn_failure_of_post_start_is_ignored() {
    let mut sim = Sim::new();
    sim.load("f", "exec /bin/f\npost-start exec /bin/missing\n");
    sim.fail_spawn("f", "", PostStart, "Permission denied");
    let r = sim.start("f", &[], true);
    let trace = sim.take_trace();
    assert_eq!(
        trace[trace.len() - 5..],
        [
            "spawn f post-start",
            "warn: f post-start process failed to start: Permission denied",
            "f: state running",
            &format!("reply {r} ok f"),
            "event started JOB=f INSTANCE=",
        ]
    );
}

// ------------------------------------------------ goal changes mid-transition

/// Spec §1.9/§3.3: stop during pre-start waits for pre-start, then stops;
/// main is never spawned; the earlier waiting start is released with
/// success by the new command.
#[test]
fn stop_during_pre_start_waits_for_it_then_stops_without_main() {
    let mut sim = Sim::new();
    sim.load("j", "pre-start exec /bin/slow\nexec /bin/j\n");
    let r1 = sim.start("j", &[], true);
    sim.take_trace();
    let r2 = sim.stop("j", &[], true);
    assert_eq!(
        sim.take_trace(),
        [format!("reply {r1} ok j"), "j: goal stop".into()]
    );
    assert_eq!(sim.state("j", ""), Some(State::PreStart));
    sim.exit("j", "", PreStart, Exited(0));
    assert_eq!(
        sim.take_trace(),
        [
            "j: state stopping",
            "j: state killed",
            "j: state post-stop",
            "j: state waiting",
            &format!("reply {r2} ok"),
            "instance removed j",
            "event stopping JOB=j INSTANCE= RESULT=ok",
            "event stopped JOB=j INSTANCE= RESULT=ok",
        ]
    );
    assert_eq!(sim.spawned("j", Main), 0);
}

/// Spec §1.9 (pre-stop row): a start during pre-stop lets pre-stop finish,
/// then goes back to running with no events; the stop is cancelled.
#[test]
fn start_during_pre_stop_cancels_the_stop_without_events() {
    let mut sim = Sim::new();
    sim.load("j", "exec /bin/j\npre-stop exec /bin/drain\n");
    sim.bring_up("j", &[]);
    let r1 = sim.stop("j", &[], false);
    assert_eq!(
        sim.take_trace(),
        [
            "j: goal stop",
            "j: state pre-stop",
            "spawn j pre-stop",
            &format!("reply {r1} ok"),
        ]
    );
    let r2 = sim.start("j", &[], true);
    assert_eq!(sim.take_trace(), ["j: goal start"]);
    sim.exit("j", "", PreStop, Exited(0));
    assert_eq!(
        sim.take_trace(),
        ["j: state running", &format!("reply {r2} ok j")]
    );
    assert_eq!(sim.pid("j", "", Main), Some(100));
    assert_eq!(sim.spawned("j", Main), 1);
    // And it can be stopped again.
    sim.stop("j", &[], false);
    assert_eq!(sim.state("j", ""), Some(State::PreStop));
}

/// Spec §3.3: a start while the instance is still stopping restarts it
/// without `stopped`.
#[test]
fn start_while_stopping_restarts_without_stopped() {
    let mut sim = Sim::new();
    sim.load("j", "exec /bin/j\n");
    sim.bring_up("j", &[]);
    sim.stop("j", &[], false);
    assert_eq!(sim.state("j", ""), Some(State::Killed));
    let r = sim.start("j", &[], true);
    sim.take_trace();
    sim.exit("j", "", Main, Signaled(SIGTERM));
    let trace = sim.take_trace();
    assert_eq!(events_of(&trace), ["starting", "started"]);
    assert!(trace.contains(&format!("reply {r} ok j")));
}

// ---------------------------------------------------------- errors and texts

/// Spec §3.2–3.4: the error names and messages.
#[test]
fn request_errors_have_upstart_s_texts() {
    let mut sim = Sim::new();
    sim.load("foo", "exec /bin/foo\n");
    sim.take_trace();
    let expect = |sim: &mut Sim, r: ReplyTo, text: &str| {
        assert_eq!(sim.take_trace(), [format!("reply {r} error {text}")]);
    };

    let r = sim.start("nope", &[], true);
    expect(&mut sim, r, "UnknownJob: Unknown job: nope");
    let r = sim.stop("nope", &[], true);
    expect(&mut sim, r, "UnknownJob: Unknown job: nope");
    let r = sim.restart("nope", &[], true);
    expect(&mut sim, r, "UnknownJob: Unknown job: nope");

    // Not running: the single instance does not exist.
    let r = sim.stop("foo", &[], true);
    expect(&mut sim, r, "UnknownInstance: Unknown instance: ");
    let r = sim.restart("foo", &[], true);
    expect(&mut sim, r, "UnknownInstance: Unknown instance: ");
    let r = sim.reload("foo", "");
    expect(&mut sim, r, "UnknownInstance: Unknown instance: ");

    let r = sim.start("foo", &["BAD"], true);
    expect(&mut sim, r, "InvalidArgs: Env must be KEY=VALUE pairs");
    let r = sim.stop("foo", &["A=1", "BAD"], true);
    expect(&mut sim, r, "InvalidArgs: Env must be KEY=VALUE pairs");
    let r = sim.emit_wait("ev", &["BAD"]);
    expect(&mut sim, r, "InvalidArgs: Env must be KEY=VALUE pairs");
    let r = sim.emit_wait("", &[]);
    expect(&mut sim, r, "InvalidArgs: Name may not be empty string");

    sim.bring_up("foo", &[]);
    let r = sim.start("foo", &[], true);
    expect(&mut sim, r, "AlreadyStarted: Job is already running: foo");

    // Stopping (killed, waiting for main): the goal is already stop.
    sim.stop("foo", &[], false);
    sim.take_trace();
    let r = sim.stop("foo", &[], true);
    expect(&mut sim, r, "AlreadyStopped: Job has already been stopped: foo");
    let r = sim.restart("foo", &[], true);
    expect(&mut sim, r, "AlreadyStopped: Job has already been stopped: foo");
    let by = sim.request(true);
    sim.feed(Input::InstanceStop {
        key: key("foo", ""),
        by: Some(by),
    });
    expect(
        &mut sim,
        by.reply,
        "AlreadyStopped: Job has already been stopped: foo",
    );
    let by = sim.request(true);
    sim.feed(Input::InstanceStart {
        key: key("foo", "x"),
        by: Some(by),
    });
    expect(&mut sim, by.reply, "UnknownInstance: Unknown instance: x");
}

/// Expansion errors of `instance` carry the job's usage.
#[test]
fn instance_expansion_errors_carry_the_usage() {
    let mut sim = Sim::new();
    sim.load("u", "instance ${N\nexec /bin/u\n");
    sim.load("v", "instance $N\nexec /bin/v\n");
    sim.take_trace();
    let r = sim.start("u", &["N=1"], true);
    assert_eq!(
        sim.take_trace(),
        [format!("reply {r} error InvalidArgs: Mismatched braces")]
    );
    let r = sim.stop("v", &[], true);
    assert_eq!(
        sim.take_trace(),
        [format!("reply {r} error InvalidArgs: Unknown parameter: N")]
    );
}

// -------------------------------------------------------------- environment

/// Spec §1.6: global table < `env` stanzas < start args < stop env (pre-stop
/// and post-stop only) < UPSTART_JOB/UPSTART_INSTANCE (< the daemon's final
/// variables); `env KEY` alone takes init's own value or removes KEY.
#[test]
fn job_environment_follows_the_priority_of_the_spec() {
    let mut sim = Sim::with_config(EngineConfig {
        global_env: strings(&[
            "PATH=/bin",
            "A=global",
            "B=global",
            "C=global",
            "D=global",
            "GONE=global",
        ]),
        process_env: strings(&["FROMINIT=init-value", "OTHER=x"]),
        final_env: strings(&["UPSTART_SESSION=unix:abstract=/s"]),
        ..EngineConfig::default()
    });
    sim.load(
        "e",
        "env B=job\nenv C=job\nenv D=job\nenv FROMINIT\nenv GONE\nenv UPSTART_JOB=spoofed\n\
         exec /bin/e\npre-stop exec /bin/pre-stop\npost-stop exec /bin/post-stop\n",
    );
    sim.start("e", &["C=start", "D=start"], false);
    let main = [
        "PATH=/bin",
        "A=global",
        "B=job",
        "C=start",
        "D=start",
        "FROMINIT=init-value",
        "UPSTART_JOB=e",
        "UPSTART_INSTANCE=",
        "UPSTART_SESSION=unix:abstract=/s",
    ];
    assert_eq!(sim.spawn_env("e", "", Main), main);

    sim.stop("e", &["D=stop", "E=stop", "UPSTART_INSTANCE=spoofed"], false);
    let stop = [
        "PATH=/bin",
        "A=global",
        "B=job",
        "C=start",
        "D=stop",
        "FROMINIT=init-value",
        "UPSTART_JOB=e",
        "E=stop",
        "UPSTART_INSTANCE=",
        "UPSTART_SESSION=unix:abstract=/s",
    ];
    assert_eq!(sim.spawn_env("e", "", PreStop), stop);
    sim.exit("e", "", PreStop, Exited(0));
    sim.exit("e", "", Main, Signaled(SIGTERM));
    assert_eq!(sim.spawn_env("e", "", PostStop), stop);

    // Event env is level 3 too.
    sim.exit("e", "", PostStop, Exited(0));
    sim.load("e", "start on go\nenv B=job\nexec /bin/e\n");
    sim.emit("go", &["B=event"]);
    assert_eq!(
        sim.spawn_env("e", "", Main),
        [
            "PATH=/bin",
            "A=global",
            "B=event",
            "C=global",
            "D=global",
            "GONE=global",
            "UPSTART_EVENTS=go",
            "UPSTART_JOB=e",
            "UPSTART_INSTANCE=",
            "UPSTART_SESSION=unix:abstract=/s",
        ]
    );
}

/// `export` appends the named variables to the job's events (spec §1.10).
#[test]
fn exported_variables_are_appended_to_job_events() {
    let mut sim = Sim::new();
    sim.load("x", "export FOO MISSING\nenv FOO=bar\nexec /bin/x\n");
    sim.start("x", &[], false);
    sim.start("x", &[], false);
    let trace = sim.take_trace();
    assert!(trace.contains(&"event starting JOB=x INSTANCE= FOO=bar".to_string()));
    assert!(trace.contains(&"event started JOB=x INSTANCE= FOO=bar".to_string()));
    sim.stop("x", &[], false);
    sim.exit("x", "", Main, Exited(1));
    let trace = sim.take_trace();
    assert!(trace.contains(&"event stopping JOB=x INSTANCE= RESULT=ok FOO=bar".to_string()));
    assert_eq!(
        trace.last().unwrap(),
        "event stopped JOB=x INSTANCE= RESULT=ok FOO=bar"
    );
    // A start argument overrides the exported value.
    sim.start("x", &["FOO=baz"], false);
    assert!(
        sim.take_trace()
            .contains(&"event starting JOB=x INSTANCE= FOO=baz".to_string())
    );
}

// --------------------------------------------------------- kill escalation

/// Spec §1.9 (killed): the kill signal to the whole group, SIGKILL after
/// `kill timeout` (5 s by default) if main is still there.
#[test]
fn stop_escalates_to_sigkill_after_the_kill_timeout() {
    let mut sim = Sim::new();
    sim.load("x", "exec /bin/x\n");
    sim.bring_up("x", &[]);
    sim.stop("x", &[], false);
    sim.take_trace();
    assert_eq!(sim.engine.next_deadline(), Some(5 * SECOND));
    sim.advance_ms(4999);
    assert_eq!(sim.take_trace(), Vec::<String>::new());
    sim.advance_ms(1);
    assert_eq!(
        sim.take_trace(),
        [
            "warn: x main process (100) still alive after 5 s; sending SIGKILL",
            "kill x main KILL",
        ]
    );
    assert_eq!(sim.engine.next_deadline(), None);
    sim.exit("x", "", Main, Signaled(SIGKILL));
    assert_eq!(
        sim.take_trace(),
        [
            "x: state post-stop",
            "x: state waiting",
            "instance removed x",
            "event stopped JOB=x INSTANCE= RESULT=ok",
        ]
    );
}

/// Main exiting before the kill timeout cancels the SIGKILL.
#[test]
fn main_exiting_before_the_kill_timeout_cancels_sigkill() {
    let mut sim = Sim::new();
    sim.load("x", "exec /bin/x\n");
    sim.bring_up("x", &[]);
    sim.stop("x", &[], false);
    sim.advance(1);
    sim.exit("x", "", Main, Signaled(SIGTERM));
    assert_eq!(sim.engine.next_deadline(), None);
    sim.take_trace();
    sim.advance(60);
    assert_eq!(sim.take_trace(), Vec::<String>::new());
}

/// `kill signal INT` and `kill timeout 2`.
#[test]
fn kill_signal_and_kill_timeout_are_the_job_s() {
    let mut sim = Sim::new();
    sim.load("x", "kill signal INT\nkill timeout 2\nexec /bin/x\n");
    sim.bring_up("x", &[]);
    sim.stop("x", &[], false);
    let trace = sim.take_trace();
    assert_eq!(
        trace[trace.len() - 3..trace.len() - 1],
        ["x: state killed", "kill x main INT"]
    );
    sim.advance(2);
    assert_eq!(
        sim.take_trace(),
        [
            "warn: x main process (100) still alive after 2 s; sending SIGKILL",
            "kill x main KILL",
        ]
    );
}

// ----------------------------------------- upshot: bounded hooks and expect

/// upshot (spec §7.4): a hung pre-start is killed after `process timeout`
/// (300 s by default) with a logged reason, and the job fails instead of
/// hanging.
#[test]
fn hung_pre_start_is_killed_after_the_default_process_timeout() {
    let mut sim = Sim::new();
    sim.load("x", "pre-start exec /bin/hang\nexec /bin/x\n");
    let r = sim.start("x", &[], true);
    sim.take_trace();
    sim.advance(299);
    assert_eq!(sim.take_trace(), Vec::<String>::new());
    sim.advance(1);
    assert_eq!(
        sim.take_trace(),
        [
            "error: x pre-start process (100) did not finish in time; killing it",
            "x: failed 2304",
            &format!("reply {r} error JobFailed: Job failed to start"),
            "x: goal stop",
            "kill x pre-start KILL",
        ]
    );
    sim.exit("x", "", PreStart, Signaled(SIGKILL));
    assert_eq!(
        sim.take_trace(),
        [
            "warn: x pre-start process (100) killed by KILL signal",
            "x: state stopping",
            "x: state killed",
            "x: state post-stop",
            "x: state waiting",
            "instance removed x",
            "event stopping JOB=x INSTANCE= RESULT=failed PROCESS=pre-start EXIT_SIGNAL=KILL",
            "event stopped JOB=x INSTANCE= RESULT=failed PROCESS=pre-start EXIT_SIGNAL=KILL",
        ]
    );
    assert_eq!(sim.spawned("x", Main), 0);
}

/// A pre-start that ends in time disarms its timer.
#[test]
fn pre_start_ending_in_time_disarms_the_process_timeout() {
    let mut sim = Sim::new();
    sim.load("x", "pre-start exec /bin/quick\nexec /bin/x\n");
    sim.start("x", &[], false);
    assert_eq!(sim.engine.next_deadline(), Some(300 * SECOND));
    sim.exit("x", "", PreStart, Exited(0));
    assert_eq!(sim.engine.next_deadline(), None);
    sim.take_trace();
    sim.advance(1000);
    assert_eq!(sim.take_trace(), Vec::<String>::new());
    assert_eq!(sim.state("x", ""), Some(State::Running));
}

/// `process timeout 2` bounds post-start: the job fails, post-start is
/// killed, then the job stops (main is killed too).
#[test]
fn hung_post_start_is_killed_after_the_job_s_process_timeout() {
    let mut sim = Sim::new();
    sim.load("x", "process timeout 2\nexec /bin/x\npost-start exec /bin/hang\n");
    let r = sim.start("x", &[], true);
    sim.take_trace();
    sim.advance(2);
    assert_eq!(
        sim.take_trace(),
        [
            "error: x post-start process (101) did not finish in time; killing it",
            "x: failed 2304",
            &format!("reply {r} error JobFailed: Job failed to start"),
            "x: goal stop",
            "kill x post-start KILL",
        ]
    );
    sim.exit("x", "", PostStart, Signaled(SIGKILL));
    assert_eq!(
        sim.take_trace(),
        [
            "warn: x post-start process (101) killed by KILL signal",
            "x: state stopping",
            "x: state killed",
            "kill x main TERM",
            "event stopping JOB=x INSTANCE= RESULT=failed PROCESS=post-start EXIT_SIGNAL=KILL",
        ]
    );
}

/// A hung pre-stop is killed; the waiting stop fails; the job stops.
#[test]
fn hung_pre_stop_is_killed_after_the_process_timeout() {
    let mut sim = Sim::new();
    sim.load("x", "process timeout 2\nexec /bin/x\npre-stop exec /bin/hang\n");
    sim.bring_up("x", &[]);
    let r = sim.stop("x", &[], true);
    assert_eq!(
        sim.take_trace(),
        ["x: goal stop", "x: state pre-stop", "spawn x pre-stop"]
    );
    sim.advance(2);
    assert_eq!(
        sim.take_trace(),
        [
            "error: x pre-stop process (101) did not finish in time; killing it",
            "x: failed 2304",
            &format!("reply {r} error JobFailed: Job failed while stopping"),
            "kill x pre-stop KILL",
        ]
    );
    sim.exit("x", "", PreStop, Signaled(SIGKILL));
    assert_eq!(
        sim.take_trace(),
        [
            "warn: x pre-stop process (101) killed by KILL signal",
            "x: state stopping",
            "x: state killed",
            "kill x main TERM",
            "event stopping JOB=x INSTANCE= RESULT=failed PROCESS=pre-stop EXIT_SIGNAL=KILL",
        ]
    );
}

/// A hung post-stop is killed and the job still reaches waiting.
#[test]
fn hung_post_stop_is_killed_after_the_process_timeout() {
    let mut sim = Sim::new();
    sim.load("x", "process timeout 2\nexec /bin/x\npost-stop exec /bin/hang\n");
    sim.bring_up("x", &[]);
    let r = sim.stop("x", &[], true);
    sim.exit("x", "", Main, Signaled(SIGTERM));
    assert_eq!(sim.take_trace().last().unwrap(), "spawn x post-stop");
    sim.advance(2);
    assert_eq!(
        sim.take_trace(),
        [
            "error: x post-stop process (101) did not finish in time; killing it",
            "x: failed 2304",
            &format!("reply {r} error JobFailed: Job failed while stopping"),
            "kill x post-stop KILL",
        ]
    );
    sim.exit("x", "", PostStop, Signaled(SIGKILL));
    assert_eq!(
        sim.take_trace(),
        [
            "warn: x post-stop process (101) killed by KILL signal",
            "x: state waiting",
            "instance removed x",
            "event stopped JOB=x INSTANCE= RESULT=failed PROCESS=post-stop EXIT_SIGNAL=KILL",
        ]
    );
}

/// The daemon's `process_timeout` applies when the job sets none, and
/// `process timeout unlimited` lifts it.
#[test]
fn process_timeout_defaults_come_from_the_config_and_unlimited_lifts_them() {
    let mut sim = Sim::with_config(EngineConfig {
        process_timeout: jobconf_parser::Bound::Seconds(7),
        ..EngineConfig::default()
    });
    sim.load("x", "pre-start exec /bin/hang\nexec /bin/x\n");
    sim.load(
        "y",
        "process timeout unlimited\npre-start exec /bin/hang\nexec /bin/y\n",
    );
    sim.start("x", &[], false);
    sim.start("y", &[], false);
    assert_eq!(sim.engine.next_deadline(), Some(7 * SECOND));
    sim.advance(7);
    assert_eq!(sim.goal("x", ""), Some(Goal::Stop));
    sim.advance(100_000);
    assert_eq!(sim.state("y", ""), Some(State::PreStart));
    assert_eq!(sim.goal("y", ""), Some(Goal::Start));
}

/// upshot (spec §7.1): `expect fork` with no `Ready` fails after `expect
/// timeout` (60 s by default); the main process is killed.
#[test]
fn expect_fork_without_ready_fails_after_the_expect_timeout() {
    let mut sim = Sim::new();
    sim.load("d", "expect fork\nexec /bin/d\n");
    let r = sim.start("d", &[], true);
    assert_eq!(sim.take_trace().last().unwrap(), "event starting JOB=d INSTANCE=");
    assert_eq!(sim.state("d", ""), Some(State::Spawned));
    sim.advance(59);
    assert_eq!(sim.take_trace(), Vec::<String>::new());
    sim.advance(1);
    assert_eq!(
        sim.take_trace(),
        [
            "error: d main process (100) did not reach `expect fork` in time; stopping the job",
            "d: failed -1",
            &format!("reply {r} error JobFailed: Job failed to start"),
            "d: goal stop",
            "d: state stopping",
            "d: state killed",
            "kill d main TERM",
            "event stopping JOB=d INSTANCE= RESULT=failed PROCESS=main",
        ]
    );
    // The kill escalates as for any stop.
    sim.advance(5);
    assert_eq!(sim.take_trace()[1], "kill d main KILL");
    sim.exit("d", "", Main, Signaled(SIGKILL));
    assert_eq!(
        sim.take_trace(),
        [
            "d: state post-stop",
            "d: state waiting",
            "instance removed d",
            "event stopped JOB=d INSTANCE= RESULT=failed PROCESS=main",
        ]
    );
}

/// `expect daemon` with the job's own `expect timeout 5`.
#[test]
fn expect_daemon_honours_the_job_s_expect_timeout() {
    let mut sim = Sim::new();
    sim.load("d", "expect daemon\nexpect timeout 5\nexec /bin/d\n");
    sim.start("d", &[], false);
    sim.take_trace();
    sim.advance(5);
    let trace = sim.take_trace();
    assert_eq!(
        trace[0],
        "error: d main process (100) did not reach `expect daemon` in time; stopping the job"
    );
    assert_eq!(sim.state("d", ""), Some(State::Killed));
}

/// `Ready{pid}` switches the tracked main pid: the old pid's exit is
/// ignored, the new one's counts.
#[test]
fn ready_switches_the_tracked_main_pid() {
    let mut sim = Sim::new();
    sim.load("d", "expect fork\nexec /bin/d\n");
    let r = sim.start("d", &[], true);
    sim.take_trace();
    sim.feed(Input::Ready {
        key: key("d", ""),
        pid: 500,
    });
    assert_eq!(
        sim.take_trace(),
        [
            "d: state post-start",
            "d: state running",
            &format!("reply {r} ok d"),
            "event started JOB=d INSTANCE=",
        ]
    );
    assert!(sim.logged(LogLevel::Info, "d main process is now 500 (was 100)"));
    assert_eq!(sim.pid("d", "", Main), Some(500));
    assert_eq!(sim.engine.next_deadline(), None, "expect timer disarmed");
    sim.exit_pid(100, Exited(0));
    assert_eq!(sim.take_trace(), Vec::<String>::new());
    assert_eq!(sim.state("d", ""), Some(State::Running));
    sim.exit_pid(500, Exited(1));
    assert_eq!(
        sim.take_trace(),
        [
            "warn: d main process (500) terminated with status 1",
            "d: failed 1",
            "d: goal stop",
            "d: state stopping",
            "d: state killed",
            "d: state post-stop",
            "d: state waiting",
            "instance removed d",
            "event stopping JOB=d INSTANCE= RESULT=failed PROCESS=main EXIT_STATUS=1",
            "event stopped JOB=d INSTANCE= RESULT=failed PROCESS=main EXIT_STATUS=1",
        ]
    );
}

// ------------------------------------------------------------ config changes

/// upshot (spec §7.2): a changed job file does not touch the running
/// instance (its stop uses the old kill signal); `restart` and a respawn
/// adopt the new definition on entering `starting`.
#[test]
fn changed_job_reaches_the_instance_at_restart_and_respawn() {
    let mut sim = Sim::new();
    sim.load("d", "respawn\nexec /bin/v1\n");
    sim.bring_up("d", &[]);
    sim.load("d", "respawn\nkill signal INT\nexec /bin/v2\n");
    assert_eq!(sim.take_trace(), Vec::<String>::new(), "no JobAdded for a change");
    assert!(sim.logged(
        LogLevel::Info,
        "d: configuration changed; it applies from the next start"
    ));
    let inst = sim.engine.instance(&key("d", "")).unwrap();
    assert_eq!(inst.conf.process(ProcessKind::Main).unwrap().command, "/bin/v1");

    // Respawn picks up v2.
    sim.exit("d", "", Main, Exited(1));
    assert_eq!(sim.take_trace(), respawn_trace(100));
    let spawn = sim.last_spawn("d", "", Main);
    assert_eq!(spawn.conf.process(ProcessKind::Main).unwrap().command, "/bin/v2");

    // Restart stops v2 with v2's signal and starts v3.
    sim.load("d", "exec /bin/v3\n");
    sim.restart("d", &[], false);
    assert!(sim.take_trace().contains(&"kill d main INT".to_string()));
    sim.exit("d", "", Main, Signaled(2));
    let spawn = sim.last_spawn("d", "", Main);
    assert_eq!(spawn.conf.process(ProcessKind::Main).unwrap().command, "/bin/v3");
    assert!(!spawn.conf.respawn());
    assert_eq!(sim.state("d", ""), Some(State::Running));
}

/// A changed `start on` takes effect at once for new events, and a partial
/// match of the old condition is dropped (releasing the held event).
#[test]
fn changed_start_on_releases_events_the_old_condition_held() {
    let mut sim = Sim::new();
    sim.load("j", "start on a and b\nexec /bin/j\n");
    let r = sim.emit_wait("a", &[]);
    sim.take_trace();
    sim.load("j", "start on c\nexec /bin/j\n");
    assert_eq!(sim.take_trace(), [format!("reply {r} ok"), "event a".into()]);
    sim.emit("b", &[]);
    assert_eq!(sim.state("j", ""), None);
    sim.emit("c", &[]);
    assert_eq!(sim.state("j", ""), Some(State::Running));
}

/// A removed job keeps its class while an instance runs; it can still be
/// stopped by name (the class stays until the instance stops, spec §1.9
/// "waiting"), not started; then `JobRemoved`.
#[test]
fn removed_job_stays_until_its_instance_stops() {
    let mut sim = Sim::new();
    sim.load("r", "exec /bin/r\n");
    sim.load("idle", "exec /bin/idle\n");
    sim.bring_up("r", &[]);
    sim.remove("r");
    assert_eq!(sim.take_trace(), Vec::<String>::new());
    assert!(sim.engine.classes().contains_key("r"));
    assert_eq!(sim.state("r", ""), Some(State::Running));

    let s = sim.start("r", &[], true);
    assert_eq!(
        sim.take_trace(),
        [format!("reply {s} error UnknownJob: Unknown job: r")]
    );

    let s = sim.stop("r", &[], true);
    assert_eq!(
        sim.take_trace(),
        [
            "r: goal stop",
            "r: state pre-stop",
            "r: state stopping",
            "r: state killed",
            "kill r main TERM",
            "event stopping JOB=r INSTANCE= RESULT=ok",
        ]
    );
    sim.exit("r", "", Main, Signaled(SIGTERM));
    assert_eq!(
        sim.take_trace(),
        [
            "r: state post-stop",
            "r: state waiting",
            &format!("reply {s} ok"),
            "instance removed r",
            "job removed r",
            "event stopped JOB=r INSTANCE= RESULT=ok",
        ]
    );
    assert!(!sim.engine.classes().contains_key("r"));

    // A job that is not running goes at once.
    sim.remove("idle");
    assert_eq!(sim.take_trace(), ["job removed idle"]);
}

/// A removed job's running instance still obeys its `stop on`.
#[test]
fn removed_job_still_stops_on_its_stop_condition() {
    let mut sim = Sim::new();
    sim.load("r", "stop on bye\nexec /bin/r\n");
    sim.bring_up("r", &[]);
    sim.remove("r");
    sim.emit("bye", &[]);
    sim.exit("r", "", Main, Signaled(SIGTERM));
    let trace = sim.take_trace();
    assert!(trace.contains(&"job removed r".to_string()), "{trace:#?}");
}

// ------------------------------------------------------------------- reload

/// Spec §3.4: Reload sends the reload signal to the main pid only; with no
/// main process it is `NotRunning`.
#[test]
fn reload_signals_the_main_pid_only() {
    let mut sim = Sim::new();
    sim.load("d", "reload signal USR1\nexec /bin/d\n");
    sim.load("p", "pre-start exec /bin/slow\nexec /bin/p\n");
    sim.bring_up("d", &[]);
    let r = sim.reload("d", "");
    assert_eq!(
        sim.take_trace(),
        ["kill d main USR1 (pid only)".to_string(), format!("reply {r} ok")]
    );
    sim.start("p", &[], false);
    sim.take_trace();
    let r = sim.reload("p", "");
    assert_eq!(
        sim.take_trace(),
        [format!("reply {r} error NotRunning: Job is not running: p")]
    );
    // Default: SIGHUP.
    sim.load("h", "exec /bin/h\n");
    sim.bring_up("h", &[]);
    sim.reload("h", "");
    assert_eq!(sim.take_trace()[0], "kill h main HUP (pid only)");
}

// ------------------------------------------------------ serialise and restore

/// Runs a scenario touching most paths (partial matches, blocked events,
/// timers, waiters, respawn counting) and returns its trace.
fn mixed_scenario(sim: &mut Sim) -> Vec<String> {
    sim.load("a", "exec /bin/a\npre-stop exec /bin/drain\n");
    sim.load(
        "b",
        "start on started a and go\nstop on stopping a\nrespawn\nexec /bin/b\n",
    );
    sim.load(
        "t",
        "start on starting b\ntask\npre-start exec /bin/p\nexec /bin/t\n",
    );
    sim.load(
        "w",
        "instance $N\nprocess timeout 3\npre-start exec /bin/hang\nexec /bin/w\n",
    );
    let _ = sim.emit_wait("go", &["G=1"]);
    sim.start("a", &[], true);
    sim.exit("t", "", PreStart, Exited(0));
    sim.exit("t", "", Main, Exited(0));
    sim.advance_ms(100);
    sim.exit("b", "", Main, Exited(1));
    // b's respawn goes through `starting` again, which runs t again.
    sim.exit("t", "", PreStart, Exited(0));
    sim.exit("t", "", Main, Exited(0));
    sim.start("w", &["N=1"], true);
    sim.advance(3);
    sim.exit("w", "1", PreStart, Signaled(SIGKILL));
    sim.restart("a", &[], true);
    sim.exit("a", "", PreStop, Exited(0));
    sim.exit("b", "", Main, Signaled(SIGTERM));
    sim.advance(5);
    sim.exit("a", "", Main, Signaled(SIGKILL));
    sim.stop("a", &[], true);
    sim.exit("a", "", PreStop, Exited(0));
    sim.exit("a", "", Main, Signaled(SIGTERM));
    sim.take_trace()
}

/// A restored engine behaves the same: the mixed scenario run with a
/// serialise/restore round trip before every input gives the same trace.
#[test]
fn a_restored_engine_behaves_the_same() {
    let mut plain = Sim::new();
    let expected = mixed_scenario(&mut plain);
    assert!(expected.len() > 80, "the scenario does something: {expected:#?}");
    let mut restored = Sim::new();
    restored.roundtrip = true;
    assert_eq!(mixed_scenario(&mut restored), expected);
    assert_eq!(restored.engine.state_json(), plain.engine.state_json());
}

// ------------------------------------------------------------ more orderings

/// Spec §2.1: stop is evaluated before start, so an event in both `stop on`
/// and `start on` restarts a running job (without `stopped`).
#[test]
fn event_in_both_start_on_and_stop_on_restarts_a_running_job() {
    let mut sim = Sim::new();
    sim.load("x", "start on go\nstop on go\nexec /bin/x\n");
    sim.emit("go", &["N=1"]);
    assert_eq!(sim.state("x", ""), Some(State::Running));
    sim.take_trace();
    sim.emit("go", &["N=2"]);
    assert_eq!(
        sim.take_trace(),
        [
            "x: goal stop",
            "x: state pre-stop",
            "x: state stopping",
            "x: goal start",
            "x: state killed",
            "kill x main TERM",
            "event stopping JOB=x INSTANCE= RESULT=ok",
        ]
    );
    sim.exit("x", "", Main, Signaled(SIGTERM));
    assert_eq!(
        sim.take_trace(),
        [
            "x: state post-stop",
            "x: state starting",
            "x: state pre-start",
            "x: state spawned",
            "spawn x main",
            "event starting JOB=x INSTANCE=",
            "x: state post-start",
            "x: state running",
            "event started JOB=x INSTANCE=",
            "event go N=2",
        ]
    );
    assert_eq!(
        sim.spawn_env("x", "", Main),
        [
            PATH,
            "N=2",
            "UPSTART_EVENTS=go",
            "UPSTART_JOB=x",
            "UPSTART_INSTANCE="
        ]
    );
}

/// Spec §2.1: an event that starts a task finishes only when the task is
/// done (stopped), so a waiting emit is answered then.
#[test]
fn event_starting_a_task_finishes_when_the_task_is_done() {
    let mut sim = Sim::new();
    sim.load("t", "start on go\ntask\nexec /bin/t\n");
    let r = sim.emit_wait("go", &[]);
    assert_eq!(sim.state("t", ""), Some(State::Running));
    assert!(!sim.take_trace().iter().any(|l| l.starts_with("reply")));
    sim.exit("t", "", Main, Exited(0));
    let trace = sim.take_trace();
    assert_eq!(
        trace[trace.len() - 4..],
        [
            "event stopping JOB=t INSTANCE= RESULT=ok".to_string(),
            "event stopped JOB=t INSTANCE= RESULT=ok".into(),
            format!("reply {r} ok"),
            "event go".into(),
        ]
    );
}

/// Spec §2.2: `--no-wait` is answered once the event is queued.
#[test]
fn emit_without_wait_is_answered_at_once() {
    let mut sim = Sim::new();
    sim.load("t", "start on go\ntask\nexec /bin/t\n");
    sim.take_trace();
    let by = sim.request(false);
    sim.feed(Input::Emit {
        name: "go".into(),
        env: vec![],
        by: Some(by),
    });
    let trace = sim.take_trace();
    assert_eq!(trace[0], format!("reply {} ok", by.reply));
    assert_eq!(sim.state("t", ""), Some(State::Running));
}

/// Spec §3.4: Instance.Start keeps the instance's environment.
#[test]
fn instance_start_keeps_the_instance_environment() {
    let mut sim = Sim::new();
    sim.load("w", INSTANCES);
    sim.start("w", &["N=1", "EXTRA=x"], false);
    sim.stop("w", &["N=1"], false);
    assert_eq!(sim.state("w", "1"), Some(State::Killed));
    let by = sim.request(true);
    sim.feed(Input::InstanceStart {
        key: key("w", "1"),
        by: Some(by),
    });
    sim.exit("w", "1", Main, Signaled(SIGTERM));
    assert!(sim.take_trace().contains(&format!("reply {} ok w (1)", by.reply)));
    assert_eq!(
        sim.spawn_env("w", "1", Main),
        [PATH, "N=1", "EXTRA=x", "UPSTART_JOB=w", "UPSTART_INSTANCE=1"]
    );
}

/// A stop that overtakes the pid of a main process being spawned: the job
/// goes to killed at once and kills the process when its pid arrives.
#[test]
fn stop_before_main_s_pid_is_known_kills_it_once_spawned() {
    let mut sim = Sim::new();
    sim.load("x", "exec /bin/x\n");
    sim.hold_spawns = true;
    sim.start("x", &[], false);
    assert_eq!(sim.take_trace().last().unwrap(), "event starting JOB=x INSTANCE=");
    sim.stop("x", &[], false);
    assert_eq!(
        sim.take_trace(),
        [
            "x: goal stop",
            "x: state stopping",
            "reply 2 ok",
            "x: state killed",
            "event stopping JOB=x INSTANCE= RESULT=ok",
        ]
    );
    sim.hold_spawns = false;
    sim.release_spawns();
    assert_eq!(sim.take_trace(), ["kill x main TERM"]);
}

/// The same in `killed`: a restart goes round while main is being spawned
/// and the pid, when it comes, gets the kill signal.
#[test]
fn main_spawned_while_killed_gets_the_kill_signal() {
    let mut sim = Sim::new();
    sim.load("x", "respawn\nexec /bin/x\n");
    sim.bring_up("x", &[]);
    sim.hold_spawns = true;
    sim.exit("x", "", Main, Exited(1));
    assert_eq!(sim.take_trace().last().unwrap(), "event starting JOB=x INSTANCE=");
    assert_eq!(sim.state("x", ""), Some(State::Spawned));
    sim.stop("x", &[], false);
    sim.hold_spawns = false;
    sim.release_spawns();
    let trace = sim.take_trace();
    assert_eq!(
        trace[trace.len() - 3..],
        [
            "x: state killed",
            "event stopping JOB=x INSTANCE= RESULT=ok",
            "kill x main TERM",
        ]
    );
    assert_eq!(sim.pid("x", "", Main), Some(101));
}

/// upshot: a main process that dies in `spawned` (`expect fork`, before
/// `Ready`) and is respawned goes round through `stopping`.
#[test]
fn main_dying_in_spawned_is_respawned_through_stopping() {
    let mut sim = Sim::new();
    sim.load("d", "respawn\nexpect fork\nexec /bin/d\n");
    sim.start("d", &[], false);
    sim.take_trace();
    sim.exit("d", "", Main, Exited(1));
    assert_eq!(
        sim.take_trace(),
        [
            "warn: d main process (100) terminated with status 1",
            "warn: d main process ended, respawning",
            "d: goal respawn",
            "d: goal start",
            "d: state stopping",
            "d: state killed",
            "d: state post-stop",
            "d: state starting",
            "event stopping JOB=d INSTANCE= RESULT=ok",
            "d: state pre-start",
            "d: state spawned",
            "spawn d main",
            "event starting JOB=d INSTANCE=",
        ]
    );
    assert_eq!(
        sim.engine.next_deadline(),
        Some(60 * SECOND),
        "a fresh expect timer"
    );
}

/// upshot: a stop while `expect daemon` waits does not wait for the forks:
/// the job goes straight to stopping and the main process tracked so far is
/// killed (Upstart stayed in `spawned` until the expected forks came); a
/// late `Ready` changes nothing.
#[test]
fn stop_while_waiting_for_expect_stops_at_once() {
    let mut sim = Sim::new();
    sim.load("d", "expect daemon\nexec /bin/d\n");
    let r = sim.start("d", &[], true);
    sim.take_trace();
    let s = sim.stop("d", &[], true);
    assert_eq!(
        sim.take_trace(),
        [
            format!("reply {r} ok d"),
            "d: goal stop".into(),
            "d: state stopping".into(),
            "d: state killed".into(),
            "kill d main TERM".into(),
            "event stopping JOB=d INSTANCE= RESULT=ok".into(),
        ]
    );
    sim.feed(Input::Ready {
        key: key("d", ""),
        pid: 300,
    });
    assert!(sim.take_trace().is_empty(), "Ready outside spawned is ignored");
    sim.exit_pid(100, Signaled(SIGTERM));
    assert!(sim.take_trace().contains(&format!("reply {s} ok")));
}

/// Unknown pids, stale `Spawned`, `Ready` outside `spawned` and an early
/// `Tick` change nothing.
#[test]
fn stray_inputs_change_nothing() {
    let mut sim = Sim::new();
    sim.load("x", "exec /bin/x\n");
    sim.bring_up("x", &[]);
    let before = sim.engine.state_json();
    sim.exit_pid(4242, Exited(0));
    sim.feed(Input::Spawned {
        key: key("x", ""),
        process: Main,
        pid: 4343,
    });
    sim.feed(Input::Ready {
        key: key("x", ""),
        pid: 4444,
    });
    sim.feed(Input::Ready {
        key: key("nope", ""),
        pid: 4445,
    });
    sim.feed(Input::SpawnFailed {
        key: key("x", ""),
        process: PreStop,
        error: "late".into(),
    });
    sim.feed(Input::Tick);
    assert_eq!(sim.take_trace(), Vec::<String>::new());
    assert_eq!(sim.engine.state_json(), before);
}

/// A job with no processes at all runs through every state at once.
#[test]
fn job_without_processes_runs_through_at_once() {
    let mut sim = Sim::new();
    sim.load("abstract", "description \"a state\"\n");
    sim.take_trace();
    let r = sim.start("abstract", &[], true);
    assert_eq!(
        sim.take_trace(),
        [
            "instance added abstract",
            "abstract: goal start",
            "abstract: state starting",
            "abstract: state pre-start",
            "abstract: state spawned",
            "abstract: state post-start",
            "abstract: state running",
            &format!("reply {r} ok abstract"),
            "event starting JOB=abstract INSTANCE=",
            "event started JOB=abstract INSTANCE=",
        ]
    );
    let r = sim.stop("abstract", &[], true);
    assert_eq!(
        sim.take_trace(),
        [
            "abstract: goal stop",
            "abstract: state stopping",
            "abstract: state killed",
            "abstract: state post-stop",
            "abstract: state waiting",
            &format!("reply {r} ok"),
            "instance removed abstract",
            "event stopping JOB=abstract INSTANCE= RESULT=ok",
            "event stopped JOB=abstract INSTANCE= RESULT=ok",
        ]
    );
}

/// Events name instances too; an event whose env cannot name one logs
/// `Failed to obtain JOB instance: …` and starts nothing (spec §2.1).
#[test]
fn events_start_instances_named_from_their_env() {
    let mut sim = Sim::new();
    sim.load("dev", "instance $DEV\nstart on add DEV=*\nexec /bin/dev\n");
    sim.load("bad", "instance $MISSING\nstart on add\nexec /bin/bad\n");
    sim.take_trace();
    sim.emit("add", &["DEV=a"]);
    sim.emit("add", &["DEV=b"]);
    assert_eq!(sim.state("dev", "a"), Some(State::Running));
    assert_eq!(sim.state("dev", "b"), Some(State::Running));
    assert_eq!(
        sim.spawn_env("dev", "b", Main),
        [
            PATH,
            "DEV=b",
            "UPSTART_EVENTS=add",
            "UPSTART_JOB=dev",
            "UPSTART_INSTANCE=b"
        ]
    );
    let trace = sim.take_trace();
    assert!(trace.contains(&"warn: Failed to obtain bad instance: Unknown parameter: MISSING".into()));
    assert!(trace.contains(&"event add DEV=b".into()));
    assert!(sim.engine.classes()["bad"].instances.is_empty());
    assert_eq!(sim.engine.events().count(), 0, "nothing holds the events");
}

/// upshot (spec §7.2): the running instance keeps its old `stop on` until
/// it next starts.
#[test]
fn changed_stop_on_applies_from_the_next_start() {
    let mut sim = Sim::new();
    sim.load("d", "stop on bye\nexec /bin/d\n");
    sim.bring_up("d", &[]);
    sim.load("d", "stop on ciao\nexec /bin/d\n");
    sim.emit("ciao", &[]);
    assert_eq!(sim.goal("d", ""), Some(Goal::Start));
    sim.restart("d", &[], false);
    sim.exit("d", "", Main, Signaled(SIGTERM));
    assert_eq!(sim.state("d", ""), Some(State::Running));
    sim.emit("bye", &[]);
    assert_eq!(sim.goal("d", ""), Some(Goal::Start));
    sim.emit("ciao", &[]);
    assert_eq!(sim.goal("d", ""), Some(Goal::Stop));
}

/// upshot (module doc: the instance adopts the job's current configuration
/// on entering `starting`, respawn included): a changed `env` stanza reaches
/// the respawned process, under the variables the start brought.
#[test]
fn changed_env_stanzas_reach_a_respawn_under_the_start_args() {
    let mut sim = Sim::new();
    sim.load("d", "respawn\nenv FOO=old\nenv GONE=old\nexec /bin/d\n");
    sim.start("d", &["ARG=1", "FOO=arg"], false);
    sim.load("d", "respawn\nenv FOO=new\nenv BAR=new\nexec /bin/d\n");
    sim.exit("d", "", Main, Exited(1));
    assert_eq!(
        sim.spawn_env("d", "", Main),
        [
            PATH,
            "FOO=arg",
            "BAR=new",
            "ARG=1",
            "UPSTART_JOB=d",
            "UPSTART_INSTANCE="
        ]
    );
    // Unchanged, a respawn keeps the environment as it was.
    sim.exit("d", "", Main, Exited(1));
    assert_eq!(
        sim.spawn_env("d", "", Main),
        [
            PATH,
            "FOO=arg",
            "BAR=new",
            "ARG=1",
            "UPSTART_JOB=d",
            "UPSTART_INSTANCE="
        ]
    );
}

/// The same for a job started by events: their variables survive.
#[test]
fn changed_env_stanzas_reach_a_respawn_under_the_event_env() {
    let mut sim = Sim::new();
    sim.load("d", "start on go\nrespawn\nenv FOO=old\nexec /bin/d\n");
    sim.emit("go", &["E=1"]);
    sim.load("d", "start on go\nrespawn\nenv FOO=new\nexec /bin/d\n");
    sim.exit("d", "", Main, Exited(1));
    assert_eq!(
        sim.spawn_env("d", "", Main),
        [
            PATH,
            "FOO=new",
            "E=1",
            "UPSTART_EVENTS=go",
            "UPSTART_JOB=d",
            "UPSTART_INSTANCE="
        ]
    );
}

/// `MainPid` follows a fork without leaving `spawned`: the parent's exit is
/// no longer the job's, and the child is the main process from then on.
#[test]
fn main_pid_follows_a_fork_and_the_parent_exit_is_ignored() {
    let mut sim = Sim::new();
    sim.load("d", "expect fork\nexec /bin/d\n");
    sim.start("d", &[], false);
    sim.take_trace();
    sim.feed(Input::MainPid {
        key: key("d", ""),
        pid: 200,
    });
    assert_eq!(sim.state("d", ""), Some(State::Spawned));
    sim.exit_pid(100, Exited(0));
    assert_eq!(
        sim.state("d", ""),
        Some(State::Spawned),
        "the parent's exit is not the job's"
    );
    sim.feed(Input::Ready {
        key: key("d", ""),
        pid: 200,
    });
    assert_eq!(sim.state("d", ""), Some(State::Running));
    assert_eq!(sim.pid("d", "", Main), Some(200));
    sim.exit_pid(200, Exited(0));
    assert_eq!(sim.state("d", ""), None, "the job ended with its main process");
}

//! The engine: Upstart's job and event semantics as a pure, deterministic
//! state machine (spec §1.5–1.10, §2.1–2.3; design layer 2).
//!
//! Every input is a plain value ([`Input`]) applied at a time the caller
//! gives; the engine answers with [`Effect`]s (spawn this, signal that,
//! reply to this request, log this). It never reads the clock, the file
//! system or the environment, and spawns nothing: the main loop does the
//! I/O, the supervisor the processes. All of its state is serialisable
//! (`GetState`, stateful re-exec) and a restored engine behaves the same.
//!
//! Where upshot deliberately differs from Upstart (each is tested):
//! - an instance adopts its job's current configuration whenever it enters
//!   `starting` (start, restart, respawn), so edits reach running jobs;
//! - `restart` of a job with a pre-stop process really restarts it;
//! - pre-start, post-start, pre-stop and post-stop are bounded by `process
//!   timeout`, and the wait for `expect` by `expect timeout`: past the
//!   bound the process is killed and the job fails with a logged reason;
//! - a main process that dies in `spawned` and is respawned goes round
//!   through `stopping` instead of reaching `running` with no process.

mod env;
mod event;
mod operator;
mod state;

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use jobconf_parser::expand::expand;
use jobconf_parser::{Bound, Expect, JobConf, ProcessKind, Signal};
use serde::{Deserialize, Serialize};

pub use event::{Blocked, Event, EventId, Progress, WaitKind};
pub use operator::{IndexKey, OperatorTree, args_match, index_key};
pub use state::{Goal, State, next_state};

/// Microseconds on a monotonic clock, supplied with every input.
pub type Time = u64;
/// A process id.
pub type Pid = i32;
/// An opaque token for a request; the engine answers with [`Effect::Reply`].
pub type ReplyTo = u64;

const SECOND: Time = 1_000_000;

/// Names an instance: its job and its (expanded) instance name, empty for a
/// single-instance job.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct InstanceKey {
    pub job: String,
    pub instance: String,
}

impl InstanceKey {
    pub fn new(job: impl Into<String>, instance: impl Into<String>) -> InstanceKey {
        InstanceKey {
            job: job.into(),
            instance: instance.into(),
        }
    }

    /// Upstart's `job_name`: `JOB` or `JOB (INSTANCE)`.
    pub fn display(&self) -> String {
        if self.instance.is_empty() {
            self.job.clone()
        } else {
            format!("{} ({})", self.job, self.instance)
        }
    }
}

/// How a process ended, as `waitpid` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExitStatus {
    Exited(i32),
    Signaled(i32),
}

impl ExitStatus {
    /// Upstart's packed status: the exit code, or the signal shifted left 8.
    pub fn packed(self) -> i32 {
        match self {
            ExitStatus::Exited(c) => c,
            ExitStatus::Signaled(s) => s << 8,
        }
    }
}

/// Who asked, and whether they wait for the outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    pub reply: ReplyTo,
    pub wait: bool,
}

/// Everything that can happen to the engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// A job file was added or changed. (The name is shared: a new class
    /// keeps it as its name.)
    LoadJob {
        name: Arc<str>,
        conf: Arc<JobConf>,
    },
    /// A job file went away.
    RemoveJob {
        name: Arc<str>,
    },
    /// `EmitEvent`: queue an event (every env entry must be `KEY=VALUE`).
    Emit {
        name: String,
        env: Vec<String>,
        by: Option<Request>,
    },
    /// `Job.Start`: the instance named by expanding `instance` with `env`.
    Start {
        job: String,
        env: Vec<String>,
        by: Option<Request>,
    },
    /// `Job.Stop`.
    Stop {
        job: String,
        env: Vec<String>,
        by: Option<Request>,
    },
    /// `Job.Restart`.
    Restart {
        job: String,
        env: Vec<String>,
        by: Option<Request>,
    },
    /// `Instance.Start`/`Stop`/`Restart`: an existing instance, keeping its
    /// environment.
    InstanceStart {
        key: InstanceKey,
        by: Option<Request>,
    },
    InstanceStop {
        key: InstanceKey,
        by: Option<Request>,
    },
    InstanceRestart {
        key: InstanceKey,
        by: Option<Request>,
    },
    /// `Instance.Reload`: the reload signal to the main process.
    Reload {
        key: InstanceKey,
        by: Option<Request>,
    },
    /// A [`Effect::Spawn`] produced this process.
    Spawned {
        key: InstanceKey,
        process: ProcessKind,
        pid: Pid,
    },
    /// A [`Effect::Spawn`] failed (fork, setup or exec).
    SpawnFailed {
        key: InstanceKey,
        process: ProcessKind,
        error: String,
    },
    /// The main process reached what `expect` declares; `pid` is the process
    /// to track from now on (the daemon after its forks).
    Ready {
        key: InstanceKey,
        pid: Pid,
    },
    /// The main process is now `pid`, without leaving its state: a fork
    /// followed while tracing `expect fork|daemon`, or a live process of the
    /// job adopted when the tracked one ended. The old pid's exit is then no
    /// longer the job's.
    MainPid {
        key: InstanceKey,
        pid: Pid,
    },
    /// A child was reaped.
    Exited {
        pid: Pid,
        status: ExitStatus,
    },
    /// Time passed: timers due at the input's time fire.
    Tick,
    /// Respawning on or off (off while a session shuts down).
    SetRespawn(bool),
}

/// A successful answer to a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Answer {
    Done,
    Instance(InstanceKey),
}

/// The failures a request can get (spec §3.2–3.4, error names under
/// `com.ubuntu.Upstart0_6.Error.` except `InvalidArgs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorKind {
    UnknownJob,
    UnknownInstance,
    AlreadyStarted,
    AlreadyStopped,
    JobFailed,
    EventFailed,
    NotRunning,
    InvalidArgs,
}

impl ErrorKind {
    /// The D-Bus error name.
    pub fn dbus_name(self) -> &'static str {
        match self {
            ErrorKind::UnknownJob => "com.ubuntu.Upstart0_6.Error.UnknownJob",
            ErrorKind::UnknownInstance => "com.ubuntu.Upstart0_6.Error.UnknownInstance",
            ErrorKind::AlreadyStarted => "com.ubuntu.Upstart0_6.Error.AlreadyStarted",
            ErrorKind::AlreadyStopped => "com.ubuntu.Upstart0_6.Error.AlreadyStopped",
            ErrorKind::JobFailed => "com.ubuntu.Upstart0_6.Error.JobFailed",
            ErrorKind::EventFailed => "com.ubuntu.Upstart0_6.Error.EventFailed",
            ErrorKind::NotRunning => "com.ubuntu.Upstart0_6.Error.NotRunning",
            ErrorKind::InvalidArgs => "org.freedesktop.DBus.Error.InvalidArgs",
        }
    }
}

/// A failed request: its kind and Upstart's message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EngineError {
    pub kind: ErrorKind,
    pub message: String,
}

impl EngineError {
    fn new(kind: ErrorKind, message: impl Into<String>) -> EngineError {
        EngineError {
            kind,
            message: message.into(),
        }
    }
}

/// D-Bus signals the engine asks to be sent (spec §3.2–3.4).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum BusSignal {
    JobAdded(String),
    JobRemoved(String),
    InstanceAdded(InstanceKey),
    InstanceRemoved(InstanceKey),
    GoalChanged(InstanceKey, Goal),
    StateChanged(InstanceKey, State),
    /// Exit status, signal << 8, -1 for a spawn failure, 0 for the respawn
    /// limit.
    Failed(InstanceKey, i32),
    EventEmitted {
        name: String,
        env: Vec<String>,
    },
}

/// Log levels of [`Effect::Log`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum LogLevel {
    Debug,
    Info,
    Warn,
    Error,
}

/// What to spawn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spawn {
    pub key: InstanceKey,
    pub process: ProcessKind,
    /// The job's configuration as the instance runs it (setup stanzas).
    pub conf: Arc<JobConf>,
    /// The complete environment, in Upstart's priority order.
    pub env: Vec<String>,
}

/// What the engine asks the world to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    Spawn(Spawn),
    /// Send `signal`; `tree`: to the process's whole group and descendants
    /// (stopping), else to the pid alone (reload).
    Kill {
        key: InstanceKey,
        process: ProcessKind,
        pid: Pid,
        signal: Signal,
        tree: bool,
    },
    Reply {
        to: ReplyTo,
        result: Result<Answer, EngineError>,
    },
    Signal(BusSignal),
    Log {
        level: LogLevel,
        message: String,
    },
}

/// Settings the daemon gives the engine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EngineConfig {
    /// The global job environment table (spec §1.6, level 1).
    pub global_env: Vec<String>,
    /// init's own environment, for `env KEY` stanzas without a value.
    pub process_env: Vec<String>,
    /// Set last in every process environment (a session init's
    /// `UPSTART_SESSION`).
    pub final_env: Vec<String>,
    /// Bound for non-main processes when the job sets no `process timeout`.
    pub process_timeout: Bound,
    /// Bound for `expect` when the job sets no `expect timeout`.
    pub expect_timeout: Bound,
}

/// The default bound on pre-start, post-start, pre-stop and post-stop.
pub const DEFAULT_PROCESS_TIMEOUT: Bound = Bound::Seconds(300);
/// The default bound on reaching the state `expect` declares.
pub const DEFAULT_EXPECT_TIMEOUT: Bound = Bound::Seconds(60);

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            global_env: vec!["PATH=/usr/local/sbin:/usr/local/bin:/usr/bin:/usr/sbin:/sbin:/bin".into()],
            process_env: Vec::new(),
            final_env: Vec::new(),
            process_timeout: DEFAULT_PROCESS_TIMEOUT,
            expect_timeout: DEFAULT_EXPECT_TIMEOUT,
        }
    }
}

/// Why an instance failed (`PROCESS=` of its events).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FailedAt {
    Process(ProcessKind),
    /// The respawn limit was hit.
    Respawn,
}

/// A process slot of an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Slot {
    #[default]
    Empty,
    /// Asked for, pid not known yet.
    Spawning,
    Alive(Pid),
}

impl Slot {
    fn live(self) -> bool {
        self != Slot::Empty
    }
}

/// One running (or stopping, or starting) instance of a job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Instance {
    pub conf: Arc<JobConf>,
    /// The [`Class::generation`] of `conf`.
    #[serde(default)]
    pub generation: u64,
    pub goal: Goal,
    pub state: State,
    /// The environment its processes get (before the stop env and the
    /// `UPSTART_*` variables).
    pub env: Vec<String>,
    pub start_env: Option<Vec<String>>,
    /// The variables the last start request or starting events brought
    /// (spec §1.6 level 3), kept to rebuild `env` when the job changed.
    #[serde(default)]
    pub start_args: Vec<String>,
    pub stop_env: Option<Vec<String>>,
    pub stop_on: Option<OperatorTree>,
    /// Process slots in [`ProcessKind::ALL`] order.
    pub slots: [Slot; 5],
    /// The `starting`/`stopping` event it waits on.
    pub blocker: Option<EventId>,
    /// Events and requests waiting for it to settle.
    pub blocking: Vec<Blocked>,
    pub failed: bool,
    pub failed_at: Option<FailedAt>,
    /// Packed exit status of the failure (-1: spawn failure).
    pub exit_status: i32,
    pub respawn_count: u64,
    pub respawn_time: Option<Time>,
    /// Deadlines armed for this instance.
    pub timers: Vec<(Time, Timer)>,
}

impl Instance {
    /// The slot of a process kind.
    pub fn slot(&self, kind: ProcessKind) -> Slot {
        self.slots[slot_index(kind)]
    }

    /// The pid in a slot, if the process is alive and known.
    pub fn pid(&self, kind: ProcessKind) -> Option<Pid> {
        match self.slot(kind) {
            Slot::Alive(pid) => Some(pid),
            _ => None,
        }
    }
}

/// A start environment: the complete one, and the request's own variables
/// in it.
type StartEnv = (Vec<String>, Vec<String>);

/// What a deadline is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Timer {
    /// `kill timeout` after the kill signal: SIGKILL.
    Kill,
    /// `process timeout` of a non-main process, or `expect timeout` for main.
    Process(ProcessKind),
}

/// A job class: its configuration and instances.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Class {
    pub conf: Arc<JobConf>,
    /// Which load of the job's file `conf` is (instances compare it to
    /// know whether the definition changed; a pointer would not survive
    /// serialisation).
    #[serde(default)]
    pub generation: u64,
    pub start_on: Option<OperatorTree>,
    pub instances: BTreeMap<String, Instance>,
    /// Its file is gone; it disappears with its last instance.
    pub removed: bool,
}

/// The job classes by name, what [`Engine::classes`] shows. Each name is
/// one shared allocation, also held by the dispatch index.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Classes(BTreeMap<Arc<str>, Class>);

/// The iterator over [`Classes`].
pub type ClassesIter<'a> = std::iter::Map<
    std::collections::btree_map::Iter<'a, Arc<str>, Class>,
    fn((&'a Arc<str>, &'a Class)) -> (&'a str, &'a Class),
>;

impl Classes {
    pub fn get(&self, name: &str) -> Option<&Class> {
        self.0.get(name)
    }

    fn get_mut(&mut self, name: &str) -> Option<&mut Class> {
        self.0.get_mut(name)
    }

    pub fn contains_key(&self, name: &str) -> bool {
        self.0.contains_key(name)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Classes in name order.
    pub fn iter(&self) -> ClassesIter<'_> {
        self.0.iter().map(|(k, v)| (&**k, v))
    }

    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(|k| &**k)
    }

    pub fn values(&self) -> impl Iterator<Item = &Class> {
        self.0.values()
    }

    /// The shared name of a class.
    fn name(&self, name: &str) -> Option<Arc<str>> {
        self.0.get_key_value(name).map(|(k, _)| k.clone())
    }
}

impl std::ops::Index<&str> for Classes {
    type Output = Class;

    /// The class of that name; panics if there is none (as a map's index).
    fn index(&self, name: &str) -> &Class {
        &self.0[name]
    }
}

impl<'a> IntoIterator for &'a Classes {
    type Item = (&'a str, &'a Class);
    type IntoIter = ClassesIter<'a>;

    fn into_iter(self) -> ClassesIter<'a> {
        self.iter()
    }
}

fn slot_index(kind: ProcessKind) -> usize {
    match kind {
        ProcessKind::Main => 0,
        ProcessKind::PreStart => 1,
        ProcessKind::PostStart => 2,
        ProcessKind::PreStop => 3,
        ProcessKind::PostStop => 4,
    }
}

/// The classes that mention an index key, with how many trees of each do,
/// sorted by class. Most keys have one class, kept inline; more (shared
/// events like `filesystem`) take one allocation of the exact size.
#[derive(Debug, Clone)]
enum Mentions {
    One((Arc<str>, u32)),
    Many(Box<[(Arc<str>, u32)]>),
}

impl Default for Mentions {
    fn default() -> Self {
        Mentions::Many(Box::default())
    }
}

impl Mentions {
    fn entries(&self) -> &[(Arc<str>, u32)] {
        match self {
            Mentions::One(e) => std::slice::from_ref(e),
            Mentions::Many(v) => v,
        }
    }

    fn entries_mut(&mut self) -> &mut [(Arc<str>, u32)] {
        match self {
            Mentions::One(e) => std::slice::from_mut(e),
            Mentions::Many(v) => v,
        }
    }

    /// The entries with `i` replaced by `new` (inserted before it when
    /// `insert`), in a new allocation of the exact size: shrinking one in
    /// place would leave a small hole in the heap per change.
    fn splice(&mut self, i: usize, insert: bool, new: Option<(Arc<str>, u32)>) {
        let old = match std::mem::take(self) {
            Mentions::One(e) => vec![e],
            Mentions::Many(v) => v.into_vec(),
        };
        let len = old.len() + usize::from(insert) - usize::from(new.is_none());
        let mut v = Vec::with_capacity(len);
        let mut old = old.into_iter();
        v.extend(old.by_ref().take(i));
        v.extend(new);
        v.extend(old.skip(usize::from(!insert)));
        *self = match v.pop() {
            Some(e) if v.is_empty() => Mentions::One(e),
            last => {
                v.extend(last);
                Mentions::Many(v.into_boxed_slice())
            }
        };
    }

    fn add(&mut self, class: &Arc<str>) {
        match self.entries().binary_search_by(|(c, _)| c.cmp(class)) {
            Ok(i) => self.entries_mut()[i].1 += 1,
            Err(i) => self.splice(i, true, Some((class.clone(), 1))),
        }
    }

    fn remove(&mut self, class: &str) {
        if let Ok(i) = self.entries().binary_search_by(|(c, _)| (**c).cmp(class)) {
            self.entries_mut()[i].1 -= 1;
            if self.entries()[i].1 == 0 {
                self.splice(i, false, None);
            }
        }
    }

    fn is_empty(&self) -> bool {
        self.entries().is_empty()
    }

    fn classes(&self) -> impl Iterator<Item = &Arc<str>> {
        self.entries().iter().map(|(c, _)| c)
    }
}

/// Hashes an [`IndexKey`], already a hash, to itself.
#[derive(Debug, Clone, Copy, Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// The dispatch index: key → classes.
type Index = HashMap<IndexKey, Mentions, BuildHasherDefault<KeyHasher>>;

/// The engine.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Engine {
    config: EngineConfig,
    now: Time,
    respawn_enabled: bool,
    classes: Classes,
    events: BTreeMap<EventId, Event>,
    pending: VecDeque<EventId>,
    finishable: BTreeSet<EventId>,
    next_event: u64,
    /// The next [`Class::generation`].
    #[serde(default)]
    next_generation: u64,
    pids: BTreeMap<Pid, (InstanceKey, ProcessKind)>,
    timers: BTreeSet<(Time, InstanceKey, Timer)>,
    /// Event name (or name and first value, see [`index_key`]) → classes
    /// whose `start on` or instances' `stop on` mention it, with a count of
    /// mentions. Derived: rebuilt on restore.
    #[serde(skip)]
    index: Index,
    #[serde(skip)]
    out: Vec<Effect>,
}

/// `KEY` of a `KEY=VALUE` entry.
fn env_key(entry: &str) -> &str {
    entry.split_once('=').map_or(entry, |(k, _)| k)
}

/// Sets (replacing) or appends an entry (`environ_add` with replace).
fn env_set(env: &mut Vec<String>, entry: &str) {
    let key = env_key(entry);
    match env.iter_mut().find(|e| env_key(e) == key) {
        Some(e) => *e = entry.to_string(),
        None => env.push(entry.to_string()),
    }
}

fn env_get<'a>(env: &'a [String], key: &str) -> Option<&'a str> {
    env.iter()
        .find_map(|e| e.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
}

impl Engine {
    pub fn new(config: EngineConfig) -> Engine {
        Engine {
            config,
            now: 0,
            respawn_enabled: true,
            classes: Classes::default(),
            events: BTreeMap::new(),
            pending: VecDeque::new(),
            finishable: BTreeSet::new(),
            next_event: 1,
            next_generation: 1,
            pids: BTreeMap::new(),
            timers: BTreeSet::new(),
            index: Index::default(),
            out: Vec::new(),
        }
    }

    /// Rebuilds what is derived after deserialising.
    pub fn restored(mut self) -> Engine {
        self.index.clear();
        let mut mentions = Vec::new();
        for (name, class) in &self.classes.0 {
            if let Some(t) = &class.start_on {
                mentions.extend(t.index_keys().map(|e| (e, name.clone())));
            }
            for inst in class.instances.values() {
                if let Some(t) = &inst.stop_on {
                    mentions.extend(t.index_keys().map(|e| (e, name.clone())));
                }
            }
        }
        for (event, class) in mentions {
            self.index.entry(event).or_default().add(&class);
        }
        self
    }

    /// Applies one input at time `now` (never earlier than the last) and
    /// appends the resulting effects to `out`.
    pub fn handle(&mut self, now: Time, input: Input, out: &mut Vec<Effect>) {
        self.now = self.now.max(now);
        std::mem::swap(&mut self.out, out);
        self.apply(input);
        self.poll();
        std::mem::swap(&mut self.out, out);
    }

    /// The same, returning the effects.
    pub fn step(&mut self, now: Time, input: Input) -> Vec<Effect> {
        let mut out = Vec::new();
        self.handle(now, input, &mut out);
        out
    }

    /// When the next timer is due, if any: feed [`Input::Tick`] then.
    pub fn next_deadline(&self) -> Option<Time> {
        self.timers.first().map(|(t, _, _)| *t)
    }

    /// The job classes.
    pub fn classes(&self) -> &Classes {
        &self.classes
    }

    /// Every instance, in job then instance order.
    pub fn instance_keys(&self) -> Vec<InstanceKey> {
        self.classes
            .iter()
            .flat_map(|(job, c)| c.instances.keys().map(move |i| InstanceKey::new(job, i.clone())))
            .collect()
    }

    /// An instance.
    pub fn instance(&self, key: &InstanceKey) -> Option<&Instance> {
        self.classes.get(&key.job)?.instances.get(&key.instance)
    }

    /// Events not yet finished, in queue order.
    pub fn events(&self) -> impl Iterator<Item = (&EventId, &Event)> {
        self.events.iter()
    }

    /// The instance a live process belongs to.
    pub fn process_owner(&self, pid: Pid) -> Option<&(InstanceKey, ProcessKind)> {
        self.pids.get(&pid)
    }

    /// The whole state as JSON (`GetState`).
    pub fn state_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    // ---------------------------------------------------------------- inputs

    fn apply(&mut self, input: Input) {
        match input {
            Input::LoadJob { name, conf } => self.load_job(name, conf),
            Input::RemoveJob { name } => self.remove_job(&name),
            Input::Emit { name, env, by } => self.emit(name, env, by),
            Input::Start { job, env, by } => {
                let r = self.start_job(&job, env, by);
                self.answer_now(by, r);
            }
            Input::Stop { job, env, by } => {
                let r = self.stop_job(&job, env, by);
                self.answer_now(by, r);
            }
            Input::Restart { job, env, by } => {
                let r = self.restart_job(&job, env, by);
                self.answer_now(by, r);
            }
            Input::InstanceStart { key, by } => {
                let r = self.start_instance(&key, None, by).map(|_| Answer::Done);
                self.answer_now(by, r);
            }
            Input::InstanceStop { key, by } => {
                let r = self.stop_instance(&key, None, by).map(|_| Answer::Done);
                self.answer_now(by, r);
            }
            Input::InstanceRestart { key, by } => {
                let r = self.restart_instance(&key, None, by).map(|_| Answer::Done);
                self.answer_now(by, r);
            }
            Input::Reload { key, by } => {
                let r = self.reload(&key);
                if let Some(by) = by {
                    self.reply(by.reply, r);
                }
            }
            Input::Spawned { key, process, pid } => self.spawned(&key, process, pid),
            Input::SpawnFailed { key, process, error } => self.spawn_failed(&key, process, &error),
            Input::Ready { key, pid } => self.ready(&key, pid),
            Input::MainPid { key, pid } => self.main_pid(&key, pid),
            Input::Exited { pid, status } => self.exited(pid, status),
            Input::Tick => self.fire_timers(),
            Input::SetRespawn(on) => self.respawn_enabled = on,
        }
    }

    /// Replies at once to a request that does not wait, or that failed
    /// before anything could wait.
    fn answer_now(&mut self, by: Option<Request>, r: Result<Answer, EngineError>) {
        if let Some(by) = by
            && (!by.wait || r.is_err())
        {
            self.reply(by.reply, r);
        }
    }

    fn reply(&mut self, to: ReplyTo, result: Result<Answer, EngineError>) {
        self.out.push(Effect::Reply { to, result });
    }

    fn log(&mut self, level: LogLevel, message: String) {
        self.out.push(Effect::Log { level, message });
    }

    fn signal(&mut self, s: BusSignal) {
        self.out.push(Effect::Signal(s));
    }

    // ------------------------------------------------------------ job classes

    fn index_tree(&mut self, class: &str, tree: Option<&OperatorTree>, add: bool) {
        let Some(tree) = tree else { return };
        let name = self.classes.name(class).unwrap_or_else(|| class.into());
        for key in tree.index_keys() {
            if add {
                self.index.entry(key).or_default().add(&name);
            } else if let Some(classes) = self.index.get_mut(&key) {
                classes.remove(class);
                if classes.is_empty() {
                    self.index.remove(&key);
                }
            }
        }
    }

    fn load_job(&mut self, name: Arc<str>, conf: Arc<JobConf>) {
        let tree = conf.start_on().map(OperatorTree::new);
        let generation = self.next_generation;
        self.next_generation += 1;
        let (changed, old_tree) = match self.classes.get_mut(&name) {
            Some(class) => {
                class.conf = conf;
                class.generation = generation;
                class.removed = false;
                (true, std::mem::replace(&mut class.start_on, tree.clone()))
            }
            None => {
                self.classes.0.insert(
                    name.clone(),
                    Class {
                        conf,
                        generation,
                        start_on: tree.clone(),
                        instances: BTreeMap::new(),
                        removed: false,
                    },
                );
                self.signal(BusSignal::JobAdded(name.to_string()));
                (false, None)
            }
        };
        if let Some(mut old) = old_tree {
            self.index_tree(&name, Some(&old), false);
            for id in old.reset() {
                self.unblock(id);
            }
        }
        // Every change is announced, not only one of a job with `start on`.
        if changed {
            self.log(
                LogLevel::Info,
                format!("{name}: configuration changed; it applies from the next start"),
            );
        }
        self.index_tree(&name, tree.as_ref(), true);
    }

    fn remove_job(&mut self, name: &str) {
        let Some(class) = self.classes.get_mut(name) else {
            return;
        };
        class.removed = true;
        let old = class.start_on.take();
        if let Some(mut old) = old {
            self.index_tree(name, Some(&old), false);
            for id in old.reset() {
                self.unblock(id);
            }
        }
        self.drop_class_if_unused(name);
    }

    fn drop_class_if_unused(&mut self, name: &str) {
        if let Some(class) = self.classes.get(name)
            && class.removed
            && class.instances.is_empty()
        {
            self.classes.0.remove(name);
            self.signal(BusSignal::JobRemoved(name.to_string()));
        }
    }

    /// `job_class_environment`: the global table and the job's `env`
    /// stanzas (`KEY` alone copies init's own value, or removes `KEY`).
    fn class_environment(&self, conf: &JobConf) -> Vec<String> {
        let mut env = self.config.global_env.clone();
        for entry in conf.env() {
            if entry.contains('=') {
                env_set(&mut env, entry);
            } else if let Some(v) = env_get(&self.config.process_env, entry) {
                env_set(&mut env, &format!("{entry}={v}"));
            } else {
                env.retain(|e| env_key(e) != entry);
            }
        }
        env
    }

    // ----------------------------------------------------------- requests

    fn check_env(env: &[String]) -> Result<(), EngineError> {
        if env.iter().all(|e| e.contains('=')) {
            Ok(())
        } else {
            Err(EngineError::new(
                ErrorKind::InvalidArgs,
                "Env must be KEY=VALUE pairs",
            ))
        }
    }

    /// The class of a request; a removed one (still there while it has
    /// instances) only when `removed_ok`.
    fn live_class(&self, job: &str, removed_ok: bool) -> Result<&Class, EngineError> {
        match self.classes.get(job) {
            Some(c) if removed_ok || !c.removed => Ok(c),
            _ => Err(EngineError::new(
                ErrorKind::UnknownJob,
                format!("Unknown job: {job}"),
            )),
        }
    }

    /// The instance name a request's environment selects, and that
    /// environment on top of the job's.
    fn instance_for(
        &self,
        job: &str,
        args: &[String],
        removed_ok: bool,
    ) -> Result<(String, Vec<String>), EngineError> {
        Self::check_env(args)?;
        let class = self.live_class(job, removed_ok)?;
        let mut env = self.class_environment(&class.conf);
        for a in args {
            env_set(&mut env, a);
        }
        match expand(class.conf.instance(), &env) {
            Ok(name) => Ok((name, env)),
            Err(e) => {
                let mut msg = e.to_string();
                if let Some(usage) = class.conf.usage() {
                    msg.push_str(&format!("\nUsage: {usage}"));
                }
                Err(EngineError::new(ErrorKind::InvalidArgs, msg))
            }
        }
    }

    fn start_job(
        &mut self,
        job: &str,
        args: Vec<String>,
        by: Option<Request>,
    ) -> Result<Answer, EngineError> {
        let (name, env) = self.instance_for(job, &args, false)?;
        let key = InstanceKey::new(job, name);
        if self.instance(&key).is_none() {
            self.new_instance(&key);
        }
        self.start_instance(&key, Some((env, args)), by)?;
        Ok(Answer::Instance(key))
    }

    fn stop_job(&mut self, job: &str, args: Vec<String>, by: Option<Request>) -> Result<Answer, EngineError> {
        // A removed job's class stays until its instances are gone (spec
        // §1.9, waiting); `stop JOB` must still reach them, else a deleted
        // job file leaves a service nobody can stop by name.
        let (name, _) = self.instance_for(job, &args, true)?;
        let key = InstanceKey::new(job, name);
        self.stop_instance(&key, Some(args), by)?;
        Ok(Answer::Done)
    }

    fn restart_job(
        &mut self,
        job: &str,
        args: Vec<String>,
        by: Option<Request>,
    ) -> Result<Answer, EngineError> {
        let (name, env) = self.instance_for(job, &args, false)?;
        let key = InstanceKey::new(job, name);
        self.restart_instance(&key, Some((env, args)), by)?;
        Ok(Answer::Instance(key))
    }

    fn unknown_instance(key: &InstanceKey) -> EngineError {
        EngineError::new(
            ErrorKind::UnknownInstance,
            format!("Unknown instance: {}", key.instance),
        )
    }

    /// An instance that exists and is not already on its way to stop.
    fn not_stopped(&self, key: &InstanceKey) -> Result<&Instance, EngineError> {
        let inst = self.instance(key).ok_or_else(|| Self::unknown_instance(key))?;
        if inst.goal == Goal::Stop {
            return Err(EngineError::new(
                ErrorKind::AlreadyStopped,
                format!("Job has already been stopped: {}", key.display()),
            ));
        }
        Ok(inst)
    }

    fn start_instance(
        &mut self,
        key: &InstanceKey,
        env: Option<StartEnv>,
        by: Option<Request>,
    ) -> Result<(), EngineError> {
        let inst = self.instance(key).ok_or_else(|| Self::unknown_instance(key))?;
        if inst.goal != Goal::Stop {
            return Err(EngineError::new(
                ErrorKind::AlreadyStarted,
                format!("Job is already running: {}", key.display()),
            ));
        }
        if let Some((env, args)) = env {
            let inst = self.inst_mut(key);
            inst.start_env = Some(env);
            inst.start_args = args;
        }
        self.job_finished(key, false);
        self.wait_on(key, by, WaitKind::Start);
        self.change_goal(key, Goal::Start, true);
        Ok(())
    }

    fn stop_instance(
        &mut self,
        key: &InstanceKey,
        stop_env: Option<Vec<String>>,
        by: Option<Request>,
    ) -> Result<(), EngineError> {
        self.not_stopped(key)?;
        if let Some(env) = stop_env {
            self.inst_mut(key).stop_env = Some(env);
        }
        self.job_finished(key, false);
        self.wait_on(key, by, WaitKind::Stop);
        self.change_goal(key, Goal::Stop, true);
        Ok(())
    }

    fn restart_instance(
        &mut self,
        key: &InstanceKey,
        env: Option<StartEnv>,
        by: Option<Request>,
    ) -> Result<(), EngineError> {
        self.not_stopped(key)?;
        if let Some((env, args)) = env {
            let inst = self.inst_mut(key);
            inst.start_env = Some(env);
            inst.start_args = args;
        }
        self.job_finished(key, false);
        self.wait_on(key, by, WaitKind::Restart);
        self.change_goal(key, Goal::Stop, true);
        // In pre-stop, a plain `start` would cancel the stop (Upstart's
        // restart did nothing then); `respawn` goes round instead.
        let goal = if self.instance(key).is_some_and(|i| i.state == State::PreStop) {
            Goal::Respawn
        } else {
            Goal::Start
        };
        self.change_goal(key, goal, true);
        Ok(())
    }

    fn reload(&mut self, key: &InstanceKey) -> Result<Answer, EngineError> {
        let inst = self.instance(key).ok_or_else(|| Self::unknown_instance(key))?;
        match inst.pid(ProcessKind::Main) {
            Some(pid) => {
                let signal = inst.conf.reload_signal();
                self.out.push(Effect::Kill {
                    key: key.clone(),
                    process: ProcessKind::Main,
                    pid,
                    signal,
                    tree: false,
                });
                Ok(Answer::Done)
            }
            None => Err(EngineError::new(
                ErrorKind::NotRunning,
                format!("Job is not running: {}", key.display()),
            )),
        }
    }

    fn wait_on(&mut self, key: &InstanceKey, by: Option<Request>, kind: WaitKind) {
        if let Some(by) = by
            && by.wait
        {
            self.inst_mut(key)
                .blocking
                .push(Blocked::Waiter { to: by.reply, kind });
        }
    }

    // ----------------------------------------------------------- instances

    /// The instance, which callers have checked exists. A missing one gets
    /// a detached dummy, so a logic slip can never panic PID 1.
    fn inst_mut(&mut self, key: &InstanceKey) -> &mut Instance {
        let class = self
            .classes
            .0
            .entry(key.job.as_str().into())
            .or_insert_with(|| Class {
                conf: Arc::new(JobConf::default()),
                generation: 0,
                start_on: None,
                instances: BTreeMap::new(),
                removed: true,
            });
        let conf = class.conf.clone();
        class
            .instances
            .entry(key.instance.clone())
            .or_insert_with(|| Instance::new(conf, 0))
    }

    fn new_instance(&mut self, key: &InstanceKey) {
        let Some(class) = self.classes.get_mut(&key.job) else {
            return;
        };
        let mut inst = Instance::new(class.conf.clone(), class.generation);
        inst.stop_on = class.conf.stop_on().map(OperatorTree::new);
        let tree = inst.stop_on.clone();
        class.instances.insert(key.instance.clone(), inst);
        self.index_tree(&key.job, tree.as_ref(), true);
        self.signal(BusSignal::InstanceAdded(key.clone()));
    }

    /// `job_change_goal`; `kick` moves an instance on from a rest state
    /// (waiting with goal start, running with goal stop).
    fn change_goal(&mut self, key: &InstanceKey, goal: Goal, kick: bool) {
        let Some(inst) = self.instance(key) else { return };
        if inst.goal == goal {
            return;
        }
        let state = inst.state;
        let msg = format!(
            "{} goal changed from {} to {}",
            key.display(),
            inst.goal.name(),
            goal.name()
        );
        self.log(LogLevel::Info, msg);
        self.inst_mut(key).goal = goal;
        self.signal(BusSignal::GoalChanged(key.clone(), goal));
        // A stop while waiting for `expect` does not wait for it: the main
        // process is killed on the way through `stopping`.
        let expecting = state == State::Spawned && goal == Goal::Stop;
        if kick
            && ((state == State::Waiting && goal == Goal::Start)
                || (state == State::Running && goal == Goal::Stop)
                || expecting)
        {
            self.advance(key);
        }
    }

    /// Moves to `job_next_state`.
    fn advance(&mut self, key: &InstanceKey) {
        if let Some(next) = self.next_of(key) {
            self.change_state(key, next);
        }
    }

    /// The next state, adopting the goal that goes with it.
    fn next_of(&mut self, key: &InstanceKey) -> Option<State> {
        let inst = self.instance(key)?;
        let alive = inst.slots[0].live();
        match next_state(inst.state, inst.goal, alive) {
            Some((state, goal)) => {
                if goal != inst.goal {
                    self.change_goal(key, goal, false);
                }
                Some(state)
            }
            None => {
                let msg = format!(
                    "{}: no transition from {} with goal {}",
                    key.display(),
                    inst.state.name(),
                    inst.goal.name()
                );
                self.log(LogLevel::Error, msg);
                None
            }
        }
    }

    /// `job_change_state`: enters states until one waits for something.
    fn change_state(&mut self, key: &InstanceKey, mut target: State) {
        loop {
            let Some(inst) = self.instance(key) else { return };
            if inst.state == target {
                return;
            }
            let old = inst.state;
            let msg = format!(
                "{} state changed from {} to {}",
                key.display(),
                old.name(),
                target.name()
            );
            self.log(LogLevel::Info, msg);
            self.inst_mut(key).state = target;
            self.signal(BusSignal::StateChanged(key.clone(), target));
            let fall_through = match target {
                State::Starting => {
                    self.enter_starting(key);
                    false
                }
                State::PreStart => self.run_or_skip(key, ProcessKind::PreStart),
                State::Spawned => self.run_or_skip(key, ProcessKind::Main),
                State::PostStart => self.run_or_skip(key, ProcessKind::PostStart),
                State::Running => {
                    self.enter_running(key, old);
                    false
                }
                State::PreStop => self.run_or_skip(key, ProcessKind::PreStop),
                State::Stopping => {
                    let ev = self.emit_job_event(key, "stopping", true);
                    self.inst_mut(key).blocker = Some(ev);
                    false
                }
                State::Killed => self.enter_killed(key),
                State::PostStop => self.run_or_skip(key, ProcessKind::PostStop),
                State::Waiting => {
                    self.enter_waiting(key);
                    return;
                }
            };
            if !fall_through {
                return;
            }
            match self.next_of(key) {
                Some(next) => target = next,
                None => return,
            }
        }
    }

    /// Entering `starting`: adopt the job's current configuration and the
    /// start environment, forget the last run's failure, and emit the
    /// blocking `starting` event.
    fn enter_starting(&mut self, key: &InstanceKey) {
        let Some(class) = self.classes.get(&key.job) else {
            return;
        };
        let current = class.conf.clone();
        let generation = class.generation;
        let changed = self.instance(key).is_some_and(|i| i.generation != generation);
        // A changed job's `env` stanzas (and the global table) apply too,
        // under the request's own variables, also on respawn and
        // Instance.Restart, which keep the environment (module doc).
        let fresh = changed.then(|| self.class_environment(&current));
        let inst = self.inst_mut(key);
        inst.conf = current.clone();
        inst.generation = generation;
        let start_env = inst.start_env.take();
        if let Some(mut env) = fresh {
            for a in &inst.start_args {
                env_set(&mut env, a);
            }
            inst.env = env;
        } else if let Some(env) = start_env {
            inst.env = env;
        }
        inst.stop_env = None;
        inst.failed = false;
        inst.failed_at = None;
        inst.exit_status = 0;
        if changed {
            let old = inst.stop_on.take();
            inst.stop_on = current.stop_on().map(OperatorTree::new);
            let new = inst.stop_on.clone();
            if let Some(mut old) = old {
                self.index_tree(&key.job, Some(&old), false);
                for id in old.reset() {
                    self.unblock(id);
                }
            }
            self.index_tree(&key.job, new.as_ref(), true);
        }
        let ev = self.emit_job_event(key, "starting", true);
        self.inst_mut(key).blocker = Some(ev);
    }

    fn enter_running(&mut self, key: &InstanceKey, old: State) {
        if old == State::PreStop {
            // A start during pre-stop cancelled the stop.
            self.inst_mut(key).stop_env = None;
            self.job_finished(key, false);
        } else {
            self.emit_job_event(key, "started", false);
            if !self.instance(key).is_some_and(|i| i.conf.task()) {
                self.job_finished(key, false);
            }
        }
    }

    /// Entering `killed`: the kill signal to a live main process, SIGKILL
    /// after `kill timeout`; with no main process, straight on.
    fn enter_killed(&mut self, key: &InstanceKey) -> bool {
        let Some(inst) = self.instance(key) else {
            return false;
        };
        match inst.slots[0] {
            Slot::Alive(pid) => {
                let (signal, timeout) = (inst.conf.kill_signal(), inst.conf.kill_timeout());
                self.out.push(Effect::Kill {
                    key: key.clone(),
                    process: ProcessKind::Main,
                    pid,
                    signal,
                    tree: true,
                });
                self.arm(key, Timer::Kill, timeout.saturating_mul(SECOND));
                false
            }
            // The pid arrives with `Spawned`, which kills it then.
            Slot::Spawning => false,
            Slot::Empty => true,
        }
    }

    fn enter_waiting(&mut self, key: &InstanceKey) {
        self.emit_job_event(key, "stopped", false);
        self.job_finished(key, false);
        let Some(class) = self.classes.get_mut(&key.job) else {
            return;
        };
        let Some(mut inst) = class.instances.remove(&key.instance) else {
            return;
        };
        if let Some(tree) = inst.stop_on.as_mut() {
            let released = tree.reset();
            for id in released {
                self.unblock(id);
            }
        }
        self.index_tree(&key.job, inst.stop_on.as_ref(), false);
        for (t, timer) in inst.timers.drain(..) {
            self.timers.remove(&(t, key.clone(), timer));
        }
        // Anything still blocked on it is released (it settled).
        for b in std::mem::take(&mut inst.blocking) {
            self.release(key, b, false);
        }
        self.signal(BusSignal::InstanceRemoved(key.clone()));
        self.drop_class_if_unused(&key.job);
    }

    /// Runs the state's process if the job has one (and says to wait), or
    /// says to fall through to the next state.
    fn run_or_skip(&mut self, key: &InstanceKey, kind: ProcessKind) -> bool {
        let Some(inst) = self.instance(key) else {
            return false;
        };
        if inst.conf.process(kind).is_none() {
            return true;
        }
        self.spawn(key, kind);
        false
    }

    /// The environment of a process (spec §1.6): the instance environment,
    /// the stop environment for pre-stop and post-stop, then `UPSTART_JOB`,
    /// `UPSTART_INSTANCE` and the daemon's final variables.
    fn process_environment(&self, key: &InstanceKey, inst: &Instance, kind: ProcessKind) -> Vec<String> {
        let mut env = inst.env.clone();
        if matches!(kind, ProcessKind::PreStop | ProcessKind::PostStop)
            && let Some(stop) = &inst.stop_env
        {
            for e in stop {
                env_set(&mut env, e);
            }
        }
        env_set(&mut env, &format!("UPSTART_JOB={}", key.job));
        env_set(&mut env, &format!("UPSTART_INSTANCE={}", key.instance));
        for e in &self.config.final_env {
            env_set(&mut env, e);
        }
        env
    }

    fn spawn(&mut self, key: &InstanceKey, kind: ProcessKind) {
        let Some(inst) = self.instance(key) else { return };
        let env = self.process_environment(key, inst, kind);
        let conf = inst.conf.clone();
        let bound = if kind == ProcessKind::Main {
            (conf.expect() != Expect::None)
                .then(|| conf.expect_timeout().unwrap_or(self.config.expect_timeout))
        } else {
            Some(conf.process_timeout().unwrap_or(self.config.process_timeout))
        };
        self.inst_mut(key).slots[slot_index(kind)] = Slot::Spawning;
        if let Some(Bound::Seconds(s)) = bound {
            self.arm(key, Timer::Process(kind), s.saturating_mul(SECOND));
        }
        self.out.push(Effect::Spawn(Spawn {
            key: key.clone(),
            process: kind,
            conf,
            env,
        }));
    }

    fn spawned(&mut self, key: &InstanceKey, kind: ProcessKind, pid: Pid) {
        let Some(inst) = self.instance(key) else { return };
        if inst.slots[slot_index(kind)] != Slot::Spawning {
            return;
        }
        let (state, expect) = (inst.state, inst.conf.expect());
        self.inst_mut(key).slots[slot_index(kind)] = Slot::Alive(pid);
        self.pids.insert(pid, (key.clone(), kind));
        self.log(
            LogLevel::Debug,
            format!("{} {} process ({pid}) started", key.display(), kind.name()),
        );
        if kind == ProcessKind::Main {
            if state == State::Spawned && expect == Expect::None {
                self.advance(key);
            } else if state == State::Killed {
                self.enter_killed(key);
            }
        }
    }

    fn spawn_failed(&mut self, key: &InstanceKey, kind: ProcessKind, error: &str) {
        let Some(inst) = self.instance(key) else { return };
        if inst.slots[slot_index(kind)] != Slot::Spawning {
            return;
        }
        self.inst_mut(key).slots[slot_index(kind)] = Slot::Empty;
        self.disarm(key, Timer::Process(kind));
        self.log(
            LogLevel::Warn,
            format!(
                "{} {} process failed to start: {error}",
                key.display(),
                kind.name()
            ),
        );
        // Failing to run pre-start, main or post-stop fails the job;
        // post-start and pre-stop failures are ignored (spec §1.9).
        if matches!(
            kind,
            ProcessKind::PreStart | ProcessKind::Main | ProcessKind::PostStop
        ) {
            self.job_failed(key, FailedAt::Process(kind), -1);
            self.change_goal(key, Goal::Stop, false);
        }
        // Move on only if the state was waiting for this process (a main
        // process failing while `stopping` waits for the event instead).
        let state = self.instance(key).map(|i| i.state);
        let waited = match kind {
            ProcessKind::Main => matches!(state, Some(State::Spawned | State::Killed)),
            ProcessKind::PreStart => state == Some(State::PreStart),
            ProcessKind::PostStart => state == Some(State::PostStart),
            ProcessKind::PreStop => state == Some(State::PreStop),
            ProcessKind::PostStop => state == Some(State::PostStop),
        };
        if waited {
            self.advance(key);
        }
    }

    fn ready(&mut self, key: &InstanceKey, pid: Pid) {
        let Some(inst) = self.instance(key) else { return };
        if inst.state != State::Spawned {
            return;
        }
        self.main_pid(key, pid);
        self.disarm(key, Timer::Process(ProcessKind::Main));
        self.advance(key);
    }

    /// Switches the tracked main pid of a live main process.
    fn main_pid(&mut self, key: &InstanceKey, pid: Pid) {
        let Some(inst) = self.instance(key) else { return };
        let Slot::Alive(old) = inst.slots[0] else { return };
        if old == pid {
            return;
        }
        self.pids.remove(&old);
        self.log(
            LogLevel::Info,
            format!("{} main process is now {pid} (was {old})", key.display()),
        );
        self.inst_mut(key).slots[0] = Slot::Alive(pid);
        self.pids.insert(pid, (key.clone(), ProcessKind::Main));
    }

    fn exited(&mut self, pid: Pid, status: ExitStatus) {
        let Some((key, kind)) = self.pids.remove(&pid) else {
            return;
        };
        let Some(inst) = self.instance(&key) else { return };
        if inst.slots[slot_index(kind)] != Slot::Alive(pid) {
            return;
        }
        let expected = inst.state == State::Killed && kind == ProcessKind::Main;
        let (level, what) = match status {
            ExitStatus::Exited(0) => (LogLevel::Info, "exited normally".to_string()),
            ExitStatus::Exited(c) => (LogLevel::Warn, format!("terminated with status {c}")),
            ExitStatus::Signaled(s) => (
                if expected { LogLevel::Info } else { LogLevel::Warn },
                format!("killed by {} signal", Signal(s).to_event_value()),
            ),
        };
        self.log(
            level,
            format!("{} {} process ({pid}) {what}", key.display(), kind.name()),
        );
        self.inst_mut(&key).slots[slot_index(kind)] = Slot::Empty;
        self.disarm(&key, Timer::Process(kind));
        if kind == ProcessKind::Main {
            self.disarm(&key, Timer::Kill);
            self.main_exited(&key, status);
            return;
        }
        let failed = status != ExitStatus::Exited(0);
        let state = self.instance(&key).map(|i| i.state);
        if failed && matches!(kind, ProcessKind::PreStart | ProcessKind::PostStop) {
            self.job_failed(&key, FailedAt::Process(kind), status.packed());
            self.change_goal(&key, Goal::Stop, false);
        }
        let waiting_state = match kind {
            ProcessKind::PreStart => State::PreStart,
            ProcessKind::PostStart => State::PostStart,
            ProcessKind::PreStop => State::PreStop,
            ProcessKind::PostStop => State::PostStop,
            ProcessKind::Main => State::Spawned,
        };
        if state == Some(waiting_state) {
            self.advance(&key);
        }
    }

    /// `job_process_terminated` for the main process (spec §1.9).
    fn main_exited(&mut self, key: &InstanceKey, status: ExitStatus) {
        let Some(inst) = self.instance(key) else { return };
        match inst.state {
            State::Killed => return self.advance(key),
            // The stopping event's end will find the process gone.
            State::Stopping => return,
            _ => {}
        }
        let conf = inst.conf.clone();
        let wants_start = inst.goal != Goal::Stop;
        let packed = status.packed();
        let abnormal = status != ExitStatus::Exited(0) || (conf.respawn() && !conf.task());
        let normal = conf.normal_exit().any(|n| n.packed() == i64::from(packed));
        if wants_start && abnormal && !normal {
            if conf.respawn() && self.respawn_enabled {
                if self.runaway(key) {
                    self.log(
                        LogLevel::Warn,
                        format!("{} respawning too fast, stopped", key.display()),
                    );
                    self.job_failed(key, FailedAt::Respawn, 0);
                    self.change_goal(key, Goal::Stop, false);
                } else {
                    self.log(
                        LogLevel::Warn,
                        format!("{} main process ended, respawning", key.display()),
                    );
                    self.change_goal(key, Goal::Respawn, false);
                }
            } else {
                self.job_failed(key, FailedAt::Process(ProcessKind::Main), packed);
                self.change_goal(key, Goal::Stop, false);
            }
        } else {
            self.change_goal(key, Goal::Stop, false);
        }
        // With post-start or pre-stop still running, the state change waits
        // for that process to end.
        let Some(inst) = self.instance(key) else { return };
        let deferred = (inst.state == State::PostStart
            && inst.slots[slot_index(ProcessKind::PostStart)].live())
            || (inst.state == State::PreStop && inst.slots[slot_index(ProcessKind::PreStop)].live());
        if !deferred {
            self.advance(key);
        }
    }

    /// `job_process_catch_runaway`: more than COUNT respawns within
    /// INTERVAL seconds of the first counted one.
    fn runaway(&mut self, key: &InstanceKey) -> bool {
        let now = self.now;
        let inst = self.inst_mut(key);
        let limit = inst.conf.respawn_limit();
        if limit.is_unlimited() {
            return false;
        }
        match inst.respawn_time {
            Some(t) if now.saturating_sub(t) < limit.interval.saturating_mul(SECOND) => {
                inst.respawn_count += 1;
                inst.respawn_count > limit.count
            }
            _ => {
                inst.respawn_time = Some(now);
                inst.respawn_count = 1;
                false
            }
        }
    }

    /// `job_failed`: the first failure of a run is recorded, signalled, and
    /// releases what waits on the instance with failure.
    fn job_failed(&mut self, key: &InstanceKey, at: FailedAt, status: i32) {
        let inst = self.inst_mut(key);
        if inst.failed {
            return;
        }
        inst.failed = true;
        inst.failed_at = Some(at);
        inst.exit_status = status;
        self.signal(BusSignal::Failed(key.clone(), status));
        self.job_finished(key, true);
    }

    /// `job_finished`: releases the events and requests blocked on the
    /// instance, marking events failed when it failed.
    fn job_finished(&mut self, key: &InstanceKey, failed: bool) {
        let Some(inst) = self
            .classes
            .get_mut(&key.job)
            .and_then(|c| c.instances.get_mut(&key.instance))
        else {
            return;
        };
        for b in std::mem::take(&mut inst.blocking) {
            self.release(key, b, failed);
        }
    }

    /// Lets go of one thing blocked on the instance `key`.
    fn release(&mut self, key: &InstanceKey, b: Blocked, failed: bool) {
        match b {
            Blocked::Event(id) => {
                if failed && let Some(ev) = self.events.get_mut(&id) {
                    ev.failed = true;
                }
                self.unblock(id);
            }
            Blocked::Waiter { to, kind } => {
                let result = if failed {
                    let msg = match kind {
                        WaitKind::Start => "Job failed to start",
                        WaitKind::Stop => "Job failed while stopping",
                        WaitKind::Restart => "Job failed to restart",
                        WaitKind::Emit => "Event failed",
                    };
                    Err(EngineError::new(ErrorKind::JobFailed, msg))
                } else if matches!(kind, WaitKind::Start | WaitKind::Restart) {
                    // Job.Start and Job.Restart return the instance whether
                    // or not they wait (spec §3.3, `(as env, b wait) → (o
                    // instance)`); the Instance methods ignore it.
                    Ok(Answer::Instance(key.clone()))
                } else {
                    Ok(Answer::Done)
                };
                self.reply(to, result);
            }
            Blocked::Job(_) => {}
        }
    }

    // ------------------------------------------------------------- timers

    fn arm(&mut self, key: &InstanceKey, timer: Timer, after: Time) {
        self.disarm(key, timer);
        let at = self.now.saturating_add(after);
        self.timers.insert((at, key.clone(), timer));
        self.inst_mut(key).timers.push((at, timer));
    }

    fn disarm(&mut self, key: &InstanceKey, timer: Timer) {
        let Some(inst) = self
            .classes
            .get_mut(&key.job)
            .and_then(|c| c.instances.get_mut(&key.instance))
        else {
            return;
        };
        let mut gone = Vec::new();
        inst.timers.retain(|&(at, t)| {
            if t == timer {
                gone.push(at);
                false
            } else {
                true
            }
        });
        for at in gone {
            self.timers.remove(&(at, key.clone(), timer));
        }
    }

    fn fire_timers(&mut self) {
        while let Some((at, key, timer)) = self.timers.first().cloned() {
            if at > self.now {
                break;
            }
            self.disarm(&key, timer);
            self.timer_fired(&key, timer);
        }
    }

    fn timer_fired(&mut self, key: &InstanceKey, timer: Timer) {
        let Some(inst) = self.instance(key) else { return };
        match timer {
            Timer::Kill => {
                if let (State::Killed, Some(pid)) = (inst.state, inst.pid(ProcessKind::Main)) {
                    let secs = inst.conf.kill_timeout();
                    self.log(
                        LogLevel::Warn,
                        format!(
                            "{} main process ({pid}) still alive after {secs} s; sending SIGKILL",
                            key.display()
                        ),
                    );
                    self.out.push(Effect::Kill {
                        key: key.clone(),
                        process: ProcessKind::Main,
                        pid,
                        signal: Signal::KILL,
                        tree: true,
                    });
                }
            }
            Timer::Process(ProcessKind::Main) => {
                if inst.state != State::Spawned {
                    return;
                }
                let expect = inst.conf.expect().name();
                let pid = inst
                    .pid(ProcessKind::Main)
                    .map_or("?".to_string(), |p| p.to_string());
                self.log(
                    LogLevel::Error,
                    format!(
                        "{} main process ({pid}) did not reach `expect {expect}` in time; stopping the job",
                        key.display()
                    ),
                );
                self.job_failed(key, FailedAt::Process(ProcessKind::Main), -1);
                self.change_goal(key, Goal::Stop, false);
                self.advance(key);
            }
            Timer::Process(kind) => {
                let Some(pid) = inst.pid(kind) else { return };
                self.log(
                    LogLevel::Error,
                    format!(
                        "{} {} process ({pid}) did not finish in time; killing it",
                        key.display(),
                        kind.name()
                    ),
                );
                self.job_failed(key, FailedAt::Process(kind), Signal::KILL.number() << 8);
                if matches!(kind, ProcessKind::PreStart | ProcessKind::PostStart) {
                    self.change_goal(key, Goal::Stop, false);
                }
                self.out.push(Effect::Kill {
                    key: key.clone(),
                    process: kind,
                    pid,
                    signal: Signal::KILL,
                    tree: true,
                });
            }
        }
    }

    // ------------------------------------------------------------- events

    fn queue_event(&mut self, name: String, env: Vec<String>) -> EventId {
        let id = EventId(self.next_event);
        self.next_event += 1;
        self.events.insert(
            id,
            Event {
                name,
                env,
                progress: Progress::Pending,
                blockers: 0,
                failed: false,
                blocking: Vec::new(),
            },
        );
        self.pending.push_back(id);
        id
    }

    fn emit(&mut self, name: String, env: Vec<String>, by: Option<Request>) {
        if name.is_empty() {
            let e = EngineError::new(ErrorKind::InvalidArgs, "Name may not be empty string");
            return self.answer_now(by, Err(e));
        }
        if let Err(e) = Self::check_env(&env) {
            return self.answer_now(by, Err(e));
        }
        let id = self.queue_event(name, env);
        match by {
            Some(by) if by.wait => {
                if let Some(ev) = self.events.get_mut(&id) {
                    ev.blocking.push(Blocked::Waiter {
                        to: by.reply,
                        kind: WaitKind::Emit,
                    });
                }
            }
            Some(by) => self.reply(by.reply, Ok(Answer::Done)),
            None => {}
        }
    }

    /// `job_emit_event`: the job's `starting`/`started`/`stopping`/`stopped`
    /// event with `JOB`, `INSTANCE`, the result for the stop events, and the
    /// exported variables.
    fn emit_job_event(&mut self, key: &InstanceKey, name: &str, block: bool) -> EventId {
        let mut env = vec![format!("JOB={}", key.job), format!("INSTANCE={}", key.instance)];
        if let Some(inst) = self.instance(key) {
            if name == "stopping" || name == "stopped" {
                env.push(format!("RESULT={}", if inst.failed { "failed" } else { "ok" }));
                if inst.failed {
                    match inst.failed_at {
                        Some(FailedAt::Process(p)) => {
                            env.push(format!("PROCESS={}", p.name()));
                            if inst.exit_status >= 0 {
                                if inst.exit_status & !0xff != 0 {
                                    env.push(format!(
                                        "EXIT_SIGNAL={}",
                                        Signal(inst.exit_status >> 8).to_event_value()
                                    ));
                                } else {
                                    env.push(format!("EXIT_STATUS={}", inst.exit_status));
                                }
                            }
                        }
                        Some(FailedAt::Respawn) => env.push("PROCESS=respawn".into()),
                        None => {}
                    }
                }
            }
            for var in inst.conf.export() {
                if let Some(v) = env_get(&inst.env, var) {
                    env.push(format!("{var}={v}"));
                }
            }
        }
        let id = self.queue_event(name.to_string(), env);
        if block && let Some(ev) = self.events.get_mut(&id) {
            ev.blocking.push(Blocked::Job(key.clone()));
        }
        id
    }

    fn block(&mut self, id: EventId) {
        if let Some(ev) = self.events.get_mut(&id) {
            ev.blockers += 1;
        }
    }

    fn unblock(&mut self, id: EventId) {
        if let Some(ev) = self.events.get_mut(&id) {
            ev.blockers = ev.blockers.saturating_sub(1);
            if ev.blockers == 0 && ev.progress == Progress::Handling {
                self.finishable.insert(id);
            }
        }
    }

    /// `event_poll`: handle pending events in order (finishing each at once
    /// when nothing holds it), then finish the events released meanwhile,
    /// until nothing moves.
    fn poll(&mut self) {
        loop {
            if let Some(id) = self.pending.pop_front() {
                self.handle_event(id);
                if self.events.get(&id).is_some_and(|e| e.blockers == 0) {
                    self.finishable.remove(&id);
                    self.finish_event(id);
                }
            } else if let Some(id) = self.finishable.pop_first() {
                if self
                    .events
                    .get(&id)
                    .is_some_and(|e| e.blockers == 0 && e.progress == Progress::Handling)
                {
                    self.finish_event(id);
                }
            } else {
                break;
            }
        }
    }

    /// `event_pending_handle_jobs`: for each job that mentions the event,
    /// first the instances' `stop on`, then the job's `start on` (so an
    /// event in both restarts a running job).
    fn handle_event(&mut self, id: EventId) {
        let Some(ev) = self.events.get_mut(&id) else {
            return;
        };
        ev.progress = Progress::Handling;
        // Classes with a match on the name alone, and those whose match also
        // names the event's first value (`started foo` for `JOB=foo`).
        let plain = self.index.get(&index_key(&ev.name, None));
        let first = ev
            .env
            .first()
            .map(|e| e.split_once('=').map_or(e.as_str(), |(_, v)| v));
        let refined = first.and_then(|v| self.index.get(&index_key(&ev.name, Some(v))));
        if plain.is_none() && refined.is_none() {
            return;
        }
        let mut classes: Vec<Arc<str>> = plain
            .into_iter()
            .chain(refined)
            .flat_map(|m| m.classes().cloned())
            .collect();
        classes.sort();
        classes.dedup();
        let (name, env) = (ev.name.clone(), ev.env.clone());
        self.log(LogLevel::Debug, format!("Handling {name} event"));
        for job in classes {
            self.offer_stop(&job, id, &name, &env);
            self.offer_start(&job, id, &name, &env);
        }
    }

    fn offer_stop(&mut self, job: &str, id: EventId, name: &str, env: &[String]) {
        let Some(class) = self.classes.get_mut(job) else {
            return;
        };
        let mut matched = Vec::new();
        let mut taken = 0;
        for (inst_name, inst) in class.instances.iter_mut() {
            let Some(tree) = inst.stop_on.as_mut() else {
                continue;
            };
            taken += tree.handle(id, name, env, &inst.env);
            if tree.value() {
                matched.push(inst_name.clone());
            }
        }
        for _ in 0..taken {
            self.block(id);
        }
        for inst_name in matched {
            let key = InstanceKey::new(job, inst_name);
            let inst = self.inst_mut(&key);
            let goal = inst.goal;
            let Some(tree) = inst.stop_on.as_mut() else {
                continue;
            };
            let events = tree.true_events();
            let released = tree.reset();
            if goal != Goal::Stop {
                let stop_env = self.events_environment(&events, "UPSTART_STOP_EVENTS");
                self.inst_mut(&key).stop_env = Some(stop_env);
                self.job_finished(&key, false);
                for e in &events {
                    self.block(*e);
                    self.inst_mut(&key).blocking.push(Blocked::Event(*e));
                }
                self.change_goal(&key, Goal::Stop, true);
            }
            for e in released {
                self.unblock(e);
            }
        }
    }

    fn offer_start(&mut self, job: &str, id: EventId, name: &str, env: &[String]) {
        let Some(class) = self.classes.get_mut(job) else {
            return;
        };
        let Some(tree) = class.start_on.as_mut() else {
            return;
        };
        let taken = tree.handle(id, name, env, &jobconf_parser::expand::EmptyEnv);
        let fired = tree.value();
        let (events, released) = if fired {
            (tree.true_events(), tree.reset())
        } else {
            (Vec::new(), Vec::new())
        };
        let conf = class.conf.clone();
        for _ in 0..taken {
            self.block(id);
        }
        if !fired {
            return;
        }
        let mut start_env = self.class_environment(&conf);
        let start_args = self.events_environment(&events, "UPSTART_EVENTS");
        for e in &start_args {
            env_set(&mut start_env, e);
        }
        match expand(conf.instance(), &start_env) {
            Err(e) => self.log(LogLevel::Warn, format!("Failed to obtain {job} instance: {e}")),
            Ok(inst_name) => {
                let key = InstanceKey::new(job, inst_name);
                if self.instance(&key).is_none() {
                    self.new_instance(&key);
                }
                if self.instance(&key).is_some_and(|i| i.goal == Goal::Stop) {
                    let inst = self.inst_mut(&key);
                    inst.start_env = Some(start_env);
                    inst.start_args = start_args;
                    self.job_finished(&key, false);
                    for e in &events {
                        self.block(*e);
                        self.inst_mut(&key).blocking.push(Blocked::Event(*e));
                    }
                    self.change_goal(&key, Goal::Start, true);
                }
            }
        }
        for e in released {
            self.unblock(e);
        }
    }

    /// `event_operator_environment`: the variables of the events, in order,
    /// later ones replacing earlier, then `VAR=NAME NAME…`.
    fn events_environment(&self, events: &[EventId], var: &str) -> Vec<String> {
        let mut env = Vec::new();
        let mut names = Vec::new();
        for id in events {
            if let Some(ev) = self.events.get(id) {
                for e in &ev.env {
                    env_set(&mut env, e);
                }
                names.push(ev.name.as_str());
            }
        }
        env.push(format!("{var}={}", names.join(" ")));
        env
    }

    /// `event_finished`: moves on the jobs waiting for it, answers emitters,
    /// queues `NAME/failed` if a job it started or stopped failed, and
    /// announces it.
    fn finish_event(&mut self, id: EventId) {
        let Some(ev) = self.events.remove(&id) else { return };
        self.log(LogLevel::Debug, format!("Finished {} event", ev.name));
        for b in ev.blocking {
            match b {
                Blocked::Job(key) => {
                    if self.instance(&key).is_some_and(|i| i.blocker == Some(id)) {
                        self.inst_mut(&key).blocker = None;
                        self.advance(&key);
                    }
                }
                Blocked::Waiter { to, .. } => {
                    let r = if ev.failed {
                        Err(EngineError::new(ErrorKind::EventFailed, "Event failed"))
                    } else {
                        Ok(Answer::Done)
                    };
                    self.reply(to, r);
                }
                Blocked::Event(_) => {}
            }
        }
        if ev.failed && !ev.name.ends_with("/failed") {
            self.queue_event(format!("{}/failed", ev.name), ev.env.clone());
        }
        self.signal(BusSignal::EventEmitted {
            name: ev.name,
            env: ev.env,
        });
    }
}

impl Instance {
    fn new(conf: Arc<JobConf>, generation: u64) -> Instance {
        Instance {
            conf,
            generation,
            goal: Goal::Stop,
            state: State::Waiting,
            env: Vec::new(),
            start_env: None,
            start_args: Vec::new(),
            stop_env: None,
            stop_on: None,
            slots: [Slot::Empty; 5],
            blocker: None,
            blocking: Vec::new(),
            failed: false,
            failed_at: None,
            exit_status: 0,
            respawn_count: 0,
            respawn_time: None,
            timers: Vec::new(),
        }
    }
}

//! The typed job definition that a job file parses into (spec §1.4).
//!
//! Every setting holds the value Upstart 1.13.2 would hold after parsing,
//! with Upstart's defaults. Two settings whose default depends on how the
//! daemon runs (`console`, `umask`) are `Option`s: `None` means "the stanza
//! was not given", and [`JobConf::console_or`] / [`JobConf::umask_or`]
//! resolve them.
//!
//! A job comes in two forms:
//! - [`JobConf`], what parsing gives and what the daemon keeps for every job
//!   class: scalar settings are public fields; strings, lists, processes and
//!   event expressions are stored compactly, only when given, and read
//!   through methods named after the stanza (`conf.chroot()`,
//!   `conf.env()`, `conf.process(kind)`). A session init keeps one per job
//!   file for as long as it runs, so its size matters (a few hundred bytes
//!   against well over a kilobyte as a plain struct).
//! - [`JobFields`], every setting as a plain public field: the form to build
//!   or inspect a whole job in (tests, the dump and the rendering), and the
//!   serde form of both. [`JobConf::fields`] and `JobConf::from` convert.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::expr::EventExpr;
use crate::packed::PackedExpr;
use crate::signal::Signal;

/// One parsed job file (plus its `.override`, if any), stored compactly;
/// see the module documentation. Serialises as its [`JobFields`].
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "JobFields", into = "JobFields")]
pub struct JobConf {
    /// `task`.
    pub task: bool,
    /// `respawn`.
    pub respawn: bool,
    /// `debug`.
    pub debug: bool,
    /// `expect stop|daemon|fork|none`; default none.
    pub expect: Expect,
    /// `console none|log|output|owner`; `None` when not given.
    pub console: Option<Console>,
    /// `kill signal SIGNAL`; default SIGTERM.
    pub kill_signal: Signal,
    /// `reload signal SIGNAL`; default SIGHUP.
    pub reload_signal: Signal,
    /// `umask OCTAL`; `None` when not given.
    pub umask: Option<u32>,
    /// `nice N` (-20…19); `None` inherits.
    pub nice: Option<i32>,
    /// `oom score N|never` as an oom_score_adj value; `None` leaves the
    /// kernel default.
    pub oom_score: Option<i32>,
    /// `kill timeout SECONDS`; default 5.
    pub kill_timeout: u64,
    /// `respawn limit COUNT INTERVAL`; default 10 in 5 s.
    pub respawn_limit: RespawnLimit,
    /// `process timeout SECONDS|unlimited` (upshot); `None` takes the
    /// daemon's default.
    pub process_timeout: Option<Bound>,
    /// `expect timeout SECONDS|unlimited` (upshot); `None` takes the
    /// daemon's default.
    pub expect_timeout: Option<Bound>,
    /// The processes given, in [`ProcessKind::ALL`] order.
    processes: Box<[(ProcessKind, Process)]>,
    /// Packed, and shared with the engine's matching state.
    start_on: Option<PackedExpr>,
    stop_on: Option<PackedExpr>,
    /// The other settings that were given (not empty, not absent), in
    /// [`Item`] declaration order.
    items: Box<[Item]>,
}

/// A setting of a [`JobConf`] kept only when given. Every variant holds one
/// boxed string or slice (16 bytes), so an item takes 24.
#[derive(Clone, PartialEq, Eq)]
enum Item {
    Description(Box<str>),
    Author(Box<str>),
    Version(Box<str>),
    Usage(Box<str>),
    Instance(Box<str>),
    Emits(Box<[String]>),
    Env(Box<[String]>),
    Export(Box<[String]>),
    NormalExit(Box<[NormalExit]>),
    Limits(Box<[Limit]>),
    Chroot(Box<str>),
    Chdir(Box<str>),
    Setuid(Box<str>),
    Setgid(Box<str>),
    ApparmorLoad(Box<str>),
    ApparmorSwitch(Box<str>),
    Cgroups(Box<[Cgroup]>),
}

/// Accessors for the optional strings kept as items.
macro_rules! str_items {
    ($($(#[$doc:meta])* $name:ident => $variant:ident;)*) => {$(
        $(#[$doc])*
        pub fn $name(&self) -> Option<&str> {
            self.items.iter().find_map(|i| match i {
                Item::$variant(s) => Some(&**s),
                _ => None,
            })
        }
    )*};
}

/// Accessors for the lists kept as items (empty when not given).
macro_rules! list_items {
    ($($(#[$doc:meta])* $name:ident: $ty:ty => $variant:ident;)*) => {$(
        $(#[$doc])*
        pub fn $name(&self) -> &[$ty] {
            self.items
                .iter()
                .find_map(|i| match i {
                    Item::$variant(v) => Some(&**v),
                    _ => None,
                })
                .unwrap_or(&[])
        }
    )*};
}

impl JobConf {
    str_items! {
        /// `description "TEXT"`.
        description => Description;
        /// `author "TEXT"`.
        author => Author;
        /// `version "TEXT"`.
        version => Version;
        /// `usage "TEXT"`, shown by `initctl usage`.
        usage => Usage;
        /// `chroot DIR`.
        chroot => Chroot;
        /// `chdir DIR`.
        chdir => Chdir;
        /// `setuid USER`.
        setuid => Setuid;
        /// `setgid GROUP`.
        setgid => Setgid;
        /// `apparmor load PROFILE`.
        apparmor_load => ApparmorLoad;
        /// `apparmor switch NAME`.
        apparmor_switch => ApparmorSwitch;
    }

    list_items! {
        /// `emits EVENT…` (accumulates).
        emits: String => Emits;
        /// `env KEY[=VALUE]` entries in file order (not expanded).
        env: String => Env;
        /// `export KEY…` (accumulates).
        export: String => Export;
        /// `normal exit STATUS|SIGNAL…` (accumulates).
        normal_exit: NormalExit => NormalExit;
        /// `limit RESOURCE SOFT HARD`, sorted by resource.
        limits: Limit => Limits;
        /// `cgroup CONTROLLER [NAME] [KEY VALUE]`, merged by controller and
        /// name in first-seen order.
        cgroups: Cgroup => Cgroups;
    }

    /// `instance NAME`: the unexpanded instance-name pattern; empty for a
    /// single-instance job.
    pub fn instance(&self) -> &str {
        self.items
            .iter()
            .find_map(|i| match i {
                Item::Instance(s) => Some(&**s),
                _ => None,
            })
            .unwrap_or("")
    }

    /// `start on EXPR`; `None` means the job is only started by hand.
    /// (Cloning the expression shares it; [`PackedExpr::unpack`] gives the
    /// tree.)
    pub fn start_on(&self) -> Option<&PackedExpr> {
        self.start_on.as_ref()
    }

    /// `stop on EXPR`.
    pub fn stop_on(&self) -> Option<&PackedExpr> {
        self.stop_on.as_ref()
    }

    /// The process of `kind` (`exec`/`script`, `pre-start exec`, …), if
    /// given.
    pub fn process(&self, kind: ProcessKind) -> Option<&Process> {
        self.processes.iter().find(|(k, _)| *k == kind).map(|(_, p)| p)
    }

    /// The processes given, in [`ProcessKind::ALL`] order.
    pub fn processes(&self) -> impl Iterator<Item = (ProcessKind, &Process)> {
        self.processes.iter().map(|(k, p)| (*k, p))
    }

    /// The console type in effect, given the daemon's default.
    pub fn console_or(&self, default: Console) -> Console {
        self.console.unwrap_or(default)
    }

    /// The umask in effect, given the daemon's default.
    pub fn umask_or(&self, default: u32) -> u32 {
        self.umask.unwrap_or(default)
    }

    /// The limit set for `resource`, if any.
    pub fn limit(&self, resource: Resource) -> Option<&Limit> {
        self.limits().iter().find(|l| l.resource == resource)
    }

    /// Every setting as a plain struct.
    pub fn fields(&self) -> JobFields {
        self.clone().into()
    }

    /// Changes settings through the plain form (`conf.edit(|c| c.chroot =
    /// Some(dir))`), then stores the result compactly again.
    pub fn edit(&mut self, f: impl FnOnce(&mut JobFields)) {
        let mut fields = std::mem::take(self).into();
        f(&mut fields);
        *self = fields.into();
    }
}

impl Default for JobConf {
    /// A job with no stanzas, with Upstart's defaults.
    fn default() -> Self {
        JobFields::default().into()
    }
}

impl fmt::Debug for JobConf {
    /// As its [`JobFields`]: every setting by name.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.fields().fmt(f)
    }
}

/// A string without spare capacity.
fn boxed(s: String) -> Box<str> {
    s.into_boxed_str()
}

/// Strings without spare capacity, in a slice without any either.
fn strings(v: Vec<String>) -> Box<[String]> {
    v.into_iter()
        .map(|mut s| {
            s.shrink_to_fit();
            s
        })
        .collect()
}

fn process(mut p: Process) -> Process {
    p.command.shrink_to_fit();
    p
}

fn expr(e: EventExpr) -> PackedExpr {
    PackedExpr::new(&e)
}

impl From<JobFields> for JobConf {
    /// The compact form, with no spare capacity anywhere.
    fn from(f: JobFields) -> JobConf {
        let mut items = Vec::new();
        let mut text = |s: Option<String>, item: fn(Box<str>) -> Item| {
            if let Some(s) = s {
                items.push(item(boxed(s)));
            }
        };
        text(f.description, Item::Description);
        text(f.author, Item::Author);
        text(f.version, Item::Version);
        text(f.usage, Item::Usage);
        text((!f.instance.is_empty()).then_some(f.instance), Item::Instance);
        let mut list = |v: Vec<String>, item: fn(Box<[String]>) -> Item| {
            if !v.is_empty() {
                items.push(item(strings(v)));
            }
        };
        list(f.emits, Item::Emits);
        list(f.env, Item::Env);
        list(f.export, Item::Export);
        if !f.normal_exit.is_empty() {
            items.push(Item::NormalExit(f.normal_exit.into_boxed_slice()));
        }
        if !f.limits.is_empty() {
            items.push(Item::Limits(f.limits.into_boxed_slice()));
        }
        let mut text = |s: Option<String>, item: fn(Box<str>) -> Item| {
            if let Some(s) = s {
                items.push(item(boxed(s)));
            }
        };
        text(f.chroot, Item::Chroot);
        text(f.chdir, Item::Chdir);
        text(f.setuid, Item::Setuid);
        text(f.setgid, Item::Setgid);
        text(f.apparmor_load, Item::ApparmorLoad);
        text(f.apparmor_switch, Item::ApparmorSwitch);
        if !f.cgroups.is_empty() {
            let cgroups = f.cgroups.into_iter().map(Cgroup::shrunk).collect();
            items.push(Item::Cgroups(cgroups));
        }
        let Processes {
            main,
            pre_start,
            post_start,
            pre_stop,
            post_stop,
        } = f.process;
        let processes = ProcessKind::ALL
            .into_iter()
            .zip([main, pre_start, post_start, pre_stop, post_stop])
            .filter_map(|(k, p)| Some((k, process(p?))))
            .collect();
        JobConf {
            task: f.task,
            respawn: f.respawn,
            debug: f.debug,
            expect: f.expect,
            console: f.console,
            kill_signal: f.kill_signal,
            reload_signal: f.reload_signal,
            umask: f.umask,
            nice: f.nice,
            oom_score: f.oom_score,
            kill_timeout: f.kill_timeout,
            respawn_limit: f.respawn_limit,
            process_timeout: f.process_timeout,
            expect_timeout: f.expect_timeout,
            processes,
            start_on: f.start_on.map(expr),
            stop_on: f.stop_on.map(expr),
            items: items.into_boxed_slice(),
        }
    }
}

impl From<JobConf> for JobFields {
    fn from(c: JobConf) -> JobFields {
        let mut f = JobFields {
            task: c.task,
            respawn: c.respawn,
            debug: c.debug,
            expect: c.expect,
            console: c.console,
            kill_signal: c.kill_signal,
            reload_signal: c.reload_signal,
            umask: c.umask,
            nice: c.nice,
            oom_score: c.oom_score,
            kill_timeout: c.kill_timeout,
            respawn_limit: c.respawn_limit,
            process_timeout: c.process_timeout,
            expect_timeout: c.expect_timeout,
            start_on: c.start_on.map(|e| e.unpack()),
            stop_on: c.stop_on.map(|e| e.unpack()),
            ..JobFields::default()
        };
        for (kind, p) in c.processes {
            *f.process.slot(kind) = Some(p);
        }
        for item in c.items {
            match item {
                Item::Description(s) => f.description = Some(s.into()),
                Item::Author(s) => f.author = Some(s.into()),
                Item::Version(s) => f.version = Some(s.into()),
                Item::Usage(s) => f.usage = Some(s.into()),
                Item::Instance(s) => f.instance = s.into(),
                Item::Emits(v) => f.emits = v.into(),
                Item::Env(v) => f.env = v.into(),
                Item::Export(v) => f.export = v.into(),
                Item::NormalExit(v) => f.normal_exit = v.into(),
                Item::Limits(v) => f.limits = v.into(),
                Item::Chroot(s) => f.chroot = Some(s.into()),
                Item::Chdir(s) => f.chdir = Some(s.into()),
                Item::Setuid(s) => f.setuid = Some(s.into()),
                Item::Setgid(s) => f.setgid = Some(s.into()),
                Item::ApparmorLoad(s) => f.apparmor_load = Some(s.into()),
                Item::ApparmorSwitch(s) => f.apparmor_switch = Some(s.into()),
                Item::Cgroups(v) => f.cgroups = v.into(),
            }
        }
        f
    }
}

/// Every setting of a job as a plain public field: the form to build or
/// inspect a whole job in, and the serde form of [`JobConf`] (module
/// documentation).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobFields {
    /// `description "TEXT"`.
    pub description: Option<String>,
    /// `author "TEXT"`.
    pub author: Option<String>,
    /// `version "TEXT"`.
    pub version: Option<String>,
    /// `usage "TEXT"`, shown by `initctl usage`.
    pub usage: Option<String>,
    /// `instance NAME`: the unexpanded instance-name pattern; empty for a
    /// single-instance job.
    pub instance: String,
    /// `start on EXPR`; `None` means the job is only started by hand.
    pub start_on: Option<EventExpr>,
    /// `stop on EXPR`.
    pub stop_on: Option<EventExpr>,
    /// `emits EVENT…` (accumulates).
    pub emits: Vec<String>,
    /// `env KEY[=VALUE]` entries in file order (accumulates; not expanded).
    pub env: Vec<String>,
    /// `export KEY…` (accumulates).
    pub export: Vec<String>,
    /// The five processes (`exec`/`script`, `pre-start`, …).
    pub process: Processes,
    /// `task`.
    pub task: bool,
    /// `respawn`.
    pub respawn: bool,
    /// `respawn limit COUNT INTERVAL`; default 10 in 5 s.
    pub respawn_limit: RespawnLimit,
    /// `normal exit STATUS|SIGNAL…` (accumulates).
    pub normal_exit: Vec<NormalExit>,
    /// `kill timeout SECONDS`; default 5.
    pub kill_timeout: u64,
    /// `kill signal SIGNAL`; default SIGTERM.
    pub kill_signal: Signal,
    /// `reload signal SIGNAL`; default SIGHUP.
    pub reload_signal: Signal,
    /// `expect stop|daemon|fork|none`; default none.
    pub expect: Expect,
    /// `console none|log|output|owner`; `None` when not given (the daemon's
    /// default applies, `log` unless `--default-console` says otherwise).
    pub console: Option<Console>,
    /// `umask OCTAL`; `None` when not given (022 for the system, inherited
    /// by a session init).
    pub umask: Option<u32>,
    /// `nice N` (-20…19); `None` inherits.
    pub nice: Option<i32>,
    /// `oom score N|never` or legacy `oom ADJ|never`, as an oom_score_adj
    /// value (-1000…1000); `None` leaves the kernel default.
    pub oom_score: Option<i32>,
    /// `limit RESOURCE SOFT HARD` (different resources accumulate; the same
    /// resource given twice: last wins). Kept sorted by resource.
    pub limits: Vec<Limit>,
    /// `chroot DIR`.
    pub chroot: Option<String>,
    /// `chdir DIR`.
    pub chdir: Option<String>,
    /// `setuid USER`.
    pub setuid: Option<String>,
    /// `setgid GROUP`.
    pub setgid: Option<String>,
    /// `apparmor load PROFILE`.
    pub apparmor_load: Option<String>,
    /// `apparmor switch NAME`.
    pub apparmor_switch: Option<String>,
    /// `cgroup CONTROLLER [NAME] [KEY VALUE]` (accumulates, merged by
    /// controller and name in first-seen order).
    pub cgroups: Vec<Cgroup>,
    /// `debug`.
    pub debug: bool,
    /// `process timeout SECONDS|unlimited` (upshot): how long each of
    /// pre-start, post-start, pre-stop and post-stop may run before it is
    /// killed and the job fails; `None` takes the daemon's default.
    pub process_timeout: Option<Bound>,
    /// `expect timeout SECONDS|unlimited` (upshot): how long the main process
    /// may take to reach what `expect` declares; `None` takes the daemon's
    /// default.
    pub expect_timeout: Option<Bound>,
}

/// A time bound of upshot's own stanzas.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Bound {
    Seconds(u64),
    Unlimited,
}

/// `kill timeout` when the job gives none.
pub const DEFAULT_KILL_TIMEOUT: u64 = 5;

impl Default for JobFields {
    /// A job with no stanzas, with Upstart's defaults.
    fn default() -> Self {
        JobFields {
            description: None,
            author: None,
            version: None,
            usage: None,
            instance: String::new(),
            start_on: None,
            stop_on: None,
            emits: Vec::new(),
            env: Vec::new(),
            export: Vec::new(),
            process: Processes::default(),
            task: false,
            respawn: false,
            respawn_limit: RespawnLimit::default(),
            normal_exit: Vec::new(),
            kill_timeout: DEFAULT_KILL_TIMEOUT,
            kill_signal: Signal::TERM,
            reload_signal: Signal::HUP,
            expect: Expect::None,
            console: None,
            umask: None,
            nice: None,
            oom_score: None,
            limits: Vec::new(),
            chroot: None,
            chdir: None,
            setuid: None,
            setgid: None,
            apparmor_load: None,
            apparmor_switch: None,
            cgroups: Vec::new(),
            debug: false,
            process_timeout: None,
            expect_timeout: None,
        }
    }
}

impl JobFields {
    /// The console type in effect, given the daemon's default.
    pub fn console_or(&self, default: Console) -> Console {
        self.console.unwrap_or(default)
    }

    /// The umask in effect, given the daemon's default.
    pub fn umask_or(&self, default: u32) -> u32 {
        self.umask.unwrap_or(default)
    }

    /// The limit set for `resource`, if any.
    pub fn limit(&self, resource: Resource) -> Option<&Limit> {
        self.limits.iter().find(|l| l.resource == resource)
    }

    pub(crate) fn set_limit(&mut self, limit: Limit) {
        match self.limits.binary_search_by(|l| l.resource.cmp(&limit.resource)) {
            Ok(i) => self.limits[i] = limit,
            Err(i) => self.limits.insert(i, limit),
        }
    }

    pub(crate) fn add_cgroup(&mut self, controller: String, name: String, setting: Option<(String, String)>) {
        let idx = match self
            .cgroups
            .iter()
            .position(|c| c.controller == controller && c.name == name)
        {
            Some(i) => i,
            None => {
                self.cgroups.push(Cgroup {
                    controller,
                    name,
                    settings: Vec::new(),
                });
                self.cgroups.len() - 1
            }
        };
        if let Some(kv) = setting {
            self.cgroups[idx].settings.push(kv);
        }
    }
}

impl Default for RespawnLimit {
    fn default() -> Self {
        RespawnLimit {
            count: 10,
            interval: 5,
        }
    }
}

/// `respawn limit COUNT INTERVAL`: more than `count` respawns within
/// `interval` seconds stop the job. Either value 0 means unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RespawnLimit {
    pub count: u64,
    pub interval: u64,
}

impl RespawnLimit {
    /// True when respawning is not rate limited (`unlimited`, or a zero).
    pub fn is_unlimited(&self) -> bool {
        self.count == 0 || self.interval == 0
    }
}

/// The five process slots of a job, in Upstart's index order after `main`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Processes {
    pub main: Option<Process>,
    pub pre_start: Option<Process>,
    pub post_start: Option<Process>,
    pub pre_stop: Option<Process>,
    pub post_stop: Option<Process>,
}

impl Processes {
    /// The slot for `kind`.
    pub fn get(&self, kind: ProcessKind) -> Option<&Process> {
        match kind {
            ProcessKind::Main => self.main.as_ref(),
            ProcessKind::PreStart => self.pre_start.as_ref(),
            ProcessKind::PostStart => self.post_start.as_ref(),
            ProcessKind::PreStop => self.pre_stop.as_ref(),
            ProcessKind::PostStop => self.post_stop.as_ref(),
        }
    }

    pub(crate) fn slot(&mut self, kind: ProcessKind) -> &mut Option<Process> {
        match kind {
            ProcessKind::Main => &mut self.main,
            ProcessKind::PreStart => &mut self.pre_start,
            ProcessKind::PostStart => &mut self.post_start,
            ProcessKind::PreStop => &mut self.pre_stop,
            ProcessKind::PostStop => &mut self.post_stop,
        }
    }
}

/// Which of a job's processes (spec §1.8, `process_name`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProcessKind {
    Main,
    PreStart,
    PostStart,
    PreStop,
    PostStop,
}

impl ProcessKind {
    /// All kinds in Upstart's index order.
    pub const ALL: [ProcessKind; 5] = [
        ProcessKind::Main,
        ProcessKind::PreStart,
        ProcessKind::PostStart,
        ProcessKind::PreStop,
        ProcessKind::PostStop,
    ];

    /// Upstart's name for the process (`main`, `pre-start`, …).
    pub fn name(self) -> &'static str {
        match self {
            ProcessKind::Main => "main",
            ProcessKind::PreStart => "pre-start",
            ProcessKind::PostStart => "post-start",
            ProcessKind::PreStop => "pre-stop",
            ProcessKind::PostStop => "post-stop",
        }
    }
}

/// A process: either a command line (`exec`) or a shell script (`script`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Process {
    /// `exec` text exactly as Upstart keeps it (quotes and backslashes kept,
    /// continuations collapsed), or the script block text.
    pub command: String,
    /// True for a `script … end script` block.
    pub script: bool,
}

/// An entry of `normal exit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NormalExit {
    /// An exit status (0…INT_MAX; no 255 cap, as in Upstart).
    Status(u32),
    /// Death by this signal.
    Signal(Signal),
}

impl NormalExit {
    /// Upstart's packed form: the status, or the signal number shifted left
    /// by 8 (`normalexit[]` in `job_class.c`).
    pub fn packed(self) -> i64 {
        match self {
            NormalExit::Status(s) => i64::from(s),
            NormalExit::Signal(sig) => i64::from(sig.number()) << 8,
        }
    }
}

/// `expect` (spec §1.8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Expect {
    #[default]
    None,
    Stop,
    Daemon,
    Fork,
}

impl Expect {
    pub fn name(self) -> &'static str {
        match self {
            Expect::None => "none",
            Expect::Stop => "stop",
            Expect::Daemon => "daemon",
            Expect::Fork => "fork",
        }
    }
}

/// `console` (spec §1.8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Console {
    None,
    Output,
    Owner,
    #[default]
    Log,
}

impl Console {
    pub fn name(self) -> &'static str {
        match self {
            Console::None => "none",
            Console::Output => "output",
            Console::Owner => "owner",
            Console::Log => "log",
        }
    }

    /// Parses a console type name as Upstart's `job_class_console_type`.
    pub fn from_name(name: &str) -> Option<Console> {
        Some(match name {
            "none" => Console::None,
            "output" => Console::Output,
            "owner" => Console::Owner,
            "log" => Console::Log,
            _ => return None,
        })
    }
}

/// A resource of `limit` (the `RLIMIT_*` constants).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Resource {
    As,
    Core,
    Cpu,
    Data,
    Fsize,
    Memlock,
    Msgqueue,
    Nice,
    Nofile,
    Nproc,
    Rss,
    Rtprio,
    Sigpending,
    Stack,
}

impl Resource {
    pub const ALL: [Resource; 14] = [
        Resource::As,
        Resource::Core,
        Resource::Cpu,
        Resource::Data,
        Resource::Fsize,
        Resource::Memlock,
        Resource::Msgqueue,
        Resource::Nice,
        Resource::Nofile,
        Resource::Nproc,
        Resource::Rss,
        Resource::Rtprio,
        Resource::Sigpending,
        Resource::Stack,
    ];

    /// The stanza's name for the resource.
    pub fn name(self) -> &'static str {
        match self {
            Resource::As => "as",
            Resource::Core => "core",
            Resource::Cpu => "cpu",
            Resource::Data => "data",
            Resource::Fsize => "fsize",
            Resource::Memlock => "memlock",
            Resource::Msgqueue => "msgqueue",
            Resource::Nice => "nice",
            Resource::Nofile => "nofile",
            Resource::Nproc => "nproc",
            Resource::Rss => "rss",
            Resource::Rtprio => "rtprio",
            Resource::Sigpending => "sigpending",
            Resource::Stack => "stack",
        }
    }

    pub fn from_name(name: &str) -> Option<Resource> {
        Resource::ALL.into_iter().find(|r| r.name() == name)
    }
}

/// One side of a `limit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LimitValue {
    /// `unlimited` (`RLIM_INFINITY`).
    Unlimited,
    /// A number, as C's `strtoul` reads it.
    Value(u64),
}

impl LimitValue {
    /// The value as an `rlim_t` (`RLIM_INFINITY` is all ones on Linux).
    pub fn as_rlim(self) -> u64 {
        match self {
            LimitValue::Unlimited => u64::MAX,
            LimitValue::Value(v) => v,
        }
    }
}

/// `limit RESOURCE SOFT HARD`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limit {
    pub resource: Resource,
    pub soft: LimitValue,
    pub hard: LimitValue,
}

/// The cgroup name used when a `cgroup` stanza names none (spec §1.4).
pub const DEFAULT_CGROUP_NAME: &str = "$UPSTART_CGROUP";

/// `cgroup CONTROLLER [NAME] [KEY VALUE]`, merged by controller and name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cgroup {
    pub controller: String,
    /// Unexpanded name; [`DEFAULT_CGROUP_NAME`] when the stanza gave none.
    pub name: String,
    /// `KEY VALUE` settings in file order.
    pub settings: Vec<(String, String)>,
}

impl Cgroup {
    /// The same without spare capacity.
    fn shrunk(mut self) -> Cgroup {
        self.controller.shrink_to_fit();
        self.name.shrink_to_fit();
        for (k, v) in &mut self.settings {
            k.shrink_to_fit();
            v.shrink_to_fit();
        }
        self.settings.shrink_to_fit();
        self
    }
}

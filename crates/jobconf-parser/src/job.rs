//! The typed job definition that a job file parses into (spec §1.4).
//!
//! Every field holds the value Upstart 1.13.2 would hold after parsing, with
//! Upstart's defaults. Two settings whose default depends on how the daemon
//! runs (`console`, `umask`) are `Option`s: `None` means "the stanza was not
//! given", and [`JobConf::console_or`] / [`JobConf::umask_or`] resolve them.

use serde::{Deserialize, Serialize};

use crate::expr::EventExpr;
use crate::signal::Signal;

/// One parsed job file (plus its `.override`, if any).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobConf {
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

impl Default for JobConf {
    /// A job with no stanzas, with Upstart's defaults.
    fn default() -> Self {
        JobConf {
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

impl JobConf {
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

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
//!   class, read through methods named after the stanzas (`conf.task()`,
//!   `conf.chroot()`, `conf.env()`, `conf.process(kind)`). A session init
//!   keeps one per job file for as long as it runs, so it is packed: the
//!   settings that differ from the defaults, encoded one after the other in
//!   a single buffer, and the two event expressions as [`PackedExpr`]s. A
//!   typical job takes a few hundred bytes that way, against well over a
//!   kilobyte as a plain struct of strings, vectors and boxed trees.
//! - [`JobFields`], every setting as a plain public field: the form to build
//!   or inspect a whole job in (tests, the dump and the rendering), and the
//!   serde form of both. [`JobConf::fields`] and `JobConf::from` convert.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::bytes::{Reader, Writer};
use crate::expr::EventExpr;
use crate::packed::PackedExpr;
use crate::signal::Signal;

/// One parsed job file (plus its `.override`, if any), packed; see the
/// module documentation. Serialises as its [`JobFields`].
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "JobFields", into = "JobFields")]
pub struct JobConf {
    /// Shared with the engine's matching state.
    start_on: Option<PackedExpr>,
    stop_on: Option<PackedExpr>,
    /// The other settings that differ from the defaults, in [`tag`] order,
    /// each as its tag, the length of its value and the value.
    settings: Box<[u8]>,
}

/// The tags of [`JobConf::settings`], in the order they are written.
mod tag {
    pub const TASK: u8 = 0;
    pub const RESPAWN: u8 = 1;
    pub const DEBUG: u8 = 2;
    pub const EXPECT: u8 = 3;
    pub const CONSOLE: u8 = 4;
    pub const KILL_SIGNAL: u8 = 5;
    pub const RELOAD_SIGNAL: u8 = 6;
    pub const UMASK: u8 = 7;
    pub const NICE: u8 = 8;
    pub const OOM_SCORE: u8 = 9;
    pub const KILL_TIMEOUT: u8 = 10;
    pub const RESPAWN_LIMIT: u8 = 11;
    pub const PROCESS_TIMEOUT: u8 = 12;
    pub const EXPECT_TIMEOUT: u8 = 13;
    pub const DESCRIPTION: u8 = 14;
    pub const AUTHOR: u8 = 15;
    pub const VERSION: u8 = 16;
    pub const USAGE: u8 = 17;
    pub const INSTANCE: u8 = 18;
    pub const EMITS: u8 = 19;
    pub const ENV: u8 = 20;
    pub const EXPORT: u8 = 21;
    /// Followed by the five processes in [`super::ProcessKind::ALL`] order.
    pub const PROCESS: u8 = 22;
    pub const NORMAL_EXIT: u8 = 27;
    pub const LIMITS: u8 = 28;
    pub const CHROOT: u8 = 29;
    pub const CHDIR: u8 = 30;
    pub const SETUID: u8 = 31;
    pub const SETGID: u8 = 32;
    pub const APPARMOR_LOAD: u8 = 33;
    pub const APPARMOR_SWITCH: u8 = 34;
    pub const CGROUPS: u8 = 35;
    pub const PID_FILE: u8 = 36;
}

/// A process of a [`JobConf`]: [`Process`], borrowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessRef<'a> {
    /// As [`Process::command`].
    pub command: &'a str,
    /// True for a `script … end script` block.
    pub script: bool,
}

impl ProcessRef<'_> {
    pub fn to_owned(self) -> Process {
        Process {
            command: self.command.into(),
            script: self.script,
        }
    }
}

/// The strings of a list setting (`env`, `export`, `emits`), in order.
#[derive(Debug, Clone)]
pub struct Strs<'a> {
    reader: Reader<'a>,
    left: usize,
}

impl<'a> Iterator for Strs<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        Some(self.reader.str())
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl ExactSizeIterator for Strs<'_> {}

/// A list of `count` entries read by `entry`.
fn entries<'a, T: 'a>(mut r: Reader<'a>, entry: fn(&mut Reader<'a>) -> T) -> impl Iterator<Item = T> + 'a {
    let count = r.len();
    (0..count).map_while(move |_| (!r.0.is_empty()).then(|| entry(&mut r)))
}

fn expect_code(e: Expect) -> u8 {
    match e {
        Expect::None => 0,
        Expect::Stop => 1,
        Expect::Daemon => 2,
        Expect::Fork => 3,
    }
}

fn console_code(c: Console) -> u8 {
    match c {
        Console::None => 0,
        Console::Output => 1,
        Console::Owner => 2,
        Console::Log => 3,
    }
}

fn write_bound(w: &mut Writer, b: Bound) {
    match b {
        Bound::Unlimited => w.byte(0),
        Bound::Seconds(n) => {
            w.byte(1);
            w.uint(n);
        }
    }
}

fn read_bound(r: &mut Reader) -> Bound {
    match r.byte() {
        Some(0) => Bound::Unlimited,
        _ => Bound::Seconds(r.uint()),
    }
}

fn write_limit_value(w: &mut Writer, v: LimitValue) {
    match v {
        LimitValue::Unlimited => w.byte(0),
        LimitValue::Value(n) => {
            w.byte(1);
            w.uint(n);
        }
    }
}

fn read_limit_value(r: &mut Reader) -> LimitValue {
    match r.byte() {
        Some(0) => LimitValue::Unlimited,
        _ => LimitValue::Value(r.uint()),
    }
}

fn read_limit(r: &mut Reader) -> Limit {
    let resource = Resource::ALL[usize::from(r.byte().unwrap_or(0)).min(Resource::ALL.len() - 1)];
    Limit {
        resource,
        soft: read_limit_value(r),
        hard: read_limit_value(r),
    }
}

fn read_normal_exit(r: &mut Reader) -> NormalExit {
    match r.byte() {
        Some(0) => NormalExit::Status(u32::try_from(r.uint()).unwrap_or(u32::MAX)),
        _ => NormalExit::Signal(Signal(r.int())),
    }
}

fn read_cgroup(r: &mut Reader) -> Cgroup {
    let controller = r.str().into();
    let name = r.str().into();
    let count = r.len();
    let mut settings = Vec::new();
    for _ in 0..count {
        if r.0.is_empty() {
            break;
        }
        settings.push((r.str().to_string(), r.str().to_string()));
    }
    Cgroup {
        controller,
        name,
        settings,
    }
}

impl JobConf {
    /// The value of the setting `tag`, if it differs from the default.
    fn setting(&self, tag: u8) -> Option<Reader<'_>> {
        let mut r = Reader(&self.settings);
        while let Some(t) = r.byte() {
            let len = r.len();
            let value = r.bytes(len);
            if t == tag {
                return Some(Reader(value));
            }
            if t > tag {
                break;
            }
        }
        None
    }

    fn flag(&self, tag: u8) -> bool {
        self.setting(tag).is_some()
    }

    fn text(&self, tag: u8) -> Option<&str> {
        self.setting(tag).map(|mut r| r.str())
    }

    fn strs(&self, tag: u8) -> Strs<'_> {
        let mut reader = self.setting(tag).unwrap_or(Reader(&[]));
        let left = reader.len();
        Strs { reader, left }
    }

    /// `task`.
    pub fn task(&self) -> bool {
        self.flag(tag::TASK)
    }

    /// `respawn`.
    pub fn respawn(&self) -> bool {
        self.flag(tag::RESPAWN)
    }

    /// `debug`.
    pub fn debug(&self) -> bool {
        self.flag(tag::DEBUG)
    }

    /// `expect stop|daemon|fork|none`; default none.
    pub fn expect(&self) -> Expect {
        match self.setting(tag::EXPECT).and_then(|mut r| r.byte()) {
            Some(1) => Expect::Stop,
            Some(2) => Expect::Daemon,
            Some(3) => Expect::Fork,
            _ => Expect::None,
        }
    }

    /// `console none|log|output|owner`; `None` when not given.
    pub fn console(&self) -> Option<Console> {
        Some(match self.setting(tag::CONSOLE)?.byte() {
            Some(0) => Console::None,
            Some(1) => Console::Output,
            Some(2) => Console::Owner,
            _ => Console::Log,
        })
    }

    /// `kill signal SIGNAL`; default SIGTERM.
    pub fn kill_signal(&self) -> Signal {
        self.setting(tag::KILL_SIGNAL)
            .map_or(Signal::TERM, |mut r| Signal(r.int()))
    }

    /// `reload signal SIGNAL`; default SIGHUP.
    pub fn reload_signal(&self) -> Signal {
        self.setting(tag::RELOAD_SIGNAL)
            .map_or(Signal::HUP, |mut r| Signal(r.int()))
    }

    /// `umask OCTAL`; `None` when not given.
    pub fn umask(&self) -> Option<u32> {
        self.setting(tag::UMASK).map(|mut r| r.int() as u32)
    }

    /// `nice N` (-20…19); `None` inherits.
    pub fn nice(&self) -> Option<i32> {
        self.setting(tag::NICE).map(|mut r| r.int())
    }

    /// `oom score N|never` as an oom_score_adj value; `None` leaves the
    /// kernel default.
    pub fn oom_score(&self) -> Option<i32> {
        self.setting(tag::OOM_SCORE).map(|mut r| r.int())
    }

    /// `kill timeout SECONDS`; default 5.
    pub fn kill_timeout(&self) -> u64 {
        self.setting(tag::KILL_TIMEOUT)
            .map_or(DEFAULT_KILL_TIMEOUT, |mut r| r.uint())
    }

    /// `respawn limit COUNT INTERVAL`; default 10 in 5 s.
    pub fn respawn_limit(&self) -> RespawnLimit {
        self.setting(tag::RESPAWN_LIMIT)
            .map_or_else(RespawnLimit::default, |mut r| RespawnLimit {
                count: r.uint(),
                interval: r.uint(),
            })
    }

    /// `process timeout SECONDS|unlimited` (upshot); `None` takes the
    /// daemon's default.
    pub fn process_timeout(&self) -> Option<Bound> {
        self.setting(tag::PROCESS_TIMEOUT).map(|mut r| read_bound(&mut r))
    }

    /// `expect timeout SECONDS|unlimited` (upshot); `None` takes the
    /// daemon's default.
    pub fn expect_timeout(&self) -> Option<Bound> {
        self.setting(tag::EXPECT_TIMEOUT).map(|mut r| read_bound(&mut r))
    }

    /// `description "TEXT"`.
    pub fn description(&self) -> Option<&str> {
        self.text(tag::DESCRIPTION)
    }

    /// `author "TEXT"`.
    pub fn author(&self) -> Option<&str> {
        self.text(tag::AUTHOR)
    }

    /// `version "TEXT"`.
    pub fn version(&self) -> Option<&str> {
        self.text(tag::VERSION)
    }

    /// `usage "TEXT"`, shown by `initctl usage`.
    pub fn usage(&self) -> Option<&str> {
        self.text(tag::USAGE)
    }

    /// `instance NAME`: the unexpanded instance-name pattern; empty for a
    /// single-instance job.
    pub fn instance(&self) -> &str {
        self.text(tag::INSTANCE).unwrap_or("")
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

    /// `emits EVENT…` (accumulates).
    pub fn emits(&self) -> Strs<'_> {
        self.strs(tag::EMITS)
    }

    /// `env KEY[=VALUE]` entries in file order (not expanded).
    pub fn env(&self) -> Strs<'_> {
        self.strs(tag::ENV)
    }

    /// `export KEY…` (accumulates).
    pub fn export(&self) -> Strs<'_> {
        self.strs(tag::EXPORT)
    }

    /// The process of `kind` (`exec`/`script`, `pre-start exec`, …), if
    /// given.
    pub fn process(&self, kind: ProcessKind) -> Option<ProcessRef<'_>> {
        let index = ProcessKind::ALL.iter().position(|k| *k == kind).unwrap_or(0) as u8;
        let mut r = self.setting(tag::PROCESS + index)?;
        let script = r.byte() == Some(1);
        Some(ProcessRef {
            command: r.str(),
            script,
        })
    }

    /// The processes given, in [`ProcessKind::ALL`] order.
    pub fn processes(&self) -> impl Iterator<Item = (ProcessKind, ProcessRef<'_>)> {
        ProcessKind::ALL
            .into_iter()
            .filter_map(|k| Some((k, self.process(k)?)))
    }

    /// `normal exit STATUS|SIGNAL…` (accumulates).
    pub fn normal_exit(&self) -> impl Iterator<Item = NormalExit> + '_ {
        self.setting(tag::NORMAL_EXIT)
            .into_iter()
            .flat_map(|r| entries(r, read_normal_exit))
    }

    /// `limit RESOURCE SOFT HARD`, sorted by resource.
    pub fn limits(&self) -> impl Iterator<Item = Limit> + '_ {
        self.setting(tag::LIMITS)
            .into_iter()
            .flat_map(|r| entries(r, read_limit))
    }

    /// The limit set for `resource`, if any.
    pub fn limit(&self, resource: Resource) -> Option<Limit> {
        self.limits().find(|l| l.resource == resource)
    }

    /// `chroot DIR`.
    pub fn chroot(&self) -> Option<&str> {
        self.text(tag::CHROOT)
    }

    /// `chdir DIR`.
    pub fn chdir(&self) -> Option<&str> {
        self.text(tag::CHDIR)
    }

    /// `setuid USER`.
    pub fn setuid(&self) -> Option<&str> {
        self.text(tag::SETUID)
    }

    /// `setgid GROUP`.
    pub fn setgid(&self) -> Option<&str> {
        self.text(tag::SETGID)
    }

    /// `pid file PATH` (upshot).
    pub fn pid_file(&self) -> Option<&str> {
        self.text(tag::PID_FILE)
    }

    /// `apparmor load PROFILE`.
    pub fn apparmor_load(&self) -> Option<&str> {
        self.text(tag::APPARMOR_LOAD)
    }

    /// `apparmor switch NAME`.
    pub fn apparmor_switch(&self) -> Option<&str> {
        self.text(tag::APPARMOR_SWITCH)
    }

    /// `cgroup CONTROLLER [NAME] [KEY VALUE]`, merged by controller and
    /// name in first-seen order (decoded, so each call allocates).
    pub fn cgroups(&self) -> impl Iterator<Item = Cgroup> + '_ {
        self.setting(tag::CGROUPS)
            .into_iter()
            .flat_map(|r| entries(r, read_cgroup))
    }

    /// The console type in effect, given the daemon's default.
    pub fn console_or(&self, default: Console) -> Console {
        self.console().unwrap_or(default)
    }

    /// The umask in effect, given the daemon's default.
    pub fn umask_or(&self, default: u32) -> u32 {
        self.umask().unwrap_or(default)
    }

    /// Every setting as a plain struct.
    pub fn fields(&self) -> JobFields {
        let process = |k| self.process(k).map(ProcessRef::to_owned);
        JobFields {
            description: self.description().map(String::from),
            author: self.author().map(String::from),
            version: self.version().map(String::from),
            usage: self.usage().map(String::from),
            instance: self.instance().into(),
            start_on: self.start_on().map(PackedExpr::unpack),
            stop_on: self.stop_on().map(PackedExpr::unpack),
            emits: self.emits().map(String::from).collect(),
            env: self.env().map(String::from).collect(),
            export: self.export().map(String::from).collect(),
            process: Processes {
                main: process(ProcessKind::Main),
                pre_start: process(ProcessKind::PreStart),
                post_start: process(ProcessKind::PostStart),
                pre_stop: process(ProcessKind::PreStop),
                post_stop: process(ProcessKind::PostStop),
            },
            task: self.task(),
            respawn: self.respawn(),
            respawn_limit: self.respawn_limit(),
            normal_exit: self.normal_exit().collect(),
            kill_timeout: self.kill_timeout(),
            kill_signal: self.kill_signal(),
            reload_signal: self.reload_signal(),
            expect: self.expect(),
            console: self.console(),
            umask: self.umask(),
            nice: self.nice(),
            oom_score: self.oom_score(),
            limits: self.limits().collect(),
            chroot: self.chroot().map(String::from),
            chdir: self.chdir().map(String::from),
            setuid: self.setuid().map(String::from),
            setgid: self.setgid().map(String::from),
            apparmor_load: self.apparmor_load().map(String::from),
            apparmor_switch: self.apparmor_switch().map(String::from),
            cgroups: self.cgroups().collect(),
            debug: self.debug(),
            process_timeout: self.process_timeout(),
            expect_timeout: self.expect_timeout(),
            pid_file: self.pid_file().map(String::from),
        }
    }

    /// Changes settings through the plain form (`conf.edit(|c| c.chroot =
    /// Some(dir))`), then packs the result again.
    pub fn edit(&mut self, f: impl FnOnce(&mut JobFields)) {
        let mut fields = self.fields();
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

/// Writes the settings of a [`JobConf`], each as tag, length and value.
struct Settings {
    out: Writer,
    value: Writer,
}

impl Settings {
    /// Writes the value built by `f` under `tag`, if `present`.
    fn put(&mut self, tag: u8, present: bool, f: impl FnOnce(&mut Writer)) {
        if !present {
            return;
        }
        self.value.0.clear();
        f(&mut self.value);
        self.out.byte(tag);
        self.out.len(self.value.0.len());
        self.out.0.extend_from_slice(&self.value.0);
    }

    fn text(&mut self, tag: u8, s: Option<&str>) {
        if let Some(s) = s {
            self.put(tag, true, |w| w.str(s));
        }
    }

    fn list<T>(&mut self, tag: u8, items: &[T], mut f: impl FnMut(&mut Writer, &T)) {
        self.put(tag, !items.is_empty(), |w| {
            w.len(items.len());
            for i in items {
                f(w, i);
            }
        });
    }
}

impl From<&JobFields> for JobConf {
    fn from(f: &JobFields) -> JobConf {
        let mut s = Settings {
            out: Writer(Vec::new()),
            value: Writer(Vec::new()),
        };
        s.put(tag::TASK, f.task, |_| {});
        s.put(tag::RESPAWN, f.respawn, |_| {});
        s.put(tag::DEBUG, f.debug, |_| {});
        s.put(tag::EXPECT, f.expect != Expect::None, |w| {
            w.byte(expect_code(f.expect))
        });
        if let Some(c) = f.console {
            s.put(tag::CONSOLE, true, |w| w.byte(console_code(c)));
        }
        s.put(tag::KILL_SIGNAL, f.kill_signal != Signal::TERM, |w| {
            w.int(f.kill_signal.0)
        });
        s.put(tag::RELOAD_SIGNAL, f.reload_signal != Signal::HUP, |w| {
            w.int(f.reload_signal.0)
        });
        for (tag, v) in [
            (tag::UMASK, f.umask.map(|m| m as i32)),
            (tag::NICE, f.nice),
            (tag::OOM_SCORE, f.oom_score),
        ] {
            if let Some(v) = v {
                s.put(tag, true, |w| w.int(v));
            }
        }
        s.put(tag::KILL_TIMEOUT, f.kill_timeout != DEFAULT_KILL_TIMEOUT, |w| {
            w.uint(f.kill_timeout)
        });
        s.put(
            tag::RESPAWN_LIMIT,
            f.respawn_limit != RespawnLimit::default(),
            |w| {
                w.uint(f.respawn_limit.count);
                w.uint(f.respawn_limit.interval);
            },
        );
        for (tag, b) in [
            (tag::PROCESS_TIMEOUT, f.process_timeout),
            (tag::EXPECT_TIMEOUT, f.expect_timeout),
        ] {
            if let Some(b) = b {
                s.put(tag, true, |w| write_bound(w, b));
            }
        }
        s.text(tag::DESCRIPTION, f.description.as_deref());
        s.text(tag::AUTHOR, f.author.as_deref());
        s.text(tag::VERSION, f.version.as_deref());
        s.text(tag::USAGE, f.usage.as_deref());
        s.text(tag::INSTANCE, Some(f.instance.as_str()).filter(|i| !i.is_empty()));
        s.list(tag::EMITS, &f.emits, |w, e| w.str(e));
        s.list(tag::ENV, &f.env, |w, e| w.str(e));
        s.list(tag::EXPORT, &f.export, |w, e| w.str(e));
        for (i, kind) in ProcessKind::ALL.into_iter().enumerate() {
            if let Some(p) = f.process.get(kind) {
                s.put(tag::PROCESS + i as u8, true, |w| {
                    w.byte(u8::from(p.script));
                    w.str(&p.command);
                });
            }
        }
        s.list(tag::NORMAL_EXIT, &f.normal_exit, |w, n| match n {
            NormalExit::Status(st) => {
                w.byte(0);
                w.uint(u64::from(*st));
            }
            NormalExit::Signal(sig) => {
                w.byte(1);
                w.int(sig.0);
            }
        });
        s.list(tag::LIMITS, &f.limits, |w, l| {
            w.byte(Resource::ALL.iter().position(|r| *r == l.resource).unwrap_or(0) as u8);
            write_limit_value(w, l.soft);
            write_limit_value(w, l.hard);
        });
        s.text(tag::CHROOT, f.chroot.as_deref());
        s.text(tag::CHDIR, f.chdir.as_deref());
        s.text(tag::SETUID, f.setuid.as_deref());
        s.text(tag::SETGID, f.setgid.as_deref());
        s.text(tag::APPARMOR_LOAD, f.apparmor_load.as_deref());
        s.text(tag::APPARMOR_SWITCH, f.apparmor_switch.as_deref());
        s.list(tag::CGROUPS, &f.cgroups, |w, c| {
            w.str(&c.controller);
            w.str(&c.name);
            w.len(c.settings.len());
            for (k, v) in &c.settings {
                w.str(k);
                w.str(v);
            }
        });
        s.text(tag::PID_FILE, f.pid_file.as_deref());
        JobConf {
            start_on: f.start_on.as_ref().map(PackedExpr::new),
            stop_on: f.stop_on.as_ref().map(PackedExpr::new),
            // A copy of the exact size: shrinking in place would leave a
            // small hole in the heap per job.
            settings: s.out.0.as_slice().into(),
        }
    }
}

impl From<JobFields> for JobConf {
    fn from(f: JobFields) -> JobConf {
        JobConf::from(&f)
    }
}

impl From<JobConf> for JobFields {
    fn from(c: JobConf) -> JobFields {
        c.fields()
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
    /// `pid file PATH` (upshot): when the main process ends while the job
    /// runs, the live process this file names is adopted as the main
    /// process if it runs as the same user the same program (a service
    /// that hands over to a successor of itself).
    #[serde(default)]
    pub pid_file: Option<String>,
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
            pid_file: None,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse_job;

    #[test]
    fn a_typical_job_takes_a_few_hundred_bytes() {
        let job = parse_job(
            b"description \"a service\"\nauthor \"someone\"\nstart on runlevel [2345]\n\
              stop on runlevel [!2345]\nenv A=1\nrespawn\nexec /usr/sbin/daemon --foreground\n",
        )
        .unwrap();
        assert_eq!(size_of::<JobConf>(), 48);
        assert!(job.settings.len() < 80, "{} bytes", job.settings.len());
        assert_eq!(job.description(), Some("a service"));
        assert!(job.respawn() && !job.task());
        assert!(job.env().eq(["A=1"]));
        let main = job.process(ProcessKind::Main).unwrap();
        assert_eq!(
            (main.command, main.script),
            ("/usr/sbin/daemon --foreground", false)
        );
    }

    #[test]
    fn defaults_take_no_bytes_and_every_setting_reads_back() {
        assert!(JobConf::default().settings.is_empty());
        let mut fields = JobFields {
            kill_signal: Signal(-3),
            umask: Some(0o777),
            nice: Some(-20),
            expect: Expect::Fork,
            console: Some(Console::Log),
            respawn_limit: RespawnLimit {
                count: 0,
                interval: 0,
            },
            expect_timeout: Some(Bound::Unlimited),
            process_timeout: Some(Bound::Seconds(u64::MAX)),
            normal_exit: vec![NormalExit::Status(u32::MAX), NormalExit::Signal(Signal::KILL)],
            ..JobFields::default()
        };
        fields.set_limit(Limit {
            resource: Resource::Stack,
            soft: LimitValue::Unlimited,
            hard: LimitValue::Value(u64::MAX),
        });
        fields.add_cgroup("cpu".into(), "x".into(), Some(("k".into(), "v".into())));
        fields.process.post_stop = Some(Process {
            command: "echo\n".into(),
            script: true,
        });
        assert_eq!(JobConf::from(&fields).fields(), fields);
    }
}

//! The main loop (design layer 3): one thread, one `poll(2)` over a
//! signalfd, a timerfd armed for the earliest deadline, the conf dirs'
//! inotify fd, the job log ptys and the pipes feeding scripts. Each wake-up
//! turns what happened into engine inputs and carries out the effects; an
//! idle daemon sleeps in `poll` with no timeout, so it makes no context
//! switches.
//!
//! Only this loop reaps children (`waitpid(-1, WNOHANG|__WALL|WUNTRACED)`),
//! offering every status to the `expect` tracker first.
//!
//! Stopping an instance kills its whole tree: the engine sends the kill
//! signal to the main process; here it goes to the main process's group,
//! its descendants, and the orphans carrying the instance's `UPSTART_JOB`/
//! `UPSTART_INSTANCE` that were re-parented to us (we are a subreaper or
//! PID 1), so `setsid` and double forks do not escape. Whatever of that tree
//! is still alive `kill timeout` later gets SIGKILL (a sweep), even when the
//! main process itself ended early.

use std::collections::{BTreeMap, VecDeque};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use jobconf_parser::{Console, Expect, ProcessKind};
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigSet, SigmaskHow, Signal as NixSignal, sigprocmask};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::time::TimeSpec;
use nix::sys::timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags};

mod bus;

use crate::conf::{ConfChange, ConfSources};
use crate::control::Control;
use crate::engine::{
    BusSignal, Effect, Engine, EngineConfig, ExitStatus, Goal, Input, InstanceKey, LogLevel, Request, Spawn,
    State, Time,
};
use crate::joblog::JobLogs;
use crate::kill;
use crate::pid1::{self, Place, ShutdownKind};
use crate::ptrace::{Traced, Tracker};
use crate::spawn::{ScriptFeed, SpawnPlan, spawn};

/// How the daemon runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// A session init (`--user`): subreaper, session file, SIGTERM ends it.
    pub user: bool,
    pub conf_dirs: Vec<PathBuf>,
    /// Job logs; `None` with `--no-log` (then `console log` means `none`).
    pub log_dir: Option<PathBuf>,
    pub default_console: Console,
    /// The event emitted once the configuration is loaded, if any.
    pub startup_event: Option<String>,
    /// The global job environment table.
    pub global_env: Vec<String>,
    /// init's own environment (for `env KEY` without a value).
    pub process_env: Vec<String>,
    /// Set last in every job process (a session init's `UPSTART_SESSION`).
    pub final_env: Vec<String>,
    /// Written once running, removed at exit.
    pub session_file: Option<(PathBuf, String)>,
    /// The private D-Bus address to listen on (`unix:abstract=…`).
    pub address: Option<String>,
    /// A system init (process 1), and where; `None` for a session init.
    pub system: Option<Place>,
    /// A test aid (`--inject-panic-on-event NAME`): emitting this event
    /// panics in the main loop, which must survive it.
    pub inject_panic_on_event: Option<String>,
}

const MICROS: u64 = 1_000_000;

/// A pending SIGKILL for what is left of an instance's tree.
#[derive(Debug, Clone)]
struct Sweep {
    at: Time,
    key: InstanceKey,
    root: i32,
    cutoff: u64,
}

struct Daemon {
    opts: Options,
    engine: Engine,
    start: Instant,
    me: i32,
    conf: ConfSources,
    logs: Option<JobLogs>,
    tracker: Tracker<InstanceKey>,
    scripts: Vec<ScriptFeed>,
    sweeps: Vec<Sweep>,
    signals: SignalFd,
    timer: TimerFd,
    /// Session shutdown in progress: exit when no instance is left, or at
    /// this time.
    shutdown: Option<Time>,
    /// A scan of /proc shared by the kills of one loop iteration.
    procs: Option<Vec<kill::Proc>>,
    /// `PR_SET_CHILD_SUBREAPER` failed: `child-subreaper-failed` is emitted
    /// with the configuration loaded (spec §2.3).
    subreaper_failed: bool,
    exit: Option<i32>,
    next_reply: u64,
    /// When each live main process was spawned (clock ticks), for adoption.
    main_started: BTreeMap<InstanceKey, u64>,
    /// The user and program of each main process of a job with `pid file`.
    main_ident: BTreeMap<InstanceKey, (u32, PathBuf)>,
    /// The D-Bus side, when listening.
    bus: Option<bus::Bus>,
    own_uid: u32,
    /// A system shutdown in progress.
    system_shutdown: Option<SystemShutdown>,
    /// The last `runlevel` event's `RUNLEVEL` (`PREVLEVEL` of the one a
    /// shutdown emits).
    runlevel: Option<String>,
}

/// The phases of a system shutdown: the jobs are stopped (bounded by the
/// largest `kill timeout`), then every other process gets SIGTERM, then
/// SIGKILL; each phase ends early when nothing is left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Jobs,
    Term,
    Kill,
}

#[derive(Debug, Clone, Copy)]
struct SystemShutdown {
    kind: ShutdownKind,
    phase: Phase,
    until: Time,
}

/// Signals the loop takes through its signalfd (a system init also turns
/// SIGPWR and SIGWINCH into events; a session init leaves them alone).
fn handled_signals(system: bool) -> SigSet {
    let mut set = SigSet::empty();
    for s in [
        NixSignal::SIGCHLD,
        NixSignal::SIGHUP,
        NixSignal::SIGTERM,
        NixSignal::SIGINT,
        NixSignal::SIGUSR1,
    ] {
        set.add(s);
    }
    if system {
        set.add(NixSignal::SIGPWR);
        set.add(NixSignal::SIGWINCH);
    }
    set
}

/// Runs the daemon until it is asked to end; returns the exit status. A
/// system init never returns: it ends in [`pid1::finish`], and if it cannot
/// even start its main loop it reaps orphans for ever.
pub fn run(opts: Options) -> i32 {
    // A panic is logged where the daemon logs (the main loop catches it
    // and goes on; see `main_loop`).
    std::panic::set_hook(Box::new(|info| {
        tracing::error!("internal error: {info}");
    }));
    let system = opts.system;
    let made = std::panic::catch_unwind(|| Daemon::new(opts))
        .unwrap_or_else(|_| Err("internal error while starting".to_string()));
    match made {
        Ok(mut d) => {
            let code = d.main_loop();
            match (system, d.system_shutdown) {
                (Some(place), Some(s)) => {
                    // Only the job logs have work left (their last buffered
                    // output); the rest of the daemon's memory goes with
                    // the machine (or the process), and freeing it would
                    // only take time (~5 ms of a TCG VM's power-off).
                    drop(d.logs.take());
                    std::mem::forget(d);
                    pid1::finish(s.kind, place)
                }
                (Some(_), None) => {
                    tracing::error!("the main loop ended without a shutdown; reaping orphans from now on");
                    pid1::reap_forever()
                }
                (None, _) => code,
            }
        }
        Err(e) if system.is_some() => {
            tracing::error!("unable to start the main loop: {e}; reaping orphans from now on");
            pid1::reap_forever()
        }
        Err(e) => {
            tracing::error!("unable to start: {e}");
            1
        }
    }
}

impl Daemon {
    fn new(opts: Options) -> Result<Daemon, String> {
        // Blocked before any thread starts, so that every thread inherits
        // the mask and the signals reach the signalfd alone.
        let mask = handled_signals(opts.system.is_some());
        sigprocmask(SigmaskHow::SIG_BLOCK, Some(&mask), None).map_err(|e| e.to_string())?;
        let own_uid = nix::unistd::getuid().as_raw();
        let bus = match &opts.address {
            Some(address) => {
                let started = crate::control::bind(address)
                    .map_err(|e| format!("unable to listen on {address}: {e}"))
                    .and_then(|listener| {
                        Control::start(listener, own_uid)
                            .map_err(|e| format!("unable to start the D-Bus thread: {e}"))
                    });
                match started {
                    Ok(control) => {
                        let priority = crate::logging::priority_name(crate::logging::current_level());
                        Some(bus::Bus::new(control, priority))
                    }
                    // A system init goes on without D-Bus: it still
                    // supervises its jobs, and it must not die.
                    Err(e) if opts.system.is_some() => {
                        tracing::error!("{e}; running without D-Bus control");
                        None
                    }
                    Err(e) => return Err(e),
                }
            }
            None => None,
        };
        let errno = |e: Errno| e.to_string();
        let mut subreaper_failed = false;
        if opts.user {
            if let Err(e) = nix::sys::prctl::set_child_subreaper(true) {
                tracing::warn!("Unable to register as subreaper: {e}");
                subreaper_failed = true;
            }
            report_capabilities();
        }
        let signals =
            SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC).map_err(errno)?;
        let timer = TimerFd::new(
            ClockId::CLOCK_MONOTONIC,
            TimerFlags::TFD_NONBLOCK | TimerFlags::TFD_CLOEXEC,
        )
        .map_err(errno)?;
        let config = EngineConfig {
            global_env: opts.global_env.clone(),
            process_env: opts.process_env.clone(),
            final_env: opts.final_env.clone(),
            ..EngineConfig::default()
        };
        let logs = opts.log_dir.clone().map(|dir| {
            let logs = JobLogs::new(dir);
            if opts.user { logs.with_mode(0o600) } else { logs }
        });
        Ok(Daemon {
            conf: ConfSources::new(opts.conf_dirs.clone()),
            opts,
            engine: Engine::new(config),
            start: Instant::now(),
            me: kill::daemon_pid(),
            logs,
            tracker: Tracker::new(),
            scripts: Vec::new(),
            sweeps: Vec::new(),
            signals,
            timer,
            shutdown: None,
            subreaper_failed,
            procs: None,
            exit: None,
            next_reply: 1,
            main_started: BTreeMap::new(),
            main_ident: BTreeMap::new(),
            bus,
            own_uid,
            system_shutdown: None,
            runlevel: None,
        })
    }

    fn now(&self) -> Time {
        self.start.elapsed().as_micros() as Time
    }

    /// Loads the configuration, writes the session file and emits the
    /// start-up events.
    fn start_up(&mut self) {
        for change in self.conf.rescan() {
            self.conf_change(change);
        }
        // Loading freed the files' text, parse buffers and the list of
        // changes between what it keeps: give those pages back.
        // (glibc only: musl's allocator returns freed pages by itself.)
        // SAFETY: malloc_trim only releases free memory of the allocator.
        #[cfg(target_env = "gnu")]
        unsafe {
            libc::malloc_trim(0)
        };
        if self.opts.system.is_some() {
            self.use_system_bus();
        }
        if let Some((path, address)) = &self.opts.session_file
            && let Err(e) = crate::session::write_session_file(path, address)
        {
            tracing::warn!("unable to write session file {}: {e}", path.display());
        }
        if self.subreaper_failed {
            self.feed(Input::Emit {
                name: "child-subreaper-failed".into(),
                env: Vec::new(),
                by: None,
            });
        }
        if let Some(name) = self.opts.startup_event.clone() {
            self.feed(Input::Emit {
                name,
                env: Vec::new(),
                by: None,
            });
        }
    }

    fn main_loop(&mut self) -> i32 {
        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.start_up())).is_err() {
            tracing::error!("start-up met an internal error; going on with what was done");
        }
        while self.exit.is_none() {
            // A bug must not take the daemon down (as process 1 that would
            // panic the kernel): the iteration is abandoned, logged by the
            // panic hook, and the loop goes on.
            let iteration = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                self.procs = None;
                self.arm_timer();
                self.wait_and_dispatch();
                self.check_shutdown();
            }));
            if iteration.is_err() {
                tracing::error!("the main loop recovered from an internal error; going on");
            }
        }
        // What the last processes wrote before they ended is still in their
        // ptys: read it before the log files are flushed and closed.
        if let Some(logs) = self.logs.as_mut() {
            logs.drain();
        }
        if let Some((path, _)) = &self.opts.session_file {
            let _ = std::fs::remove_file(path);
        }
        self.exit.unwrap_or(0)
    }

    /// One `poll` and the work it reports.
    fn wait_and_dispatch(&mut self) {
        let log_fds: Vec<i32> = self.logs.as_ref().map(|l| l.fds()).unwrap_or_default();
        let script_fds: Vec<i32> = self.scripts.iter().map(|s| s.fd.as_raw_fd()).collect();
        let mut inot = false;
        let mut control = false;
        let mut ready_logs = Vec::new();
        let mut ready_scripts = Vec::new();
        let (sig, tim) = {
            let mut fds = vec![
                PollFd::new(self.signals.as_fd(), PollFlags::POLLIN),
                PollFd::new(self.timer.as_fd(), PollFlags::POLLIN),
            ];
            let conf_fd = self.conf.fd();
            if let Some(fd) = conf_fd {
                fds.push(PollFd::new(fd, PollFlags::POLLIN));
            }
            let control_at = fds.len();
            if let Some(b) = &self.bus {
                fds.push(PollFd::new(b.control.bridge.fd(), PollFlags::POLLIN));
            }
            let base = fds.len();
            // SAFETY: these fds are owned by `self.logs` and `self.scripts`,
            // which are not touched until `fds` is dropped below.
            for &fd in &log_fds {
                fds.push(PollFd::new(
                    unsafe { BorrowedFd::borrow_raw(fd) },
                    PollFlags::POLLIN,
                ));
            }
            for &fd in &script_fds {
                fds.push(PollFd::new(
                    unsafe { BorrowedFd::borrow_raw(fd) },
                    PollFlags::POLLOUT,
                ));
            }
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) => {}
                Err(Errno::EINTR) => return,
                Err(e) => {
                    tracing::error!("poll: {e}");
                    return;
                }
            }
            let hit = |p: &PollFd| p.revents().is_some_and(|r| !r.is_empty());
            if conf_fd.is_some() {
                inot = hit(&fds[2]);
            }
            if self.bus.is_some() {
                control = hit(&fds[control_at]);
            }
            for (i, fd) in log_fds.iter().enumerate() {
                if hit(&fds[base + i]) {
                    ready_logs.push(*fd);
                }
            }
            for (i, fd) in script_fds.iter().enumerate() {
                if hit(&fds[base + log_fds.len() + i]) {
                    ready_scripts.push(*fd);
                }
            }
            (hit(&fds[0]), hit(&fds[1]))
        };
        if let Some(logs) = self.logs.as_mut() {
            for fd in ready_logs {
                logs.on_readable(fd);
            }
        }
        for fd in ready_scripts {
            self.feed_script(fd);
        }
        if sig {
            self.on_signals();
        }
        if tim {
            let _ = self.timer.wait();
            self.on_timer();
        }
        if inot {
            for change in self.conf.on_inotify() {
                self.conf_change(change);
            }
        }
        if control {
            self.on_bus_input();
        }
    }

    fn feed_script(&mut self, fd: i32) {
        if let Some(i) = self.scripts.iter().position(|s| s.fd.as_raw_fd() == fd) {
            match self.scripts[i].write_some() {
                Ok(false) => {}
                Ok(true) | Err(_) => {
                    self.scripts.swap_remove(i);
                }
            }
        }
    }

    /// Arms the timerfd for the earliest of the engine's deadlines and the
    /// sweeps (and the shutdown bound), or disarms it.
    fn arm_timer(&mut self) {
        // While processes are being signalled at the end of a system
        // shutdown, /proc is looked at again every 100 ms (not every process
        // left is our child, so no SIGCHLD need come).
        let system = self.system_shutdown.map(|s| match s.phase {
            Phase::Jobs => s.until,
            Phase::Term | Phase::Kill => s.until.min(self.now() + 100_000),
        });
        let deadline = [
            self.engine.next_deadline(),
            self.sweeps.iter().map(|s| s.at).min(),
            self.shutdown,
            system,
        ]
        .into_iter()
        .flatten()
        .min();
        match deadline {
            Some(at) => {
                let wait = at.saturating_sub(self.now()).max(1);
                let spec = TimeSpec::from_duration(Duration::from_micros(wait));
                let _ = self
                    .timer
                    .set(Expiration::OneShot(spec), TimerSetTimeFlags::empty());
            }
            None => {
                let _ = self.timer.unset();
            }
        }
    }

    fn on_timer(&mut self) {
        self.feed(Input::Tick);
        let now = self.now();
        let (due, rest): (Vec<Sweep>, Vec<Sweep>) = self.sweeps.drain(..).partition(|s| s.at <= now);
        self.sweeps = rest;
        for s in due {
            // The processes the instance runs now (a post-stop, the main
            // process of a restart) are not leftovers.
            let spare = self.tracked_pids(&s.key);
            let n = kill::signal_instance(
                &kill::Scope {
                    daemon: self.me,
                    root: Some(s.root),
                    job: &s.key.job,
                    instance: &s.key.instance,
                    orphans: true,
                    cutoff: s.cutoff,
                    spare: &spare,
                },
                NixSignal::SIGKILL,
            );
            if n > 0 {
                tracing::warn!(
                    "{}: {n} process(es) still alive after kill timeout; sent SIGKILL",
                    s.key.display()
                );
            }
        }
    }

    fn on_signals(&mut self) {
        while let Ok(Some(info)) = self.signals.read_signal() {
            match NixSignal::try_from(info.ssi_signo as i32) {
                Ok(NixSignal::SIGCHLD) => self.reap(),
                Ok(NixSignal::SIGHUP) => {
                    tracing::info!("reloading configuration");
                    for change in self.conf.rescan() {
                        self.conf_change(change);
                    }
                    if let Some(logs) = self.logs.as_mut() {
                        logs.reopen();
                    }
                }
                Ok(NixSignal::SIGTERM) if self.opts.user => self.begin_shutdown("shutdown"),
                // Container managers stop a container with SIGTERM to its
                // process 1; Upstart's re-exec on SIGTERM is not
                // implemented, so the machine's init ignores it.
                Ok(NixSignal::SIGTERM) if self.opts.system == Some(Place::Namespace) => {
                    tracing::warn!("SIGTERM: shutting down (poweroff)");
                    self.begin_system_shutdown(ShutdownKind::Poweroff);
                }
                Ok(NixSignal::SIGTERM) if self.opts.system.is_some() => {
                    tracing::warn!("SIGTERM ignored: stateful re-exec is not implemented");
                }
                Ok(NixSignal::SIGINT) if self.opts.system.is_some() => self.emit_plain("control-alt-delete"),
                Ok(NixSignal::SIGPWR) if self.opts.system.is_some() => {
                    self.emit_plain("power-status-changed")
                }
                Ok(NixSignal::SIGWINCH) if self.opts.system.is_some() => self.emit_plain("keyboard-request"),
                Ok(NixSignal::SIGUSR1) => self.reconnect_bus(),
                Ok(other) => tracing::debug!("ignoring {other}"),
                Err(_) => {}
            }
        }
        // A SIGCHLD may have been coalesced with another signal's wake-up.
        self.reap();
    }

    /// Reaps every child that changed state. The raw `waitpid` is used
    /// because nix refuses (EINVAL) statuses of stops by real-time signals,
    /// which would leave a traced process stopped for good.
    fn reap(&mut self) {
        let flags = libc::WNOHANG | libc::__WALL | libc::WUNTRACED;
        loop {
            let mut raw: libc::c_int = 0;
            // SAFETY: waitpid with a valid pointer to an int.
            let pid = unsafe { libc::waitpid(-1, &mut raw, flags) };
            if pid == 0 {
                return;
            }
            if pid < 0 {
                match Errno::last() {
                    Errno::EINTR => continue,
                    Errno::ECHILD => return,
                    e => {
                        tracing::error!("waitpid: {e}");
                        return;
                    }
                }
            }
            let mut outs = Vec::new();
            let consumed = self
                .tracker
                .on_raw_status(nix::unistd::Pid::from_raw(pid), raw, &mut outs);
            for input in traced_inputs(outs) {
                self.feed(input);
            }
            if consumed {
                continue;
            }
            if libc::WIFEXITED(raw) {
                self.exited(pid, ExitStatus::Exited(libc::WEXITSTATUS(raw)));
            } else if libc::WIFSIGNALED(raw) {
                self.exited(pid, ExitStatus::Signaled(libc::WTERMSIG(raw)));
            }
        }
    }

    /// A process ended. A main process of an `expect fork|daemon` job that
    /// exits cleanly while a process of the job that it left behind lives on
    /// forked more often than declared: that process is adopted.
    fn exited(&mut self, pid: i32, status: ExitStatus) {
        if let Some((key, successor)) = self.pid_file_successor(pid) {
            tracing::info!(
                "{}: main process ({pid}) ended; adopting {successor} from its pid file",
                key.display()
            );
            self.feed(Input::MainPid { key, pid: successor });
            return;
        }
        if status == ExitStatus::Exited(0)
            && let Some((key, ProcessKind::Main)) = self.engine.process_owner(pid).cloned()
            && let Some(inst) = self.engine.instance(&key)
            && matches!(inst.conf.expect(), Expect::Fork | Expect::Daemon)
            && inst.state == State::Running
        {
            let since = self.main_started.get(&key).copied().unwrap_or(0);
            let procs = kill::scan();
            let survivors: Vec<_> = kill::instance_processes(
                &procs,
                &kill::Scope {
                    daemon: self.me,
                    root: None,
                    job: &key.job,
                    instance: &key.instance,
                    orphans: true,
                    cutoff: u64::MAX,
                    spare: &[],
                },
            )
            .into_iter()
            .filter(|p| p.pid != pid && p.ppid == self.me && p.start >= since)
            .collect();
            if let [only] = survivors.as_slice() {
                tracing::warn!(
                    "{}: main process ({pid}) exited after more forks than `expect {}` declares; adopting {}",
                    key.display(),
                    inst.conf.expect().name(),
                    only.pid
                );
                self.feed(Input::MainPid { key, pid: only.pid });
                return;
            }
        }
        self.feed(Input::Exited { pid, status });
    }

    /// `pid file PATH`: when the main process of a running instance ends,
    /// the live process that PATH names takes over if it is another one,
    /// a child of ours now (so its end will be seen), and of the job: it
    /// carries the instance's `UPSTART_JOB`/`UPSTART_INSTANCE`, or runs the
    /// same program as the same user as the main process did.
    fn pid_file_successor(&self, pid: i32) -> Option<(InstanceKey, i32)> {
        let (key, kind) = self.engine.process_owner(pid)?;
        let inst = self.engine.instance(key)?;
        if *kind != ProcessKind::Main || inst.state != State::Running || inst.goal != Goal::Start {
            return None;
        }
        let path = inst.conf.pid_file()?;
        let text = std::fs::read_to_string(path).ok()?;
        let successor: i32 = text.split_whitespace().next()?.parse().ok()?;
        if successor == pid || successor <= 1 || successor == self.me {
            return None;
        }
        let proc_ = procfs::process::Process::new(successor).ok()?;
        let stat = proc_.stat().ok()?;
        if stat.ppid != self.me {
            tracing::warn!(
                "{}: {path} names {successor}, which is not a child of init; not adopted",
                key.display()
            );
            return None;
        }
        let tagged = kill::tagged(successor, &key.job, &key.instance);
        let same = self.main_ident.get(key).is_some_and(|(uid, exe)| {
            proc_.uid().ok() == Some(*uid) && proc_.exe().ok().as_ref() == Some(exe)
        });
        if !(tagged || same) {
            tracing::warn!(
                "{}: {path} names {successor}, which is not of this job; not adopted",
                key.display()
            );
            return None;
        }
        Some((key.clone(), successor))
    }

    /// Notes who the main process of an instance is (user and program),
    /// for `pid file` adoption.
    fn note_main(&mut self, key: &InstanceKey, pid: i32) {
        if self
            .engine
            .instance(key)
            .is_none_or(|i| i.conf.pid_file().is_none())
        {
            return;
        }
        if let Ok(p) = procfs::process::Process::new(pid)
            && let (Ok(uid), Ok(exe)) = (p.uid(), p.exe())
        {
            self.main_ident.insert(key.clone(), (uid, exe));
        }
    }

    fn conf_change(&mut self, change: ConfChange) {
        match change {
            ConfChange::Load { name, conf, .. } => self.feed(Input::LoadJob { name, conf }),
            ConfChange::Remove { name } => self.feed(Input::RemoveJob { name }),
        }
    }

    /// Emits an event with no environment (from a signal).
    fn emit_plain(&mut self, name: &str) {
        tracing::info!("emitting {name}");
        self.feed(Input::Emit {
            name: name.to_string(),
            env: Vec::new(),
            by: None,
        });
    }

    /// Applies an input and everything it leads to.
    fn feed(&mut self, input: Input) {
        if let Input::Emit { name, env, .. } = &input {
            if self.opts.inject_panic_on_event.as_deref() == Some(name.as_str()) {
                panic!("injected panic on event {name} (--inject-panic-on-event)");
            }
            if name == "runlevel"
                && let Some(level) = env.iter().find_map(|e| e.strip_prefix("RUNLEVEL="))
            {
                self.runlevel = Some(level.to_string());
            }
        }
        let mut queue = VecDeque::from([input]);
        while let Some(input) = queue.pop_front() {
            match &input {
                Input::Spawned {
                    key,
                    process: ProcessKind::Main,
                    pid,
                }
                | Input::Ready { key, pid }
                | Input::MainPid { key, pid } => self.note_main(key, *pid),
                _ => {}
            }
            let effects = self.engine.step(self.now(), input);
            for effect in effects {
                self.execute(effect, &mut queue);
            }
        }
    }

    fn execute(&mut self, effect: Effect, queue: &mut VecDeque<Input>) {
        match effect {
            Effect::Spawn(s) => self.spawn(s, queue),
            Effect::Kill {
                key,
                process,
                pid,
                signal,
                tree,
            } => self.kill(&key, process, pid, signal, tree),
            Effect::Reply { to, result } => self.bus_reply(to, result),
            Effect::Signal(s) => self.bus_signal(s),
            Effect::Log { level, message } => match level {
                LogLevel::Debug => tracing::debug!("{message}"),
                LogLevel::Info => tracing::info!("{message}"),
                LogLevel::Warn => tracing::warn!("{message}"),
                LogLevel::Error => tracing::error!("{message}"),
            },
        }
    }

    fn bus_signal(&mut self, s: BusSignal) {
        self.bus_broadcast(&s);
        match s {
            BusSignal::StateChanged(key, state)
                if state != State::Spawned && self.tracker.is_tracking(&key) =>
            {
                self.tracker.forget(&key);
            }
            BusSignal::InstanceRemoved(key) => {
                self.main_started.remove(&key);
                self.main_ident.remove(&key);
            }
            _ => {}
        }
    }

    fn spawn(&mut self, s: Spawn, queue: &mut VecDeque<Input>) {
        let mut console = s.conf.console_or(self.opts.default_console);
        if console == Console::Log && self.logs.is_none() {
            console = Console::None;
        }
        let expect = s.conf.expect();
        let main = s.process == ProcessKind::Main;
        let trace = main && matches!(expect, Expect::Fork | Expect::Daemon);
        let plan = SpawnPlan {
            job: &s.key.job,
            instance: &s.key.instance,
            process: s.process,
            conf: &s.conf,
            env: &s.env,
            console,
            trace,
            cgroup_procs: None,
            session: self.opts.user,
            inherit_fd: self.bus.as_ref().and_then(|b| b.event_fd(&s.env)),
        };
        self.procs = None;
        match spawn(&plan) {
            Ok(child) => {
                let pid = child.pid;
                if let (Some(master), Some(logs)) = (child.log, self.logs.as_mut()) {
                    logs.attach(&s.key.job, &s.key.instance, master);
                }
                if let Some(feed) = child.script {
                    self.scripts.push(feed);
                }
                if main {
                    self.main_started.insert(s.key.clone(), kill::now_ticks());
                    match expect {
                        Expect::Fork => self.tracker.trace(s.key.clone(), pid, 1),
                        Expect::Daemon => self.tracker.trace(s.key.clone(), pid, 2),
                        Expect::Stop => self.tracker.watch_stop(s.key.clone(), pid),
                        Expect::None => {}
                    }
                }
                queue.push_back(Input::Spawned {
                    key: s.key,
                    process: s.process,
                    pid: pid.as_raw(),
                });
                if main && expect != Expect::None {
                    // `watch_stop` finds a child that stopped itself before
                    // we looked, continues it and keeps the `Ready` for the
                    // next status offered, which may not come soon (nor at
                    // all: a SIGCONT can cancel the stop's report): take it
                    // now, after `Spawned`.
                    let mut outs = Vec::new();
                    self.tracker.take_events(&mut outs);
                    queue.extend(traced_inputs(outs));
                }
            }
            Err(e) => queue.push_back(Input::SpawnFailed {
                key: s.key,
                process: s.process,
                error: e.to_string(),
            }),
        }
    }

    fn kill(
        &mut self,
        key: &InstanceKey,
        process: ProcessKind,
        pid: i32,
        signal: jobconf_parser::Signal,
        tree: bool,
    ) {
        let Ok(sig) = NixSignal::try_from(signal.number()) else {
            tracing::warn!("{}: cannot send signal {}", key.display(), signal.number());
            return;
        };
        if !tree {
            if let Err(e) = kill::signal_pid(pid, None, sig) {
                tracing::warn!("{}: unable to send {sig} to {pid}: {e}", key.display());
            }
            return;
        }
        if self.system_shutdown.is_some() {
            // Every process left after the jobs gets SIGTERM, then SIGKILL,
            // a moment later anyway (`check_system_shutdown`): the process
            // and its group are signalled now, without a scan of /proc
            // (~25 ms of a TCG VM's power-off). The pid is that of a child
            // not yet reaped, so it cannot have been reused.
            let pid = nix::unistd::Pid::from_raw(pid);
            if let Err(e) = nix::sys::signal::kill(pid, sig) {
                tracing::warn!("{}: unable to send {sig} to {pid}: {e}", key.display());
            }
            let _ = nix::sys::signal::killpg(pid, sig);
            return;
        }
        let cutoff = kill::now_ticks();
        let main = process == ProcessKind::Main;
        // One scan of /proc serves every kill of a loop iteration (a
        // shutdown stops every job at once); spawning invalidates it.
        let spare: Vec<i32> = self.tracked_pids(key).into_iter().filter(|p| *p != pid).collect();
        let procs = self.procs.get_or_insert_with(kill::scan);
        for p in kill::instance_processes(
            procs,
            &kill::Scope {
                daemon: self.me,
                root: Some(pid),
                job: &key.job,
                instance: &key.instance,
                orphans: main,
                cutoff,
                spare: &spare,
            },
        ) {
            let _ = kill::signal_verified(&p, sig);
        }
        if main && sig != NixSignal::SIGKILL {
            let timeout = self.engine.instance(key).map_or(5, |i| i.conf.kill_timeout());
            let at = self.now().saturating_add(timeout.saturating_mul(MICROS));
            self.sweeps.push(Sweep {
                at,
                key: key.clone(),
                root: pid,
                cutoff,
            });
        }
    }

    /// The live processes the engine tracks for an instance.
    fn tracked_pids(&self, key: &InstanceKey) -> Vec<i32> {
        self.engine
            .instance(key)
            .map(|i| ProcessKind::ALL.iter().filter_map(|k| i.pid(*k)).collect())
            .unwrap_or_default()
    }

    /// SIGTERM (`shutdown`) or `EndSession` (`logout`) to a session init:
    /// `session-end TYPE=…`, no more respawning, every instance stopped; the
    /// daemon exits when none is left or after the largest `kill timeout`
    /// (plus a second).
    fn begin_shutdown(&mut self, kind: &str) {
        if self.shutdown.is_some() {
            return;
        }
        tracing::info!("session ending ({kind})");
        self.feed(Input::SetRespawn(false));
        // The instances to stop are those running now: the jobs that
        // `session-end` starts are left to run (as in Upstart, whose stop-all
        // comes before the event is handled), bounded by the exit deadline.
        let keys = self.engine.instance_keys();
        self.feed(Input::Emit {
            name: "session-end".into(),
            env: vec![format!("TYPE={kind}")],
            by: None,
        });
        let largest = self
            .engine
            .classes()
            .values()
            .map(|c| c.conf.kill_timeout())
            .max()
            .unwrap_or(0);
        for key in keys {
            let reply = self.next_reply;
            self.next_reply += 1;
            self.feed(Input::InstanceStop {
                key,
                by: Some(Request { reply, wait: false }),
            });
        }
        self.shutdown = Some(self.now() + (largest + 1) * MICROS);
    }

    /// A system shutdown (`Shutdown` over D-Bus, or SIGTERM to the process
    /// 1 of a PID namespace): `shutdown TYPE=KIND` and `runlevel
    /// RUNLEVEL=0|6 PREVLEVEL=…` are emitted, respawning stops, every
    /// instance running is stopped (pre-stop, kill signal, `kill timeout`,
    /// post-stop), jobs the events start may run meanwhile; then every
    /// process left gets SIGTERM, then SIGKILL, and [`pid1::finish`] ends
    /// it. A second request while one is in progress changes nothing.
    pub(crate) fn begin_system_shutdown(&mut self, kind: ShutdownKind) {
        if let Some(s) = self.system_shutdown {
            tracing::info!("{}: already shutting down ({})", kind.name(), s.kind.name());
            return;
        }
        tracing::warn!("system shutdown ({}): stopping every job", kind.name());
        let largest = self
            .engine
            .classes()
            .values()
            .map(|c| c.conf.kill_timeout())
            .max()
            .unwrap_or(0);
        // Recorded first: should anything below fail, the later phases
        // still come.
        self.system_shutdown = Some(SystemShutdown {
            kind,
            phase: Phase::Jobs,
            until: self.now() + (largest + 1) * MICROS,
        });
        self.feed(Input::SetRespawn(false));
        let keys = self.engine.instance_keys();
        let prev = self.runlevel.clone().unwrap_or_else(|| "N".to_string());
        self.feed(Input::Emit {
            name: "shutdown".into(),
            env: vec![format!("TYPE={}", kind.name())],
            by: None,
        });
        self.feed(Input::Emit {
            name: "runlevel".into(),
            env: vec![
                format!("RUNLEVEL={}", kind.runlevel()),
                format!("PREVLEVEL={prev}"),
            ],
            by: None,
        });
        for key in keys {
            let reply = self.next_reply;
            self.next_reply += 1;
            self.feed(Input::InstanceStop {
                key,
                by: Some(Request { reply, wait: false }),
            });
        }
    }

    /// Moves a system shutdown on when its phase is over (each phase
    /// ends when nothing is left for it, or at its deadline).
    fn check_system_shutdown(&mut self) {
        let Some(mut s) = self.system_shutdown else { return };
        loop {
            let now = self.now();
            match s.phase {
                Phase::Jobs => {
                    let live = self.engine.classes().values().any(|c| !c.instances.is_empty());
                    if live && now < s.until {
                        break;
                    }
                    for (job, class) in self.engine.classes() {
                        for inst in class.instances.keys() {
                            tracing::warn!("job {} failed to stop", InstanceKey::new(job, inst).display());
                        }
                    }
                    // What the jobs wrote last is still in their ptys.
                    if let Some(logs) = self.logs.as_mut() {
                        logs.drain();
                    }
                    if self.rest_left() {
                        tracing::info!("sending SIGTERM to the processes left");
                    }
                    // Those entered from outside (not our children) too.
                    pid1::signal_rest(NixSignal::SIGTERM);
                    s.phase = Phase::Term;
                    s.until = now + pid1::TERM_GRACE.as_micros() as Time;
                }
                Phase::Term => {
                    let alive = self.rest_left();
                    if alive && now < s.until {
                        break;
                    }
                    if alive {
                        tracing::warn!(
                            "sending SIGKILL to the processes alive {} s after SIGTERM",
                            pid1::TERM_GRACE.as_secs()
                        );
                        pid1::signal_rest(NixSignal::SIGKILL);
                    }
                    s.phase = Phase::Kill;
                    s.until = now + pid1::KILL_GRACE.as_micros() as Time;
                }
                Phase::Kill => {
                    let alive = self.rest_left();
                    if alive && now < s.until {
                        break;
                    }
                    if alive {
                        tracing::error!("processes survived SIGKILL; going on");
                    }
                    if let Some(logs) = self.logs.as_mut() {
                        logs.drain();
                    }
                    // Replies (to the Shutdown call among them) go out
                    // before the end.
                    if let Some(b) = self.bus.take() {
                        b.flush(Duration::from_secs(1));
                    }
                    self.exit = Some(0);
                    break;
                }
            }
        }
        self.system_shutdown = Some(s);
    }

    /// Whether processes are left at the end of a system shutdown, once
    /// the children that ended are reaped.
    fn rest_left(&mut self) -> bool {
        self.reap();
        pid1::rest_alive()
    }

    fn check_shutdown(&mut self) {
        if self.system_shutdown.is_some() {
            self.check_system_shutdown();
            return;
        }
        let Some(at) = self.shutdown else { return };
        let live = self.engine.classes().values().any(|c| !c.instances.is_empty());
        if !live {
            self.exit = Some(0);
        } else if self.now() >= at {
            for (job, class) in self.engine.classes() {
                for (inst, i) in &class.instances {
                    let root = i.pid(ProcessKind::Main);
                    kill::signal_instance(
                        &kill::Scope {
                            daemon: self.me,
                            root,
                            job,
                            instance: inst,
                            orphans: true,
                            cutoff: u64::MAX,
                            spare: &[],
                        },
                        NixSignal::SIGKILL,
                    );
                    tracing::warn!("job {} failed to stop", InstanceKey::new(job, inst).display());
                }
            }
            self.exit = Some(0);
        }
    }
}

/// The engine inputs for what the `expect` tracker reports (warnings are
/// logged here).
fn traced_inputs(outs: Vec<Traced<InstanceKey>>) -> Vec<Input> {
    outs.into_iter()
        .filter_map(|out| match out {
            Traced::MainPid { key, pid } => Some(Input::MainPid {
                key,
                pid: pid.as_raw(),
            }),
            Traced::Ready { key, pid } => Some(Input::Ready {
                key,
                pid: pid.as_raw(),
            }),
            Traced::Warning { key, message } => {
                tracing::warn!("{}: {message}", key.display());
                None
            }
        })
        .collect()
}

/// Says what the daemon may do when it is not root (`caps`).
fn report_capabilities() {
    if nix::unistd::geteuid().is_root() {
        return;
    }
    match caps::read(None, caps::CapSet::Effective) {
        Ok(set) if set.is_empty() => {
            tracing::info!("running unprivileged without capabilities: jobs run as this user")
        }
        Ok(set) => tracing::info!("running unprivileged with capabilities {set:?}"),
        Err(e) => tracing::debug!("unable to read capabilities: {e}"),
    }
}

//! `expect stop|fork|daemon`: following a job's main process until it is
//! ready (spec §1.8; what goes wrong in Upstart: spec §7 item 1; measured
//! ptrace facts: `shared/notes/environment.md` §5).
//!
//! # How the daemon uses it
//!
//! The single-threaded main loop is the only caller of
//! `waitpid(-1, WNOHANG | __WALL | WUNTRACED)` and offers **every** status to
//! [`Tracker::on_status`] (or the raw status to [`Tracker::on_raw_status`],
//! see below) before treating it as an exit:
//!
//! ```text
//! spawn main (TRACEME for fork/daemon)  →  tracker.trace(key, pid, forks)   // or watch_stop
//! loop { status = waitpid(...);
//!        if !tracker.on_status(status, &mut out) && status is an exit { engine sees the exit }
//!        for t in out.drain(..) { MainPid → new main pid; Ready → leave `spawned`; Warning → log } }
//! expect timeout / stop / give up  →  tracker.forget(&key)
//! ```
//!
//! Every ptrace request must come from the thread that spawned the traced
//! process (the tracer is a thread, not a process): in the daemon that is the
//! main loop. [`Tracker::trace`] / [`Tracker::watch_stop`] are to be called
//! right after the spawn, before the next `waitpid`. (If a traced pid's exec
//! stop was offered before `trace`, it was buffered and is replayed; events
//! that produces come from [`Tracker::take_events`] or the next `on_status`.
//! An `expect stop` process's stop cannot be recovered that way.)
//!
//! # State machine (per traced task)
//!
//! * `Exec` — the TRACEME child before its exec. The plain `SIGTRAP` stop of
//!   the exec sets `TRACEFORK | TRACEVFORK | TRACECLONE | TRACEEXEC` and
//!   continues (→ `Running`). Other signals before it are re-injected.
//! * `Running` — options set. A fork/vfork event (or a clone of a new process)
//!   reads the child pid, emits [`Traced::MainPid`], **detaches the parent**
//!   (and releases its other threads) and tracks the child (→ `FirstStop`), as
//!   Upstart does. An exec event after ≥ 1 fork detaches and emits
//!   [`Traced::Ready`]; before any fork it is allowed (a shell `exec`ing the
//!   daemon). Signal-delivery stops are re-injected; group-stops are handled
//!   with `PTRACE_LISTEN` (see below).
//! * `FirstStop` — auto-attached child whose kernel `SIGSTOP` (or
//!   `PTRACE_EVENT_STOP` for seized tracers) has not been seen yet. At that stop
//!   the fork is counted; when the count reaches the declared forks (1 for
//!   `fork`, 2 for `daemon`) the child is detached and [`Traced::Ready`] is
//!   emitted; otherwise it continues (→ `Running`). The kernel `SIGSTOP` is
//!   always swallowed; a signal that happens to be reported before it is
//!   re-injected and the `SIGSTOP` is still waited for.
//!
//! A vfork counts as a fork (`TRACEVFORK`, so that daemons that re-exec
//! themselves through `vfork`/`posix_spawn` are followed). The flip side: a
//! main process that runs a helper with `system()`/`posix_spawn()` *before*
//! daemonizing has that helper counted (and its exec ends tracing), where
//! Upstart, which set only `TRACEFORK`, ignored vfork children.
//!
//! **Ordering race.** A new child's first stop can be reported before its
//! parent's `PTRACE_EVENT_FORK` (~6 % of runs on an idle machine; up to half
//! of the forks in this module's tests under load). Stops of pids we do not know
//! yet, but which are traced (`TracerPid` ≠ 0), are buffered together with
//! their parent (or thread-group leader) and replayed when the fork event
//! names them. If that parent dies before naming them (it was `SIGKILL`ed in
//! the event stop), they are detached.
//!
//! # Threads
//!
//! `TRACECLONE` is set so that `clone()`s of *processes* (no `CLONE_THREAD`,
//! exit signal ≠ `SIGCHLD`: reported as `PTRACE_EVENT_CLONE`, not `FORK`) are
//! followed and counted like forks. A clone whose new task is in the parent's
//! thread group (`Tgid` in `/proc/TID/status`; unreadable ⇒ assumed a thread)
//! is a thread: it is **never counted**, but it stays traced while its process
//! is the job's main process, so that a daemon that forks (or `vfork`+`exec`s,
//! like Go's runtime) from a non-main thread is still followed. When the
//! process stops being the main one (it forked, or tracking ended), its
//! threads are released like everything else (see *forget*).
//!
//! # Group-stops
//!
//! The main process is attached with `PTRACE_TRACEME`, and children inherit
//! that attach mode. `PTRACE_LISTEN` only works on `PTRACE_SEIZE`d tracees,
//! so it is tried (it is what keeps a seized tracee stopped) and, when the
//! kernel refuses it, the tracee is resumed with no signal — the stop is lost,
//! exactly as under Upstart, and a [`Traced::Warning`] says so. Leaving it in
//! the ptrace-stop instead would hang the job: `SIGCONT` does not wake a
//! non-seized tracee.
//!
//! # More forks than declared
//!
//! After [`Traced::Ready`] nothing of the job is traced any more, so extra
//! forks are not seen: the job's main pid is the child at which the count was
//! reached. If that process then forks again and exits, the exit is an exit of
//! the job's main process. The daemon (PID 1 or a child subreaper, so orphans
//! come to it) then looks for a surviving process of the job with
//! [`find_adoptable`] — a child of ours whose environment carries the job's
//! `UPSTART_JOB` / `UPSTART_INSTANCE` — and adopts it as main with a warning
//! (the lead's plan), instead of Upstart's "wrong pid tracked".
//!
//! # forget
//!
//! [`Tracker::forget`] detaches everything of the job. A task that is in a
//! ptrace-stop (reported or not) is detached at once: its pending signal is
//! re-injected, the kernel's own traps (exec `SIGTRAP`, the first `SIGSTOP` of
//! an auto-attached child) are swallowed, and a pending fork event's child is
//! released as well. A task that is running cannot be detached, so it gets a
//! thread-directed `SIGSTOP` (`tgkill`; `PTRACE_INTERRUPT` would need SEIZE) and
//! is detached — with that `SIGSTOP` swallowed — at its next stop, while
//! other stops on the way are handled normally (forks' children are released
//! too; and should a `SIGCONT` flush our `SIGSTOP` before it is delivered —
//! seen in `/proc/TID/status` — the task is detached at whatever stop comes
//! next). Simply forgetting was rejected: a job we stop tracing is not always
//! killed (and a tracee that stops with nobody continuing it stays in `t`
//! state forever). So after `forget` the job's processes run untraced and none
//! is left in a ptrace-stop, as long as the main loop keeps offering statuses.
//! An `expect stop` watch is just dropped (that process is not traced).
//!
//! # nix and real-time signals
//!
//! `nix::sys::wait::waitpid` fails with `EINVAL` (and loses the status) when a
//! stop carries a real-time signal, which would leave a tracee stopped for
//! good. The main loop should therefore call `libc::waitpid` and pass the raw
//! status to [`Tracker::on_raw_status`] (or convert it with
//! `WaitStatus::from_raw` itself and call this only on failure).

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::{OsStr, c_void};
use std::fmt::Debug;

use nix::errno::Errno;
use nix::sys::ptrace::{self, Event, Options, Request, RequestType};
use nix::sys::signal::{self, Signal};
use nix::sys::wait::WaitStatus;
use nix::unistd::Pid;

/// What the tracker tells the engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Traced<K> {
    /// The tracked main pid changed (a fork was followed): from now on `pid` is the job's main process; the old one's exit is not the job's.
    MainPid { key: K, pid: Pid },
    /// The expected state was reached: `pid` is the main process; the job may leave `spawned`.
    Ready { key: K, pid: Pid },
    /// Something worth a warning in the log (more forks than declared, a pid that vanished, …).
    Warning { key: K, message: String },
}

/// How many forks an `expect` stanza declares: `fork` 1, `daemon` 2; `None`
/// for `none` and `stop` (not traced).
pub fn forks_for(expect: jobconf_parser::Expect) -> Option<u32> {
    match expect {
        jobconf_parser::Expect::Fork => Some(1),
        jobconf_parser::Expect::Daemon => Some(2),
        jobconf_parser::Expect::None | jobconf_parser::Expect::Stop => None,
    }
}

/// Processes that may be a job's surviving main process: children of
/// `our_pid` (we are PID 1 or a subreaper, so a daemon whose parents exited is
/// ours) whose environment has `UPSTART_JOB=<job>` and
/// `UPSTART_INSTANCE=<instance>` (`job_env_marker = (job, instance)`; the
/// instance is empty for singleton jobs). Zombies are skipped. Environments
/// are readable only for our own uid's processes unless we are root; others
/// are skipped. Sorted by pid.
pub fn find_adoptable(our_pid: Pid, job_env_marker: (&str, &str)) -> Vec<Pid> {
    let (job, instance) = job_env_marker;
    let Ok(all) = procfs::process::all_processes() else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for process in all.flatten() {
        let Ok(stat) = process.stat() else { continue };
        if stat.ppid != our_pid.as_raw() || stat.state == 'Z' || stat.state == 'X' {
            continue;
        }
        let Ok(env) = process.environ() else { continue };
        if env.get(OsStr::new("UPSTART_JOB")).map(|v| v.as_os_str()) == Some(OsStr::new(job))
            && env.get(OsStr::new("UPSTART_INSTANCE")).map(|v| v.as_os_str()) == Some(OsStr::new(instance))
        {
            found.push(Pid::from_raw(process.pid));
        }
    }
    found.sort();
    found
}

/// A stop as `waitpid` (or `PTRACE_GETSIGINFO`) describes it, with raw signal
/// numbers (real-time signals included).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// `WIFSTOPPED` with no event: a signal-delivery-stop, or a group-stop of a
    /// non-seized tracee (told apart by `PTRACE_GETSIGINFO` failing with EINVAL).
    Signal(i32),
    /// Known to be a group-stop of a non-seized tracee (from `PTRACE_GETSIGINFO`).
    Group,
    /// `PTRACE_EVENT_*` other than `PTRACE_EVENT_STOP`.
    Event(i32),
    /// `PTRACE_EVENT_STOP` (seized tracees: group-stop, new child, interrupt) with its signal.
    Seized(i32),
    /// A syscall-stop (we never ask for them).
    Syscall,
}

impl Stop {
    fn from_event(sig: i32, event: i32) -> Stop {
        if event == Event::PTRACE_EVENT_STOP as i32 {
            Stop::Seized(sig)
        } else {
            Stop::Event(event)
        }
    }
}

/// Where a traced task of a job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// TRACEME'd, before the `SIGTRAP` of its exec; options not set yet.
    Exec,
    /// Auto-attached by a fork/vfork/clone event; the kernel's `SIGSTOP` is still pending.
    FirstStop,
    /// Options set, running.
    Running,
}

/// How a task we no longer want is let go (see `Tracker::release`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Release {
    /// Detach at the exec `SIGTRAP` (swallowed).
    Exec,
    /// Detach at the kernel's first `SIGSTOP` / `PTRACE_EVENT_STOP` (swallowed).
    FirstStop,
    /// We sent it a `SIGSTOP`: detach at that stop (swallowed).
    OurStop,
    /// It is in a stop right now with nothing of ours pending: detach at once.
    Now,
}

#[derive(Debug, Clone)]
struct Task<K> {
    key: K,
    /// Thread-group id (the process) the task belongs to.
    tgid: Pid,
    phase: Phase,
    /// A thread of the job's process, not a forked process: never counted.
    thread: bool,
}

#[derive(Debug, Clone)]
struct Job {
    forks: u32,
    seen: u32,
    main: Pid,
}

/// A stop of a pid that no fork event has named yet.
#[derive(Debug, Clone, Copy)]
struct Early {
    stop: Stop,
    /// Its parent (or thread-group leader for a thread) when it was buffered.
    owner: Option<Pid>,
}

/// Follows the main processes of `expect stop|fork|daemon` jobs. `K` is the
/// daemon's instance key. See the module documentation.
#[derive(Debug)]
pub struct Tracker<K> {
    jobs: BTreeMap<K, Job>,
    tasks: BTreeMap<Pid, Task<K>>,
    /// `expect stop`: untraced main processes we wait to stop themselves.
    stops: BTreeMap<Pid, K>,
    /// Traced tasks we are letting go of.
    releasing: BTreeMap<Pid, Release>,
    /// Stops of traced pids not named yet (the ordering race).
    early: BTreeMap<Pid, Early>,
    /// Output produced outside `on_status` (`trace`), handed out by `take_events` / the next `on_status`.
    deferred: Vec<Traced<K>>,
    early_replayed: u64,
}

impl<K: Clone + Ord + Debug> Default for Tracker<K> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: Clone + Ord + Debug> Tracker<K> {
    pub fn new() -> Self {
        Tracker {
            jobs: BTreeMap::new(),
            tasks: BTreeMap::new(),
            stops: BTreeMap::new(),
            releasing: BTreeMap::new(),
            early: BTreeMap::new(),
            deferred: Vec::new(),
            early_replayed: 0,
        }
    }

    /// A traced main process (TRACEME) for `expect fork` (1 fork) or `expect daemon` (2 forks).
    ///
    /// `forks == 0` makes the exec trap itself the ready point. Tracing a key
    /// that is already tracked first forgets the old one.
    pub fn trace(&mut self, key: K, pid: Pid, forks: u32) {
        if self.is_tracking(&key) {
            self.forget(&key);
        }
        self.jobs.insert(
            key.clone(),
            Job {
                forks,
                seen: 0,
                main: pid,
            },
        );
        self.tasks.insert(
            pid,
            Task {
                key,
                tgid: pid,
                phase: Phase::Exec,
                thread: false,
            },
        );
        let mut out = Vec::new();
        self.replay(pid, &mut out);
        self.deferred.append(&mut out);
    }

    /// An untraced main process for `expect stop`: wait for it to stop itself (SIGSTOP), then SIGCONT it and report Ready.
    ///
    /// As in Upstart any job-control stop counts. Must be called before the
    /// main loop's next `waitpid`: the stop of an untraced process is reported
    /// once, and not at all any more once someone has continued it.
    pub fn watch_stop(&mut self, key: K, pid: Pid) {
        if self.is_tracking(&key) {
            self.forget(&key);
        }
        self.stops.insert(pid, key);
    }

    /// Hand out events produced outside `on_status`: by `trace` replaying a
    /// stop offered before it was called (e.g. `Ready` at once for
    /// `forks == 0`). `on_status` hands them out first thing too.
    pub fn take_events(&mut self, out: &mut Vec<Traced<K>>) {
        out.append(&mut self.deferred);
    }

    /// Every status the reaper got. Returns true when the status was a stop/trace event consumed here (the reaper must not treat it as an exit); false for exits and for pids it does not know (an exit of a traced pid also ends its tracking, and still returns false so the exit reaches the engine).
    pub fn on_status(&mut self, status: WaitStatus, out: &mut Vec<Traced<K>>) -> bool {
        out.append(&mut self.deferred);
        match status {
            WaitStatus::Exited(pid, _) | WaitStatus::Signaled(pid, _, _) => {
                self.on_exit(pid, out);
                false
            }
            WaitStatus::Stopped(pid, sig) => self.on_stop(pid, Stop::Signal(sig as i32), out),
            WaitStatus::PtraceEvent(pid, sig, event) => {
                self.on_stop(pid, Stop::from_event(sig as i32, event), out)
            }
            WaitStatus::PtraceSyscall(pid) => self.on_stop(pid, Stop::Syscall, out),
            WaitStatus::Continued(pid) => self.knows(pid),
            WaitStatus::StillAlive => false,
        }
    }

    /// [`Tracker::on_status`] for a raw `waitpid` status: also handles stops
    /// with real-time signals, which `WaitStatus::from_raw` rejects.
    pub fn on_raw_status(&mut self, pid: Pid, raw: libc::c_int, out: &mut Vec<Traced<K>>) -> bool {
        out.append(&mut self.deferred);
        if libc::WIFEXITED(raw) || libc::WIFSIGNALED(raw) {
            self.on_exit(pid, out);
            false
        } else if libc::WIFSTOPPED(raw) {
            let sig = libc::WSTOPSIG(raw);
            let event = (raw >> 16) & 0xffff;
            let stop = if sig == libc::SIGTRAP | 0x80 {
                Stop::Syscall
            } else if event != 0 {
                Stop::from_event(sig, event)
            } else {
                Stop::Signal(sig)
            };
            self.on_stop(pid, stop, out)
        } else if libc::WIFCONTINUED(raw) {
            self.knows(pid)
        } else {
            false
        }
    }

    /// The job stopped or gave up: detach from everything traced for `key`
    /// (see the module documentation, *forget*). Stops still to come from
    /// those processes are consumed by `on_status`. An `expect stop` watch is
    /// simply dropped (nothing is traced).
    pub fn forget(&mut self, key: &K) {
        self.jobs.remove(key);
        self.stops.retain(|_, k| k != key);
        let tids: Vec<Pid> = self
            .tasks
            .iter()
            .filter(|(_, t)| &t.key == key)
            .map(|(p, _)| *p)
            .collect();
        let mut owners = BTreeSet::new();
        for tid in tids {
            if let Some(task) = self.tasks.remove(&tid) {
                owners.insert(tid);
                owners.insert(task.tgid);
                self.release(tid, task.tgid, task.phase);
            }
        }
        self.release_orphans(&owners);
    }

    pub fn is_tracking(&self, key: &K) -> bool {
        self.jobs.contains_key(key) || self.stops.values().any(|k| k == key)
    }

    /// Nothing is traced, watched, being released or buffered.
    pub fn is_idle(&self) -> bool {
        self.jobs.is_empty()
            && self.tasks.is_empty()
            && self.stops.is_empty()
            && self.releasing.is_empty()
            && self.early.is_empty()
    }

    /// How many stops came before the tracker knew their pid and were
    /// replayed later: new children reported before the fork event that named
    /// them (the ordering race), or a `trace` called after the first stop.
    pub fn early_stops(&self) -> u64 {
        self.early_replayed
    }

    fn knows(&self, pid: Pid) -> bool {
        self.tasks.contains_key(&pid)
            || self.stops.contains_key(&pid)
            || self.releasing.contains_key(&pid)
            || self.early.contains_key(&pid)
    }

    fn on_exit(&mut self, pid: Pid, out: &mut Vec<Traced<K>>) {
        self.early.remove(&pid);
        self.releasing.remove(&pid);
        self.stops.remove(&pid);
        let mut key = None;
        if let Some(task) = self.tasks.remove(&pid) {
            if let Some(job) = self.jobs.get(&task.key)
                && job.main == pid
                && !task.thread
            {
                out.push(Traced::Warning {
                    key: task.key.clone(),
                    message: format!(
                        "main process {pid} ended after {} of the {} expected forks; no longer tracing it",
                        job.seen, job.forks
                    ),
                });
                self.forget(&task.key);
            }
            key = Some(task.key);
        }
        // Children it forked whose fork event will now never come.
        let orphans: Vec<Pid> = self
            .early
            .iter()
            .filter(|(_, e)| e.owner == Some(pid))
            .map(|(p, _)| *p)
            .collect();
        for child in orphans {
            if let Some(key) = &key {
                out.push(Traced::Warning {
                    key: key.clone(),
                    message: format!(
                        "process {child} was forked by {pid}, which died before reporting it; detached"
                    ),
                });
            }
            self.release(child, child, Phase::FirstStop);
        }
    }

    fn on_stop(&mut self, pid: Pid, stop: Stop, out: &mut Vec<Traced<K>>) -> bool {
        if let Some(key) = self.stops.remove(&pid) {
            self.stopped_itself(key, pid, out);
        } else if let Some(task) = self.tasks.get(&pid).cloned() {
            self.task_stop(pid, task, stop, out);
        } else if let Some(how) = self.releasing.remove(&pid) {
            self.release_stop(pid, how, stop);
        } else {
            return self.unknown_stop(pid, stop);
        }
        true
    }

    /// `expect stop`: the main process stopped itself.
    fn stopped_itself(&mut self, key: K, pid: Pid, out: &mut Vec<Traced<K>>) {
        if let Err(e) = signal::kill(pid, Signal::SIGCONT) {
            out.push(Traced::Warning {
                key: key.clone(),
                message: format!("SIGCONT to {pid} failed: {e}"),
            });
        }
        out.push(Traced::Ready { key, pid });
    }

    /// A stop of a pid nobody named yet: buffer it if it is traced.
    fn unknown_stop(&mut self, pid: Pid, stop: Stop) -> bool {
        let (traced, owner) = match procfs::process::Process::new(pid.as_raw()).and_then(|p| p.status()) {
            Ok(st) => {
                let owner = if st.tgid != pid.as_raw() { st.tgid } else { st.ppid };
                (st.tracerpid != 0, Some(Pid::from_raw(owner)))
            }
            Err(_) => (true, None),
        };
        if !traced {
            // A plain job-control stop of an untraced child: not ours.
            return false;
        }
        tracing::debug!(%pid, ?stop, ?owner, "stop of a traced pid not named yet; buffered");
        self.early.insert(pid, Early { stop, owner });
        true
    }

    fn replay(&mut self, pid: Pid, out: &mut Vec<Traced<K>>) {
        if let Some(early) = self.early.remove(&pid) {
            self.early_replayed += 1;
            tracing::debug!(%pid, stop = ?early.stop, "replaying a buffered stop");
            self.on_stop(pid, early.stop, out);
        }
    }

    fn task_stop(&mut self, pid: Pid, task: Task<K>, stop: Stop, out: &mut Vec<Traced<K>>) {
        match (task.phase, stop) {
            (Phase::Exec, Stop::Signal(libc::SIGTRAP)) => self.exec_trap(pid, task, out),
            (Phase::Exec, Stop::Event(ev)) if ev == Event::PTRACE_EVENT_EXEC as i32 => {
                self.exec_trap(pid, task, out)
            }
            (Phase::FirstStop, Stop::Signal(libc::SIGSTOP) | Stop::Seized(_)) => {
                self.first_stop(pid, task, out)
            }
            (Phase::Running, Stop::Event(ev)) if FORK_EVENTS.contains(&ev) => self.forked(pid, task, ev, out),
            (Phase::Running, Stop::Event(ev)) if ev == Event::PTRACE_EVENT_EXEC as i32 => {
                self.execed(pid, task, out)
            }
            (_, Stop::Signal(sig)) => self.deliver(pid, sig, Some(&task.key), out),
            (_, Stop::Group | Stop::Seized(_)) => self.group_stop(pid, stop, Some(&task.key), out),
            (_, Stop::Event(_) | Stop::Syscall) => resume(pid, 0),
        }
    }

    /// The first stop of the TRACEME child: its exec.
    fn exec_trap(&mut self, pid: Pid, task: Task<K>, out: &mut Vec<Traced<K>>) {
        if self.jobs.get(&task.key).is_some_and(|j| j.forks == 0) {
            self.finish(task.key, pid, out);
            return;
        }
        let options = Options::PTRACE_O_TRACEFORK
            | Options::PTRACE_O_TRACEVFORK
            | Options::PTRACE_O_TRACECLONE
            | Options::PTRACE_O_TRACEEXEC;
        if let Err(e) = ptrace::setoptions(pid, options) {
            out.push(Traced::Warning {
                key: task.key.clone(),
                message: format!("cannot set ptrace options on {pid}: {e}"),
            });
        }
        self.set_phase(pid, Phase::Running);
        resume(pid, 0);
    }

    /// The first stop of an auto-attached child: count it if it is a process.
    fn first_stop(&mut self, pid: Pid, task: Task<K>, out: &mut Vec<Traced<K>>) {
        if !task.thread {
            let Some(job) = self.jobs.get_mut(&task.key) else {
                self.tasks.remove(&pid);
                self.release(pid, task.tgid, Phase::FirstStop);
                return;
            };
            job.seen += 1;
            if job.seen >= job.forks {
                self.finish(task.key, pid, out);
                return;
            }
        }
        self.set_phase(pid, Phase::Running);
        resume(pid, 0);
    }

    fn forked(&mut self, pid: Pid, task: Task<K>, event: i32, out: &mut Vec<Traced<K>>) {
        let child = match ptrace::getevent(pid) {
            Ok(child) => Pid::from_raw(child as libc::pid_t),
            Err(e) => {
                out.push(Traced::Warning {
                    key: task.key.clone(),
                    message: format!("cannot read the new child of {pid}: {e}"),
                });
                resume(pid, 0);
                return;
            }
        };
        let thread = event == Event::PTRACE_EVENT_CLONE as i32 && tgid_of(child) != Some(child);
        if thread {
            tracing::debug!(%pid, %child, "new thread; traced, not counted");
            self.tasks.insert(
                child,
                Task {
                    key: task.key.clone(),
                    tgid: task.tgid,
                    phase: Phase::FirstStop,
                    thread: true,
                },
            );
            resume(pid, 0);
        } else {
            tracing::debug!(%pid, %child, event, "fork followed");
            if let Some(job) = self.jobs.get_mut(&task.key) {
                job.main = child;
            }
            out.push(Traced::MainPid {
                key: task.key.clone(),
                pid: child,
            });
            self.tasks.insert(
                child,
                Task {
                    key: task.key.clone(),
                    tgid: child,
                    phase: Phase::FirstStop,
                    thread: false,
                },
            );
            // As Upstart: let the parent go (it is expected to exit) and follow the child.
            self.tasks.remove(&pid);
            detach(pid, 0);
            let rest: Vec<Pid> = self
                .tasks
                .iter()
                .filter(|(_, t)| t.key == task.key && t.tgid == task.tgid)
                .map(|(p, _)| *p)
                .collect();
            for tid in rest {
                if let Some(t) = self.tasks.remove(&tid) {
                    self.release(tid, t.tgid, t.phase);
                }
            }
        }
        self.replay(child, out);
    }

    fn execed(&mut self, pid: Pid, task: Task<K>, out: &mut Vec<Traced<K>>) {
        // A non-leader thread that execs takes over the leader's tid; its own
        // tid disappears without an exit status.
        if let Ok(former) = ptrace::getevent(pid) {
            let former = Pid::from_raw(former as libc::pid_t);
            if former != pid {
                self.tasks.remove(&former);
                self.releasing.remove(&former);
            }
        }
        if self.jobs.get(&task.key).is_some_and(|j| j.seen >= 1) {
            self.finish(task.key, pid, out);
        } else {
            resume(pid, 0);
        }
    }

    /// The expected state is reached at `pid` (in a ptrace-stop): let everything go.
    fn finish(&mut self, key: K, pid: Pid, out: &mut Vec<Traced<K>>) {
        self.tasks.remove(&pid);
        if let Err(e) = raw_ptrace(Request::PTRACE_DETACH, pid, 0) {
            out.push(Traced::Warning {
                key: key.clone(),
                message: format!("cannot detach from {pid}: {e}"),
            });
        }
        self.forget(&key);
        out.push(Traced::Ready { key, pid });
    }

    /// A `Stopped(sig)` of a running task: re-inject, or handle a group-stop.
    fn deliver(&mut self, pid: Pid, sig: i32, key: Option<&K>, out: &mut Vec<Traced<K>>) {
        if is_group_stop(pid, Stop::Signal(sig)) {
            self.group_stop(pid, Stop::Group, key, out);
        } else {
            resume(pid, sig);
        }
    }

    /// A group-stop (or `PTRACE_EVENT_STOP`): keep it stopped with
    /// `PTRACE_LISTEN` when the kernel allows it, else resume (module docs).
    fn group_stop(&mut self, pid: Pid, stop: Stop, key: Option<&K>, out: &mut Vec<Traced<K>>) {
        if let Stop::Seized(sig) = stop
            && !is_stop_signal(sig)
        {
            // A PTRACE_EVENT_STOP trap that is not a group-stop (interrupt, SIGCONT).
            resume(pid, 0);
            return;
        }
        if raw_ptrace(Request::PTRACE_LISTEN, pid, 0).is_ok() {
            return;
        }
        resume(pid, 0);
        if let Some(key) = key {
            out.push(Traced::Warning {
                key: key.clone(),
                message: format!(
                    "process {pid} was stopped by a job-control signal while traced; \
                     a TRACEME tracee cannot be kept stopped (PTRACE_LISTEN needs PTRACE_SEIZE), resumed it"
                ),
            });
        }
    }

    fn set_phase(&mut self, pid: Pid, phase: Phase) {
        if let Some(task) = self.tasks.get_mut(&pid) {
            task.phase = phase;
        }
    }

    /// Let go of a traced task that is no longer wanted (already removed
    /// from `tasks`). `phase` says which kernel trap may still be pending.
    fn release(&mut self, tid: Pid, tgid: Pid, phase: Phase) {
        let stop = match self.early.remove(&tid) {
            Some(early) => Some(early.stop),
            None => current_stop(tid),
        };
        match (stop, phase) {
            (Some(stop), Phase::Exec) => self.release_stop(tid, Release::Exec, stop),
            (Some(stop), Phase::FirstStop) => self.release_stop(tid, Release::FirstStop, stop),
            (Some(stop), Phase::Running) => self.release_stop(tid, Release::Now, stop),
            (None, Phase::Exec) => {
                self.releasing.insert(tid, Release::Exec);
            }
            (None, Phase::FirstStop) => {
                self.releasing.insert(tid, Release::FirstStop);
            }
            (None, Phase::Running) => {
                // SAFETY: tgkill only sends a signal; tgid/tid are plain integers
                // (a stale pair fails with ESRCH instead of hitting another thread).
                let sent =
                    unsafe { libc::syscall(libc::SYS_tgkill, tgid.as_raw(), tid.as_raw(), libc::SIGSTOP) };
                if sent == 0 {
                    self.releasing.insert(tid, Release::OurStop);
                } else {
                    tracing::debug!(%tid, "released task is gone");
                }
            }
        }
    }

    /// A stop of a task being released (not in `releasing` during the call).
    fn release_stop(&mut self, tid: Pid, how: Release, stop: Stop) {
        let group = is_group_stop(tid, stop);
        let mut how = how;
        if how == Release::OurStop
            && !matches!(stop, Stop::Signal(libc::SIGSTOP) | Stop::Group)
            && !sigstop_pending(tid)
        {
            // Our SIGSTOP was flushed by a SIGCONT: nothing of ours is pending any more.
            how = Release::Now;
        }
        match (how, stop) {
            (Release::Exec, Stop::Signal(sig)) if sig != libc::SIGTRAP && !group => detach(tid, sig),
            (Release::Exec, _) => detach(tid, 0),
            (Release::FirstStop, Stop::Signal(libc::SIGSTOP) | Stop::Seized(_) | Stop::Group) => {
                detach(tid, 0)
            }
            (Release::OurStop, Stop::Signal(libc::SIGSTOP) | Stop::Group) => detach(tid, 0),
            (Release::Now, Stop::Event(ev)) | (Release::OurStop, Stop::Event(ev))
                if FORK_EVENTS.contains(&ev) =>
            {
                if let Ok(child) = ptrace::getevent(tid) {
                    let child = Pid::from_raw(child as libc::pid_t);
                    self.release(child, child, Phase::FirstStop);
                }
                if how == Release::Now {
                    detach(tid, 0);
                } else {
                    resume(tid, 0);
                    self.releasing.insert(tid, how);
                }
            }
            (Release::Now, Stop::Signal(sig)) if !group => detach(tid, sig),
            (Release::Now, _) => detach(tid, 0),
            // FirstStop / OurStop: the SIGSTOP is still to come; carry on until it does.
            (_, Stop::Signal(sig)) if !group => {
                resume(tid, sig);
                self.releasing.insert(tid, how);
            }
            (_, Stop::Signal(_) | Stop::Seized(_)) => {
                if !matches!(stop, Stop::Seized(sig) if !is_stop_signal(sig))
                    && raw_ptrace(Request::PTRACE_LISTEN, tid, 0).is_ok()
                {
                    // Stays stopped; SIGCONT will report it again.
                } else {
                    resume(tid, 0);
                }
                self.releasing.insert(tid, how);
            }
            (_, Stop::Event(_) | Stop::Syscall) => {
                resume(tid, 0);
                self.releasing.insert(tid, how);
            }
        }
    }

    /// Buffered stops whose owner is one of `owners`: their fork event will
    /// not be handled by us any more.
    fn release_orphans(&mut self, owners: &BTreeSet<Pid>) {
        let orphans: Vec<Pid> = self
            .early
            .iter()
            .filter(|(_, e)| e.owner.is_some_and(|o| owners.contains(&o)))
            .map(|(p, _)| *p)
            .collect();
        for child in orphans {
            self.release(child, child, Phase::FirstStop);
        }
    }
}

/// Events that create a task.
const FORK_EVENTS: [i32; 3] = [
    Event::PTRACE_EVENT_FORK as i32,
    Event::PTRACE_EVENT_VFORK as i32,
    Event::PTRACE_EVENT_CLONE as i32,
];

fn is_stop_signal(sig: i32) -> bool {
    matches!(sig, libc::SIGSTOP | libc::SIGTSTP | libc::SIGTTIN | libc::SIGTTOU)
}

/// Whether a stop is a group-stop of a non-seized tracee: `PTRACE_GETSIGINFO`
/// fails with EINVAL there (and only there).
fn is_group_stop(pid: Pid, stop: Stop) -> bool {
    match stop {
        Stop::Group => true,
        Stop::Signal(sig) if is_stop_signal(sig) => ptrace::getsiginfo(pid) == Err(Errno::EINVAL),
        _ => false,
    }
}

/// The ptrace-stop `tid` is in right now, reported to us or not; `None` when it
/// is running (or gone).
fn current_stop(tid: Pid) -> Option<Stop> {
    match ptrace::getsiginfo(tid) {
        Ok(info) => {
            let event = info.si_code >> 8;
            if info.si_signo == libc::SIGTRAP && event != 0 {
                Some(Stop::from_event(info.si_signo, event))
            } else if event == Event::PTRACE_EVENT_STOP as i32 {
                Some(Stop::Seized(info.si_signo))
            } else {
                Some(Stop::Signal(info.si_signo))
            }
        }
        Err(Errno::EINVAL) => Some(Stop::Group),
        Err(_) => None,
    }
}

/// Whether a `SIGSTOP` is pending for `tid` (thread or process queue);
/// true when that cannot be read.
fn sigstop_pending(tid: Pid) -> bool {
    let bit = 1u64 << (libc::SIGSTOP - 1);
    procfs::process::Process::new(tid.as_raw())
        .and_then(|p| p.status())
        .map_or(true, |s| (s.sigpnd | s.shdpnd) & bit != 0)
}

fn tgid_of(pid: Pid) -> Option<Pid> {
    procfs::process::Process::new(pid.as_raw())
        .and_then(|p| p.status())
        .ok()
        .map(|s| Pid::from_raw(s.tgid))
}

/// A ptrace request whose data is a signal number (raw, so real-time signals work).
fn raw_ptrace(request: Request, pid: Pid, sig: i32) -> nix::Result<()> {
    // SAFETY: CONT/DETACH/LISTEN take no pointer: `addr` is ignored and `data`
    // is a signal number passed as an integer, never dereferenced.
    let res = unsafe {
        libc::ptrace(
            request as RequestType,
            pid.as_raw(),
            std::ptr::null_mut::<c_void>(),
            sig as usize as *mut c_void,
        )
    };
    Errno::result(res).map(drop)
}

fn resume(pid: Pid, sig: i32) {
    if let Err(e) = raw_ptrace(Request::PTRACE_CONT, pid, sig) {
        // ESRCH: killed while stopped; its exit is on its way.
        tracing::debug!(%pid, sig, %e, "PTRACE_CONT failed");
    }
}

fn detach(pid: Pid, sig: i32) {
    if let Err(e) = raw_ptrace(Request::PTRACE_DETACH, pid, sig) {
        tracing::debug!(%pid, sig, %e, "PTRACE_DETACH failed");
    }
}

#[cfg(test)]
mod tests {
    //! Each test spawns this very test binary as a helper daemon (see
    //! `helper_entry`) and drives a little reap loop like the daemon's.
    //!
    //! Isolation: the tracer of a process is the *thread* that spawned it, and
    //! libtest runs tests on parallel threads, so the reap loop uses
    //! `__WNOTHREAD`: it sees only this test thread's children and tracees.
    //! Orphans reparented to us (we are a subreaper) belong to the process's
    //! main thread; they are reaped by pid in `cleanup`.

    use super::*;
    use std::collections::BTreeSet;
    use std::os::unix::process::CommandExt;
    use std::path::{Path, PathBuf};
    use std::process::{Command, Stdio};
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::{Duration, Instant};

    use nix::sys::wait::{WaitPidFlag, waitpid};
    use nix::unistd::getpid;

    const HELPER_ENV: &str = "UPSHOT_PTRACE_TEST_HELPER";
    const INSTANCE: &str = "i1";

    // SAFETY: a constructor in .init_array runs before main in every run of
    // the test binary. It only reads one environment variable and returns at
    // once unless that variable is set, in which case the process becomes a
    // helper and never returns to libtest (it `_exit`s or `exec`s).
    #[used]
    #[unsafe(link_section = ".init_array")]
    static HELPER_CTOR: extern "C" fn() = helper_entry;

    static USR1: AtomicU32 = AtomicU32::new(0);

    extern "C" fn on_usr1(_: libc::c_int) {
        USR1.fetch_add(1, Ordering::SeqCst);
    }

    /// The helper daemon. `UPSHOT_PTRACE_TEST_HELPER` holds words:
    /// `forks=N` (fork N times, each parent exiting, `setsid` after the first),
    /// `pidfile=PATH` (the final process writes "PID USR1COUNT" there),
    /// `usr1` (raise a handled SIGUSR1 first), `stop-first` (raise SIGSTOP
    /// first), `delay-ms=N` (sleep before forking), `thread` (fork from a
    /// second thread), `stop-final` (raise SIGSTOP before writing the pid
    /// file), `exec-sleep` (exec /bin/sleep after writing it).
    extern "C" fn helper_entry() {
        let Some(spec) = std::env::var_os(HELPER_ENV) else {
            return;
        };
        let spec = spec.to_string_lossy().into_owned();
        let mut forks = 0;
        let mut pidfile = PathBuf::new();
        let mut delay = Duration::ZERO;
        let flag = |name: &str| spec.split_whitespace().any(|w| w == name);
        for word in spec.split_whitespace() {
            if let Some(n) = word.strip_prefix("forks=") {
                forks = n.parse().unwrap_or(0);
            } else if let Some(p) = word.strip_prefix("pidfile=") {
                pidfile = PathBuf::from(p);
            } else if let Some(ms) = word.strip_prefix("delay-ms=") {
                delay = Duration::from_millis(ms.parse().unwrap_or(0));
            }
        }
        let (stop_final, exec_sleep) = (flag("stop-final"), flag("exec-sleep"));
        if flag("usr1") {
            let action = signal::SigAction::new(
                signal::SigHandler::Handler(on_usr1),
                signal::SaFlags::empty(),
                signal::SigSet::empty(),
            );
            // SAFETY: the handler only touches an atomic.
            let _ = unsafe { signal::sigaction(Signal::SIGUSR1, &action) };
            let _ = signal::raise(Signal::SIGUSR1);
        }
        if flag("stop-first") {
            let _ = signal::raise(Signal::SIGSTOP);
        }
        std::thread::sleep(delay);
        if flag("thread") {
            let worker = std::thread::spawn(move || daemonize(forks, &pidfile, stop_final, exec_sleep));
            let _ = worker.join();
            // SAFETY: _exit is always safe to call.
            unsafe { libc::_exit(3) };
        }
        daemonize(forks, &pidfile, stop_final, exec_sleep)
    }

    fn daemonize(forks: u32, pidfile: &Path, stop_final: bool, exec_sleep: bool) -> ! {
        for i in 0..forks {
            // SAFETY: the helper is single-threaded here, or (`thread`) the
            // child continues on the forking thread only and the other thread
            // holds no lock (it is blocked in join).
            match unsafe { nix::unistd::fork() } {
                // SAFETY: _exit is always safe to call.
                Ok(nix::unistd::ForkResult::Parent { .. }) => unsafe { libc::_exit(0) },
                Ok(nix::unistd::ForkResult::Child) => {
                    if i == 0 {
                        let _ = nix::unistd::setsid();
                    }
                }
                // SAFETY: as above.
                Err(_) => unsafe { libc::_exit(2) },
            }
        }
        if stop_final {
            let _ = signal::raise(Signal::SIGSTOP);
        }
        let tmp = pidfile.with_extension("tmp");
        let _ = std::fs::write(&tmp, format!("{} {}", getpid(), USR1.load(Ordering::SeqCst)));
        let _ = std::fs::rename(&tmp, pidfile);
        if exec_sleep {
            let _ = nix::unistd::execv(c"/bin/sleep", &[c"sleep", c"120"]);
        }
        // Killed by the test; give up by ourselves if the test died.
        std::thread::sleep(Duration::from_secs(120));
        // SAFETY: _exit is always safe to call.
        unsafe { libc::_exit(0) }
    }

    static SEQ: AtomicU32 = AtomicU32::new(0);

    struct Spawned {
        pid: Pid,
        pidfile: PathBuf,
        job: String,
    }

    impl Spawned {
        /// (final pid, SIGUSR1 count) once the helper has written them.
        fn daemon(&self) -> Option<(Pid, u32)> {
            let text = std::fs::read_to_string(&self.pidfile).ok()?;
            let mut words = text.split_whitespace();
            let pid = words.next()?.parse().ok()?;
            Some((Pid::from_raw(pid), words.next()?.parse().ok()?))
        }
    }

    impl Drop for Spawned {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.pidfile);
        }
    }

    /// Spawn the helper with `spec`; `traced`: PTRACE_TRACEME before exec, as
    /// the spawn module does; `via_sh`: `sh -c 'exec helper'` (exec before fork).
    fn spawn(spec: &str, traced: bool, via_sh: bool) -> Spawned {
        nix::sys::prctl::set_child_subreaper(true).expect("PR_SET_CHILD_SUBREAPER");
        let n = SEQ.fetch_add(1, Ordering::SeqCst);
        let pidfile = std::env::temp_dir().join(format!("upshot-ptrace-test-{}-{n}.pid", getpid()));
        let _ = std::fs::remove_file(&pidfile);
        let job = format!("ptrace-test-{}-{n}", getpid());
        let exe = std::env::current_exe().expect("current_exe");
        let mut cmd = if via_sh {
            let mut sh = Command::new("/bin/sh");
            sh.arg("-c").arg("exec \"$0\"").arg(&exe);
            sh
        } else {
            Command::new(&exe)
        };
        cmd.env(HELPER_ENV, format!("{spec} pidfile={}", pidfile.display()))
            .env("UPSTART_JOB", &job)
            .env("UPSTART_INSTANCE", INSTANCE)
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        if traced {
            // SAFETY: runs in the forked child before exec; PTRACE_TRACEME is a
            // single async-signal-safe system call.
            unsafe {
                cmd.pre_exec(|| ptrace::traceme().map_err(std::io::Error::from));
            }
        }
        #[expect(clippy::zombie_processes, reason = "the reap loop reaps it by pid")]
        let child = cmd.spawn().expect("spawn helper");
        Spawned {
            pid: Pid::from_raw(child.id() as i32),
            pidfile,
            job,
        }
    }

    /// The daemon's reap loop in miniature.
    struct Reaper {
        tracker: Tracker<u32>,
        events: Vec<Traced<u32>>,
        /// Every status seen, with what `on_status` returned.
        statuses: Vec<(WaitStatus, bool)>,
        reaped: BTreeSet<Pid>,
    }

    impl Reaper {
        fn new() -> Self {
            Reaper {
                tracker: Tracker::new(),
                events: Vec::new(),
                statuses: Vec::new(),
                reaped: BTreeSet::new(),
            }
        }

        fn feed(&mut self, status: WaitStatus) {
            let consumed = self.tracker.on_status(status, &mut self.events);
            if let WaitStatus::Exited(pid, _) | WaitStatus::Signaled(pid, _, _) = status {
                assert!(!consumed, "an exit must reach the engine: {status:?}");
                self.reaped.insert(pid);
            }
            self.statuses.push((status, consumed));
        }

        /// One `waitpid`; whether it returned a status.
        fn pump(&mut self) -> bool {
            let flags = WaitPidFlag::WNOHANG
                | WaitPidFlag::__WALL
                | WaitPidFlag::WUNTRACED
                | WaitPidFlag::__WNOTHREAD;
            match waitpid(None, Some(flags)) {
                Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => false,
                Ok(status) => {
                    self.feed(status);
                    true
                }
                Err(e) => panic!("waitpid: {e}"),
            }
        }

        /// Reap until `done` or `limit` passes; whether `done` became true.
        fn drive(&mut self, limit: Duration, mut done: impl FnMut(&Self) -> bool) -> bool {
            let deadline = Instant::now() + limit;
            loop {
                while self.pump() {}
                if done(self) {
                    return true;
                }
                if Instant::now() >= deadline {
                    return false;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        }

        fn ready(&self) -> Option<Pid> {
            self.events.iter().find_map(|e| match e {
                Traced::Ready { pid, .. } => Some(*pid),
                _ => None,
            })
        }

        fn mains(&self) -> Vec<Pid> {
            self.events
                .iter()
                .filter_map(|e| match e {
                    Traced::MainPid { pid, .. } => Some(*pid),
                    _ => None,
                })
                .collect()
        }

        fn warnings(&self) -> Vec<&str> {
            self.events
                .iter()
                .filter_map(|e| match e {
                    Traced::Warning { message, .. } => Some(message.as_str()),
                    _ => None,
                })
                .collect()
        }

        /// SIGKILL every pid given that we have not reaped yet (so the pid
        /// cannot have been reused), then reap them by pid, feeding the
        /// tracker; finally the tracker must be idle.
        fn cleanup(&mut self, pids: impl IntoIterator<Item = Pid>) {
            let pids: BTreeSet<Pid> = pids.into_iter().filter(|p| !self.reaped.contains(p)).collect();
            for &pid in &pids {
                let _ = signal::kill(pid, Signal::SIGKILL);
            }
            let deadline = Instant::now() + Duration::from_secs(10);
            for &pid in &pids {
                while !self.reaped.contains(&pid) {
                    while self.pump() {}
                    if self.reaped.contains(&pid) {
                        break;
                    }
                    match waitpid(pid, Some(WaitPidFlag::WNOHANG | WaitPidFlag::__WALL)) {
                        Ok(WaitStatus::StillAlive) => {}
                        Ok(status @ (WaitStatus::Exited(..) | WaitStatus::Signaled(..))) => self.feed(status),
                        Ok(status) => self.feed(status),
                        // Its parent has not died yet, or it is gone for good.
                        Err(Errno::ECHILD) if !Path::new(&format!("/proc/{pid}")).exists() => break,
                        Err(_) => {}
                    }
                    assert!(Instant::now() < deadline, "could not reap {pid}");
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            let idle = self.drive(Duration::from_secs(5), |r| r.tracker.is_idle());
            assert!(idle, "tracker not idle after cleanup: {:?}", self.tracker);
        }
    }

    fn proc_status(pid: Pid) -> Option<procfs::process::Status> {
        procfs::process::Process::new(pid.as_raw())
            .and_then(|p| p.status())
            .ok()
    }

    /// Running freely: not in a ptrace-stop and not traced.
    fn untraced_and_not_stopped(pid: Pid) -> bool {
        proc_status(pid).is_some_and(|s| s.tracerpid == 0 && !s.state.starts_with('t'))
    }

    const LIMIT: Duration = Duration::from_secs(10);

    struct Outcome {
        ready: Option<Pid>,
        mains: Vec<Pid>,
        daemon: Option<(Pid, u32)>,
        warnings: Vec<String>,
        early: u64,
    }

    /// One traced run of `spec` declared with `forks`, up to Ready and the pid
    /// file; checks that nothing is left traced and cleans up.
    fn traced_run(spec: &str, forks: u32, via_sh: bool) -> Outcome {
        let mut r = Reaper::new();
        let child = spawn(spec, true, via_sh);
        r.tracker.trace(7, child.pid, forks);
        let done = r.drive(LIMIT, |r| r.ready().is_some() && child.daemon().is_some());
        assert!(done, "no Ready/pid file for {spec:?}: events {:?}", r.events);
        let ready = r.ready().unwrap();
        assert!(!r.tracker.is_tracking(&7));
        assert!(
            untraced_and_not_stopped(ready),
            "{ready} still traced or stopped after Ready"
        );
        let outcome = Outcome {
            ready: Some(ready),
            mains: r.mains(),
            daemon: child.daemon(),
            warnings: r.warnings().into_iter().map(String::from).collect(),
            early: r.tracker.early_stops(),
        };
        let mut pids = vec![child.pid, ready];
        pids.extend(&outcome.mains);
        pids.extend(outcome.daemon.map(|d| d.0));
        r.cleanup(pids);
        outcome
    }

    #[test]
    fn forks_per_expect() {
        assert_eq!(forks_for(jobconf_parser::Expect::Fork), Some(1));
        assert_eq!(forks_for(jobconf_parser::Expect::Daemon), Some(2));
        assert_eq!(forks_for(jobconf_parser::Expect::Stop), None);
        assert_eq!(forks_for(jobconf_parser::Expect::None), None);
    }

    #[test]
    fn expect_fork_follows_one_fork() {
        for _ in 0..20 {
            let o = traced_run("forks=1", 1, false);
            let daemon = o.daemon.unwrap().0;
            assert_eq!(o.ready, Some(daemon));
            assert_eq!(o.mains, vec![daemon]);
            assert!(o.warnings.is_empty(), "{:?}", o.warnings);
        }
    }

    #[test]
    fn expect_daemon_follows_two_forks_100_of_100() {
        let mut early = 0;
        for _ in 0..100 {
            let o = traced_run("forks=2", 2, false);
            let daemon = o.daemon.unwrap().0;
            assert_eq!(o.ready, Some(daemon));
            assert_eq!(o.mains.len(), 2);
            assert_eq!(o.mains[1], daemon);
            assert!(o.warnings.is_empty(), "{:?}", o.warnings);
            early += o.early;
        }
        eprintln!("expect daemon: 100/100 right; child stops before their fork event: {early}");
    }

    #[test]
    fn zero_forks_is_ready_at_the_exec() {
        let mut r = Reaper::new();
        let child = spawn("forks=0", true, false);
        r.tracker.trace(7, child.pid, 0);
        assert!(r.drive(LIMIT, |r| r.ready().is_some() && child.daemon().is_some()));
        assert_eq!(r.ready(), Some(child.pid));
        assert_eq!(child.daemon().unwrap().0, child.pid);
        assert!(r.tracker.is_idle() && untraced_and_not_stopped(child.pid));
        r.cleanup([child.pid]);
    }

    #[test]
    fn exec_before_fork_is_allowed() {
        for forks in [1, 2] {
            for _ in 0..10 {
                let o = traced_run(&format!("forks={forks}"), forks, true);
                assert_eq!(o.ready, Some(o.daemon.unwrap().0));
                assert_eq!(o.mains.len(), forks as usize);
            }
        }
    }

    #[test]
    fn exec_after_a_fork_is_ready() {
        for _ in 0..10 {
            let o = traced_run("forks=1 exec-sleep", 2, false);
            let daemon = o.daemon.unwrap().0;
            assert_eq!(o.ready, Some(daemon));
            assert_eq!(o.mains, vec![daemon]);
        }
    }

    #[test]
    fn signals_are_reinjected_and_a_group_stop_does_not_hang() {
        let o = traced_run("usr1 stop-first forks=2", 2, false);
        let (daemon, usr1) = o.daemon.unwrap();
        assert_eq!(o.ready, Some(daemon));
        assert_eq!(usr1, 1, "SIGUSR1 must reach its handler");
        assert!(
            o.warnings.iter().any(|w| w.contains("job-control")),
            "{:?}",
            o.warnings
        );
    }

    #[test]
    fn fork_from_a_second_thread_is_followed() {
        for _ in 0..10 {
            let o = traced_run("thread forks=2", 2, false);
            assert_eq!(o.ready, Some(o.daemon.unwrap().0));
        }
    }

    #[test]
    fn trace_called_after_the_first_stop_was_offered() {
        let mut r = Reaper::new();
        let child = spawn("forks=1", true, false);
        assert!(r.drive(LIMIT, |r| !r.statuses.is_empty()));
        assert_eq!(
            r.statuses[0],
            (WaitStatus::Stopped(child.pid, Signal::SIGTRAP), true)
        );
        r.tracker.trace(7, child.pid, 1);
        r.tracker.take_events(&mut r.events);
        assert!(r.drive(LIMIT, |r| r.ready().is_some() && child.daemon().is_some()));
        assert_eq!(r.ready(), Some(child.daemon().unwrap().0));
        assert_eq!(r.tracker.early_stops(), 1);
        let mut pids = vec![child.pid];
        pids.extend(r.mains());
        r.cleanup(pids);
    }

    #[test]
    fn one_fork_for_expect_daemon_never_gets_ready_and_forget_lets_it_run() {
        for _ in 0..5 {
            let mut r = Reaper::new();
            let child = spawn("forks=1", true, false);
            r.tracker.trace(7, child.pid, 2);
            assert!(r.drive(LIMIT, |_| child.daemon().is_some()));
            let daemon = child.daemon().unwrap().0;
            // Well past the pid file: still no Ready (the engine's timeout decides).
            assert!(!r.drive(Duration::from_millis(200), |r| r.ready().is_some()));
            assert!(r.tracker.is_tracking(&7));
            assert_eq!(r.mains(), vec![daemon]);
            assert_eq!(
                proc_status(daemon).unwrap().tracerpid,
                nix::unistd::gettid().as_raw()
            );
            r.tracker.forget(&7);
            assert!(!r.tracker.is_tracking(&7));
            assert!(r.drive(LIMIT, |r| r.tracker.is_idle() && untraced_and_not_stopped(daemon)));
            assert!(r.ready().is_none());
            r.cleanup([child.pid, daemon]);
        }
    }

    #[test]
    fn three_forks_for_expect_daemon() {
        for _ in 0..10 {
            let mut r = Reaper::new();
            let child = spawn("forks=3", true, false);
            r.tracker.trace(7, child.pid, 2);
            assert!(r.drive(LIMIT, |r| r.ready().is_some() && child.daemon().is_some()));
            let (ready, daemon) = (r.ready().unwrap(), child.daemon().unwrap().0);
            // Ready at the second child; the third fork is not traced.
            assert_eq!(r.mains().len(), 2);
            assert_eq!(ready, r.mains()[1]);
            assert_ne!(ready, daemon);
            assert!(r.tracker.is_idle());
            assert!(untraced_and_not_stopped(daemon));
            // The "main" process exits: an ordinary exit for the engine…
            let deadline = Instant::now() + LIMIT;
            loop {
                match waitpid(ready, Some(WaitPidFlag::WNOHANG | WaitPidFlag::__WALL)) {
                    Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => {}
                    Ok(status) => {
                        assert!(!r.tracker.on_status(status, &mut r.events));
                        r.reaped.insert(ready);
                        break;
                    }
                    Err(e) => panic!("waitpid {ready}: {e}"),
                }
                assert!(Instant::now() < deadline);
                std::thread::sleep(Duration::from_millis(1));
            }
            // …and the daemon finds the job's survivor to adopt.
            assert_eq!(find_adoptable(getpid(), (&child.job, INSTANCE)), vec![daemon]);
            assert!(find_adoptable(getpid(), (&child.job, "other")).is_empty());
            let mut pids = vec![child.pid, daemon];
            pids.extend(r.mains());
            r.cleanup(pids);
        }
    }

    #[test]
    fn expect_stop_sends_sigcont_and_is_ready() {
        let mut r = Reaper::new();
        let child = spawn("forks=0 stop-final", false, false);
        // If it has stopped already, watch_stop continues it at once and
        // Ready comes with the next on_status; otherwise at its stop status.
        r.tracker.watch_stop(7, child.pid);
        assert!(r.drive(LIMIT, |r| r.ready().is_some() && child.daemon().is_some()));
        assert_eq!(r.ready(), Some(child.pid));
        // The pid file is written after the stop: the SIGCONT arrived.
        assert_eq!(child.daemon().unwrap().0, child.pid);
        assert!(
            r.statuses
                .iter()
                .any(|(s, _)| *s == WaitStatus::Stopped(child.pid, Signal::SIGSTOP))
        );
        assert!(untraced_and_not_stopped(child.pid));
        assert!(!r.tracker.is_tracking(&7));
        r.cleanup([child.pid]);
    }

    #[test]
    fn unknown_untraced_stop_is_not_consumed() {
        let mut r = Reaper::new();
        let child = spawn("forks=0 stop-final", false, false);
        assert!(r.drive(LIMIT, |r| !r.statuses.is_empty()));
        assert_eq!(
            r.statuses[0],
            (WaitStatus::Stopped(child.pid, Signal::SIGSTOP), false)
        );
        r.cleanup([child.pid]);
    }

    #[test]
    fn killed_traced_process_exit_reaches_the_engine() {
        let mut r = Reaper::new();
        let child = spawn("forks=2 delay-ms=30000", true, false);
        r.tracker.trace(7, child.pid, 2);
        // Past the exec trap: sleeping, traced.
        assert!(r.drive(LIMIT, |r| {
            !r.statuses.is_empty() && proc_status(child.pid).is_some_and(|s| s.state.starts_with('S'))
        }));
        signal::kill(child.pid, Signal::SIGKILL).unwrap();
        assert!(r.drive(LIMIT, |r| r.reaped.contains(&child.pid)));
        let exit = r.statuses.last().unwrap();
        assert_eq!(
            *exit,
            (WaitStatus::Signaled(child.pid, Signal::SIGKILL, false), false)
        );
        assert!(!r.tracker.is_tracking(&7));
        assert!(r.tracker.is_idle());
        assert!(
            r.warnings().iter().any(|w| w.contains("0 of the 2")),
            "{:?}",
            r.warnings()
        );
        r.cleanup([child.pid]);
    }

    #[test]
    fn forget_while_running_detaches() {
        let mut r = Reaper::new();
        let child = spawn("forks=1 delay-ms=30000", true, false);
        r.tracker.trace(7, child.pid, 1);
        assert!(r.drive(LIMIT, |r| {
            !r.statuses.is_empty() && proc_status(child.pid).is_some_and(|s| s.state.starts_with('S'))
        }));
        assert_eq!(
            proc_status(child.pid).unwrap().tracerpid,
            nix::unistd::gettid().as_raw()
        );
        r.tracker.forget(&7);
        assert!(!r.tracker.is_tracking(&7));
        assert!(r.drive(LIMIT, |r| r.tracker.is_idle()
            && untraced_and_not_stopped(child.pid)));
        // It is running normally (sleeping or about to), not stopped.
        let state = proc_status(child.pid).unwrap().state;
        assert!(state.starts_with('S') || state.starts_with('R'), "{state}");
        assert!(r.ready().is_none());
        r.cleanup([child.pid]);
    }

    #[test]
    fn forget_before_the_exec_trap_detaches() {
        for _ in 0..10 {
            let mut r = Reaper::new();
            let child = spawn("forks=1", true, false);
            r.tracker.trace(7, child.pid, 1);
            r.tracker.forget(&7);
            // The helper runs untraced: it forks, its parent exits, the daemon writes its pid.
            assert!(r.drive(LIMIT, |r| r.tracker.is_idle() && child.daemon().is_some()));
            let daemon = child.daemon().unwrap().0;
            assert!(r.drive(LIMIT, |_| untraced_and_not_stopped(daemon)));
            assert!(r.events.is_empty(), "{:?}", r.events);
            r.cleanup([child.pid, daemon]);
        }
    }

    #[test]
    fn raw_statuses() {
        let mut tracker: Tracker<u32> = Tracker::new();
        let mut out = Vec::new();
        let pid = Pid::from_raw(999_999_999);
        // A real-time-signal stop (nix's WaitStatus cannot hold it) of a pid
        // /proc cannot describe is buffered, and its exit ends that.
        assert!(tracker.on_raw_status(pid, ((libc::SIGRTMIN() + 1) << 8) | 0x7f, &mut out));
        assert!(!tracker.is_idle());
        assert!(!tracker.on_raw_status(pid, 3 << 8, &mut out));
        assert!(out.is_empty());
        assert!(tracker.is_idle());
    }
}

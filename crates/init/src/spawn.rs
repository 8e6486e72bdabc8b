//! Spawning a job's processes: the per-process setup of the supervisor layer
//! (design layer 4; spec §1.4 "Shell use when running a process", "Child
//! setup order", "Console details"; §1.6 for the environment).
//!
//! [`spawn`] does all the work that can allocate or fail in ordinary ways in
//! the parent (argv and envp as C strings, the `PATH` candidates, user and
//! group look-ups, the log pty, pipes), then forks. Between `fork` and `exec`
//! the child only makes raw system calls on data prepared beforehand: the
//! daemon has more than one thread, so nothing there may allocate or take a
//! lock. A setup or exec failure is sent back over a close-on-exec pipe as a
//! stage code and an errno; the parent reads that pipe until EOF (EOF with no
//! report means the exec succeeded) and, on failure, reaps the child itself.
//!
//! The child, in order: default signal dispositions and an empty signal
//! mask; `setsid`; joins the cgroup (if any); stdio from the console type
//! (`none` ⇒ /dev/null, `output` ⇒ /dev/console, `owner` ⇒ /dev/console as
//! controlling tty, `log` ⇒ stdin /dev/null and stdout/stderr on the pty
//! slave); a piped script's pipe on fd 9; rlimits; umask; nice; oom score;
//! chroot; chdir; supplementary groups, gid, uid (and no capabilities left
//! for a non-root user); `PTRACE_TRACEME`; `execve`.

use std::convert::Infallible;
use std::ffi::{CStr, CString, c_char, c_int, c_uint};
use std::fmt;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

use jobconf_parser::{Console, JobConf, Process, ProcessKind, Resource};
use nix::errno::Errno;
use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::sys::signal::{SigSet, SigmaskHow, pthread_sigmask};
use nix::unistd::{Gid, Pid, Uid, User};

/// The shell that runs scripts and commands with shell characters.
pub const SHELL: &str = "/bin/sh";

/// An `exec` command containing any of these characters is run by the shell
/// (Upstart's `SHELL_CHARS`).
pub const SHELL_CHARS: &str = "~`!$^&*()=|\\{}[];\"'<>?";

/// The descriptor on which a multi-line script is fed to the shell.
pub const SCRIPT_FD: RawFd = 9;

/// What is written to the script pipe before the script itself, so that the
/// shell closes fd 9 and the job's commands do not inherit it.
/// Stack of the cloned child until it execs (it only makes system calls).
const CHILD_STACK: usize = 256 * 1024;

const SCRIPT_PREAMBLE: &[u8] = b"exec 9<&-\n";

/// The umask of a job that sets none (system mode).
const DEFAULT_UMASK: u32 = 0o022;

/// glibc's search path when the environment has no `PATH` (`_CS_PATH`).
const DEFAULT_PATH: &str = "/bin:/usr/bin";

/// The child moves the descriptors it works with to this number or above,
/// out of the way of 0, 1, 2 and [`SCRIPT_FD`].
const FIRST_FREE_FD: c_int = 10;

/// Everything [`spawn`] needs to start one process of a job instance.
#[derive(Debug, Clone, Copy)]
pub struct SpawnPlan<'a> {
    /// The job's name (for messages).
    pub job: &'a str,
    /// The instance's name, empty for a single-instance job (for messages).
    pub instance: &'a str,
    /// Which of the job's processes to run.
    pub process: ProcessKind,
    /// The job; the command comes from `conf.process(process)`.
    pub conf: &'a JobConf,
    /// The complete `KEY=VALUE` environment of the process.
    pub env: &'a [String],
    /// The console type in effect (defaults already resolved).
    pub console: Console,
    /// `PTRACE_TRACEME` before exec (the main process of `expect fork|daemon`):
    /// the child then stops with `SIGTRAP` right after its exec. Its tracer
    /// is the thread that called [`spawn`]: every later ptrace request for
    /// it must come from that thread.
    pub trace: bool,
    /// A `cgroup.procs` file the child joins (writes `0` to) before anything
    /// else touches its credentials or root directory.
    pub cgroup_procs: Option<&'a Path>,
    /// The daemon is a session init: an unset `umask` inherits the daemon's
    /// and an unset `chdir` keeps the daemon's working directory.
    pub session: bool,
    /// A descriptor of the daemon's the process inherits (the file of an
    /// `EmitEventWithFile` event, named by `UPSTART_FDS`); every other one
    /// is closed at exec.
    pub inherit_fd: Option<i32>,
}

/// A spawned process; reaping it is the caller's business.
#[derive(Debug)]
pub struct Child {
    pub pid: Pid,
    /// For `console log`: the pty master (close-on-exec, non-blocking) that
    /// carries the process's stdout and stderr. Reading it fails with `EIO`
    /// once every copy of the slave is closed, which ends the log stream.
    pub log: Option<OwnedFd>,
    /// For a multi-line script that did not fit in the pipe at once: the
    /// rest, to write when the pipe is writable.
    pub script: Option<ScriptFeed>,
}

/// The rest of a multi-line script to write to the child's fd 9 pipe when it
/// is writable.
pub struct ScriptFeed {
    /// The write end of the pipe (non-blocking, close-on-exec); poll it for
    /// `POLLOUT`.
    pub fd: OwnedFd,
    data: Vec<u8>,
    written: usize,
}

impl ScriptFeed {
    /// Writes as much as the pipe takes without blocking. Returns `true` when
    /// everything has been written: then drop the feed, which closes the pipe
    /// and gives the shell its end of file. An error (`EPIPE` when the shell
    /// has gone; the daemon must not die of `SIGPIPE`, which Rust programs
    /// ignore by default) means the rest cannot be delivered: drop the feed.
    pub fn write_some(&mut self) -> std::io::Result<bool> {
        while let Some(rest) = self.data.get(self.written..).filter(|r| !r.is_empty()) {
            match nix::unistd::write(&self.fd, rest) {
                Ok(n) => self.written += n,
                Err(Errno::EINTR) => continue,
                Err(Errno::EAGAIN) => return Ok(false),
                Err(e) => return Err(e.into()),
            }
        }
        Ok(true)
    }

    /// Bytes still to be written.
    pub fn remaining(&self) -> usize {
        self.data.len() - self.written
    }
}

impl fmt::Debug for ScriptFeed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScriptFeed")
            .field("fd", &self.fd)
            .field("len", &self.data.len())
            .field("written", &self.written)
            .finish()
    }
}

/// Why a process could not be started. The process, if one was forked, has
/// already been reaped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpawnError {
    /// What failed, as a verb phrase: "execute", "change user",
    /// `set "nofile" resource limit`, "look up user", …
    pub stage: &'static str,
    pub errno: Errno,
}

impl SpawnError {
    fn new(stage: &'static str, errno: Errno) -> SpawnError {
        SpawnError { stage, errno }
    }
}

impl fmt::Display for SpawnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unable to {}: {}", self.stage, self.errno.desc())
    }
}

impl std::error::Error for SpawnError {}

/// How a process's text is run.
#[derive(Debug, PartialEq, Eq)]
enum Command {
    /// Split on whitespace and executed directly (after a `PATH` search).
    Direct(Vec<String>),
    /// `/bin/sh -e -c TEXT /bin/sh`.
    Line(String),
    /// `/bin/sh -e /proc/self/fd/9`, the script fed through a pipe on fd 9.
    Piped(String),
}

fn command_of(p: &Process) -> Command {
    if !p.script && !p.command.contains(|c| SHELL_CHARS.contains(c)) {
        return Command::Direct(
            p.command
                .split([' ', '\t', '\r', '\n'])
                .filter(|w| !w.is_empty())
                .map(String::from)
                .collect(),
        );
    }
    let mut text = if p.script {
        p.command.clone()
    } else {
        format!("exec {}", p.command)
    };
    // Single-line: no newline, or only newlines from the first one on, which
    // are stripped (job_process_start).
    match text.find('\n') {
        None => Command::Line(text),
        Some(nl) if text.as_bytes()[nl..].iter().all(|&b| b == b'\n') => {
            text.truncate(nl);
            Command::Line(text)
        }
        Some(_) => Command::Piped(text),
    }
}

/// argv for a process as Upstart builds it: a script runs as `/bin/sh -e`
/// (`-c TEXT /bin/sh` when it is a single line, else `/proc/self/fd/9` with
/// the script on a pipe); an `exec` with shell characters runs as
/// `/bin/sh -e -c "exec COMMAND" /bin/sh`; any other `exec` is split on
/// whitespace.
pub fn command_argv(p: &Process) -> Vec<String> {
    match command_of(p) {
        Command::Direct(argv) => argv,
        Command::Line(text) => vec![SHELL.into(), "-e".into(), "-c".into(), text, SHELL.into()],
        Command::Piped(_) => vec![SHELL.into(), "-e".into(), format!("/proc/self/fd/{SCRIPT_FD}")],
    }
}

/// The files `execvp` would try for `file`, in order, with `PATH` taken from
/// the job's environment (glibc's rules: a name with a `/` is used as is; an
/// unset `PATH` means `/bin:/usr/bin`; an empty element is the working
/// directory). The child tries them after its chroot and chdir, as execvp
/// would.
fn exec_candidates(file: &str, env: &[String]) -> Vec<String> {
    if file.contains('/') {
        return vec![file.to_string()];
    }
    if file.is_empty() {
        return Vec::new();
    }
    let path = env
        .iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or(DEFAULT_PATH);
    path.split(':')
        .map(|dir| {
            if dir.is_empty() {
                file.to_string()
            } else {
                format!("{dir}/{file}")
            }
        })
        .collect()
}

/// Stage codes sent from the child; `WARNING` marks a report that is not a
/// failure.
mod stage {
    pub const SIGNALS: u32 = 0;
    pub const SESSION: u32 = 1;
    pub const CGROUP: u32 = 2;
    pub const CONSOLE: u32 = 3;
    pub const SCRIPT_FD: u32 = 4;
    pub const OOM: u32 = 5;
    pub const PRIORITY: u32 = 6;
    pub const CHROOT: u32 = 7;
    pub const CHDIR: u32 = 8;
    pub const CHOWN: u32 = 9;
    pub const GROUPS: u32 = 10;
    pub const GID: u32 = 11;
    pub const UID: u32 = 12;
    pub const CAPS: u32 = 13;
    pub const TRACE: u32 = 14;
    pub const EXEC: u32 = 15;
    pub const NAMES: [&str; 16] = [
        "modify signal handler",
        "create session",
        "enter cgroup",
        "open console",
        "move script fd",
        "set oom adjustment",
        "set priority",
        "change root directory",
        "change working directory",
        "chown",
        "set supplementary groups",
        "change group",
        "change user",
        "drop capabilities",
        "set trace",
        "execute",
    ];
    /// `RLIMIT_BASE + i` is the limit of `Resource::ALL[i]`.
    pub const RLIMIT_BASE: u32 = 32;
    pub const RLIMIT_NAMES: [&str; 14] = [
        "set \"as\" resource limit",
        "set \"core\" resource limit",
        "set \"cpu\" resource limit",
        "set \"data\" resource limit",
        "set \"fsize\" resource limit",
        "set \"memlock\" resource limit",
        "set \"msgqueue\" resource limit",
        "set \"nice\" resource limit",
        "set \"nofile\" resource limit",
        "set \"nproc\" resource limit",
        "set \"rss\" resource limit",
        "set \"rtprio\" resource limit",
        "set \"sigpending\" resource limit",
        "set \"stack\" resource limit",
    ];
    pub const WARNING: u32 = 1 << 31;

    pub fn name(code: u32) -> &'static str {
        let code = code & !WARNING;
        let found = if code >= RLIMIT_BASE {
            RLIMIT_NAMES.get((code - RLIMIT_BASE) as usize)
        } else {
            NAMES.get(code as usize)
        };
        found.copied().unwrap_or("set up process")
    }
}

fn rlimit_resource(r: Resource) -> c_int {
    // The constants' type differs between glibc (unsigned) and musl (int).
    (match r {
        Resource::As => libc::RLIMIT_AS,
        Resource::Core => libc::RLIMIT_CORE,
        Resource::Cpu => libc::RLIMIT_CPU,
        Resource::Data => libc::RLIMIT_DATA,
        Resource::Fsize => libc::RLIMIT_FSIZE,
        Resource::Memlock => libc::RLIMIT_MEMLOCK,
        Resource::Msgqueue => libc::RLIMIT_MSGQUEUE,
        Resource::Nice => libc::RLIMIT_NICE,
        Resource::Nofile => libc::RLIMIT_NOFILE,
        Resource::Nproc => libc::RLIMIT_NPROC,
        Resource::Rss => libc::RLIMIT_RSS,
        Resource::Rtprio => libc::RLIMIT_RTPRIO,
        Resource::Sigpending => libc::RLIMIT_SIGPENDING,
        Resource::Stack => libc::RLIMIT_STACK,
    }) as c_int
}

/// The value for the legacy `/proc/PID/oom_adj` (−17…15) of an
/// `oom_score_adj` (−1000…1000), as Upstart converts it.
fn legacy_oom_adj(score: i32) -> i32 {
    score * if score < 0 { 17 } else { 15 } / 1000
}

/// The ids a process switches to.
struct Creds {
    uid: Option<libc::uid_t>,
    gid: Option<libc::gid_t>,
    /// The supplementary groups to set (only when the daemon runs as root).
    groups: Option<Vec<libc::gid_t>>,
    /// The process ends up as a non-root user: clear every capability set.
    drop_caps: bool,
}

/// A user entry as far as spawning needs it.
struct UserEntry {
    name: String,
    uid: u32,
    gid: u32,
}

enum UserKey<'a> {
    Name(&'a str),
    Id(u32),
}

/// The colon-separated records of an `/etc/passwd`-style file.
fn db_records(path: &Path) -> Result<Vec<Vec<String>>, Errno> {
    let text =
        std::fs::read_to_string(path).map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))?;
    Ok(text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.split(':').map(String::from).collect())
        .collect())
}

/// Looks a user up through NSS, or, for a job with a chroot, in the chroot's
/// `/etc/passwd` (Upstart looks users up after `chroot`, so a chrooted job's
/// names are those of its root).
fn user_entry(root: Option<&Path>, key: UserKey) -> Result<Option<UserEntry>, Errno> {
    let Some(root) = root else {
        let user = match key {
            UserKey::Name(name) => User::from_name(name)?,
            UserKey::Id(id) => User::from_uid(Uid::from_raw(id))?,
        };
        return Ok(user.map(|u| UserEntry {
            name: u.name,
            uid: u.uid.as_raw(),
            gid: u.gid.as_raw(),
        }));
    };
    for rec in db_records(&root.join("etc/passwd"))? {
        let [name, _, uid, gid, ..] = rec.as_slice() else {
            continue;
        };
        let (Ok(uid), Ok(gid)) = (uid.parse(), gid.parse()) else {
            continue;
        };
        let hit = match key {
            UserKey::Name(n) => n == name,
            UserKey::Id(id) => id == uid,
        };
        if hit {
            return Ok(Some(UserEntry {
                name: name.clone(),
                uid,
                gid,
            }));
        }
    }
    Ok(None)
}

/// A group's id, through NSS or from the chroot's `/etc/group`.
fn group_gid(root: Option<&Path>, name: &str) -> Result<Option<u32>, Errno> {
    let Some(root) = root else {
        return Ok(nix::unistd::Group::from_name(name)?.map(|g| g.gid.as_raw()));
    };
    Ok(db_records(&root.join("etc/group"))?
        .iter()
        .find_map(|rec| match rec.as_slice() {
            [n, _, gid, ..] if n == name => gid.parse().ok(),
            _ => None,
        }))
}

/// `getgrouplist(user, base)`: `base` plus every group listing `user`.
fn group_list(root: Option<&Path>, user: &str, base: u32) -> Result<Vec<libc::gid_t>, Errno> {
    let Some(root) = root else {
        let name = CString::new(user).map_err(|_| Errno::EINVAL)?;
        let groups = nix::unistd::getgrouplist(&name, Gid::from_raw(base))?;
        return Ok(groups.into_iter().map(Gid::as_raw).collect());
    };
    let mut groups = vec![base];
    for rec in db_records(&root.join("etc/group"))? {
        if let [_, _, gid, members, ..] = rec.as_slice()
            && let Ok(gid) = gid.parse()
            && members.split(',').any(|m| m == user)
            && !groups.contains(&gid)
        {
            groups.push(gid);
        }
    }
    Ok(groups)
}

/// Resolves `setuid`/`setgid` before forking (the child cannot use NSS).
/// Like Upstart, the supplementary groups are set only when the daemon runs
/// as root: those of the user (`initgroups(user, gid)`), or of root when
/// only `setgid` is given.
fn credentials(conf: &JobConf) -> Result<Option<Creds>, SpawnError> {
    if conf.setuid().is_none() && conf.setgid().is_none() {
        return Ok(None);
    }
    let root = conf.chroot().map(Path::new).filter(|r| *r != Path::new("/"));
    let user = match conf.setuid() {
        Some(name) => Some(
            user_entry(root, UserKey::Name(name))
                .map_err(|e| SpawnError::new("look up user", e))?
                .ok_or(SpawnError::new("look up user", Errno::ENOENT))?,
        ),
        None => None,
    };
    let group = match conf.setgid() {
        Some(name) => Some(
            group_gid(root, name)
                .map_err(|e| SpawnError::new("look up group", e))?
                .ok_or(SpawnError::new("look up group", Errno::ENOENT))?,
        ),
        None => None,
    };
    let gid = group.or(user.as_ref().map(|u| u.gid));
    let groups = if nix::unistd::geteuid().is_root() {
        let base = gid.unwrap_or_else(|| nix::unistd::getegid().as_raw());
        let name = match &user {
            Some(u) => Some(u.name.clone()),
            None => user_entry(root, UserKey::Id(0)).ok().flatten().map(|u| u.name),
        };
        Some(match name {
            Some(name) => group_list(root, &name, base).map_err(|e| SpawnError::new("look up groups", e))?,
            None => vec![base],
        })
    } else {
        None
    };
    let uid = user.map(|u| u.uid);
    Ok(Some(Creds {
        uid,
        gid,
        groups,
        drop_caps: uid.is_some_and(|u| u != 0),
    }))
}

/// Everything the child needs, computed before forking. The pointer arrays
/// point into the `CString`s held alongside them.
struct Prepared {
    _argv: Vec<CString>,
    argv: Vec<*const c_char>,
    _envp: Vec<CString>,
    envp: Vec<*const c_char>,
    candidates: Vec<CString>,
    /// argv for glibc's `ENOEXEC` fallback: `/bin/sh FILE ARGS…`; slot 1 is
    /// filled in with the candidate by the child.
    sh_argv: Vec<*const c_char>,
    shell: CString,
    console: Console,
    cgroup_procs: Option<CString>,
    limits: Vec<(c_int, libc::rlimit, u32)>,
    umask: Option<libc::mode_t>,
    nice: Option<c_int>,
    /// (`oom_score_adj` text, legacy `oom_adj` text).
    oom: Option<(Vec<u8>, Vec<u8>)>,
    chroot: Option<CString>,
    chdir: Option<CString>,
    creds: Option<Creds>,
    piped: bool,
    trace: bool,
    inherit_fd: Option<c_int>,
}

fn cstring(s: &str) -> Result<CString, SpawnError> {
    CString::new(s).map_err(|_| SpawnError::new("execute", Errno::EINVAL))
}

fn pointers(strings: &[CString]) -> Vec<*const c_char> {
    strings
        .iter()
        .map(|s| s.as_ptr())
        .chain([std::ptr::null()])
        .collect()
}

impl Prepared {
    fn new(plan: &SpawnPlan, argv: Vec<String>, piped: bool, console: Console) -> Result<Self, SpawnError> {
        let conf = plan.conf;
        let file = argv.first().map(String::as_str).unwrap_or("");
        let candidates = exec_candidates(file, plan.env)
            .iter()
            .map(|c| cstring(c))
            .collect::<Result<Vec<_>, _>>()?;
        let argv = argv.iter().map(|a| cstring(a)).collect::<Result<Vec<_>, _>>()?;
        let envp = plan
            .env
            .iter()
            .map(|e| cstring(e))
            .collect::<Result<Vec<_>, _>>()?;
        let shell = cstring(SHELL)?;
        let sh_argv = [shell.as_ptr(), std::ptr::null()]
            .into_iter()
            .chain(argv.iter().skip(1).map(|a| a.as_ptr()))
            .chain([std::ptr::null()])
            .collect();
        let limits = conf
            .limits()
            .map(|l| {
                let index = Resource::ALL.iter().position(|r| *r == l.resource).unwrap_or(0);
                let value = libc::rlimit {
                    rlim_cur: l.soft.as_rlim() as libc::rlim_t,
                    rlim_max: l.hard.as_rlim() as libc::rlim_t,
                };
                (
                    rlimit_resource(l.resource),
                    value,
                    stage::RLIMIT_BASE + index as u32,
                )
            })
            .collect();
        let umask = match conf.umask() {
            Some(mask) => Some(mask),
            None if plan.session => None,
            None => Some(DEFAULT_UMASK),
        };
        let chdir = match conf.chdir() {
            Some(dir) => Some(cstring(dir)?),
            None if plan.session => None,
            None => Some(cstring("/")?),
        };
        Ok(Prepared {
            argv: pointers(&argv),
            _argv: argv,
            envp: pointers(&envp),
            _envp: envp,
            candidates,
            sh_argv,
            shell,
            console,
            cgroup_procs: plan
                .cgroup_procs
                .map(|p| CString::new(p.as_os_str().as_encoded_bytes()))
                .transpose()
                .map_err(|_| SpawnError::new("enter cgroup", Errno::EINVAL))?,
            limits,
            umask: umask.map(|m| m as libc::mode_t),
            nice: conf.nice(),
            oom: conf.oom_score().map(|score| {
                (
                    format!("{score}\n").into_bytes(),
                    format!("{}\n", legacy_oom_adj(score)).into_bytes(),
                )
            }),
            chroot: conf.chroot().map(cstring).transpose()?,
            chdir,
            creds: credentials(conf)?,
            piped,
            trace: plan.trace,
            inherit_fd: plan.inherit_fd,
        })
    }
}

/// Opens a pty for `console log`: master close-on-exec and non-blocking,
/// slave close-on-exec and in raw mode (so `\n` stays `\n`).
fn open_log_pty() -> nix::Result<(OwnedFd, OwnedFd)> {
    use nix::pty::{grantpt, posix_openpt, ptsname_r, unlockpt};
    use nix::sys::termios::{SetArg, cfmakeraw, tcgetattr, tcsetattr};

    let master = posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)?;
    grantpt(&master)?;
    unlockpt(&master)?;
    // SAFETY: TIOCGPTPEER takes open flags by value and returns a new
    // descriptor for the slave, or -1.
    let peer = unsafe {
        libc::ioctl(
            master.as_raw_fd(),
            libc::TIOCGPTPEER,
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        )
    };
    let slave = if peer >= 0 {
        // SAFETY: `peer` is a descriptor we just received and own.
        unsafe { OwnedFd::from_raw_fd(peer) }
    } else {
        // Kernels before 4.13: open the slave by name.
        let name = ptsname_r(&master)?;
        nix::fcntl::open(
            name.as_str(),
            OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )?
    };
    let mut term = tcgetattr(&slave)?;
    cfmakeraw(&mut term);
    tcsetattr(&slave, SetArg::TCSANOW, &term)?;
    let master = OwnedFd::from(master);
    set_nonblocking(&master)?;
    Ok((master, slave))
}

fn set_nonblocking(fd: &OwnedFd) -> nix::Result<()> {
    let flags = OFlag::from_bits_retain(fcntl(fd, FcntlArg::F_GETFL)?);
    fcntl(fd, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
    Ok(())
}

/// Starts one process of a job instance (see the module documentation for
/// what the child does). Returns once the child has exec'd (or stopped at
/// its exec, when traced), or with the reason it could not.
pub fn spawn(plan: &SpawnPlan) -> Result<Child, SpawnError> {
    let process = &plan
        .conf
        .process(plan.process)
        .ok_or(SpawnError::new("find process", Errno::ENOENT))?
        .to_owned();
    let (argv, script) = match command_of(process) {
        Command::Piped(text) => (command_argv(process), Some(text)),
        _ => (command_argv(process), None),
    };

    // Everything that can fail without side effects (user look-ups, bad
    // strings) comes first.
    let mut prep = Prepared::new(plan, argv, script.is_some(), plan.console)?;
    let pty = match plan.console {
        Console::Log => match open_log_pty() {
            Ok(pty) => Some(pty),
            Err(e) => {
                // As Upstart: a job whose pty cannot be made still runs,
                // without logging.
                tracing::error!(
                    job = plan.job,
                    instance = plan.instance,
                    "Failed to create pty - disabling logging for job: {}",
                    e.desc()
                );
                prep.console = Console::None;
                None
            }
        },
        _ => None,
    };

    let (report_r, report_w) =
        nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| SpawnError::new("create pipe", e))?;
    let script_pipe = match script {
        Some(_) => Some(nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| SpawnError::new("create pipe", e))?),
        None => None,
    };

    // Block every signal across fork, so the child cannot run one of the
    // daemon's handlers before it has reset them.
    let mut old_mask = SigSet::empty();
    let _ = pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&SigSet::all()), Some(&mut old_mask));
    // The child is created the way posix_spawn does it: `clone` with
    // CLONE_VM|CLONE_VFORK on a stack of its own, so no page tables are
    // copied (fork cost the daemon ~0.25 ms a job at start-up) and this
    // thread waits until the child has exec'd or exited. Without
    // CLONE_SIGHAND the child's signal resets stay its own.
    struct Ctx<'a> {
        prep: &'a mut Prepared,
        report: RawFd,
        slave: Option<RawFd>,
        script: Option<RawFd>,
    }
    extern "C" fn trampoline(arg: *mut libc::c_void) -> c_int {
        // SAFETY: `arg` is the `Ctx` below, alive while this thread of the
        // parent is suspended by CLONE_VFORK.
        let ctx = unsafe { &mut *(arg as *mut Ctx) };
        child_main(ctx.prep, ctx.report, ctx.slave, ctx.script)
    }
    let mut ctx = Ctx {
        prep: &mut prep,
        report: report_w.as_raw_fd(),
        slave: pty.as_ref().map(|(_, slave)| slave.as_raw_fd()),
        script: script_pipe.as_ref().map(|(r, _)| r.as_raw_fd()),
    };
    // The child's stack, kept from one spawn to the next (only one child
    // runs on it at a time: CLONE_VFORK holds this thread until it has
    // exec'd or exited); freeing it each time would unmap it, and a TLB
    // flush per job is dear under emulation.
    thread_local! {
        static STACK: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    let top = STACK.with_borrow_mut(|stack| {
        if stack.len() < CHILD_STACK {
            *stack = vec![0u8; CHILD_STACK];
        }
        // SAFETY: one past the end of `stack`, rounded down to 16 bytes as
        // the ABI wants; the stack grows down from there.
        (unsafe { stack.as_mut_ptr().add(stack.len()) } as usize) & !15
    });
    // SAFETY: the child only runs `child_main`, which makes raw system calls
    // on memory prepared before the clone and never returns (it execs or
    // `_exit`s); it allocates nothing and takes no lock. `ctx` and `stack`
    // outlive it (the stack is the thread's, kept): CLONE_VFORK holds this
    // thread until the exec or exit.
    let cloned = unsafe {
        libc::clone(
            trampoline,
            top as *mut libc::c_void,
            libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
            (&mut ctx as *mut Ctx).cast(),
        )
    };
    let pid = if cloned < 0 {
        let _ = pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&old_mask), None);
        return Err(SpawnError::new("fork", Errno::last()));
    } else {
        Pid::from_raw(cloned)
    };
    let _ = pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&old_mask), None);
    drop(report_w);
    let (log, slave) = pty.unzip();
    drop(slave);
    let script_w = script_pipe.map(|(r, w)| {
        drop(r);
        w
    });

    if let Err(e) = read_reports(plan, &report_r) {
        reap_failed(pid);
        return Err(e);
    }
    tracing::debug!(
        job = plan.job,
        instance = plan.instance,
        process = plan.process.name(),
        pid = pid.as_raw(),
        "spawned"
    );

    let script = match (script_w, script) {
        (Some(fd), Some(text)) => feed_script(plan, fd, text),
        _ => None,
    };
    Ok(Child { pid, log, script })
}

/// Reaps a child whose setup failed: it has reported and is `_exit`ing.
/// This is the only wait on that pid. SIGKILL first, so that this cannot
/// block whatever state the child is in (a traced child may also report a
/// signal-delivery stop before its exit).
fn reap_failed(pid: Pid) {
    use nix::sys::wait::{WaitStatus, waitpid};
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
    loop {
        match waitpid(pid, None) {
            Ok(WaitStatus::Exited(..) | WaitStatus::Signaled(..)) => break,
            Ok(_) | Err(Errno::EINTR) => continue,
            Err(_) => break,
        }
    }
}

/// Writes what fits of a piped script now; returns the rest, if any.
fn feed_script(plan: &SpawnPlan, fd: OwnedFd, text: String) -> Option<ScriptFeed> {
    if let Err(e) = set_nonblocking(&fd) {
        tracing::warn!(
            job = plan.job,
            instance = plan.instance,
            "script pipe: {}",
            e.desc()
        );
    }
    let mut data = Vec::with_capacity(SCRIPT_PREAMBLE.len() + text.len());
    data.extend_from_slice(SCRIPT_PREAMBLE);
    data.extend_from_slice(text.as_bytes());
    let mut feed = ScriptFeed { fd, data, written: 0 };
    match feed.write_some() {
        Ok(true) => None,
        Ok(false) => Some(feed),
        Err(e) => {
            tracing::warn!(
                job = plan.job,
                instance = plan.instance,
                process = plan.process.name(),
                "unable to write script: {e}"
            );
            None
        }
    }
}

/// Reads the child's reports until EOF: warnings are logged, the first
/// failure is returned.
fn read_reports(plan: &SpawnPlan, fd: &OwnedFd) -> Result<(), SpawnError> {
    let mut data = Vec::new();
    let mut buf = [0u8; 64];
    loop {
        match nix::unistd::read(fd, &mut buf) {
            Ok(0) => break,
            Ok(n) => data.extend_from_slice(&buf[..n]),
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(SpawnError::new("execute", e)),
        }
    }
    let mut chunks = data.chunks_exact(8);
    for rec in chunks.by_ref() {
        let code = u32::from_ne_bytes([rec[0], rec[1], rec[2], rec[3]]);
        let errno = Errno::from_raw(i32::from_ne_bytes([rec[4], rec[5], rec[6], rec[7]]));
        if code & stage::WARNING != 0 {
            if code & !stage::WARNING == stage::CONSOLE {
                tracing::warn!(
                    job = plan.job,
                    instance = plan.instance,
                    "Failed to open system console: {}",
                    errno.desc()
                );
            } else {
                tracing::warn!(
                    job = plan.job,
                    instance = plan.instance,
                    "unable to {}: {}",
                    stage::name(code),
                    errno.desc()
                );
            }
        } else {
            return Err(SpawnError::new(stage::name(code), errno));
        }
    }
    if !chunks.remainder().is_empty() {
        return Err(SpawnError::new("execute", Errno::EILSEQ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// The child, between fork and exec: raw system calls only, no allocation, no
// panics (nothing here indexes out of bounds or unwraps).

type ChildResult<T> = Result<T, (u32, c_int)>;

fn check(ret: c_int, stage: u32) -> ChildResult<c_int> {
    if ret < 0 {
        Err((stage, Errno::last_raw()))
    } else {
        Ok(ret)
    }
}

fn child_main(prep: &mut Prepared, report: RawFd, slave: Option<RawFd>, script: Option<RawFd>) -> ! {
    // The report pipe first, so that nothing below can land on top of it.
    let report = raise_fd(report).unwrap_or(report);
    let Err((code, errno)) = child_setup(prep, report, slave, script);
    child_report(report, code, errno);
    // SAFETY: `_exit` ends the process without running any user-space code.
    unsafe { libc::_exit(127) }
}

/// Sends one report record to the parent.
fn child_report(report: RawFd, code: u32, errno: c_int) {
    let [a, b, c, d] = code.to_ne_bytes();
    let [e, f, g, h] = errno.to_ne_bytes();
    let record = [a, b, c, d, e, f, g, h];
    loop {
        // SAFETY: writes 8 bytes from a live stack array.
        let ret = unsafe { libc::write(report, record.as_ptr().cast(), record.len()) };
        if ret >= 0 || Errno::last_raw() != libc::EINTR {
            break;
        }
    }
}

/// Moves `fd` to `FIRST_FREE_FD` or above (close-on-exec) when it is below.
fn raise_fd(fd: c_int) -> Result<c_int, c_int> {
    if fd >= FIRST_FREE_FD {
        return Ok(fd);
    }
    // SAFETY: F_DUPFD_CLOEXEC on a descriptor we hold; no memory involved.
    let new = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, FIRST_FREE_FD) };
    if new < 0 {
        return Err(Errno::last_raw());
    }
    // SAFETY: closes the old number, which nothing else uses.
    unsafe { libc::close(fd) };
    Ok(new)
}

fn child_setup(
    p: &mut Prepared,
    report: RawFd,
    slave: Option<RawFd>,
    script: Option<RawFd>,
) -> ChildResult<Infallible> {
    // Signals: default dispositions for all, then nothing blocked (all are
    // blocked since before the fork). Raw system calls, because glibc's
    // wrappers refuse its reserved signals 32 and 33, and an ignored one is
    // inherited through exec. An all-zero kernel `struct sigaction` is
    // SIG_DFL with no flags and an empty mask on every architecture; the
    // errors (SIGKILL, SIGSTOP) are expected and ignored.
    let zeroes = [0u64; 8];
    for sig in 1..=64 {
        // SAFETY: the kernel reads a struct sigaction (at most 32 bytes)
        // from a live zeroed buffer; no old action is returned.
        unsafe {
            libc::syscall(
                libc::SYS_rt_sigaction,
                sig,
                zeroes.as_ptr(),
                std::ptr::null_mut::<u64>(),
                8 as libc::size_t,
            )
        };
    }
    // SAFETY: the kernel reads an 8-byte sigset from a live zeroed buffer.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK,
            zeroes.as_ptr(),
            std::ptr::null_mut::<u64>(),
            8 as libc::size_t,
        )
    };
    if ret < 0 {
        return Err((stage::SIGNALS, Errno::last_raw()));
    }

    // SAFETY: no arguments.
    check(unsafe { libc::setsid() }, stage::SESSION)?;

    if let Some(path) = &p.cgroup_procs {
        let fd = open(path, libc::O_WRONLY, stage::CGROUP)?;
        write_all(fd, b"0", stage::CGROUP)?;
        // SAFETY: closes a descriptor opened above.
        check(unsafe { libc::close(fd) }, stage::CGROUP)?;
    }

    let slave = slave.map(raise_fd).transpose().map_err(|e| (stage::CONSOLE, e))?;
    let script = script
        .map(raise_fd)
        .transpose()
        .map_err(|e| (stage::SCRIPT_FD, e))?;
    setup_stdio(p.console, slave, report)?;
    if let Some(fd) = script {
        // SAFETY: plain descriptor operations.
        check(unsafe { libc::dup2(fd, SCRIPT_FD) }, stage::SCRIPT_FD)?;
        // SAFETY: as above.
        unsafe { libc::close(fd) };
    }
    // Whatever else the daemon has open closes at exec, even a descriptor
    // inherited without FD_CLOEXEC (best effort: close_range is Linux 5.11+).
    let keep_from = if p.piped { FIRST_FREE_FD } else { SCRIPT_FD };
    // SAFETY: close_range only sets descriptor flags here; no memory.
    unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3 as c_uint,
            (SCRIPT_FD - 1) as c_uint,
            libc::CLOSE_RANGE_CLOEXEC,
        );
        libc::syscall(
            libc::SYS_close_range,
            keep_from as c_uint,
            c_uint::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        );
    }
    if let Some(fd) = p.inherit_fd {
        // SAFETY: clears the descriptor's flags; no memory.
        unsafe { libc::fcntl(fd, libc::F_SETFD, 0) };
    }

    // The oom file is opened before the rlimits, which may leave no
    // descriptor free (`limit nofile 3 3`).
    let oom = match &p.oom {
        Some((score, adj)) => match open(c"/proc/self/oom_score_adj", libc::O_WRONLY, stage::OOM) {
            Ok(fd) => Some((fd, score)),
            Err((_, libc::ENOENT)) => Some((open(c"/proc/self/oom_adj", libc::O_WRONLY, stage::OOM)?, adj)),
            Err(e) => return Err(e),
        },
        None => None,
    };

    for (resource, value, code) in &p.limits {
        // SAFETY: `value` is a valid rlimit; the resource's type differs
        // between libcs, hence the inferred cast.
        check(unsafe { libc::setrlimit(*resource as _, value) }, *code)?;
    }

    if let Some(mask) = p.umask {
        // SAFETY: cannot fail.
        unsafe { libc::umask(mask) };
    }

    if let Some(nice) = p.nice {
        // SAFETY: no memory arguments.
        check(
            unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, nice) },
            stage::PRIORITY,
        )?;
    }

    if let Some((fd, text)) = oom {
        write_all(fd, text, stage::OOM)?;
        // SAFETY: closes the descriptor opened above.
        check(unsafe { libc::close(fd) }, stage::OOM)?;
    }

    if let Some(dir) = &p.chroot {
        // SAFETY: a NUL-terminated path prepared before the fork.
        check(unsafe { libc::chroot(dir.as_ptr()) }, stage::CHROOT)?;
    }
    if let Some(dir) = &p.chdir {
        // SAFETY: as above.
        check(unsafe { libc::chdir(dir.as_ptr()) }, stage::CHDIR)?;
    }

    if let Some(creds) = &p.creds {
        set_credentials(creds, p.piped)?;
    }

    if p.trace {
        // SAFETY: PTRACE_TRACEME ignores its other arguments.
        let ret = unsafe {
            libc::ptrace(
                libc::PTRACE_TRACEME,
                0,
                std::ptr::null_mut::<libc::c_void>(),
                std::ptr::null_mut::<libc::c_void>(),
            )
        };
        if ret < 0 {
            return Err((stage::TRACE, Errno::last_raw()));
        }
    }

    Err((stage::EXEC, exec(p)))
}

/// Points 0, 1 and 2 at the console type's files.
fn setup_stdio(console: Console, slave: Option<RawFd>, report: RawFd) -> ChildResult<()> {
    let null = c"/dev/null";
    let path = match console {
        Console::Output | Console::Owner => c"/dev/console",
        Console::None | Console::Log => null,
    };
    // O_NONBLOCK: opening a serial console without CLOCAL would otherwise
    // wait for carrier, and the daemon waits for this child. Cleared below.
    let fd = match open(
        path,
        libc::O_RDWR | libc::O_NOCTTY | libc::O_NONBLOCK,
        stage::CONSOLE,
    ) {
        Ok(fd) => fd,
        Err((_, errno)) if console == Console::Output => {
            // As Upstart: `console output` without a console runs with
            // /dev/null (and a warning).
            child_report(report, stage::WARNING | stage::CONSOLE, errno);
            open(null, libc::O_RDWR | libc::O_NOCTTY, stage::CONSOLE)?
        }
        Err(e) => return Err(e),
    };
    let fd = raise_fd(fd).map_err(|e| (stage::CONSOLE, e))?;
    // SAFETY: F_GETFL/F_SETFL on a descriptor we hold; no memory.
    unsafe {
        let flags = check(libc::fcntl(fd, libc::F_GETFL), stage::CONSOLE)?;
        check(
            libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK),
            stage::CONSOLE,
        )?;
    }
    if console == Console::Owner {
        // Become the console's owner (stealing it if need be, as Upstart;
        // the result is ignored as there).
        // SAFETY: TIOCSCTTY takes an int argument.
        unsafe { libc::ioctl(fd, libc::TIOCSCTTY, 1 as c_int) };
    }
    let out = match (console, slave) {
        (Console::Log, Some(slave)) => slave,
        _ => fd,
    };
    for (from, to) in [(fd, 0), (out, 1), (out, 2)] {
        // SAFETY: plain descriptor operations.
        check(unsafe { libc::dup2(from, to) }, stage::CONSOLE)?;
    }
    // SAFETY: both are close-on-exec copies that are no longer needed.
    unsafe {
        libc::close(fd);
        if let Some(slave) = slave {
            libc::close(slave);
        }
    }
    Ok(())
}

fn set_credentials(c: &Creds, piped: bool) -> ChildResult<()> {
    // The shell of a piped script opens /proc/self/fd/9 after the switch:
    // the pipe must belong to the job's user (as Upstart does).
    if piped && (c.uid.is_some() || c.gid.is_some()) {
        let uid = c.uid.unwrap_or(libc::uid_t::MAX);
        let gid = c.gid.unwrap_or(libc::gid_t::MAX);
        // SAFETY: no memory arguments.
        check(unsafe { libc::fchown(SCRIPT_FD, uid, gid) }, stage::CHOWN)?;
    }
    if let Some(groups) = &c.groups {
        // SAFETY: pointer and length of a live slice.
        check(
            unsafe { libc::setgroups(groups.len() as _, groups.as_ptr()) },
            stage::GROUPS,
        )?;
    }
    if let Some(gid) = c.gid {
        // SAFETY: no memory arguments.
        check(unsafe { libc::setgid(gid) }, stage::GID)?;
    }
    if c.drop_caps {
        // SAFETY: prctl with integer arguments only. EINVAL (kernels before
        // 4.3 have no ambient set) is fine.
        let ret = unsafe {
            libc::prctl(
                libc::PR_CAP_AMBIENT,
                libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
                0 as libc::c_ulong,
                0 as libc::c_ulong,
                0 as libc::c_ulong,
            )
        };
        if ret < 0 && Errno::last_raw() != libc::EINVAL {
            return Err((stage::CAPS, Errno::last_raw()));
        }
    }
    if let Some(uid) = c.uid {
        // SAFETY: no memory arguments.
        check(unsafe { libc::setuid(uid) }, stage::UID)?;
    }
    if c.drop_caps {
        // setuid away from root cleared the permitted, effective and ambient
        // sets; this clears the inheritable one too (lowering is always
        // allowed).
        #[repr(C)]
        struct Header {
            version: u32,
            pid: c_int,
        }
        #[repr(C)]
        #[derive(Clone, Copy)]
        struct Data {
            effective: u32,
            permitted: u32,
            inheritable: u32,
        }
        let header = Header {
            version: 0x2008_0522, // _LINUX_CAPABILITY_VERSION_3
            pid: 0,
        };
        let data = [Data {
            effective: 0,
            permitted: 0,
            inheritable: 0,
        }; 2];
        // SAFETY: capset reads a v3 header and two data records from live
        // stack values.
        let ret = unsafe { libc::syscall(libc::SYS_capset, &header as *const Header, data.as_ptr()) };
        if ret < 0 {
            return Err((stage::CAPS, Errno::last_raw()));
        }
    }
    Ok(())
}

/// `execvp` over the prepared candidates; returns the errno to report.
fn exec(p: &mut Prepared) -> c_int {
    let mut eacces = false;
    let mut last = libc::ENOENT;
    for candidate in &p.candidates {
        // SAFETY: NUL-terminated path and NULL-terminated pointer arrays into
        // C strings that live in `p`.
        unsafe { libc::execve(candidate.as_ptr(), p.argv.as_ptr(), p.envp.as_ptr()) };
        let mut errno = Errno::last_raw();
        if errno == libc::ENOEXEC {
            // Not a binary and no `#!`: glibc runs it with /bin/sh.
            if let Some(slot) = p.sh_argv.get_mut(1) {
                *slot = candidate.as_ptr();
            }
            // SAFETY: as above.
            unsafe { libc::execve(p.shell.as_ptr(), p.sh_argv.as_ptr(), p.envp.as_ptr()) };
            errno = Errno::last_raw();
        }
        match errno {
            libc::EACCES => eacces = true,
            libc::ENOENT | libc::ESTALE | libc::ENOTDIR | libc::ENODEV | libc::ETIMEDOUT => {}
            _ => return errno,
        }
        last = errno;
    }
    if eacces { libc::EACCES } else { last }
}

fn open(path: &CStr, flags: c_int, stage: u32) -> ChildResult<c_int> {
    // SAFETY: `path` is a NUL-terminated string that outlives the call.
    check(
        unsafe { libc::open(path.as_ptr(), flags | libc::O_CLOEXEC) },
        stage,
    )
}

fn write_all(fd: c_int, mut data: &[u8], stage: u32) -> ChildResult<()> {
    while !data.is_empty() {
        // SAFETY: pointer and length of a live slice.
        let ret = unsafe { libc::write(fd, data.as_ptr().cast(), data.len()) };
        if ret < 0 {
            if Errno::last_raw() == libc::EINTR {
                continue;
            }
            return Err((stage, Errno::last_raw()));
        }
        data = data.get(ret as usize..).unwrap_or(&[]);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use jobconf_parser::{Limit, LimitValue};
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    use nix::sys::signal::{Signal, kill};
    use nix::sys::wait::{WaitStatus, waitpid};
    use std::collections::BTreeSet;
    use std::fs;
    use std::io::Write as _;
    use std::os::fd::AsFd;
    use std::os::unix::fs::PermissionsExt;
    use std::path::PathBuf;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::{Duration, Instant};

    /// Serialises the tests that change process-wide state (the umask) or
    /// the system's users and groups.
    static GLOBAL: Mutex<()> = Mutex::new(());

    fn lock() -> std::sync::MutexGuard<'static, ()> {
        GLOBAL.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reports a skipped test on the real stderr (not captured by libtest,
    /// so it shows even when the test passes).
    fn skipped(test: &str, why: &str) {
        let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {why}");
    }

    fn is_root() -> bool {
        nix::unistd::geteuid().is_root()
    }

    macro_rules! require_root {
        ($test:expr) => {
            if !is_root() {
                skipped($test, "needs root (run the tests as root, as CI does)");
                return;
            }
        };
    }

    fn exec_conf(command: &str) -> JobConf {
        let mut conf = JobConf::default();
        conf.edit(|c| {
            c.process.main = Some(Process {
                command: command.into(),
                script: false,
            })
        });
        conf
    }

    fn script_conf(text: &str) -> JobConf {
        let mut conf = JobConf::default();
        conf.edit(|c| {
            c.process.main = Some(Process {
                command: text.into(),
                script: true,
            })
        });
        conf
    }

    fn env() -> Vec<String> {
        vec![
            "PATH=/usr/local/bin:/usr/bin:/bin".into(),
            "UPSTART_JOB=spawn-test".into(),
            "UPSTART_INSTANCE=".into(),
        ]
    }

    fn plan<'a>(conf: &'a JobConf, env: &'a [String]) -> SpawnPlan<'a> {
        SpawnPlan {
            job: "spawn-test",
            instance: "",
            process: ProcessKind::Main,
            conf,
            env,
            console: Console::Log,
            trace: false,
            cgroup_procs: None,
            session: false,
            inherit_fd: None,
        }
    }

    /// [`super::spawn`], retried while exec fails with ETXTBSY: a test that
    /// has just written an executable races with other test threads' forks,
    /// whose children hold a copy of the (close-on-exec) write descriptor
    /// until they exec. This shadows the glob import in these tests.
    fn spawn(plan: &SpawnPlan) -> Result<Child, SpawnError> {
        let mut tries = 0;
        loop {
            match super::spawn(plan) {
                Err(SpawnError {
                    errno: Errno::ETXTBSY,
                    ..
                }) if tries < 100 => {
                    tries += 1;
                    std::thread::sleep(Duration::from_millis(10));
                }
                result => return result,
            }
        }
    }

    struct Outcome {
        output: String,
        status: WaitStatus,
        script_error: Option<std::io::Error>,
    }

    /// Feeds the script, collects the log until EIO, then reaps the child.
    fn finish(child: Child) -> Outcome {
        let Child {
            pid,
            mut log,
            mut script,
        } = child;
        let mut output = Vec::new();
        let mut script_error = None;
        let deadline = Instant::now() + Duration::from_secs(60);
        while log.is_some() || script.is_some() {
            assert!(Instant::now() < deadline, "child {pid} timed out");
            let (log_ready, script_ready) = {
                let mut fds = Vec::new();
                if let Some(fd) = &log {
                    fds.push(PollFd::new(fd.as_fd(), PollFlags::POLLIN));
                }
                if let Some(feed) = &script {
                    fds.push(PollFd::new(feed.fd.as_fd(), PollFlags::POLLOUT));
                }
                poll(&mut fds, PollTimeout::from(1000u16)).expect("poll");
                let ready = |i: usize| {
                    fds.get(i)
                        .and_then(|f| f.revents())
                        .is_some_and(|r| !r.is_empty())
                };
                match (&log, &script) {
                    (Some(_), Some(_)) => (ready(0), ready(1)),
                    (Some(_), None) => (ready(0), false),
                    (None, _) => (false, ready(0)),
                }
            };
            if script_ready && let Some(feed) = &mut script {
                match feed.write_some() {
                    Ok(true) => script = None,
                    Ok(false) => {}
                    Err(e) => {
                        script_error = Some(e);
                        script = None;
                    }
                }
            }
            if log_ready && let Some(fd) = &log {
                let mut buf = [0u8; 65536];
                match nix::unistd::read(fd, &mut buf) {
                    Ok(0) | Err(Errno::EIO) => log = None,
                    Ok(n) => output.extend_from_slice(&buf[..n]),
                    Err(Errno::EAGAIN) | Err(Errno::EINTR) => {}
                    Err(e) => panic!("reading the log pty: {e}"),
                }
            }
        }
        let status = waitpid(pid, None).expect("waitpid");
        Outcome {
            output: String::from_utf8_lossy(&output).into_owned(),
            status,
            script_error,
        }
    }

    fn run(plan: &SpawnPlan) -> Outcome {
        finish(spawn(plan).unwrap_or_else(|e| panic!("spawn: {e}")))
    }

    /// Runs to completion, asserts exit status 0, returns the output.
    fn run_ok(plan: &SpawnPlan) -> String {
        let outcome = run(plan);
        assert!(
            matches!(outcome.status, WaitStatus::Exited(_, 0)),
            "{:?}, output {:?}",
            outcome.status,
            outcome.output
        );
        outcome.output
    }

    /// Spawns traced, so the child stops with SIGTRAP right after its exec
    /// (its setup complete, nothing of the new program run yet), lets
    /// `inspect` look at it, then kills and reaps it.
    fn at_exec<T>(plan: &SpawnPlan, inspect: impl FnOnce(&Child) -> T) -> T {
        let plan = SpawnPlan { trace: true, ..*plan };
        let child = spawn(&plan).unwrap_or_else(|e| panic!("spawn: {e}"));
        let status = waitpid(child.pid, None).expect("waitpid");
        assert_eq!(status, WaitStatus::Stopped(child.pid, Signal::SIGTRAP));
        let result = inspect(&child);
        kill(child.pid, Signal::SIGKILL).expect("kill");
        assert_eq!(
            waitpid(child.pid, None).expect("waitpid"),
            WaitStatus::Signaled(child.pid, Signal::SIGKILL, false)
        );
        result
    }

    fn proc_file(pid: Pid, name: &str) -> String {
        fs::read_to_string(format!("/proc/{pid}/{name}")).expect(name)
    }

    /// The value of `Key:` in a /proc/PID/status text.
    fn field(status: &str, key: &str) -> String {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key).and_then(|l| l.strip_prefix(':')))
            .map(|v| v.trim().to_string())
            .unwrap_or_else(|| panic!("no {key} in {status}"))
    }

    fn fd_target(pid: Pid, fd: i32) -> String {
        fs::read_link(format!("/proc/{pid}/fd/{fd}"))
            .expect("readlink")
            .to_string_lossy()
            .into_owned()
    }

    /// Whether the child's descriptor has O_NONBLOCK (from fdinfo).
    fn fd_nonblocking(pid: Pid, fd: i32) -> bool {
        let info = proc_file(pid, &format!("fdinfo/{fd}"));
        let flags = u32::from_str_radix(&field(&info, "flags"), 8).unwrap();
        flags & libc::O_NONBLOCK as u32 != 0
    }

    fn open_fds(pid: Pid) -> BTreeSet<i32> {
        fs::read_dir(format!("/proc/{pid}/fd"))
            .expect("fd dir")
            .map(|e| e.unwrap().file_name().to_string_lossy().parse().unwrap())
            .collect()
    }

    /// Field 7 of /proc/PID/stat: the controlling tty.
    fn tty_nr(pid: Pid) -> u64 {
        let stat = proc_file(pid, "stat");
        let after_comm = &stat[stat.rfind(')').unwrap() + 2..];
        after_comm.split(' ').nth(4).unwrap().parse().unwrap()
    }

    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> TempDir {
            static COUNT: AtomicUsize = AtomicUsize::new(0);
            let n = COUNT.fetch_add(1, Ordering::Relaxed);
            let path = std::env::temp_dir().join(format!("upshot-spawn-{tag}-{}-{n}", std::process::id()));
            let _ = fs::remove_dir_all(&path);
            fs::create_dir_all(&path).unwrap();
            fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
            TempDir(path)
        }
        fn path(&self) -> &str {
            self.0.to_str().unwrap()
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn write_file(path: &Path, text: &str, mode: u32) {
        fs::write(path, text).unwrap();
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
    }

    fn fd_flags(fd: &OwnedFd) -> (bool, bool) {
        let fd_flags = fcntl(fd, FcntlArg::F_GETFD).unwrap();
        let fl_flags = fcntl(fd, FcntlArg::F_GETFL).unwrap();
        (fd_flags & libc::FD_CLOEXEC != 0, fl_flags & libc::O_NONBLOCK != 0)
    }

    // --- argv, PATH candidates, messages (no process) -------------------

    #[test]
    fn argv_as_upstart_builds_it() {
        let exec = |c: &str| {
            command_argv(&Process {
                command: c.into(),
                script: false,
            })
        };
        let script = |c: &str| {
            command_argv(&Process {
                command: c.into(),
                script: true,
            })
        };
        let sh = |text: &str| -> Vec<String> {
            ["/bin/sh", "-e", "-c", text, "/bin/sh"]
                .map(String::from)
                .to_vec()
        };

        assert_eq!(exec("/bin/echo  a\tb\r c\n"), ["/bin/echo", "a", "b", "c"]);
        assert_eq!(
            exec("daemon --foreground -x 1"),
            ["daemon", "--foreground", "-x", "1"]
        );
        for c in SHELL_CHARS.chars() {
            let command = format!("echo a{c}b");
            assert_eq!(exec(&command), sh(&format!("exec {command}")), "{c}");
        }
        // Characters outside the list do not need a shell.
        assert_eq!(exec("echo a-b,c:d@e%f+g#h.i/j"), ["echo", "a-b,c:d@e%f+g#h.i/j"]);

        // A single-line script, trailing newlines stripped.
        assert_eq!(script("echo hi\n\n\n"), sh("echo hi"));
        assert_eq!(script("echo hi"), sh("echo hi"));
        // Anything after a newline but more newlines makes it multi-line.
        let piped = ["/bin/sh", "-e", "/proc/self/fd/9"];
        assert_eq!(script("echo a\necho b\n"), piped);
        assert_eq!(script("\necho a\n"), piped);
        assert_eq!(script("echo a\n\n\necho b"), piped);
        assert_eq!(
            command_of(&Process {
                command: "a\nb\n".into(),
                script: true
            }),
            Command::Piped("a\nb\n".into())
        );
    }

    #[test]
    fn path_candidates_follow_execvp() {
        let env = |path: Option<&str>| -> Vec<String> {
            path.map(|p| vec![format!("PATH={p}")]).unwrap_or_default()
        };
        assert_eq!(exec_candidates("/bin/x", &env(Some("/a"))), ["/bin/x"]);
        assert_eq!(exec_candidates("sub/x", &env(Some("/a"))), ["sub/x"]);
        assert_eq!(
            exec_candidates("x", &env(Some("/a::/b/"))),
            ["/a/x", "x", "/b//x"]
        );
        assert_eq!(exec_candidates("x", &env(None)), ["/bin/x", "/usr/bin/x"]);
        assert_eq!(exec_candidates("x", &env(Some(""))), ["x"]);
        assert!(exec_candidates("", &env(Some("/a"))).is_empty());
        // The first PATH wins, other variables are not PATH.
        let env = vec!["MYPATH=/no".to_string(), "PATH=/yes".into(), "PATH=/later".into()];
        assert_eq!(exec_candidates("x", &env), ["/yes/x"]);
    }

    #[test]
    fn stage_names_and_messages() {
        for (i, r) in Resource::ALL.iter().enumerate() {
            let code = stage::RLIMIT_BASE + i as u32;
            assert_eq!(stage::name(code), format!("set \"{}\" resource limit", r.name()));
        }
        assert_eq!(stage::name(stage::EXEC), "execute");
        assert_eq!(stage::name(stage::UID), "change user");
        assert_eq!(stage::name(stage::WARNING | stage::CONSOLE), "open console");
        let e = SpawnError::new("execute", Errno::ENOENT);
        assert_eq!(e.to_string(), "unable to execute: No such file or directory");
        let e = SpawnError::new("change user", Errno::EPERM);
        assert_eq!(e.to_string(), "unable to change user: Operation not permitted");
        // oom_adj's old scale, as Upstart converts.
        assert_eq!(legacy_oom_adj(-1000), -17);
        assert_eq!(legacy_oom_adj(1000), 15);
        assert_eq!(legacy_oom_adj(500), 7);
        assert_eq!(legacy_oom_adj(-500), -8);
        assert_eq!(legacy_oom_adj(0), 0);
    }

    // --- running commands ------------------------------------------------

    #[test]
    fn exec_plain_command() {
        let conf = exec_conf("/bin/echo hello   world");
        let env = env();
        // Raw pty: "\n" is not turned into "\r\n".
        assert_eq!(run_ok(&plan(&conf, &env)), "hello world\n");
        // The command runs directly, not through a shell.
        at_exec(&plan(&conf, &env), |child| {
            assert_eq!(proc_file(child.pid, "cmdline"), "/bin/echo\0hello\0world\0");
        });
    }

    #[test]
    fn environment_is_exactly_the_plan() {
        let conf = exec_conf("/usr/bin/env");
        let env = vec!["A=1".to_string(), "B=two words".into(), "UPSTART_JOB=j".into()];
        assert_eq!(run_ok(&plan(&conf, &env)), "A=1\nB=two words\nUPSTART_JOB=j\n");
    }

    #[test]
    fn other_process_kinds() {
        let mut conf = JobConf::default();
        conf.edit(|c| {
            c.process.pre_start = Some(Process {
                command: "/bin/echo pre-start".into(),
                script: false,
            })
        });
        let env = env();
        let plan = SpawnPlan {
            process: ProcessKind::PreStart,
            ..plan(&conf, &env)
        };
        assert_eq!(run_ok(&plan), "pre-start\n");
        let main = SpawnPlan {
            process: ProcessKind::Main,
            ..plan
        };
        assert_eq!(
            spawn(&main).unwrap_err(),
            SpawnError::new("find process", Errno::ENOENT)
        );
    }

    #[test]
    fn path_lookup_uses_the_job_environment() {
        let dir = TempDir::new("path");
        write_file(
            &dir.0.join("upshot-path-probe"),
            "#!/bin/sh\necho \"probe $1\"\n",
            0o755,
        );
        // No "#!": execvp runs it with /bin/sh (ENOEXEC).
        write_file(
            &dir.0.join("upshot-no-shebang"),
            "echo \"no shebang $1\"\n",
            0o755,
        );
        write_file(
            &dir.0.join("upshot-not-executable"),
            "#!/bin/sh\necho no\n",
            0o644,
        );
        let daemon_path = std::env::var("PATH").unwrap_or_default();
        assert!(!daemon_path.contains(dir.path()));

        let env = vec![format!("PATH={}:/usr/bin:/bin", dir.path())];
        let conf = exec_conf("upshot-path-probe x");
        assert_eq!(run_ok(&plan(&conf, &env)), "probe x\n");
        let conf = exec_conf("upshot-no-shebang y");
        assert_eq!(run_ok(&plan(&conf, &env)), "no shebang y\n");
        // Found but not executable (even for root: no x bit at all).
        let conf = exec_conf("upshot-not-executable");
        assert_eq!(
            spawn(&plan(&conf, &env)).unwrap_err(),
            SpawnError::new("execute", Errno::EACCES)
        );

        // The daemon's PATH is not used: with the job's PATH pointing
        // nowhere, `echo` is not found.
        let conf = exec_conf("echo hi");
        let env = vec!["PATH=/nonexistent-upshot-dir".to_string()];
        assert_eq!(
            spawn(&plan(&conf, &env)).unwrap_err(),
            SpawnError::new("execute", Errno::ENOENT)
        );
        // No PATH at all: execvp's default /bin:/usr/bin.
        assert_eq!(run_ok(&plan(&conf, &[])), "hi\n");
    }

    #[test]
    fn shell_for_special_characters() {
        let env = vec!["PATH=/usr/bin:/bin".to_string(), "FOO=bar".into()];
        let conf = exec_conf("echo \"a  b\" $FOO");
        assert_eq!(run_ok(&plan(&conf, &env)), "a  b bar\n");
        // The shell `exec`s the command: the process running readlink is
        // the shell's own ($$).
        let conf = exec_conf("readlink /proc/$$/exe");
        assert!(run_ok(&plan(&conf, &env)).trim_end().ends_with("/readlink"));
    }

    #[test]
    fn single_line_script() {
        let conf = script_conf("echo one; echo two\n\n");
        let env = env();
        assert_eq!(run_ok(&plan(&conf, &env)), "one\ntwo\n");
        at_exec(&plan(&conf, &env), |child| {
            assert_eq!(
                proc_file(child.pid, "cmdline"),
                "/bin/sh\0-e\0-c\0echo one; echo two\0/bin/sh\0"
            );
            assert!(child.script.is_none());
        });
    }

    #[test]
    fn multi_line_script_larger_than_a_pipe() {
        let mut text = String::from(
            "if [ -e /proc/$$/fd/9 ]; then echo fd9-open; else echo fd9-closed; fi\ncat <<'EOF' | wc -c\n",
        );
        let line = format!("{}\n", "x".repeat(99));
        for _ in 0..12000 {
            text.push_str(&line);
        }
        text.push_str("EOF\necho done\n");
        assert!(text.len() > 1 << 20);
        let conf = script_conf(&text);
        let env = env();
        let child = spawn(&plan(&conf, &env)).unwrap();
        let feed = child
            .script
            .as_ref()
            .expect("a 1 MiB script does not fit in a pipe");
        assert!(feed.remaining() > 0);
        assert_eq!(
            fd_flags(&feed.fd),
            (true, true),
            "script fd: close-on-exec, non-blocking"
        );
        let outcome = finish(child);
        assert!(outcome.script_error.is_none());
        assert!(
            matches!(outcome.status, WaitStatus::Exited(_, 0)),
            "{:?}",
            outcome.status
        );
        // `exec 9<&-` ran first: the job's commands do not see fd 9.
        assert_eq!(outcome.output, "fd9-closed\n1200000\ndone\n");
    }

    #[test]
    fn script_feed_to_a_shell_that_exits() {
        // The shell reads a first chunk, then sleeps while `spawn` has
        // returned, then exits with most of the script unread.
        let mut text = String::from("sleep 0.2; exit 3\n");
        text.push_str(&"# filler\n".repeat(200_000));
        let conf = script_conf(&text);
        let env = env();
        let outcome = run(&plan(&conf, &env));
        assert!(
            matches!(outcome.status, WaitStatus::Exited(_, 3)),
            "{:?}",
            outcome.status
        );
        // The rest of the script cannot be delivered; the daemon gets EPIPE
        // (SIGPIPE is ignored), not a signal.
        let error = outcome.script_error.expect("write to a closed pipe");
        assert_eq!(error.raw_os_error(), Some(libc::EPIPE));
    }

    #[test]
    fn set_e_stops_at_the_first_failure() {
        let env = env();
        let conf = script_conf("echo before\nfalse\necho not reached\n");
        let outcome = run(&plan(&conf, &env));
        assert!(
            matches!(outcome.status, WaitStatus::Exited(_, 1)),
            "{:?}",
            outcome.status
        );
        assert_eq!(outcome.output, "before\n");
        let conf = script_conf("false; echo not reached");
        let outcome = run(&plan(&conf, &env));
        assert!(
            matches!(outcome.status, WaitStatus::Exited(_, 1)),
            "{:?}",
            outcome.status
        );
        assert_eq!(outcome.output, "");
    }

    #[test]
    fn traceme_stops_at_exec() {
        let conf = exec_conf("/bin/true");
        let env = env();
        let plan = SpawnPlan {
            trace: true,
            ..plan(&conf, &env)
        };
        let child = spawn(&plan).unwrap();
        assert_eq!(
            waitpid(child.pid, None).unwrap(),
            WaitStatus::Stopped(child.pid, Signal::SIGTRAP)
        );
        // The tracer is the thread that spawned it (the daemon must make
        // every ptrace request from that thread).
        assert_eq!(
            field(&proc_file(child.pid, "status"), "TracerPid"),
            nix::unistd::gettid().to_string()
        );
        nix::sys::ptrace::detach(child.pid, None).unwrap();
        assert_eq!(
            waitpid(child.pid, None).unwrap(),
            WaitStatus::Exited(child.pid, 0)
        );
    }

    #[test]
    fn unknown_command() {
        let env = env();
        for command in [
            "/nonexistent/upshot-command",
            "upshot-no-such-command",
            "/bin/sh-no-such",
        ] {
            let conf = exec_conf(command);
            let err = spawn(&plan(&conf, &env)).unwrap_err();
            assert_eq!(err, SpawnError::new("execute", Errno::ENOENT), "{command}");
            assert_eq!(err.to_string(), "unable to execute: No such file or directory");
        }
    }

    #[test]
    fn unknown_user_or_group() {
        let env = env();
        let mut conf = exec_conf("/bin/true");
        conf.edit(|c| c.setuid = Some("upshot-no-such-user".into()));
        let err = spawn(&plan(&conf, &env)).unwrap_err();
        assert_eq!(err, SpawnError::new("look up user", Errno::ENOENT));
        assert_eq!(
            err.to_string(),
            "unable to look up user: No such file or directory"
        );
        let mut conf = exec_conf("/bin/true");
        conf.edit(|c| c.setgid = Some("upshot-no-such-group".into()));
        assert_eq!(
            spawn(&plan(&conf, &env)).unwrap_err(),
            SpawnError::new("look up group", Errno::ENOENT)
        );
    }

    // --- stdio and descriptors ---------------------------------------------

    #[test]
    fn console_none() {
        let conf = exec_conf("/bin/echo nowhere");
        let env = env();
        let plan = SpawnPlan {
            console: Console::None,
            ..plan(&conf, &env)
        };
        let child = spawn(&plan).unwrap();
        assert!(child.log.is_none());
        assert_eq!(
            waitpid(child.pid, None).unwrap(),
            WaitStatus::Exited(child.pid, 0)
        );
        at_exec(&plan, |child| {
            for fd in 0..3 {
                assert_eq!(fd_target(child.pid, fd), "/dev/null");
                assert!(!fd_nonblocking(child.pid, fd));
            }
            assert_eq!(open_fds(child.pid), BTreeSet::from([0, 1, 2]));
            assert_eq!(tty_nr(child.pid), 0, "no controlling tty");
        });
    }

    #[test]
    fn console_log() {
        let conf = exec_conf("/bin/true");
        let env = env();
        at_exec(&plan(&conf, &env), |child| {
            let master = child.log.as_ref().expect("log pty");
            assert_eq!(
                fd_flags(master),
                (true, true),
                "master: close-on-exec, non-blocking"
            );
            assert_eq!(fd_target(child.pid, 0), "/dev/null");
            let out = fd_target(child.pid, 1);
            assert!(out.starts_with("/dev/pts/"), "{out}");
            assert_eq!(fd_target(child.pid, 2), out);
            assert_eq!(tty_nr(child.pid), 0, "the pty is not the controlling tty");
            // New session and process group.
            assert_eq!(nix::unistd::getsid(Some(child.pid)).unwrap(), child.pid);
            assert_eq!(nix::unistd::getpgid(Some(child.pid)).unwrap(), child.pid);
        });
        // stderr goes to the log too.
        let conf = exec_conf("echo to-stderr >&2");
        assert_eq!(run_ok(&plan(&conf, &env)), "to-stderr\n");
    }

    fn console_openable() -> bool {
        nix::fcntl::open(
            "/dev/console",
            OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .is_ok()
    }

    #[test]
    fn console_output() {
        if !console_openable() {
            skipped("console_output", "/dev/console cannot be opened here");
            return;
        }
        // Inspected at the exec stop, so nothing is written to the console.
        let conf = exec_conf("/bin/true");
        let env = env();
        at_exec(
            &SpawnPlan {
                console: Console::Output,
                ..plan(&conf, &env)
            },
            |child| {
                assert!(child.log.is_none());
                for fd in 0..3 {
                    assert_eq!(fd_target(child.pid, fd), "/dev/console");
                    assert!(!fd_nonblocking(child.pid, fd), "blocking console");
                }
                assert_eq!(
                    tty_nr(child.pid),
                    0,
                    "output does not take the console as controlling tty"
                );
            },
        );
    }

    /// The encoded device number (as in /proc/PID/stat) of the tty behind
    /// /dev/console, if known.
    fn console_tty_nr() -> Option<u64> {
        let active = fs::read_to_string("/sys/class/tty/console/active").ok()?;
        let name = active.split_whitespace().last()?;
        let dev = fs::read_to_string(format!("/sys/class/tty/{name}/dev")).ok()?;
        let (major, minor) = dev.trim().split_once(':')?;
        let (major, minor): (u64, u64) = (major.parse().ok()?, minor.parse().ok()?);
        Some((minor & 0xff) | (major << 8) | ((minor & !0xff) << 12))
    }

    #[test]
    fn console_owner() {
        require_root!("console_owner");
        if !console_openable() {
            skipped("console_owner", "/dev/console cannot be opened here");
            return;
        }
        // Test processes running side by side would steal it from each
        // other.
        let lock = fs::File::create(std::env::temp_dir().join("upshot-spawn-console.lock")).unwrap();
        let _lock = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive)
            .map_err(|(_, e)| e)
            .unwrap();
        let Some(console) = console_tty_nr() else {
            skipped("console_owner", "cannot tell which tty is the console");
            return;
        };
        // Do not steal the console from a session that owns it (a getty).
        let owned = fs::read_dir("/proc").unwrap().filter_map(|e| e.ok()).any(|e| {
            e.file_name().to_string_lossy().parse::<i32>().is_ok_and(|pid| {
                fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
                    stat.rfind(')')
                        .and_then(|i| stat[i + 2..].split(' ').nth(4).map(String::from))
                        == Some(console.to_string())
                })
            })
        });
        if owned {
            skipped("console_owner", "the console is some session's controlling tty");
            return;
        }
        let conf = exec_conf("/bin/true");
        let env = env();
        at_exec(
            &SpawnPlan {
                console: Console::Owner,
                ..plan(&conf, &env)
            },
            |child| {
                for fd in 0..3 {
                    assert_eq!(fd_target(child.pid, fd), "/dev/console");
                    assert!(!fd_nonblocking(child.pid, fd), "blocking console");
                }
                assert_eq!(tty_nr(child.pid), console, "the console is the controlling tty");
            },
        );
    }

    #[test]
    fn only_standard_descriptors_reach_the_child() {
        // A descriptor the daemon leaked without FD_CLOEXEC does not reach
        // the job either.
        // SAFETY: plain open of a constant path; the result is owned below.
        let raw = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY) };
        assert!(raw >= 0);
        // SAFETY: `raw` was just opened and is owned by nothing else.
        let leaked = unsafe { OwnedFd::from_raw_fd(raw) };
        let env = env();

        // What `ls` itself sees (it opens /proc/self/fd to list it; that
        // entry is left out).
        let conf = exec_conf("ls -l /proc/self/fd");
        let output = run_ok(&plan(&conf, &env));
        let fds: Vec<i32> = output
            .lines()
            .filter_map(|l| l.split_once(" -> "))
            .filter(|(_, target)| !target.starts_with("/proc/"))
            .map(|(left, _)| left.rsplit(' ').next().unwrap().parse().unwrap())
            .collect();
        assert_eq!(fds, [0, 1, 2], "{output}");

        // Exactly, at the exec stop: 0, 1, 2 (plus 9 for a piped script).
        at_exec(&plan(&conf, &env), |child| {
            assert_eq!(open_fds(child.pid), BTreeSet::from([0, 1, 2]));
        });
        let conf = script_conf("echo a\necho b\n");
        at_exec(&plan(&conf, &env), |child| {
            assert_eq!(open_fds(child.pid), BTreeSet::from([0, 1, 2, 9]));
            assert!(fd_target(child.pid, 9).starts_with("pipe:"));
        });
        drop(leaked);
    }

    #[test]
    fn signals_start_default_and_unblocked() {
        // The daemon ignores SIGPIPE (as every Rust program) and blocks
        // signals for its signalfd.
        let ours = proc_file(Pid::this(), "status");
        let ignored = u64::from_str_radix(&field(&ours, "SigIgn"), 16).unwrap();
        assert_ne!(
            ignored & (1 << (libc::SIGPIPE - 1)),
            0,
            "test premise: SIGPIPE ignored"
        );
        let mut blocked = SigSet::empty();
        blocked.add(Signal::SIGUSR1);
        blocked.add(Signal::SIGTERM);
        blocked.add(Signal::SIGCHLD);
        let mut old = SigSet::empty();
        pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&blocked), Some(&mut old)).unwrap();

        let conf = exec_conf("/bin/true");
        let env = env();
        at_exec(&plan(&conf, &env), |child| {
            let status = proc_file(child.pid, "status");
            assert_eq!(field(&status, "SigBlk"), "0000000000000000");
            assert_eq!(field(&status, "SigIgn"), "0000000000000000");
        });
        pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&old), None).unwrap();
    }

    // --- per-process settings -----------------------------------------------

    #[test]
    fn rlimits() {
        let env = env();
        let mut conf = exec_conf("cat /proc/self/limits");
        conf.edit(|c| {
            c.limits.push(Limit {
                resource: Resource::Nofile,
                soft: LimitValue::Value(123),
                hard: LimitValue::Value(456),
            })
        });
        let core_hard_unlimited = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_CORE)
            .unwrap()
            .1
            == libc::RLIM_INFINITY;
        if core_hard_unlimited {
            conf.edit(|c| {
                c.limits.insert(
                    0,
                    Limit {
                        resource: Resource::Core,
                        soft: LimitValue::Value(0),
                        hard: LimitValue::Unlimited,
                    },
                )
            });
        }
        let output = run_ok(&plan(&conf, &env));
        let limit = |name: &str| -> Vec<String> {
            let line = output.lines().find(|l| l.starts_with(name)).expect(name);
            line[name.len()..]
                .split_whitespace()
                .take(2)
                .map(String::from)
                .collect()
        };
        assert_eq!(limit("Max open files"), ["123", "456"]);
        if core_hard_unlimited {
            assert_eq!(limit("Max core file size"), ["0", "unlimited"]);
        }

        // soft above hard.
        let mut conf = exec_conf("/bin/true");
        conf.edit(|c| {
            c.limits.push(Limit {
                resource: Resource::Nofile,
                soft: LimitValue::Value(10),
                hard: LimitValue::Value(5),
            })
        });
        let err = spawn(&plan(&conf, &env)).unwrap_err();
        assert_eq!(
            err,
            SpawnError::new("set \"nofile\" resource limit", Errno::EINVAL)
        );
        assert_eq!(
            err.to_string(),
            "unable to set \"nofile\" resource limit: Invalid argument"
        );
    }

    #[test]
    fn tight_nofile_limit_with_oom_score() {
        // The oom file is opened before the limits are set.
        let env = env();
        let mut conf = exec_conf("/bin/true");
        conf.edit(|c| {
            c.limits.push(Limit {
                resource: Resource::Nofile,
                soft: LimitValue::Value(3),
                hard: LimitValue::Value(3),
            })
        });
        conf.edit(|c| c.oom_score = Some(100));
        let plan = SpawnPlan {
            console: Console::None,
            ..plan(&conf, &env)
        };
        at_exec(&plan, |child| {
            assert_eq!(proc_file(child.pid, "oom_score_adj"), "100\n");
        });
    }

    #[test]
    fn umask() {
        let _guard = lock();
        let env = env();
        // The daemon's own umask differs from the default, so "inherited"
        // and "022" can be told apart.
        let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o002));
        let conf = script_conf("umask");
        let mut set = script_conf("umask");
        set.edit(|c| c.umask = Some(0o027));
        let system = run_ok(&plan(&conf, &env));
        let session = run_ok(&SpawnPlan {
            session: true,
            ..plan(&conf, &env)
        });
        let explicit = run_ok(&plan(&set, &env));
        let explicit_session = run_ok(&SpawnPlan {
            session: true,
            ..plan(&set, &env)
        });
        nix::sys::stat::umask(old);
        assert_eq!(system, "0022\n");
        assert_eq!(session, "0002\n");
        assert_eq!(explicit, "0027\n");
        assert_eq!(explicit_session, "0027\n");
    }

    #[test]
    fn nice() {
        let env = env();
        let mut conf = exec_conf("nice");
        conf.edit(|c| c.nice = Some(7));
        assert_eq!(run_ok(&plan(&conf, &env)), "7\n");
        if is_root() {
            conf.edit(|c| c.nice = Some(-5));
            assert_eq!(run_ok(&plan(&conf, &env)), "-5\n");
        } else {
            conf.edit(|c| c.nice = Some(-5));
            assert_eq!(
                spawn(&plan(&conf, &env)).unwrap_err(),
                SpawnError::new("set priority", Errno::EACCES)
            );
        }
    }

    #[test]
    fn oom_score() {
        let env = env();
        let mut conf = exec_conf("cat /proc/self/oom_score_adj");
        conf.edit(|c| c.oom_score = Some(345));
        assert_eq!(run_ok(&plan(&conf, &env)), "345\n");
        // Lowering the score takes CAP_SYS_RESOURCE (which root here may
        // lack), else the job fails at that step.
        conf.edit(|c| c.oom_score = Some(-1000));
        if caps::has_cap(None, caps::CapSet::Effective, caps::Capability::CAP_SYS_RESOURCE).unwrap() {
            assert_eq!(run_ok(&plan(&conf, &env)), "-1000\n");
        } else {
            assert_eq!(
                spawn(&plan(&conf, &env)).unwrap_err(),
                SpawnError::new("set oom adjustment", Errno::EACCES)
            );
        }
    }

    #[test]
    fn chdir() {
        let dir = TempDir::new("chdir");
        let env = env();
        let mut conf = exec_conf("/bin/pwd");
        assert_eq!(run_ok(&plan(&conf, &env)), "/\n", "default: /");
        let here = std::env::current_dir().unwrap();
        assert_eq!(
            run_ok(&SpawnPlan {
                session: true,
                ..plan(&conf, &env)
            }),
            format!("{}\n", here.display()),
            "session init: inherited"
        );
        conf.edit(|c| c.chdir = Some(dir.path().into()));
        assert_eq!(run_ok(&plan(&conf, &env)), format!("{}\n", dir.path()));
        conf.edit(|c| c.chdir = Some(format!("{}/missing", dir.path())));
        assert_eq!(
            spawn(&plan(&conf, &env)).unwrap_err(),
            SpawnError::new("change working directory", Errno::ENOENT)
        );
    }

    #[test]
    fn cgroup() {
        let env = env();
        let conf = exec_conf("/bin/true");
        let missing = Path::new("/nonexistent-upshot/cgroup.procs");
        assert_eq!(
            spawn(&SpawnPlan {
                cgroup_procs: Some(missing),
                ..plan(&conf, &env)
            })
            .unwrap_err(),
            SpawnError::new("enter cgroup", Errno::ENOENT)
        );

        require_root!("cgroup (joining)");
        let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap();
        let Some(mount) = mountinfo.lines().find_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            right
                .starts_with("cgroup2 ")
                .then(|| left.split(' ').nth(4).map(String::from))?
        }) else {
            skipped("cgroup (joining)", "no cgroup2 hierarchy mounted");
            return;
        };
        let name = format!("upshot-spawn-test-{}", std::process::id());
        let dir = Path::new(&mount).join(&name);
        if let Err(e) = fs::create_dir(&dir) {
            skipped(
                "cgroup (joining)",
                &format!("cannot create {}: {e}", dir.display()),
            );
            return;
        }
        let procs = dir.join("cgroup.procs");
        at_exec(
            &SpawnPlan {
                cgroup_procs: Some(&procs),
                ..plan(&conf, &env)
            },
            |child| {
                let cgroups = proc_file(child.pid, "cgroup");
                let v2 = cgroups.lines().find_map(|l| l.strip_prefix("0::")).unwrap();
                assert!(v2.ends_with(&format!("/{name}")), "{cgroups}");
            },
        );
        fs::remove_dir(&dir).unwrap();
    }

    /// A root file system with /bin/sh (a static busybox if there is one,
    /// else the host's shell and the libraries `ldd` names).
    fn build_root(dir: &Path) -> Result<(), String> {
        let busybox = ["/bin/busybox", "/usr/bin/busybox", "/sbin/busybox"]
            .into_iter()
            .find(|p| Path::new(p).exists());
        let shell = fs::canonicalize(busybox.unwrap_or("/bin/sh")).map_err(|e| e.to_string())?;
        let ldd = std::process::Command::new("ldd")
            .arg(&shell)
            .output()
            .map_err(|e| format!("ldd: {e}"))?;
        let mut files = vec![(shell.clone(), PathBuf::from("/bin/sh"))];
        for word in String::from_utf8_lossy(&ldd.stdout).split_whitespace() {
            if word.starts_with('/') {
                files.push((PathBuf::from(word), PathBuf::from(word)));
            }
        }
        for (from, to) in files {
            let to = dir.join(to.strip_prefix("/").unwrap());
            fs::create_dir_all(to.parent().unwrap()).map_err(|e| e.to_string())?;
            fs::copy(&from, &to).map_err(|e| format!("{}: {e}", from.display()))?;
        }
        fs::create_dir_all(dir.join("etc")).map_err(|e| e.to_string())?;
        write_file(
            &dir.join("etc/passwd"),
            "root:x:0:0:root:/:/bin/sh\nupshot-chroot-only:x:4242:4343::/:/bin/sh\n",
            0o644,
        );
        write_file(
            &dir.join("etc/group"),
            "root:x:0:\nupshot-chroot-grp:x:4343:\nupshot-chroot-extra:x:4444:someone,upshot-chroot-only\n",
            0o644,
        );
        Ok(())
    }

    #[test]
    fn chroot() {
        require_root!("chroot");
        let root = TempDir::new("chroot");
        if let Err(e) = build_root(&root.0) {
            skipped("chroot", &format!("cannot build a root file system: {e}"));
            return;
        }
        let env = env();
        // The shell and its glob run inside the new root.
        let mut conf = script_conf("echo /*");
        conf.edit(|c| c.chroot = Some(root.path().into()));
        let mut expected: Vec<String> = fs::read_dir(&root.0)
            .unwrap()
            .map(|e| format!("/{}", e.unwrap().file_name().to_string_lossy()))
            .collect();
        expected.sort();
        assert_eq!(run_ok(&plan(&conf, &env)), format!("{}\n", expected.join(" ")));

        // A user known only inside the root is looked up there, as Upstart
        // looks users up after chroot.
        assert!(User::from_name("upshot-chroot-only").unwrap().is_none());
        let mut conf = exec_conf("/bin/sh");
        conf.edit(|c| c.chroot = Some(root.path().into()));
        conf.edit(|c| c.setuid = Some("upshot-chroot-only".into()));
        at_exec(&plan(&conf, &env), |child| {
            assert_eq!(
                fs::read_link(format!("/proc/{}/root", child.pid)).unwrap(),
                root.0
            );
            let status = proc_file(child.pid, "status");
            assert_eq!(field(&status, "Uid"), "4242\t4242\t4242\t4242");
            assert_eq!(field(&status, "Gid"), "4343\t4343\t4343\t4343");
            assert_eq!(field(&status, "Groups"), "4343 4444");
        });

        // PATH is searched inside the root: /usr/bin/env exists outside only.
        let mut conf = exec_conf("env");
        conf.edit(|c| c.chroot = Some(root.path().into()));
        assert_eq!(
            spawn(&plan(&conf, &env)).unwrap_err(),
            SpawnError::new("execute", Errno::ENOENT)
        );
    }

    const TEST_USER: &str = "upshot-test";
    const TEST_GROUP: &str = "upshot-test-extra";

    /// Creates the test user and an extra group it belongs to, if missing.
    fn ensure_test_user() -> Result<(User, nix::unistd::Group), String> {
        let cmd = |args: &[&str]| -> Result<(), String> {
            let status = std::process::Command::new(args[0])
                .args(&args[1..])
                .status()
                .map_err(|e| format!("{}: {e}", args[0]))?;
            if status.success() {
                Ok(())
            } else {
                Err(format!("{args:?}: {status}"))
            }
        };
        if nix::unistd::Group::from_name(TEST_GROUP).unwrap().is_none() {
            cmd(&["groupadd", "--system", TEST_GROUP])?;
        }
        if User::from_name(TEST_USER).unwrap().is_none() {
            cmd(&[
                "useradd",
                "--system",
                "--user-group",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                TEST_USER,
            ])?;
        }
        let group = nix::unistd::Group::from_name(TEST_GROUP).unwrap().unwrap();
        if !group.mem.iter().any(|m| m == TEST_USER) {
            cmd(&["usermod", "--append", "--groups", TEST_GROUP, TEST_USER])?;
        }
        let group = nix::unistd::Group::from_name(TEST_GROUP).unwrap().unwrap();
        Ok((User::from_name(TEST_USER).unwrap().unwrap(), group))
    }

    fn groups_of(status: &str) -> BTreeSet<u32> {
        field(status, "Groups")
            .split_whitespace()
            .map(|g| g.parse().unwrap())
            .collect()
    }

    #[test]
    fn setuid_and_setgid() {
        require_root!("setuid_and_setgid");
        let _guard = lock();
        let (user, extra) = match ensure_test_user() {
            Ok(found) => found,
            Err(e) => {
                skipped("setuid_and_setgid", &format!("cannot create the test user: {e}"));
                return;
            }
        };
        let (uid, gid, extra_gid) = (user.uid.as_raw(), user.gid.as_raw(), extra.gid.as_raw());
        let env = env();

        // Give this (test) thread inheritable and ambient capabilities, as
        // a daemon might have: the job must still end with none.
        use caps::{CapSet, Capability};
        caps::raise(None, CapSet::Inheritable, Capability::CAP_NET_BIND_SERVICE).unwrap();
        caps::raise(None, CapSet::Ambient, Capability::CAP_NET_BIND_SERVICE).unwrap();

        let mut conf = exec_conf("cat /proc/self/status");
        conf.edit(|c| c.setuid = Some(TEST_USER.into()));
        let status = run_ok(&plan(&conf, &env));
        caps::clear(None, CapSet::Ambient).unwrap();
        caps::clear(None, CapSet::Inheritable).unwrap();
        assert_eq!(field(&status, "Uid"), format!("{uid}\t{uid}\t{uid}\t{uid}"));
        assert_eq!(field(&status, "Gid"), format!("{gid}\t{gid}\t{gid}\t{gid}"));
        assert_eq!(groups_of(&status), BTreeSet::from([gid, extra_gid]));
        for set in ["CapInh", "CapPrm", "CapEff", "CapAmb"] {
            assert_eq!(field(&status, set), "0000000000000000", "{set}");
        }

        // setgid replaces the user's primary group.
        conf.edit(|c| c.setgid = Some(TEST_GROUP.into()));
        let status = run_ok(&plan(&conf, &env));
        assert_eq!(field(&status, "Uid"), format!("{uid}\t{uid}\t{uid}\t{uid}"));
        let g = extra_gid;
        assert_eq!(field(&status, "Gid"), format!("{g}\t{g}\t{g}\t{g}"));
        assert_eq!(groups_of(&status), BTreeSet::from([extra_gid]));

        // setgid alone: still root, with that group.
        conf.edit(|c| c.setuid = None);
        let status = run_ok(&plan(&conf, &env));
        assert_eq!(field(&status, "Uid"), "0\t0\t0\t0");
        assert_eq!(field(&status, "Gid"), format!("{g}\t{g}\t{g}\t{g}"));
        assert!(groups_of(&status).contains(&extra_gid));
        assert_ne!(field(&status, "CapEff"), "0000000000000000");

        // A piped script: the shell, now the user, can open its fd 9.
        let mut conf = script_conf("id -u\nid -g\n");
        conf.edit(|c| c.setuid = Some(TEST_USER.into()));
        assert_eq!(run_ok(&plan(&conf, &env)), format!("{uid}\n{gid}\n"));
    }
}

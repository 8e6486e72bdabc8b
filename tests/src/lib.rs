//! The black-box test harness for upshot's session init (`init --user`)
//! and its system init (process 1 of a PID namespace).
//!
//! A [`Session`] is one daemon with its own fresh directory tree under
//! [`std::env::temp_dir`]:
//!
//! ```text
//! upshot-NAME-PID-N/        owned by the test user, the daemon's cwd
//!   conf/                   --confdir (job files: Session::write_job)
//!   log/                    --logdir (console log files)
//!   run/                    XDG_RUNTIME_DIR (the session file)
//!   out/                    where the jobs' stand-ins write what they saw
//!   home/                   HOME
//!   daemon.log              the daemon's stdout and stderr
//! ```
//!
//! The daemon runs as the unprivileged user [`USER`] (created with
//! `useradd -M -s /usr/sbin/nologin` if missing; switched to in the child
//! before exec: supplementary groups, gid, uid, then `PR_SET_PDEATHSIG` so
//! it cannot outlive the test thread). When the tests do not run as root
//! the daemon runs as the calling user, who is unprivileged already. If the
//! user cannot be had, the test prints `SKIPPED: <why>` and fails.
//!
//! The daemon's environment is fixed: `PATH`, `HOME`, `XDG_RUNTIME_DIR`
//! and the marker `UPSHOT_TEST_TREE=<tree>` (plus what [`Session::set_env`]
//! adds). Every process of a session is recognised by its uid and either
//! that marker or a working directory inside the tree (jobs inherit the
//! daemon's cwd), so parallel sessions never touch each other's processes.
//! Dropping a session stops the daemon (`SIGSTOP`, so it cannot respawn
//! anything), `SIGKILL`s every process of the session, then the daemon,
//! and removes the tree.
//!
//! Job files are templates: `@BIN@` is the directory of the stand-in
//! programs (this crate's binaries), `@OUT@` the output dir, `@ROOT@` the
//! tree, `@LOG@` the log dir.
//!
//! If `/run/systemd/journal/socket` exists the daemon would log to journald
//! instead of stderr; the child then gets a private mount namespace with an
//! empty tmpfs over `/run/systemd/journal` (needs root; the test is skipped,
//! loudly, if that cannot be done).
//!
//! A failing test prints the daemon's log; `UPSHOT_TEST_SHOW_LOG=1` prints
//! it for passing tests too (with `--nocapture`).
//!
//! [`SystemInit`] is the other kind of daemon: `init` as process 1 of PID,
//! network and mount namespaces of its own (`unshare`, as root), with
//! `initctl` run inside them through `nsenter`.
//!
//! Nothing here sleeps for a fixed time to wait for something: every wait
//! is [`Session::wait_for`] (or [`SystemInit::wait_for`]), polling a
//! condition until a deadline.

pub mod standin;

use std::collections::BTreeMap;
use std::ffi::CString;
use std::fs::{self, File};
use std::os::unix::fs::{PermissionsExt, chown};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// The unprivileged user the daemon runs as.
pub const USER: &str = "upshot-test";

/// How long a wait may take before the test fails. Generous: these waits
/// end as soon as their condition holds, the bound only matters when
/// something is broken (or the machine is very busy).
pub const TIMEOUT: Duration = Duration::from_secs(20);

/// How often conditions are polled.
const POLL: Duration = Duration::from_millis(10);

/// The `PATH` of the daemon (and so of its jobs).
pub const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Prints a loud `SKIPPED: <why>` line and fails the test: a test that
/// cannot run must not look like one that passed.
pub fn skip(why: &str) -> ! {
    eprintln!("\n**************************************************");
    eprintln!("SKIPPED: {why}");
    eprintln!("**************************************************\n");
    panic!("SKIPPED: {why}");
}

// ---------------------------------------------------------------------------
// The account, the binaries

/// Who the daemon runs as.
#[derive(Debug, Clone)]
pub struct Account {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups (`getgrouplist`), set when switching.
    pub groups: Vec<u32>,
    /// The tests run as root and switch to this account in the child.
    pub switch: bool,
}

/// The account the daemons run as (created on first use when root).
pub fn account() -> &'static Account {
    static ACCOUNT: OnceLock<Result<Account, String>> = OnceLock::new();
    match ACCOUNT.get_or_init(find_account) {
        Ok(a) => a,
        Err(why) => skip(why),
    }
}

fn find_account() -> Result<Account, String> {
    use nix::unistd::{User, geteuid, getgrouplist};
    if !geteuid().is_root() {
        let user = User::from_uid(nix::unistd::getuid())
            .ok()
            .flatten()
            .ok_or("not root, and the calling user has no passwd entry")?;
        eprintln!(
            "NOTE: not running as root: the daemons run as the calling user {} (uid {})",
            user.name, user.uid
        );
        return Ok(Account {
            name: user.name,
            uid: user.uid.as_raw(),
            gid: user.gid.as_raw(),
            groups: Vec::new(),
            switch: false,
        });
    }
    let lookup = || User::from_name(USER).map_err(|e| format!("look up user {USER}: {e}"));
    let user = match lookup()? {
        Some(u) => u,
        None => {
            let status = Command::new("useradd")
                .args(["-M", "-s", "/usr/sbin/nologin", USER])
                .status()
                .map_err(|e| format!("user {USER} is missing and useradd cannot run: {e}"))?;
            // Another test process may have created it meanwhile (status 9).
            match lookup()? {
                Some(u) => u,
                None => return Err(format!("user {USER} is missing and useradd failed: {status}")),
            }
        }
    };
    let name = CString::new(user.name.clone()).map_err(|e| e.to_string())?;
    let groups = getgrouplist(&name, user.gid)
        .map_err(|e| format!("getgrouplist({USER}): {e}"))?
        .into_iter()
        .map(|g| g.as_raw())
        .collect();
    Ok(Account {
        name: user.name,
        uid: user.uid.as_raw(),
        gid: user.gid.as_raw(),
        groups,
        switch: true,
    })
}

/// The directory holding this crate's binaries (the stand-ins): the test
/// executable is `<target>/<profile>/deps/NAME-HASH`, the binaries are in
/// `<target>/<profile>` (where `env!("CARGO_BIN_EXE_<name>")` points).
pub fn bin_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let exe = std::env::current_exe().expect("current_exe");
        let dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("test executable in <target>/<profile>/deps")
            .to_path_buf();
        assert!(
            dir.join("recorder").is_file(),
            "the stand-in programs are not in {} (run the tests through cargo)",
            dir.display()
        );
        dir
    })
}

/// The `init` binary: `<target>/<profile>/init`, where `<target>` is
/// `$CARGO_TARGET_DIR` or the workspace's `target`, and `<profile>` the
/// one these tests were built with. `cargo build -p init --bin init` runs
/// first (once per test process), so it is never missing nor stale.
pub fn init_binary() -> &'static Path {
    static INIT: OnceLock<PathBuf> = OnceLock::new();
    INIT.get_or_init(|| workspace_binary("init"))
}

/// The `initctl` binary, built the same way as [`init_binary`].
pub fn initctl_binary() -> &'static Path {
    static INITCTL: OnceLock<PathBuf> = OnceLock::new();
    INITCTL.get_or_init(|| workspace_binary("initctl"))
}

/// Builds the binary `name` of the workspace package `name` with this
/// test's profile and returns its path.
fn workspace_binary(name: &str) -> PathBuf {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf();
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .or_else(|| option_env!("CARGO_TARGET_DIR").map(PathBuf::from))
        .map(|t| if t.is_relative() { workspace.join(t) } else { t })
        .unwrap_or_else(|| workspace.join("target"));
    let profile = bin_dir()
        .file_name()
        .and_then(|p| p.to_str())
        .unwrap_or("debug")
        .to_string();
    let binary = target.join(&profile).join(name);
    // Built every time (once per test process): cheap when up to date,
    // and the tests never run a stale binary. Cargo does not hold its
    // build lock while tests run.
    let cargo = option_env!("CARGO").unwrap_or("cargo");
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "--quiet", "-p", name, "--bin", name])
        .current_dir(&workspace);
    match profile.as_str() {
        "debug" => {}
        "release" => {
            cmd.arg("--release");
        }
        other => {
            cmd.args(["--profile", other]);
        }
    }
    match cmd.status() {
        Ok(status) => assert!(status.success(), "cargo build -p {name} --bin {name}: {status}"),
        Err(e) if binary.is_file() => {
            eprintln!(
                "NOTE: cannot run {cargo} ({e}); using {} as it is",
                binary.display()
            )
        }
        Err(e) => panic!(
            "no {name} binary at {} and cannot run {cargo}: {e}",
            binary.display()
        ),
    }
    assert!(binary.is_file(), "no {name} binary at {}", binary.display());
    binary
}

/// Makes `cmd` run as `account` (when switching): supplementary groups,
/// gid, uid, then `PR_SET_PDEATHSIG` (SIGKILL when the thread that started
/// it ends). With `hide_journal` (root only) the child first gets a private
/// mount namespace with an empty tmpfs over `/run/systemd/journal`, so that
/// the daemon logs to its stderr; if that fails, so does the spawn.
fn run_as(cmd: &mut Command, account: &Account, hide_journal: bool) {
    let switch = account.switch;
    let hide_journal = hide_journal && switch;
    let (uid, gid) = (account.uid, account.gid);
    let groups: Vec<libc::gid_t> = account.groups.clone();
    // SAFETY: the closure makes raw system calls on data prepared before
    // the fork; it allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            if hide_journal
                && (libc::unshare(libc::CLONE_NEWNS) != 0
                    || libc::mount(
                        c"none".as_ptr(),
                        c"/".as_ptr(),
                        std::ptr::null(),
                        libc::MS_REC | libc::MS_PRIVATE,
                        std::ptr::null(),
                    ) != 0
                    || libc::mount(
                        c"tmpfs".as_ptr(),
                        c"/run/systemd/journal".as_ptr(),
                        c"tmpfs".as_ptr(),
                        0,
                        std::ptr::null(),
                    ) != 0)
            {
                return Err(std::io::Error::last_os_error());
            }
            if switch
                && (libc::setgroups(groups.len(), groups.as_ptr()) != 0
                    || libc::setresgid(gid, gid, gid) != 0
                    || libc::setresuid(uid, uid, uid) != 0)
            {
                return Err(std::io::Error::last_os_error());
            }
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
}

/// Checks once that the test user can run the daemon and the stand-ins (a
/// checkout under a directory other users cannot search would stop them);
/// skips loudly if not.
fn check_access() {
    static CHECKED: OnceLock<Result<(), String>> = OnceLock::new();
    let result = CHECKED.get_or_init(|| {
        let account = account();
        let probes: [(PathBuf, Vec<&str>); 2] = [
            (init_binary().to_path_buf(), vec!["--version"]),
            (bin_dir().join("waitfor"), vec!["--file", "/"]),
        ];
        for (program, args) in probes {
            let mut cmd = Command::new(&program);
            cmd.args(&args).stdout(Stdio::null()).stderr(Stdio::null());
            run_as(&mut cmd, account, false);
            match cmd.status() {
                Ok(status) if status.success() => {}
                outcome => {
                    return Err(format!(
                        "user {} cannot run {} ({outcome:?}): every directory above it must be \
                         searchable by that user (chmod o+x, or set CARGO_TARGET_DIR to such a place)",
                        account.name,
                        program.display()
                    ));
                }
            }
        }
        Ok(())
    });
    if let Err(why) = result {
        skip(why);
    }
}

/// Checks once that the test user can write in a session tree (it cannot
/// if `$TMPDIR` lies under a directory it may not search); skips loudly if
/// not.
fn check_tree_access(dir: &Path) {
    static CHECKED: OnceLock<Result<(), String>> = OnceLock::new();
    let result = CHECKED.get_or_init(|| {
        let account = account();
        let mut cmd = Command::new("/bin/sh");
        cmd.args(["-c", "test -w \"$1\" && test -x \"$1\"", "sh"])
            .arg(dir)
            .current_dir("/");
        run_as(&mut cmd, account, false);
        match cmd.status() {
            Ok(status) if status.success() => Ok(()),
            outcome => Err(format!(
                "user {} cannot write in {} ({outcome:?}): point TMPDIR at a directory every user can search",
                account.name,
                dir.display()
            )),
        }
    });
    if let Err(why) = result {
        skip(why);
    }
}

// ---------------------------------------------------------------------------
// Processes

/// A process as `/proc` shows it.
#[derive(Debug, Clone)]
pub struct ProcInfo {
    pub pid: i32,
    pub ppid: i32,
    pub pgrp: i32,
    pub session: i32,
    /// `R`, `S`, `T`, `t`, `Z`, …
    pub state: char,
    /// Real uid.
    pub uid: u32,
    pub comm: String,
}

/// One process, or `None` if it is gone.
pub fn proc_info(pid: i32) -> Option<ProcInfo> {
    let p = procfs::process::Process::new(pid).ok()?;
    let stat = p.stat().ok()?;
    let uid = p.status().map(|s| s.ruid).unwrap_or(u32::MAX);
    Some(ProcInfo {
        pid,
        ppid: stat.ppid,
        pgrp: stat.pgrp,
        session: stat.session,
        state: stat.state,
        uid,
        comm: stat.comm,
    })
}

/// Every process on the system (those that vanish mid-scan are skipped).
pub fn all_processes() -> Vec<ProcInfo> {
    let Ok(all) = procfs::process::all_processes() else {
        return Vec::new();
    };
    all.filter_map(|p| p.ok())
        .filter_map(|p| proc_info(p.pid))
        .collect()
}

/// Whether `pid` is a live process (not gone, not a zombie).
pub fn alive(pid: i32) -> bool {
    proc_info(pid).is_some_and(|p| !matches!(p.state, 'Z' | 'X' | 'x'))
}

/// The signals a process has blocked, ignored, caught (`SigBlk`, `SigIgn`,
/// `SigCgt` of `/proc/PID/status`).
pub fn signal_masks(pid: i32) -> Option<(u64, u64, u64)> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
    };
    Some((field("SigBlk:")?, field("SigIgn:")?, field("SigCgt:")?))
}

/// The pid tracing a process (`TracerPid`; 0 when it is not traced).
pub fn tracer_pid(pid: i32) -> Option<i32> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("TracerPid:"))
        .and_then(|v| v.trim().parse().ok())
}

/// Whether a process holds a `name=value`-style environment entry.
fn environ_has(pid: i32, key: &str, value: &Path) -> bool {
    let Ok(env) = procfs::process::Process::new(pid).and_then(|p| p.environ()) else {
        return false;
    };
    env.get(std::ffi::OsStr::new(key))
        .is_some_and(|v| Path::new(v) == value)
}

fn cwd_within(pid: i32, root: &Path) -> bool {
    procfs::process::Process::new(pid)
        .and_then(|p| p.cwd())
        .is_ok_and(|cwd| cwd.starts_with(root))
}

// ---------------------------------------------------------------------------
// Waiting

/// Polls `cond` until it holds; fails the test with `what` after `timeout`.
pub fn wait_for(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(POLL);
    }
}

// ---------------------------------------------------------------------------
// What the recorder writes

/// The report of the `recorder` stand-in.
#[derive(Debug, Clone)]
pub struct Record {
    lines: Vec<(String, String)>,
}

impl Record {
    pub fn parse(text: &str) -> Record {
        Record {
            lines: text
                .lines()
                .map(|l| match l.split_once(' ') {
                    Some((k, v)) => (k.to_string(), v.to_string()),
                    None => (l.to_string(), String::new()),
                })
                .collect(),
        }
    }

    /// The value of a single-valued key (`pid`, `uid`, `umask`, …).
    pub fn get(&self, key: &str) -> &str {
        self.lines
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("no {key} in the record"))
    }

    pub fn num(&self, key: &str) -> i64 {
        self.get(key)
            .parse()
            .unwrap_or_else(|_| panic!("{key} is not a number: {}", self.get(key)))
    }

    /// The environment the process saw.
    pub fn env(&self) -> BTreeMap<String, String> {
        self.lines
            .iter()
            .filter(|(k, _)| k == "env")
            .filter_map(|(_, v)| v.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// One environment variable.
    pub fn var(&self, key: &str) -> Option<String> {
        self.env().get(key).cloned()
    }

    /// The open descriptors, with what they point at.
    pub fn fds(&self) -> Vec<(i32, String)> {
        self.lines
            .iter()
            .filter(|(k, _)| k == "fd")
            .filter_map(|(_, v)| {
                let (fd, target) = v.split_once(' ')?;
                Some((fd.parse().ok()?, target.to_string()))
            })
            .collect()
    }
}

// ---------------------------------------------------------------------------
// The session

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// One daemon and its directory tree; see the crate docs.
pub struct Session {
    name: String,
    root: PathBuf,
    account: Account,
    env: Vec<(String, String)>,
    daemon: Option<Child>,
    status: Option<ExitStatus>,
}

impl Session {
    /// A fresh tree for a test named `name`; the daemon is not started yet.
    pub fn new(name: &str) -> Session {
        let account = account().clone();
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let root = std::env::temp_dir().join(format!("upshot-{name}-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        let s = Session {
            name: name.to_string(),
            env: vec![
                ("PATH".into(), PATH.into()),
                ("HOME".into(), root.join("home").display().to_string()),
                ("XDG_RUNTIME_DIR".into(), root.join("run").display().to_string()),
                ("UPSHOT_TEST_TREE".into(), root.display().to_string()),
            ],
            root,
            account,
            daemon: None,
            status: None,
        };
        s.mkdir_mode("", 0o755);
        for dir in ["conf", "log", "out", "home"] {
            s.mkdir_mode(dir, 0o755);
        }
        s.mkdir_mode("run", 0o700);
        check_tree_access(&s.out_dir());
        s
    }

    /// The tree's root (the daemon's working directory).
    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn conf_dir(&self) -> PathBuf {
        self.root.join("conf")
    }

    pub fn log_dir(&self) -> PathBuf {
        self.root.join("log")
    }

    pub fn run_dir(&self) -> PathBuf {
        self.root.join("run")
    }

    pub fn out_dir(&self) -> PathBuf {
        self.root.join("out")
    }

    /// A file in the output dir.
    pub fn out(&self, name: &str) -> PathBuf {
        self.out_dir().join(name)
    }

    pub fn account(&self) -> &Account {
        &self.account
    }

    /// Creates `rel` (and its parents) under the tree, owned by the test
    /// user; returns its path.
    pub fn mkdir(&self, rel: &str) -> PathBuf {
        self.mkdir_mode(rel, 0o755)
    }

    fn mkdir_mode(&self, rel: &str, mode: u32) -> PathBuf {
        let dir = if rel.is_empty() {
            self.root.clone()
        } else {
            self.root.join(rel)
        };
        fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
        fs::set_permissions(&dir, fs::Permissions::from_mode(mode)).expect("chmod");
        if self.account.switch {
            chown(&dir, Some(self.account.uid), Some(self.account.gid)).expect("chown");
        }
        dir
    }

    /// Writes a file (anywhere in the tree) owned by the test user.
    pub fn write_owned(&self, path: &Path, text: &str) {
        fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        if self.account.switch {
            chown(path, Some(self.account.uid), Some(self.account.gid)).expect("chown");
        }
    }

    /// The template text with `@BIN@`, `@OUT@`, `@ROOT@`, `@LOG@` filled in.
    pub fn expand(&self, text: &str) -> String {
        text.replace("@BIN@", &bin_dir().display().to_string())
            .replace("@OUT@", &self.out_dir().display().to_string())
            .replace("@LOG@", &self.log_dir().display().to_string())
            .replace("@ROOT@", &self.root.display().to_string())
    }

    /// Writes job `name` (may contain `/`) into the conf dir.
    pub fn write_job(&self, name: &str, text: &str) {
        self.write_job_in(&self.conf_dir(), name, text);
    }

    /// Writes `DIR/NAME.conf` from a template, atomically (written beside
    /// the tree, then renamed into place), so that a watching daemon never
    /// reads half a file.
    pub fn write_job_in(&self, dir: &Path, name: &str, text: &str) {
        let path = dir.join(format!("{name}.conf"));
        if let Some(parent) = path.parent()
            && !parent.exists()
        {
            let rel = parent.strip_prefix(&self.root).expect("job dir inside the tree");
            self.mkdir(&rel.display().to_string());
        }
        let tmp = self
            .root
            .join(format!("job-{}.tmp", COUNTER.fetch_add(1, Ordering::Relaxed)));
        fs::write(&tmp, self.expand(text)).expect("write job file");
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o644)).expect("chmod job file");
        fs::rename(&tmp, &path).expect("rename job file into place");
    }

    /// Removes job `name` from the conf dir.
    pub fn remove_job(&self, name: &str) {
        fs::remove_file(self.conf_dir().join(format!("{name}.conf"))).expect("remove job file");
    }

    /// Adds (or replaces) a variable of the daemon's environment.
    pub fn set_env(&mut self, key: &str, value: &str) {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.into(), value.into()));
    }

    /// Starts `init --user --confdir CONF --logdir LOG -v EXTRA…`.
    pub fn start(&mut self, extra: &[&str]) {
        let mut args: Vec<String> = vec![
            "--user".into(),
            "--confdir".into(),
            self.conf_dir().display().to_string(),
            "--logdir".into(),
            self.log_dir().display().to_string(),
            "-v".into(),
        ];
        args.extend(extra.iter().map(|a| a.to_string()));
        self.start_args(&args);
    }

    /// Starts `init ARGS…` exactly (as the test user, in the tree, with the
    /// session's environment, output to `daemon.log`).
    pub fn start_args(&mut self, args: &[String]) {
        assert!(self.daemon.is_none(), "the daemon is already started");
        check_access();
        let log = File::create(self.root.join("daemon.log")).expect("create daemon.log");
        let mut cmd = Command::new(init_binary());
        cmd.args(args)
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .current_dir(&self.root)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup daemon.log"))
            .stderr(log);
        let journald = Path::new("/run/systemd/journal/socket").exists();
        if journald && !self.account.switch {
            skip(
                "journald runs here and the tests are not root: the daemon would log to journald, not to the stderr the tests read",
            );
        }
        let hide_journal = journald;
        run_as(&mut cmd, &self.account, hide_journal);
        let child = match cmd.spawn() {
            Ok(child) => child,
            Err(e) if hide_journal => skip(&format!(
                "journald runs here, and the daemon cannot be given a mount namespace \
                 without it (so that it logs to stderr, which the tests read): {e}"
            )),
            Err(e) => panic!("start {}: {e}", init_binary().display()),
        };
        self.daemon = Some(child);
    }

    /// The daemon's pid.
    pub fn pid(&self) -> i32 {
        self.daemon.as_ref().expect("the daemon is not started").id() as i32
    }

    /// The session file the daemon writes once it serves its private
    /// socket: `$XDG_RUNTIME_DIR/upstart/sessions/PID.session`.
    pub fn session_file(&self) -> PathBuf {
        self.run_dir()
            .join("upstart/sessions")
            .join(format!("{}.session", self.pid()))
    }

    /// The address a session init serves (spec §5):
    /// `unix:abstract=/com/ubuntu/upstart-session/UID/PID`.
    pub fn address(&self) -> String {
        format!(
            "unix:abstract=/com/ubuntu/upstart-session/{}/{}",
            self.account.uid,
            self.pid()
        )
    }

    /// Waits for the session file and returns the address it names (its
    /// one line is `UPSTART_SESSION=ADDRESS`).
    pub fn wait_address(&mut self) -> String {
        let file = self.session_file();
        let text = self.wait_for_value(&format!("the session file {}", file.display()), |_| {
            fs::read_to_string(&file).ok().filter(|t| t.ends_with('\n'))
        });
        text.strip_prefix("UPSTART_SESSION=")
            .and_then(|a| a.strip_suffix('\n'))
            .filter(|a| !a.contains('\n'))
            .unwrap_or_else(|| {
                panic!(
                    "{} is not one line UPSTART_SESSION=ADDRESS: {text:?}",
                    file.display()
                )
            })
            .to_string()
    }

    /// Everything the daemon logged so far.
    pub fn daemon_log(&self) -> String {
        fs::read_to_string(self.root.join("daemon.log")).unwrap_or_default()
    }

    /// Polls `cond` until it holds; fails with `what` and the daemon's log
    /// after [`TIMEOUT`], or at once if the daemon exits meanwhile.
    pub fn wait_for(&mut self, what: &str, mut cond: impl FnMut(&mut Session) -> bool) {
        let deadline = Instant::now() + TIMEOUT;
        let was_running = self.daemon.is_some() && self.try_status().is_none();
        loop {
            if cond(self) {
                return;
            }
            if Instant::now() >= deadline {
                panic!(
                    "[{}] timed out after {TIMEOUT:?} waiting for {what}\n--- daemon log ---\n{}",
                    self.name,
                    self.daemon_log()
                );
            }
            if was_running && let Some(status) = self.try_status() {
                panic!(
                    "[{}] the daemon exited ({status}) while waiting for {what}\n--- daemon log ---\n{}",
                    self.name,
                    self.daemon_log()
                );
            }
            std::thread::sleep(POLL);
        }
    }

    /// Polls `f` until it gives a value.
    pub fn wait_for_value<T>(&mut self, what: &str, mut f: impl FnMut(&mut Session) -> Option<T>) -> T {
        let mut value = None;
        self.wait_for(what, |s| {
            value = f(s);
            value.is_some()
        });
        value.expect("value")
    }

    /// Waits until the daemon's log contains `needle`; returns the log.
    pub fn wait_log(&mut self, needle: &str) -> String {
        self.wait_for_value(&format!("the daemon to log {needle:?}"), |s| {
            let log = s.daemon_log();
            log.contains(needle).then_some(log)
        })
    }

    /// A file of the output dir, if it exists.
    pub fn read_out(&self, name: &str) -> Option<String> {
        fs::read_to_string(self.out(name)).ok()
    }

    /// Waits until output file `name` exists; returns its content (the
    /// stand-ins write atomically).
    pub fn wait_out(&mut self, name: &str) -> String {
        self.wait_for_value(&format!("output file {name}"), |s| s.read_out(name))
    }

    /// Waits for a file holding a pid on its first line.
    pub fn wait_pid(&mut self, name: &str) -> i32 {
        let text = self.wait_out(name);
        text.lines()
            .next()
            .and_then(|l| l.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} holds no pid: {text:?}"))
    }

    /// Waits for a recorder report.
    pub fn wait_record(&mut self, name: &str) -> Record {
        Record::parse(&self.wait_out(name))
    }

    /// A job log file (`LOGDIR/FILE`), if it exists.
    pub fn job_log(&self, file: &str) -> Option<String> {
        fs::read_to_string(self.log_dir().join(file)).ok()
    }

    /// `initctl ARGS` run as root against this session (`UPSTART_SESSION`
    /// set to its address), with only `PATH` besides.
    /// Call [`Session::wait_address`] first: until then the daemon may not
    /// listen yet.
    pub fn initctl(&self, args: &[&str]) -> ClientOutput {
        let address = format!(
            "unix:abstract=/com/ubuntu/upstart-session/{}/{}",
            self.account().uid,
            self.pid()
        );
        let mut cmd = Command::new(initctl_binary());
        cmd.args(args)
            .env_clear()
            .env("PATH", PATH)
            .env("UPSTART_SESSION", address);
        run_client(&mut cmd)
    }

    /// The files in the log dir, sorted.
    pub fn job_log_files(&self) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(self.log_dir())
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    /// Sends a signal to the daemon.
    pub fn signal(&self, sig: Signal) {
        kill(Pid::from_raw(self.pid()), sig).expect("signal the daemon");
    }

    /// The daemon's exit status, if it has exited (reaps it).
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        if self.status.is_none()
            && let Some(child) = self.daemon.as_mut()
        {
            self.status = child.try_wait().expect("try_wait");
        }
        self.status
    }

    /// Waits for the daemon to exit, at most `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_status() {
                return status;
            }
            if Instant::now() >= deadline {
                panic!(
                    "[{}] the daemon did not exit within {timeout:?}\n--- daemon log ---\n{}",
                    self.name,
                    self.daemon_log()
                );
            }
            std::thread::sleep(POLL);
        }
    }

    /// SIGTERM, then waits (at most `timeout`) for the daemon to exit;
    /// returns its exit code (fails if a signal killed it).
    pub fn terminate(&mut self, timeout: Duration) -> i32 {
        self.signal(Signal::SIGTERM);
        let status = self.wait_exit(timeout);
        status.code().unwrap_or_else(|| {
            panic!(
                "[{}] the daemon was killed by signal {:?}\n--- daemon log ---\n{}",
                self.name,
                status.signal(),
                self.daemon_log()
            )
        })
    }

    /// The daemon's live descendants (not zombies), in pid order.
    pub fn descendants(&self) -> Vec<ProcInfo> {
        let Some(me) = self.daemon.as_ref().map(|c| c.id() as i32) else {
            return Vec::new();
        };
        let procs = all_processes();
        let mut found = Vec::new();
        let mut frontier = vec![me];
        while let Some(parent) = frontier.pop() {
            for p in procs.iter().filter(|p| p.ppid == parent) {
                frontier.push(p.pid);
                if !matches!(p.state, 'Z' | 'X' | 'x') {
                    found.push(p.clone());
                }
            }
        }
        found.sort_by_key(|p| p.pid);
        found
    }

    /// Every live process of this session other than the daemon: the test
    /// user's processes carrying the tree marker or working inside the
    /// tree (whoever their parent is now).
    pub fn leftovers(&self) -> Vec<ProcInfo> {
        let me = std::process::id() as i32;
        let daemon = self.daemon.as_ref().map(|c| c.id() as i32);
        all_processes()
            .into_iter()
            .filter(|p| p.uid == self.account.uid && p.pid != me && Some(p.pid) != daemon)
            .filter(|p| !matches!(p.state, 'Z' | 'X' | 'x'))
            .filter(|p| environ_has(p.pid, "UPSHOT_TEST_TREE", &self.root) || cwd_within(p.pid, &self.root))
            .collect()
    }

    /// Stops the daemon where it is and kills everything of the session.
    fn kill_everything(&mut self) {
        let running = self.daemon.is_some() && self.try_status().is_none();
        if running {
            // Frozen, it cannot respawn what is killed below.
            let _ = kill(Pid::from_raw(self.pid()), Signal::SIGSTOP);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let left = self.leftovers();
            if left.is_empty() {
                break;
            }
            if Instant::now() >= deadline {
                eprintln!("[{}] LEFT BEHIND after cleanup: {left:?}", self.name);
                break;
            }
            for p in left {
                let _ = kill(Pid::from_raw(p.pid), Signal::SIGKILL);
            }
            std::thread::sleep(POLL);
        }
        if running && let Some(child) = self.daemon.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let show = std::thread::panicking() || std::env::var_os("UPSHOT_TEST_SHOW_LOG").is_some();
        if show && self.daemon.is_some() {
            eprintln!(
                "[{}] --- daemon log ---\n{}\n[{}] log dir: {:?}",
                self.name,
                self.daemon_log(),
                self.name,
                self.job_log_files()
            );
        }
        self.kill_everything();
        let _ = fs::remove_dir_all(&self.root);
    }
}

// ---------------------------------------------------------------------------
// Client programs (busctl, gdbus, dbus-send, …)

/// What a client program did: its command line, exit status and output.
#[derive(Debug, Clone)]
pub struct ClientOutput {
    pub command: String,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl ClientOutput {
    pub fn success(&self) -> bool {
        self.status.success()
    }

    /// The standard output of a run that must have succeeded.
    pub fn ok(&self) -> &str {
        assert!(self.success(), "expected success:\n{self}");
        &self.stdout
    }

    /// The standard error of a run that must have failed.
    pub fn failed(&self) -> &str {
        assert!(!self.success(), "expected failure:\n{self}");
        &self.stderr
    }
}

impl std::fmt::Display for ClientOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        /// Long output (a megabyte argument) is cut for the message.
        fn cut(s: &str) -> String {
            match s.char_indices().nth(2000) {
                Some((i, _)) => format!("{}… ({} bytes)", &s[..i], s.len()),
                None => s.to_string(),
            }
        }
        write!(
            f,
            "$ {}\n{}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            cut(&self.command),
            self.status,
            cut(&self.stdout),
            cut(&self.stderr)
        )
    }
}

/// A client program running in the background, its output captured.
pub struct Client {
    command: String,
    child: Child,
    stdout: Option<std::thread::JoinHandle<String>>,
    stderr: Option<std::thread::JoinHandle<String>>,
}

impl Client {
    /// Starts `cmd` with stdin from `/dev/null`, capturing its output.
    pub fn spawn(cmd: &mut Command) -> Client {
        let command = std::iter::once(cmd.get_program())
            .chain(cmd.get_args())
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ");
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run `{command}`: {e}"));
        fn drain(mut r: impl std::io::Read + Send + 'static) -> std::thread::JoinHandle<String> {
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                let _ = r.read_to_end(&mut buf);
                String::from_utf8_lossy(&buf).into_owned()
            })
        }
        let stdout = child.stdout.take().map(drain);
        let stderr = child.stderr.take().map(drain);
        Client {
            command,
            child,
            stdout,
            stderr,
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Whether it has exited (without collecting its output).
    pub fn exited(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_some()
    }

    fn collect(&mut self, status: ExitStatus) -> ClientOutput {
        let join = |h: Option<std::thread::JoinHandle<String>>| h.map(|h| h.join().unwrap_or_default());
        ClientOutput {
            command: self.command.clone(),
            status,
            stdout: join(self.stdout.take()).unwrap_or_default(),
            stderr: join(self.stderr.take()).unwrap_or_default(),
        }
    }

    /// Waits (at most [`TIMEOUT`]) for it to exit; a client still running
    /// then is killed and the test fails.
    pub fn wait(mut self) -> ClientOutput {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return self.collect(status);
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let status = self.child.wait().expect("wait");
                let out = self.collect(status);
                panic!("`{}` did not finish within {TIMEOUT:?}:\n{out}", self.command);
            }
            std::thread::sleep(POLL);
        }
    }

    /// Kills it (SIGKILL) and collects what it wrote.
    pub fn kill(mut self) -> ClientOutput {
        let _ = self.child.kill();
        let status = self.child.wait().expect("wait");
        self.collect(status)
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs `cmd` to completion (at most [`TIMEOUT`]), capturing its output.
pub fn run_client(cmd: &mut Command) -> ClientOutput {
    Client::spawn(cmd).wait()
}

/// `setpriv --reuid=UID --regid=GID --clear-groups PROGRAM`: a command
/// that runs `program` as another user (the caller must be root).
pub fn command_as(uid: u32, gid: u32, program: &str) -> Command {
    let mut cmd = Command::new("setpriv");
    cmd.arg(format!("--reuid={uid}"))
        .arg(format!("--regid={gid}"))
        .arg("--clear-groups")
        .arg(program)
        .current_dir("/");
    cmd
}

// ---------------------------------------------------------------------------
// A system init in a PID namespace

/// `init` as process 1 of PID, network and mount namespaces of its own:
/// `unshare --pid --net --fork --mount-proc --kill-child INIT --confdir CONF
/// --logdir LOG -v EXTRA…`, run as root (the tests need root; they skip
/// loudly without it).
///
/// The network namespace is what keeps parallel tests apart: the system
/// init listens on `unix:abstract=/com/ubuntu/upstart`, and abstract
/// sockets belong to network namespaces. [`SystemInit::initctl`] runs
/// `initctl` inside the daemon's PID and network namespaces (`nsenter
/// --target PID --pid --net`), as root with no `UPSTART_SESSION`, so it
/// uses the default address. (From outside the PID namespace the peer's pid
/// reads as 0, which zbus's server handshake cannot take.)
///
/// The tree is the one of [`Session`] (conf, log, out, `daemon.log`), owned
/// by root. If journald's socket exists, `/run/systemd/journal` is covered
/// with an empty tmpfs inside the namespace first, so that the daemon logs
/// to its standard error. Dropping it SIGKILLs the daemon, which ends the
/// namespace and everything in it.
pub struct SystemInit {
    name: String,
    root: PathBuf,
    /// Set in the daemon's environment besides PATH.
    env: Vec<(String, String)>,
    unshare: Option<Child>,
    status: Option<ExitStatus>,
    init_pid: Option<i32>,
}

impl SystemInit {
    /// A fresh tree; skips (loudly) unless root with `unshare` and
    /// `nsenter` at hand.
    pub fn new(name: &str) -> SystemInit {
        if !nix::unistd::geteuid().is_root() {
            skip("a system init in a PID namespace needs root");
        }
        for tool in ["unshare", "nsenter"] {
            let found = Command::new(tool)
                .arg("--version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if !found {
                skip(&format!("{tool} (util-linux) is needed"));
            }
        }
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let root = std::env::temp_dir().join(format!("upshot-pid1-{name}-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        for dir in ["conf", "log", "out", "bin"] {
            fs::create_dir_all(root.join(dir)).expect("create the tree");
        }
        SystemInit {
            name: name.to_string(),
            root,
            env: Vec::new(),
            unshare: None,
            status: None,
            init_pid: None,
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn conf_dir(&self) -> PathBuf {
        self.root.join("conf")
    }

    pub fn log_dir(&self) -> PathBuf {
        self.root.join("log")
    }

    pub fn out(&self, name: &str) -> PathBuf {
        self.root.join("out").join(name)
    }

    /// The template text with `@BIN@`, `@OUT@`, `@ROOT@`, `@LOG@` filled in.
    pub fn expand(&self, text: &str) -> String {
        text.replace("@BIN@", &bin_dir().display().to_string())
            .replace("@OUT@", &self.root.join("out").display().to_string())
            .replace("@LOG@", &self.log_dir().display().to_string())
            .replace("@ROOT@", &self.root.display().to_string())
    }

    /// Writes job `name` (a template) into the conf dir.
    pub fn write_job(&self, name: &str, text: &str) {
        let path = self.conf_dir().join(format!("{name}.conf"));
        fs::write(&path, self.expand(text)).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    }

    /// A link `bin/NAME` to initctl (for `poweroff`, `reboot`…).
    pub fn link(&self, name: &str) -> PathBuf {
        let link = self.root.join("bin").join(name);
        let _ = fs::remove_file(&link);
        std::os::unix::fs::symlink(initctl_binary(), &link).expect("symlink");
        link
    }

    /// Starts the daemon with `--confdir CONF --logdir LOG -v EXTRA…` and
    /// waits until it is process 1 of its namespace.
    pub fn start(&mut self, extra: &[&str]) {
        self.start_in(None, extra);
    }

    /// [`SystemInit::start`] in the network namespace of `other` (so both
    /// want the same abstract socket), instead of a new one.
    pub fn start_beside(&mut self, other: &SystemInit, extra: &[&str]) {
        self.start_in(Some(other.pid()), extra);
    }

    /// Adds a variable to the daemon's environment (before it starts).
    pub fn set_env(&mut self, key: &str, value: &str) {
        self.env.push((key.into(), value.into()));
    }

    fn start_in(&mut self, net_of: Option<i32>, extra: &[&str]) {
        assert!(self.unshare.is_none(), "already started");
        let mut args: Vec<String> = vec![
            "--confdir".into(),
            self.conf_dir().display().to_string(),
            "--logdir".into(),
            self.log_dir().display().to_string(),
            "-v".into(),
        ];
        args.extend(extra.iter().map(|a| a.to_string()));
        let log = File::create(self.root.join("daemon.log")).expect("create daemon.log");
        // nsenter with only --net does not fork: it runs unshare itself.
        let mut cmd = match net_of {
            Some(pid) => {
                let mut cmd = Command::new("nsenter");
                cmd.arg("--target")
                    .arg(pid.to_string())
                    .args(["--net", "--", "unshare", "--pid"]);
                cmd
            }
            None => {
                let mut cmd = Command::new("unshare");
                cmd.args(["--pid", "--net"]);
                cmd
            }
        };
        cmd.args(["--fork", "--mount-proc", "--kill-child"]);
        if Path::new("/run/systemd/journal/socket").exists() {
            cmd.args([
                "/bin/sh",
                "-c",
                "mount -t tmpfs tmpfs /run/systemd/journal && exec \"$0\" \"$@\"",
            ]);
        }
        cmd.arg(init_binary())
            .args(&args)
            .env_clear()
            .env("PATH", PATH)
            .env("UPSHOT_TEST_TREE", &self.root)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .current_dir(&self.root)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup daemon.log"))
            .stderr(log);
        // SAFETY: one raw system call in the child.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = cmd.spawn().expect("start unshare");
        let upid = child.id() as i32;
        self.unshare = Some(child);
        let init = self.wait_for_value("the daemon to be process 1 of its namespace", |_| {
            let children = fs::read_to_string(format!("/proc/{upid}/task/{upid}/children")).ok()?;
            let pid: i32 = children.split_whitespace().next()?.parse().ok()?;
            // Past the exec (and past the shell that covers journald).
            let exe = fs::read_link(format!("/proc/{pid}/exe")).ok()?;
            (exe == init_binary()).then_some(pid)
        });
        self.init_pid = Some(init);
    }

    /// The daemon's pid as the host sees it.
    pub fn pid(&self) -> i32 {
        self.init_pid.expect("the daemon is not started")
    }

    /// The pid namespace of a process (`/proc/PID/ns/pid`).
    fn pid_ns(pid: i32) -> Option<PathBuf> {
        fs::read_link(format!("/proc/{pid}/ns/pid")).ok()
    }

    /// A process's pid inside its own PID namespace (the last of `NSpid`).
    pub fn ns_pid(pid: i32) -> Option<i32> {
        let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("NSpid:"))?
            .split_whitespace()
            .last()?
            .parse()
            .ok()
    }

    /// Every process in the daemon's PID namespace, the daemon included,
    /// zombies included (host pids).
    pub fn processes(&self) -> Vec<ProcInfo> {
        let Some(ns) = Self::pid_ns(self.pid()) else {
            return Vec::new();
        };
        all_processes()
            .into_iter()
            .filter(|p| Self::pid_ns(p.pid).as_ref() == Some(&ns))
            .collect()
    }

    /// The host pid of the process whose pid in the namespace is `ns_pid`.
    pub fn host_pid(&self, ns_pid: i32) -> Option<i32> {
        self.processes()
            .into_iter()
            .find(|p| Self::ns_pid(p.pid) == Some(ns_pid))
            .map(|p| p.pid)
    }

    /// Runs `program ARGS` inside the daemon's PID and network namespaces,
    /// as root, with only `PATH` in its environment.
    pub fn run_inside(&self, program: &Path, args: &[&str]) -> ClientOutput {
        let mut cmd = Command::new("nsenter");
        cmd.arg("--target")
            .arg(self.pid().to_string())
            .args(["--pid", "--net", "--"])
            .arg(program)
            .args(args)
            .env_clear()
            .env("PATH", PATH)
            .current_dir("/");
        run_client(&mut cmd)
    }

    /// `initctl ARGS` inside the namespaces.
    pub fn initctl(&self, args: &[&str]) -> ClientOutput {
        self.run_inside(initctl_binary(), args)
    }

    pub fn daemon_log(&self) -> String {
        fs::read_to_string(self.root.join("daemon.log")).unwrap_or_default()
    }

    /// The exit status of `unshare` (which is the daemon's), once it exited.
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        if self.status.is_none()
            && let Some(child) = self.unshare.as_mut()
        {
            self.status = child.try_wait().expect("try_wait");
        }
        self.status
    }

    /// Waits for `unshare` to exit, at most `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_status() {
                return status;
            }
            if Instant::now() >= deadline {
                panic!(
                    "[{}] the namespace's init did not exit within {timeout:?}\n--- daemon log ---\n{}",
                    self.name,
                    self.daemon_log()
                );
            }
            std::thread::sleep(POLL);
        }
    }

    /// Sends a signal to the daemon.
    pub fn signal(&self, sig: Signal) {
        kill(Pid::from_raw(self.pid()), sig).expect("signal the daemon");
    }

    /// Polls `cond` until it holds; fails with `what` and the daemon's log
    /// after [`TIMEOUT`], or at once if the daemon exits meanwhile.
    pub fn wait_for(&mut self, what: &str, mut cond: impl FnMut(&mut SystemInit) -> bool) {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if cond(self) {
                return;
            }
            if Instant::now() >= deadline {
                panic!(
                    "[{}] timed out after {TIMEOUT:?} waiting for {what}\n--- daemon log ---\n{}",
                    self.name,
                    self.daemon_log()
                );
            }
            if let Some(status) = self.try_status() {
                panic!(
                    "[{}] the daemon exited ({status}) while waiting for {what}\n--- daemon log ---\n{}",
                    self.name,
                    self.daemon_log()
                );
            }
            std::thread::sleep(POLL);
        }
    }

    /// Polls `f` until it gives a value.
    pub fn wait_for_value<T>(&mut self, what: &str, mut f: impl FnMut(&mut SystemInit) -> Option<T>) -> T {
        let mut value = None;
        self.wait_for(what, |s| {
            value = f(s);
            value.is_some()
        });
        value.expect("value")
    }

    /// Waits until the daemon's log contains `needle`; returns the log.
    pub fn wait_log(&mut self, needle: &str) -> String {
        self.wait_for_value(&format!("the daemon to log {needle:?}"), |s| {
            let log = s.daemon_log();
            log.contains(needle).then_some(log)
        })
    }

    /// An output file, if it exists.
    pub fn read_out(&self, name: &str) -> Option<String> {
        fs::read_to_string(self.out(name)).ok()
    }

    /// Waits for an output file (the stand-ins write atomically).
    pub fn wait_out(&mut self, name: &str) -> String {
        self.wait_for_value(&format!("output file {name}"), |s| s.read_out(name))
    }

    /// Waits for a recorder report.
    pub fn wait_record(&mut self, name: &str) -> Record {
        Record::parse(&self.wait_out(name))
    }
}

impl Drop for SystemInit {
    fn drop(&mut self) {
        let show = std::thread::panicking() || std::env::var_os("UPSHOT_TEST_SHOW_LOG").is_some();
        if show && self.unshare.is_some() {
            eprintln!("[{}] --- daemon log ---\n{}", self.name, self.daemon_log());
        }
        if self.try_status().is_none() {
            // Killing a namespace's process 1 kills everything in it.
            if let Some(pid) = self.init_pid {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
            if let Some(child) = self.unshare.as_mut() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        let _ = fs::remove_dir_all(&self.root);
    }
}

/// The job file `conf/lab/NAME` of the source tree with each `(from, to)`
/// replaced (each `from` must occur), e.g. the real daemon's path by a
/// stand-in's.
pub fn lab_job(name: &str, replace: &[(&str, &str)]) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../conf/lab")
        .join(name);
    let mut text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    for (from, to) in replace {
        assert!(text.contains(from), "{name} does not contain {from:?}");
        text = text.replace(from, to);
    }
    text
}

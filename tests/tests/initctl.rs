//! `initctl` against the real session init (spec §4): every command, its
//! whole output lines, its error texts on stderr and its exit status; the
//! `start`/`stop`/`status`… links; commands from inside a job.

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;

use upshot_tests::{Session, alive, initctl_binary};

/// What a run of `initctl` gave.
#[derive(Debug)]
struct Run {
    code: i32,
    out: String,
    err: String,
}

impl Run {
    fn ok(&self) -> &str {
        assert_eq!(self.code, 0, "expected success: {self:?}");
        assert_eq!(self.err, "", "no stderr expected: {self:?}");
        &self.out
    }

    /// A failure with exactly `err` on stderr and nothing on stdout.
    fn fails(&self, err: &str) {
        assert_eq!(
            (self.code, self.out.as_str(), self.err.as_str()),
            (1, "", err),
            "{self:?}"
        );
    }
}

fn address(s: &Session) -> String {
    format!(
        "unix:abstract=/com/ubuntu/upstart-session/{}/{}",
        s.account().uid,
        s.pid()
    )
}

/// Runs `program ARGS` (initctl or a link to it) as root, with only PATH
/// and `UPSTART_SESSION` (plus `env`) in its environment.
fn run_program(s: &Session, program: &Path, args: &[&str], env: &[(&str, &str)]) -> Run {
    let out = Command::new(program)
        .args(args)
        .env_clear()
        .env("PATH", upshot_tests::PATH)
        .env("UPSTART_SESSION", address(s))
        .envs(env.iter().copied())
        .output()
        .expect("run initctl");
    Run {
        code: out.status.code().unwrap_or(-1),
        out: String::from_utf8_lossy(&out.stdout).into_owned(),
        err: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn ctl(s: &Session, args: &[&str]) -> Run {
    run_program(s, initctl_binary(), args, &[])
}

/// `JOB start/running, process PID` with a live pid; returns the pid.
fn running_pid(line: &str, job: &str) -> i32 {
    let prefix = format!("{job} start/running, process ");
    let pid = line
        .strip_suffix('\n')
        .and_then(|l| l.strip_prefix(&prefix))
        .and_then(|p| p.parse::<i32>().ok())
        .unwrap_or_else(|| panic!("expected {prefix:?}PID, got {line:?}"));
    assert!(alive(pid), "{pid} is not alive");
    pid
}

fn session() -> Session {
    let mut s = Session::new("initctl");
    s.write_job(
        "svc",
        "description \"a service\"\nauthor \"me\"\nusage \"svc [X=y]\"\nstart on startup\nstop on quit\nexec sleep 1000\n",
    );
    s.write_job("quick", "task\nexec true\n");
    s.write_job("idle", "exec sleep 1000\n");
    s.write_job("worker", "usage \"worker N=<n>\"\ninstance $N\nexec sleep 1000\n");
    s.write_job(
        "greeter",
        "start on hello\ntask\nscript\n  echo \"hello $NAME\" > @OUT@/greeting\nend script\n",
    );
    s.write_job(
        "orphan",
        "start on started nosuchjob and frobnicated\nexec sleep 1000\n",
    );
    s.start(&[]);
    s.wait_for("svc to run", |s| {
        ctl(s, &["status", "svc"]).out.contains("start/running")
    });
    s
}

#[test]
fn start_status_stop_restart() {
    let mut s = session();
    // A service: the status line once running.
    let started = ctl(&s, &["start", "idle"]);
    let pid = running_pid(started.ok(), "idle");
    assert_eq!(
        ctl(&s, &["status", "idle"]).ok(),
        format!("idle start/running, process {pid}\n")
    );
    // Starting it again.
    ctl(&s, &["start", "idle"]).fails("initctl: Job is already running: idle\n");
    // Restart: a new main process.
    let restarted = ctl(&s, &["restart", "idle"]);
    let new_pid = running_pid(restarted.ok(), "idle");
    assert_ne!(pid, new_pid);
    // Stop: the status after stopping.
    assert_eq!(ctl(&s, &["stop", "idle"]).ok(), "idle stop/waiting\n");
    s.wait_for("the old main process to end", |_| !alive(new_pid));
    // Status of a stopped job succeeds.
    assert_eq!(ctl(&s, &["status", "idle"]).ok(), "idle stop/waiting\n");
    // Stop of a stopped single-instance job: the instance lookup fails first.
    ctl(&s, &["stop", "idle"]).fails("initctl: Unknown instance: \n");
    ctl(&s, &["restart", "idle"]).fails("initctl: Unknown instance: \n");
    // A task: start waits for it to finish.
    assert_eq!(ctl(&s, &["start", "quick"]).ok(), "quick stop/waiting\n");
    // --no-wait returns at once with the state then.
    let nowait = ctl(&s, &["start", "-n", "idle"]);
    assert!(nowait.ok().starts_with("idle start/"), "{nowait:?}");
    s.wait_for("idle to run", |s| {
        ctl(s, &["status", "idle"]).out.contains("start/running")
    });
    assert_eq!(ctl(&s, &["stop", "--no-wait", "idle"]).code, 0);
}

#[test]
fn unknown_jobs_and_usage_errors() {
    let s = session();
    ctl(&s, &["start", "nope"]).fails("initctl: Unknown job: nope\n");
    ctl(&s, &["status", "nope"]).fails("initctl: Unknown job: nope\n");
    ctl(&s, &["stop", "nope"]).fails("initctl: Unknown job: nope\n");
    ctl(&s, &["start", "svc", "BAD"]).fails("initctl: Env must be KEY=VALUE pairs\n");
    ctl(&s, &["start"]).fails("initctl: missing job name\nTry `initctl --help' for more information.\n");
    ctl(&s, &["emit"]).fails("initctl: missing event name\nTry `initctl --help' for more information.\n");
    ctl(&s, &["frobnicate"])
        .fails("initctl: invalid command: frobnicate\nTry `initctl --help' for more information.\n");
    ctl(&s, &["--bogus", "list"])
        .fails("initctl: invalid option: --bogus\nTry `initctl --help' for more information.\n");
    ctl(&s, &[]).fails("initctl: missing command\nTry `initctl --help' for more information.\n");
}

#[test]
fn instances() {
    let s = session();
    let one = ctl(&s, &["start", "worker", "N=1"]);
    let one = one.ok();
    assert!(one.starts_with("worker (1) start/running, process "), "{one:?}");
    let two = ctl(&s, &["start", "worker", "N=2"]);
    assert!(
        two.ok().starts_with("worker (2) start/running, process "),
        "{two:?}"
    );
    assert_eq!(ctl(&s, &["status", "worker", "N=1"]).ok(), one);
    // Without N the instance name cannot be expanded.
    ctl(&s, &["status", "worker"]).fails("initctl: Unknown parameter: N\nUsage: worker N=<n>\n");
    assert_eq!(ctl(&s, &["stop", "worker", "N=1"]).ok(), "worker stop/waiting\n");
    // Naming an instance that does not exist is an error, even for status
    // (as in Upstart: only `status JOB` alone reads as stop/waiting).
    ctl(&s, &["status", "worker", "N=1"]).fails("initctl: Unknown instance: 1\n");
    ctl(&s, &["stop", "worker", "N=1"]).fails("initctl: Unknown instance: 1\n");
}

#[test]
fn list_shows_every_job() {
    let s = session();
    let svc = ctl(&s, &["status", "svc"]).ok().to_string();
    let list = ctl(&s, &["list"]);
    let mut lines: Vec<&str> = list.ok().lines().collect();
    lines.sort();
    let mut expected = vec![
        "greeter stop/waiting",
        "idle stop/waiting",
        "orphan stop/waiting",
        "quick stop/waiting",
        svc.trim_end(),
        "worker stop/waiting",
    ];
    expected.sort();
    assert_eq!(lines, expected);
}

#[test]
fn emit_starts_jobs_with_the_event_environment() {
    let mut s = session();
    assert_eq!(ctl(&s, &["emit", "hello", "NAME=world"]).ok(), "");
    // emit waits for the event to be handled: the task has run.
    assert_eq!(s.read_out("greeting").as_deref(), Some("hello world\n"));
    ctl(&s, &["emit", "hello", "oops"]).fails("initctl: Env must be KEY=VALUE pairs\n");
    assert_eq!(ctl(&s, &["emit", "--no-wait", "quit"]).code, 0);
    s.wait_for("svc to stop on quit", |s| {
        ctl(s, &["status", "svc"]).out == "svc stop/waiting\n"
    });
}

#[test]
fn version_priority_usage_and_configuration() {
    let s = session();
    assert_eq!(
        ctl(&s, &["version"]).ok(),
        format!("init (upshot {})\n", env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(ctl(&s, &["log-priority"]).ok(), "info\n");
    assert_eq!(ctl(&s, &["log-priority", "debug"]).ok(), "");
    assert_eq!(ctl(&s, &["log-priority"]).ok(), "debug\n");
    assert_eq!(ctl(&s, &["usage", "svc"]).ok(), "Usage: svc [X=y]\n");
    assert_eq!(ctl(&s, &["usage", "idle"]).ok(), "Usage: \n");
    assert_eq!(
        ctl(&s, &["show-config", "svc"]).ok(),
        "svc\n  start on startup\n  stop on quit\n"
    );
    assert_eq!(
        ctl(&s, &["show-config", "-e", "orphan"]).ok(),
        "orphan\n  start on started (job: nosuchjob, env:)\n  start on frobnicated (job:, env:)\n"
    );
    let check = ctl(&s, &["check-config", "orphan"]);
    assert_eq!(
        (check.code, check.out.as_str()),
        // Upstart's order: its tree takes an operator's right operand as
        // its left child.
        (
            1,
            "orphan\n  start on: unknown event frobnicated\n  start on: unknown job nosuchjob\n"
        ),
        "{check:?}"
    );
    assert_eq!(ctl(&s, &["reload-configuration"]).ok(), "");
}

#[test]
fn environment_commands() {
    let s = session();
    assert_eq!(ctl(&s, &["set-env", "FOO=bar"]).ok(), "");
    assert_eq!(ctl(&s, &["get-env", "FOO"]).ok(), "bar\n");
    assert_eq!(ctl(&s, &["set-env", "--retain", "FOO=other"]).ok(), "");
    assert_eq!(ctl(&s, &["get-env", "FOO"]).ok(), "bar\n");
    assert_eq!(ctl(&s, &["set-env", "A=1", "B=2"]).ok(), "");
    let list = ctl(&s, &["list-env"]);
    let lines: Vec<&str> = list.ok().lines().collect();
    for want in ["A=1", "B=2", "FOO=bar"] {
        assert!(lines.contains(&want), "{want} not in {lines:?}");
    }
    let mut sorted = lines.clone();
    sorted.sort();
    assert_eq!(lines, sorted, "list-env is sorted");
    assert_eq!(ctl(&s, &["unset-env", "FOO", "A"]).ok(), "");
    ctl(&s, &["get-env", "FOO"]).fails("initctl: No such variable: FOO\n");
    ctl(&s, &["unset-env", "FOO"]).fails("initctl: No such variable: FOO\n");
    assert_eq!(ctl(&s, &["reset-env"]).ok(), "");
    ctl(&s, &["get-env", "B"]).fails("initctl: No such variable: B\n");
    ctl(&s, &["get-env"])
        .fails("initctl: missing variable name\nTry `initctl --help' for more information.\n");
}

/// A directory of links named like the commands, pointing at initctl.
fn links(s: &Session) -> PathBuf {
    let dir = s.root().join("links");
    std::fs::create_dir_all(&dir).unwrap();
    for name in ["start", "stop", "restart", "reload", "status", "emit"] {
        let _ = symlink(initctl_binary(), dir.join(name));
    }
    dir
}

#[test]
fn links_act_as_their_command() {
    let s = session();
    let dir = links(&s);
    let run = |name: &str, args: &[&str]| run_program(&s, &dir.join(name), args, &[]);
    let line = run("start", &["idle"]);
    let pid = running_pid(line.ok(), "idle");
    assert_eq!(
        run("status", &["idle"]).ok(),
        format!("idle start/running, process {pid}\n")
    );
    run("start", &["nope"]).fails("start: Unknown job: nope\n");
    run("status", &[]).fails("status: missing job name\nTry `status --help' for more information.\n");
    assert_eq!(run("emit", &["hello", "NAME=link"]).ok(), "");
    assert_eq!(run("stop", &["idle"]).ok(), "idle stop/waiting\n");
}

#[test]
fn reload_sends_the_reload_signal_to_the_main_process() {
    let mut s = session();
    s.write_job(
        "hup",
        "script\n  trap 'echo hup >> @OUT@/hups' HUP\n  echo $$ > @OUT@/pid\n  while :; do sleep 0.05; done\nend script\n",
    );
    s.wait_for("the hup job to load", |s| ctl(s, &["status", "hup"]).code == 0);
    running_pid(ctl(&s, &["start", "hup"]).ok(), "hup");
    s.wait_out("pid");
    assert_eq!(ctl(&s, &["reload", "hup"]).ok(), "");
    assert_eq!(s.wait_out("hups"), "hup\n");
    ctl(&s, &["reload", "idle"]).fails("initctl: Unknown instance: \n");
}

#[test]
fn inside_a_job_commands_act_on_the_calling_instance() {
    let mut s = session();
    let initctl = initctl_binary().display().to_string();
    // pre-start stops its own instance: main never runs.
    s.write_job(
        "selfstop",
        &format!(
            "pre-start script\n  {initctl} stop\n  echo pre-start-done > @OUT@/selfstop\nend script\nexec sleep 1000\n"
        ),
    );
    // pre-start sets a variable of its own instance: main sees it.
    s.write_job(
        "selfenv",
        &format!(
            "pre-start exec {initctl} set-env FROM_PRE_START=yes\ntask\nscript\n  echo \"$FROM_PRE_START\" > @OUT@/selfenv\nend script\n"
        ),
    );
    s.wait_for("the jobs to load", |s| {
        ctl(s, &["status", "selfstop"]).code == 0 && ctl(s, &["status", "selfenv"]).code == 0
    });
    // The stop releases the waiting start (with success); the instance may
    // still be finishing its pre-start when the status is read.
    let run = ctl(&s, &["start", "selfstop"]);
    assert!(run.ok().starts_with("selfstop stop/"), "{run:?}");
    assert_eq!(s.wait_out("selfstop"), "pre-start-done\n");
    s.wait_for("selfstop to be stopped", |s| {
        ctl(s, &["status", "selfstop"]).out == "selfstop stop/waiting\n"
    });
    assert_eq!(ctl(&s, &["start", "selfenv"]).ok(), "selfenv stop/waiting\n");
    assert_eq!(s.wait_out("selfenv"), "yes\n");
    // The global table did not get it.
    ctl(&s, &["get-env", "FROM_PRE_START"]).fails("initctl: No such variable: FROM_PRE_START\n");
}

#[test]
fn list_sessions_and_transport_errors() {
    let s = session();
    let run = s.root().join("run");
    let sessions = ctl_env(
        &s,
        &["list-sessions"],
        &[("XDG_RUNTIME_DIR", run.to_str().unwrap())],
    );
    assert_eq!(sessions.ok(), format!("{} {}\n", s.pid(), address(&s)));
    // --user without UPSTART_SESSION.
    let out = Command::new(initctl_binary())
        .args(["--user", "list"])
        .env_clear()
        .env("PATH", upshot_tests::PATH)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "initctl: UPSTART_SESSION isn't set in the environment. Unable to locate the Upstart instance.\n"
    );
    // --dest without a bus (no UPSTART_SESSION: root would use the private
    // socket of PID 1).
    let out = Command::new(initctl_binary())
        .args(["--dest=com.example", "list"])
        .env_clear()
        .env("PATH", upshot_tests::PATH)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.starts_with("initctl: --dest given without --system\n"),
        "{err}"
    );
}

fn ctl_env(s: &Session, args: &[&str], env: &[(&str, &str)]) -> Run {
    run_program(s, initctl_binary(), args, env)
}

#[test]
fn another_user_is_refused() {
    let s = session();
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(initctl_binary())
        .arg("list")
        .env_clear()
        .env("PATH", upshot_tests::PATH)
        .env("UPSTART_SESSION", address(&s))
        .output()
        .expect("run setpriv");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.starts_with("initctl: Unable to connect to Upstart: "),
        "{err}"
    );
    // The daemon still serves its user.
    assert!(ctl(&s, &["status", "svc"]).ok().starts_with("svc start/running"));
}

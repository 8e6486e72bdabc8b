//! The foreground worker of `conf/lab/` (LAVA style, issue 7) under
//! `init --user`, with the `labworker` stand-in: respawned when it dies up
//! to its respawn limit (then reported by `lab-failure.conf`), and its two
//! logs (init's per-job log and its own) rotated by the real `logrotate`
//! in both styles without losing a line.

use std::fs;
use std::path::Path;
use std::process::Command;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use upshot_tests::{Session, lab_job, run_client};

fn worker_session(name: &str) -> Session {
    let mut s = Session::new(name);
    s.write_job(
        "lava-worker",
        &lab_job(
            "lava-worker.conf",
            &[
                (
                    "start on (filesystem and net-device-up IFACE!=lo)",
                    "start on startup",
                ),
                (
                    "/usr/bin/lava-worker --log /var/log/lava-dispatcher/lava-worker.log",
                    "@BIN@/labworker --log @OUT@/worker.log --pidfile @OUT@/pid",
                ),
            ],
        ),
    );
    s.write_job(
        "lab-failure",
        &lab_job(
            "lab-failure.conf",
            &[("REPORT=/var/log/lab-failures.log", "REPORT=@OUT@/failures")],
        ),
    );
    s.start(&[]);
    // initctl once the daemon listens.
    s.wait_address();
    s
}

fn signal(pid: i32, sig: Signal) {
    kill(Pid::from_raw(pid), sig).unwrap();
}

/// The worker's pid once it is a new one (not `old`).
fn new_pid(s: &mut Session, old: Option<i32>) -> i32 {
    s.wait_for_value("a (new) worker", |s| {
        s.read_out("pid")
            .and_then(|p| p.trim().parse().ok())
            .filter(|p| Some(*p) != old && upshot_tests::alive(*p))
    })
}

/// `respawn limit 5 60`: five crashes are respawned, the sixth stops the
/// job as failed with PROCESS=respawn, which the failure job records.
#[test]
fn worker_is_respawned_up_to_its_limit_and_the_failure_is_reported() {
    let mut s = worker_session("lab-worker-respawn");
    let mut pid = new_pid(&mut s, None);
    for _ in 0..5 {
        signal(pid, Signal::SIGUSR2);
        pid = new_pid(&mut s, Some(pid));
    }
    let log = s.daemon_log();
    assert_eq!(
        log.matches("lava-worker main process ended, respawning").count(),
        5,
        "{log}"
    );
    signal(pid, Signal::SIGUSR2);
    s.wait_log("lava-worker respawning too fast, stopped");
    let report = s.wait_out("failures");
    assert_eq!(report.lines().count(), 1, "{report}");
    assert!(
        report.contains(" job=lava-worker instance= process=respawn "),
        "{report}"
    );
    assert_eq!(
        s.initctl(&["status", "lava-worker"]).ok(),
        "lava-worker stop/waiting\n"
    );
    let joblog = s.job_log("lava-worker.log").unwrap();
    assert_eq!(joblog.matches("crashing").count(), 6, "{joblog}");
    assert_eq!(joblog.matches(" started").count(), 6, "{joblog}");
}

/// Writes lines `from..=to` (one SIGUSR1 each) and waits until the last is
/// in both logs.
fn write_lines(s: &mut Session, pid: i32, from: u32, to: u32) {
    for n in from..=to {
        signal(pid, Signal::SIGUSR1);
        let want = format!("line {n}\n");
        s.wait_for(&want, |s| {
            s.read_out("worker.log").is_some_and(|t| t.contains(&want))
                && s.job_log("lava-worker.log").is_some_and(|t| t.contains(&want))
        });
    }
}

/// The `line N` lines of the rotated file and the current one, in order.
fn lines_of(current: &Path) -> Vec<String> {
    let rotated = current.with_extension("log.1");
    let mut text = fs::read_to_string(&rotated).unwrap_or_else(|e| panic!("{}: {e}", rotated.display()));
    text += &fs::read_to_string(current).unwrap_or_default();
    text.lines()
        .filter(|l| l.starts_with("line "))
        .map(str::to_string)
        .collect()
}

/// Runs the real logrotate (`-f`, its own state file) on `conf`.
fn logrotate(s: &Session, conf: &str) {
    if Command::new("logrotate").arg("--version").output().is_err() {
        upshot_tests::skip("logrotate is not installed (.ci/run installs it)");
    }
    let path = s.root().join("logrotate.conf");
    fs::write(&path, conf).unwrap();
    let out = run_client(
        Command::new("logrotate")
            .arg("-f")
            .arg("-s")
            .arg(s.root().join("logrotate.state"))
            .arg(&path),
    );
    out.ok();
}

fn rotates_without_losing_a_line(name: &str, style: &str) {
    let mut s = worker_session(name);
    let pid = new_pid(&mut s, None);
    write_lines(&mut s, pid, 1, 3);
    let joblog = s.log_dir().join("lava-worker.log");
    let own = s.out("worker.log");
    let ctl = format!(
        "UPSTART_SESSION=unix:abstract=/com/ubuntu/upstart-session/{}/{} {} reload lava-worker",
        s.account().uid,
        s.pid(),
        upshot_tests::initctl_binary().display()
    );
    let conf = match style {
        "copytruncate" => format!(
            "{} {{\n  rotate 3\n  copytruncate\n}}\n{} {{\n  rotate 3\n  copytruncate\n}}\n",
            joblog.display(),
            own.display()
        ),
        _ => format!(
            "{} {{\n  rotate 3\n}}\n{} {{\n  rotate 3\n  postrotate\n    {ctl}\n  endscript\n}}\n",
            joblog.display(),
            own.display()
        ),
    };
    logrotate(&s, &conf);
    assert!(joblog.with_extension("log.1").exists() && own.with_extension("log.1").exists());
    write_lines(&mut s, pid, 4, 6);
    let want: Vec<String> = (1..=6).map(|n| format!("line {n}")).collect();
    assert_eq!(lines_of(&joblog), want, "init's per-job log");
    assert_eq!(lines_of(&own), want, "the worker's own log");
    assert!(
        !fs::read_to_string(joblog.with_extension("log.1"))
            .unwrap()
            .contains("line 4"),
        "nothing written to the rotated file"
    );
    assert_eq!(new_pid(&mut s, None), pid, "the worker was not restarted");
}

/// copytruncate for both logs.
#[test]
fn logrotate_copytruncate_loses_no_line() {
    rotates_without_losing_a_line("lab-rotate-copy", "copytruncate");
}

/// Move (logrotate's default `create` style): init follows the moved
/// per-job log by itself; the worker reopens its own on `initctl reload`.
#[test]
fn logrotate_move_then_signal_loses_no_line() {
    rotates_without_losing_a_line("lab-rotate-move", "move");
}

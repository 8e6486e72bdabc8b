//! `pid file PATH` (upshot): a service that hands over to a successor of
//! itself (the AVE services' `--restart`) keeps running under the new pid:
//! no respawn, `stop` stops the successor. Without the stanza the same job
//! is respawned.

use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use upshot_tests::{Session, alive};

/// A main process that, on SIGUSR1, starts its successor (a `sleep`),
/// writes the successor's pid to the pid file (and to `successor`), and
/// exits 0: the successor
/// is orphaned to the session init, tagged with the job's environment.
fn job(pid_file: bool) -> String {
    format!(
        "{}respawn\nscript\n  trap 'sleep 1000 & echo $! > @OUT@/svc.pid.new; cp @OUT@/svc.pid.new @OUT@/successor; mv @OUT@/svc.pid.new @OUT@/svc.pid; exit 0' USR1\n  echo $$ > @OUT@/svc.pid\n  while :; do sleep 0.05; done\nend script\n",
        if pid_file { "pid file @OUT@/svc.pid\n" } else { "" }
    )
}

fn main_pid(s: &mut Session) -> Option<i32> {
    let out = s.initctl(&["status", "svc"]);
    out.stdout
        .strip_prefix("svc start/running, process ")?
        .trim()
        .parse()
        .ok()
}

fn hand_over(s: &mut Session) -> (i32, i32) {
    s.wait_address();
    assert!(s.initctl(&["start", "svc"]).ok().starts_with("svc start/running"));
    let old = s.wait_for_value("svc's main process", main_pid);
    s.wait_for("the pid file", |s| {
        s.read_out("svc.pid") == Some(format!("{old}\n"))
    });
    kill(Pid::from_raw(old), Signal::SIGUSR1).expect("signal the main process");
    // Read from a file of its own: without the stanza the respawned main
    // process soon writes its pid over svc.pid.
    let successor = s.wait_for_value("the successor's pid", |s| {
        let text = s.read_out("successor")?;
        text.trim().parse().ok()
    });
    s.wait_for("the old main process to end", |_| !alive(old));
    (old, successor)
}

#[test]
fn the_successor_named_by_the_pid_file_is_adopted() {
    let mut s = Session::new("pid-file");
    s.write_job("svc", &job(true));
    s.start(&[]);
    let (old, successor) = hand_over(&mut s);
    s.wait_log(&format!(
        "svc: main process ({old}) ended; adopting {successor} from its pid file"
    ));
    assert_eq!(main_pid(&mut s), Some(successor));
    let log = s.daemon_log();
    assert!(!log.contains("respawning"), "{log}");
    // stop stops the successor.
    assert_eq!(s.initctl(&["stop", "svc"]).ok(), "svc stop/waiting\n");
    s.wait_for("the successor to end", |_| !alive(successor));
    assert_eq!(s.terminate(Duration::from_secs(10)), 0);
}

#[test]
fn without_the_stanza_the_job_is_respawned() {
    let mut s = Session::new("pid-file-none");
    s.write_job("svc", &job(false));
    s.start(&[]);
    let (_, successor) = hand_over(&mut s);
    s.wait_log("svc main process ended, respawning");
    let new = s.wait_for_value("the respawned main process", main_pid);
    assert_ne!(new, successor);
    assert_eq!(s.terminate(Duration::from_secs(10)), 0);
    assert!(!alive(successor), "the stray successor outlived the session");
}

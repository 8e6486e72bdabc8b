//! `expect fork`, `expect daemon` and `expect stop` (spec §1.8), with the
//! right number of forks and the wrong one (spec §7: Upstart hangs there).

use std::time::Duration;

use upshot_tests::{Session, alive};

/// The job's main pid is the process at the end of the declared forks:
/// stopping the job kills that one, and the daemon logs its death with its
/// pid (the forker writes its pid and, on SIGTERM, a term file).
fn follows_forks(name: &str, expect: &str, forker_args: &str) {
    let mut s = Session::new(name);
    s.write_job(
        "d",
        &format!(
            "start on startup\nexpect {expect}\nexec @BIN@/forker {forker_args} --pidfile @OUT@/pid --term-file @OUT@/term\n"
        ),
    );
    s.start(&[]);
    let pid = s.wait_pid("pid");
    let log = s.wait_log("d state changed from post-start to running");
    assert!(log.contains(&format!("d main process is now {pid}")), "{log}");
    assert!(alive(pid));
    let p = upshot_tests::proc_info(pid).unwrap();
    assert_eq!(
        upshot_tests::tracer_pid(pid),
        Some(0),
        "the main process is no longer traced once running: {p:?}"
    );
    assert_eq!(s.terminate(Duration::from_secs(10)), 0);
    assert_eq!(
        s.read_out("term").as_deref(),
        Some(format!("{pid}\n").as_str()),
        "TERM reached the pid"
    );
    assert!(!alive(pid));
    let log = s.daemon_log();
    assert!(
        log.contains(&format!("d main process ({pid}) killed by TERM signal")),
        "{log}"
    );
    s.wait_for("no process of the session left", |s| s.leftovers().is_empty());
}

#[test]
fn expect_fork_follows_one_fork() {
    follows_forks("expect-fork", "fork", "--forks 1");
}

#[test]
fn expect_daemon_follows_two_forks() {
    follows_forks("expect-daemon", "daemon", "--forks 2 --setsid");
}

/// Fewer forks than `expect daemon` declares: the job does not hang in
/// `spawned` but fails after `expect timeout 2`, and its process is killed.
fn too_few_forks(name: &str, forks: u32) {
    let mut s = Session::new(name);
    s.write_job(
        "d",
        &format!(
            "start on startup\nexpect daemon\nexpect timeout 2\nexec @BIN@/forker --forks {forks} --pidfile @OUT@/pid\n"
        ),
    );
    s.write_job(
        "watch",
        "start on stopped d\ntask\nexec @BIN@/recorder --out @OUT@/stopped --exit 0\n",
    );
    s.start(&[]);
    let pid = s.wait_pid("pid");
    let stopped = s.wait_record("stopped").env();
    assert_eq!(stopped.get("RESULT").map(String::as_str), Some("failed"));
    assert_eq!(stopped.get("PROCESS").map(String::as_str), Some("main"));
    let log = s.daemon_log();
    assert!(log.contains("did not reach `expect daemon` in time"), "{log}");
    assert!(
        !log.contains("d state changed from spawned to post-start"),
        "{log}"
    );
    s.wait_for("the forker to be gone", |_| !alive(pid));
    s.wait_for("the daemon to have no children", |s| s.descendants().is_empty());
    assert_eq!(s.terminate(Duration::from_secs(10)), 0);
}

#[test]
fn expect_daemon_with_no_fork_fails_after_expect_timeout() {
    too_few_forks("expect-daemon-0", 0);
}

#[test]
fn expect_daemon_with_one_fork_fails_after_expect_timeout() {
    too_few_forks("expect-daemon-1", 1);
}

/// More forks than `expect daemon` declares: the job runs; when the
/// process it took for the main one exits, the daemon (a subreaper) adopts
/// the survivor as the main process, and stopping the job kills it,
/// leaving nothing.
#[test]
fn expect_daemon_with_three_forks_stops_cleanly() {
    let mut s = Session::new("expect-daemon-3");
    s.write_job(
        "d",
        "start on startup\nexpect daemon\nexpect timeout 5\nexec @BIN@/forker --forks 3 --pidfile @OUT@/pid --term-file @OUT@/term\n",
    );
    s.start(&[]);
    let pid = s.wait_pid("pid");
    s.wait_log("d state changed from post-start to running");
    s.wait_log(&format!("d main process is now {pid}"));
    assert!(alive(pid));
    assert_eq!(s.terminate(Duration::from_secs(10)), 0);
    assert_eq!(s.read_out("term").as_deref(), Some(format!("{pid}\n").as_str()));
    s.wait_for("the forker to be gone", |_| !alive(pid));
    s.wait_for("no process of the session left", |s| s.leftovers().is_empty());
    let log = s.daemon_log();
    assert!(
        log.contains(&format!("d main process ({pid}) killed by TERM signal")),
        "{log}"
    );
    assert!(!log.contains("failed to stop"), "{log}");
}

/// `expect stop`: the job waits in `spawned` until its main process stops
/// itself, then continues it and moves on.
#[test]
fn expect_stop_continues_the_stopped_process() {
    let mut s = Session::new("expect-stop");
    s.write_job(
        "st",
        "start on startup\nexpect stop\nexec @BIN@/stopper --out @OUT@/continued\n",
    );
    s.start(&[]);
    let pid = s.wait_pid("continued");
    s.wait_log("st state changed from post-start to running");
    let log = s.daemon_log();
    let spawned = log.find("st state changed from pre-start to spawned").unwrap();
    let post = log.find("st state changed from spawned to post-start").unwrap();
    assert!(spawned < post);
    let p = upshot_tests::proc_info(pid).unwrap();
    assert_eq!(p.ppid, s.pid());
    assert_eq!(s.terminate(Duration::from_secs(10)), 0);
    assert!(
        s.daemon_log()
            .contains(&format!("st main process ({pid}) killed by TERM signal"))
    );
}

//! `respawn` and `respawn limit` (spec §1.4, §1.9 process-exit rules).

use std::time::Duration;

use upshot_tests::Session;

/// A main process that crashes is started again, as long as it crashes:
/// the crasher exits 1 on its first two runs and stays up on the third.
#[test]
fn crashing_main_process_is_respawned() {
    let mut s = Session::new("respawn");
    s.write_job(
        "crash",
        "start on startup\nrespawn\nexec @BIN@/crasher --count @OUT@/count --status 1 --stop-after 3\n",
    );
    s.start(&[]);
    s.wait_for("the third run", |s| s.read_out("count").as_deref() == Some("3\n"));
    let log = s.wait_log("crash state changed from post-start to running");
    let third = s.wait_for_value("the third run to be a child of the daemon", |s| {
        s.descendants()
            .into_iter()
            .find(|p| p.comm == "crasher")
            .map(|p| p.pid)
    });
    assert_eq!(
        log.matches("crash main process ended, respawning").count(),
        2,
        "{log}"
    );
    assert_eq!(log.matches("terminated with status 1").count(), 2, "{log}");
    assert!(!log.contains("respawning too fast"), "{log}");
    assert_eq!(s.terminate(Duration::from_secs(10)), 0);
    assert!(!upshot_tests::alive(third));
    let log = s.daemon_log();
    assert!(
        log.contains(&format!("crash main process ({third}) killed by TERM signal")),
        "{log}"
    );
}

/// `respawn limit 3 10`: more than 3 respawns within 10 s stop the job
/// ("respawning too fast, stopped"): 4 runs, then it stays down, failed
/// with PROCESS=respawn.
#[test]
fn respawn_limit_stops_a_job_that_respawns_too_fast() {
    let mut s = Session::new("respawn-limit");
    s.write_job(
        "crash",
        "start on startup\nrespawn\nrespawn limit 3 10\nexec @BIN@/crasher --count @OUT@/count --status 3\n",
    );
    s.write_job(
        "watch",
        "start on stopped crash\ntask\nexec @BIN@/recorder --out @OUT@/stopped --exit 0\n",
    );
    s.start(&[]);
    let log = s.wait_log("crash respawning too fast, stopped");
    assert_eq!(
        log.matches("crash main process ended, respawning").count(),
        3,
        "{log}"
    );
    let stopped = s.wait_record("stopped").env();
    assert_eq!(stopped.get("RESULT").map(String::as_str), Some("failed"));
    assert_eq!(stopped.get("PROCESS").map(String::as_str), Some("respawn"));
    s.wait_log("crash state changed from post-stop to waiting");
    assert_eq!(s.read_out("count").as_deref(), Some("4\n"), "four runs");
    assert!(
        s.descendants().iter().all(|p| p.comm != "crasher"),
        "{:?}",
        s.descendants()
    );
    assert_eq!(s.terminate(Duration::from_secs(10)), 0);
    // It never came back.
    assert_eq!(s.read_out("count").as_deref(), Some("4\n"));
    let log = s.daemon_log();
    let stopped_at = log.find("crash respawning too fast, stopped").unwrap();
    assert!(
        !log[stopped_at..].contains("crash state changed from waiting to starting"),
        "{log}"
    );
}

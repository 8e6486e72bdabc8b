//! The order of a job's processes and events (spec §1.9, §1.10).

use std::time::Duration;

use upshot_tests::Session;

/// pre-start, main, post-start run in that order; `started` is emitted only
/// once post-start has finished (a job `start on started a` records when it
/// ran, after a post-start that takes a while); on shutdown pre-stop runs
/// while main is alive, then main is killed, then post-stop.
#[test]
fn processes_run_in_order_and_started_follows_post_start() {
    let mut s = Session::new("lifecycle");
    s.write_job(
        "a",
        r#"
start on startup
pre-start script
  echo pre-start >> @OUT@/order
end script
script
  echo main >> @OUT@/order
  echo $$ > @OUT@/main.pid
  exec sleep 1000
end script
post-start script
  # Record only once main has written its line (bounded, 10 s).
  i=0
  while ! grep -qx main @OUT@/order; do
    i=$((i+1)); [ $i -lt 1000 ] || break; sleep 0.01
  done
  echo post-start >> @OUT@/order
  # A window in which a premature `started` would show.
  sleep 0.3
  echo post-start-end >> @OUT@/order
end script
pre-stop script
  kill -0 $(cat @OUT@/main.pid) && echo pre-stop-main-alive >> @OUT@/order
end script
post-stop script
  echo post-stop >> @OUT@/order
end script
"#,
    );
    s.write_job(
        "b",
        r#"
start on started a
task
script
  echo "b JOB=$JOB UPSTART_EVENTS=$UPSTART_EVENTS" >> @OUT@/order
end script
"#,
    );
    s.start(&[]);
    s.wait_for("b to run", |s| {
        s.read_out("order").is_some_and(|o| o.contains("b JOB=")) && s.read_out("main.pid").is_some()
    });
    assert_eq!(s.terminate(Duration::from_secs(10)), 0);
    let order = s.read_out("order").unwrap();
    let lines: Vec<&str> = order.lines().collect();
    assert_eq!(
        lines,
        [
            "pre-start",
            "main",
            "post-start",
            "post-start-end",
            "b JOB=a UPSTART_EVENTS=started",
            "pre-stop-main-alive",
            "post-stop"
        ],
        "order of the processes of a and of b"
    );
    // The daemon's view agrees: a reached running before b started.
    let log = s.daemon_log();
    let pos = |needle: &str| {
        log.find(needle)
            .unwrap_or_else(|| panic!("{needle:?} not in the daemon log:\n{log}"))
    };
    let states = [
        "a state changed from waiting to starting",
        "a state changed from starting to pre-start",
        "a state changed from pre-start to spawned",
        "a state changed from spawned to post-start",
        "a state changed from post-start to running",
        "a state changed from running to pre-stop",
        "a state changed from pre-stop to stopping",
        "a state changed from stopping to killed",
        "a state changed from killed to post-stop",
        "a state changed from post-stop to waiting",
    ];
    for pair in states.windows(2) {
        assert!(pos(pair[0]) < pos(pair[1]), "{:?} before {:?}", pair[0], pair[1]);
    }
    assert!(
        pos("a state changed from post-start to running") < pos("b state changed from waiting to starting")
    );
}

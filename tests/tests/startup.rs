//! The first event: `startup`, `--startup-event NAME`, `--no-startup-event`.

use std::time::Duration;

use upshot_tests::Session;

fn jobs(s: &Session) {
    s.write_job(
        "on-startup",
        "start on startup\ntask\nexec @BIN@/recorder --out @OUT@/on-startup --exit 0\n",
    );
    s.write_job(
        "on-go",
        "start on go\ntask\nexec @BIN@/recorder --out @OUT@/on-go --exit 0\n",
    );
    s.write_job(
        "on-end",
        "start on session-end\ntask\nexec @BIN@/recorder --out @OUT@/on-end --exit 0\n",
    );
}

/// By default the first event is `startup`.
#[test]
fn startup_is_the_default_first_event() {
    let mut s = Session::new("startup");
    jobs(&s);
    s.start(&[]);
    let env = s.wait_record("on-startup").env();
    assert_eq!(env.get("UPSTART_EVENTS").map(String::as_str), Some("startup"));
    assert_eq!(s.terminate(Duration::from_secs(10)), 0);
    assert!(s.read_out("on-go").is_none());
    assert!(!s.daemon_log().contains("on-go state changed"));
}

/// `--startup-event go` emits `go` instead of `startup`.
#[test]
fn startup_event_option_names_the_first_event() {
    let mut s = Session::new("startup-event");
    jobs(&s);
    s.start(&["--startup-event", "go"]);
    let env = s.wait_record("on-go").env();
    assert_eq!(env.get("UPSTART_EVENTS").map(String::as_str), Some("go"));
    assert_eq!(s.terminate(Duration::from_secs(10)), 0);
    // The engine is synchronous: had `startup` been emitted, the job would
    // have changed state before the daemon exited.
    let log = s.daemon_log();
    assert!(!log.contains("on-startup state changed"), "{log}");
    assert!(s.read_out("on-startup").is_none());
}

/// `--no-startup-event`: no first event at all; the daemon still runs its
/// jobs on the events that do come (here `session-end`).
#[test]
fn no_startup_event_emits_nothing() {
    let mut s = Session::new("no-startup-event");
    jobs(&s);
    s.start(&["--no-startup-event"]);
    let path = s.run_dir().join("upstart/sessions");
    s.wait_for("the session file (configuration loaded)", |_| {
        std::fs::read_dir(&path).is_ok_and(|mut d| d.next().is_some())
    });
    assert_eq!(s.terminate(Duration::from_secs(10)), 0);
    let env = upshot_tests::Record::parse(&s.read_out("on-end").expect("on-end ran")).env();
    assert_eq!(env.get("UPSTART_EVENTS").map(String::as_str), Some("session-end"));
    let log = s.daemon_log();
    assert!(!log.contains("on-startup state changed"), "{log}");
    assert!(!log.contains("on-go state changed"), "{log}");
}

//! Ending the session: SIGTERM (spec §5 "Shutdown") and the session file.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use upshot_tests::{Session, alive};

/// SIGTERM: `session-end TYPE=shutdown` is emitted (a job `start on
/// session-end` runs and sees it), every job process is stopped, the
/// daemon exits 0 within the largest `kill timeout` plus a margin, and
/// removes its session file.
#[test]
fn sigterm_emits_session_end_stops_every_job_and_exits_0() {
    let mut s = Session::new("shutdown");
    s.write_job(
        "svc",
        "start on startup\nkill timeout 2\nexec @BIN@/recorder --out @OUT@/svc\n",
    );
    s.write_job(
        "tree",
        "start on startup\nscript\n  sleep 1000 &\n  echo $! > @OUT@/bg\n  exec @BIN@/recorder --out @OUT@/tree\nend script\n",
    );
    s.write_job(
        "ending",
        // It takes a moment, as a job saving state at logout would: it
        // must not be stopped along with the jobs that were running.
        "start on session-end\ntask\nscript\n  sleep 0.5\n  exec @BIN@/recorder --out @OUT@/ending --exit 0\nend script\n",
    );
    s.start(&[]);
    let svc = s.wait_record("svc").num("pid") as i32;
    let tree = s.wait_record("tree").num("pid") as i32;
    let bg = s.wait_pid("bg");
    let session_file = s.run_dir().join(format!("upstart/sessions/{}.session", s.pid()));
    assert!(session_file.is_file());
    assert!(s.read_out("ending").is_none(), "session-end before SIGTERM");

    let sent = Instant::now();
    // Largest kill timeout (2 s) plus a margin.
    assert_eq!(s.terminate(Duration::from_secs(2 + 5)), 0);
    let took = sent.elapsed();

    let ending = upshot_tests::Record::parse(
        &s.read_out("ending")
            .expect("the session-end job ran before the daemon exited"),
    )
    .env();
    assert_eq!(
        ending.get("UPSTART_EVENTS").map(String::as_str),
        Some("session-end")
    );
    assert_eq!(ending.get("TYPE").map(String::as_str), Some("shutdown"));
    // The main processes were reaped before the daemon exited; the
    // background `sleep` got its SIGTERM with them and may take a moment.
    assert!(!alive(svc) && !alive(tree));
    s.wait_for("the job's background process to die", |_| !alive(bg));
    s.wait_for("no process of the session left", |s| s.leftovers().is_empty());
    assert!(!session_file.exists(), "session file removed");
    eprintln!("shutdown took {took:?}");
}

/// While the daemon runs, `$XDG_RUNTIME_DIR/upstart/sessions/PID.session`
/// holds `UPSTART_SESSION=` and the address jobs get in their environment.
#[test]
fn session_file_holds_the_session_address() {
    let mut s = Session::new("session-file");
    s.write_job("svc", "start on startup\nexec @BIN@/recorder --out @OUT@/svc\n");
    s.start(&[]);
    let address = format!(
        "unix:abstract=/com/ubuntu/upstart-session/{}/{}",
        s.account().uid,
        s.pid()
    );
    let path = s.run_dir().join(format!("upstart/sessions/{}.session", s.pid()));
    let text = s.wait_for_value("the session file", |_| fs::read_to_string(&path).ok());
    assert_eq!(text, format!("UPSTART_SESSION={address}\n"));
    assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    let env = s.wait_record("svc").env();
    assert_eq!(env.get("UPSTART_SESSION"), Some(&address));
    assert_eq!(s.terminate(Duration::from_secs(10)), 0);
    assert!(!path.exists());
}

//! Stopping: `kill timeout`, and processes that escape their job's
//! process group and session (spec §1.9 `killed`, §7).

use std::time::Duration;

use upshot_tests::{Session, alive, proc_info, signal_masks};

/// `kill timeout 1` and a main process that ignores SIGTERM: it is killed
/// with SIGKILL (about a second later; not timed here).
#[test]
fn kill_timeout_sigkills_a_process_that_ignores_sigterm() {
    let mut s = Session::new("kill-timeout");
    s.write_job(
        "stubborn",
        "start on startup\nkill timeout 1\nexec @BIN@/term-ignorer --ready @OUT@/ready\n",
    );
    s.start(&[]);
    let pid = s.wait_pid("ready");
    let (_, ignored, _) = signal_masks(pid).unwrap();
    assert_ne!(ignored & (1 << (libc::SIGTERM - 1)), 0, "SIGTERM is ignored");
    assert_eq!(s.terminate(Duration::from_secs(10)), 0);
    assert!(!alive(pid));
    let log = s.daemon_log();
    assert!(
        log.contains(&format!(
            "stubborn main process ({pid}) still alive after 1 s; sending SIGKILL"
        )),
        "{log}"
    );
    assert!(
        log.contains(&format!("stubborn main process ({pid}) killed by KILL signal")),
        "{log}"
    );
    assert!(!log.contains("failed to stop"), "{log}");
}

/// The escaper's grandchild leaves the job's process group and session
/// and its parent exits, so it is re-parented to the daemon (a subreaper).
fn escaped(s: &mut Session) -> (i32, i32) {
    let out = s.wait_out("escape");
    let field = |k: &str| -> i32 {
        out.lines()
            .find_map(|l| l.strip_prefix(k))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {k} in {out:?}"))
    };
    let (grandchild, escaper) = (field("grandchild "), field("escaper "));
    s.wait_for("the grandchild to be re-parented to the daemon", |s| {
        proc_info(grandchild).is_some_and(|p| p.ppid == s.pid())
    });
    let p = proc_info(grandchild).unwrap();
    assert_eq!(p.session, grandchild, "own session");
    assert_ne!(p.pgrp, escaper, "not in the job's process group");
    (grandchild, escaper)
}

/// When the job stops (here because of its `stop on`), its escaped
/// grandchild is killed too, while the daemon goes on running.
#[test]
fn escaped_grandchild_is_killed_when_its_job_stops() {
    let mut s = Session::new("escape-stop");
    s.write_job("gate", "start on startup\nexec @BIN@/waitfor --file @OUT@/go\n");
    s.write_job(
        "escape",
        "start on startup\nstop on stopped gate\nexec @BIN@/escaper --out @OUT@/escape\n",
    );
    s.start(&[]);
    let (grandchild, escaper) = escaped(&mut s);
    s.write_owned(&s.out("go"), "");
    s.wait_log("escape state changed from post-stop to waiting");
    s.wait_for("the escaper to be gone", |_| !alive(escaper));
    s.wait_for("the escaped grandchild to be gone", |_| !alive(grandchild));
    assert!(s.try_status().is_none(), "the daemon runs on");
    assert_eq!(s.terminate(Duration::from_secs(10)), 0);
}

/// At shutdown, the escaped grandchild is killed with its job.
#[test]
fn escaped_grandchild_is_killed_at_shutdown() {
    let mut s = Session::new("escape-shutdown");
    s.write_job(
        "escape",
        "start on startup\nexec @BIN@/escaper --out @OUT@/escape\n",
    );
    s.start(&[]);
    let (grandchild, escaper) = escaped(&mut s);
    assert_eq!(s.terminate(Duration::from_secs(10)), 0);
    for pid in [escaper, grandchild] {
        s.wait_for("the job's processes to be gone", |_| !alive(pid));
    }
    s.wait_for("no process of the session left", |s| s.leftovers().is_empty());
}

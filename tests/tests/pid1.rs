//! `init` as process 1 of a PID namespace (the system init, spec §2.3–2.5):
//! `startup`, reaping orphans, SIGINT/SIGPWR/SIGWINCH as events, control
//! over the default private socket, the shutdown sequence
//! (`io.upshot.Init1.Shutdown` through `initctl poweroff` and the links),
//! surviving a panic, and what it mounts. Each test has PID, network and
//! mount namespaces of its own (see `SystemInit`); they need root.

use std::fs;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use upshot_tests::{Session, SystemInit, initctl_binary};

/// Whether `target` is a mount point in `mountinfo` (a file of
/// `/proc/PID/mountinfo`).
fn mounted(mountinfo: &str, target: &str) -> Option<String> {
    mountinfo.lines().find_map(|l| {
        let fields: Vec<&str> = l.split(' ').collect();
        let dash = fields.iter().position(|f| *f == "-")?;
        (fields.get(4) == Some(&target)).then(|| fields.get(dash + 1).unwrap_or(&"").to_string())
    })
}

/// Process 1 of the namespace: `startup` jobs run (children of process 1,
/// with only `PATH` of the daemon's environment), `initctl` as root reaches
/// it on `unix:abstract=/com/ubuntu/upstart`, the global environment stays
/// read-only, kernel arguments that are not ours are ignored, and `/run`
/// (not a mount point here, or one) is mounted only inside the namespace.
#[test]
fn process_1_of_a_namespace_runs_startup_jobs_and_answers_initctl() {
    let host_mounts = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let mut s = SystemInit::new("basics");
    s.write_job("svc", "start on startup\nexec @BIN@/recorder --out @OUT@/svc\n");
    s.start(&["splash", "--no-cgroups", "single"]);
    let rec = s.wait_record("svc");
    assert_eq!(rec.num("ppid"), 1, "jobs are children of process 1");
    let env = rec.env();
    assert!(env.contains_key("PATH"), "{env:?}");
    assert!(
        !env.contains_key("UPSHOT_TEST_TREE"),
        "a system init does not pass on its own environment: {env:?}"
    );
    assert_eq!(env.get("UPSTART_JOB").map(String::as_str), Some("svc"));
    assert!(!env.contains_key("UPSTART_SESSION"), "{env:?}");
    assert_eq!(SystemInit::ns_pid(s.pid()), Some(1));

    let list = s.initctl(&["list"]);
    assert!(list.ok().contains("svc start/running, process "), "{list}");
    assert_eq!(s.initctl(&["version"]).ok().trim(), "init (upshot 0.1.0)");
    // Only root may connect (to the same address).
    let nobody = s.run_inside(
        std::path::Path::new("/usr/bin/env"),
        &[
            "UPSTART_SESSION=unix:abstract=/com/ubuntu/upstart",
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            initctl_binary().to_str().unwrap(),
            "poweroff",
        ],
    );
    assert!(
        nobody
            .failed()
            .starts_with("initctl: Unable to connect to Upstart: "),
        "{nobody}"
    );
    // upshot's own interface is introspectable, and checks its argument.
    let busctl = |args: &[&str]| {
        let mut all = vec!["--address=unix:abstract=/com/ubuntu/upstart"];
        all.extend_from_slice(args);
        s.run_inside(std::path::Path::new("busctl"), &all)
    };
    let xml = busctl(&[
        "call",
        "com.ubuntu.Upstart",
        "/com/ubuntu/Upstart",
        "org.freedesktop.DBus.Introspectable",
        "Introspect",
    ]);
    assert!(
        xml.ok().contains(r#"<interface name=\"io.upshot.Init1\">"#)
            && xml.ok().contains(r#"<method name=\"Shutdown\">"#),
        "{xml}"
    );
    let sideways = busctl(&[
        "call",
        "com.ubuntu.Upstart",
        "/com/ubuntu/Upstart",
        "io.upshot.Init1",
        "Shutdown",
        "s",
        "sideways",
    ]);
    assert!(
        sideways
            .failed()
            .contains("Unknown shutdown type: sideways (poweroff, reboot or halt)"),
        "{sideways}"
    );
    let denied = s.initctl(&["set-env", "--global", "FOO=1"]);
    assert_eq!(
        denied.failed(),
        "initctl: Not permissible to modify PID 1 job environment\n"
    );
    let log = s.daemon_log();
    assert!(log.contains("process 1 of a PID namespace"), "{log}");
    assert!(log.contains("ignoring argument splash"), "{log}");
    assert!(log.contains("--no-cgroups (not implemented)"), "{log}");

    // /run: mounted in the namespace only when the host has no mount there.
    let inside = fs::read_to_string(format!("/proc/{}/mountinfo", s.pid())).unwrap();
    let host_has_run = mounted(&host_mounts, "/run").is_some();
    assert!(
        mounted(&inside, "/run").is_some(),
        "a /run in the namespace: {inside}"
    );
    if !host_has_run {
        assert_eq!(mounted(&inside, "/run").as_deref(), Some("tmpfs"));
        assert!(s.daemon_log().contains("mounted tmpfs on /run"));
    } else {
        assert!(!s.daemon_log().contains("mounted tmpfs on /run"));
    }
    // /proc was mounted by unshare for the namespace: left alone.
    assert!(!s.daemon_log().contains("mounted proc"));
    let host_now = fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert_eq!(
        mounted(&host_now, "/run"),
        mounted(&host_mounts, "/run"),
        "the host's mounts are untouched"
    );
}

/// A process that double-forks away from its job is re-parented to process
/// 1, which reaps it when it exits: no zombie is left in the namespace.
#[test]
fn orphans_are_reaped() {
    let mut s = SystemInit::new("reap");
    s.write_job(
        "daemonish",
        "start on startup\ntask\nexec @BIN@/forker --forks 2 --pidfile @OUT@/orphan --sleep 1\n",
    );
    s.start(&[]);
    let ns_pid: i32 = s.wait_out("orphan").trim().parse().unwrap();
    let host = s
        .host_pid(ns_pid)
        .expect("the orphan is alive when it writes its pid");
    let init = s.pid();
    s.wait_for("the orphan to be re-parented to process 1", |_| {
        upshot_tests::proc_info(host).is_none_or(|p| p.ppid == init)
    });
    // It exits by itself a second later; gone entirely means reaped.
    s.wait_for("the orphan to be reaped", |_| {
        upshot_tests::proc_info(host).is_none()
    });
    let zombies: Vec<_> = s.processes().into_iter().filter(|p| p.state == 'Z').collect();
    assert!(zombies.is_empty(), "zombies left: {zombies:?}");
}

/// SIGINT (Ctrl-Alt-Del), SIGPWR and SIGWINCH to process 1 become the
/// events `control-alt-delete`, `power-status-changed` and
/// `keyboard-request`.
#[test]
fn signals_become_events() {
    let mut s = SystemInit::new("signals");
    for (job, event) in [
        ("cad", "control-alt-delete"),
        ("power", "power-status-changed"),
        ("kbd", "keyboard-request"),
    ] {
        s.write_job(
            job,
            &format!("start on {event}\ntask\nexec @BIN@/recorder --out @OUT@/{job} --exit 0\n"),
        );
    }
    s.write_job("svc", "start on startup\nexec @BIN@/recorder --out @OUT@/svc\n");
    s.start(&[]);
    s.wait_record("svc");
    for (signal, job, event) in [
        (Signal::SIGINT, "cad", "control-alt-delete"),
        (Signal::SIGPWR, "power", "power-status-changed"),
        (Signal::SIGWINCH, "kbd", "keyboard-request"),
    ] {
        assert!(s.read_out(job).is_none());
        s.signal(signal);
        let rec = s.wait_record(job);
        assert_eq!(rec.var("UPSTART_EVENTS").as_deref(), Some(event), "{signal}");
    }
    // Still serving.
    assert!(
        s.initctl(&["status", "svc"])
            .ok()
            .starts_with("svc start/running")
    );
}

/// `initctl poweroff`: `shutdown TYPE=poweroff` and `runlevel RUNLEVEL=0`
/// are emitted (a `stop on runlevel [016]` job is stopped by it and sees
/// it, a `start on shutdown` task runs), every job's pre-stop and post-stop
/// run, a stray process outside any job gets SIGTERM, `initctl` exits 0,
/// and the namespace's init exits 0, leaving nothing behind.
#[test]
fn poweroff_stops_every_job_and_exits_0() {
    let mut s = SystemInit::new("poweroff");
    s.write_job(
        "svc",
        "start on startup\nkill timeout 2\n\
         pre-stop exec @BIN@/recorder --out @OUT@/svc-pre-stop --exit 0\n\
         post-stop exec @BIN@/recorder --out @OUT@/svc-post-stop --exit 0\n\
         exec @BIN@/recorder --out @OUT@/svc\n",
    );
    s.write_job(
        "levelled",
        "start on startup\nstop on runlevel [016]\n\
         pre-stop exec @BIN@/recorder --out @OUT@/levelled-pre-stop --exit 0\n\
         exec @BIN@/recorder --out @OUT@/levelled\n",
    );
    s.write_job(
        "on-shutdown",
        "start on shutdown\ntask\nexec @BIN@/recorder --out @OUT@/on-shutdown --exit 0\n",
    );
    // A process outside any job: no job environment, its own session, its
    // parent gone.
    s.write_job(
        "stray",
        "start on startup\ntask\n\
         exec /usr/bin/env -i @BIN@/forker --forks 1 --setsid --pidfile @OUT@/stray --term-file @OUT@/stray-term\n",
    );
    s.start(&[]);
    s.wait_record("svc");
    s.wait_record("levelled");
    s.wait_out("stray");
    let stray_ns: i32 = s.read_out("stray").unwrap().trim().parse().unwrap();
    let stray = s.host_pid(stray_ns).expect("the stray process");
    assert!(
        upshot_tests::proc_info(stray).is_some_and(|p| p.state != 'Z'),
        "the stray outlives its task"
    );

    let asked = Instant::now();
    let out = s.initctl(&["poweroff"]);
    assert_eq!(out.ok(), "", "{out}");
    // Kill timeout 2 s, then the processes left: well within this.
    let status = s.wait_exit(Duration::from_secs(15));
    let took = asked.elapsed();
    assert_eq!(status.code(), Some(0), "{status}\n{}", s.daemon_log());

    let pre = s.wait_record("svc-pre-stop");
    assert_eq!(pre.var("UPSTART_JOB").as_deref(), Some("svc"));
    s.wait_record("svc-post-stop");
    let levelled = s.wait_record("levelled-pre-stop");
    assert_eq!(levelled.var("UPSTART_STOP_EVENTS").as_deref(), Some("runlevel"));
    assert_eq!(levelled.var("RUNLEVEL").as_deref(), Some("0"));
    assert_eq!(levelled.var("PREVLEVEL").as_deref(), Some("N"));
    let on_shutdown = s.wait_record("on-shutdown");
    assert_eq!(on_shutdown.var("TYPE").as_deref(), Some("poweroff"));
    assert_eq!(s.wait_out("stray-term").trim(), stray_ns.to_string());
    assert!(upshot_tests::proc_info(stray).is_none(), "the stray is gone");
    let log = s.daemon_log();
    assert!(log.contains("system shutdown (poweroff)"), "{log}");
    assert!(
        log.contains("poweroff: process 1 of a PID namespace exits"),
        "{log}"
    );
    assert!(!log.contains("failed to stop"), "{log}");
    eprintln!("poweroff took {took:?}");
}

/// A process that ignores SIGTERM, left when the jobs are stopped, gets
/// SIGKILL once the grace period after SIGTERM is over; the shutdown goes
/// on and the namespace's init exits 0.
#[test]
fn poweroff_kills_what_ignores_sigterm() {
    let mut s = SystemInit::new("poweroff-kill");
    // Started by a task and left behind by it (a child of init once the
    // shell is gone), not part of any running job.
    s.write_job(
        "leaver",
        "start on startup\ntask\nexec sh -c '@BIN@/term-ignorer --ready @OUT@/ignorer & exit 0'\n",
    );
    s.start(&[]);
    let ns_pid: i32 = s.wait_out("ignorer").trim().parse().unwrap();
    let ignorer = s.host_pid(ns_pid).expect("the term-ignorer");
    let out = s.initctl(&["poweroff"]);
    assert_eq!(out.ok(), "", "{out}");
    // TERM grace 5 s, then SIGKILL.
    let status = s.wait_exit(Duration::from_secs(30));
    assert_eq!(status.code(), Some(0), "{status}\n{}", s.daemon_log());
    let log = s.daemon_log();
    assert!(log.contains("sending SIGTERM to the processes left"), "{log}");
    assert!(
        log.contains("sending SIGKILL to the processes alive 5 s after SIGTERM"),
        "{log}"
    );
    assert!(!log.contains("survived SIGKILL"), "{log}");
    assert!(
        upshot_tests::proc_info(ignorer).is_none(),
        "the term-ignorer is gone"
    );
}

/// The `reboot` link: `shutdown TYPE=reboot`, `runlevel RUNLEVEL=6`, exit 0.
#[test]
fn reboot_link_emits_runlevel_6_and_ends_the_namespace() {
    let mut s = SystemInit::new("reboot");
    s.write_job(
        "rc",
        "start on runlevel [06]\ntask\nexec @BIN@/recorder --out @OUT@/rc --exit 0\n",
    );
    s.write_job("svc", "start on startup\nexec @BIN@/recorder --out @OUT@/svc\n");
    s.start(&[]);
    s.wait_record("svc");
    let reboot = s.link("reboot");
    let out = s.run_inside(&reboot, &[]);
    assert_eq!(out.ok(), "", "{out}");
    assert_eq!(s.wait_exit(Duration::from_secs(15)).code(), Some(0));
    let rc = s.wait_record("rc");
    assert_eq!(rc.var("RUNLEVEL").as_deref(), Some("6"));
    assert!(s.daemon_log().contains("system shutdown (reboot)"));
}

/// `shutdown -H now` halts (in a namespace: exits 0); a time other than
/// `now` is refused before anything is asked of the daemon.
#[test]
fn shutdown_link_halts_now_only() {
    let mut s = SystemInit::new("halt");
    s.write_job(
        "on-shutdown",
        "start on shutdown\ntask\nexec @BIN@/recorder --out @OUT@/on-shutdown --exit 0\n",
    );
    s.start(&[]);
    s.wait_log("process 1 of a PID namespace");
    let shutdown = s.link("shutdown");
    let later = s.run_inside(&shutdown, &["-h", "+5"]);
    assert_eq!(
        later.failed(),
        "shutdown: only `now' is supported as the time\nTry `shutdown --help' for more information.\n"
    );
    let out = s.run_inside(&shutdown, &["-H", "now"]);
    assert_eq!(out.ok(), "", "{out}");
    assert_eq!(s.wait_exit(Duration::from_secs(15)).code(), Some(0));
    assert_eq!(s.wait_record("on-shutdown").var("TYPE").as_deref(), Some("halt"));
}

/// SIGTERM to the process 1 of a namespace (what container managers send)
/// shuts it down as poweroff does.
#[test]
fn sigterm_in_a_namespace_powers_off() {
    let mut s = SystemInit::new("sigterm");
    s.write_job(
        "svc",
        "start on startup\npost-stop exec @BIN@/recorder --out @OUT@/post-stop --exit 0\n\
         exec @BIN@/recorder --out @OUT@/svc\n",
    );
    s.start(&[]);
    s.wait_record("svc");
    s.signal(Signal::SIGTERM);
    assert_eq!(s.wait_exit(Duration::from_secs(15)).code(), Some(0));
    s.wait_record("post-stop");
}

/// A panic inside the main loop (injected with the test aid
/// `--inject-panic-on-event`) is logged and survived, whether it comes
/// from a signal (SIGINT → `control-alt-delete`) or from a D-Bus call
/// (`initctl emit control-alt-delete`, which fails with an error): the
/// daemon still answers `initctl` and still starts jobs.
#[test]
fn a_panic_in_the_main_loop_is_survived() {
    let mut s = SystemInit::new("panic");
    s.write_job("svc", "start on startup\nexec @BIN@/recorder --out @OUT@/svc\n");
    s.write_job(
        "hello",
        "start on hello\ntask\nexec @BIN@/recorder --out @OUT@/hello --exit 0\n",
    );
    s.start(&["--inject-panic-on-event", "control-alt-delete"]);
    s.wait_record("svc");

    s.signal(Signal::SIGINT);
    s.wait_log("the main loop recovered from an internal error");
    assert!(
        s.daemon_log()
            .contains("injected panic on event control-alt-delete")
    );

    let failed = s.initctl(&["emit", "control-alt-delete"]);
    assert!(failed.failed().contains("Internal error in init"), "{failed}");

    assert!(s.initctl(&["list"]).ok().contains("svc start/running"));
    let out = s.initctl(&["emit", "hello"]);
    assert!(out.success(), "{out}");
    assert_eq!(
        s.wait_record("hello").var("UPSTART_EVENTS").as_deref(),
        Some("hello")
    );
    assert_eq!(SystemInit::ns_pid(s.pid()), Some(1));
    assert!(s.try_status().is_none(), "the daemon is still running");
}

/// A panic while starting up (here in the `startup` event) does not end
/// process 1 either: it logs it and serves.
#[test]
fn a_panic_at_start_up_is_survived() {
    let mut s = SystemInit::new("panic-startup");
    s.write_job("svc", "start on startup\nexec @BIN@/recorder --out @OUT@/svc\n");
    s.start(&["--inject-panic-on-event", "startup"]);
    s.wait_log("start-up met an internal error");
    let out = s.initctl(&["list"]);
    assert_eq!(out.ok(), "svc stop/waiting\n", "{out}");
    assert!(s.initctl(&["start", "svc"]).ok().starts_with("svc start/running"));
    s.wait_record("svc");
}

/// Without its D-Bus socket (another init holds the address in the same
/// network namespace) the system init logs it and goes on: it runs its
/// jobs and still shuts down on SIGTERM.
#[test]
fn without_d_bus_it_goes_on() {
    let mut first = SystemInit::new("dbus-first");
    first.start(&[]);
    first.wait_log("process 1 of a PID namespace");
    let mut s = SystemInit::new("dbus-second");
    s.write_job("svc", "start on startup\nexec @BIN@/recorder --out @OUT@/svc\n");
    s.start_beside(&first, &[]);
    s.wait_log("running without D-Bus control");
    s.wait_record("svc");
    // The address is still the first one's.
    assert!(first.initctl(&["list"]).success());
    s.signal(Signal::SIGTERM);
    assert_eq!(s.wait_exit(Duration::from_secs(15)).code(), Some(0));
}

/// A panic in the middle of a shutdown does not stop it: the call that
/// asked for it fails, but every process still goes and the namespace's
/// init exits 0.
#[test]
fn a_panic_during_shutdown_does_not_stop_it() {
    let mut s = SystemInit::new("panic-shutdown");
    s.write_job(
        "svc",
        "start on startup\nkill timeout 1\nexec @BIN@/forker --pidfile @OUT@/svc --term-file @OUT@/svc-term\n",
    );
    s.start(&["--inject-panic-on-event", "shutdown"]);
    s.wait_out("svc");
    let out = s.initctl(&["poweroff"]);
    assert!(out.failed().contains("Internal error in init"), "{out}");
    assert_eq!(s.wait_exit(Duration::from_secs(15)).code(), Some(0));
    s.wait_out("svc-term");
    assert!(s.daemon_log().contains("failed to stop"));
}

/// A session init has no system to shut down: `Shutdown` is refused.
#[test]
fn a_session_init_refuses_to_shut_down() {
    let mut s = Session::new("no-shutdown");
    s.start(&[]);
    let address = s.wait_address();
    let out = std::process::Command::new(initctl_binary())
        .arg("poweroff")
        .env_clear()
        .env("PATH", upshot_tests::PATH)
        .env("UPSTART_SESSION", &address)
        .output()
        .expect("run initctl");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "initctl: A session init does not shut the system down (EndSession ends the session)\n"
    );
    assert!(s.try_status().is_none());
}

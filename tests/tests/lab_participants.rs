//! The participants of `conf/lab/` (BOSS/SkyNET style, issue 7) with the
//! `participant` stand-in: many instances of one job, started at boot from
//! a list, run as the configured user and group (`participant.override`),
//! each with its own log, respawned, stopped after pre-stop with time to
//! tidy up; failures reported by `lab-failure.conf` with RESULT, PROCESS
//! and EXIT_STATUS/EXIT_SIGNAL; and the same files in a user's session
//! (local running mode).

use std::fs;
use std::os::unix::fs::PermissionsExt;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use upshot_tests::{Record, Session, SystemInit, account, initctl_binary, lab_job};

const EXEC: (&str, &str) = (
    "/usr/bin/skynet-participant --name \"$NAME\" --out /var/lib/skynet/participants",
    "@BIN@/participant --name \"$NAME\" --out @OUT@",
);

fn signal(pid: i64, sig: Signal) {
    kill(Pid::from_raw(pid as i32), sig).unwrap();
}

/// As process 1: `participants` starts one instance per listed name at
/// boot; each runs as the override's user and group with its own log; a
/// crash is respawned; stopping one runs pre-stop and lets it tidy up.
#[test]
fn participants_start_at_boot_as_their_user_and_group() {
    let mut s = SystemInit::new("lab-participants");
    let out = s.out("x").parent().unwrap().to_path_buf();
    fs::set_permissions(&out, fs::Permissions::from_mode(0o1777)).unwrap();
    let list = s.root().join("participants.list");
    fs::write(&list, "# build farm\nalpha\n\nbeta\n").unwrap();
    s.write_job("participant", &lab_job("participant.conf", &[EXEC]));
    let user = account();
    let nogroup = nix::unistd::Group::from_name("nogroup")
        .unwrap()
        .expect("group nogroup");
    fs::write(
        s.conf_dir().join("participant.override"),
        lab_job(
            "participant.override",
            &[
                ("setuid skynet", &format!("setuid {}", user.name)),
                ("setgid skynet", "setgid nogroup"),
            ],
        ),
    )
    .unwrap();
    s.write_job(
        "participants",
        &lab_job(
            "participants.conf",
            &[
                ("/etc/skynet/participants", list.to_str().unwrap()),
                ("initctl start", &format!("{} start", initctl_binary().display())),
            ],
        ),
    );
    s.start(&[]);
    s.initctl(&["emit", "--no-wait", "filesystem"]).ok();
    s.initctl(&["emit", "net-device-up", "IFACE=eth0"]).ok();
    let alpha = s.wait_record("alpha");
    let beta = s.wait_record("beta");
    for r in [&alpha, &beta] {
        assert_eq!(r.num("uid"), i64::from(user.uid), "setuid");
        assert_eq!(r.num("euid"), i64::from(user.uid), "setuid");
        assert_eq!(r.num("gid"), i64::from(nogroup.gid.as_raw()), "setgid");
        assert_eq!(r.num("egid"), i64::from(nogroup.gid.as_raw()), "setgid");
    }
    let list = s.initctl(&["list"]);
    for name in ["alpha", "beta"] {
        assert!(
            list.ok()
                .contains(&format!("participant ({name}) start/running, process ")),
            "{list}"
        );
        s.wait_for("the per-instance log", |s| {
            fs::read_to_string(s.log_dir().join(format!("participant-{name}.log")))
                .is_ok_and(|t| t.contains(&format!("participant {name} running as uid {}", user.uid)))
        });
    }

    // A crash is respawned (as the same user).
    let alpha_host = s.host_pid(alpha.num("pid") as i32).unwrap();
    signal(i64::from(alpha_host), Signal::SIGUSR2);
    let again = s.wait_for_value("alpha respawned", |s| {
        fs::read_to_string(s.out("alpha"))
            .ok()
            .map(|t| Record::parse(&t))
            .filter(|r| r.num("pid") != alpha.num("pid"))
    });
    assert_eq!(again.num("uid"), i64::from(user.uid));
    s.wait_log("participant (alpha) main process ended, respawning");

    // Stopping one runs pre-stop and lets it tidy up; the other runs on.
    s.initctl(&["stop", "participant", "NAME=beta"]).ok();
    assert_eq!(s.wait_out("beta.tidy"), format!("pid {}\n", beta.num("pid")));
    let log = fs::read_to_string(s.log_dir().join("participant-beta.log")).unwrap();
    assert!(log.contains("stopping participant beta"), "{log}");
    let status = s.initctl(&["status", "participant", "NAME=alpha"]);
    assert!(
        status
            .ok()
            .starts_with("participant (alpha) start/running, process "),
        "{status}"
    );
}

/// `init --user` with the same files (no override: the session's user):
/// instances started by hand; a participant failing without respawn (the
/// respawn stanzas removed for the test) and one killed by a signal are
/// each reported once with their instance, PROCESS=main and EXIT_STATUS
/// or EXIT_SIGNAL.
#[test]
fn local_running_mode_and_failure_reports() {
    let mut s = Session::new("lab-local");
    s.write_job(
        "participant",
        &lab_job(
            "participant.conf",
            &[EXEC, ("respawn\nrespawn limit 10 300\n", "")],
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
    for name in ["one", "two", "three"] {
        s.initctl(&["start", "participant", &format!("NAME={name}")]).ok();
    }
    let user = s.account().clone();
    let one = s.wait_record("one");
    let two = s.wait_record("two");
    let three = s.wait_record("three");
    assert_eq!(one.num("uid"), i64::from(user.uid));
    assert_eq!(one.num("gid"), i64::from(user.gid));
    signal(one.num("pid"), Signal::SIGUSR2);
    signal(two.num("pid"), Signal::SIGKILL);
    let report = s.wait_for_value("two reports", |s| {
        s.read_out("failures").filter(|t| t.lines().count() == 2)
    });
    assert!(
        report.contains(" job=participant instance=one process=main exit_status=7 exit_signal=\n"),
        "{report}"
    );
    assert!(
        report.contains(" job=participant instance=two process=main exit_status= exit_signal=KILL\n"),
        "{report}"
    );
    // A clean stop is no failure.
    s.initctl(&["stop", "participant", "NAME=three"]).ok();
    assert_eq!(s.wait_out("three.tidy"), format!("pid {}\n", three.num("pid")));
    s.wait_for("three stopped", |s| {
        !s.initctl(&["status", "participant", "NAME=three"]).success()
    });
    assert_eq!(s.read_out("failures").unwrap().lines().count(), 2);
}

/// Shutdown (SIGTERM to the session init) waits for the participants to
/// tidy up: each gets SIGTERM, takes its time (here 1.5 s, within `kill
/// timeout 20`), writes its tidy file, and only then does the daemon exit,
/// with nothing left and nothing killed.
#[test]
fn shutdown_waits_for_participants_to_tidy_up() {
    let mut s = Session::new("lab-shutdown");
    let exec = (
        EXEC.0,
        "@BIN@/participant --name \"$NAME\" --out @OUT@ --tidy-ms 1500",
    );
    s.write_job("participant", &lab_job("participant.conf", &[exec]));
    s.start(&[]);
    s.wait_address();
    let mut pids = Vec::new();
    for name in ["a", "b"] {
        s.initctl(&["start", "participant", &format!("NAME={name}")]).ok();
        pids.push(s.wait_record(name).num("pid"));
    }
    assert_eq!(s.terminate(std::time::Duration::from_secs(30)), 0);
    for (name, pid) in ["a", "b"].iter().zip(&pids) {
        assert_eq!(
            s.read_out(&format!("{name}.tidy")),
            Some(format!("pid {pid}\n")),
            "{name} did not tidy up before the daemon exited"
        );
        assert!(!upshot_tests::alive(*pid as i32));
    }
    let log = s.daemon_log();
    assert!(
        !log.contains("SIGKILL") && !log.contains("failed to stop"),
        "{log}"
    );
}

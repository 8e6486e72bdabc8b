//! The forking framework services of `conf/lab/` (Sony AVE style, issue 7)
//! under `init` as process 1 of a PID namespace, with the `labd` stand-in:
//! started at boot on `filesystem` and `net-device-up IFACE!=lo`, demoted
//! to an unprivileged user, tracked through its double fork
//! (`expect daemon`), kept `start/running` across a `--restart` handover
//! with a lingering client, stopped with everything it started, and
//! stopped cleanly by `labd --stop` run by hand (no respawn).

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use upshot_tests::{Record, SystemInit, account, bin_dir, lab_job};

/// A system init with `conf/lab/ave-broker.conf` running `labd` (config
/// `ROOT/lab/broker.cfg`: PID file, socket and records in `ROOT/lab`, a
/// directory every user may write, demoting to the test user).
fn broker(name: &str) -> (SystemInit, PathBuf) {
    let mut s = SystemInit::new(name);
    let lab = s.root().join("lab");
    fs::create_dir_all(&lab).unwrap();
    fs::set_permissions(&lab, fs::Permissions::from_mode(0o1777)).unwrap();
    let cfg = lab.join("broker.cfg");
    fs::write(
        &cfg,
        format!(
            "pidfile {0}/ave-broker.pid\nsocket {0}/broker.sock\nuser {1}\nout {0}\n",
            lab.display(),
            account().name
        ),
    )
    .unwrap();
    let exec = format!(
        "{}/labd --start --force --config {}",
        bin_dir().display(),
        cfg.display()
    );
    s.write_job(
        "ave-broker",
        &lab_job(
            "ave-broker.conf",
            &[
                ("/usr/bin/ave-broker --start --force", &exec),
                (
                    "/var/tmp/ave-broker.pid",
                    &format!("{}/ave-broker.pid", lab.display()),
                ),
            ],
        ),
    );
    s.start(&[]);
    (s, lab)
}

fn record(path: &Path) -> Option<Record> {
    fs::read_to_string(path).ok().map(|t| Record::parse(&t))
}

/// `JOB start/running, process PID` → PID.
fn running_pid(status: &str) -> Option<i32> {
    status
        .trim()
        .rsplit_once("start/running, process ")?
        .1
        .parse()
        .ok()
}

fn ping(stream: &mut UnixStream) -> String {
    stream.write_all(b"ping\n").unwrap();
    let mut line = String::new();
    BufReader::new(&*stream).read_line(&mut line).unwrap();
    line
}

/// Boot-time start on the events (not on `lo`), the demoted daemon is the
/// tracked pid; `--restart` with a client still connected keeps the job
/// running (old pid until the client leaves, then the new one, never a
/// respawn); `initctl stop` stops the new instance.
#[test]
fn framework_service_starts_at_boot_and_survives_a_restart_handover() {
    let (mut s, lab) = broker("lab-broker");
    let cfg = lab.join("broker.cfg");
    s.initctl(&["emit", "--no-wait", "filesystem"]).ok();
    s.initctl(&["emit", "--no-wait", "net-device-up", "IFACE=lo"])
        .ok();
    let status = s.initctl(&["status", "ave-broker"]);
    assert_eq!(status.ok(), "ave-broker stop/waiting\n", "not started for lo");
    s.initctl(&["emit", "net-device-up", "IFACE=eth0"]).ok();
    let first = s.wait_for_value("the broker to serve", |_| record(&lab.join("labd-1")));
    let acct = account();
    assert_eq!(first.num("uid"), i64::from(acct.uid), "demoted");
    assert_eq!(first.num("gid"), i64::from(acct.gid), "demoted");
    let pid1 = first.num("pid") as i32;
    let status = s.wait_for_value("the job to track the daemon", |s| {
        running_pid(s.initctl(&["status", "ave-broker"]).ok()).filter(|p| *p == pid1)
    });
    assert_eq!(status, pid1);

    let mut client = UnixStream::connect(lab.join("broker.sock")).unwrap();
    assert_eq!(ping(&mut client), format!("pong {pid1} 1 1\n"));
    let restart = s.run_inside(
        &bin_dir().join("labd"),
        &["--restart", "--config", cfg.to_str().unwrap()],
    );
    let second = record(&lab.join("labd-2")).expect("the new instance serves before --restart returns");
    let pid2 = second.num("pid") as i32;
    assert_eq!(restart.ok(), format!("labd: restarted {pid2}\n"));
    assert_eq!(second.num("state"), 1, "the state was handed over");
    assert_eq!(second.num("uid"), i64::from(acct.uid));
    assert_eq!(
        fs::read_to_string(lab.join("ave-broker.pid")).unwrap(),
        format!("{pid2}\n")
    );
    // The old instance still serves its client; the job still tracks it.
    assert_eq!(ping(&mut client), format!("pong {pid1} 1 2\n"));
    assert_eq!(running_pid(s.initctl(&["status", "ave-broker"]).ok()), Some(pid1));
    drop(client);
    s.wait_for_value("the old instance to leave", |_| record(&lab.join("labd-1.exit")));
    s.wait_for_value("the job to track the new instance", |s| {
        running_pid(s.initctl(&["status", "ave-broker"]).ok()).filter(|p| *p == pid2)
    });
    let log = s.daemon_log();
    assert!(
        log.contains(&format!(
            "ave-broker: main process ({pid1}) ended; adopting {pid2} from its pid file"
        )),
        "{log}"
    );
    assert!(!log.contains("respawning"), "{log}");
    assert!(
        !log.contains("ave-broker state changed from running to stopping"),
        "{log}"
    );
    let mut client = UnixStream::connect(lab.join("broker.sock")).unwrap();
    assert_eq!(ping(&mut client), format!("pong {pid2} 2 2\n"));
    drop(client);

    s.initctl(&["stop", "ave-broker"]).ok();
    let exit = s.wait_for_value("the new instance to stop", |_| {
        fs::read_to_string(lab.join("labd-2.exit")).ok()
    });
    assert_eq!(exit, format!("pid {pid2} stopped\n"));
    assert_eq!(
        s.initctl(&["status", "ave-broker"]).ok(),
        "ave-broker stop/waiting\n"
    );
    assert!(!lab.join("ave-broker.pid").exists());
    let left: Vec<_> = s.processes().into_iter().filter(|p| p.comm == "labd").collect();
    assert!(left.is_empty(), "nothing of the job is left: {left:?}");

    // `labd --stop` by hand: a clean stop/waiting, no respawn.
    fs::remove_file(lab.join("labd-1")).unwrap();
    s.initctl(&["start", "ave-broker"]).ok();
    let third = s.wait_for_value("the broker to serve again", |_| record(&lab.join("labd-1")));
    let stop = s.run_inside(
        &bin_dir().join("labd"),
        &["--stop", "--config", cfg.to_str().unwrap()],
    );
    assert_eq!(stop.ok(), format!("labd: stopped {}\n", third.num("pid")));
    s.wait_for("stop/waiting", |s| {
        s.initctl(&["status", "ave-broker"]).ok() == "ave-broker stop/waiting\n"
    });
    let log = s.daemon_log();
    assert!(!log.contains("respawning"), "{log}");
}

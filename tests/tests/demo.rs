//! The README's VM-less command, `scripts/demo`, works as root and as an
//! unprivileged user (with the binaries this test run built, instead of
//! its own release build).

use std::path::Path;
use std::process::Command;

use upshot_tests::{account, init_binary, initctl_binary};

fn demo(as_user: bool) -> String {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let bin = init_binary().parent().unwrap();
    assert_eq!(initctl_binary().parent().unwrap(), bin);
    let mut cmd = if as_user {
        let a = account();
        let mut c = Command::new("setpriv");
        c.arg(format!("--reuid={}", a.uid))
            .arg(format!("--regid={}", a.gid))
            .arg("--clear-groups")
            .arg("--reset-env")
            .arg("env");
        c
    } else {
        Command::new("env")
    };
    let out = cmd
        .arg(format!("UPSHOT_BIN={}", bin.display()))
        .arg("TMPDIR=/tmp")
        .arg("sh")
        .arg(workspace.join("scripts/demo"))
        .output()
        .expect("run scripts/demo");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "demo failed: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn check(out: &str) {
    for line in [
        "$ initctl start worker N=1",
        "$ initctl emit hello NAME=world",
        "hello, world",
        "ticker is up (started by started JOB=ticker)",
        "worker stop/waiting",
        "ticker-watch\n  start on started ticker",
    ] {
        assert!(
            out.contains(line),
            "{line:?} missing from the demo's output:\n{out}"
        );
    }
    assert!(out.contains("worker (1) start/running, process "), "{out}");
    assert!(out.contains("ticker start/running, process "), "{out}");
}

#[test]
fn demo_as_root() {
    check(&demo(false));
}

#[test]
fn demo_as_an_unprivileged_user() {
    check(&demo(true));
}

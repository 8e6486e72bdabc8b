//! A session init on the user's session bus (spec §3.1, §5): after
//! `NotifyDBusAddress` it owns `com.ubuntu.Upstart` on that bus and serves
//! the API there; when the bus goes away and comes back at the same
//! address, SIGUSR1 connects it again.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

use nix::sys::signal::Signal;
use upshot_tests::{Account, Session};

/// `dbus-daemon --session` for the test user, listening on `socket`.
fn start_bus(account: &Account, socket: &Path) -> Child {
    let config = socket.with_extension("conf");
    std::fs::write(
        &config,
        format!(
            "<!DOCTYPE busconfig PUBLIC \"-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN\"
 \"http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd\">
<busconfig>
  <type>session</type>
  <listen>unix:path={}</listen>
  <auth>EXTERNAL</auth>
  <policy context=\"default\">
    <allow send_destination=\"*\" eavesdrop=\"true\"/>
    <allow eavesdrop=\"true\"/>
    <allow own=\"*\"/>
  </policy>
</busconfig>
",
            socket.display()
        ),
    )
    .expect("write the bus configuration");
    let _ = std::fs::remove_file(socket);
    let child = as_user(account, "dbus-daemon")
        .arg(format!("--config-file={}", config.display()))
        .arg("--nofork")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start dbus-daemon (package dbus-daemon)");
    upshot_tests::wait_for("the bus socket", upshot_tests::TIMEOUT, || socket.exists());
    child
}

fn as_user(account: &Account, program: &str) -> Command {
    let mut cmd = Command::new("setpriv");
    cmd.arg(format!("--reuid={}", account.uid))
        .arg(format!("--regid={}", account.gid))
        .arg("--clear-groups")
        .arg(program);
    cmd
}

fn text(out: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `GetJobByName svc` on the bus, as the test user.
fn call_on_bus(account: &Account, bus: &str) -> Output {
    as_user(account, "busctl")
        .arg(format!("--address={bus}"))
        .args([
            "call",
            "com.ubuntu.Upstart",
            "/com/ubuntu/Upstart",
            "com.ubuntu.Upstart0_6",
            "GetJobByName",
            "s",
            "svc",
        ])
        .output()
        .expect("run busctl")
}

#[test]
fn notify_dbus_address_then_sigusr1_reconnects() {
    let mut s = Session::new("session-bus");
    s.write_job("svc", "start on startup\nexec sleep 1000\n");
    s.start(&[]);
    let address = format!(
        "unix:abstract=/com/ubuntu/upstart-session/{}/{}",
        s.account().uid,
        s.pid()
    );
    let account = s.account().clone();
    let socket = s.out("bus.socket");
    let bus_address = format!("unix:path={}", socket.display());
    let mut bus = start_bus(&account, &socket);

    // Nothing owns the name before we say where the bus is.
    let before = call_on_bus(&account, &bus_address);
    assert!(!before.status.success(), "{}", text(&before));

    let notify = Command::new("gdbus")
        .args(["call", "--address", &address, "--dest", "com.ubuntu.Upstart"])
        .args(["--object-path", "/com/ubuntu/Upstart"])
        .args([
            "--method",
            "com.ubuntu.Upstart0_6.NotifyDBusAddress",
            &bus_address,
        ])
        .output()
        .expect("run gdbus");
    assert!(notify.status.success(), "{}", text(&notify));
    assert_eq!(String::from_utf8_lossy(&notify.stdout).trim(), "()");

    let expected = "o \"/com/ubuntu/Upstart/jobs/svc\"";
    let mut last = String::new();
    s.wait_for("the API on the session bus", |_| {
        let out = call_on_bus(&account, &bus_address);
        last = text(&out);
        String::from_utf8_lossy(&out.stdout).trim() == expected
    });

    // The bus goes away and comes back at the same address.
    let _ = bus.kill();
    let _ = bus.wait();
    s.wait_log("disconnected from the bus");
    let mut bus = start_bus(&account, &socket);
    let gone = call_on_bus(&account, &bus_address);
    assert!(!gone.status.success(), "{}", text(&gone));
    s.signal(Signal::SIGUSR1);
    s.wait_for("the API back on the bus after SIGUSR1", |_| {
        let out = call_on_bus(&account, &bus_address);
        last = text(&out);
        String::from_utf8_lossy(&out.stdout).trim() == expected
    });
    assert!(!last.is_empty());
    let _ = bus.kill();
    let _ = bus.wait();
}

//! A system init on the system bus (spec §3.1): it owns
//! `com.ubuntu.Upstart` on the bus `DBUS_SYSTEM_BUS_ADDRESS` names, where
//! any user may read (`GetJobByName`) but only root may change anything.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

use upshot_tests::SystemInit;

/// A private `dbus-daemon` of the system type: root may own
/// `com.ubuntu.Upstart`, everyone may call and receive.
fn start_bus(dir: &Path) -> (Child, String) {
    let socket = dir.join("system_bus_socket");
    let config = dir.join("bus.conf");
    std::fs::write(
        &config,
        format!(
            r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path={}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <allow send_destination="*"/>
    <allow receive_sender="*"/>
    <allow send_type="method_call"/>
    <allow send_type="method_return"/>
    <allow send_type="error"/>
    <allow send_type="signal"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
  </policy>
  <policy user="root">
    <allow own="com.ubuntu.Upstart"/>
  </policy>
</busconfig>
"#,
            socket.display()
        ),
    )
    .expect("write the bus configuration");
    let child = Command::new("dbus-daemon")
        .arg(format!("--config-file={}", config.display()))
        .arg("--nofork")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start dbus-daemon");
    upshot_tests::wait_for("the bus socket", upshot_tests::TIMEOUT, || socket.exists());
    (child, format!("unix:path={}", socket.display()))
}

fn busctl(bus: &str, as_nobody: bool, args: &[&str]) -> Output {
    let mut cmd = if as_nobody {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "busctl"]);
        c
    } else {
        Command::new("busctl")
    };
    cmd.arg(format!("--address={bus}"))
        .args(["call", "com.ubuntu.Upstart"])
        .args(args)
        .output()
        .expect("run busctl")
}

fn text(out: &Output) -> String {
    format!(
        "{:?}\nstdout: {}stderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn the_system_bus_serves_readers_and_root() {
    let mut sys = SystemInit::new("system-bus");
    // The bus socket must be reachable by `nobody`.
    let dir = std::env::temp_dir().join(format!("upshot-system-bus-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (mut bus, address) = start_bus(&dir);
    sys.write_job("svc", "exec sleep 1000\n");
    sys.set_env("DBUS_SYSTEM_BUS_ADDRESS", &address);
    sys.start(&[]);

    let get = [
        "/com/ubuntu/Upstart",
        "com.ubuntu.Upstart0_6",
        "GetJobByName",
        "s",
        "svc",
    ];
    let mut last = String::new();
    sys.wait_for("com.ubuntu.Upstart on the system bus", |_| {
        let out = busctl(&address, false, &get);
        last = text(&out);
        String::from_utf8_lossy(&out.stdout).trim() == "o \"/com/ubuntu/Upstart/jobs/svc\""
    });
    // Anyone may read.
    let read = busctl(&address, true, &get);
    assert_eq!(
        String::from_utf8_lossy(&read.stdout).trim(),
        "o \"/com/ubuntu/Upstart/jobs/svc\"",
        "{}",
        text(&read)
    );
    // Only root may change anything.
    let start = [
        "/com/ubuntu/Upstart/jobs/svc",
        "com.ubuntu.Upstart0_6.Job",
        "Start",
        "asb",
        "0",
        "true",
    ];
    let denied = busctl(&address, true, &start);
    assert!(!denied.status.success(), "{}", text(&denied));
    assert_eq!(
        String::from_utf8_lossy(&denied.stderr).trim(),
        "Call failed: You do not have permission to modify job: svc",
        "{}",
        text(&denied)
    );
    let started = busctl(&address, false, &start);
    assert_eq!(
        String::from_utf8_lossy(&started.stdout).trim(),
        "o \"/com/ubuntu/Upstart/jobs/svc/_\"",
        "{}",
        text(&started)
    );
    assert!(!last.is_empty());
    let _ = bus.kill();
    let _ = bus.wait();
    let _ = std::fs::remove_dir_all(&dir);
}

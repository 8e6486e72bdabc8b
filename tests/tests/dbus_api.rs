//! Upstart's D-Bus API (spec §3) as a session init serves it on its
//! private socket, driven by real D-Bus clients nobody here wrote:
//! `busctl`, `gdbus`, `dbus-send` and `dbus-monitor`, run as root (which,
//! like the daemon's own user, may connect).
//!
//! Replies are compared whole where they are deterministic: `busctl`
//! prints a reply as `SIGNATURE VALUE…`, `gdbus` as a GVariant tuple,
//! `dbus-send` errors as `Error NAME: MESSAGE` (so error names are checked
//! with `dbus-send`; `busctl` prints only the message).

use std::fs;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use upshot_tests::{Client, ClientOutput, Record, Session, command_as, run_client};

const DEST: &str = "com.ubuntu.Upstart";
const MANAGER: &str = "/com/ubuntu/Upstart";
const IFACE: &str = "com.ubuntu.Upstart0_6";
const JOB: &str = "com.ubuntu.Upstart0_6.Job";
const INSTANCE: &str = "com.ubuntu.Upstart0_6.Instance";
const PROPERTIES: &str = "org.freedesktop.DBus.Properties";
const INVALID_ARGS: &str = "org.freedesktop.DBus.Error.InvalidArgs";
const UPSTART_ERROR: &str = "com.ubuntu.Upstart0_6.Error.";

/// The `version` property: `init (upshot VERSION)`, the workspace's
/// version (which this crate shares).
fn version() -> String {
    format!("init (upshot {})", env!("CARGO_PKG_VERSION"))
}

/// The object path of a job (names given here escaped by hand).
fn job(escaped: &str) -> String {
    format!("{MANAGER}/jobs/{escaped}")
}

/// The object path of an instance.
fn inst(job_escaped: &str, inst_escaped: &str) -> String {
    format!("{MANAGER}/jobs/{job_escaped}/{inst_escaped}")
}

/// The clients, pointed at one daemon's address.
struct Api {
    address: String,
}

impl Api {
    /// Starts the daemon of `s` and waits for its session file; checks
    /// that it names the address spec §5 gives.
    fn start(s: &mut Session) -> Api {
        s.start(&[]);
        let address = s.wait_address();
        assert_eq!(
            address,
            s.address(),
            "the address in {}",
            s.session_file().display()
        );
        Api { address }
    }

    fn busctl_cmd(&self) -> Command {
        let mut cmd = Command::new("busctl");
        cmd.arg(format!("--address={}", self.address));
        cmd
    }

    /// `busctl --address=ADDR ARGS…`
    fn busctl(&self, args: &[&str]) -> ClientOutput {
        run_client(self.busctl_cmd().args(args))
    }

    /// `busctl call DEST PATH IFACE METHOD [SIGNATURE ARGS…]`
    fn call(&self, path: &str, iface: &str, method: &str, args: &[&str]) -> ClientOutput {
        run_client(&mut self.call_cmd(path, iface, method, args))
    }

    fn call_cmd(&self, path: &str, iface: &str, method: &str, args: &[&str]) -> Command {
        let mut cmd = self.busctl_cmd();
        cmd.args(["call", DEST, path, iface, method]).args(args);
        cmd
    }

    /// The reply of a `busctl call` that must succeed.
    fn ok(&self, path: &str, iface: &str, method: &str, args: &[&str]) -> String {
        self.call(path, iface, method, args).ok().to_string()
    }

    /// `busctl get-property` of one property: its `SIGNATURE VALUE` line.
    fn get(&self, path: &str, iface: &str, property: &str) -> String {
        self.busctl(&["get-property", DEST, path, iface, property])
            .ok()
            .to_string()
    }

    /// `gdbus call --address ADDR --dest DEST --object-path PATH --method
    /// IFACE.METHOD ARGS…`
    fn gdbus(&self, path: &str, method: &str, args: &[&str]) -> ClientOutput {
        run_client(&mut self.gdbus_cmd(path, method, args))
    }

    fn gdbus_cmd(&self, path: &str, method: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new("gdbus");
        cmd.args(["call", "--address", &self.address, "--dest", DEST])
            .args(["--object-path", path, "--method", method])
            .args(args);
        cmd
    }

    /// `dbus-send --address=ADDR --print-reply --dest=DEST PATH
    /// IFACE.METHOD ARGS…`
    fn send(&self, path: &str, method: &str, args: &[&str]) -> ClientOutput {
        run_client(
            Command::new("dbus-send")
                .arg(format!("--address={}", self.address))
                .args(["--print-reply", &format!("--dest={DEST}"), path, method])
                .args(args),
        )
    }

    /// The body of a `dbus-send` reply (the lines after `method return
    /// time=… serial=…`).
    fn send_ok(&self, path: &str, method: &str, args: &[&str]) -> String {
        let out = self.send(path, method, args);
        let text = out.ok();
        let (first, rest) = text.split_once('\n').unwrap_or((text, ""));
        assert!(first.starts_with("method return "), "not a method return:\n{out}");
        rest.to_string()
    }

    /// The error of a `dbus-send` call that must fail: `Error NAME:
    /// MESSAGE` (the message as one line).
    fn send_err(&self, path: &str, method: &str, args: &[&str]) -> String {
        let out = self.send(path, method, args);
        assert!(out.stdout.is_empty(), "an error has no reply body:\n{out}");
        out.failed().to_string()
    }

    /// The error of a `gdbus call` that must fail: `Error:
    /// GDBus.Error:NAME: MESSAGE` (for arguments dbus-send cannot spell,
    /// such as an array holding an empty string). After an InvalidArgs
    /// error gdbus adds a line of its own on the signature, left out.
    fn gdbus_err(&self, path: &str, method: &str, args: &[&str]) -> String {
        let out = self.gdbus(path, method, args);
        assert!(out.stdout.is_empty(), "an error has no reply:\n{out}");
        let err = out.failed();
        let hint = "(According to introspection data, you need to pass ";
        match err.split_once('\n') {
            Some((first, rest)) if rest.is_empty() || rest.starts_with(hint) => format!("{first}\n"),
            _ => panic!("not one error line:\n{out}"),
        }
    }

    /// Whether the daemon answers a plain call, with the right answer.
    fn assert_serving(&self, s: &mut Session, jobs: &[&str]) {
        assert!(s.try_status().is_none(), "the daemon exited:\n{}", s.daemon_log());
        let mut got = quoted(&self.ok(MANAGER, IFACE, "GetAllJobs", &[]));
        got.sort();
        let mut want: Vec<String> = jobs.iter().map(|j| job(j)).collect();
        want.sort();
        assert_eq!(got, want, "GetAllJobs");
    }
}

/// `got == want` for long texts: a failure shows where they part, not
/// both whole.
fn same(got: &str, want: &str, what: &str) {
    if got != want {
        let at = got.bytes().zip(want.bytes()).take_while(|(a, b)| a == b).count();
        let around = |s: &str| {
            s.get(at.saturating_sub(40)..(at + 40).min(s.len()))
                .unwrap_or("?")
                .to_string()
        };
        panic!(
            "{what}: {} bytes, expected {}; they differ at byte {at}: {:?} vs {:?}",
            got.len(),
            want.len(),
            around(got),
            around(want)
        );
    }
}

/// The quoted strings of a `busctl` reply (object paths and plain words:
/// no escapes).
fn quoted(reply: &str) -> Vec<String> {
    reply.split('"').skip(1).step_by(2).map(str::to_string).collect()
}

/// `Error NAME: MESSAGE\n`, what `dbus-send` prints for an error reply.
fn error(name: &str, message: &str) -> String {
    format!("Error {name}: {message}\n")
}

fn upstart_error(kind: &str, message: &str) -> String {
    error(&format!("{UPSTART_ERROR}{kind}"), message)
}

fn invalid(message: &str) -> String {
    error(INVALID_ARGS, message)
}

// ---------------------------------------------------------------------------
// Transport, clients, introspection

/// The session file names the address of spec §5; `busctl`, `gdbus` and
/// `dbus-send` all reach the daemon there (`gdbus` and `busctl` say
/// `Hello` first, `dbus-send` too; none of that confuses it), and the
/// object tree and the introspection data are Upstart's.
#[test]
fn every_client_reaches_the_session_address() {
    let mut s = Session::new("dbus-clients");
    s.write_job("foo-bar", "exec sleep 1000\n");
    let api = Api::start(&mut s);

    assert_eq!(
        api.ok(MANAGER, IFACE, "GetJobByName", &["s", "foo-bar"]),
        "o \"/com/ubuntu/Upstart/jobs/foo_2dbar\"\n"
    );
    assert_eq!(
        api.gdbus(MANAGER, "com.ubuntu.Upstart0_6.GetJobByName", &["foo-bar"])
            .ok(),
        "(objectpath '/com/ubuntu/Upstart/jobs/foo_2dbar',)\n"
    );
    assert_eq!(
        api.send_ok(MANAGER, "com.ubuntu.Upstart0_6.GetJobByName", &["string:foo-bar"]),
        "   object path \"/com/ubuntu/Upstart/jobs/foo_2dbar\"\n"
    );
    // org.freedesktop.DBus.Peer.
    assert_eq!(api.ok(MANAGER, "org.freedesktop.DBus.Peer", "Ping", &[]), "");

    assert_eq!(
        api.busctl(&["tree", DEST]).ok(),
        "└─/com\n  └─/com/ubuntu\n    └─/com/ubuntu/Upstart\n      └─/com/ubuntu/Upstart/jobs\n        \
         └─/com/ubuntu/Upstart/jobs/foo_2dbar\n"
    );

    // The manager's interface as busctl reads it from the introspection
    // data.
    let intro = api.busctl(&["introspect", DEST, MANAGER]);
    let members = interface_members(intro.ok(), IFACE);
    let want = [
        ".EmitEvent method sasb - -",
        ".EmitEventWithFile method sasbh - -",
        ".EndSession method - - -",
        ".GetAllJobs method - ao -",
        ".GetEnv method ass s -",
        ".GetJobByName method s o -",
        ".GetState method - s -",
        ".ListEnv method as as -",
        ".NotifyCGroupManagerAddress method s - -",
        ".NotifyDBusAddress method s - -",
        ".NotifyDiskWriteable method - - -",
        ".ReloadConfiguration method - - -",
        ".ResetEnv method as - -",
        ".Restart method - - deprecated",
        ".SetEnv method assb - -",
        ".SetEnvList method asasb - -",
        ".UnsetEnv method ass - -",
        ".UnsetEnvList method asas - -",
        ".log_priority property s \"info\" emits-change writable",
        &format!(".version property s \"{}\" emits-change", version()),
        ".EventEmitted signal sas - -",
        ".JobAdded signal o - -",
        ".JobRemoved signal o - -",
        ".Restarted signal - - -",
    ];
    assert_eq!(members, want, "the manager interface:\n{intro}");
    for iface in [
        PROPERTIES,
        "org.freedesktop.DBus.Introspectable",
        "org.freedesktop.DBus.Peer",
    ] {
        assert!(
            intro.stdout.lines().any(|l| l.starts_with(&format!("{iface} "))),
            "{iface} is not introspected:\n{intro}"
        );
    }

    let intro = api.busctl(&["introspect", DEST, &job("foo_2dbar")]);
    let want = [
        ".GetAllInstances method - ao -",
        ".GetInstance method as o -",
        ".GetInstanceByName method s o -",
        ".Restart method asb o -",
        ".Start method asb o -",
        ".Stop method asb - -",
        ".author property s \"\" emits-change",
        ".description property s \"\" emits-change",
        ".emits property as 0 emits-change",
        ".name property s \"foo-bar\" emits-change",
        ".start_on property aas 0 emits-change",
        ".stop_on property aas 0 emits-change",
        ".usage property s \"\" emits-change",
        ".version property s \"\" emits-change",
        ".InstanceAdded signal o - -",
        ".InstanceRemoved signal o - -",
    ];
    assert_eq!(
        interface_members(intro.ok(), JOB),
        want,
        "the job interface:\n{intro}"
    );

    api.call(&job("foo_2dbar"), JOB, "Start", &["asb", "0", "true"])
        .ok();
    let intro = api.busctl(&["introspect", DEST, &inst("foo_2dbar", "_")]);
    let pid = main_pid(&api, &inst("foo_2dbar", "_"));
    let members = interface_members(intro.ok(), INSTANCE);
    let want = [
        ".Reload method - - -".to_string(),
        ".Restart method b - -".into(),
        ".Start method b - -".into(),
        ".Stop method b - -".into(),
        ".goal property s \"start\" emits-change".into(),
        ".name property s \"\" emits-change".into(),
        format!(".processes property a(si) 1 \"main\" {pid} emits-change"),
        ".state property s \"running\" emits-change".into(),
        ".Failed signal i - -".into(),
        ".GoalChanged signal s - -".into(),
        ".StateChanged signal s - -".into(),
    ];
    assert_eq!(members, want, "the instance interface:\n{intro}");
}

/// The lines of `busctl introspect` output for one interface's members,
/// the columns (name, kind, signature, result or value, flags) separated
/// by single spaces.
fn interface_members(text: &str, iface: &str) -> Vec<String> {
    let header = text.lines().next().unwrap_or_default();
    let mut cuts: Vec<usize> = ["TYPE", "SIGNATURE", "RESULT/VALUE", "FLAGS"]
        .iter()
        .map(|c| {
            header
                .find(c)
                .unwrap_or_else(|| panic!("no column {c} in {header:?}"))
        })
        .collect();
    cuts.insert(0, 0);
    let mut lines = text.lines().skip_while(|l| !l.starts_with(&format!("{iface} ")));
    lines.next();
    lines
        .take_while(|l| l.starts_with('.'))
        .map(|l| {
            let column = |i: usize| {
                let end = cuts.get(i + 1).copied().unwrap_or(l.len()).min(l.len());
                l.get(cuts[i]..end).unwrap_or_default().trim()
            };
            (0..cuts.len()).map(column).collect::<Vec<_>>().join(" ")
        })
        .collect()
}

/// The main pid in an instance's `processes` property, which must list
/// the main process only.
fn main_pid(api: &Api, path: &str) -> i32 {
    let processes = api.get(path, INSTANCE, "processes");
    processes
        .strip_prefix("a(si) 1 \"main\" ")
        .and_then(|p| p.trim_end().parse().ok())
        .unwrap_or_else(|| panic!("processes of {path} is not one main process: {processes:?}"))
}

// ---------------------------------------------------------------------------
// The manager

/// `GetJobByName`, `GetAllJobs`: paths escaped as spec §3.1 says (a `-`,
/// a `/` of a job in a subdirectory, UTF-8 bytes one `_XX` each), and the
/// two errors.
#[test]
fn manager_finds_jobs_by_name() {
    let mut s = Session::new("dbus-jobs");
    s.write_job("foo-bar", "exec sleep 1000\n");
    s.write_job("café", "exec sleep 1000\n");
    s.write_job("net/apache", "exec sleep 1000\n");
    s.write_job("a_b", "exec sleep 1000\n");
    let api = Api::start(&mut s);

    for (name, escaped) in [
        ("foo-bar", "foo_2dbar"),
        ("café", "caf_c3_a9"),
        ("net/apache", "net_2fapache"),
        ("a_b", "a_5fb"),
    ] {
        assert_eq!(
            api.gdbus(MANAGER, "com.ubuntu.Upstart0_6.GetJobByName", &[name])
                .ok(),
            format!("(objectpath '{}',)\n", job(escaped)),
            "GetJobByName {name}"
        );
        // The job object answers to that path with its name.
        assert_eq!(
            api.gdbus(
                &job(escaped),
                "org.freedesktop.DBus.Properties.Get",
                &[JOB, "name"]
            )
            .ok(),
            format!("(<'{name}'>,)\n"),
            "the name property of {escaped}"
        );
    }
    api.assert_serving(&mut s, &["foo_2dbar", "caf_c3_a9", "net_2fapache", "a_5fb"]);
    assert_eq!(
        api.send_err(MANAGER, "com.ubuntu.Upstart0_6.GetJobByName", &["string:"]),
        invalid("Name may not be empty string")
    );
    assert_eq!(
        api.send_err(MANAGER, "com.ubuntu.Upstart0_6.GetJobByName", &["string:nope"]),
        upstart_error("UnknownJob", "Unknown job: nope")
    );
    // busctl shows the message of an error too.
    let out = api.call(MANAGER, IFACE, "GetJobByName", &["s", "nope"]);
    assert_eq!(out.failed(), "Call failed: Unknown job: nope\n", "{out}");
}

/// `version`, `log_priority` (get, set, a bad value, what it changes),
/// `GetAll`, and the read-only and unknown properties.
#[test]
fn manager_properties() {
    let mut s = Session::new("dbus-props");
    s.write_job("quiet", "exec sleep 1000\n");
    s.write_job("loud", "exec sleep 1000\n");
    let api = Api::start(&mut s);

    assert_eq!(
        api.get(MANAGER, IFACE, "version"),
        format!("s \"{}\"\n", version())
    );
    assert_eq!(
        api.gdbus(
            MANAGER,
            "org.freedesktop.DBus.Properties.Get",
            &[IFACE, "version"]
        )
        .ok(),
        format!("(<'{}'>,)\n", version())
    );
    // The harness starts the daemon with -v.
    assert_eq!(api.get(MANAGER, IFACE, "log_priority"), "s \"info\"\n");
    let all = api.ok(MANAGER, PROPERTIES, "GetAll", &["s", IFACE]);
    let (v, p) = (
        format!("\"version\" s \"{}\"", version()),
        "\"log_priority\" s \"info\"",
    );
    assert!(
        all == format!("a{{sv}} 2 {v} {p}\n") || all == format!("a{{sv}} 2 {p} {v}\n"),
        "GetAll: {all}"
    );

    let out = api.busctl(&["set-property", DEST, MANAGER, IFACE, "log_priority", "s", "error"]);
    assert_eq!(out.ok(), "", "{out}");
    assert_eq!(api.get(MANAGER, IFACE, "log_priority"), "s \"error\"\n");
    // At `error`, state changes (info) are not logged …
    api.ok(&job("quiet"), JOB, "Start", &["asb", "0", "true"]);
    assert_eq!(api.get(&inst("quiet", "_"), INSTANCE, "state"), "s \"running\"\n");
    // … and at `debug` they are again.
    api.busctl(&["set-property", DEST, MANAGER, IFACE, "log_priority", "s", "debug"])
        .ok();
    assert_eq!(api.get(MANAGER, IFACE, "log_priority"), "s \"debug\"\n");
    api.ok(&job("loud"), JOB, "Start", &["asb", "0", "true"]);
    let log = s.wait_log("loud state changed from post-start to running");
    assert!(
        !log.contains("quiet state changed"),
        "logged at log_priority error:\n{log}"
    );

    for bad in ["variant:string:loud", "variant:string:", "variant:int32:3"] {
        assert_eq!(
            api.send_err(
                MANAGER,
                "org.freedesktop.DBus.Properties.Set",
                &[&format!("string:{IFACE}"), "string:log_priority", bad]
            ),
            invalid("The log priority given was not recognised"),
            "log_priority {bad}"
        );
    }
    assert_eq!(api.get(MANAGER, IFACE, "log_priority"), "s \"debug\"\n");
    // Every Upstart name is accepted.
    for name in ["info", "message", "warn", "error", "fatal", "debug"] {
        api.busctl(&["set-property", DEST, MANAGER, IFACE, "log_priority", "s", name])
            .ok();
        assert_eq!(api.get(MANAGER, IFACE, "log_priority"), format!("s \"{name}\"\n"));
    }

    let err = api.send_err(
        MANAGER,
        "org.freedesktop.DBus.Properties.Set",
        &[&format!("string:{IFACE}"), "string:version", "variant:string:x"],
    );
    assert!(
        err.starts_with("Error org.freedesktop.DBus.Error.PropertyReadOnly: "),
        "{err}"
    );
    let err = api.send_err(
        MANAGER,
        "org.freedesktop.DBus.Properties.Get",
        &[&format!("string:{IFACE}"), "string:nope"],
    );
    assert!(
        err.starts_with("Error org.freedesktop.DBus.Error.UnknownProperty: "),
        "{err}"
    );
    assert_eq!(
        api.get(MANAGER, IFACE, "version"),
        format!("s \"{}\"\n", version())
    );
}

/// `GetState` is JSON naming the jobs; `Restart` (re-exec) is refused as
/// not supported, and the daemon goes on serving.
#[test]
fn manager_get_state_and_restart() {
    let mut s = Session::new("dbus-state");
    s.write_job("stateful", "exec sleep 1000\n");
    let api = Api::start(&mut s);
    api.ok(&job("stateful"), JOB, "Start", &["asb", "0", "true"]);

    let out = api.busctl(&["--json=short", "call", DEST, MANAGER, IFACE, "GetState"]);
    let reply: serde_json::Value =
        serde_json::from_str(out.ok()).unwrap_or_else(|e| panic!("busctl --json: {e}\n{out}"));
    assert_eq!(reply["type"], "s", "{out}");
    let text = reply["data"][0]
        .as_str()
        .unwrap_or_else(|| panic!("no string: {out}"));
    let state: serde_json::Value =
        serde_json::from_str(text).unwrap_or_else(|e| panic!("GetState is not JSON ({e}): {text}"));
    assert!(state.is_object(), "GetState: {text}");
    assert!(
        text.contains("\"stateful\""),
        "GetState does not name the job: {text}"
    );

    let err = api.send_err(MANAGER, "com.ubuntu.Upstart0_6.Restart", &[]);
    assert!(
        err.starts_with("Error org.freedesktop.DBus.Error.NotSupported: "),
        "{err}"
    );
    api.assert_serving(&mut s, &["stateful"]);
    assert_eq!(
        api.get(&inst("stateful", "_"), INSTANCE, "state"),
        "s \"running\"\n"
    );
}

/// `EmitEvent` with `wait`: the reply comes once the event is finished,
/// so the task it started has already run, with the event's variables;
/// a job whose match fails did not run; a failed task fails the event;
/// a call that expects no reply (dbus-send without --print-reply) emits
/// too; argument errors.
#[test]
fn emit_event_waits_for_the_jobs_it_starts() {
    let mut s = Session::new("dbus-emit");
    s.write_job(
        "on-foo",
        "start on foo KEY=VALUE\ntask\nexec @BIN@/recorder --out @OUT@/on-foo --exit 0\n",
    );
    s.write_job(
        "on-foo-other",
        "start on foo KEY=other\ntask\nexec @BIN@/recorder --out @OUT@/other --exit 0\n",
    );
    s.write_job("svc-on-foo", "start on foo\nexec sleep 1000\n");
    s.write_job(
        "on-boom",
        "start on boom\ntask\nexec @BIN@/recorder --out @OUT@/boom --exit 3\n",
    );
    s.write_job(
        "on-quiet",
        "start on quiet\ntask\nexec @BIN@/recorder --out @OUT@/quiet --exit 0\n",
    );
    let api = Api::start(&mut s);

    let out = api.call(
        MANAGER,
        IFACE,
        "EmitEvent",
        &["sasb", "foo", "2", "KEY=VALUE", "OTHER=x y", "true"],
    );
    assert_eq!(out.ok(), "", "{out}");
    // No waiting here: the event is finished, so is the task it started.
    let rec = Record::parse(
        &s.read_out("on-foo")
            .expect("on-foo ran before EmitEvent returned"),
    );
    let env = rec.env();
    assert_eq!(env.get("KEY").map(String::as_str), Some("VALUE"), "{env:?}");
    assert_eq!(env.get("OTHER").map(String::as_str), Some("x y"), "{env:?}");
    assert_eq!(
        env.get("UPSTART_EVENTS").map(String::as_str),
        Some("foo"),
        "{env:?}"
    );
    assert!(s.read_out("other").is_none(), "on-foo-other ran on KEY=VALUE");
    // A service the event started is running by then.
    assert_eq!(
        api.get(&inst("svc_2don_2dfoo", "_"), INSTANCE, "state"),
        "s \"running\"\n"
    );

    assert_eq!(
        api.send_err(
            MANAGER,
            "com.ubuntu.Upstart0_6.EmitEvent",
            &["string:boom", "array:string:", "boolean:true"]
        ),
        upstart_error("EventFailed", "Event failed")
    );
    assert!(s.read_out("boom").is_some(), "on-boom did not run");

    // Without a reply expected (the client sends and hangs up at once).
    let out = run_client(
        Command::new("dbus-send")
            .arg(format!("--address={}", api.address))
            .args(["--type=method_call", &format!("--dest={DEST}")])
            .args([
                MANAGER,
                "com.ubuntu.Upstart0_6.EmitEvent",
                "string:quiet",
                "array:string:",
                "boolean:false",
            ]),
    );
    assert_eq!(out.ok(), "", "{out}");
    s.wait_out("quiet");
    s.wait_log("on-quiet state changed from post-stop to waiting");

    assert_eq!(
        api.send_err(
            MANAGER,
            "com.ubuntu.Upstart0_6.EmitEvent",
            &["string:", "array:string:", "boolean:true"]
        ),
        invalid("Name may not be empty string")
    );
    assert_eq!(
        api.send_err(
            MANAGER,
            "com.ubuntu.Upstart0_6.EmitEvent",
            &["string:foo", "array:string:KEY=VALUE,novalue", "boolean:false"]
        ),
        invalid("Env must be KEY=VALUE pairs")
    );
    api.assert_serving(
        &mut s,
        &[
            "on_2dfoo",
            "on_2dfoo_2dother",
            "svc_2don_2dfoo",
            "on_2dboom",
            "on_2dquiet",
        ],
    );
    // A client that hung up is not one that does not read.
    let log = s.daemon_log();
    assert!(!log.contains("does not read its messages"), "{log}");
}

/// `EndSession` logs the session out: the daemon emits `session-end
/// TYPE=logout`, stops its jobs, removes its session file and exits 0.
#[test]
fn end_session_ends_the_daemon() {
    let mut s = Session::new("dbus-end");
    s.write_job("svc", "exec sleep 1000\n");
    s.write_job(
        "on-end",
        "start on session-end\ntask\nexec @BIN@/recorder --out @OUT@/on-end --exit 0\n",
    );
    let api = Api::start(&mut s);
    api.ok(&job("svc"), JOB, "Start", &["asb", "0", "true"]);
    let pid = main_pid(&api, &inst("svc", "_"));
    assert_eq!(api.ok(MANAGER, IFACE, "EndSession", &[]), "");
    let status = s.wait_exit(upshot_tests::TIMEOUT);
    assert_eq!(status.code(), Some(0), "{status}\n{}", s.daemon_log());
    let env = Record::parse(&s.read_out("on-end").expect("on-end ran")).env();
    assert_eq!(env.get("TYPE").map(String::as_str), Some("logout"), "{env:?}");
    assert!(
        !upshot_tests::alive(pid),
        "svc's main process {pid} outlived the session"
    );
    assert!(!s.session_file().exists(), "the session file is left behind");
}

/// The environment methods on the global table (`job_details` `[]`): a
/// job started afterwards sees what was set; and on a running instance
/// (`[JOB, ""]`): its later processes see it, the global table does not.
#[test]
fn environment_methods() {
    let mut s = Session::new("dbus-env");
    s.write_job("rec", "task\nexec @BIN@/recorder --out @OUT@/rec --exit 0\n");
    s.write_job(
        "svc",
        "env STANZA=1\nexec sleep 1000\npost-stop exec @BIN@/recorder --out @OUT@/post-stop --exit 0\n",
    );
    let api = Api::start(&mut s);
    let list = |api: &Api, details: &[&str]| {
        let mut args = vec!["as".to_string(), details.len().to_string()];
        args.extend(details.iter().map(|d| d.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut env = quoted(&api.ok(MANAGER, IFACE, "ListEnv", &args));
        env.sort();
        env
    };
    let get = |api: &Api, name: &str| api.ok(MANAGER, IFACE, "GetEnv", &["ass", "0", name]);

    // The table starts as the daemon's environment.
    let initial = list(&api, &[]);
    let root = s.root().display().to_string();
    assert_eq!(
        initial,
        [
            format!("HOME={root}/home"),
            format!("PATH={}", upshot_tests::PATH),
            format!("UPSHOT_TEST_TREE={root}"),
            format!("XDG_RUNTIME_DIR={root}/run"),
        ],
        "ListEnv []"
    );

    api.ok(MANAGER, IFACE, "SetEnv", &["assb", "0", "FOO=bar", "true"]);
    assert_eq!(get(&api, "FOO"), "s \"bar\"\n");
    api.ok(MANAGER, IFACE, "SetEnv", &["assb", "0", "FOO=baz", "false"]);
    assert_eq!(get(&api, "FOO"), "s \"bar\"\n", "replace=false replaced");
    api.ok(MANAGER, IFACE, "SetEnv", &["assb", "0", "FOO=baz", "true"]);
    assert_eq!(get(&api, "FOO"), "s \"baz\"\n");
    // A name without `=` is stored as `NAME=`.
    api.ok(MANAGER, IFACE, "SetEnv", &["assb", "0", "BARE", "true"]);
    assert_eq!(get(&api, "BARE"), "s \"\"\n");
    api.ok(
        MANAGER,
        IFACE,
        "SetEnvList",
        &["asasb", "0", "2", "A=1", "B=2", "true"],
    );
    let mut want = initial.clone();
    want.extend(["A=1", "B=2", "BARE=", "FOO=baz"].map(String::from));
    want.sort();
    assert_eq!(list(&api, &[]), want);

    // A job started now sees the table.
    api.ok(&job("rec"), JOB, "Start", &["asb", "0", "true"]);
    let env = s.wait_record("rec").env();
    for (k, v) in [("FOO", "baz"), ("BARE", ""), ("A", "1"), ("B", "2")] {
        assert_eq!(
            env.get(k).map(String::as_str),
            Some(v),
            "{k} in the job's env: {env:?}"
        );
    }

    api.ok(MANAGER, IFACE, "UnsetEnv", &["ass", "0", "FOO"]);
    for method in ["GetEnv", "UnsetEnv"] {
        assert_eq!(
            api.send_err(
                MANAGER,
                &format!("{IFACE}.{method}"),
                &["array:string:", "string:FOO"]
            ),
            invalid("No such variable: FOO"),
            "{method} of an unset variable"
        );
    }
    api.ok(MANAGER, IFACE, "UnsetEnvList", &["asas", "0", "2", "A", "B"]);
    api.ok(MANAGER, IFACE, "ResetEnv", &["as", "0"]);
    assert_eq!(list(&api, &[]), initial, "after ResetEnv");

    // An instance's table.
    api.ok(&job("svc"), JOB, "Start", &["asb", "0", "true"]);
    // The global table and the job's `env` stanzas.
    let mut want = initial.clone();
    want.push("STANZA=1".into());
    want.sort();
    assert_eq!(list(&api, &["svc", ""]), want, "ListEnv [svc, \"\"]");
    api.ok(
        MANAGER,
        IFACE,
        "SetEnv",
        &["assb", "2", "svc", "", "LATE=1", "true"],
    );
    assert_eq!(
        api.ok(MANAGER, IFACE, "GetEnv", &["ass", "2", "svc", "", "LATE"]),
        "s \"1\"\n"
    );
    assert_eq!(
        api.send_err(
            MANAGER,
            "com.ubuntu.Upstart0_6.GetEnv",
            &["array:string:", "string:LATE"]
        ),
        invalid("No such variable: LATE"),
        "the instance's variable is not global"
    );
    api.ok(
        MANAGER,
        IFACE,
        "SetEnv",
        &["assb", "2", "svc", "", "GONE=1", "true"],
    );
    api.ok(MANAGER, IFACE, "UnsetEnv", &["ass", "2", "svc", "", "GONE"]);
    assert_eq!(
        api.gdbus_err(MANAGER, "com.ubuntu.Upstart0_6.GetEnv", &["['svc', '']", "GONE"]),
        format!("Error: GDBus.Error:{INVALID_ARGS}: No such variable: GONE\n")
    );
    // The processes the instance runs from now on see it.
    api.ok(&job("svc"), JOB, "Stop", &["asb", "0", "true"]);
    let env = s.wait_record("post-stop").env();
    assert_eq!(
        env.get("LATE").map(String::as_str),
        Some("1"),
        "post-stop env: {env:?}"
    );

    assert_eq!(
        api.gdbus_err(MANAGER, "com.ubuntu.Upstart0_6.GetEnv", &["['nope', '']", "X"]),
        format!("Error: GDBus.Error:{UPSTART_ERROR}UnknownJob: Unknown job: nope\n")
    );
    assert_eq!(
        api.send_err(MANAGER, "com.ubuntu.Upstart0_6.ListEnv", &["array:string:svc,zz"]),
        upstart_error("UnknownJobInstance", "Unknown instance: zz of job svc")
    );
}

/// `ReloadConfiguration` rescans the job files: a change that inotify
/// cannot see (the file rewritten through a hard link outside the conf
/// dir) is picked up only then.
#[test]
fn reload_configuration_rereads_job_files() {
    let mut s = Session::new("dbus-reload");
    let outside = s.mkdir("outside").join("hidden.conf");
    fs::write(&outside, "description \"one\"\nexec sleep 1000\n").expect("write");
    fs::hard_link(&outside, s.conf_dir().join("hidden.conf")).expect("hard link");
    let api = Api::start(&mut s);
    assert_eq!(api.get(&job("hidden"), JOB, "description"), "s \"one\"\n");

    // Rewritten in place through the other name: no event in the conf dir.
    fs::write(&outside, "description \"two\"\nexec sleep 1000\n").expect("rewrite");
    assert_eq!(
        api.get(&job("hidden"), JOB, "description"),
        "s \"one\"\n",
        "the change was seen without a reload (the test cannot tell reloading from watching)"
    );
    api.ok(MANAGER, IFACE, "ReloadConfiguration", &[]);
    assert_eq!(api.get(&job("hidden"), JOB, "description"), "s \"two\"\n");
}

// ---------------------------------------------------------------------------
// Jobs

/// The job properties, `start on`/`stop on` as post-order lists.
#[test]
fn job_properties() {
    let mut s = Session::new("dbus-job-props");
    s.write_job(
        "described",
        r#"description "A job, described"
author "Jo Bloggs <jo@example.com>"
version "1.2-3"
usage "described X=VALUE"
emits hello bye
start on (a and b X=1) or c
stop on d or e Y=2
exec sleep 1000
"#,
    );
    let api = Api::start(&mut s);
    let path = job("described");
    for (property, value) in [
        ("name", "s \"described\""),
        ("description", "s \"A job, described\""),
        ("author", "s \"Jo Bloggs <jo@example.com>\""),
        ("version", "s \"1.2-3\""),
        ("usage", "s \"described X=VALUE\""),
        (
            "start_on",
            "aas 5 1 \"a\" 2 \"b\" \"X=1\" 1 \"/AND\" 1 \"c\" 1 \"/OR\"",
        ),
        ("stop_on", "aas 3 1 \"d\" 2 \"e\" \"Y=2\" 1 \"/OR\""),
        ("emits", "as 2 \"hello\" \"bye\""),
    ] {
        assert_eq!(api.get(&path, JOB, property), format!("{value}\n"), "{property}");
    }
    assert_eq!(
        api.gdbus(&path, "org.freedesktop.DBus.Properties.Get", &[JOB, "start_on"])
            .ok(),
        "(<[['a'], ['b', 'X=1'], ['/AND'], ['c'], ['/OR']]>,)\n"
    );
    // Properties are read-only.
    let err = api.send_err(
        &path,
        "org.freedesktop.DBus.Properties.Set",
        &[&format!("string:{JOB}"), "string:description", "variant:string:x"],
    );
    assert!(
        err.starts_with("Error org.freedesktop.DBus.Error.PropertyReadOnly: "),
        "{err}"
    );
    let all = api.ok(&path, PROPERTIES, "GetAll", &["s", JOB]);
    assert!(all.starts_with("a{sv} 8 "), "GetAll: {all}");
    assert!(all.contains("\"usage\" s \"described X=VALUE\""), "GetAll: {all}");
}

/// `Start` with wait replies when the service is running (not while its
/// post-start runs) with the instance's path; `Stop` with wait when the
/// instance is gone (not while its post-stop runs); `Restart` gives a new
/// main process; and the errors of each.
#[test]
fn job_start_stop_restart() {
    let mut s = Session::new("dbus-job-control");
    s.write_job(
        "svc",
        "exec sleep 1000\npost-start exec @BIN@/waitfor --file @OUT@/up\n\
         post-stop exec @BIN@/waitfor --file @OUT@/down\n",
    );
    let api = Api::start(&mut s);
    let (path, instance) = (job("svc"), inst("svc", "_"));

    assert_eq!(api.ok(&path, JOB, "GetAllInstances", &[]), "ao 0\n");
    let start = Client::spawn(&mut api.call_cmd(&path, JOB, "Start", &["asb", "0", "true"]));
    wait_state(&mut s, &api, &instance, "post-start");
    let mut start = start;
    assert!(!start.exited(), "Start returned during post-start");
    fs::write(s.out("up"), "").expect("write up");
    assert_eq!(start.wait().ok(), format!("o \"{instance}\"\n"));
    assert_eq!(api.get(&instance, INSTANCE, "state"), "s \"running\"\n");
    let pid = main_pid(&api, &instance);
    assert!(upshot_tests::alive(pid), "main process {pid}");
    assert_eq!(
        api.ok(&path, JOB, "GetAllInstances", &[]),
        format!("ao 1 \"{instance}\"\n")
    );

    assert_eq!(
        api.send_err(&path, &format!("{JOB}.Start"), &["array:string:", "boolean:true"]),
        upstart_error("AlreadyStarted", "Job is already running: svc")
    );

    let stop = Client::spawn(&mut api.call_cmd(&path, JOB, "Stop", &["asb", "0", "true"]));
    wait_state(&mut s, &api, &instance, "post-stop");
    let mut stop = stop;
    assert!(!stop.exited(), "Stop returned during post-stop");
    assert_eq!(api.get(&instance, INSTANCE, "goal"), "s \"stop\"\n");
    for method in ["Stop", "Restart"] {
        assert_eq!(
            api.send_err(
                &path,
                &format!("{JOB}.{method}"),
                &["array:string:", "boolean:false"]
            ),
            upstart_error("AlreadyStopped", "Job has already been stopped: svc"),
            "{method} while stopping"
        );
    }
    // A Start while stopping is allowed: it releases the waiting Stop
    // (with success), and the instance goes round to running again once
    // post-stop is over.
    let mut start = Client::spawn(&mut api.call_cmd(&path, JOB, "Start", &["asb", "0", "true"]));
    assert_eq!(stop.wait().ok(), "", "Stop released by Start");
    assert_eq!(api.get(&instance, INSTANCE, "goal"), "s \"start\"\n");
    assert_eq!(api.get(&instance, INSTANCE, "state"), "s \"post-stop\"\n");
    assert!(!start.exited(), "Start returned during post-stop");
    fs::write(s.out("down"), "").expect("write down");
    assert_eq!(start.wait().ok(), format!("o \"{instance}\"\n"));
    assert_eq!(api.get(&instance, INSTANCE, "state"), "s \"running\"\n");
    assert!(!upshot_tests::alive(pid), "main process {pid} outlived Stop");
    assert_ne!(main_pid(&api, &instance), pid);

    // post-stop passes at once now.
    assert_eq!(api.ok(&path, JOB, "Stop", &["asb", "0", "true"]), "");
    assert_eq!(api.ok(&path, JOB, "GetAllInstances", &[]), "ao 0\n");

    for method in ["Stop", "Restart"] {
        assert_eq!(
            api.send_err(
                &path,
                &format!("{JOB}.{method}"),
                &["array:string:", "boolean:true"]
            ),
            upstart_error("UnknownInstance", "Unknown instance: "),
            "{method} of a stopped job"
        );
    }

    // Without wait, Start replies at once with the path.
    assert_eq!(
        api.ok(&path, JOB, "Start", &["asb", "0", "false"]),
        format!("o \"{instance}\"\n")
    );
    wait_state(&mut s, &api, &instance, "running");
    let pid = main_pid(&api, &instance);

    // Restart: a new main process (post-start and post-stop pass at once
    // now).
    assert_eq!(
        api.ok(&path, JOB, "Restart", &["asb", "0", "true"]),
        format!("o \"{instance}\"\n")
    );
    assert_eq!(api.get(&instance, INSTANCE, "state"), "s \"running\"\n");
    let new_pid = main_pid(&api, &instance);
    assert_ne!(new_pid, pid, "Restart kept the main process");
    assert!(!upshot_tests::alive(pid), "main process {pid} outlived Restart");
}

/// A task: `Start` with wait replies after it finished; one that fails
/// gives JobFailed.
#[test]
fn job_start_task_waits_for_the_end() {
    let mut s = Session::new("dbus-task");
    s.write_job("once", "task\nexec @BIN@/waitfor --file @OUT@/go\n");
    s.write_job("fails", "task\nexec @BIN@/waitfor --file / --status 4\n");
    s.write_job("unspawnable", "exec @ROOT@/no-such-program\n");
    let api = Api::start(&mut s);
    let (path, instance) = (job("once"), inst("once", "_"));

    let mut start = Client::spawn(&mut api.call_cmd(&path, JOB, "Start", &["asb", "0", "true"]));
    wait_state(&mut s, &api, &instance, "running");
    assert!(!start.exited(), "Start of a task returned while it runs");
    fs::write(s.out("go"), "").expect("write go");
    assert_eq!(start.wait().ok(), format!("o \"{instance}\"\n"));
    assert_eq!(
        api.ok(&path, JOB, "GetAllInstances", &[]),
        "ao 0\n",
        "the task is over"
    );

    for name in ["fails", "unspawnable"] {
        assert_eq!(
            api.send_err(
                &job(name),
                &format!("{JOB}.Start"),
                &["array:string:", "boolean:true"]
            ),
            upstart_error("JobFailed", "Job failed to start"),
            "{name}"
        );
        assert_eq!(
            api.ok(&job(name), JOB, "GetAllInstances", &[]),
            "ao 0\n",
            "{name}"
        );
    }
}

/// Waits until an instance's `state` property is `state`.
fn wait_state(s: &mut Session, api: &Api, path: &str, state: &str) {
    let want = format!("s \"{state}\"\n");
    s.wait_for(&format!("{path} to be {state}"), |_| {
        let out = api.busctl(&["get-property", DEST, path, INSTANCE, "state"]);
        out.success() && out.stdout == want
    });
}

// ---------------------------------------------------------------------------
// Instances

/// Instances of `instance $N`: their paths, the lookups, the properties
/// (`processes` with the real main pid), and the instance methods:
/// `Reload` sends SIGHUP to the main process, `Restart` replaces it,
/// `Stop` ends it.
#[test]
fn instance_objects_and_methods() {
    let mut s = Session::new("dbus-instances");
    s.write_job(
        "inst",
        "instance $N\nusage \"inst N=NAME\"\nexec @BIN@/hup-counter --out @OUT@/hup-$N\n",
    );
    s.write_job(
        "slow",
        "pre-start exec @BIN@/waitfor --file @OUT@/slow-go\nexec sleep 1000\n",
    );
    let api = Api::start(&mut s);
    let path = job("inst");
    let web = inst("inst", "web_2d1");

    assert_eq!(
        api.ok(&path, JOB, "Start", &["asb", "1", "N=web-1", "true"]),
        format!("o \"{web}\"\n")
    );
    assert_eq!(
        api.ok(&path, JOB, "GetInstance", &["as", "1", "N=web-1"]),
        format!("o \"{web}\"\n")
    );
    assert_eq!(
        api.ok(&path, JOB, "GetInstanceByName", &["s", "web-1"]),
        format!("o \"{web}\"\n")
    );
    assert_eq!(
        api.send_err(&path, &format!("{JOB}.GetInstance"), &["array:string:N=zz"]),
        upstart_error("UnknownInstance", "Unknown instance: zz")
    );
    assert_eq!(
        api.send_err(&path, &format!("{JOB}.GetInstanceByName"), &["string:zz"]),
        upstart_error("UnknownInstance", "Unknown instance: zz")
    );
    // No N to expand the instance name with: the usage follows.
    for method in ["GetInstance", "Start"] {
        let args: &[&str] = if method == "Start" {
            &["array:string:", "boolean:true"]
        } else {
            &["array:string:"]
        };
        assert_eq!(
            api.send_err(&path, &format!("{JOB}.{method}"), args),
            invalid("Unknown parameter: N\nUsage: inst N=NAME"),
            "{method} without N"
        );
    }

    let rec = Record::parse(&s.wait_out("hup-web-1"));
    let pid = rec.num("pid") as i32;
    for (property, value) in [
        ("name", "s \"web-1\"".to_string()),
        ("goal", "s \"start\"".into()),
        ("state", "s \"running\"".into()),
        ("processes", format!("a(si) 1 \"main\" {pid}")),
    ] {
        assert_eq!(
            api.get(&web, INSTANCE, property),
            format!("{value}\n"),
            "{property}"
        );
    }
    assert_eq!(
        api.gdbus(
            &web,
            "org.freedesktop.DBus.Properties.Get",
            &[INSTANCE, "processes"]
        )
        .ok(),
        format!("(<[('main', {pid})]>,)\n")
    );

    // Reload: SIGHUP to the main process.
    assert_eq!(api.ok(&web, INSTANCE, "Reload", &[]), "");
    s.wait_for("the main process to count one SIGHUP", |s| {
        s.read_out("hup-web-1")
            .is_some_and(|t| t == format!("pid {pid}\nhups 1\n"))
    });
    assert_eq!(
        api.send_err(&web, &format!("{INSTANCE}.Start"), &["boolean:true"]),
        upstart_error("AlreadyStarted", "Job is already running: inst (web-1)")
    );

    // A second instance.
    let two = inst("inst", "two");
    api.ok(&path, JOB, "Start", &["asb", "1", "N=two", "true"]);
    let mut all = quoted(&api.ok(&path, JOB, "GetAllInstances", &[]));
    all.sort();
    assert_eq!(all, [two.clone(), web.clone()]);
    assert_eq!(
        api.busctl(&["tree", DEST]).ok(),
        "└─/com\n  └─/com/ubuntu\n    └─/com/ubuntu/Upstart\n      └─/com/ubuntu/Upstart/jobs\n        \
         ├─/com/ubuntu/Upstart/jobs/inst\n        │ ├─/com/ubuntu/Upstart/jobs/inst/two\n        \
         │ └─/com/ubuntu/Upstart/jobs/inst/web_2d1\n        └─/com/ubuntu/Upstart/jobs/slow\n"
    );

    // Restart: a new main process, same instance.
    assert_eq!(api.ok(&web, INSTANCE, "Restart", &["b", "true"]), "");
    assert_eq!(api.get(&web, INSTANCE, "state"), "s \"running\"\n");
    let new_pid = main_pid(&api, &web);
    assert_ne!(new_pid, pid, "Instance.Restart kept the main process");

    assert_eq!(api.ok(&web, INSTANCE, "Stop", &["b", "true"]), "");
    assert!(
        !upshot_tests::alive(new_pid),
        "main process {new_pid} outlived Stop"
    );
    assert_eq!(
        api.ok(&path, JOB, "GetAllInstances", &[]),
        format!("ao 1 \"{two}\"\n")
    );
    let err = api.send_err(&web, &format!("{INSTANCE}.Stop"), &["boolean:true"]);
    assert!(
        err.starts_with("Error org.freedesktop.DBus.Error.UnknownObject: "),
        "a stopped instance's path: {err}"
    );
    // Stop selects the instance by its env.
    api.ok(&path, JOB, "Stop", &["asb", "1", "N=two", "true"]);
    assert_eq!(api.ok(&path, JOB, "GetAllInstances", &[]), "ao 0\n");

    // Reload of an instance without a main process.
    let slow = inst("slow", "_");
    api.ok(&job("slow"), JOB, "Start", &["asb", "0", "false"]);
    wait_state(&mut s, &api, &slow, "pre-start");
    assert_eq!(
        api.send_err(&slow, &format!("{INSTANCE}.Reload"), &[]),
        upstart_error("NotRunning", "Job is not running: slow")
    );
    // The instance methods with wait.
    fs::write(s.out("slow-go"), "").expect("write slow-go");
    wait_state(&mut s, &api, &slow, "running");
    assert_eq!(api.ok(&slow, INSTANCE, "Stop", &["b", "true"]), "");
    assert_eq!(api.ok(&job("slow"), JOB, "GetAllInstances", &[]), "ao 0\n");
}

// ---------------------------------------------------------------------------
// Signals

/// `dbus-monitor` on the private socket (it falls back to eavesdropping
/// on a peer connection), its output going to a file.
struct Monitor {
    child: std::process::Child,
    out: PathBuf,
}

/// One signal as dbus-monitor prints it: the path, the interface, the
/// member, and the arguments as one line (`string "x"`, `array [ … ]`).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Signal {
    path: String,
    interface: String,
    member: String,
    args: String,
}

impl Monitor {
    fn start(s: &mut Session, api: &Api) -> Monitor {
        let out = s.root().join("monitor.out");
        let mut child = Command::new("dbus-monitor")
            .args(["--address", &api.address])
            .stdin(Stdio::null())
            .stdout(fs::File::create(&out).expect("create monitor.out"))
            .stderr(fs::File::create(s.root().join("monitor.err")).expect("create monitor.err"))
            .spawn()
            .expect("run dbus-monitor");
        // Ready once it sees an event emitted after it connected: emit
        // `probe` again every half second until one shows.
        let mut last: Option<Instant> = None;
        let mut n = 0;
        s.wait_for("dbus-monitor to see a probe event", |_| {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("dbus-monitor exited ({status})");
            }
            if Monitor::parse(&out)
                .iter()
                .any(|sig| sig.member == "EventEmitted")
            {
                return true;
            }
            if last.is_none_or(|t| t.elapsed() > Duration::from_millis(500)) {
                n += 1;
                api.ok(
                    MANAGER,
                    IFACE,
                    "EmitEvent",
                    &["sasb", "probe", "1", &format!("N={n}"), "true"],
                );
                last = Some(Instant::now());
            }
            false
        });
        Monitor { child, out }
    }

    fn parse(out: &PathBuf) -> Vec<Signal> {
        let text = fs::read_to_string(out).unwrap_or_default();
        let mut signals: Vec<Signal> = Vec::new();
        let mut current: Option<Signal> = None;
        for line in text.lines() {
            if line.starts_with(' ') {
                if let Some(sig) = current.as_mut() {
                    if !sig.args.is_empty() {
                        sig.args.push(' ');
                    }
                    sig.args.push_str(line.trim());
                }
                continue;
            }
            signals.extend(current.take());
            if line.starts_with("signal ") {
                let field = |name: &str| {
                    line.split_once(&format!(" {name}="))
                        .map(|(_, rest)| rest.split(';').next().unwrap_or_default().to_string())
                        .unwrap_or_default()
                };
                current = Some(Signal {
                    path: field("path"),
                    interface: field("interface"),
                    member: field("member"),
                    args: String::new(),
                });
            }
        }
        // The last one only once complete (the next begins, or the text
        // ends with a line of its own that is not the header).
        if let Some(sig) = current
            && (text.ends_with("\n") && (!sig.args.is_empty() || sig.member == "Restarted"))
        {
            signals.push(sig);
        }
        signals
    }

    /// Every signal after the last `probe` event.
    fn signals(&self) -> Vec<Signal> {
        let all = Monitor::parse(&self.out);
        let after = all
            .iter()
            .rposition(|s| s.member == "EventEmitted" && s.args.starts_with("string \"probe\""))
            .map_or(0, |i| i + 1);
        all[after..].to_vec()
    }

    /// Waits until `pred` holds of some signal; returns all of them.
    fn wait(&self, s: &mut Session, what: &str, pred: impl Fn(&Signal) -> bool) -> Vec<Signal> {
        s.wait_for_value(&format!("the signal {what}"), |_| {
            let all = self.signals();
            all.iter().any(&pred).then_some(all)
        })
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The (member, args) of the signals sent from `path`.
fn from(signals: &[Signal], path: &str) -> Vec<(String, String)> {
    signals
        .iter()
        .filter(|s| s.path == path)
        .map(|s| (s.member.clone(), s.args.clone()))
        .collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter().map(|(m, a)| (m.to_string(), a.to_string())).collect()
}

/// JobAdded (a new job file, loaded through inotify), InstanceAdded,
/// GoalChanged, StateChanged through a start and a stop, EventEmitted for
/// the job's events and an emitted one, InstanceRemoved, Failed,
/// JobRemoved: with their paths, interfaces and arguments.
#[test]
fn signals_reach_a_monitor() {
    let mut s = Session::new("dbus-signals");
    s.write_job("svc", "exec sleep 1000\n");
    s.write_job("bad", "exec @BIN@/waitfor --file / --status 3\n");
    s.write_job("unspawnable", "exec @ROOT@/no-such-program\n");
    let api = Api::start(&mut s);
    let monitor = Monitor::start(&mut s, &api);

    s.write_job("fresh", "exec sleep 1000\n");
    monitor.wait(&mut s, "JobAdded", |sig| sig.member == "JobAdded");
    api.ok(&job("svc"), JOB, "Start", &["asb", "0", "true"]);
    api.ok(&job("svc"), JOB, "Stop", &["asb", "0", "true"]);
    api.ok(
        MANAGER,
        IFACE,
        "EmitEvent",
        &["sasb", "foo", "2", "K=V", "L=a b", "true"],
    );
    api.ok(&job("bad"), JOB, "Start", &["asb", "0", "false"]);
    monitor.wait(&mut s, "Failed", |sig| sig.member == "Failed");
    api.ok(&job("unspawnable"), JOB, "Start", &["asb", "0", "false"]);
    monitor.wait(&mut s, "Failed of unspawnable", |sig| {
        sig.member == "Failed" && sig.path == inst("unspawnable", "_")
    });
    s.remove_job("fresh");
    let all = monitor.wait(&mut s, "JobRemoved", |sig| sig.member == "JobRemoved");

    for sig in &all {
        let want = if sig.path == MANAGER {
            IFACE
        } else if sig.path.matches('/').count() == 5 {
            JOB
        } else {
            INSTANCE
        };
        assert_eq!(sig.interface, want, "{sig:?}");
    }
    let svc = inst("svc", "_");
    let states = |names: &[&str]| -> Vec<(String, String)> {
        names
            .iter()
            .map(|n| ("StateChanged".to_string(), format!("string \"{n}\"")))
            .collect()
    };
    let mut want = pairs(&[("GoalChanged", "string \"start\"")]);
    want.extend(states(&[
        "starting",
        "pre-start",
        "spawned",
        "post-start",
        "running",
    ]));
    want.extend(pairs(&[("GoalChanged", "string \"stop\"")]));
    want.extend(states(&[
        "pre-stop",
        "stopping",
        "killed",
        "post-stop",
        "waiting",
    ]));
    assert_eq!(from(&all, &svc), want, "the signals of {svc}:\n{all:#?}");
    assert_eq!(
        from(&all, &job("svc")),
        pairs(&[
            ("InstanceAdded", &format!("object path \"{svc}\"")),
            ("InstanceRemoved", &format!("object path \"{svc}\"")),
        ]),
        "{all:#?}"
    );
    // InstanceAdded comes first, InstanceRemoved after `waiting`.
    let pos = |pred: &dyn Fn(&Signal) -> bool| all.iter().position(pred).expect("signal");
    assert!(pos(&|s| s.member == "InstanceAdded") < pos(&|s| s.path == svc));
    assert!(
        pos(&|s| s.member == "InstanceRemoved") > pos(&|s| s.path == svc && s.args == "string \"waiting\"")
    );

    let manager: Vec<(String, String)> = from(&all, MANAGER)
        .into_iter()
        .filter(|(_, args)| !args.contains("\"JOB=bad\"") && !args.contains("\"JOB=unspawnable\""))
        .collect();
    assert_eq!(
        manager,
        pairs(&[
            ("JobAdded", &format!("object path \"{}\"", job("fresh"))),
            (
                "EventEmitted",
                "string \"starting\" array [ string \"JOB=svc\" string \"INSTANCE=\" ]"
            ),
            (
                "EventEmitted",
                "string \"started\" array [ string \"JOB=svc\" string \"INSTANCE=\" ]"
            ),
            (
                "EventEmitted",
                "string \"stopping\" array [ string \"JOB=svc\" string \"INSTANCE=\" string \"RESULT=ok\" ]"
            ),
            (
                "EventEmitted",
                "string \"stopped\" array [ string \"JOB=svc\" string \"INSTANCE=\" string \"RESULT=ok\" ]"
            ),
            (
                "EventEmitted",
                "string \"foo\" array [ string \"K=V\" string \"L=a b\" ]"
            ),
            ("JobRemoved", &format!("object path \"{}\"", job("fresh"))),
        ]),
        "{all:#?}"
    );
    // `bad` exited with status 3; `unspawnable` could not be spawned.
    for (name, status) in [("bad", "int32 3"), ("unspawnable", "int32 -1")] {
        assert_eq!(
            from(&all, &inst(name, "_"))
                .into_iter()
                .filter(|(m, _)| m == "Failed")
                .collect::<Vec<_>>(),
            pairs(&[("Failed", status)]),
            "{name}"
        );
    }
}

// ---------------------------------------------------------------------------
// Authorisation

/// Only root and the daemon's own user may connect (libdbus' default
/// server policy, spec §3.1): `nobody` is refused by every client, and
/// the daemon goes on serving root and its user.
#[test]
fn other_users_are_refused() {
    let mut s = Session::new("dbus-auth");
    s.write_job("svc", "exec sleep 1000\n");
    let api = Api::start(&mut s);
    let all = api.ok(MANAGER, IFACE, "GetAllJobs", &[]);
    assert_eq!(all, format!("ao 1 \"{}\"\n", job("svc")));

    let addr = api.address.clone();
    let clients: [(&str, Vec<String>); 3] = [
        (
            "busctl",
            vec![
                format!("--address={addr}"),
                "call".into(),
                DEST.into(),
                MANAGER.into(),
                IFACE.into(),
                "GetAllJobs".into(),
            ],
        ),
        (
            "gdbus",
            [
                "call",
                "--address",
                &addr,
                "--dest",
                DEST,
                "--object-path",
                MANAGER,
            ]
            .iter()
            .map(|a| a.to_string())
            .chain(["--method".into(), format!("{IFACE}.GetAllJobs")])
            .collect(),
        ),
        (
            "dbus-send",
            vec![
                format!("--address={addr}"),
                "--print-reply".into(),
                format!("--dest={DEST}"),
                MANAGER.into(),
                format!("{IFACE}.GetAllJobs"),
            ],
        ),
    ];
    for (program, args) in &clients {
        let out = run_client(command_as(65534, 65534, program).args(args));
        assert!(
            !out.success() && out.stdout.is_empty(),
            "nobody got an answer:\n{out}"
        );
    }
    s.wait_log("refused a connection from uid 65534");
    // A job must not have been touched either.
    let out = run_client(command_as(65534, 65534, "busctl").args([
        &format!("--address={addr}"),
        "call",
        DEST,
        &job("svc"),
        JOB,
        "Start",
        "asb",
        "0",
        "true",
    ]));
    assert!(!out.success(), "{out}");
    assert_eq!(api.ok(&job("svc"), JOB, "GetAllInstances", &[]), "ao 0\n");

    // The daemon's own user is served…
    let account = s.account().clone();
    let out = run_client(command_as(account.uid, account.gid, "busctl").args(&clients[0].1));
    assert_eq!(out.ok(), all, "{out}");
    // … and so is root, still.
    api.assert_serving(&mut s, &["svc"]);
}

// ---------------------------------------------------------------------------
// Robustness

/// Malformed calls get error replies and change nothing: a wrong
/// signature, env entries without `=`, empty names, very long strings
/// (a 1 MB message), unknown methods, objects and interfaces.
#[test]
fn malformed_calls_get_errors() {
    let mut s = Session::new("dbus-malformed");
    s.write_job("svc", "exec sleep 1000\n");
    s.write_job("inst", "instance $N\nexec sleep 1000\n");
    let api = Api::start(&mut s);
    let jobs = ["svc", "inst"];

    let invalid_prefix = format!("Error {INVALID_ARGS}: ");
    for (path, method, args) in [
        (
            MANAGER.to_string(),
            format!("{IFACE}.GetJobByName"),
            vec!["int32:3"],
        ),
        (MANAGER.into(), format!("{IFACE}.GetJobByName"), vec![]),
        (
            MANAGER.into(),
            format!("{IFACE}.GetJobByName"),
            vec!["string:svc", "string:svc"],
        ),
        (
            MANAGER.into(),
            format!("{IFACE}.EmitEvent"),
            vec!["string:foo", "boolean:true"],
        ),
        (MANAGER.into(), format!("{IFACE}.GetAllJobs"), vec!["string:x"]),
        (
            job("svc"),
            format!("{JOB}.Start"),
            vec!["array:int32:1", "boolean:true"],
        ),
        (job("svc"), format!("{JOB}.Start"), vec!["array:string:"]),
        (job("svc"), format!("{JOB}.GetInstanceByName"), vec!["int32:1"]),
    ] {
        let err = api.send_err(&path, &method, &args);
        assert!(err.starts_with(&invalid_prefix), "{method} {args:?}: {err}");
    }
    // busctl sends what it is told, too.
    let out = api.call(MANAGER, IFACE, "GetJobByName", &["i", "3"]);
    assert!(!out.success() && out.stdout.is_empty(), "{out}");
    assert_eq!(api.ok(&job("svc"), JOB, "GetAllInstances", &[]), "ao 0\n");

    for (path, method) in [
        (job("svc"), "Start"),
        (job("svc"), "Stop"),
        (job("svc"), "Restart"),
        (job("inst"), "Start"),
    ] {
        assert_eq!(
            api.send_err(
                &path,
                &format!("{JOB}.{method}"),
                &["array:string:N=1,novalue", "boolean:true"]
            ),
            invalid("Env must be KEY=VALUE pairs"),
            "{path} {method}"
        );
    }
    assert_eq!(
        api.send_err(
            &job("inst"),
            &format!("{JOB}.GetInstance"),
            &["array:string:N=1,novalue"]
        ),
        invalid("Env must be KEY=VALUE pairs")
    );
    assert_eq!(api.ok(&job("svc"), JOB, "GetAllInstances", &[]), "ao 0\n");
    assert_eq!(
        api.send_err(&job("inst"), &format!("{JOB}.GetInstanceByName"), &["string:"]),
        upstart_error("UnknownInstance", "Unknown instance: ")
    );
    let err = api.send_err(
        MANAGER,
        &format!("{IFACE}.SetEnv"),
        &["array:string:", "string:", "boolean:true"],
    );
    assert!(err.starts_with(&invalid_prefix), "SetEnv \"\": {err}");
    let err = api.send_err(
        MANAGER,
        &format!("{IFACE}.GetEnv"),
        &["array:string:svc", "string:X"],
    );
    assert!(err.starts_with(&invalid_prefix), "GetEnv [svc]: {err}");

    // As long a name as a command line can hold (128 KiB per argument).
    let long = "x".repeat(130_000);
    same(
        &api.send_err(
            MANAGER,
            &format!("{IFACE}.GetJobByName"),
            &[&format!("string:{long}")],
        ),
        &upstart_error("UnknownJob", &format!("Unknown job: {long}")),
        "GetJobByName of a long name",
    );
    same(
        &api.send_err(
            &job("inst"),
            &format!("{JOB}.GetInstanceByName"),
            &[&format!("string:{long}")],
        ),
        &upstart_error("UnknownInstance", &format!("Unknown instance: {long}")),
        "GetInstanceByName of a long name",
    );
    // A message of a megabyte: eight such env entries.
    let mut args = vec!["as".to_string(), "9".into(), format!("N={long}")];
    args.extend((0..8).map(|i| format!("V{i}={long}")));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = api.call(&job("inst"), JOB, "GetInstance", &args);
    // (busctl cuts the message it shows at 2 KiB.)
    let shown = out.failed().strip_prefix("Call failed: Unknown instance: x");
    assert!(
        shown.is_some_and(|x| x.trim_end().bytes().all(|b| b == b'x')),
        "GetInstance with a megabyte of env:\n{out}"
    );
    // And an instance with that name does start. (Not with busctl: sd-bus
    // refuses object paths over 64 KiB, "Bad message".)
    let env = format!("['N={long}']");
    let out = api.gdbus(&job("inst"), &format!("{JOB}.Start"), &[&env, "true"]);
    same(
        out.ok(),
        &format!("(objectpath '{}',)\n", inst("inst", &long)),
        &format!("{out}"),
    );
    assert_eq!(
        api.gdbus(&job("inst"), &format!("{JOB}.Stop"), &[&env, "true"])
            .ok(),
        "()\n"
    );

    let err = api.send_err(MANAGER, &format!("{IFACE}.NoSuchMethod"), &[]);
    assert_eq!(
        err,
        error(
            "org.freedesktop.DBus.Error.UnknownMethod",
            "No such method 'NoSuchMethod' in interface 'com.ubuntu.Upstart0_6' at object path '/com/ubuntu/Upstart'"
        )
    );
    for path in [
        "/com/ubuntu/Nope",
        &job("nope"),
        &inst("svc", "nope"),
        "/com/ubuntu/Upstart/jobs/svc/_/x",
    ] {
        let err = api.send_err(path, &format!("{IFACE}.GetAllJobs"), &[]);
        assert!(
            err.starts_with("Error org.freedesktop.DBus.Error.UnknownObject: "),
            "{path}: {err}"
        );
    }
    for (path, method) in [
        (MANAGER.to_string(), "com.example.Nope.GetAllJobs"),
        (MANAGER.into(), "com.ubuntu.Upstart0_6.Job.Start"),
        (job("svc"), "com.ubuntu.Upstart0_6.GetAllJobs"),
    ] {
        let err = api.send_err(&path, method, &[]);
        assert!(
            err.starts_with("Error org.freedesktop.DBus.Error.UnknownMethod: ")
                || err.starts_with("Error org.freedesktop.DBus.Error.UnknownInterface: "),
            "{path} {method}: {err}"
        );
    }
    let out = api.busctl(&["introspect", DEST, "/com/ubuntu/Nope"]);
    assert!(!out.success(), "{out}");

    api.assert_serving(&mut s, &jobs);
    assert_eq!(api.ok(&job("svc"), JOB, "GetAllInstances", &[]), "ao 0\n");
}

/// A client that goes away while its `Start` waits (a slow pre-start):
/// the daemon goes on, the job starts, the next client is answered.
#[test]
fn a_client_that_vanishes_mid_call() {
    let mut s = Session::new("dbus-vanish");
    s.write_job(
        "slow",
        "pre-start exec @BIN@/waitfor --file @OUT@/go\nexec @BIN@/recorder --out @OUT@/slow\n",
    );
    let api = Api::start(&mut s);
    let instance = inst("slow", "_");
    for client in ["busctl", "gdbus"] {
        let mut cmd = match client {
            "busctl" => api.call_cmd(&job("slow"), JOB, "Start", &["asb", "0", "true"]),
            _ => api.gdbus_cmd(&job("slow"), &format!("{JOB}.Start"), &["[]", "true"]),
        };
        let mut waiting = Client::spawn(&mut cmd);
        wait_state(&mut s, &api, &instance, "pre-start");
        assert!(!waiting.exited(), "{client}: Start returned during pre-start");
        let out = waiting.kill();
        assert!(out.stdout.is_empty(), "{out}");
        // Answered while the engine still owes the vanished one a reply.
        api.assert_serving(&mut s, &["slow"]);
        fs::write(s.out("go"), "").expect("write go");
        wait_state(&mut s, &api, &instance, "running");
        let pid = s.wait_record("slow").num("pid") as i32;
        assert_eq!(main_pid(&api, &instance), pid);
        api.ok(&job("slow"), JOB, "Stop", &["asb", "0", "true"]);
        fs::remove_file(s.out("go")).expect("remove go");
        fs::remove_file(s.out("slow")).expect("remove slow");
    }
    api.assert_serving(&mut s, &["slow"]);
}

/// Twenty clients at once, each starting an instance and waiting: all
/// are answered with their own instance.
#[test]
fn many_clients_at_once() {
    let mut s = Session::new("dbus-many");
    s.write_job("inst", "instance $N\nexec sleep 1000\n");
    let api = Api::start(&mut s);
    let clients: Vec<(usize, Client)> = (0..20)
        .map(|i| {
            let n = format!("['N={i}']");
            (
                i,
                Client::spawn(&mut api.gdbus_cmd(&job("inst"), &format!("{JOB}.Start"), &[&n, "true"])),
            )
        })
        .collect();
    for (i, client) in clients {
        assert_eq!(
            client.wait().ok(),
            format!("(objectpath '{}',)\n", inst("inst", &i.to_string())),
            "client {i}"
        );
    }
    let mut all = quoted(&api.ok(&job("inst"), JOB, "GetAllInstances", &[]));
    all.sort();
    let mut want: Vec<String> = (0..20).map(|i| inst("inst", &i.to_string())).collect();
    want.sort();
    assert_eq!(all, want);
    for path in &want {
        assert_eq!(api.get(path, INSTANCE, "state"), "s \"running\"\n", "{path}");
    }
    // And as many reading at once.
    let readers: Vec<Client> = (0..20)
        .map(|_| Client::spawn(&mut api.call_cmd(MANAGER, IFACE, "GetAllJobs", &[])))
        .collect();
    for r in readers {
        assert_eq!(r.wait().ok(), format!("ao 1 \"{}\"\n", job("inst")));
    }
    let log = s.daemon_log();
    assert!(!log.contains("does not read its messages"), "{log}");
}

/// `Stop` with wait replies once post-stop is over, however long it
/// takes: a post-stop outlasting `kill timeout` is not part of what the
/// timeout kills (Upstart cancels the kill timer when main exits). A
/// witness job with the same timeout whose main ignores SIGTERM shows
/// when the timeout has passed.
#[test]
fn a_long_post_stop_survives_the_kill_timeout() {
    let mut s = Session::new("dbus-post-stop");
    s.write_job(
        "svc",
        "kill timeout 1\nexec sleep 1000\npost-stop exec @BIN@/waitfor --file @OUT@/down\n",
    );
    s.write_job(
        "stubborn",
        "kill timeout 1\nexec @BIN@/term-ignorer --ready @OUT@/stubborn\n",
    );
    let api = Api::start(&mut s);
    let instance = inst("svc", "_");
    api.ok(&job("svc"), JOB, "Start", &["asb", "0", "true"]);
    api.ok(&job("stubborn"), JOB, "Start", &["asb", "0", "true"]);
    let stubborn = s.wait_pid("stubborn");

    let mut stop = Client::spawn(&mut api.call_cmd(&job("svc"), JOB, "Stop", &["asb", "0", "true"]));
    wait_state(&mut s, &api, &instance, "post-stop");
    api.ok(&job("stubborn"), JOB, "Stop", &["asb", "0", "false"]);
    // svc's timeout was armed first, so it has run out too once the
    // witness is killed.
    s.wait_log(&format!(
        "stubborn main process ({stubborn}) killed by KILL signal"
    ));
    assert!(!stop.exited(), "Stop returned before post-stop was over");
    assert_eq!(api.get(&instance, INSTANCE, "state"), "s \"post-stop\"\n");
    let pid = api.get(&instance, INSTANCE, "processes");
    assert!(pid.starts_with("a(si) 1 \"post-stop\" "), "processes: {pid}");
    fs::write(s.out("down"), "").expect("write down");
    assert_eq!(stop.wait().ok(), "");
    let log = s.daemon_log();
    let line = log.lines().find(|l| l.contains("svc post-stop process ("));
    assert!(
        line.is_some_and(|l| l.ends_with("exited normally")),
        "post-stop was killed or failed:\n{log}"
    );
}

/// After `Restart` the new main process stays: the old one's `kill
/// timeout` does not reach it (a witness job as above shows when the
/// timeout has passed).
#[test]
fn a_restarted_job_survives_the_old_kill_timeout() {
    let mut s = Session::new("dbus-restart-timeout");
    s.write_job("svc", "kill timeout 1\nexec sleep 1000\n");
    s.write_job(
        "stubborn",
        "kill timeout 1\nexec @BIN@/term-ignorer --ready @OUT@/stubborn\n",
    );
    let api = Api::start(&mut s);
    let instance = inst("svc", "_");
    api.ok(&job("svc"), JOB, "Start", &["asb", "0", "true"]);
    api.ok(&job("stubborn"), JOB, "Start", &["asb", "0", "true"]);
    let stubborn = s.wait_pid("stubborn");
    let old = main_pid(&api, &instance);

    api.ok(&job("svc"), JOB, "Restart", &["asb", "0", "true"]);
    let new = main_pid(&api, &instance);
    assert_ne!(new, old);
    api.ok(&job("stubborn"), JOB, "Stop", &["asb", "0", "false"]);
    s.wait_log(&format!(
        "stubborn main process ({stubborn}) killed by KILL signal"
    ));
    let log = s.daemon_log();
    assert!(
        upshot_tests::alive(new) && !log.contains(&format!("svc main process ({new})")),
        "the restarted main process {new} was killed:\n{log}"
    );
    assert_eq!(api.get(&instance, INSTANCE, "state"), "s \"running\"\n");
    assert_eq!(
        main_pid(&api, &instance),
        new,
        "the restarted main process was replaced"
    );
}

//! The real `initctl` binary against a small stand-in for the daemon: a
//! zbus peer-to-peer server on an abstract socket, serving a few of
//! Upstart's objects, reached through `UPSTART_SESSION`. Whole output
//! lines and exit codes are compared. (Tests against the real
//! `init --user` live with the daemon.)

use std::collections::BTreeMap;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixListener};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use upstart_dbus::{MANAGER_PATH, instance_path, job_path};
use zbus::object_server::ObjectServer;
use zbus::{Guid, OwnedObjectPath};

#[derive(zbus::DBusError, Debug)]
#[zbus(prefix = "com.ubuntu.Upstart0_6.Error")]
enum UpstartError {
    #[zbus(error)]
    ZBus(zbus::Error),
    UnknownJob(String),
    UnknownInstance(String),
    AlreadyStarted(String),
    EventFailed(String),
}

#[derive(Clone)]
struct Inst {
    goal: String,
    state: String,
    processes: Vec<(String, i32)>,
}

#[derive(Default)]
struct JobDef {
    instances: BTreeMap<String, Inst>,
    start_on: Vec<Vec<String>>,
    stop_on: Vec<Vec<String>>,
    emits: Vec<String>,
}

#[derive(Default)]
struct State {
    jobs: BTreeMap<String, JobDef>,
    /// Every call that changes something, in order.
    calls: Vec<String>,
    next_pid: i32,
}

type Shared = Arc<Mutex<State>>;

fn path(p: String) -> OwnedObjectPath {
    OwnedObjectPath::try_from(p).unwrap()
}

fn words(s: &str) -> Vec<String> {
    s.split(' ').map(str::to_string).collect()
}

fn running(pids: &[(&str, i32)]) -> Inst {
    Inst {
        goal: "start".into(),
        state: "running".into(),
        processes: pids.iter().map(|(n, p)| (n.to_string(), *p)).collect(),
    }
}

/// foo: stopped. bar: running with a post-start process, emits `bar-up`.
/// tty: two instances.
fn initial_state() -> State {
    let mut s = State {
        next_pid: 1000,
        ..State::default()
    };
    s.jobs.insert("foo".into(), JobDef::default());
    let mut bar = JobDef {
        start_on: vec![
            words("A"),
            words("B FOO=BAR"),
            words("starting C x=y"),
            words("/OR"),
            words("/AND"),
        ],
        stop_on: vec![words("stopping JOB=foo RESULT=ok")],
        emits: vec!["bar-up".into()],
        ..JobDef::default()
    };
    bar.instances.insert(String::new(), {
        let mut i = running(&[("main", 4321), ("post-start", 4322)]);
        i.state = "post-start".into();
        i
    });
    s.jobs.insert("bar".into(), bar);
    let mut tty = JobDef {
        start_on: vec![words("bar-up")],
        ..JobDef::default()
    };
    tty.instances.insert("tty2".into(), running(&[("main", 202)]));
    tty.instances.insert("tty1".into(), running(&[("main", 201)]));
    s.jobs.insert("tty".into(), tty);
    s
}

struct Manager(Shared);

#[zbus::interface(name = "com.ubuntu.Upstart0_6")]
impl Manager {
    async fn get_job_by_name(&self, name: String) -> Result<OwnedObjectPath, UpstartError> {
        match self.0.lock().unwrap().jobs.contains_key(&name) {
            true => Ok(path(job_path(&name))),
            false => Err(UpstartError::UnknownJob(format!("Unknown job: {name}"))),
        }
    }

    async fn get_all_jobs(&self) -> Vec<OwnedObjectPath> {
        self.0
            .lock()
            .unwrap()
            .jobs
            .keys()
            .rev()
            .map(|j| path(job_path(j)))
            .collect()
    }

    async fn emit_event(&self, name: String, env: Vec<String>, wait: bool) -> Result<(), UpstartError> {
        self.0
            .lock()
            .unwrap()
            .calls
            .push(format!("EmitEvent {name} {env:?} wait={wait}"));
        match name.as_str() {
            "doomed" => Err(UpstartError::EventFailed("Event failed".into())),
            _ => Ok(()),
        }
    }

    async fn get_env(&self, job_details: Vec<String>, name: String) -> zbus::fdo::Result<String> {
        match name.as_str() {
            "NOPE" => Err(zbus::fdo::Error::InvalidArgs(format!("No such variable: {name}"))),
            _ => Ok(format!("{name} of {job_details:?}")),
        }
    }

    async fn list_env(&self, job_details: Vec<String>) -> Vec<String> {
        self.0
            .lock()
            .unwrap()
            .calls
            .push(format!("ListEnv {job_details:?}"));
        words("TERM=linux B=2 PATH=/bin A=1")
    }

    async fn set_env(&self, job_details: Vec<String>, var: String, replace: bool) {
        self.0
            .lock()
            .unwrap()
            .calls
            .push(format!("SetEnv {job_details:?} {var} replace={replace}"));
    }

    async fn set_env_list(&self, job_details: Vec<String>, vars: Vec<String>, replace: bool) {
        self.0
            .lock()
            .unwrap()
            .calls
            .push(format!("SetEnvList {job_details:?} {vars:?} replace={replace}"));
    }

    #[zbus(property, name = "version")]
    fn version(&self) -> String {
        "init (upshot 0.1.0)".into()
    }
}

struct Job {
    name: String,
    state: Shared,
}

#[zbus::interface(name = "com.ubuntu.Upstart0_6.Job")]
impl Job {
    async fn get_instance(&self, env: Vec<String>) -> Result<OwnedObjectPath, UpstartError> {
        self.state
            .lock()
            .unwrap()
            .calls
            .push(format!("GetInstance {} {env:?}", self.name));
        let state = self.state.lock().unwrap();
        match state.jobs[&self.name].instances.contains_key("") {
            true => Ok(path(instance_path(&self.name, ""))),
            false => Err(UpstartError::UnknownInstance("Unknown instance: ".into())),
        }
    }

    async fn get_instance_by_name(&self, name: String) -> Result<OwnedObjectPath, UpstartError> {
        match self.state.lock().unwrap().jobs[&self.name]
            .instances
            .contains_key(&name)
        {
            true => Ok(path(instance_path(&self.name, &name))),
            false => Err(UpstartError::UnknownInstance(format!("Unknown instance: {name}"))),
        }
    }

    async fn get_all_instances(&self) -> Vec<OwnedObjectPath> {
        let state = self.state.lock().unwrap();
        state.jobs[&self.name]
            .instances
            .keys()
            .rev()
            .map(|i| path(instance_path(&self.name, i)))
            .collect()
    }

    async fn start(
        &self,
        env: Vec<String>,
        wait: bool,
        #[zbus(object_server)] server: &ObjectServer,
    ) -> Result<OwnedObjectPath, UpstartError> {
        let p = instance_path(&self.name, "");
        {
            let mut state = self.state.lock().unwrap();
            state
                .calls
                .push(format!("Job.Start {} {env:?} wait={wait}", self.name));
            if state.jobs[&self.name].instances.contains_key("") {
                return Err(UpstartError::AlreadyStarted(format!(
                    "Job is already running: {}",
                    self.name
                )));
            }
            let pid = state.next_pid;
            state.next_pid += 1;
            let inst = running(&[("main", pid)]);
            state
                .jobs
                .get_mut(&self.name)
                .unwrap()
                .instances
                .insert(String::new(), inst);
        }
        let object = Instance {
            job: self.name.clone(),
            name: String::new(),
            state: self.state.clone(),
        };
        server.at(p.as_str(), object).await?;
        Ok(path(p))
    }

    async fn stop(
        &self,
        env: Vec<String>,
        wait: bool,
        #[zbus(object_server)] server: &ObjectServer,
    ) -> Result<(), UpstartError> {
        let p = instance_path(&self.name, "");
        {
            let mut state = self.state.lock().unwrap();
            state
                .calls
                .push(format!("Job.Stop {} {env:?} wait={wait}", self.name));
            if state
                .jobs
                .get_mut(&self.name)
                .unwrap()
                .instances
                .remove("")
                .is_none()
            {
                return Err(UpstartError::UnknownInstance("Unknown instance: ".into()));
            }
        }
        server.remove::<Instance, _>(p.as_str()).await?;
        Ok(())
    }

    #[zbus(property, name = "name")]
    fn name(&self) -> String {
        self.name.clone()
    }

    #[zbus(property, name = "start_on")]
    fn start_on(&self) -> Vec<Vec<String>> {
        self.state.lock().unwrap().jobs[&self.name].start_on.clone()
    }

    #[zbus(property, name = "stop_on")]
    fn stop_on(&self) -> Vec<Vec<String>> {
        self.state.lock().unwrap().jobs[&self.name].stop_on.clone()
    }

    #[zbus(property, name = "emits")]
    fn emits(&self) -> Vec<String> {
        self.state.lock().unwrap().jobs[&self.name].emits.clone()
    }
}

struct Instance {
    job: String,
    name: String,
    state: Shared,
}

impl Instance {
    fn get(&self) -> Inst {
        self.state.lock().unwrap().jobs[&self.job].instances[&self.name].clone()
    }
}

#[zbus::interface(name = "com.ubuntu.Upstart0_6.Instance")]
impl Instance {
    async fn start(&self, wait: bool) {
        let mut state = self.state.lock().unwrap();
        state
            .calls
            .push(format!("Instance.Start {}/{} wait={wait}", self.job, self.name));
        let inst = state
            .jobs
            .get_mut(&self.job)
            .unwrap()
            .instances
            .get_mut(&self.name)
            .unwrap();
        inst.goal = "start".into();
    }

    async fn stop(&self, wait: bool) {
        let mut state = self.state.lock().unwrap();
        state
            .calls
            .push(format!("Instance.Stop {}/{} wait={wait}", self.job, self.name));
        let inst = state
            .jobs
            .get_mut(&self.job)
            .unwrap()
            .instances
            .get_mut(&self.name)
            .unwrap();
        inst.goal = "stop".into();
        inst.state = "pre-stop".into();
    }

    #[zbus(property, name = "name")]
    fn name(&self) -> String {
        self.name.clone()
    }

    #[zbus(property, name = "goal")]
    fn goal(&self) -> String {
        self.get().goal
    }

    #[zbus(property, name = "state")]
    fn state(&self) -> String {
        self.get().state
    }

    #[zbus(property, name = "processes")]
    fn processes(&self) -> Vec<(String, i32)> {
        self.get().processes
    }
}

struct Stub {
    address: String,
    state: Shared,
}

/// Starts a stand-in daemon on a fresh abstract socket; it serves every
/// connection until the test process exits.
fn stub() -> Stub {
    static N: AtomicUsize = AtomicUsize::new(0);
    let name = format!(
        "/upshot/initctl-test/{}/{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    );
    let listener =
        UnixListener::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap()).unwrap();
    let state: Shared = Arc::new(Mutex::new(initial_state()));
    let shared = state.clone();
    std::thread::spawn(move || {
        let mut connections = Vec::new();
        for stream in listener.incoming() {
            let stream = stream.unwrap();
            let mut builder = zbus::connection::Builder::unix_stream(stream)
                .server(Guid::generate())
                .p2p()
                .serve_at(MANAGER_PATH, Manager(shared.clone()));
            let jobs: Vec<(String, Vec<String>)> = {
                let s = shared.lock().unwrap();
                s.jobs
                    .iter()
                    .map(|(j, d)| (j.clone(), d.instances.keys().cloned().collect()))
                    .collect()
            };
            for (job, instances) in jobs {
                builder = builder.serve_at(
                    job_path(&job),
                    Job {
                        name: job.clone(),
                        state: shared.clone(),
                    },
                );
                for inst in instances {
                    let object = Instance {
                        job: job.clone(),
                        name: inst.clone(),
                        state: shared.clone(),
                    };
                    builder = builder.serve_at(instance_path(&job, &inst), object);
                }
            }
            // A client that fails to authenticate is not our concern.
            if let Ok(conn) = zbus::block_on(builder.build()) {
                connections.push(conn);
            }
        }
    });
    Stub {
        address: format!("unix:abstract={name}"),
        state,
    }
}

struct Run {
    stdout: String,
    stderr: String,
    code: i32,
}

fn run_program(program: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> Run {
    let out = Command::new(program)
        .args(args)
        .env_clear()
        .envs(env.iter().copied())
        .output()
        .unwrap();
    Run {
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
        code: out.status.code().expect("initctl was killed"),
    }
}

fn bin() -> &'static std::path::Path {
    std::path::Path::new(env!("CARGO_BIN_EXE_initctl"))
}

impl Stub {
    fn initctl(&self, args: &[&str]) -> Run {
        self.initctl_env(args, &[])
    }

    fn initctl_env(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let mut all = vec![("UPSTART_SESSION", self.address.as_str())];
        all.extend_from_slice(env);
        run_program(bin(), args, &all)
    }

    fn calls(&self) -> Vec<String> {
        std::mem::take(&mut self.state.lock().unwrap().calls)
    }
}

#[track_caller]
fn ok(run: Run, stdout: &str) {
    assert_eq!(
        (run.stdout.as_str(), run.stderr.as_str(), run.code),
        (stdout, "", 0)
    );
}

#[track_caller]
fn fails(run: Run, stderr: &str) {
    assert_eq!(
        (run.stdout.as_str(), run.stderr.as_str(), run.code),
        ("", stderr, 1)
    );
}

#[test]
fn start_status_stop_and_their_errors() {
    let d = stub();
    ok(d.initctl(&["status", "foo"]), "foo stop/waiting\n");
    assert_eq!(d.calls(), ["GetInstance foo []"]);
    ok(
        d.initctl(&["start", "foo", "A=1"]),
        "foo start/running, process 1000\n",
    );
    assert_eq!(d.calls(), ["Job.Start foo [\"A=1\"] wait=true"]);
    ok(d.initctl(&["status", "foo"]), "foo start/running, process 1000\n");
    fails(
        d.initctl(&["start", "foo"]),
        "initctl: Job is already running: foo\n",
    );
    d.calls();
    ok(d.initctl(&["stop", "foo"]), "foo stop/waiting\n");
    // The instance is looked up before the stop.
    assert_eq!(d.calls(), ["GetInstance foo []", "Job.Stop foo [] wait=true"]);
    fails(d.initctl(&["stop", "foo"]), "initctl: Unknown instance: \n");
    assert_eq!(d.calls(), ["GetInstance foo []"]);
}

#[test]
fn status_lines_show_every_process() {
    let d = stub();
    ok(
        d.initctl(&["status", "bar"]),
        "bar start/post-start, process 4321\n\tpost-start process 4322\n",
    );
}

#[test]
fn an_unknown_job_is_an_error() {
    let d = stub();
    fails(d.initctl(&["status", "nosuch"]), "initctl: Unknown job: nosuch\n");
    fails(d.initctl(&["start", "nosuch"]), "initctl: Unknown job: nosuch\n");
}

#[test]
fn no_wait_and_quiet() {
    let d = stub();
    ok(d.initctl(&["-q", "start", "-n", "foo"]), "");
    assert_eq!(d.calls(), ["Job.Start foo [] wait=false"]);
    ok(d.initctl(&["stop", "foo", "--no-wait"]), "foo stop/waiting\n");
    assert_eq!(d.calls(), ["GetInstance foo []", "Job.Stop foo [] wait=false"]);
    // Errors still show.
    fails(
        d.initctl(&["--quiet", "status", "nosuch"]),
        "initctl: Unknown job: nosuch\n",
    );
}

#[test]
fn list_shows_every_instance_and_stopped_jobs() {
    let d = stub();
    ok(
        d.initctl(&["list"]),
        "bar start/post-start, process 4321\n\tpost-start process 4322\n\
         foo stop/waiting\n\
         tty (tty1) start/running, process 201\n\
         tty (tty2) start/running, process 202\n",
    );
}

#[test]
fn a_job_without_a_name_acts_on_itself() {
    let d = stub();
    let in_bar = [("UPSTART_JOB", "bar"), ("UPSTART_INSTANCE", "")];
    ok(
        d.initctl_env(&["stop"], &in_bar),
        "bar stop/pre-stop, process 4321\n\tpost-start process 4322\n",
    );
    ok(
        d.initctl_env(&["start"], &in_bar),
        "bar start/pre-stop, process 4321\n\tpost-start process 4322\n",
    );
    assert_eq!(
        d.calls(),
        ["Instance.Stop bar/ wait=false", "Instance.Start bar/ wait=false"]
    );
    let in_tty = [("UPSTART_JOB", "tty"), ("UPSTART_INSTANCE", "tty2")];
    ok(
        d.initctl_env(&["status"], &in_tty),
        "tty (tty2) start/running, process 202\n",
    );
    // Outside a job the name is required.
    let run = d.initctl(&["start"]);
    assert_eq!(
        run.stderr,
        "initctl: missing job name\nTry `initctl --help' for more information.\n"
    );
    assert_eq!(run.code, 1);
}

#[test]
fn links_act_as_their_command_and_name_their_messages() {
    let d = stub();
    let dir = std::env::temp_dir().join(format!("initctl-links-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for name in ["start", "status", "stop", "emit"] {
        std::os::unix::fs::symlink(bin(), dir.join(name)).unwrap();
    }
    let env = [("UPSTART_SESSION", d.address.as_str())];
    let run = run_program(&dir.join("status"), &["nosuch"], &env);
    assert_eq!(
        (run.stderr.as_str(), run.code),
        ("status: Unknown job: nosuch\n", 1)
    );
    let run = run_program(&dir.join("start"), &["-n", "foo"], &env);
    assert_eq!(
        (run.stdout.as_str(), run.code),
        ("foo start/running, process 1000\n", 0)
    );
    let run = run_program(&dir.join("stop"), &["foo"], &env);
    assert_eq!((run.stdout.as_str(), run.code), ("foo stop/waiting\n", 0));
    let run = run_program(&dir.join("emit"), &["doomed"], &env);
    assert_eq!((run.stderr.as_str(), run.code), ("emit: Event failed\n", 1));
    let run = run_program(&dir.join("stop"), &[], &env);
    assert_eq!(
        run.stderr,
        "stop: missing job name\nTry `stop --help' for more information.\n"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn emit_passes_the_event_and_reports_failure() {
    let d = stub();
    ok(d.initctl(&["emit", "ev", "A=1", "B=2"]), "");
    ok(d.initctl(&["emit", "--no-wait", "ev2"]), "");
    assert_eq!(
        d.calls(),
        [
            "EmitEvent ev [\"A=1\", \"B=2\"] wait=true",
            "EmitEvent ev2 [] wait=false"
        ]
    );
    fails(d.initctl(&["emit", "doomed"]), "initctl: Event failed\n");
    let run = d.initctl(&["emit"]);
    assert_eq!(
        run.stderr,
        "initctl: missing event name\nTry `initctl --help' for more information.\n"
    );
}

#[test]
fn show_config_and_check_config() {
    let d = stub();
    ok(
        d.initctl(&["show-config", "bar"]),
        "bar\n  emits bar-up\n  start on (A and (B FOO=BAR or starting C x=y))\n  stop on stopping JOB=foo RESULT=ok\n",
    );
    ok(
        d.initctl(&["show-config", "-e"]),
        "bar\n  emits bar-up\n\
         \x20 start on A (job:, env:)\n\
         \x20 start on B (job:, env: FOO=BAR)\n\
         \x20 start on starting (job: C, env: x=y)\n\
         \x20 stop on stopping (job: foo, env: RESULT=ok)\n\
         foo\n\
         tty\n\
         \x20 start on bar-up (job:, env:)\n",
    );
    // A and B are unknown events, C an unknown job: the whole `and` fails.
    let run = d.initctl(&["check-config"]);
    assert_eq!(
        (run.stdout.as_str(), run.code),
        (
            "bar\n  start on: unknown job C\n  start on: unknown event B\n  start on: unknown event A\n",
            1
        )
    );
    ok(d.initctl(&["check-config", "-i", "A,B", "tty"]), "");
    fails(
        d.initctl(&["check-config", "nosuch"]),
        "initctl: Invalid job class: nosuch\n",
    );
}

#[test]
fn environment_commands_target_the_calling_job_unless_global() {
    let d = stub();
    let in_tty = [("UPSTART_JOB", "tty"), ("UPSTART_INSTANCE", "tty1")];
    ok(
        d.initctl_env(&["get-env", "X"], &in_tty),
        "X of [\"tty\", \"tty1\"]\n",
    );
    ok(d.initctl_env(&["get-env", "-g", "X"], &in_tty), "X of []\n");
    ok(d.initctl(&["get-env", "X"]), "X of []\n");
    fails(
        d.initctl(&["get-env", "NOPE"]),
        "initctl: No such variable: NOPE\n",
    );
    ok(d.initctl(&["list-env"]), "A=1\nB=2\nPATH=/bin\nTERM=linux\n");
    ok(d.initctl_env(&["set-env", "A=1"], &in_tty), "");
    ok(d.initctl(&["set-env", "--retain", "A=1", "B"]), "");
    assert_eq!(
        d.calls(),
        [
            "ListEnv []",
            "SetEnv [\"tty\", \"tty1\"] A=1 replace=true",
            "SetEnvList [] [\"A=1\", \"B\"] replace=false"
        ]
    );
}

#[test]
fn version_and_unknown_methods() {
    let d = stub();
    ok(d.initctl(&["version"]), "init (upshot 0.1.0)\n");
    // D-Bus errors that are not Upstart's print their message too.
    let run = d.initctl(&["reload-configuration"]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr
            .starts_with("initctl: Unknown method 'ReloadConfiguration'"),
        "{}",
        run.stderr
    );
}

#[test]
fn connection_failures_and_usage_errors() {
    let run = run_program(
        bin(),
        &["status", "foo"],
        &[("UPSTART_SESSION", "unix:abstract=/upshot/no-such-socket")],
    );
    assert_eq!(
        (run.stderr.as_str(), run.code),
        (
            "initctl: Unable to connect to Upstart: Failed to connect to socket /upshot/no-such-socket: Connection refused\n",
            1
        )
    );
    let run = run_program(bin(), &["--user", "list"], &[]);
    assert_eq!(
        run.stderr,
        "initctl: UPSTART_SESSION isn't set in the environment. Unable to locate the Upstart instance.\n"
    );
    let run = run_program(
        bin(),
        &["--dest=com.x", "list"],
        &[("UPSTART_SESSION", "unix:abstract=/x")],
    );
    assert_eq!(
        (run.stderr.as_str(), run.code),
        (
            "initctl: --dest given without --system\nTry `initctl --help' for more information.\n",
            1
        )
    );
    let run = run_program(bin(), &[], &[]);
    assert_eq!(
        (run.stderr.as_str(), run.code),
        (
            "initctl: missing command\nTry `initctl --help' for more information.\n",
            1
        )
    );
    let run = run_program(bin(), &["--help"], &[]);
    assert_eq!(run.code, 0);
    assert!(
        run.stdout
            .starts_with("Usage: initctl [OPTION]... COMMAND [OPTION]... [ARG]...\n")
    );
}

/// Start-up cost: `cargo test -p initctl --test stub_daemon -- --ignored
/// --nocapture` (set `INITCTL_BIN` to time a release build). Fails if the
/// median run of `initctl status` takes 25 ms or more.
#[test]
#[ignore = "timing; run explicitly"]
fn timing_of_200_status_runs() {
    let d = stub();
    let program = std::env::var_os("INITCTL_BIN")
        .map(std::path::PathBuf::from)
        .unwrap_or(bin().to_path_buf());
    let env = [("UPSTART_SESSION", d.address.as_str())];
    let mut times = Vec::new();
    let all = std::time::Instant::now();
    for _ in 0..200 {
        let t = std::time::Instant::now();
        let run = run_program(&program, &["status", "bar"], &env);
        times.push(t.elapsed());
        assert_eq!(run.code, 0);
    }
    let total = all.elapsed();
    times.sort();
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{}: 200 runs in {:.0} ms; min {:.2} ms, median {:.2} ms, p90 {:.2} ms, max {:.2} ms",
        program.display(),
        ms(total),
        ms(times[0]),
        ms(times[100]),
        ms(times[180]),
        ms(times[199])
    );
    assert!(ms(times[100]) < 25.0);
}

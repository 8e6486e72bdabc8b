//! The cost of control over D-Bus, measured against the release
//! `init --user` and `initctl`, side by side in one run:
//!
//! 1. `initctl start quick` (a trivial task: `exec true`) and `initctl
//!    status svc` (a running service), as whole processes, [`RUNS`] times
//!    each, against the baseline of forking and waiting for `/bin/true`
//!    [`RUNS`] times; reported as ratios to that baseline.
//! 2. The same against a second daemon with [`EXTRA`] more job classes
//!    loaded, running at the same time; reported as the ratio to the
//!    3-job figures (target ≤ 1.1: the cost of a call does not grow with
//!    the number of jobs).
//! 3. `EmitEvent` with wait=false over one connection: [`EVENTS`] events
//!    from [`IN_FLIGHT`] concurrent callers on that connection (calls are
//!    pipelined, each still waits for its own reply); events per second
//!    (target ≥ 50,000/s). Every event is handled, and its `EventEmitted`
//!    signal sent back, before its reply.
//!
//! Rounds alternate (baseline, then start and status against each daemon)
//! [`ROUNDS`] times and the medians are compared, so that the machine's
//! load drifts alike for all.
//! Everything lives under `target/tmp/control-bench-PID`, removed at the
//! end. Run with `cargo bench -p initctl --bench control`; the last line
//! reads `control: start R×, status R× (baseline B ms/200); with 1000 jobs
//! start R, status R; emit N events/s`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const INITCTL: &str = env!("CARGO_BIN_EXE_initctl");
const RUNS: usize = 200;
const ROUNDS: usize = 5;
const EXTRA: usize = 1000;
const EVENTS: usize = 100_000;
const IN_FLIGHT: usize = 32;
const PATIENCE: Duration = Duration::from_secs(30);

/// `init` of the same profile: built by cargo next to this bench's
/// `initctl`.
fn init_binary() -> PathBuf {
    let dir = Path::new(INITCTL).parent().expect("initctl in a target dir");
    let status = Command::new(env!("CARGO"))
        .args(["build", "--release", "--quiet", "-p", "init", "--bin", "init"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .expect("run cargo build");
    assert!(status.success(), "cargo build -p init failed");
    let init = dir.join("init");
    assert!(init.is_file(), "no init binary at {}", init.display());
    init
}

struct Daemon {
    child: Child,
    address: String,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.child.wait();
    }
}

fn write_jobs(conf: &Path, extra: usize) {
    fs::create_dir_all(conf).unwrap();
    fs::write(conf.join("quick.conf"), "task\nexec true\n").unwrap();
    fs::write(conf.join("svc.conf"), "start on startup\nexec sleep 1000\n").unwrap();
    fs::write(
        conf.join("other.conf"),
        "start on never-emitted\nexec sleep 1000\n",
    )
    .unwrap();
    for i in 0..extra {
        let text = match i % 4 {
            0 => format!("start on started job{}\nexec sleep 1000\n", (i + 1) % extra),
            1 => format!("start on foo-{i} or (bar and baz X={i})\nenv A={i}\nexec /bin/true\n"),
            2 => format!(
                "instance $N\nstop on stopping job{}\nscript\n  echo {i}\nend script\n",
                i / 2
            ),
            _ => format!("start on net-device-up IFACE=eth{i}\ntask\nexec echo {i}\n"),
        };
        fs::write(conf.join(format!("job{i}.conf")), text).unwrap();
    }
}

fn start_daemon(init: &Path, root: &Path, extra: usize) -> Daemon {
    let conf = root.join(format!("conf-{extra}"));
    write_jobs(&conf, extra);
    let run = root.join(format!("run-{extra}"));
    fs::create_dir_all(&run).unwrap();
    let child = Command::new(init)
        .args(["--user", "--no-log", "-q", "--confdir"])
        .arg(&conf)
        .env("XDG_RUNTIME_DIR", &run)
        .stdin(Stdio::null())
        .spawn()
        .expect("start init --user");
    let session = run.join(format!("upstart/sessions/{}.session", child.id()));
    let deadline = Instant::now() + PATIENCE;
    let address = loop {
        if let Ok(text) = fs::read_to_string(&session)
            && let Some(a) = text.trim().strip_prefix("UPSTART_SESSION=")
        {
            break a.to_string();
        }
        assert!(
            Instant::now() < deadline,
            "init did not write {}",
            session.display()
        );
        std::thread::sleep(Duration::from_millis(5));
    };
    let d = Daemon { child, address };
    // Wait until everything is loaded and svc runs.
    let deadline = Instant::now() + PATIENCE;
    loop {
        let out = initctl(&d.address, &["status", "svc"]);
        if out.starts_with("svc start/running") {
            break;
        }
        assert!(Instant::now() < deadline, "svc did not start: {out}");
        std::thread::sleep(Duration::from_millis(10));
    }
    d
}

fn initctl(address: &str, args: &[&str]) -> String {
    let out = Command::new(INITCTL)
        .args(args)
        .env("UPSTART_SESSION", address)
        .output()
        .expect("run initctl");
    assert!(
        out.status.success(),
        "initctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Seconds for `RUNS` runs of a command (its output discarded).
fn time_runs(program: &str, args: &[&str], address: Option<&str>) -> f64 {
    let start = Instant::now();
    for _ in 0..RUNS {
        let mut cmd = Command::new(program);
        cmd.args(args).stdout(Stdio::null()).stderr(Stdio::null());
        if let Some(a) = address {
            cmd.env("UPSTART_SESSION", a);
        }
        let status = cmd.status().expect("run");
        assert!(status.success(), "{program} {args:?} failed");
    }
    start.elapsed().as_secs_f64()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Medians (seconds per [`RUNS`]) of the baseline, then start and status
/// against each daemon, over rounds that alternate all of them.
fn measure(daemons: &[&Daemon]) -> (f64, Vec<(f64, f64)>) {
    let mut base = Vec::new();
    let mut each: Vec<(Vec<f64>, Vec<f64>)> = daemons.iter().map(|_| (Vec::new(), Vec::new())).collect();
    for _ in 0..ROUNDS {
        base.push(time_runs("/bin/true", &[], None));
        for (d, (start, status)) in daemons.iter().zip(each.iter_mut()) {
            start.push(time_runs(INITCTL, &["start", "quick"], Some(&d.address)));
            status.push(time_runs(INITCTL, &["status", "svc"], Some(&d.address)));
        }
    }
    let each = each.into_iter().map(|(a, b)| (median(a), median(b))).collect();
    (median(base), each)
}

/// Events per second of EmitEvent (wait=false) over one connection.
fn emit_rate(address: &str) -> f64 {
    zbus::block_on(async {
        let conn = zbus::connection::Builder::address(address)
            .p2p()
            .build()
            .await
            .expect("connect");
        let rt = zruntime::SharedRuntime::current().expect("runtime");
        let per = EVENTS / IN_FLIGHT;
        let start = Instant::now();
        let tasks: Vec<_> = (0..IN_FLIGHT)
            .map(|t| {
                let conn = conn.clone();
                rt.spawn("emitter", async move {
                    for i in 0..per {
                        let env = vec![format!("N={}", t * per + i)];
                        conn.call_method(
                            Some("com.ubuntu.Upstart"),
                            "/com/ubuntu/Upstart",
                            Some("com.ubuntu.Upstart0_6"),
                            "EmitEvent",
                            &("bench-event", env, false),
                        )
                        .await
                        .expect("EmitEvent");
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.expect("emitter task");
        }
        (per * IN_FLIGHT) as f64 / start.elapsed().as_secs_f64()
    })
}

fn main() {
    let init = init_binary();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../target/tmp")
        .join(format!("control-bench-{}", std::process::id()));
    let _ = fs::remove_dir_all(&root);
    fs::create_dir_all(&root).unwrap();

    // Both daemons run at once and the rounds alternate between them, so
    // that the machine's load drifts alike for both.
    let small = start_daemon(&init, &root, 0);
    let big = start_daemon(&init, &root, EXTRA);
    let (base, each) = measure(&[&small, &big]);
    let ((start3, status3), (start_big, status_big)) = (each[0], each[1]);
    drop(big);
    let emit = emit_rate(&small.address);
    drop(small);
    let _ = fs::remove_dir_all(&root);

    let ms = |s: f64| s * 1000.0 / RUNS as f64;
    println!(
        "3 jobs: /bin/true {:.3} ms, initctl start {:.3} ms ({:.2}x), initctl status {:.3} ms ({:.2}x)",
        ms(base),
        ms(start3),
        start3 / base,
        ms(status3),
        status3 / base
    );
    println!(
        "{} jobs: initctl start {:.3} ms ({:.2}x), initctl status {:.3} ms ({:.2}x)",
        EXTRA + 3,
        ms(start_big),
        start_big / base,
        ms(status_big),
        status_big / base
    );
    let start_ratio = start_big / start3;
    let status_ratio = status_big / status3;
    println!(
        "with {} jobs against 3 jobs: start {start_ratio:.2} (target <= 1.1), status {status_ratio:.2} (target <= 1.1)",
        EXTRA + 3
    );
    println!("EmitEvent wait=false over one connection: {emit:.0} events/s (target >= 50000)");
    println!(
        "control: start {:.2}x, status {:.2}x (baseline {:.1} ms/{RUNS}); with {EXTRA} jobs start {start_ratio:.2}, status {status_ratio:.2}; emit {emit:.0} events/s",
        start3 / base,
        status3 / base,
        base * 1000.0
    );
}

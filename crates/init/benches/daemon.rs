//! The session daemon seen from outside: start-up, respawn latency, idle
//! wake-ups and memory of the release `init --user`, each measured in the
//! same run against its baseline. There is no control client yet, so the
//! daemon is observed through `/proc`: its children
//! (`/proc/PID/task/*/children`) and their `comm`, the context-switch
//! counters of its threads, and its PSS (`/proc/PID/smaps_rollup`).
//!
//! 1. Start-up: from launching `init --user --no-log` with 100 job files
//!    (`start on startup`, `exec sleep 1000`) until all 100 `sleep`
//!    processes are its children; the baseline is a plain loop in a thread
//!    of this process starting the same 100 `sleep 1000` with
//!    `std::process::Command`, timed until they all exist, watched the
//!    same way. One warm-up of each, then [`STARTUP_ROUNDS`] alternating
//!    rounds; medians and their ratio (target ≤ 1.5×).
//! 2. Respawn latency: one `respawn` job; [`RESPAWNS`] times, SIGKILL its
//!    main process and time until a new `sleep` child of the daemon
//!    exists, the kills [`RESPAWN_GAP`] apart; median and p90 (target
//!    median < 2 ms).
//! 3. Idle context switches: with 100 `sleep` services running and the
//!    daemon blocked in `poll`, the voluntary + involuntary switches of all
//!    its threads over [`IDLE`] of nothing (target 0).
//! 4. Memory: PSS of the daemon once it is idle with 1,000 job classes
//!    loaded (a mix of `start on` expressions, `env`, `exec` and scripts;
//!    none started) and with no job file, median of [`MEMORY_ROUNDS`]; the
//!    difference over 1,000 is the cost per class (target below 4 MB in all
//!    with 1,000 jobs). The daemon runs from a private copy of the binary,
//!    so that no other `init` on the machine shares (and divides) its pages.
//!
//! Waiting for processes polls `/proc` every [`POLL_US`] µs (timer slack
//! 1 ns), not in a loop that never sleeps: see [`POLL_US`].
//!
//! Everything lives in a directory under `target/tmp`, removed at the end.
//! Run with `cargo bench -p init --bench daemon [-- PART…]` (parts:
//! `startup`, `respawn`, `idle`, `memory`; all by default). The
//! environment may set `DAEMON_BENCH_POLL_US` (the poll period, 0 for a
//! busy loop) and `DAEMON_BENCH_INIT` (another `init` binary to measure).
//! After a full run the last line reads `daemon: startup ratio R, respawn
//! median M ms, idle switches S, pss K kB with 1000 jobs`.

mod common;

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::thread::sleep;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use common::typical_job;

const INIT: &str = env!("CARGO_BIN_EXE_init");
const SERVICES: usize = 100;
const STARTUP_ROUNDS: usize = 5;
const RESPAWNS: usize = 200;
const RESPAWN_GAP: Duration = Duration::from_millis(5);
const IDLE: Duration = Duration::from_secs(5);
const CLASSES: usize = 1000;
const MEMORY_ROUNDS: usize = 3;
/// How long any wait in this benchmark may take before it gives up.
const PATIENCE: Duration = Duration::from_secs(20);
/// The pause between two looks at `/proc` while waiting for processes,
/// in µs; `DAEMON_BENCH_POLL_US` overrides it, 0 for a loop that never
/// sleeps. Such a loop holds a CPU: on a machine with two, a child just
/// forked (by the daemon or by the baseline) often lands on the poller's
/// CPU and waits there for a whole scheduler slice (about 3 ms) before it
/// can exec, while the other CPU idles; start-up times triple and vary by
/// 2× from run to run, measuring the observer more than the daemon.
const POLL_US: u64 = 50;

/// The daemon under test: this package's release `init`, or the binary
/// `DAEMON_BENCH_INIT` names (to compare builds).
fn init_binary() -> PathBuf {
    std::env::var_os("DAEMON_BENCH_INIT").map_or_else(|| PathBuf::from(INIT), PathBuf::from)
}

/// Sleeps between two polls (see [`POLL_US`]).
fn pause() {
    static GAP: OnceLock<Duration> = OnceLock::new();
    let gap = *GAP.get_or_init(|| {
        let us = std::env::var("DAEMON_BENCH_POLL_US")
            .ok()
            .and_then(|v| v.parse().ok());
        Duration::from_micros(us.unwrap_or(POLL_US))
    });
    if !gap.is_zero() {
        sleep(gap);
    }
}

/// The children of `pid` (all its threads'), in no particular order.
fn children(pid: u32, out: &mut Vec<u32>) {
    out.clear();
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return;
    };
    for task in tasks.flatten() {
        let Ok(list) = fs::read_to_string(task.path().join("children")) else {
            continue;
        };
        out.extend(
            list.split_ascii_whitespace()
                .filter_map(|p| p.parse::<u32>().ok()),
        );
    }
}

fn comm(pid: u32) -> Option<String> {
    let c = fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    Some(c.trim_end().to_string())
}

/// Watches the children of one process for `sleep`s. A child seen running
/// `sleep` stays counted without being read again (its `comm` cannot change
/// back while it lives), so each poll costs a `readdir`, one `children`
/// read per thread and a `comm` read per child not yet seen as `sleep`.
struct Sleeps {
    parent: u32,
    seen: HashSet<u32>,
    buf: Vec<u32>,
}

impl Sleeps {
    fn new(parent: u32) -> Sleeps {
        Sleeps {
            parent,
            seen: HashSet::new(),
            buf: Vec::new(),
        }
    }

    /// Polls once; returns how many children are `sleep`s.
    fn poll(&mut self) -> usize {
        children(self.parent, &mut self.buf);
        let mut n = 0;
        for &c in &self.buf {
            if self.seen.contains(&c) || comm(c).as_deref() == Some("sleep") {
                self.seen.insert(c);
                n += 1;
            }
        }
        n
    }

    /// Polls until `n` children are `sleep`s.
    fn wait_for(&mut self, n: usize, what: &str) {
        let t0 = Instant::now();
        while self.poll() < n {
            pause();
            assert!(
                t0.elapsed() < PATIENCE,
                "{what}: {n} sleep children did not appear"
            );
        }
    }

    /// The current `sleep` children.
    fn current(&mut self) -> Vec<u32> {
        children(self.parent, &mut self.buf);
        self.buf
            .iter()
            .copied()
            .filter(|&c| comm(c).as_deref() == Some("sleep"))
            .collect()
    }
}

/// A running `init --user` over one conf dir; killed if dropped running.
struct Daemon {
    child: Option<Child>,
    pid: u32,
}

impl Daemon {
    fn spawn(conf: &Path, log: &Path) -> Daemon {
        Daemon::spawn_binary(&init_binary(), conf, log)
    }

    fn spawn_binary(init: &Path, conf: &Path, log: &Path) -> Daemon {
        let child = Command::new(init)
            .args(["--user", "--no-log", "--confdir"])
            .arg(conf)
            .arg("--logdir")
            .arg(log)
            // No session file in the user's runtime dir.
            .env_remove("XDG_RUNTIME_DIR")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn init");
        let pid = child.id();
        Daemon {
            child: Some(child),
            pid,
        }
    }

    /// Waits until the daemon is blocked in `poll` (its main loop with
    /// nothing to do: every file loaded, the startup event handled).
    fn wait_idle(&self) {
        let t0 = Instant::now();
        loop {
            let sys = fs::read_to_string(format!("/proc/{}/syscall", self.pid)).unwrap_or_default();
            let nr = sys
                .split_ascii_whitespace()
                .next()
                .and_then(|n| n.parse::<i64>().ok());
            if nr == Some(libc::SYS_poll) || nr == Some(libc::SYS_ppoll) {
                return;
            }
            assert!(t0.elapsed() < PATIENCE, "init did not go idle");
            sleep(Duration::from_millis(1));
        }
    }

    /// SIGTERM, then waits for the exit (SIGKILL after [`PATIENCE`]).
    fn stop(mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = kill(Pid::from_raw(self.pid as i32), Signal::SIGTERM);
        let t0 = Instant::now();
        loop {
            match child.try_wait() {
                Ok(Some(status)) => {
                    assert!(status.success(), "init exited with {status}");
                    return;
                }
                Ok(None) if t0.elapsed() < PATIENCE => sleep(Duration::from_millis(2)),
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("init did not exit on SIGTERM");
                }
            }
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let mut sleeps = Vec::new();
            children(self.pid, &mut sleeps);
            let _ = child.kill();
            let _ = child.wait();
            for c in sleeps {
                let _ = kill(Pid::from_raw(c as i32), Signal::SIGKILL);
            }
        }
    }
}

/// The scratch directory; removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Scratch {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("daemon-bench-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("create scratch dir");
        Scratch(dir)
    }

    /// A new empty directory inside.
    fn dir(&self, name: &str) -> PathBuf {
        let d = self.0.join(name);
        fs::create_dir_all(&d).expect("create dir");
        d
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn write_jobs(dir: &Path, n: usize, body: impl Fn(usize) -> String) {
    for i in 0..n {
        fs::write(dir.join(format!("job-{i}.conf")), body(i)).expect("write job file");
    }
}

fn sorted(mut v: Vec<Duration>) -> Vec<Duration> {
    v.sort();
    v
}

/// Nearest-rank percentile of sorted samples.
fn pct(v: &[Duration], p: usize) -> Duration {
    let rank = (v.len() * p).div_ceil(100).max(1);
    v[rank - 1]
}

fn median(v: &[Duration]) -> Duration {
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn verdict(ok: bool) -> &'static str {
    if ok { "ok" } else { "MISSED" }
}

/// One daemon start-up: launch to 100 `sleep` children.
fn startup_daemon(conf: &Path, log: &Path) -> Duration {
    let t0 = Instant::now();
    let d = Daemon::spawn(conf, log);
    Sleeps::new(d.pid).wait_for(SERVICES, "init start-up");
    let took = t0.elapsed();
    d.stop();
    took
}

/// The baseline: a thread of this process starts the same 100 `sleep
/// 1000` one after the other while the main thread watches for them the
/// way it watches the daemon's.
fn startup_baseline() -> Duration {
    let mut sleeps = Sleeps::new(std::process::id());
    let t0 = Instant::now();
    let spawner = std::thread::spawn(|| {
        (0..SERVICES)
            .map(|_| {
                Command::new("sleep")
                    .arg("1000")
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("spawn sleep")
            })
            .collect::<Vec<Child>>()
    });
    sleeps.wait_for(SERVICES, "baseline");
    let took = t0.elapsed();
    let mut kids = spawner.join().expect("spawner thread");
    for k in &mut kids {
        let _ = k.kill();
    }
    for k in &mut kids {
        let _ = k.wait();
    }
    took
}

fn bench_startup(conf: &Path, log: &Path) -> f64 {
    // Warm-up (page cache, binaries).
    startup_baseline();
    startup_daemon(conf, log);
    let (mut base, mut daemon) = (Vec::new(), Vec::new());
    for _ in 0..STARTUP_ROUNDS {
        base.push(startup_baseline());
        daemon.push(startup_daemon(conf, log));
    }
    let (base, daemon) = (sorted(base), sorted(daemon));
    let (b, d) = (median(&base), median(&daemon));
    let ratio = d.as_secs_f64() / b.as_secs_f64();
    let list = |v: &[Duration]| {
        v.iter()
            .map(|d| format!("{:.2}", ms(*d)))
            .collect::<Vec<_>>()
            .join(" ")
    };
    println!(
        "startup:  {SERVICES} services, median of {STARTUP_ROUNDS}: init {:.2} ms, baseline {:.2} ms, ratio {ratio:.2}x (target <= 1.5x) {}",
        ms(d),
        ms(b),
        verdict(ratio <= 1.5)
    );
    println!(
        "          init ms [{}], baseline ms [{}]",
        list(&daemon),
        list(&base)
    );
    ratio
}

fn bench_respawn(conf: &Path, log: &Path) -> Duration {
    fs::write(
        conf.join("respawner.conf"),
        "start on startup\nrespawn\nrespawn limit unlimited\nexec sleep 1000\n",
    )
    .expect("write job file");
    let d = Daemon::spawn(conf, log);
    let mut sleeps = Sleeps::new(d.pid);
    sleeps.wait_for(1, "respawn job start");
    d.wait_idle();
    let mut lat = Vec::with_capacity(RESPAWNS);
    for _ in 0..RESPAWNS {
        let cur = sleeps.current();
        assert_eq!(cur.len(), 1, "one sleep child expected, found {cur:?}");
        let old = cur[0];
        let t0 = Instant::now();
        kill(Pid::from_raw(old as i32), Signal::SIGKILL).expect("kill main process");
        loop {
            children(d.pid, &mut sleeps.buf);
            if sleeps
                .buf
                .iter()
                .any(|&c| c != old && comm(c).as_deref() == Some("sleep"))
            {
                break;
            }
            assert!(t0.elapsed() < PATIENCE, "no respawn after killing {old}");
            pause();
        }
        lat.push(t0.elapsed());
        sleep(RESPAWN_GAP);
        // The old main process must have been reaped by now.
        d.wait_idle();
    }
    d.stop();
    let lat = sorted(lat);
    let m = median(&lat);
    println!(
        "respawn:  {RESPAWNS} kills: median {:.3} ms, p90 {:.3} ms, min {:.3} ms, max {:.3} ms (target median < 2 ms) {}",
        ms(m),
        ms(pct(&lat, 90)),
        ms(lat[0]),
        ms(lat[lat.len() - 1]),
        verdict(m < Duration::from_millis(2))
    );
    m
}

/// Voluntary + involuntary context switches of all the threads of `pid`,
/// and the number of threads.
fn switches(pid: u32) -> (u64, usize) {
    let mut total = 0;
    let mut threads = 0;
    for task in fs::read_dir(format!("/proc/{pid}/task"))
        .expect("read task dir")
        .flatten()
    {
        let Ok(status) = fs::read_to_string(task.path().join("status")) else {
            continue;
        };
        threads += 1;
        for line in status.lines() {
            if let Some(v) = line
                .strip_prefix("voluntary_ctxt_switches:")
                .or_else(|| line.strip_prefix("nonvoluntary_ctxt_switches:"))
            {
                total += v.trim().parse::<u64>().unwrap_or(0);
            }
        }
    }
    (total, threads)
}

fn bench_idle(conf: &Path, log: &Path) -> u64 {
    let d = Daemon::spawn(conf, log);
    Sleeps::new(d.pid).wait_for(SERVICES, "idle set-up");
    d.wait_idle();
    let (before, threads) = switches(d.pid);
    sleep(IDLE);
    let (after, _) = switches(d.pid);
    let n = after - before;
    println!(
        "idle:     {SERVICES} services, {threads} thread(s): {n} context switches in {} s (target 0) {}",
        IDLE.as_secs(),
        verdict(n == 0)
    );
    d.stop();
    n
}

/// `Pss`, `Pss_Anon` and `Rss` of `pid`, in kB.
fn pss(pid: u32) -> (u64, u64, u64) {
    let text = fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).expect("read smaps_rollup");
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    (field("Pss:"), field("Pss_Anon:"), field("Rss:"))
}

fn idle_pss(init: &Path, conf: &Path, log: &Path) -> (u64, u64, u64) {
    let d = Daemon::spawn_binary(init, conf, log);
    d.wait_idle();
    // Nothing may change once idle; read after a moment to be sure.
    sleep(Duration::from_millis(50));
    d.wait_idle();
    let p = pss(d.pid);
    d.stop();
    p
}

/// The median (by PSS) of [`MEMORY_ROUNDS`] idle daemons.
fn median_pss(init: &Path, conf: &Path, log: &Path) -> (u64, u64, u64) {
    let mut runs: Vec<_> = (0..MEMORY_ROUNDS).map(|_| idle_pss(init, conf, log)).collect();
    runs.sort();
    runs[MEMORY_ROUNDS / 2]
}

fn bench_memory(scratch: &Scratch, log: &Path) -> u64 {
    // A private copy of the binary: its pages are then shared with no other
    // `init` on the machine (which would divide their PSS).
    let init = scratch.0.join("init");
    fs::copy(init_binary(), &init).expect("copy init");
    let (empty, full) = (scratch.dir("empty"), scratch.dir("classes"));
    write_jobs(&full, CLASSES, typical_job);
    let (p0, a0, r0) = median_pss(&init, &empty, log);
    let (p1, a1, r1) = median_pss(&init, &full, log);
    let per_class = (p1 as f64 - p0 as f64) * 1024.0 / CLASSES as f64;
    println!(
        "memory:   PSS {p1} kB with {CLASSES} jobs (anon {a1} kB, RSS {r1} kB), {p0} kB with none (anon {a0} kB, RSS {r0} kB): {per_class:.0} B per class (target < 4096 kB) {}",
        verdict(p1 < 4096)
    );
    p1
}

fn main() {
    // `cargo bench` passes `--bench`; other words name the parts to run.
    let only: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    let run = |part: &str| only.is_empty() || only.iter().any(|o| o == part);
    // Sleeps between polls as short as asked (the default slack is 50 µs).
    let _ = nix::sys::prctl::set_timerslack(1);
    let scratch = Scratch::new();
    let log = scratch.dir("log");
    let services = scratch.dir("services");
    write_jobs(&services, SERVICES, |_| {
        "start on startup\nexec sleep 1000\n".into()
    });

    let ratio = run("startup").then(|| bench_startup(&services, &log));
    let respawn = run("respawn").then(|| bench_respawn(&scratch.dir("respawn"), &log));
    let idle = run("idle").then(|| bench_idle(&services, &log));
    let pss = run("memory").then(|| bench_memory(&scratch, &log));
    drop(scratch);

    let (Some(ratio), Some(respawn), Some(idle), Some(pss)) = (ratio, respawn, idle, pss) else {
        return;
    };
    println!(
        "daemon: startup ratio {ratio:.2}, respawn median {:.3} ms, idle switches {idle}, pss {pss} kB with {CLASSES} jobs",
        ms(respawn)
    );
}

//! Event throughput of the engine, and its memory per job class.
//!
//! For 100 and then 10,000 job classes (`jN`: `start on ev-N or started
//! j(N-1)`, `stop on stopping x-N`), 1,000,000 events that no job listens
//! to go through `Engine::handle` with one reused effect buffer, cleared
//! after each. The figure for each size is the best of [`ROUNDS`] timed
//! runs (after a warm-up); the per-event cost at 10,000 classes should be
//! at most 1.5 × the cost at 100, and the rate at least 1,000,000 events/s.
//!
//! Memory per class comes from a counting global allocator: bytes live
//! after loading 10,000 classes minus bytes live with none loaded, over
//! 10,000 (the parsed `JobConf` each class keeps included).
//!
//! For information, with the 10,000 classes: how long the chain of
//! `started` events takes to start them all from one `ev-0`, and the rate of
//! stop/start cycles driven by events (`stopping JOB=x-N` then `ev-N`, the
//! kill and spawn answered as a supervisor would).
//!
//! Run with `cargo bench -p init --bench engine`. The last line reads
//! `engine: N events/s with 100 jobs, M events/s with 10000 jobs`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicIsize, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use init::engine::{BusSignal, Effect, Engine, EngineConfig, ExitStatus, Input, Pid};
use jobconf_parser::parse_job;

/// Counts the bytes live and the allocations made.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);
static ALLOCS: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size as isize - layout.size() as isize, Ordering::Relaxed);
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const EVENTS: usize = 1_000_000;
const WARMUP: usize = 50_000;
const ROUNDS: usize = 3;
/// Distinct names of the unrelated events.
const NOISE_NAMES: usize = 64;
const CYCLES: usize = 20_000;

fn job_text(n: usize) -> String {
    let start = if n == 0 {
        "start on ev-0".to_string()
    } else {
        format!("start on ev-{n} or started j{}", n - 1)
    };
    format!("{start}\nstop on stopping x-{n}\nexec /usr/sbin/daemon-{n} --foreground\n")
}

/// Loads `jobs` classes into `engine`, parsing each just before.
fn load(engine: &mut Engine, jobs: usize, out: &mut Vec<Effect>) {
    for n in 0..jobs {
        let conf = parse_job(job_text(n).as_bytes()).expect("bench job parses");
        engine.handle(
            0,
            Input::LoadJob {
                name: format!("j{n}"),
                conf: Box::new(conf),
            },
            out,
        );
        out.clear();
    }
}

/// Emits `count` unrelated events; returns the time taken and how many
/// allocations were made per event.
fn emit_noise(engine: &mut Engine, names: &[String], count: usize, out: &mut Vec<Effect>) -> (Duration, f64) {
    let allocs = ALLOCS.load(Ordering::Relaxed);
    let t = Instant::now();
    for i in 0..count {
        engine.handle(
            0,
            Input::Emit {
                name: names[i % names.len()].clone(),
                env: Vec::new(),
                by: None,
            },
            out,
        );
        black_box(&out);
        out.clear();
    }
    let d = t.elapsed();
    let per = (ALLOCS.load(Ordering::Relaxed) - allocs) as f64 / count as f64;
    (d, per)
}

fn rate(count: usize, d: Duration) -> u64 {
    (count as f64 / d.as_secs_f64()) as u64
}

/// The best of [`ROUNDS`] runs of [`EVENTS`] unrelated events with `jobs`
/// classes loaded: events/s and allocations per event.
fn unrelated(jobs: usize) -> (u64, f64) {
    let mut engine = Engine::new(EngineConfig::default());
    let mut out = Vec::new();
    load(&mut engine, jobs, &mut out);
    let names: Vec<String> = (0..NOISE_NAMES).map(|i| format!("noise-{i}")).collect();
    emit_noise(&mut engine, &names, WARMUP, &mut out);
    let mut best = Duration::MAX;
    let mut allocs = 0.0;
    for _ in 0..ROUNDS {
        let (d, a) = emit_noise(&mut engine, &names, EVENTS, &mut out);
        best = best.min(d);
        allocs = a;
    }
    assert!(engine.events().next().is_none(), "every unrelated event finished");
    (rate(EVENTS, best), allocs)
}

/// A supervisor in miniature: answers spawns with fresh pids and kills
/// with the process's exit, until the engine asks for nothing more.
/// Returns how many events finished.
fn settle(engine: &mut Engine, out: &mut Vec<Effect>, next_pid: &mut Pid, work: &mut Vec<Input>) -> u64 {
    let mut finished = 0;
    loop {
        for e in out.drain(..) {
            match e {
                Effect::Spawn(s) => {
                    *next_pid += 1;
                    work.push(Input::Spawned {
                        key: s.key,
                        process: s.process,
                        pid: *next_pid,
                    });
                }
                Effect::Kill { pid, signal, .. } => work.push(Input::Exited {
                    pid,
                    status: ExitStatus::Signaled(signal.0),
                }),
                Effect::Signal(BusSignal::EventEmitted { .. }) => finished += 1,
                _ => {}
            }
        }
        let Some(input) = work.pop() else {
            return finished;
        };
        engine.handle(0, input, out);
    }
}

fn main() {
    // Memory per class.
    let mut out = Vec::with_capacity(64);
    let before = LIVE.load(Ordering::Relaxed);
    let mut engine = Engine::new(EngineConfig::default());
    let empty = LIVE.load(Ordering::Relaxed);
    load(&mut engine, 10_000, &mut out);
    let loaded = LIVE.load(Ordering::Relaxed);
    let per_class = (loaded - empty) as f64 / 10_000.0;
    println!(
        "memory: {per_class:.0} bytes per job class ({} bytes for 10000 classes; empty engine {} bytes)",
        loaded - empty,
        empty - before
    );

    // Events that start and stop jobs (information).
    let mut pid: Pid = 1000;
    let mut work = Vec::new();
    let t = Instant::now();
    engine.handle(
        0,
        Input::Emit {
            name: "ev-0".into(),
            env: Vec::new(),
            by: None,
        },
        &mut out,
    );
    let boot_events = settle(&mut engine, &mut out, &mut pid, &mut work);
    let boot = t.elapsed();
    let running = engine
        .classes()
        .values()
        .filter(|c| !c.instances.is_empty())
        .count();
    println!(
        "start chain: ev-0 started {running} jobs through `started` events in {:.1} ms ({boot_events} events, {} events/s)",
        boot.as_secs_f64() * 1e3,
        rate(boot_events as usize, boot)
    );
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut events = 0u64;
    let t = Instant::now();
    for _ in 0..CYCLES {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let n = (seed >> 33) as usize % 10_000;
        engine.handle(
            0,
            Input::Emit {
                name: "stopping".into(),
                env: vec![format!("JOB=x-{n}"), "INSTANCE=".into()],
                by: None,
            },
            &mut out,
        );
        events += settle(&mut engine, &mut out, &mut pid, &mut work);
        engine.handle(
            0,
            Input::Emit {
                name: format!("ev-{n}"),
                env: Vec::new(),
                by: None,
            },
            &mut out,
        );
        events += settle(&mut engine, &mut out, &mut pid, &mut work);
    }
    let d = t.elapsed();
    println!(
        "start/stop with 10000 jobs: {} stop+start cycles/s, {} client events/s, {} events/s counting job events ({events} events)",
        rate(CYCLES, d),
        rate(2 * CYCLES, d),
        rate(events as usize, d)
    );
    drop(engine);

    // Unrelated events.
    let (small, small_allocs) = unrelated(100);
    println!("unrelated events with 100 jobs: {small} events/s ({small_allocs:.1} allocations per event)");
    let (large, large_allocs) = unrelated(10_000);
    println!("unrelated events with 10000 jobs: {large} events/s ({large_allocs:.1} allocations per event)");
    let ratio = small as f64 / large as f64;
    println!(
        "cost per event, 10000 jobs vs 100: {ratio:.2}x (target <= 1.5x: {}); target >= 1000000 events/s: {}",
        if ratio <= 1.5 { "met" } else { "MISSED" },
        if small.min(large) >= 1_000_000 {
            "met"
        } else {
            "MISSED"
        }
    );
    println!("engine: {small} events/s with 100 jobs, {large} events/s with 10000 jobs");
}

//! Event throughput of the engine, and its memory per job class.
//!
//! For 100 and then 10,000 job classes (`jN`: `start on ev-N or started
//! j(N-1)`, `stop on stopping x-N`), 1,000,000 events that no job listens
//! to go through `Engine::handle` with one reused effect buffer, cleared
//! after each. The figure for each size is the best of [`ROUNDS`] timed
//! runs (after a warm-up, the two sizes alternating); the per-event cost at 10,000 classes should be
//! at most 1.5 × the cost at 100, and the rate at least 1,000,000 events/s.
//!
//! Memory per class comes from a counting global allocator: bytes live
//! after loading 10,000 classes minus bytes live with none loaded, over
//! 10,000 (the parsed `JobConf` each class keeps included).
//!
//! For information, events that do start and stop jobs, with a miniature
//! supervisor answering every spawn and kill at once:
//! - `start/stop`: 100 and 10,000 independent jobs (`kN`: `start on go-N`,
//!   `stop on halt-N`), all running; random ones stopped by `halt-N` and
//!   started again by `go-N`, for at most [`BUDGET`];
//! - `start chain`: the job set above with 100, 1,000 and 10,000 classes;
//!   `ev-0` starts `j0`, whose `started` starts `j1`, and so on. Every
//!   `started` event is offered to every class (they all mention it), so
//!   this grows with the square of the number of classes; bounded by
//!   [`BUDGET`].
//!
//! Run with `cargo bench -p init --bench engine`; `ENGINE_BENCH_ONLY=chain`,
//! `startstop` or `unrelated` runs one part (for profiling). The last line
//! reads `engine: N events/s with 100 jobs, M events/s with 10000 jobs`.

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
const ROUNDS: usize = 5;
/// Distinct names of the unrelated events.
const NOISE_NAMES: usize = 64;
const CYCLES: usize = 20_000;
/// Time allowed for each of the informational start/stop runs.
const BUDGET: Duration = Duration::from_secs(5);

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
                name: format!("j{n}").into(),
                conf: std::sync::Arc::new(conf),
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

/// [`EVENTS`] unrelated events with 100 and with 10,000 classes loaded,
/// alternating [`ROUNDS`] times so drifts of the machine hit both sizes
/// alike: the best events/s of each, and allocations per event.
fn unrelated() -> [(u64, f64); 2] {
    let names: Vec<String> = (0..NOISE_NAMES).map(|i| format!("noise-{i}")).collect();
    let mut out = Vec::new();
    let mut engines: Vec<Engine> = [100, 10_000]
        .iter()
        .map(|&jobs| {
            let mut engine = Engine::new(EngineConfig::default());
            load(&mut engine, jobs, &mut out);
            emit_noise(&mut engine, &names, WARMUP, &mut out);
            engine
        })
        .collect();
    let mut best = [Duration::MAX; 2];
    let mut allocs = [0.0; 2];
    for _ in 0..ROUNDS {
        for (i, engine) in engines.iter_mut().enumerate() {
            let (d, a) = emit_noise(engine, &names, EVENTS, &mut out);
            best[i] = best[i].min(d);
            allocs[i] = a;
        }
    }
    for engine in &engines {
        assert!(engine.events().next().is_none(), "every unrelated event finished");
    }
    [
        (rate(EVENTS, best[0]), allocs[0]),
        (rate(EVENTS, best[1]), allocs[1]),
    ]
}

/// A supervisor in miniature: answers spawns with fresh pids and kills
/// with the process's exit, until the engine asks for nothing more or
/// `until` passes. Returns how many events finished, and whether it
/// settled.
fn settle(sup: &mut Supervisor, engine: &mut Engine, out: &mut Vec<Effect>, until: Instant) -> (u64, bool) {
    let mut finished = 0;
    let mut n = 0u32;
    loop {
        for e in out.drain(..) {
            match e {
                Effect::Spawn(s) => {
                    sup.next_pid += 1;
                    sup.work.push(Input::Spawned {
                        key: s.key,
                        process: s.process,
                        pid: sup.next_pid,
                    });
                }
                Effect::Kill { pid, signal, .. } => sup.work.push(Input::Exited {
                    pid,
                    status: ExitStatus::Signaled(signal.0),
                }),
                Effect::Signal(BusSignal::EventEmitted { .. }) => finished += 1,
                _ => {}
            }
        }
        n += 1;
        if n.is_multiple_of(64) && Instant::now() > until {
            return (finished, false);
        }
        let Some(input) = sup.work.pop() else {
            return (finished, true);
        };
        engine.handle(0, input, out);
    }
}

#[derive(Default)]
struct Supervisor {
    next_pid: Pid,
    work: Vec<Input>,
}

fn emit(engine: &mut Engine, name: String, env: Vec<String>, out: &mut Vec<Effect>) {
    engine.handle(0, Input::Emit { name, env, by: None }, out);
}

/// `ev-0` with the chained job set: every job's `started` starts the
/// next, and every `started` is offered to every class (they all mention
/// it). Bounded by [`BUDGET`].
fn start_chain(jobs: usize) {
    let mut engine = Engine::new(EngineConfig::default());
    let mut out = Vec::new();
    load(&mut engine, jobs, &mut out);
    let mut sup = Supervisor::default();
    let t = Instant::now();
    emit(&mut engine, "ev-0".into(), Vec::new(), &mut out);
    let (events, done) = settle(&mut sup, &mut engine, &mut out, t + BUDGET);
    let d = t.elapsed();
    let running = engine
        .classes()
        .values()
        .filter(|c| !c.instances.is_empty())
        .count();
    println!(
        "start chain, {jobs} jobs: {running} started in {:.0} ms{} ({} jobs/s, {} events/s)",
        d.as_secs_f64() * 1e3,
        if done { "" } else { " (stopped at the time budget)" },
        rate(running, d),
        rate(events as usize, d)
    );
}

/// Independent jobs (`kN`: `start on go-N`, `stop on halt-N`): stop and
/// start random ones by events, for [`BUDGET`] at most.
fn start_stop(jobs: usize) {
    let mut engine = Engine::new(EngineConfig::default());
    let mut out = Vec::new();
    for n in 0..jobs {
        let text = format!("start on go-{n}\nstop on halt-{n}\nexec /usr/sbin/daemon-{n} --foreground\n");
        let conf = parse_job(text.as_bytes()).expect("bench job parses");
        engine.handle(
            0,
            Input::LoadJob {
                name: format!("k{n}").into(),
                conf: std::sync::Arc::new(conf),
            },
            &mut out,
        );
        out.clear();
    }
    let mut sup = Supervisor::default();
    let far = Instant::now() + Duration::from_secs(3600);
    for n in 0..jobs {
        emit(&mut engine, format!("go-{n}"), Vec::new(), &mut out);
        settle(&mut sup, &mut engine, &mut out, far);
    }
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let (mut events, mut cycles) = (0u64, 0usize);
    let t = Instant::now();
    while cycles < CYCLES && t.elapsed() < BUDGET {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let n = (seed >> 33) as usize % jobs;
        emit(&mut engine, format!("halt-{n}"), Vec::new(), &mut out);
        events += settle(&mut sup, &mut engine, &mut out, far).0;
        emit(&mut engine, format!("go-{n}"), Vec::new(), &mut out);
        events += settle(&mut sup, &mut engine, &mut out, far).0;
        cycles += 1;
    }
    let d = t.elapsed();
    println!(
        "start/stop, {jobs} independent jobs: {} stop+start cycles/s, {} client events/s, {} events/s with the job events",
        rate(cycles, d),
        rate(2 * cycles, d),
        rate(events as usize, d)
    );
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
    drop(engine);
    // The part of that which is the parsed configuration itself.
    let base = LIVE.load(Ordering::Relaxed);
    let confs: Vec<std::sync::Arc<jobconf_parser::JobConf>> = (0..10_000)
        .map(|n| std::sync::Arc::new(parse_job(job_text(n).as_bytes()).expect("bench job parses")))
        .collect();
    let conf_bytes =
        (LIVE.load(Ordering::Relaxed) - base) as f64 / 10_000.0 - std::mem::size_of::<usize>() as f64;
    drop(confs);
    println!(
        "memory: {per_class:.0} bytes per job class ({} bytes for 10000 classes; of each, {conf_bytes:.0} is the parsed JobConf in its Arc, size_of JobConf {}, Class {}, Instance {}; empty engine {} bytes)",
        loaded - empty,
        std::mem::size_of::<jobconf_parser::JobConf>(),
        std::mem::size_of::<init::engine::Class>(),
        std::mem::size_of::<init::engine::Instance>(),
        empty - before
    );

    // Events that start and stop jobs (information). `ENGINE_BENCH_ONLY`
    // names one of these to run it alone (for profiling).
    // (`unrelated` skips them).
    let only = std::env::var("ENGINE_BENCH_ONLY").unwrap_or_default();
    match only.as_str() {
        "chain" => return start_chain(10_000),
        "startstop" => return start_stop(10_000),
        "unrelated" => {}
        _ => {
            start_stop(100);
            start_stop(10_000);
            start_chain(100);
            start_chain(1_000);
            start_chain(10_000);
        }
    }

    // Unrelated events.
    let [(small, small_allocs), (large, large_allocs)] = unrelated();
    println!(
        "unrelated events with 100 jobs: {small} events/s ({small_allocs:.1} allocations per event, the name passed in included)"
    );
    println!(
        "unrelated events with 10000 jobs: {large} events/s ({large_allocs:.1} allocations per event, the name passed in included)"
    );
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

//! Where the memory of loaded job classes goes, by component, measured
//! with a counting global allocator over the 1,000 typical job files of
//! the daemon benchmark (`benches/common`).
//!
//! For each stage it prints the bytes live per class (as requested from the
//! allocator), the allocations live per class, and an estimate of what
//! glibc's malloc really uses for them (each chunk is the request plus 8
//! bytes, rounded up to 16, at least 32):
//! - `JobConf`: the parsed definitions alone (`parse_job` of each text);
//! - `conf`: a [`ConfSources`] after its first rescan (its listings,
//!   cache and definitions; the changes it returned dropped);
//! - `conf+engine`: the same with every change fed to an [`Engine`];
//! - `engine only`: the difference, what the engine adds.
//!
//! Then glibc's own view (`mallinfo2`) of the whole heap after loading:
//! in-use and free bytes, before and after `malloc_trim(0)`; with
//! `MALLOC_INFO` set in the environment, also `malloc_info`'s XML, whose
//! free chunks by size show holes left between live allocations.
//!
//! Run with `cargo bench -p init --bench memory`.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::fs;
use std::path::Path;
use std::sync::atomic::{AtomicIsize, Ordering};

use init::conf::{ConfChange, ConfSources};
use init::engine::{Engine, EngineConfig, Input};
use jobconf_parser::parse_job;

use common::typical_job;

const CLASSES: usize = 1000;

/// Counts live bytes, live allocations and their estimated malloc chunks.
struct Counting;

static BYTES: AtomicIsize = AtomicIsize::new(0);
static BLOCKS: AtomicIsize = AtomicIsize::new(0);
static CHUNKS: AtomicIsize = AtomicIsize::new(0);

/// glibc's chunk size for a request (64-bit).
fn chunk(size: usize) -> isize {
    (size + 8).div_ceil(16).max(2) as isize * 16
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        BYTES.fetch_add(layout.size() as isize, Ordering::Relaxed);
        BLOCKS.fetch_add(1, Ordering::Relaxed);
        CHUNKS.fetch_add(chunk(layout.size()), Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        BYTES.fetch_add(layout.size() as isize, Ordering::Relaxed);
        BLOCKS.fetch_add(1, Ordering::Relaxed);
        CHUNKS.fetch_add(chunk(layout.size()), Ordering::Relaxed);
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        BYTES.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        BLOCKS.fetch_sub(1, Ordering::Relaxed);
        CHUNKS.fetch_sub(chunk(layout.size()), Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        BYTES.fetch_add(new_size as isize - layout.size() as isize, Ordering::Relaxed);
        CHUNKS.fetch_add(chunk(new_size) - chunk(layout.size()), Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[derive(Clone, Copy)]
struct Live {
    bytes: isize,
    blocks: isize,
    chunks: isize,
}

fn live() -> Live {
    Live {
        bytes: BYTES.load(Ordering::Relaxed),
        blocks: BLOCKS.load(Ordering::Relaxed),
        chunks: CHUNKS.load(Ordering::Relaxed),
    }
}

fn report(what: &str, before: Live, after: Live) {
    let per = |a: isize, b: isize| (a - b) as f64 / CLASSES as f64;
    println!(
        "{what:<12} {:>7.0} B/class requested, {:>5.1} allocations/class, ~{:>5.0} B/class in malloc chunks",
        per(after.bytes, before.bytes),
        per(after.blocks, before.blocks),
        per(after.chunks, before.chunks),
    );
}

fn load(dir: &Path) -> (ConfSources, Vec<ConfChange>) {
    let mut conf = ConfSources::new(vec![dir.to_path_buf()]);
    let changes = conf.rescan();
    assert_eq!(changes.len(), CLASSES);
    (conf, changes)
}

fn feed(engine: &mut Engine, changes: Vec<ConfChange>) {
    let mut out = Vec::new();
    for change in changes {
        let input = match change {
            ConfChange::Load { name, conf, .. } => Input::LoadJob { name, conf },
            ConfChange::Remove { name } => Input::RemoveJob { name },
        };
        engine.handle(0, input, &mut out);
        out.clear();
    }
}

fn main() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("memory-bench-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("create scratch dir");
    let texts: Vec<String> = (0..CLASSES).map(typical_job).collect();
    for (i, t) in texts.iter().enumerate() {
        fs::write(dir.join(format!("job-{i}.conf")), t).expect("write job file");
    }

    // Warm-up: whatever is allocated once (inotify, std's statics).
    drop(load(&dir));

    let l0 = live();
    let jobs: Vec<_> = texts.iter().map(|t| parse_job(t.as_bytes()).unwrap()).collect();
    let l1 = live();
    report("JobConf", l0, l1);
    println!(
        "             (of which the JobConf structs themselves: {} B each)",
        size_of::<jobconf_parser::JobConf>()
    );
    drop(jobs);

    let l0 = live();
    let (conf, changes) = load(&dir);
    drop(changes);
    let l1 = live();
    report("conf", l0, l1);
    drop(conf);

    let l0 = live();
    let (conf, changes) = load(&dir);
    let mut engine = Engine::new(EngineConfig::default());
    feed(&mut engine, changes);
    let l1 = live();
    report("conf+engine", l0, l1);
    let (mut c, mut e) = (l1, l1);
    drop(conf);
    let l2 = live();
    (c.bytes, c.blocks, c.chunks) = (l1.bytes - l2.bytes, l1.blocks - l2.blocks, l1.chunks - l2.chunks);
    (e.bytes, e.blocks, e.chunks) = (l2.bytes - l0.bytes, l2.blocks - l0.blocks, l2.chunks - l0.chunks);
    let zero = Live {
        bytes: 0,
        blocks: 0,
        chunks: 0,
    };
    report("engine only", zero, e);
    report("conf only", zero, c);
    drop(engine);

    // The heap as glibc sees it with everything loaded.
    let (conf, changes) = load(&dir);
    let mut engine = Engine::new(EngineConfig::default());
    feed(&mut engine, changes);
    let m = unsafe { libc::mallinfo2() };
    println!(
        "mallinfo2: arena {} kB, in use {} kB, free {} kB (top {} kB)",
        m.arena / 1024,
        m.uordblks / 1024,
        m.fordblks / 1024,
        m.keepcost / 1024
    );
    if std::env::var_os("MALLOC_INFO").is_some() {
        unsafe {
            let f = libc::fdopen(1, c"w".as_ptr());
            libc::malloc_info(0, f);
            libc::fflush(f);
        }
    }
    unsafe { libc::malloc_trim(0) };
    let m = unsafe { libc::mallinfo2() };
    println!(
        "after trim: arena {} kB, in use {} kB, free {} kB",
        m.arena / 1024,
        m.uordblks / 1024,
        m.fordblks / 1024
    );
    drop((conf, engine));
    let _ = fs::remove_dir_all(&dir);
}

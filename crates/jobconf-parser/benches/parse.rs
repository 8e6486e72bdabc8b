//! Parser throughput against the cost of merely reading the same bytes.
//!
//! The corpus (`shared/testdata/upstart-jobs`) is written out repeated to
//! about 10,000 files; then, in the same run, alternating rounds time (a)
//! reading every file, (b) parsing the bytes already in memory, and (c)
//! reading and parsing, as the daemon does at start-up. The figures are the
//! median of the rounds; the target is parse ≤ 3 × read.
//!
//! Run with `cargo bench -p jobconf-parser --bench parse`.

use std::fs;
use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use jobconf_parser::parse_job;

const TARGET_FILES: usize = 10_000;
const ROUNDS: usize = 15;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let corpus = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/testdata/upstart-jobs");
    let mut sources: Vec<Vec<u8>> = fs::read_dir(&corpus)
        .expect("corpus beside the project")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "conf"))
        .map(|p| fs::read(p).unwrap())
        .collect();
    sources.sort();

    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/bench-corpus");
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    let mut paths = Vec::new();
    for i in 0..TARGET_FILES {
        let p = dir.join(format!("job{i:05}.conf"));
        fs::write(&p, &sources[i % sources.len()]).unwrap();
        paths.push(p);
    }
    let in_memory: Vec<Vec<u8>> = paths.iter().map(|p| fs::read(p).unwrap()).collect();
    let bytes: usize = in_memory.iter().map(Vec::len).sum();
    let parsed = in_memory.iter().filter(|t| parse_job(t).is_ok()).count();

    let (mut read, mut parse, mut both) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        let t = Instant::now();
        for p in &paths {
            black_box(fs::read(p).unwrap());
        }
        read.push(t.elapsed());

        let t = Instant::now();
        for text in &in_memory {
            let _ = black_box(parse_job(black_box(text)));
        }
        parse.push(t.elapsed());

        let t = Instant::now();
        for p in &paths {
            let text = fs::read(p).unwrap();
            let _ = black_box(parse_job(&text));
        }
        both.push(t.elapsed());
    }
    let (read, parse, both) = (median(read), median(parse), median(both));
    let mb = bytes as f64 / 1e6;
    let files = paths.len() as f64;
    let row = |what: &str, d: Duration| {
        println!(
            "{what:<14} {:>9.2} ms  {:>10.0} files/s  {:>8.1} MB/s",
            d.as_secs_f64() * 1e3,
            files / d.as_secs_f64(),
            mb / d.as_secs_f64()
        );
    };
    println!(
        "{} files, {:.2} MB, {parsed} parse ({} rejected as Upstart would)",
        paths.len(),
        mb,
        paths.len() - parsed
    );
    row("read", read);
    row("parse", parse);
    row("read+parse", both);
    println!(
        "parse/read ratio: {:.2} (target <= 3.00); (read+parse)/read: {:.2}",
        parse.as_secs_f64() / read.as_secs_f64(),
        both.as_secs_f64() / read.as_secs_f64()
    );
    let _ = fs::remove_dir_all(&dir);
}

//! The one check every fuzzer of the job-file parser runs on an input: the
//! cargo-fuzz target (`fuzz/fuzz_targets/parse_job.rs`), the stable
//! mutation fuzzer (`examples/fuzz.rs`) and the property tests
//! (`tests/roundtrip.rs`) all include this file with `#[path]`, so the check
//! lives in one place without being part of the library's API.
//!
//! It panics (which is what a fuzzer reports) when parsing panics, when a
//! parse error is malformed, or when a parsed job does not survive the
//! canonical rendering, the JSON dump or a serde round trip.

use jobconf_parser::{JobConf, ParseError, dump::dump_job, parse_job, render_job};

/// Parses `data`; on success checks every round trip, on failure checks that
/// the error describes a real position of `data`.
pub fn fuzz_check(data: &[u8]) {
    match parse_job(data) {
        Ok(job) => check_job(&job),
        Err(e) => check_error(data, &e),
    }
}

/// Checks a job that parsed: `parse(render(job)) == job`, rendering is
/// idempotent, the dump is an object, `serde_json` round-trips the job, and
/// the expressions print.
pub fn check_job(job: &JobConf) {
    let text = render_job(job);
    let again = match parse_job(text.as_bytes()) {
        Ok(j) => j,
        Err(e) => panic!(
            "the rendering of a parsed job does not parse: {e}\n{}\nrendering:\n{text}\njob: {job:?}",
            e.caret()
        ),
    };
    assert_eq!(&again, job, "parse(render(job)) != job; rendering:\n{text}");
    assert_eq!(render_job(&again), text, "rendering is not idempotent");

    let dump = dump_job(job);
    assert!(dump.is_object(), "dump_job gave {dump}");

    let json = serde_json::to_string(job).expect("a JobConf serializes");
    let back: JobConf = match serde_json::from_str(&json) {
        Ok(j) => j,
        Err(e) => panic!("serde_json cannot read back a serialized JobConf: {e}\njob: {job:?}"),
    };
    assert_eq!(&back, job, "serde_json round trip changed the job");

    for e in [job.start_on(), job.stop_on()].into_iter().flatten() {
        let _ = e.to_string();
    }
}

/// Checks that a parse error points into `data` and prints.
pub fn check_error(data: &[u8], e: &ParseError) {
    assert!(
        e.offset <= data.len(),
        "error offset {} past the end ({})",
        e.offset,
        data.len()
    );
    assert!(
        e.line >= 1 && e.column >= 1,
        "error position {}:{}",
        e.line,
        e.column
    );
    let _ = e.to_string();
    let _ = e.caret();
}

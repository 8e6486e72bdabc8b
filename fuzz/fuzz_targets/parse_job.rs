//! libFuzzer target: parse arbitrary bytes as a job file; when they parse,
//! the job must survive the canonical rendering, the JSON dump and a serde
//! round trip (the check shared with `examples/fuzz.rs` and the tests).
//!
//! Run from the workspace root, seeded from the shared corpus (the first
//! directory is the git-ignored working corpus):
//! `cargo +nightly fuzz run --sanitizer none parse_job fuzz/corpus/parse_job ../shared/testdata/upstart-jobs`,
//! or `FUZZ_SECONDS=N .ci/fuzz`, which falls back to `examples/fuzz.rs`
//! without nightly.

#![no_main]

#[path = "../../crates/jobconf-parser/tests/support/fuzz_check.rs"]
#[allow(dead_code)]
mod fuzz_check;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    fuzz_check::fuzz_check(data);
});

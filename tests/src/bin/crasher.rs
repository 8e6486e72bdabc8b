//! `crasher --count FILE [--status N] [--stop-after K]`: counts its runs in
//! FILE, prints `run COUNT pid PID` on stdout, then exits with status N
//! (default 1) — or, from the K-th run on, sleeps instead.

use std::io::Write;

use upshot_tests::standin::{Args, sleep_forever, write_atomic};

fn main() {
    let args = Args::parse();
    let count_file = args.req("--count");
    let status: i32 = args.num("--status", 1);
    let stop_after: Option<u64> = args
        .value("--stop-after")
        .map(|s| s.parse().expect("--stop-after K"));
    let count = std::fs::read_to_string(&count_file)
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(0)
        + 1;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "run {count} pid {}", std::process::id());
    let _ = out.flush();
    write_atomic(&count_file, &format!("{count}\n"));
    if stop_after.is_some_and(|k| count >= k) {
        sleep_forever()
    }
    std::process::exit(status)
}

//! `ticker --state FILE [--interval-ms MS] [--pause FILE]`: prints `line 1`,
//! `line 2`, … on stdout, one every MS milliseconds (default 10), and after
//! each line records its number in the state FILE (so it never names a line
//! not yet written). With `--pause P`: before each line, while P exists, it
//! writes the number of the last line printed to `P.ack` and waits; it goes
//! on once P is removed. A test knows exactly what was written while paused.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use upshot_tests::standin::{Args, write_atomic};

fn main() {
    let args = Args::parse();
    let state = args.req("--state");
    let interval: u64 = args.num("--interval-ms", 10);
    let pause = args.value("--pause");
    let mut out = std::io::stdout().lock();
    for n in 1u64.. {
        if let Some(pause) = pause.as_deref().filter(|p| Path::new(p).exists()) {
            write_atomic(format!("{pause}.ack"), &format!("{}\n", n - 1));
            while Path::new(pause).exists() {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        writeln!(out, "line {n}").expect("write stdout");
        out.flush().expect("flush stdout");
        write_atomic(&state, &format!("{n}\n"));
        std::thread::sleep(Duration::from_millis(interval));
    }
}

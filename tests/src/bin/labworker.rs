//! `labworker --log FILE [--pidfile FILE]`: a stand-in for a lab's
//! long-running foreground worker (LAVA's dispatcher worker).
//!
//! Prints `worker PID started` and writes its pid to the PID file. Then,
//! for each SIGUSR1, writes the next `line N` (N counts from 1 in each run)
//! both to its standard output and to its own log FILE (opened for append);
//! SIGHUP reopens FILE (after a move-then-signal rotation); SIGUSR2 makes it
//! crash (`worker PID crashing`, exit status 3); SIGTERM ends it (status 0).

use std::fs::{File, OpenOptions};
use std::io::Write;

use upshot_tests::standin::{Args, block_signals, next_signal, write_atomic};

fn open(path: &str) -> File {
    OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .unwrap_or_else(|e| panic!("open {path}: {e}"))
}

fn say(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

fn main() {
    let args = Args::parse();
    let path = args.req("--log");
    let signals = block_signals(&[libc::SIGUSR1, libc::SIGUSR2, libc::SIGHUP, libc::SIGTERM]);
    let me = std::process::id();
    let mut log = open(&path);
    say(&format!("worker {me} started\n"));
    if let Some(pidfile) = args.value("--pidfile") {
        write_atomic(pidfile, &format!("{me}\n"));
    }
    let mut n = 0u64;
    loop {
        match next_signal(&signals, 1000) {
            Some(libc::SIGUSR1) => {
                n += 1;
                let line = format!("line {n}\n");
                log.write_all(line.as_bytes()).expect("write the log");
                say(&line);
            }
            Some(libc::SIGHUP) => log = open(&path),
            Some(libc::SIGUSR2) => {
                say(&format!("worker {me} crashing\n"));
                std::process::exit(3)
            }
            Some(libc::SIGTERM) => std::process::exit(0),
            _ => {}
        }
    }
}

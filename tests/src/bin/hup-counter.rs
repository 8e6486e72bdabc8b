//! `hup-counter --out FILE`: counts the SIGHUPs it receives. Writes
//! `pid PID` and `hups N` to FILE when it starts (N = 0) and again after
//! each SIGHUP; sleeps otherwise (other signals have their default
//! effect).

use nix::sys::signal::{SigSet, Signal};
use upshot_tests::standin::{Args, write_atomic};

fn main() {
    let args = Args::parse();
    let out = args.req("--out");
    let mut hup = SigSet::empty();
    hup.add(Signal::SIGHUP);
    // Blocked before the first report: every SIGHUP sent once FILE exists
    // is counted.
    hup.thread_block().expect("block SIGHUP");
    let pid = std::process::id();
    let mut n = 0u64;
    loop {
        write_atomic(&out, &format!("pid {pid}\nhups {n}\n"));
        if hup.wait() == Ok(Signal::SIGHUP) {
            n += 1;
        }
    }
}

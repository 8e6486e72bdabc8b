//! `forker --forks N --pidfile FILE [--setsid] [--sleep SECS] [--term-file FILE]`
//!
//! Forks N times, each parent exiting at once (what `expect fork` (N=1) and
//! `expect daemon` (N=2) declare); with `--setsid` the first child starts a
//! new session. The last process writes its pid to FILE, then sleeps SECS
//! and exits 0, or (default) waits for SIGTERM: with `--term-file` it then
//! writes its pid there and dies of the SIGTERM.

use nix::sys::signal::{SigSet, Signal, raise};
use nix::unistd::{ForkResult, fork, setsid};
use upshot_tests::standin::{Args, sleep_forever, write_atomic};

fn main() {
    let args = Args::parse();
    let forks: u32 = args.num("--forks", 0);
    let pidfile = args.req("--pidfile");
    let new_session = args.flag("--setsid");
    let sleep: Option<u64> = args.value("--sleep").map(|s| s.parse().expect("--sleep SECS"));
    let term_file = args.value("--term-file");

    for i in 0..forks {
        // SAFETY: single-threaded; the parent only calls `_exit`.
        match unsafe { fork() }.expect("fork") {
            ForkResult::Parent { .. } => unsafe { libc::_exit(0) },
            ForkResult::Child => {
                if new_session && i == 0 {
                    setsid().expect("setsid");
                }
            }
        }
    }

    let mut term = SigSet::empty();
    term.add(Signal::SIGTERM);
    if term_file.is_some() {
        // Blocked before the pid is published, so the SIGTERM is not missed.
        term.thread_block().expect("block SIGTERM");
    }
    write_atomic(&pidfile, &format!("{}\n", std::process::id()));
    if let Some(secs) = sleep {
        std::thread::sleep(std::time::Duration::from_secs(secs));
        return;
    }
    let Some(term_file) = term_file else {
        sleep_forever()
    };
    term.wait().expect("sigwait");
    write_atomic(&term_file, &format!("{}\n", std::process::id()));
    term.thread_unblock().expect("unblock SIGTERM");
    // Pending or not, die of SIGTERM with its default action.
    raise(Signal::SIGTERM).expect("raise");
    sleep_forever()
}

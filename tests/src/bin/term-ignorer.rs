//! `term-ignorer --ready FILE`: ignores SIGTERM, writes its pid to FILE,
//! sleeps (only SIGKILL ends it).

use nix::sys::signal::{SigHandler, Signal, signal};
use upshot_tests::standin::{Args, sleep_forever, write_atomic};

fn main() {
    let args = Args::parse();
    let ready = args.req("--ready");
    // SAFETY: SIG_IGN installs no handler code.
    unsafe { signal(Signal::SIGTERM, SigHandler::SigIgn) }.expect("ignore SIGTERM");
    write_atomic(&ready, &format!("{}\n", std::process::id()));
    sleep_forever()
}

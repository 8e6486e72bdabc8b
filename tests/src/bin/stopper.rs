//! `stopper --out FILE`: raises SIGSTOP on itself (what `expect stop`
//! waits for); once continued, writes its pid to FILE and sleeps.

use nix::sys::signal::{Signal, raise};
use upshot_tests::standin::{Args, sleep_forever, write_atomic};

fn main() {
    let args = Args::parse();
    let out = args.req("--out");
    raise(Signal::SIGSTOP).expect("raise SIGSTOP");
    write_atomic(&out, &format!("{}\n", std::process::id()));
    sleep_forever()
}

//! `participant --name NAME --out DIR [--tidy-ms MS]`: a stand-in for a
//! participant of a process-automation framework (BOSS/SkyNET): one
//! instance per participant name, run as an unprivileged user.
//!
//! Writes `DIR/NAME` (lines `name NAME`, `pid P` and its credentials, see
//! `credentials_line`) and prints `participant NAME running as uid U`.
//! SIGUSR2 makes it fail (`participant NAME failing`, exit status 7). On
//! SIGTERM it tidies up for MS milliseconds (default 100), writes
//! `DIR/NAME.tidy` and exits 0.

use std::io::Write;
use std::time::Duration;

use upshot_tests::standin::{Args, block_signals, credentials_line, next_signal, write_atomic};

fn main() {
    let args = Args::parse();
    let name = args.req("--name");
    let out = std::path::PathBuf::from(args.req("--out"));
    let tidy: u64 = args.num("--tidy-ms", 100);
    let signals = block_signals(&[libc::SIGUSR2, libc::SIGTERM]);
    let me = std::process::id();
    write_atomic(
        out.join(&name),
        &format!("name {name}\npid {me}\n{}", credentials_line()),
    );
    // SAFETY: no arguments.
    let uid = unsafe { libc::getuid() };
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "participant {name} running as uid {uid}");
    let _ = stdout.flush();
    loop {
        match next_signal(&signals, 1000) {
            Some(libc::SIGUSR2) => {
                let _ = writeln!(stdout, "participant {name} failing");
                let _ = stdout.flush();
                std::process::exit(7)
            }
            Some(libc::SIGTERM) => {
                std::thread::sleep(Duration::from_millis(tidy));
                write_atomic(out.join(format!("{name}.tidy")), &format!("pid {me}\n"));
                std::process::exit(0)
            }
            _ => {}
        }
    }
}

//! `escaper --out FILE`: forks a child that forks a grandchild and exits at
//! once; the grandchild calls `setsid` and sleeps: it has left the job's
//! process group and session, and its parent is gone (it is re-parented to
//! the nearest subreaper). Writes `grandchild PID` and `escaper PID` to
//! FILE, then sleeps.

use std::io::Read;
use std::os::fd::AsRawFd;

use nix::sys::wait::waitpid;
use nix::unistd::{ForkResult, fork, pipe, setsid};
use upshot_tests::standin::{Args, sleep_forever, write_atomic};

fn main() {
    let args = Args::parse();
    let out = args.req("--out");
    let (r, w) = pipe().expect("pipe");
    // SAFETY: single-threaded; the children only make system calls.
    match unsafe { fork() }.expect("fork") {
        ForkResult::Child => {
            drop(r);
            // SAFETY: as above.
            match unsafe { fork() }.expect("fork") {
                ForkResult::Child => {
                    setsid().expect("setsid");
                    let pid = std::process::id().to_ne_bytes();
                    // SAFETY: writes 4 bytes from a live array.
                    unsafe { libc::write(w.as_raw_fd(), pid.as_ptr().cast(), pid.len()) };
                    drop(w);
                    sleep_forever()
                }
                ForkResult::Parent { .. } => unsafe { libc::_exit(0) },
            }
        }
        ForkResult::Parent { child } => {
            drop(w);
            let _ = waitpid(child, None);
            let mut buf = [0u8; 4];
            std::fs::File::from(r)
                .read_exact(&mut buf)
                .expect("grandchild pid");
            let grandchild = u32::from_ne_bytes(buf);
            write_atomic(
                &out,
                &format!("grandchild {grandchild}\nescaper {}\n", std::process::id()),
            );
            sleep_forever()
        }
    }
}

//! `recorder --out FILE [--exit STATUS]`
//!
//! Writes what a job process sees, one `KEY VALUE` line each: pid, ppid,
//! sid, pgid, uid, euid, gid, egid, groups, umask, cwd, each open fd
//! (`fd N TARGET`), each environment variable sorted (`env K=V`), nofile,
//! nice, oom_score_adj. Then exits with STATUS, or (default) sleeps.

use std::fmt::Write as _;

use upshot_tests::standin::{Args, sleep_forever, write_atomic};

fn main() {
    let args = Args::parse();
    let out = args.req("--out");
    let exit: Option<i32> = args.value("--exit").map(|s| s.parse().expect("--exit STATUS"));

    let mut r = String::new();
    let pid = std::process::id();
    // SAFETY: plain system calls without memory arguments.
    let (ppid, sid, pgid, uid, euid, gid, egid) = unsafe {
        (
            libc::getppid(),
            libc::getsid(0),
            libc::getpgid(0),
            libc::getuid(),
            libc::geteuid(),
            libc::getgid(),
            libc::getegid(),
        )
    };
    let groups: Vec<String> = nix::unistd::getgroups()
        .unwrap_or_default()
        .iter()
        .map(|g| g.as_raw().to_string())
        .collect();
    // SAFETY: umask cannot fail; the old value is put back at once.
    let umask = unsafe {
        let old = libc::umask(0);
        libc::umask(old);
        old
    };
    let cwd = std::env::current_dir()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let _ = writeln!(r, "pid {pid}\nppid {ppid}\nsid {sid}\npgid {pgid}");
    let _ = writeln!(r, "uid {uid}\neuid {euid}\ngid {gid}\negid {egid}");
    let _ = writeln!(r, "groups {}\numask {umask:04o}\ncwd {cwd}", groups.join(","));

    // The directory being read holds one descriptor itself: its target is
    // this very /proc/PID/fd directory.
    let own = format!("/proc/{pid}/fd");
    let mut fds: Vec<(i32, String)> = std::fs::read_dir("/proc/self/fd")
        .expect("read /proc/self/fd")
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let fd = e.file_name().to_str()?.parse().ok()?;
            let target = std::fs::read_link(e.path()).ok()?.display().to_string();
            (target != own).then_some((fd, target))
        })
        .collect();
    fds.sort();
    for (fd, target) in fds {
        let _ = writeln!(r, "fd {fd} {target}");
    }
    let mut env: Vec<String> = std::env::vars_os()
        .map(|(k, v)| format!("{}={}", k.to_string_lossy(), v.to_string_lossy()))
        .collect();
    env.sort();
    for e in env {
        let _ = writeln!(r, "env {e}");
    }
    let (soft, hard) =
        nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).expect("getrlimit");
    let _ = writeln!(r, "nofile {soft} {hard}");
    // SAFETY: no memory arguments (-1 is a valid priority, errno is not checked:
    // the range of nice values is -20..19 anyway).
    let nice = unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
    let _ = writeln!(r, "nice {nice}");
    let oom = std::fs::read_to_string("/proc/self/oom_score_adj").unwrap_or_default();
    let _ = writeln!(r, "oom_score_adj {}", oom.trim());

    write_atomic(&out, &r);
    match exit {
        Some(status) => std::process::exit(status),
        None => sleep_forever(),
    }
}

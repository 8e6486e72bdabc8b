//! Finding and signalling every process of a job instance, including the
//! ones that escaped its process group (`setsid`, double forks).
//!
//! An instance's processes are: the process group of its main process,
//! every descendant of a given root, and every process that was re-parented
//! to the daemon (we are PID 1 or a child subreaper, so orphans come to us)
//! and carries the instance's `UPSTART_JOB`/`UPSTART_INSTANCE` in its
//! environment — with their descendants. Only processes started no later
//! than a cut-off are taken, so a new run of the same instance is never hit
//! by the clean-up of the old one.
//!
//! A pid is verified before it is signalled: a pidfd is opened, the
//! process's start time is read again through `/proc`, and the signal goes
//! through the pidfd only if it is still the process that was found
//! (`pidfd_send_signal`), so a recycled pid is never signalled.

use std::collections::{BTreeMap, BTreeSet};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use nix::errno::Errno;
use nix::unistd::Pid;

/// A process as the scan saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Proc {
    pub pid: i32,
    pub ppid: i32,
    pub pgrp: i32,
    /// Start time in clock ticks since boot (`/proc/PID/stat` field 22).
    pub start: u64,
}

/// Reads `/proc/PID/stat` fields we need; `None` if the process is gone.
pub fn read_proc(pid: i32) -> Option<Proc> {
    let stat = procfs::process::Process::new(pid).ok()?.stat().ok()?;
    Some(Proc {
        pid,
        ppid: stat.ppid,
        pgrp: stat.pgrp,
        start: stat.starttime,
    })
}

/// Every process on the system (skipping those that vanish mid-scan).
pub fn scan() -> Vec<Proc> {
    let Ok(all) = procfs::process::all_processes() else {
        return Vec::new();
    };
    all.filter_map(|p| p.ok())
        .filter_map(|p| {
            let stat = p.stat().ok()?;
            Some(Proc {
                pid: p.pid,
                ppid: stat.ppid,
                pgrp: stat.pgrp,
                start: stat.starttime,
            })
        })
        .collect()
}

/// Whether a process's environment names this instance.
pub fn tagged(pid: i32, job: &str, instance: &str) -> bool {
    let Ok(env) = procfs::process::Process::new(pid).and_then(|p| p.environ()) else {
        return false;
    };
    let get = |k: &str| {
        env.get(std::ffi::OsStr::new(k))
            .map(|v| v.as_encoded_bytes().to_vec())
    };
    get("UPSTART_JOB").as_deref() == Some(job.as_bytes())
        && get("UPSTART_INSTANCE").as_deref() == Some(instance.as_bytes())
}

/// Which processes belong to an instance (see [`instance_processes`]).
#[derive(Debug, Clone, Copy)]
pub struct Scope<'a> {
    pub daemon: i32,
    pub root: Option<i32>,
    pub job: &'a str,
    pub instance: &'a str,
    pub orphans: bool,
    pub cutoff: u64,
    pub spare: &'a [i32],
}

/// The processes of an instance among `procs`: the group led by `root`,
/// `root`'s descendants, and with `orphans` the orphans of `daemon` tagged
/// with the instance (and their descendants), started no later than
/// `cutoff` (clock ticks), leaving out the processes in `spare` and their
/// descendants (processes of the instance the daemon tracks and means to
/// keep: start times are whole ticks, so a post-stop or the next main
/// process may look as old as the cutoff).
pub fn instance_processes(procs: &[Proc], scope: &Scope) -> Vec<Proc> {
    let Scope {
        daemon,
        root,
        job,
        instance,
        orphans,
        cutoff,
        spare,
    } = *scope;
    let mut children: BTreeMap<i32, Vec<&Proc>> = BTreeMap::new();
    for p in procs {
        children.entry(p.ppid).or_default().push(p);
    }
    let mut found: BTreeSet<i32> = BTreeSet::new();
    let mut stack: Vec<i32> = Vec::new();
    if let Some(root) = root {
        for p in procs.iter().filter(|p| p.pid == root || p.pgrp == root) {
            stack.push(p.pid);
        }
    }
    for p in children.get(&daemon).into_iter().flatten() {
        if orphans && Some(p.pid) != root && tagged(p.pid, job, instance) {
            stack.push(p.pid);
        }
    }
    while let Some(pid) = stack.pop() {
        if pid == daemon || pid <= 1 || spare.contains(&pid) || !found.insert(pid) {
            continue;
        }
        for c in children.get(&pid).into_iter().flatten() {
            stack.push(c.pid);
        }
    }
    procs
        .iter()
        .filter(|p| found.contains(&p.pid) && p.start <= cutoff)
        .copied()
        .collect()
}

/// The current time in the clock ticks of `/proc/PID/stat` start times.
///
/// The kernel derives start times from `CLOCK_BOOTTIME` in whole ticks
/// (rounded down), so the same integer arithmetic on the same clock gives a
/// value no process alive now can exceed. (`/proc/uptime` parsed as a float
/// does not: `4823.15 * 100.0` is `482314.99…`, one tick short, and a
/// process started in that tick was left out of a kill.)
pub fn now_ticks() -> u64 {
    let ticks = procfs::ticks_per_second().max(1);
    match nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME) {
        Ok(ts) => {
            let ns = u128::try_from(ts.tv_sec()).unwrap_or(0) * 1_000_000_000
                + u128::try_from(ts.tv_nsec()).unwrap_or(0);
            u64::try_from(ns * u128::from(ticks) / 1_000_000_000).unwrap_or(u64::MAX)
        }
        Err(_) => {
            let uptime = <procfs::Uptime as procfs::Current>::current()
                .map(|u| u.uptime)
                .unwrap_or(0.0);
            (uptime * ticks as f64).round() as u64
        }
    }
}

fn pidfd_open(pid: i32) -> Result<OwnedFd, Errno> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(Errno::last());
    }
    // SAFETY: the kernel just returned this fd to us and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Signals `p` if it is still the same process (same start time), through a
/// pidfd so the check and the signal concern one process.
pub fn signal_verified(p: &Proc, signal: nix::sys::signal::Signal) -> Result<(), Errno> {
    let fd = pidfd_open(p.pid)?;
    match read_proc(p.pid) {
        Some(now) if now.start == p.start => {}
        _ => return Err(Errno::ESRCH),
    }
    // SAFETY: pidfd_send_signal(pidfd, sig, info = NULL, flags = 0).
    let r = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            fd.as_raw_fd(),
            signal as i32,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if r < 0 { Err(Errno::last()) } else { Ok(()) }
}

/// Signals one pid after verifying it is alive with the start time it had
/// when first seen (`expected_start`), or any start time when `None`.
pub fn signal_pid(
    pid: i32,
    expected_start: Option<u64>,
    signal: nix::sys::signal::Signal,
) -> Result<(), Errno> {
    let Some(p) = read_proc(pid) else {
        return Err(Errno::ESRCH);
    };
    if expected_start.is_some_and(|s| s != p.start) {
        return Err(Errno::ESRCH);
    }
    signal_verified(&p, signal)
}

/// Signals every process of an instance (see [`instance_processes`]);
/// returns how many were signalled.
pub fn signal_instance(scope: &Scope, signal: nix::sys::signal::Signal) -> usize {
    let procs = instance_processes(&scan(), scope);
    procs
        .iter()
        .filter(|p| signal_verified(p, signal).is_ok())
        .count()
}

/// Our own pid, as the scan sees it.
pub fn daemon_pid() -> i32 {
    Pid::this().as_raw()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope<'a>(daemon: i32, root: Option<i32>, job: &'a str, cutoff: u64) -> Scope<'a> {
        Scope {
            daemon,
            root,
            job,
            instance: "",
            orphans: true,
            cutoff,
            spare: &[],
        }
    }

    fn p(pid: i32, ppid: i32, pgrp: i32) -> Proc {
        Proc {
            pid,
            ppid,
            pgrp,
            start: 10,
        }
    }

    #[test]
    fn descendants_and_group_of_the_root_are_found() {
        let procs = [
            p(100, 1, 100),
            p(101, 100, 100),
            p(102, 101, 102),
            p(103, 102, 103),
            p(200, 1, 200),
        ];
        let found: Vec<i32> = instance_processes(&procs, &scope(1, Some(100), "j", 99))
            .iter()
            .map(|p| p.pid)
            .collect();
        assert_eq!(found, [100, 101, 102, 103]);
    }

    #[test]
    fn processes_started_after_the_cutoff_are_left_alone() {
        let mut late = p(101, 100, 100);
        late.start = 50;
        let procs = [p(100, 1, 100), late];
        let found: Vec<i32> = instance_processes(&procs, &scope(1, Some(100), "j", 20))
            .iter()
            .map(|p| p.pid)
            .collect();
        assert_eq!(found, [100]);
    }

    #[test]
    fn the_daemon_and_pid_1_are_never_taken() {
        let procs = [p(1, 0, 1), p(100, 1, 1), p(101, 100, 1)];
        let found: Vec<i32> = instance_processes(&procs, &scope(100, Some(100), "j", 99))
            .iter()
            .map(|p| p.pid)
            .collect();
        assert!(!found.contains(&1) && !found.contains(&100), "{found:?}");
    }

    #[test]
    fn a_real_escaped_grandchild_is_found_by_its_tag_and_killed() {
        use std::process::Command;
        // Become a subreaper so the orphan comes to us, as it does to the daemon.
        nix::sys::prctl::set_child_subreaper(true).unwrap();
        let job = format!("kill-test-{}", std::process::id());
        let mut child = Command::new("/bin/sh")
            .arg("-c")
            .arg("setsid sleep 300 </dev/null >/dev/null 2>&1 & echo $!")
            .env("UPSTART_JOB", &job)
            .env("UPSTART_INSTANCE", "")
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let out = child.wait_with_output_ref();
        let grandchild: i32 = out.trim().parse().unwrap();
        let me = daemon_pid();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        // The grandchild is re-parented to us once its parent shell has exited.
        while read_proc(grandchild).is_some_and(|p| p.ppid != me) && std::time::Instant::now() < deadline {
            std::thread::yield_now();
        }
        let mut found = Vec::new();
        while std::time::Instant::now() < deadline {
            found = instance_processes(&scan(), &scope(me, None, &job, now_ticks() + 1000));
            if !found.is_empty() {
                break;
            }
            std::thread::yield_now();
        }
        assert_eq!(
            found.iter().map(|p| p.pid).collect::<Vec<_>>(),
            [grandchild],
            "grandchild {:?}",
            read_proc(grandchild)
        );
        assert_eq!(
            signal_instance(
                &scope(me, None, &job, now_ticks() + 1000),
                nix::sys::signal::Signal::SIGKILL
            ),
            1
        );
        let status = nix::sys::wait::waitpid(Pid::from_raw(grandchild), None).unwrap();
        assert!(matches!(
            status,
            nix::sys::wait::WaitStatus::Signaled(_, nix::sys::signal::Signal::SIGKILL, _)
        ));
    }

    trait WaitOutput {
        fn wait_with_output_ref(&mut self) -> String;
    }

    impl WaitOutput for std::process::Child {
        fn wait_with_output_ref(&mut self) -> String {
            use std::io::Read;
            let mut s = String::new();
            if let Some(out) = self.stdout.as_mut() {
                let _ = out.read_to_string(&mut s);
            }
            let _ = self.wait();
            s
        }
    }

    #[test]
    fn now_is_never_before_the_start_of_a_live_process() {
        // The cut-off of a kill must take every process alive now. (The
        // float version, `/proc/uptime * 100`, was one tick short at some
        // uptimes, e.g. 4823.15 s, so a process started in that tick was
        // spared; which uptimes depends on the float rounding, so this
        // check catches that only when the test runs at such a time.)
        for _ in 0..100 {
            let mut child = std::process::Command::new("/bin/true").spawn().unwrap();
            let start = read_proc(child.id() as i32).map(|p| p.start);
            let now = now_ticks();
            let _ = child.wait();
            if let Some(start) = start {
                assert!(start <= now, "started at tick {start}, now is {now}");
            }
        }
    }

    #[test]
    fn a_recycled_pid_is_not_signalled() {
        let me = read_proc(daemon_pid()).unwrap();
        let fake = Proc {
            start: me.start + 1,
            ..me
        };
        assert_eq!(
            signal_verified(&fake, nix::sys::signal::Signal::SIGCONT),
            Err(Errno::ESRCH)
        );
    }
}

//! `baseline-init`: the yardstick of the boot benchmark (`cargo bench -p
//! qemu-harness --bench boot`). As process 1 of the same VM it does, one
//! after the other and with nothing in between, what upshot's init and the
//! jobs of `conf/vm` do: the same mounts, the same commands and scripts,
//! the same long-running processes (syslogd, httpd backgrounded by a
//! subshell, a root shell on the console, respawned), then the line the
//! `ready` job prints. busybox's `poweroff` (SIGUSR2 to process 1) makes it
//! stop everything, sync and power off, as upshot's shutdown does.
//!
//! No events, no D-Bus, no job files, no logs of its own: whatever upshot
//! takes beyond this program is the price of being an init system.

use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn main() {
    early_mounts();
    // SAFETY: plain system calls on no memory of ours.
    unsafe {
        libc::setsid();
    }
    // SAFETY: the process is single-threaded here.
    unsafe {
        std::env::set_var(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        );
        std::env::set_var("TERM", "linux");
    }
    let signals = block_signals();

    // mounts.conf
    sh(
        "grep -q ' /tmp ' /proc/mounts || mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /tmp; \
        mkdir -p /run/lock /var/log/upstart /var/tmp",
        None,
    );
    // hostname.conf, network.conf
    sh(
        "hostname -F /etc/hostname; echo \"host name set to $(hostname)\"",
        Some("/var/log/upstart/hostname.log"),
    );
    sh(
        "ip link set lo up; ip -o addr show lo",
        Some("/var/log/upstart/network.log"),
    );
    // syslogd.conf: it forks; the parent's exit is waited for.
    run(command("syslogd").args(["-O", "/var/log/messages"]));
    // The runlevel event starts console.conf and httpd.conf, in that
    // order (upshot starts an event's jobs in the order of their names).
    let mut shell = console_shell();
    // httpd.conf: pre-start, then the backgrounding subshell.
    sh(
        "mkdir -p /srv/www; echo \"upshot on $(hostname), kernel $(uname -r)\" > /srv/www/index.html",
        None,
    );
    sh("(exec httpd -f -p 127.0.0.1:80 -h /srv/www &)", None);
    // ready.conf: its process, on the console.
    run(command("echo").arg("upshot-vm: all jobs running"));

    loop {
        let sig = wait_signal(&signals);
        match sig {
            libc::SIGCHLD => {
                for pid in reap() {
                    if pid == shell {
                        shell = console_shell();
                    }
                }
            }
            libc::SIGUSR1 | libc::SIGUSR2 | libc::SIGTERM => shutdown(sig, shell),
            _ => {}
        }
    }
}

fn early_mounts() {
    for (source, target, fstype) in [
        ("devtmpfs", "/dev", "devtmpfs"),
        ("proc", "/proc", "proc"),
        ("sysfs", "/sys", "sysfs"),
        ("devpts", "/dev/pts", "devpts"),
        ("tmpfs", "/run", "tmpfs"),
    ] {
        let _ = std::fs::create_dir_all(target);
        let c = |s: &str| CString::new(s).expect("no NUL");
        let (source, target, fstype) = (c(source), c(target), c(fstype));
        // SAFETY: valid C strings that outlive the call.
        unsafe {
            libc::mount(
                source.as_ptr(),
                target.as_ptr(),
                fstype.as_ptr(),
                0,
                std::ptr::null(),
            );
        }
    }
}

/// Blocks the signals the main loop takes with sigwaitinfo (children get
/// an empty mask again: see [`command`]).
fn block_signals() -> libc::sigset_t {
    // SAFETY: sigset operations on a local set.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in [
            libc::SIGCHLD,
            libc::SIGUSR1,
            libc::SIGUSR2,
            libc::SIGTERM,
            libc::SIGINT,
        ] {
            libc::sigaddset(&mut set, s);
        }
        libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}

fn wait_signal(set: &libc::sigset_t) -> i32 {
    loop {
        // SAFETY: a valid set; the info is not read.
        let sig = unsafe { libc::sigwaitinfo(set, std::ptr::null_mut()) };
        if sig > 0 {
            return sig;
        }
    }
}

/// Reaps every child that has exited; returns their pids.
fn reap() -> Vec<i32> {
    let mut pids = Vec::new();
    loop {
        let mut status = 0;
        // SAFETY: waitpid with a valid status pointer.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if pid <= 0 {
            return pids;
        }
        pids.push(pid);
    }
}

/// A command whose process starts with no signal blocked (std leaves the
/// mask as it is, and ours blocks what the main loop waits for).
fn command(program: &str) -> Command {
    let mut cmd = Command::new(program);
    // SAFETY: sigemptyset and sigprocmask are async-signal-safe and touch
    // only a local set.
    unsafe {
        cmd.pre_exec(|| {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
            Ok(())
        });
    }
    cmd
}

/// Runs a command and waits for it (reaping nothing else).
fn run(cmd: &mut Command) {
    if let Ok(child) = cmd.spawn() {
        let mut status = 0;
        // SAFETY: waitpid on our own child.
        unsafe {
            libc::waitpid(child.id() as i32, &mut status, 0);
        }
    }
}

/// Runs a shell script, its output to `log` (appended) or the console.
fn sh(script: &str, log: Option<&str>) {
    let mut cmd = command("/bin/sh");
    cmd.args(["-e", "-c", script]);
    if let Some(path) = log.and_then(|p| OpenOptions::new().create(true).append(true).open(p).ok()) {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::from(path.try_clone().expect("dup")))
            .stderr(Stdio::from(path));
    }
    run(&mut cmd);
}

/// The root shell on the console, in a session of its own.
fn console_shell() -> i32 {
    let mut cmd = command("cttyhack");
    cmd.args(["sh", "-l"]).env("HOME", "/root").current_dir("/root");
    if let Ok(console) = File::options().read(true).write(true).open("/dev/console") {
        cmd.stdin(Stdio::from(console.try_clone().expect("dup")))
            .stdout(Stdio::from(console.try_clone().expect("dup")))
            .stderr(Stdio::from(console));
    }
    // SAFETY: setsid is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    cmd.spawn().map(|c| c.id() as i32).unwrap_or(-1)
}

/// Stops everything (the shell with SIGHUP, the rest with SIGTERM, then
/// SIGKILL what is left after 5 s), syncs and powers off, reboots or
/// halts as busybox's signals mean.
fn shutdown(sig: i32, shell: i32) -> ! {
    // SAFETY: signals and system calls, no memory involved.
    unsafe {
        libc::kill(shell, libc::SIGHUP);
        libc::kill(-1, libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let mut status = 0;
            let pid = libc::waitpid(-1, &mut status, libc::WNOHANG);
            if pid < 0 || Instant::now() >= deadline {
                break;
            }
            if pid == 0 {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        if Instant::now() >= deadline {
            println!("baseline-init: still running after 5 s: {}", survivors());
        }
        libc::kill(-1, libc::SIGKILL);
        libc::sync();
        libc::reboot(match sig {
            libc::SIGUSR1 => libc::RB_HALT_SYSTEM,
            libc::SIGTERM => libc::RB_AUTOBOOT,
            _ => libc::RB_POWER_OFF,
        });
    }
    std::process::exit(0)
}

/// The processes other than this one and the kernel's threads.
fn survivors() -> String {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.parse::<u32>().is_ok_and(|p| p > 1)
            && let Ok(cmdline) = std::fs::read(e.path().join("cmdline"))
            && !cmdline.is_empty()
        {
            let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
            let state = stat
                .rsplit(')')
                .next()
                .unwrap_or("")
                .split_whitespace()
                .next()
                .unwrap_or("?")
                .to_string();
            out.push(format!(
                "{name} {state} {}",
                String::from_utf8_lossy(&cmdline).replace('\0', " ").trim()
            ));
        }
    }
    out.join(", ")
}

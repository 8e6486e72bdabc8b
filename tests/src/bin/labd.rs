//! `labd --start [--force] | --restart | --stop --config FILE`: a stand-in
//! for a forking framework service of a test lab (Sony AVE's broker, relay,
//! adb server).
//!
//! FILE holds `KEY VALUE` lines: `pidfile PATH` (required), `socket PATH`
//! (required, the Unix socket it serves), `user NAME` (demote to this user
//! and its group when started as root), `out DIR` (where each instance
//! writes `labd-GEN`: lines `pid P`, `ppid P`, `gen G`, `state S` and its
//! credentials, and
//! `labd-GEN.exit` when it ends).
//!
//! * `--start`: reads FILE, demotes itself, daemonizes (fork, `setsid`,
//!   fork; each parent exits 0), binds the socket, writes the PID file and
//!   serves. Refuses (status 1) if the PID file names a live process; a
//!   stale PID file or socket is an error too unless `--force`. Prints
//!   `labd: serving on SOCKET as PID` on stdout.
//! * Clients send lines: `ping` gets `pong PID GEN STATE` (STATE counts the
//!   pings served, carried over a restart); `restart` starts the handover:
//!   the instance stops accepting clients, removes its socket and starts a
//!   new instance (itself again, `--takeover`, which inherits the
//!   environment and daemonizes the same way), hands it its state, answers
//!   `restarted NEWPID` and exits 0 once its last client is gone. The new
//!   instance replaces the PID file before the old one answers.
//! * `--restart`: asks the running instance for that handover over its
//!   socket, prints its answer, exits 0.
//! * `--stop`: sends SIGTERM to the process named by the PID file and waits
//!   for it to end. On SIGTERM an instance removes its PID file (if it names
//!   it) and its socket, and exits 0.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::unistd::{ForkResult, fork, setsid};
use upshot_tests::standin::{Args, block_signals, credentials_line, next_signal, write_atomic};

struct Config {
    path: String,
    pidfile: PathBuf,
    socket: PathBuf,
    user: Option<String>,
    out: Option<PathBuf>,
}

fn fail(msg: &str) -> ! {
    eprintln!("labd: {msg}");
    std::process::exit(1)
}

fn read_config(path: &str) -> Config {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| fail(&format!("{path}: {e}")));
    let mut c = Config {
        path: path.to_string(),
        pidfile: PathBuf::new(),
        socket: PathBuf::new(),
        user: None,
        out: None,
    };
    for line in text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let (k, v) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        let v = v.trim().to_string();
        match k {
            "pidfile" => c.pidfile = v.into(),
            "socket" => c.socket = v.into(),
            "user" => c.user = Some(v),
            "out" => c.out = Some(v.into()),
            _ => fail(&format!("{path}: unknown key {k}")),
        }
    }
    if c.pidfile.as_os_str().is_empty() || c.socket.as_os_str().is_empty() {
        fail(&format!("{path}: pidfile and socket are required"));
    }
    c
}

fn pid_in(file: &Path) -> Option<i32> {
    std::fs::read_to_string(file).ok()?.trim().parse().ok()
}

fn alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks for existence.
    pid > 0 && unsafe { libc::kill(pid, 0) } == 0
}

/// Drops to the configured user (its primary group, no supplementary
/// groups) when running as root.
fn demote(c: &Config) {
    let Some(name) = &c.user else { return };
    if !nix::unistd::geteuid().is_root() {
        return;
    }
    let user = nix::unistd::User::from_name(name)
        .ok()
        .flatten()
        .unwrap_or_else(|| fail(&format!("no such user {name}")));
    nix::unistd::setgroups(&[user.gid]).unwrap_or_else(|e| fail(&format!("setgroups: {e}")));
    nix::unistd::setgid(user.gid).unwrap_or_else(|e| fail(&format!("setgid: {e}")));
    nix::unistd::setuid(user.uid).unwrap_or_else(|e| fail(&format!("setuid: {e}")));
}

/// Fork, `setsid`, fork: returns in the grandchild.
fn daemonize() {
    for i in 0..2 {
        // SAFETY: single-threaded here; the parent only calls `_exit`.
        match unsafe { fork() }.unwrap_or_else(|e| fail(&format!("fork: {e}"))) {
            ForkResult::Parent { .. } => unsafe { libc::_exit(0) },
            ForkResult::Child if i == 0 => {
                setsid().unwrap_or_else(|e| fail(&format!("setsid: {e}")));
            }
            ForkResult::Child => {}
        }
    }
}

fn main() {
    let args = Args::parse();
    let c = read_config(&args.req("--config"));
    if args.flag("--stop") {
        stop(&c)
    } else if args.flag("--restart") {
        restart(&c)
    } else if args.flag("--takeover") {
        let state: u64 = args.num("--state", 0);
        let generation: u64 = args.num("--gen", 1);
        demote(&c);
        daemonize();
        serve(&c, generation, state, true)
    } else if args.flag("--start") {
        if let Some(pid) = pid_in(&c.pidfile) {
            if alive(pid) {
                fail(&format!("already running as {pid}"));
            }
            if !args.flag("--force") {
                fail(&format!("stale PID file {} (use --force)", c.pidfile.display()));
            }
        }
        if c.socket.exists() && !args.flag("--force") {
            fail(&format!("stale socket {} (use --force)", c.socket.display()));
        }
        demote(&c);
        daemonize();
        let _ = std::fs::remove_file(&c.socket);
        serve(&c, 1, 0, false)
    } else {
        fail("usage: labd --start [--force] | --restart | --stop --config FILE")
    }
}

fn stop(c: &Config) -> ! {
    let pid = pid_in(&c.pidfile).unwrap_or_else(|| fail("not running (no PID file)"));
    // SAFETY: no memory arguments.
    if unsafe { libc::kill(pid, libc::SIGTERM) } != 0 {
        fail(&format!("kill {pid}: {}", std::io::Error::last_os_error()));
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while alive(pid) && pid_in(&c.pidfile) == Some(pid) {
        if Instant::now() > deadline {
            fail(&format!("{pid} did not stop"));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    println!("labd: stopped {pid}");
    std::process::exit(0)
}

fn restart(c: &Config) -> ! {
    let mut s = UnixStream::connect(&c.socket)
        .unwrap_or_else(|e| fail(&format!("connect {}: {e}", c.socket.display())));
    s.write_all(b"restart\n")
        .unwrap_or_else(|e| fail(&format!("write: {e}")));
    let mut line = String::new();
    BufReader::new(&s)
        .read_line(&mut line)
        .unwrap_or_else(|e| fail(&format!("read: {e}")));
    if !line.starts_with("restarted ") {
        fail(&format!("unexpected answer {line:?}"));
    }
    print!("labd: {line}");
    std::process::exit(0)
}

fn record(c: &Config, name: &str, text: &str) {
    if let Some(out) = &c.out {
        write_atomic(out.join(name), text);
    }
}

fn serve(c: &Config, generation: u64, state: u64, takeover: bool) -> ! {
    let signals = block_signals(&[libc::SIGTERM]);
    let listener =
        UnixListener::bind(&c.socket).unwrap_or_else(|e| fail(&format!("bind {}: {e}", c.socket.display())));
    listener.set_nonblocking(true).expect("nonblocking");
    let me = std::process::id() as i32;
    write_atomic(&c.pidfile, &format!("{me}\n"));
    // SAFETY: no memory arguments.
    let ppid = unsafe { libc::getppid() };
    record(
        c,
        &format!("labd-{generation}"),
        &format!(
            "pid {me}\nppid {ppid}\ngen {generation}\nstate {state}\n{}",
            credentials_line()
        ),
    );
    println!("labd: serving on {} as {me}", c.socket.display());
    let _ = std::io::stdout().flush();
    if takeover {
        // Tell the old instance (our stdout is its pipe) that we serve,
        // then let go of the pipe.
        let devnull = std::fs::File::open("/dev/null").expect("/dev/null");
        // SAFETY: duplicating a valid descriptor onto 1.
        unsafe { libc::dup2(std::os::fd::AsRawFd::as_raw_fd(&devnull), 1) };
    }

    let state = Arc::new(AtomicU64::new(state));
    let clients = Arc::new(AtomicUsize::new(0));
    let (restart_tx, restart_rx) = mpsc::channel::<UnixStream>();
    let mut listener = Some(listener);
    loop {
        if let Some(l) = &listener {
            while let Ok((stream, _)) = l.accept() {
                let _ = stream.set_nonblocking(false);
                clients.fetch_add(1, Ordering::SeqCst);
                let (state, clients, restart_tx) = (state.clone(), clients.clone(), restart_tx.clone());
                std::thread::spawn(move || {
                    client(stream, generation, &state, &restart_tx);
                    clients.fetch_sub(1, Ordering::SeqCst);
                });
            }
        }
        if let Ok(mut requester) = restart_rx.try_recv()
            && let Some(l) = listener.take()
        {
            drop(l);
            let _ = std::fs::remove_file(&c.socket);
            let new = hand_over(c, generation + 1, state.load(Ordering::SeqCst));
            let _ = requester.write_all(format!("restarted {new}\n").as_bytes());
        }
        if listener.is_none() && clients.load(Ordering::SeqCst) == 0 {
            record(
                c,
                &format!("labd-{generation}.exit"),
                &format!("pid {me} handed over\n"),
            );
            std::process::exit(0)
        }
        if next_signal(&signals, 20) == Some(libc::SIGTERM) {
            if pid_in(&c.pidfile) == Some(me) {
                let _ = std::fs::remove_file(&c.pidfile);
            }
            if listener.is_some() {
                let _ = std::fs::remove_file(&c.socket);
            }
            record(
                c,
                &format!("labd-{generation}.exit"),
                &format!("pid {me} stopped\n"),
            );
            std::process::exit(0)
        }
    }
}

/// Starts the next instance (which inherits our environment, so it stays
/// tagged as the job's) and waits until it serves; its pid.
fn hand_over(c: &Config, generation: u64, state: u64) -> i32 {
    let exe = std::env::current_exe().unwrap_or_else(|e| fail(&format!("current_exe: {e}")));
    let mut child = Command::new(exe)
        .args([
            "--takeover",
            "--config",
            &c.path,
            "--gen",
            &generation.to_string(),
        ])
        .args(["--state", &state.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| fail(&format!("spawn the new instance: {e}")));
    let mut line = String::new();
    let _ = BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line);
    let _ = child.wait();
    line.rsplit(' ')
        .next()
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| fail(&format!("the new instance did not start: {line:?}")))
}

fn client(stream: UnixStream, generation: u64, state: &AtomicU64, restart: &mpsc::Sender<UnixStream>) {
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    for line in BufReader::new(stream).lines() {
        let Ok(line) = line else { return };
        match line.trim() {
            "ping" => {
                let n = state.fetch_add(1, Ordering::SeqCst) + 1;
                let me = std::process::id();
                if writer
                    .write_all(format!("pong {me} {generation} {n}\n").as_bytes())
                    .is_err()
                {
                    return;
                }
            }
            "restart" => {
                let Ok(w) = writer.try_clone() else { return };
                let _ = restart.send(w);
            }
            _ => {
                let _ = writer.write_all(b"error\n");
            }
        }
    }
}

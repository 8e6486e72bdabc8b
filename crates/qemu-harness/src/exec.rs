//! Running the host tools the lab needs (cargo, rustup, apt, dpkg-deb,
//! tar, xz) with a deadline: a tool that overruns is killed with its whole
//! process group, and a tool that cannot be started is an infrastructure
//! error naming it.

use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::error::{Failure, Result};

/// What a finished tool left.
#[derive(Debug)]
pub struct Output {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

impl Output {
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
}

/// Runs `cmd` to completion or until `deadline`, with `input` on its
/// stdin. Not finishing in time, or not starting, is an infrastructure
/// error; a non-zero exit is for the caller to judge.
pub fn run(cmd: &mut Command, input: Option<Vec<u8>>, deadline: Instant) -> Result<Output> {
    let stdin = if input.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    };
    run_from(cmd, stdin, input, deadline)
}

/// [`run`] with `stdin` as the tool's standard input (the read end of
/// another tool's pipe, say); `input`, if any, is written to it when it is
/// `Stdio::piped()`.
pub fn run_from(
    cmd: &mut Command,
    stdin: Stdio,
    input: Option<Vec<u8>>,
    deadline: Instant,
) -> Result<Output> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    cmd.stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child = cmd
        .spawn()
        .map_err(|e| Failure::infra(format!("cannot run {program}: {e}")))?;
    let feeder = input.map(|data| {
        let mut stdin = child.stdin.take().expect("piped stdin");
        thread::spawn(move || {
            // A tool that stops reading early (xz at the end of its stream)
            // closes the pipe: that is not an error here.
            let _ = stdin.write_all(&data);
        })
    });
    let mut out = child.stdout.take().expect("piped stdout");
    let mut err = child.stderr.take().expect("piped stderr");
    let out_reader = thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let err_reader = thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        String::from_utf8_lossy(&v).into_owned()
    });
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() >= deadline => {
                kill_group(child.id());
                let _ = child.wait();
                return Err(Failure::infra(format!(
                    "{program} did not finish in time (killed)"
                )));
            }
            Ok(None) => thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(Failure::infra(format!("waiting for {program}: {e}"))),
        }
    };
    // The tool may have left children holding the pipes: end them too.
    kill_group(child.id());
    if let Some(f) = feeder {
        let _ = f.join();
    }
    let stdout = out_reader.join().unwrap_or_default();
    let stderr = err_reader.join().unwrap_or_default();
    Ok(Output {
        status,
        stdout,
        stderr,
    })
}

/// Runs `cmd` and requires success; the error quotes the end of its
/// stderr.
pub fn run_ok(cmd: &mut Command, input: Option<Vec<u8>>, deadline: Instant) -> Result<Output> {
    let stdin = if input.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    };
    run_ok_from(cmd, stdin, input, deadline)
}

/// [`run_ok`] with `stdin` as in [`run_from`].
pub fn run_ok_from(
    cmd: &mut Command,
    stdin: Stdio,
    input: Option<Vec<u8>>,
    deadline: Instant,
) -> Result<Output> {
    let shown = describe(cmd);
    let out = run_from(cmd, stdin, input, deadline)?;
    if out.status.success() {
        Ok(out)
    } else {
        Err(Failure::infra(format!(
            "`{shown}` failed ({}): {}",
            out.status,
            crate::console::tail_lines(out.stderr.trim_end(), 15)
        )))
    }
}

/// The command line as a person would type it (for messages).
pub fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Sends SIGKILL to the process group `pgid` (the leader's pid).
pub fn kill_group(pgid: u32) {
    // SAFETY: kill(2) with a negative pid signals a process group; no
    // memory is involved.
    unsafe {
        libc::kill(-(pgid as libc::pid_t), libc::SIGKILL);
    }
}

/// Whether `program` is found on `PATH` (or is a path to an executable).
pub fn on_path(program: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let is_exe = |p: &std::path::Path| {
        p.metadata()
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if program.contains('/') {
        return is_exe(std::path::Path::new(program)).unwrap_or(false);
    }
    std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).any(|d| is_exe(&d.join(program)).unwrap_or(false)))
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn soon(secs: u64) -> Instant {
        Instant::now() + Duration::from_secs(secs)
    }

    #[test]
    fn output_and_status_are_collected() {
        let out = run(
            Command::new("sh").args(["-c", "cat; echo err >&2; exit 3"]),
            Some(b"in".to_vec()),
            soon(10),
        )
        .unwrap();
        assert_eq!(out.stdout, b"in");
        assert_eq!(out.stderr, "err\n");
        assert_eq!(out.status.code(), Some(3));
    }

    #[test]
    fn a_tool_past_its_deadline_is_killed() {
        let t = Instant::now();
        let f = run(
            Command::new("sh").args(["-c", "sleep 30 & sleep 30"]),
            None,
            Instant::now(),
        )
        .unwrap_err();
        assert!(f.message.contains("did not finish in time"), "{f}");
        assert!(t.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn a_missing_tool_is_an_infrastructure_error() {
        let f = run(&mut Command::new("/no/such/tool"), None, soon(5)).unwrap_err();
        assert_eq!(f.kind, crate::error::Kind::Infrastructure);
        assert!(f.message.starts_with("cannot run /no/such/tool"), "{f}");
    }

    #[test]
    fn run_ok_quotes_the_failure() {
        let f = run_ok(
            Command::new("sh").args(["-c", "echo boom >&2; exit 1"]),
            None,
            soon(10),
        )
        .unwrap_err();
        assert!(
            f.message.contains("`sh -c echo boom >&2; exit 1` failed") && f.message.ends_with("boom"),
            "{f}"
        );
    }

    #[test]
    fn on_path_finds_programs() {
        assert!(on_path("sh"));
        assert!(!on_path("no-such-program-here"));
    }
}

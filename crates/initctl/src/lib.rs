//! `initctl`: the command-line client of the upshot init daemon, speaking
//! Upstart's D-Bus API (`com.ubuntu.Upstart0_6`) with Upstart's commands,
//! output and exit codes (spec §3 and §4), so scripts written for Upstart
//! keep working.
//!
//! The binary is thin: [`args`] parses the command line the way libnih
//! does, [`transport`] finds the daemon, [`commands`] makes the calls
//! through [`client`] and prints with [`output`]; [`status`] and
//! [`conditions`] are the pure formatting of status lines and job
//! conditions, [`sessions`] reads session files. It does not start,
//! supervise or parse jobs itself.

pub mod args;
pub mod client;
pub mod commands;
pub mod conditions;
pub mod output;
pub mod sessions;
pub mod status;
pub mod transport;

use std::io::Write;

/// Whether a program called `argv0` is initctl: by its own name or by
/// the name of one of its links (`start`, `stop`...).
pub fn answers_to(argv0: Option<&str>) -> bool {
    let program = args::program_name(argv0);
    program == "initctl" || args::LINK_NAMES.contains(&program.as_str())
}

/// `initctl` as a whole process, with this process's command line and
/// environment: it exits with the command's status.
pub fn process_main() -> ! {
    // Like a C program, die quietly when a reader goes away
    // (`initctl list | head -1`).
    // SAFETY: restoring a default signal disposition; called before any
    // thread exists.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    let argv: Vec<String> = std::env::args_os()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    std::process::exit(main_with(&argv, &commands::Env::from_process()))
}

/// Runs `initctl` with this command line and environment; returns the
/// exit status.
pub fn main_with(argv: &[String], env: &commands::Env) -> i32 {
    match args::parse(argv) {
        Ok(invocation) => commands::run(&invocation, env),
        Err(args::Early::Help(text) | args::Early::Version(text)) => {
            let _ = std::io::stdout().lock().write_all(text.as_bytes());
            0
        }
        Err(args::Early::Usage(text)) => {
            let _ = std::io::stderr().lock().write_all(text.as_bytes());
            1
        }
    }
}

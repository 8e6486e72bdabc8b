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

//! `init`: the upshot daemon. So far it has one mode, `--check`, which parses
//! job files the way the daemon will and reports every error; the daemon
//! itself comes with the engine and supervisor.

mod check;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// upshot init: an event-based init daemon compatible with Upstart.
#[derive(Parser, Debug)]
#[command(name = "init", version, about, long_about = None)]
struct Cli {
    /// Parse job files (or every *.conf under a directory, with the
    /// .override files beside them) and report errors as FILE:LINE:COL.
    #[arg(long, required = true)]
    check: bool,

    /// With --check: print every parsed job as JSON on standard output.
    #[arg(long, requires = "check")]
    dump: bool,

    /// Job files or conf directories.
    #[arg(required = true, value_name = "PATH")]
    paths: Vec<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    check::run(&cli.paths, cli.dump)
}

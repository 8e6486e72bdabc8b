//! `qemu-harness`: run a harness job (`run`), boot its VM with the serial
//! console on this terminal (`boot`), or check job files (`check`).
//!
//! Exit status: 0 success, 1 test error, 2 bad command line, 65 job error,
//! 69 infrastructure error.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use qemu_harness::error::{EXIT_USAGE, Failure};
use qemu_harness::level::Log;
use qemu_harness::run::{self, Options};
use qemu_harness::{DEFAULT_JOB, job, static_build};

#[derive(Parser, Debug)]
#[command(
    name = "qemu-harness",
    version,
    about = "upshot's VM test lab: build, boot, type, check"
)]
struct Cli {
    /// The workspace whose binaries are built and whose paths job files
    /// name (default: the one this harness was built from).
    #[arg(long, global = true, value_name = "DIR")]
    workspace: Option<PathBuf>,

    /// The cache and run directory (default: TARGET/qemu-harness, where
    /// TARGET is $CARGO_TARGET_DIR or the workspace's target).
    #[arg(long, global = true, value_name = "DIR")]
    cache: Option<PathBuf>,

    /// Print only the final result (harness.log still gets every line).
    #[arg(short, long, global = true)]
    quiet: bool,

    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run a job: deploy, boot, test, finalize.
    Run {
        /// A job file, or the name of one in crates/qemu-harness/jobs
        /// (default: vm).
        job: Option<String>,
    },
    /// Deploy and boot a job's VM with its serial console on this
    /// terminal (Ctrl-A X quits).
    Boot {
        /// A job file, or the name of one in crates/qemu-harness/jobs
        /// (default: vm).
        job: Option<String>,
    },
    /// Check job files and report their errors.
    Check {
        #[arg(required = true)]
        jobs: Vec<String>,
    },
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { EXIT_USAGE } else { 0 });
        }
    };
    let workspace = cli.workspace.clone().unwrap_or_else(|| {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        dir.canonicalize().unwrap_or(dir)
    });
    let cache_root = cli
        .cache
        .clone()
        .unwrap_or_else(|| static_build::target_dir(&workspace).join("qemu-harness"));
    let log = Log::new(cli.quiet);
    let opts = Options {
        workspace: workspace.clone(),
        cache_root,
    };
    let result = match &cli.command {
        Cmd::Run { job } => load(job.as_deref(), &workspace)
            .and_then(|job| run::run(&job, &opts, &log))
            .map(|r| {
                eprintln!(
                    "PASSED: job {} ({}, {:.1} s); its logs are in {}",
                    r.job,
                    r.accel,
                    log.elapsed(),
                    r.run_dir.display()
                );
            }),
        Cmd::Boot { job } => load(job.as_deref(), &workspace)
            .and_then(|job| run::interactive(&job, &opts, &log))
            .map(|status| {
                eprintln!("QEMU exited: {status}");
            }),
        Cmd::Check { jobs } => {
            let mut first = None;
            for name in jobs {
                match load(Some(name), &workspace) {
                    Ok(job) => println!("{}: ok ({} tests)", job.file.display(), job.tests.len()),
                    Err(f) => {
                        eprintln!("{}", f.message);
                        first.get_or_insert(f);
                    }
                }
            }
            first.map_or(Ok(()), Err)
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("FAILED: {f}");
            ExitCode::from(f.kind.exit_code())
        }
    }
}

/// Reads a job given as a path, or as a name in the harness's jobs
/// directory.
fn load(name: Option<&str>, workspace: &Path) -> Result<job::Job, Failure> {
    let name = name.unwrap_or(DEFAULT_JOB);
    let path = if name.contains('/') || name.ends_with(".toml") {
        PathBuf::from(name)
    } else {
        workspace
            .join("crates/qemu-harness/jobs")
            .join(format!("{name}.toml"))
    };
    job::load(&path, workspace)
}

//! `init`: the upshot daemon. `init --user` runs a session init for the
//! calling user; `init --check PATH…` parses job files the way the daemon
//! does and reports every error. (PID 1 duties come with their issue.)

mod check;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use jobconf_parser::Console;

use init::{conf, daemon, logging, session};

/// upshot init: an event-based init daemon compatible with Upstart.
#[derive(Parser, Debug)]
#[command(name = "init", version, about, long_about = None)]
struct Cli {
    /// Parse job files (or every *.conf under a directory, with the
    /// .override files beside them) and report errors as FILE:LINE:COL.
    #[arg(long)]
    check: bool,

    /// With --check: print every parsed job as JSON on standard output.
    #[arg(long, requires = "check")]
    dump: bool,

    /// Run as a session init for the calling user.
    #[arg(long, conflicts_with = "check")]
    user: bool,

    /// Job directory; repeat for several, in priority order. Replaces the
    /// default list.
    #[arg(long = "confdir", value_name = "DIR")]
    confdir: Vec<PathBuf>,

    /// Job directory searched before all others.
    #[arg(long, value_name = "DIR")]
    prepend_confdir: Vec<PathBuf>,

    /// Job directory searched after all others.
    #[arg(long, value_name = "DIR")]
    append_confdir: Vec<PathBuf>,

    /// Directory for job logs (console log).
    #[arg(long, value_name = "DIR")]
    logdir: Option<PathBuf>,

    /// Do not log job output: `console log` becomes `console none`.
    #[arg(long)]
    no_log: bool,

    /// Console type of jobs that name none.
    #[arg(long, value_name = "TYPE", value_parser = ["none", "output", "owner", "log"])]
    default_console: Option<String>,

    /// Do not emit the startup event.
    #[arg(long, conflicts_with = "startup_event")]
    no_startup_event: bool,

    /// Emit NAME instead of `startup` once the configuration is loaded.
    #[arg(long, value_name = "NAME")]
    startup_event: Option<String>,

    /// Start jobs with a minimal environment (PATH and TERM) instead of
    /// this process's environment.
    #[arg(long)]
    no_inherit_env: bool,

    /// Log more (state changes).
    #[arg(short, long)]
    verbose: bool,

    /// Log errors only.
    #[arg(short, long)]
    quiet: bool,

    /// Log everything.
    #[arg(long)]
    debug: bool,

    /// With --check: job files or conf directories.
    #[arg(value_name = "PATH")]
    paths: Vec<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.check {
        if cli.paths.is_empty() {
            eprintln!("init: --check needs at least one PATH");
            return ExitCode::from(2);
        }
        return check::run(&cli.paths, cli.dump);
    }
    if !cli.paths.is_empty() {
        eprintln!(
            "init: unexpected argument '{}' (PATHs go with --check)",
            cli.paths[0].display()
        );
        return ExitCode::from(2);
    }
    if !cli.user {
        eprintln!(
            "init: not running as PID 1: use --user to run a session init, or --check PATH... to check job files"
        );
        return ExitCode::FAILURE;
    }
    logging::init(logging::level(cli.quiet, cli.verbose, cli.debug));
    let code = daemon::run(user_options(&cli));
    ExitCode::from(code.clamp(0, 255) as u8)
}

/// The session init's settings from the command line and environment
/// (spec §5).
fn user_options(cli: &Cli) -> daemon::Options {
    let env = |k: &str| std::env::var(k).ok();
    let defaults = match env("UPSTART_CONFDIR") {
        Some(dir) => vec![PathBuf::from(dir)],
        None => conf::session_dirs(&env),
    };
    let conf_dirs =
        conf::apply_dir_options(defaults, &cli.confdir, &cli.prepend_confdir, &cli.append_confdir);
    let log_dir = if cli.no_log {
        None
    } else {
        Some(
            cli.logdir
                .clone()
                .or_else(|| env("UPSTART_LOGDIR").map(PathBuf::from))
                .unwrap_or_else(|| session::log_dir(&env)),
        )
    };
    let default_console = cli
        .default_console
        .as_deref()
        .and_then(Console::from_name)
        .unwrap_or(Console::Log);
    let startup_event = match (&cli.startup_event, cli.no_startup_event) {
        (_, true) => None,
        (Some(name), false) => Some(name.clone()),
        (None, false) => Some("startup".to_string()),
    };
    let process_env: Vec<String> = std::env::vars_os()
        .filter_map(|(k, v)| Some(format!("{}={}", k.to_str()?, v.to_str()?)))
        .collect();
    let global_env = if cli.no_inherit_env {
        let mut table = vec![format!(
            "PATH={}",
            env("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into())
        )];
        if let Some(term) = env("TERM") {
            table.push(format!("TERM={term}"));
        }
        table
    } else {
        process_env
            .iter()
            .filter(|e| !e.starts_with("UPSTART_"))
            .cloned()
            .collect()
    };
    let uid = nix::unistd::getuid().as_raw();
    let pid = std::process::id();
    let address = session::address(uid, pid);
    daemon::Options {
        user: true,
        conf_dirs,
        log_dir,
        default_console,
        startup_event,
        global_env,
        process_env,
        final_env: vec![format!("UPSTART_SESSION={address}")],
        session_file: session::session_file(&env, pid).map(|p| (p, address.clone())),
        address: Some(address),
    }
}

//! `init`: the upshot daemon. As process 1 (of the machine or of a PID
//! namespace) it is the system init; `init --user` runs a session init for
//! the calling user; `init --check PATH…` parses job files the way the
//! daemon does and reports every error.

mod check;

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use jobconf_parser::Console;

use init::pid1::{self, Place};
use init::{conf, daemon, logging, session};

/// upshot init: an event-based init daemon compatible with Upstart.
#[derive(Parser, Debug, Default)]
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

    /// Do not serve D-Bus (no control with initctl).
    #[arg(long)]
    no_dbus: bool,

    /// Test aid: emitting the event NAME panics inside the main loop,
    /// which must log it and go on.
    #[arg(long, value_name = "NAME", hide = true)]
    inject_panic_on_event: Option<String>,

    /// With --check: job files or conf directories.
    #[arg(value_name = "PATH")]
    paths: Vec<PathBuf>,
}

fn main() -> ExitCode {
    let argv: Vec<OsString> = std::env::args_os().collect();
    // With the `initctl` feature, init called `initctl` or by one of its
    // link names is initctl (and exits).
    #[cfg(feature = "initctl")]
    if initctl::answers_to(argv.first().and_then(|a| a.to_str())) {
        initctl::process_main();
    }
    let has = |flag: &str| argv.iter().skip(1).any(|a| a == flag);
    if pid1::is_pid1() && !has("--user") && !has("--check") {
        system_main(&argv);
    }
    let cli = Cli::parse_from(&argv);
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

/// The system init: early set-up, the command line the kernel (or
/// whoever started us) gave, logging, then the main loop. Never returns and
/// never exits except at the end of a shutdown in a PID namespace: should
/// anything before the main loop panic, process 1 still reaps orphans.
fn system_main(argv: &[OsString]) -> ! {
    let _ = std::panic::catch_unwind(|| system_run(argv));
    pid1::reap_forever()
}

fn system_run(argv: &[OsString]) {
    let setup = pid1::early_setup();
    let argv = with_env_options(argv, std::env::vars_os());
    let (cli, ignored, errors) = kernel_args(&argv);
    logging::init_with(
        logging::level(cli.quiet, cli.verbose, cli.debug),
        setup.place == Place::Machine,
    );
    tracing::info!(
        "upshot {} starting as process 1 of {}",
        env!("CARGO_PKG_VERSION"),
        setup.place.name()
    );
    for note in &setup.notes {
        if note.warning {
            tracing::warn!("{}", note.text);
        } else {
            tracing::info!("{}", note.text);
        }
    }
    for arg in &ignored {
        tracing::info!("ignoring argument {arg}");
    }
    for e in &errors {
        tracing::warn!("bad command line: {e}");
    }
    if !nix::unistd::geteuid().is_root() {
        tracing::warn!("not running as root: jobs run as this user, and mounts may fail");
    }
    daemon::run(system_options(&cli, setup.place));
}

/// Options a system init takes with a value; Upstart's options that
/// upshot does not implement are accepted and ignored.
const SYSTEM_VALUES: &[&str] = &[
    "--confdir",
    "--prepend-confdir",
    "--append-confdir",
    "--logdir",
    "--default-console",
    "--startup-event",
    "--inject-panic-on-event",
];
const UPSTART_UNIMPLEMENTED_FLAGS: &[&str] = &[
    "--no-cgroups",
    "--session",
    "--chroot-sessions",
    "--restart",
    "--write-state-file",
];
const UPSTART_UNIMPLEMENTED_VALUES: &[&str] = &["--state-fd"];

/// The kernel hands process 1 a word of its command line that holds `=`
/// (before any `--`) as an environment variable, not as an argument: so
/// `--logdir=/var/log/x` arrives as the variable `--logdir`. Such
/// variables are taken back as arguments, after the real ones.
fn with_env_options(argv: &[OsString], env: impl Iterator<Item = (OsString, OsString)>) -> Vec<OsString> {
    let mut all = argv.to_vec();
    for (key, value) in env {
        if key.as_encoded_bytes().starts_with(b"--") {
            let mut word = key;
            word.push("=");
            word.push(value);
            all.push(word);
        }
    }
    all
}

/// Reads the command line of a system init: the options it takes, what
/// it ignores, and what was wrong. The kernel passes init every word of
/// its command line it does not know (`splash`, `single`, `ro`…), which
/// a general parser would refuse, so the words are sorted here against
/// the tables above; `--option=value` and `--option value` are both
/// accepted. A bad value is reported and its option left at the default;
/// the rest still applies.
fn kernel_args(argv: &[OsString]) -> (Cli, Vec<String>, Vec<String>) {
    let mut cli = Cli::default();
    let mut ignored = Vec::new();
    let mut errors = Vec::new();
    let mut i = 1;
    while i < argv.len() {
        let arg = argv[i].to_string_lossy().into_owned();
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let takes_value =
            SYSTEM_VALUES.contains(&name.as_str()) || UPSTART_UNIMPLEMENTED_VALUES.contains(&name.as_str());
        let value = match (&inline, takes_value) {
            (Some(v), true) => Some(v.clone()),
            (None, true) => {
                i += 1;
                argv.get(i).map(|v| v.to_string_lossy().into_owned())
            }
            _ => None,
        };
        i += 1;
        match (name.as_str(), value) {
            ("-v" | "--verbose", _) if inline.is_none() => cli.verbose = true,
            ("-q" | "--quiet", _) if inline.is_none() => cli.quiet = true,
            ("--debug", _) if inline.is_none() => cli.debug = true,
            ("--no-startup-event", _) if inline.is_none() => cli.no_startup_event = true,
            ("--no-log", _) if inline.is_none() => cli.no_log = true,
            ("--no-inherit-env", _) if inline.is_none() => cli.no_inherit_env = true,
            ("--no-dbus", _) if inline.is_none() => cli.no_dbus = true,
            ("--confdir", Some(v)) => cli.confdir.push(v.into()),
            ("--prepend-confdir", Some(v)) => cli.prepend_confdir.push(v.into()),
            ("--append-confdir", Some(v)) => cli.append_confdir.push(v.into()),
            ("--logdir", Some(v)) => cli.logdir = Some(v.into()),
            ("--startup-event", Some(v)) => cli.startup_event = Some(v),
            ("--inject-panic-on-event", Some(v)) => cli.inject_panic_on_event = Some(v),
            ("--default-console", Some(v)) => match v.as_str() {
                "none" | "output" | "owner" | "log" => cli.default_console = Some(v),
                _ => errors.push(format!(
                    "invalid value '{v}' for '--default-console' (none, output, owner or log); using the default"
                )),
            },
            (n, Some(v)) if UPSTART_UNIMPLEMENTED_VALUES.contains(&n) => {
                ignored.push(format!("{n} {v} (not implemented)"))
            }
            (n, None) if UPSTART_UNIMPLEMENTED_FLAGS.contains(&n) && inline.is_none() => {
                ignored.push(format!("{n} (not implemented)"))
            }
            _ => ignored.push(arg),
        }
    }
    if cli.no_startup_event && cli.startup_event.is_some() {
        errors.push("--no-startup-event and --startup-event conflict; no startup event is emitted".into());
    }
    (cli, ignored, errors)
}

/// `--startup-event`/`--no-startup-event`: the event to emit, if any.
fn startup_event(cli: &Cli) -> Option<String> {
    match (&cli.startup_event, cli.no_startup_event) {
        (_, true) => None,
        (Some(name), false) => Some(name.clone()),
        (None, false) => Some("startup".to_string()),
    }
}

fn default_console(cli: &Cli) -> Console {
    cli.default_console
        .as_deref()
        .and_then(Console::from_name)
        .unwrap_or(Console::Log)
}

fn process_env() -> Vec<String> {
    std::env::vars_os()
        .filter_map(|(k, v)| Some(format!("{}={}", k.to_str()?, v.to_str()?)))
        .collect()
}

/// The system init's settings (spec §2.5): jobs from `/etc/init` (or
/// `$UPSTART_CONFDIR`, or `--confdir`), logs in `/var/log/upstart` (or
/// `$UPSTART_LOGDIR`, `--logdir`; buffered until the directory is
/// writable), the private socket `unix:abstract=/com/ubuntu/upstart`, and
/// a job environment of `PATH` and `TERM` only, as Upstart's: a system
/// init does not pass on its own environment (the kernel's).
fn system_options(cli: &Cli, place: Place) -> daemon::Options {
    let env = |k: &str| std::env::var(k).ok();
    let defaults = vec![PathBuf::from(
        env("UPSTART_CONFDIR").unwrap_or_else(|| "/etc/init".into()),
    )];
    let conf_dirs =
        conf::apply_dir_options(defaults, &cli.confdir, &cli.prepend_confdir, &cli.append_confdir);
    let log_dir = (!cli.no_log).then(|| {
        cli.logdir
            .clone()
            .or_else(|| env("UPSTART_LOGDIR").map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from("/var/log/upstart"))
    });
    let mut global_env = vec![format!(
        "PATH={}",
        env("PATH").unwrap_or_else(|| pid1::DEFAULT_PATH.into())
    )];
    if let Some(term) = env("TERM") {
        global_env.push(format!("TERM={term}"));
    }
    daemon::Options {
        user: false,
        conf_dirs,
        log_dir,
        default_console: default_console(cli),
        startup_event: startup_event(cli),
        global_env,
        process_env: process_env(),
        final_env: Vec::new(),
        session_file: None,
        address: (!cli.no_dbus).then(|| upstart_dbus::SYSTEM_ADDRESS.to_string()),
        system: Some(place),
        inject_panic_on_event: cli.inject_panic_on_event.clone(),
    }
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
    let default_console = default_console(cli);
    let startup_event = startup_event(cli);
    let process_env = process_env();
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
        session_file: if cli.no_dbus {
            None
        } else {
            session::session_file(&env, pid).map(|p| (p, address.clone()))
        },
        address: (!cli.no_dbus).then_some(address),
        system: None,
        inject_panic_on_event: cli.inject_panic_on_event.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> (Cli, Vec<String>, Vec<String>) {
        let argv: Vec<OsString> = line.split(' ').map(OsString::from).collect();
        kernel_args(&argv)
    }

    #[test]
    fn kernel_arguments_ours_and_ignored() {
        let (cli, ignored, errors) = parse(
            "/sbin/init splash --verbose --confdir=/etc/x single --logdir /l --no-cgroups --state-fd 3 -v --bogus --quiet=1 --startup-event",
        );
        assert!(cli.verbose && !cli.quiet && !cli.debug);
        assert_eq!(cli.confdir, [PathBuf::from("/etc/x")]);
        assert_eq!(cli.logdir, Some(PathBuf::from("/l")));
        assert_eq!(cli.startup_event, None);
        assert_eq!(
            ignored,
            [
                "splash",
                "single",
                "--no-cgroups (not implemented)",
                "--state-fd 3 (not implemented)",
                "--bogus",
                "--quiet=1",
                "--startup-event"
            ]
        );
        assert!(errors.is_empty(), "{errors:?}");
        let (cli, ignored, errors) = parse(
            "init --default-console output --no-dbus -q --debug --no-log --no-inherit-env --prepend-confdir /p --append-confdir=/a --inject-panic-on-event boom --startup-event=go",
        );
        assert_eq!(default_console(&cli), Console::Output);
        assert!(cli.no_dbus && cli.quiet && cli.debug && cli.no_log && cli.no_inherit_env);
        assert_eq!(cli.prepend_confdir, [PathBuf::from("/p")]);
        assert_eq!(cli.append_confdir, [PathBuf::from("/a")]);
        assert_eq!(cli.inject_panic_on_event.as_deref(), Some("boom"));
        assert_eq!(startup_event(&cli).as_deref(), Some("go"));
        assert!(ignored.is_empty() && errors.is_empty());
    }

    #[test]
    fn options_the_kernel_put_in_the_environment_are_arguments() {
        let argv: Vec<OsString> = ["/sbin/init", "--verbose"].map(OsString::from).to_vec();
        let env = [
            ("HOME", "/"),
            ("--logdir", "/var/log/x"),
            ("TERM", "linux"),
            ("--confdir", "/etc/y"),
        ]
        .map(|(k, v)| (OsString::from(k), OsString::from(v)));
        let all = with_env_options(&argv, env.into_iter());
        let (cli, ignored, errors) = kernel_args(&all);
        assert!(cli.verbose);
        assert_eq!(cli.logdir, Some(PathBuf::from("/var/log/x")));
        assert_eq!(cli.confdir, [PathBuf::from("/etc/y")]);
        assert!(ignored.is_empty() && errors.is_empty(), "{ignored:?} {errors:?}");
    }

    #[test]
    fn bad_kernel_arguments_are_reported_and_the_rest_applies() {
        let (cli, _, errors) = parse("init --default-console bogus --verbose");
        assert_eq!(cli.default_console, None);
        assert!(cli.verbose);
        assert_eq!(errors.len(), 1);
        assert!(
            errors[0].contains("'bogus' for '--default-console'"),
            "{errors:?}"
        );
        let (cli, _, errors) = parse("init --no-startup-event --startup-event x");
        assert_eq!(startup_event(&cli), None);
        assert!(errors[0].contains("conflict"), "{errors:?}");
    }

    #[test]
    fn system_defaults() {
        let cli = Cli::parse_from(["init"]);
        let o = system_options(&cli, Place::Namespace);
        assert_eq!(o.address.as_deref(), Some(upstart_dbus::SYSTEM_ADDRESS));
        assert_eq!(o.startup_event.as_deref(), Some("startup"));
        assert!(o.global_env.iter().any(|e| e.starts_with("PATH=")));
        assert!(!o.user && o.session_file.is_none() && o.final_env.is_empty());
        if std::env::var_os("UPSTART_LOGDIR").is_none() {
            assert_eq!(o.log_dir, Some(PathBuf::from("/var/log/upstart")));
        }
    }
}

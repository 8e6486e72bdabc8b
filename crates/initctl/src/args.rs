//! The command line, parsed the way libnih's `nih_command_parser` and
//! `nih_option_parser` parse Upstart's (spec §4): global options before
//! the command, then the command's own options and the global ones
//! anywhere after it; short options grouped (`-gr`), an option's value as
//! the rest of a group, after `=` or as the next non-option argument; `--`
//! ends the options. Invoked as `start`, `stop`, `restart`, `reload`,
//! `status`, `emit`, `poweroff`, `reboot`, `halt` or `shutdown` the program
//! is that command. Errors carry libnih's texts.

use std::path::Path;

use crate::output::{Priority, usage_error_text};

/// Every `initctl` command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Start,
    Stop,
    Restart,
    Reload,
    Status,
    List,
    Emit,
    ReloadConfiguration,
    Version,
    LogPriority,
    ShowConfig,
    CheckConfig,
    Usage,
    NotifyDiskWriteable,
    NotifyDbusAddress,
    NotifyCgroupManagerAddress,
    GetEnv,
    SetEnv,
    UnsetEnv,
    ListEnv,
    ResetEnv,
    ListSessions,
    /// upshot's own: shut the system down (`io.upshot.Init1.Shutdown`).
    Poweroff,
    Reboot,
    Halt,
    /// `shutdown -h|-P|-H|-r now`.
    Shutdown,
    Help,
}

/// What `shutdown` was asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShutdownMode {
    Poweroff,
    Reboot,
    Halt,
}

/// A bus chosen with `--system` or `--session`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bus {
    System,
    Session,
}

/// Everything the options set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// `--system` or `--session`, the last one given.
    pub bus: Option<Bus>,
    /// `--dest=NAME`.
    pub dest: Option<String>,
    /// `--user`.
    pub user: bool,
    /// `-q`, `-v`, `--debug`.
    pub priority: Priority,
    /// `-n`/`--no-wait` (start, stop, restart, emit).
    pub no_wait: bool,
    /// `-e`/`--enumerate` (show-config).
    pub enumerate: bool,
    /// `-i`/`--ignore-events` (check-config), every list given, split at
    /// commas.
    pub ignored_events: Vec<String>,
    /// `-w`/`--warn` (check-config).
    pub warn: bool,
    /// `-g`/`--global` (environment commands).
    pub global: bool,
    /// `-r`/`--retain` (set-env).
    pub retain: bool,
    /// `shutdown -h`, `-P`, `-H`, `-r`, the last one given.
    pub shutdown: Option<ShutdownMode>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            bus: None,
            dest: None,
            user: false,
            priority: Priority::Message,
            no_wait: false,
            enumerate: false,
            ignored_events: Vec::new(),
            warn: false,
            global: false,
            retain: false,
            shutdown: None,
        }
    }
}

/// A command to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    /// The name messages are prefixed with (the basename of argv[0]).
    pub program: String,
    pub command: Command,
    pub options: Options,
    /// The command's non-option arguments.
    pub args: Vec<String>,
}

/// The command line ends the run before any command: help or version text
/// (exit 0, on standard output), or a usage error (exit 1, the whole text
/// for standard error).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Early {
    Help(String),
    Version(String),
    Usage(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OptId {
    Session,
    System,
    Dest,
    User,
    Quiet,
    Verbose,
    Debug,
    Help,
    Version,
    NoWait,
    Enumerate,
    IgnoreEvents,
    Warn,
    Global,
    Retain,
    ShutdownPoweroff,
    ShutdownReboot,
    ShutdownHalt,
}

struct OptSpec {
    short: Option<char>,
    long: &'static str,
    /// The value's name, for options that take one.
    arg: Option<&'static str>,
    /// `None` hides the option from `--help`.
    help: Option<&'static str>,
    id: OptId,
}

const fn opt(short: Option<char>, long: &'static str, help: &'static str, id: OptId) -> OptSpec {
    OptSpec {
        short,
        long,
        arg: None,
        help: Some(help),
        id,
    }
}

static GLOBAL_OPTIONS: &[OptSpec] = &[
    opt(
        None,
        "session",
        "use D-Bus session bus to connect to init daemon (for testing)",
        OptId::Session,
    ),
    opt(
        None,
        "system",
        "use D-Bus system bus to connect to init daemon",
        OptId::System,
    ),
    OptSpec {
        short: None,
        long: "dest",
        arg: Some("NAME"),
        help: Some("destination well-known name on D-Bus bus"),
        id: OptId::Dest,
    },
    opt(
        None,
        "user",
        "run in user mode (as used for user sessions)",
        OptId::User,
    ),
];

/// libnih's options every program has, after the program's own.
static DEFAULT_OPTIONS: &[OptSpec] = &[
    opt(Some('q'), "quiet", "reduce output to errors only", OptId::Quiet),
    opt(
        Some('v'),
        "verbose",
        "increase output to include informational messages",
        OptId::Verbose,
    ),
    OptSpec {
        short: None,
        long: "debug",
        arg: None,
        help: None,
        id: OptId::Debug,
    },
    opt(None, "help", "display this help and exit", OptId::Help),
    opt(
        None,
        "version",
        "output version information and exit",
        OptId::Version,
    ),
];

static START_OPTIONS: &[OptSpec] = &[opt(
    Some('n'),
    "no-wait",
    "do not wait for job to start before exiting",
    OptId::NoWait,
)];
static STOP_OPTIONS: &[OptSpec] = &[opt(
    Some('n'),
    "no-wait",
    "do not wait for job to stop before exiting",
    OptId::NoWait,
)];
static RESTART_OPTIONS: &[OptSpec] = &[opt(
    Some('n'),
    "no-wait",
    "do not wait for job to restart before exiting",
    OptId::NoWait,
)];
static EMIT_OPTIONS: &[OptSpec] = &[opt(
    Some('n'),
    "no-wait",
    "do not wait for event to finish before exiting",
    OptId::NoWait,
)];
static SHOW_CONFIG_OPTIONS: &[OptSpec] = &[opt(
    Some('e'),
    "enumerate",
    "enumerate list of events and jobs causing job created from job config to start/stop",
    OptId::Enumerate,
)];
static CHECK_CONFIG_OPTIONS: &[OptSpec] = &[
    OptSpec {
        short: Some('i'),
        long: "ignore-events",
        arg: Some("EVENT_LIST"),
        help: Some("ignore specified list of events (comma-separated)"),
        id: OptId::IgnoreEvents,
    },
    opt(
        Some('w'),
        "warn",
        "Generate warning for any unreachable events/jobs",
        OptId::Warn,
    ),
];
static ENV_OPTIONS: &[OptSpec] = &[opt(
    Some('g'),
    "global",
    "apply to the global job environment table",
    OptId::Global,
)];
static SET_ENV_OPTIONS: &[OptSpec] = &[
    opt(
        Some('g'),
        "global",
        "apply to the global job environment table",
        OptId::Global,
    ),
    opt(
        Some('r'),
        "retain",
        "do not replace the value of the variable if already set",
        OptId::Retain,
    ),
];
static SHUTDOWN_OPTIONS: &[OptSpec] = &[
    opt(
        Some('r'),
        "reboot",
        "reboot after shutdown",
        OptId::ShutdownReboot,
    ),
    opt(
        Some('h'),
        "halt",
        "halt or power off after shutdown",
        OptId::ShutdownPoweroff,
    ),
    opt(
        Some('P'),
        "poweroff",
        "power off after shutdown",
        OptId::ShutdownPoweroff,
    ),
    opt(
        Some('H'),
        "halt-only",
        "halt after shutdown (do not power off)",
        OptId::ShutdownHalt,
    ),
];
static NO_OPTIONS: &[OptSpec] = &[];

#[derive(Clone, Copy, PartialEq, Eq)]
enum Group {
    Job,
    Event,
    Environment,
    System,
}

impl Group {
    fn title(self) -> &'static str {
        match self {
            Group::Job => "Job",
            Group::Event => "Event",
            Group::Environment => "Environment",
            Group::System => "System",
        }
    }
}

struct CommandSpec {
    name: &'static str,
    command: Command,
    usage: Option<&'static str>,
    synopsis: &'static str,
    help: Option<&'static str>,
    group: Option<Group>,
    options: &'static [OptSpec],
}

static COMMANDS: &[CommandSpec] = &[
    CommandSpec {
        name: "start",
        command: Command::Start,
        usage: Some("JOB [KEY=VALUE]..."),
        synopsis: "Start job.",
        help: Some(
            "JOB is the name of the job that is to be started, this may be followed by zero or more \
             environment variables to be defined in the new job.\n\nThe environment may also serve \
             to distinguish between job instances, and thus decide whether a new instance will be \
             started or an error returned if an existing instance is already running.",
        ),
        group: Some(Group::Job),
        options: START_OPTIONS,
    },
    CommandSpec {
        name: "stop",
        command: Command::Stop,
        usage: Some("JOB [KEY=VALUE]..."),
        synopsis: "Stop job.",
        help: Some(
            "JOB is the name of the job that is to be stopped, this may be followed by zero or more \
             environment variables to be passed to the job's pre-stop and post-stop processes.\n\n\
             The environment also serves to distinguish between job instances, and thus decide \
             which of multiple instances will be stopped.",
        ),
        group: Some(Group::Job),
        options: STOP_OPTIONS,
    },
    CommandSpec {
        name: "restart",
        command: Command::Restart,
        usage: Some("JOB [KEY=VALUE]..."),
        synopsis: "Restart job.",
        help: Some(
            "JOB is the name of the job that is to be restarted, this may be followed by zero or more \
             environment variables to be defined in the job after restarting.\n\nThe environment \
             also serves to distinguish between job instances, and thus decide which of multiple \
             instances will be restarted.",
        ),
        group: Some(Group::Job),
        options: RESTART_OPTIONS,
    },
    CommandSpec {
        name: "reload",
        command: Command::Reload,
        usage: Some("JOB [KEY=VALUE]..."),
        synopsis: "Send reload signal to job.",
        help: Some(
            "JOB is the name of the job that is to be sent the signal, this may be followed by zero \
             or more environment variables to distinguish between job instances.",
        ),
        group: Some(Group::Job),
        options: NO_OPTIONS,
    },
    CommandSpec {
        name: "status",
        command: Command::Status,
        usage: Some("JOB [KEY=VALUE]..."),
        synopsis: "Query status of job.",
        help: Some(
            "JOB is the name of the job that is to be queried, this may be followed by zero or more \
             environment variables to distinguish between job instances.",
        ),
        group: Some(Group::Job),
        options: NO_OPTIONS,
    },
    CommandSpec {
        name: "list",
        command: Command::List,
        usage: None,
        synopsis: "List known jobs.",
        help: Some("The known jobs and their current status will be output."),
        group: Some(Group::Job),
        options: NO_OPTIONS,
    },
    CommandSpec {
        name: "emit",
        command: Command::Emit,
        usage: Some("EVENT [KEY=VALUE]..."),
        synopsis: "Emit an event.",
        help: Some(
            "EVENT is the name of an event the init daemon should emit, this may be followed by zero \
             or more environment variables to be included in the event.",
        ),
        group: Some(Group::Event),
        options: EMIT_OPTIONS,
    },
    CommandSpec {
        name: "get-env",
        command: Command::GetEnv,
        usage: Some("VARIABLE"),
        synopsis: "Retrieve value of a job environment variable.",
        help: Some(
            "Display the value of a variable from the job environment table (that of the calling \
             job when run from within a job, else the global one).",
        ),
        group: Some(Group::Environment),
        options: ENV_OPTIONS,
    },
    CommandSpec {
        name: "set-env",
        command: Command::SetEnv,
        usage: Some("VARIABLE[=VALUE]..."),
        synopsis: "Set one or more job environment variables.",
        help: Some(
            "Adds or updates variables in the job environment table. A VARIABLE without a VALUE \
             is set to the empty string.",
        ),
        group: Some(Group::Environment),
        options: SET_ENV_OPTIONS,
    },
    CommandSpec {
        name: "unset-env",
        command: Command::UnsetEnv,
        usage: Some("VARIABLE..."),
        synopsis: "Remove one or more variables from the job environment.",
        help: Some("Discards the variables from the job environment table."),
        group: Some(Group::Environment),
        options: ENV_OPTIONS,
    },
    CommandSpec {
        name: "list-env",
        command: Command::ListEnv,
        usage: None,
        synopsis: "Show all job environment variables.",
        help: Some("Displays every variable of the job environment table, sorted."),
        group: Some(Group::Environment),
        options: ENV_OPTIONS,
    },
    CommandSpec {
        name: "reset-env",
        command: Command::ResetEnv,
        usage: None,
        synopsis: "Revert all job environment variable changes.",
        help: Some("Discards every change made to the job environment table."),
        group: Some(Group::Environment),
        options: ENV_OPTIONS,
    },
    CommandSpec {
        name: "reload-configuration",
        command: Command::ReloadConfiguration,
        usage: None,
        synopsis: "Reload the configuration of the init daemon.",
        help: None,
        group: None,
        options: NO_OPTIONS,
    },
    CommandSpec {
        name: "version",
        command: Command::Version,
        usage: None,
        synopsis: "Request the version of the init daemon.",
        help: None,
        group: None,
        options: NO_OPTIONS,
    },
    CommandSpec {
        name: "log-priority",
        command: Command::LogPriority,
        usage: Some("[PRIORITY]"),
        synopsis: "Change the minimum priority of log messages from the init daemon",
        help: Some(
            "PRIORITY may be one of: `debug', `info', `message' (the default), `warn', `error' or \
             `fatal'.\n\nWithout arguments, this outputs the current log priority.",
        ),
        group: None,
        options: NO_OPTIONS,
    },
    CommandSpec {
        name: "show-config",
        command: Command::ShowConfig,
        usage: Some("[CONF]"),
        synopsis: "Show emits, start on and stop on details for job configurations.",
        help: Some(
            "If CONF specified, show configuration details for single job configuration, else show \
             details for all jobs configurations.",
        ),
        group: None,
        options: SHOW_CONFIG_OPTIONS,
    },
    CommandSpec {
        name: "check-config",
        command: Command::CheckConfig,
        usage: Some("[CONF]"),
        synopsis: "Check for unreachable jobs/event conditions.",
        help: Some(
            "List all jobs and events which cannot be satisfied by currently available job \
             configuration files",
        ),
        group: None,
        options: CHECK_CONFIG_OPTIONS,
    },
    CommandSpec {
        name: "usage",
        command: Command::Usage,
        usage: Some("JOB"),
        synopsis: "Show job usage message if available.",
        help: Some("JOB is the name of the job which usage is to be shown."),
        group: None,
        options: NO_OPTIONS,
    },
    CommandSpec {
        name: "notify-disk-writeable",
        command: Command::NotifyDiskWriteable,
        usage: None,
        synopsis: "Inform Upstart that disk is now writeable.",
        help: Some("Run to ensure output from jobs ending before disk is writeable are flushed to disk"),
        group: None,
        options: NO_OPTIONS,
    },
    CommandSpec {
        name: "notify-dbus-address",
        command: Command::NotifyDbusAddress,
        usage: Some("ADDRESS"),
        synopsis: "Inform Upstart of D-Bus address.",
        help: Some("Allows a session init to connect to the D-Bus session bus at ADDRESS."),
        group: None,
        options: NO_OPTIONS,
    },
    CommandSpec {
        name: "notify-cgroup-manager-address",
        command: Command::NotifyCgroupManagerAddress,
        usage: Some("ADDRESS"),
        synopsis: "Inform Upstart of cgroup manager address.",
        help: Some("Allows the init daemon to reach the cgroup manager at ADDRESS."),
        group: None,
        options: NO_OPTIONS,
    },
    CommandSpec {
        name: "list-sessions",
        command: Command::ListSessions,
        usage: None,
        synopsis: "List all sessions.",
        help: Some("Displays the process id and address of every running session init of this user."),
        group: None,
        options: NO_OPTIONS,
    },
    CommandSpec {
        name: "poweroff",
        command: Command::Poweroff,
        usage: None,
        synopsis: "Stop every job and power the system off.",
        help: Some(
            "Asks the init daemon to shut down: every job is stopped, every other process \
             killed, and the machine powered off (process 1 of a PID namespace exits instead).",
        ),
        group: Some(Group::System),
        options: NO_OPTIONS,
    },
    CommandSpec {
        name: "reboot",
        command: Command::Reboot,
        usage: None,
        synopsis: "Stop every job and reboot the system.",
        help: Some(
            "Asks the init daemon to shut down: every job is stopped, every other process \
             killed, and the machine rebooted (process 1 of a PID namespace exits instead).",
        ),
        group: Some(Group::System),
        options: NO_OPTIONS,
    },
    CommandSpec {
        name: "halt",
        command: Command::Halt,
        usage: None,
        synopsis: "Stop every job and halt the system.",
        help: Some(
            "Asks the init daemon to shut down: every job is stopped, every other process \
             killed, and the machine halted (process 1 of a PID namespace exits instead).",
        ),
        group: Some(Group::System),
        options: NO_OPTIONS,
    },
    CommandSpec {
        name: "shutdown",
        command: Command::Shutdown,
        usage: Some("-h|-P|-H|-r now"),
        synopsis: "Shut the system down now.",
        help: Some(
            "With -r reboot, with -h or -P power off, with -H halt, as poweroff, reboot and halt \
             do. Only `now' is supported as the time.",
        ),
        group: Some(Group::System),
        options: SHUTDOWN_OPTIONS,
    },
    CommandSpec {
        name: "help",
        command: Command::Help,
        usage: None,
        synopsis: "display list of commands",
        help: None,
        group: None,
        options: NO_OPTIONS,
    },
];

/// The commands a link to `initctl` may be named after.
pub const LINK_NAMES: &[&str] = &[
    "start", "stop", "restart", "reload", "status", "emit", "poweroff", "reboot", "halt", "shutdown",
];

/// The basename of argv[0], which prefixes every message.
pub fn program_name(argv0: Option<&str>) -> String {
    argv0
        .and_then(|a| Path::new(a).file_name())
        .and_then(|n| n.to_str())
        .filter(|n| !n.is_empty())
        .unwrap_or("initctl")
        .to_string()
}

fn lookup(name: &str) -> Option<&'static CommandSpec> {
    COMMANDS.iter().find(|c| c.name == name)
}

/// The command a program name stands for, when invoked through a link.
pub fn link_command(program: &str) -> Option<Command> {
    LINK_NAMES
        .contains(&program)
        .then(|| lookup(program).map(|c| c.command))
        .flatten()
}

/// Parses a whole command line (argv[0] included).
pub fn parse(argv: &[String]) -> Result<Invocation, Early> {
    let program = program_name(argv.first().map(String::as_str));
    let mut options = Options::default();

    if link_command(&program).is_some() {
        let spec = lookup(&program).expect("link names are commands");
        let help = HelpContext::Command { spec, stem: None };
        let args = parse_options(&program, argv, spec.options, false, &help, &mut options)?;
        return Ok(Invocation {
            program,
            command: spec.command,
            options,
            args,
        });
    }

    let args = parse_options(&program, argv, &[], true, &HelpContext::Top, &mut options)?;
    let Some(name) = args.first() else {
        return Err(Early::Usage(usage_error_text(&program, "missing command")));
    };
    let Some(spec) = lookup(name) else {
        return Err(Early::Usage(usage_error_text(
            &program,
            &format!("invalid command: {name}"),
        )));
    };
    let help = HelpContext::Command {
        spec,
        stem: Some(spec.name),
    };
    let args = parse_options(&program, &args, spec.options, false, &help, &mut options)?;
    if spec.command == Command::Help {
        return Err(Early::Help(commands_help(&program)));
    }
    Ok(Invocation {
        program,
        command: spec.command,
        options,
        args,
    })
}

enum HelpContext {
    Top,
    Command {
        spec: &'static CommandSpec,
        stem: Option<&'static str>,
    },
}

/// libnih's `nih_option_parser`: handles the options in `argv[1..]` and
/// returns the other arguments. With `break_nonopt` the first non-option
/// argument ends the options (it is the command).
fn parse_options(
    program: &str,
    argv: &[String],
    command_options: &'static [OptSpec],
    break_nonopt: bool,
    help: &HelpContext,
    options: &mut Options,
) -> Result<Vec<String>, Early> {
    let table: Vec<&'static OptSpec> = command_options
        .iter()
        .chain(GLOBAL_OPTIONS)
        .chain(DEFAULT_OPTIONS)
        .collect();
    let usage = |message: String| Early::Usage(usage_error_text(program, &message));

    let mut args = Vec::new();
    // Index of the last argument consumed as an option's value, and of
    // the argument that ended the options (0: none).
    let mut nonopt = 0;
    let mut optend = 0;

    let mut i = 1;
    while i < argv.len() {
        let arg = argv[i].as_str();
        let bytes = arg.as_bytes();
        if bytes.first() != Some(&b'-') || bytes.len() == 1 || (optend != 0 && i > optend) {
            if i > nonopt {
                args.push(arg.to_string());
                if break_nonopt {
                    optend = i;
                }
            }
        } else if bytes[1] != b'-' {
            let shorts: Vec<char> = arg[1..].chars().collect();
            for (k, &c) in shorts.iter().enumerate() {
                let Some(spec) = table.iter().find(|o| o.short == Some(c)) else {
                    return Err(usage(format!("invalid option: -{c}")));
                };
                if spec.arg.is_some() && k == 0 && shorts.len() > 1 {
                    apply(spec.id, Some(&arg[1 + c.len_utf8()..]), options);
                    break;
                }
                let value = value_for(spec, argv, i, &mut nonopt, &mut optend, &usage)?;
                handle(program, spec, value.as_deref(), help, &table, options)?;
            }
        } else if bytes.len() > 2 {
            let body = &arg[2..];
            let (name, value) = match body.split_once('=') {
                Some((name, value)) => (name, Some(value)),
                None => (body, None),
            };
            let Some(spec) = table.iter().find(|o| o.long == name) else {
                return Err(usage(format!("invalid option: --{body}")));
            };
            match value {
                Some(value) if spec.arg.is_some() => apply(spec.id, Some(value), options),
                Some(_) => return Err(usage(format!("unexpected argument: --{body}"))),
                None => {
                    let value = value_for(spec, argv, i, &mut nonopt, &mut optend, &usage)?;
                    handle(program, spec, value.as_deref(), help, &table, options)?;
                }
            }
        } else {
            optend = i;
        }
        i += 1;
    }
    Ok(args)
}

/// The value of an option that takes one and was given without it: the
/// next non-option argument (libnih's `nih_option_next_nonopt`).
fn value_for(
    spec: &OptSpec,
    argv: &[String],
    i: usize,
    nonopt: &mut usize,
    optend: &mut usize,
    usage: &dyn Fn(String) -> Early,
) -> Result<Option<String>, Early> {
    if spec.arg.is_none() {
        return Ok(None);
    }
    *nonopt = (*nonopt).max(i);
    loop {
        *nonopt += 1;
        let Some(candidate) = argv.get(*nonopt) else {
            return Err(usage(format!("missing argument: {}", argv[i])));
        };
        if !candidate.starts_with('-') || (*optend != 0 && *nonopt > *optend) {
            return Ok(Some(candidate.clone()));
        }
        if candidate == "--" {
            *optend = *nonopt;
        }
    }
}

fn handle(
    program: &str,
    spec: &OptSpec,
    value: Option<&str>,
    help: &HelpContext,
    table: &[&OptSpec],
    options: &mut Options,
) -> Result<(), Early> {
    match spec.id {
        OptId::Help => Err(Early::Help(option_help(program, help, table))),
        OptId::Version => Err(Early::Version(version_text(program))),
        id => {
            apply(id, value, options);
            Ok(())
        }
    }
}

fn apply(id: OptId, value: Option<&str>, options: &mut Options) {
    match id {
        OptId::Session => options.bus = Some(Bus::Session),
        OptId::System => options.bus = Some(Bus::System),
        OptId::Dest => options.dest = value.map(str::to_string),
        OptId::User => options.user = true,
        OptId::Quiet => options.priority = Priority::Error,
        OptId::Verbose => options.priority = Priority::Info,
        OptId::Debug => options.priority = Priority::Debug,
        OptId::NoWait => options.no_wait = true,
        OptId::Enumerate => options.enumerate = true,
        OptId::IgnoreEvents => options.ignored_events.extend(
            value
                .unwrap_or("")
                .split(',')
                .filter(|e| !e.is_empty())
                .map(str::to_string),
        ),
        OptId::Warn => options.warn = true,
        OptId::Global => options.global = true,
        OptId::Retain => options.retain = true,
        OptId::ShutdownPoweroff => options.shutdown = Some(ShutdownMode::Poweroff),
        OptId::ShutdownReboot => options.shutdown = Some(ShutdownMode::Reboot),
        OptId::ShutdownHalt => options.shutdown = Some(ShutdownMode::Halt),
        OptId::Help | OptId::Version => {}
    }
}

/// `--version`.
pub fn version_text(program: &str) -> String {
    format!(
        "{program} (upshot {})\n\nThis is free software; see the source for copying conditions.  There is NO\n\
         warranty; not even for MERCHANTABILITY or FITNESS FOR A PARTICULAR PURPOSE.\n",
        env!("CARGO_PKG_VERSION")
    )
}

/// Greedy word wrap of `text` to `width` columns; paragraphs (blank-line
/// separated) are kept.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    for paragraph in text.split('\n') {
        let mut line = String::new();
        for word in paragraph.split_whitespace() {
            if !line.is_empty() && line.len() + 1 + word.len() > width {
                lines.push(std::mem::take(&mut line));
            }
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(word);
        }
        lines.push(line);
    }
    lines
}

/// One entry of a help listing: `  NAME` padded to column 30, then the
/// text wrapped to the rest of an 80-column line.
fn help_entry(out: &mut String, name: &str, text: &str) {
    let mut first = true;
    let mut col = 2 + name.len();
    out.push_str("  ");
    out.push_str(name);
    for line in wrap(text, 48) {
        if !first || col > 28 {
            out.push('\n');
            col = 0;
        }
        let indent: usize = if first { 30 } else { 32 };
        out.extend(std::iter::repeat_n(' ', indent.saturating_sub(col)));
        out.push_str(&line);
        first = false;
    }
    out.push('\n');
}

/// `--help` (libnih's `nih_option_help`).
fn option_help(program: &str, context: &HelpContext, table: &[&OptSpec]) -> String {
    let mut out = format!("Usage: {program}");
    let (stem, usage, synopsis, help, footer) = match context {
        HelpContext::Top => (
            None,
            Some("COMMAND [OPTION]... [ARG]..."),
            None,
            None,
            Some(format!("For a list of commands, try `{program} help'.")),
        ),
        HelpContext::Command { spec, stem } => (*stem, spec.usage, Some(spec.synopsis), spec.help, None),
    };
    if let Some(stem) = stem {
        out.push_str(&format!(" {stem}"));
    }
    out.push_str(" [OPTION]...");
    if let Some(usage) = usage {
        out.push_str(&format!(" {usage}"));
    }
    out.push('\n');
    if let Some(synopsis) = synopsis {
        out.push_str(synopsis);
        out.push('\n');
    }
    out.push_str("\nOptions:\n");
    for spec in table {
        let Some(text) = spec.help else { continue };
        let mut name = match spec.short {
            Some(c) => format!("-{c}, "),
            None => "    ".to_string(),
        };
        name.push_str("--");
        name.push_str(spec.long);
        if let Some(arg) = spec.arg {
            name.push('=');
            name.push_str(arg);
        }
        help_entry(&mut out, &name, text);
    }
    out.push('\n');
    if let Some(help) = help {
        for line in wrap(help, 78) {
            out.push_str(&line);
            out.push('\n');
        }
        out.push('\n');
    }
    if let Some(footer) = footer {
        out.push_str(&footer);
        out.push_str("\n\n");
    }
    out
}

/// `initctl help`: the commands by group (libnih's `nih_command_help`).
fn commands_help(program: &str) -> String {
    let mut out = String::new();
    let groups = [
        Some(Group::Job),
        Some(Group::Event),
        Some(Group::Environment),
        Some(Group::System),
        None,
    ];
    for group in groups {
        match group {
            Some(g) => out.push_str(&format!("{} commands:\n", g.title())),
            None => out.push_str("Other commands:\n"),
        }
        for spec in COMMANDS.iter().filter(|c| c.group == group) {
            help_entry(&mut out, spec.name, spec.synopsis);
        }
        out.push('\n');
    }
    out.push_str(&format!(
        "For more information on a command, try `{program} COMMAND --help'.\n"
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(line: &str) -> Vec<String> {
        line.split(' ').map(str::to_string).collect()
    }

    fn ok(line: &str) -> Invocation {
        parse(&argv(line)).unwrap_or_else(|e| panic!("{line}: {e:?}"))
    }

    fn usage(line: &str) -> String {
        match parse(&argv(line)) {
            Err(Early::Usage(text)) => text,
            other => panic!("{line}: {other:?}"),
        }
    }

    #[test]
    fn the_first_non_option_is_the_command_and_the_rest_its_arguments() {
        let inv = ok("/sbin/initctl start foo A=B");
        assert_eq!(inv.program, "initctl");
        assert_eq!(inv.command, Command::Start);
        assert_eq!(inv.args, ["foo", "A=B"]);
        assert_eq!(inv.options, Options::default());
    }

    #[test]
    fn global_options_go_before_or_after_the_command() {
        let before = ok("initctl --system --dest=com.x status foo");
        let after = ok("initctl status foo --system --dest com.x");
        for inv in [before, after] {
            assert_eq!(inv.command, Command::Status);
            assert_eq!(inv.args, ["foo"]);
            assert_eq!(inv.options.bus, Some(Bus::System));
            assert_eq!(inv.options.dest.as_deref(), Some("com.x"));
        }
        assert_eq!(ok("initctl --session list").options.bus, Some(Bus::Session));
        assert_eq!(
            ok("initctl --system --session list").options.bus,
            Some(Bus::Session)
        );
        assert!(ok("initctl list --user").options.user);
    }

    #[test]
    fn quiet_and_verbose_set_the_priority_last_one_wins() {
        assert_eq!(ok("initctl -q list").options.priority, Priority::Error);
        assert_eq!(ok("initctl list --verbose").options.priority, Priority::Info);
        assert_eq!(ok("initctl -v list -q").options.priority, Priority::Error);
        assert_eq!(ok("initctl --debug list").options.priority, Priority::Debug);
    }

    #[test]
    fn command_options_anywhere_after_the_command() {
        assert!(ok("initctl start -n foo").options.no_wait);
        assert!(ok("initctl start foo --no-wait").options.no_wait);
        assert!(ok("initctl emit -n ev").options.no_wait);
        assert!(ok("initctl show-config -e").options.enumerate);
        let inv = ok("initctl set-env -gr A=1 B");
        assert!(inv.options.global && inv.options.retain);
        assert_eq!(inv.args, ["A=1", "B"]);
        assert!(ok("initctl list-env --global").options.global);
    }

    #[test]
    fn option_values_as_the_rest_of_a_group_after_equals_or_the_next_argument() {
        for line in [
            "initctl check-config -ia,b",
            "initctl check-config -i a,b",
            "initctl check-config --ignore-events=a,b",
            "initctl check-config --ignore-events a,b",
            "initctl check-config -i a, -i ,b",
        ] {
            assert_eq!(ok(line).options.ignored_events, ["a", "b"], "{line}");
            assert!(ok(line).args.is_empty(), "{line}");
        }
        // The value is the next non-option argument, options in between
        // still count.
        let inv = ok("initctl check-config -i -w ev job");
        assert_eq!(inv.options.ignored_events, ["ev"]);
        assert!(inv.options.warn);
        assert_eq!(inv.args, ["job"]);
        let inv = ok("initctl --dest -q NAME list");
        assert_eq!(inv.options.dest.as_deref(), Some("NAME"));
        assert_eq!(inv.options.priority, Priority::Error);
        assert_eq!(inv.command, Command::List);
    }

    #[test]
    fn double_dash_ends_the_options() {
        let inv = ok("initctl emit -- -n X=-1");
        assert!(!inv.options.no_wait);
        assert_eq!(inv.args, ["-n", "X=-1"]);
        assert_eq!(ok("initctl status - x").args, ["-", "x"]);
    }

    #[test]
    fn missing_and_invalid_commands() {
        let hint = "Try `initctl --help' for more information.\n";
        assert_eq!(usage("initctl"), format!("initctl: missing command\n{hint}"));
        assert_eq!(usage("initctl -q"), format!("initctl: missing command\n{hint}"));
        assert_eq!(
            usage("initctl frobnicate x"),
            format!("initctl: invalid command: frobnicate\n{hint}")
        );
    }

    #[test]
    fn libnih_option_errors() {
        let hint = "Try `initctl --help' for more information.\n";
        assert_eq!(
            usage("initctl --frob list"),
            format!("initctl: invalid option: --frob\n{hint}")
        );
        assert_eq!(
            usage("initctl list --x=1"),
            format!("initctl: invalid option: --x=1\n{hint}")
        );
        assert_eq!(
            usage("initctl -x list"),
            format!("initctl: invalid option: -x\n{hint}")
        );
        // A command's options are not global.
        assert_eq!(
            usage("initctl -n start foo"),
            format!("initctl: invalid option: -n\n{hint}")
        );
        assert_eq!(
            usage("initctl status -n foo"),
            format!("initctl: invalid option: -n\n{hint}")
        );
        assert_eq!(
            usage("initctl start -nx foo"),
            format!("initctl: invalid option: -x\n{hint}")
        );
        assert_eq!(
            usage("initctl list --quiet=1"),
            format!("initctl: unexpected argument: --quiet=1\n{hint}")
        );
        assert_eq!(
            usage("initctl list --dest"),
            format!("initctl: missing argument: --dest\n{hint}")
        );
        assert_eq!(
            usage("initctl check-config -w -i"),
            format!("initctl: missing argument: -i\n{hint}")
        );
    }

    #[test]
    fn a_link_name_is_the_command_and_prefixes_messages() {
        let inv = ok("/sbin/start -n foo X=1");
        assert_eq!(inv.program, "start");
        assert_eq!(inv.command, Command::Start);
        assert!(inv.options.no_wait);
        assert_eq!(inv.args, ["foo", "X=1"]);
        for (name, command) in [
            ("stop", Command::Stop),
            ("restart", Command::Restart),
            ("reload", Command::Reload),
            ("status", Command::Status),
            ("emit", Command::Emit),
        ] {
            let inv = ok(&format!("/usr/sbin/{name} thing --system"));
            assert_eq!((inv.program.as_str(), inv.command), (name, command));
            assert_eq!(inv.args, ["thing"]);
            assert_eq!(inv.options.bus, Some(Bus::System));
        }
        // A link has no command word: "list" is an argument.
        assert_eq!(ok("status list").args, ["list"]);
        assert_eq!(
            usage("stop -x foo"),
            "stop: invalid option: -x\nTry `stop --help' for more information.\n"
        );
        // Other names are initctl.
        assert_eq!(ok("upshot-ctl list").command, Command::List);
        assert_eq!(link_command("list"), None);
        assert_eq!(link_command("initctl"), None);
    }

    #[test]
    fn shutdown_links_and_options() {
        for (name, command) in [
            ("poweroff", Command::Poweroff),
            ("reboot", Command::Reboot),
            ("halt", Command::Halt),
        ] {
            let inv = ok(&format!("/sbin/{name}"));
            assert_eq!((inv.program.as_str(), inv.command), (name, command));
            assert_eq!(ok(&format!("initctl {name}")).command, command);
        }
        let inv = ok("/sbin/shutdown -r now");
        assert_eq!(inv.command, Command::Shutdown);
        assert_eq!(inv.options.shutdown, Some(ShutdownMode::Reboot));
        assert_eq!(inv.args, ["now"]);
        assert_eq!(
            ok("shutdown -h now").options.shutdown,
            Some(ShutdownMode::Poweroff)
        );
        assert_eq!(
            ok("shutdown -P now").options.shutdown,
            Some(ShutdownMode::Poweroff)
        );
        assert_eq!(ok("shutdown -H now").options.shutdown, Some(ShutdownMode::Halt));
        assert_eq!(
            ok("shutdown -r -h now").options.shutdown,
            Some(ShutdownMode::Poweroff)
        );
        assert_eq!(
            usage("poweroff -f"),
            "poweroff: invalid option: -f\nTry `poweroff --help' for more information.\n"
        );
    }

    #[test]
    fn program_name_is_the_basename() {
        assert_eq!(program_name(Some("/sbin/initctl")), "initctl");
        assert_eq!(program_name(Some("status")), "status");
        assert_eq!(program_name(Some("")), "initctl");
        assert_eq!(program_name(None), "initctl");
    }

    #[test]
    fn help_and_version_end_the_parse() {
        let Err(Early::Help(top)) = parse(&argv("initctl --help")) else {
            panic!()
        };
        assert!(
            top.starts_with("Usage: initctl [OPTION]... COMMAND [OPTION]... [ARG]...\n"),
            "{top}"
        );
        assert!(top.contains("      --dest=NAME             destination well-known name on D-Bus bus\n"));
        assert!(top.contains("  -q, --quiet                 reduce output to errors only\n"));
        assert!(!top.contains("--debug"));
        assert!(top.contains("For a list of commands, try `initctl help'."));

        let Err(Early::Help(start)) = parse(&argv("initctl start --help")) else {
            panic!()
        };
        assert!(start.starts_with("Usage: initctl start [OPTION]... JOB [KEY=VALUE]...\nStart job.\n"));
        assert!(
            start.contains("  -n, --no-wait               do not wait for job to start before exiting\n")
        );

        let Err(Early::Help(link)) = parse(&argv("stop --help")) else {
            panic!()
        };
        assert!(
            link.starts_with("Usage: stop [OPTION]... JOB [KEY=VALUE]...\nStop job.\n"),
            "{link}"
        );

        let Err(Early::Help(commands)) = parse(&argv("initctl help")) else {
            panic!()
        };
        assert!(commands.starts_with("Job commands:\n  start                       Start job.\n"));
        assert!(commands.contains("Environment commands:\n  get-env "));
        assert!(commands.ends_with("try `initctl COMMAND --help'.\n"));

        let Err(Early::Version(version)) = parse(&argv("initctl --version")) else {
            panic!()
        };
        assert!(version.starts_with("initctl (upshot "));
    }

    #[test]
    fn every_command_is_reachable_by_name() {
        for spec in COMMANDS {
            if spec.command == Command::Help {
                continue;
            }
            assert_eq!(
                ok(&format!("initctl {}", spec.name)).command,
                spec.command,
                "{}",
                spec.name
            );
        }
    }

    #[test]
    fn long_help_texts_wrap_under_the_option_column() {
        let mut out = String::new();
        help_entry(
            &mut out,
            "-e, --enumerate",
            "one two three four five six seven eight nine ten eleven twelve",
        );
        let lines: Vec<&str> = out.lines().collect();
        // Text starts at column 30 and wraps at 48 characters.
        assert_eq!(
            lines[0],
            format!(
                "  -e, --enumerate{}one two three four five six seven eight nine ten",
                " ".repeat(13)
            )
        );
        assert_eq!(lines[1], format!("{}eleven twelve", " ".repeat(32)));
        let mut out = String::new();
        help_entry(&mut out, "--a-very-long-option-name=VALUE", "text");
        assert_eq!(
            out,
            format!("  --a-very-long-option-name=VALUE\n{}text\n", " ".repeat(30))
        );
    }
}

//! What each command does (spec §4.2): the D-Bus calls it makes, in
//! Upstart's order, and what it prints. Arguments are checked before
//! connecting; every failed call is printed as its message and exits 1.

use std::ffi::CString;

use crate::args::{Command, Invocation, Options, ShutdownMode};
use crate::client::{CallError, Path, Upstart};
use crate::conditions::{check_config, enumerate, render};
use crate::output::Ui;
use crate::sessions;
use crate::status::status_line;
use crate::transport::{self, Transport};

/// The parts of the environment `initctl` reads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Env {
    pub upstart_session: Option<String>,
    pub upstart_job: Option<String>,
    pub upstart_instance: Option<String>,
    pub xdg_runtime_dir: Option<String>,
    pub uid: u32,
}

impl Env {
    pub fn from_process() -> Env {
        let var = |name: &str| std::env::var(name).ok();
        Env {
            upstart_session: var("UPSTART_SESSION"),
            upstart_job: var("UPSTART_JOB"),
            upstart_instance: var("UPSTART_INSTANCE"),
            xdg_runtime_dir: var("XDG_RUNTIME_DIR"),
            // SAFETY: getuid cannot fail.
            uid: unsafe { libc::getuid() },
        }
    }

    /// The `job_details` of the environment methods: the calling job's
    /// instance when run from a job, else (or with `--global`) empty, the
    /// global table.
    pub fn job_details(&self, global: bool) -> Vec<String> {
        match (&self.upstart_job, global) {
            (Some(job), false) => vec![job.clone(), self.upstart_instance.clone().unwrap_or_default()],
            _ => Vec::new(),
        }
    }
}

/// Which instance a job command acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobTarget {
    /// `JOB [KEY=VALUE]…` from the command line.
    Named { job: String, env: Vec<String> },
    /// No job given, run from a job: the calling instance, by name.
    Caller { job: String, instance: String },
}

impl JobTarget {
    /// The target of a job command; `None` is the `missing job name`
    /// error.
    pub fn from_args(args: &[String], env: &Env) -> Option<JobTarget> {
        if let Some((job, rest)) = args.split_first() {
            return Some(JobTarget::Named {
                job: job.clone(),
                env: rest.to_vec(),
            });
        }
        match (&env.upstart_job, &env.upstart_instance) {
            (Some(job), Some(instance)) => Some(JobTarget::Caller {
                job: job.clone(),
                instance: instance.clone(),
            }),
            _ => None,
        }
    }

    fn job(&self) -> &str {
        match self {
            JobTarget::Named { job, .. } | JobTarget::Caller { job, .. } => job,
        }
    }
}

/// The usage error of a command whose arguments are missing, checked
/// before connecting.
fn missing_argument(inv: &Invocation, env: &Env) -> Option<&'static str> {
    let has_arg = !inv.args.is_empty();
    match inv.command {
        Command::Start
        | Command::Stop
        | Command::Restart
        | Command::Reload
        | Command::Status
        | Command::Usage => JobTarget::from_args(&inv.args, env)
            .is_none()
            .then_some("missing job name"),
        Command::Emit => (!has_arg).then_some("missing event name"),
        Command::GetEnv | Command::UnsetEnv => (!has_arg).then_some("missing variable name"),
        Command::SetEnv => (!has_arg).then_some("missing variable value"),
        Command::NotifyDbusAddress => (!has_arg).then_some("missing D-Bus address"),
        Command::NotifyCgroupManagerAddress => (!has_arg).then_some("missing cgroup manager address"),
        Command::Shutdown => match (inv.options.shutdown, inv.args.first().map(String::as_str)) {
            (None, _) => Some("one of -h, -P, -H or -r is needed"),
            (_, None) => Some("missing time"),
            (_, Some("now" | "+0" | "0")) => None,
            (_, Some(_)) => Some("only `now' is supported as the time"),
        },
        Command::Poweroff | Command::Reboot | Command::Halt => has_arg.then_some("unexpected argument"),
        _ => None,
    }
}

/// The `how` of `Shutdown` for a shutdown command.
fn shutdown_how(inv: &Invocation) -> Option<&'static str> {
    match inv.command {
        Command::Poweroff => Some("poweroff"),
        Command::Reboot => Some("reboot"),
        Command::Halt => Some("halt"),
        Command::Shutdown => inv.options.shutdown.map(|m| match m {
            ShutdownMode::Poweroff => "poweroff",
            ShutdownMode::Reboot => "reboot",
            ShutdownMode::Halt => "halt",
        }),
        _ => None,
    }
}

/// Runs a parsed command line and returns the exit status.
pub fn run(inv: &Invocation, env: &Env) -> i32 {
    let mut ui = Ui::new(&inv.program, inv.options.priority);
    if let Some(message) = missing_argument(inv, env) {
        ui.usage_error(message);
        return 1;
    }
    if inv.command == Command::ListSessions {
        return list_sessions(&mut ui, env);
    }
    if shutdown_how(inv).is_some() {
        // The shutdown we ask for sends SIGTERM (and SIGHUP) to every
        // process: this one finishes by itself once answered.
        // SAFETY: setting a disposition before any thread exists.
        unsafe {
            libc::signal(libc::SIGTERM, libc::SIG_IGN);
            libc::signal(libc::SIGHUP, libc::SIG_IGN);
        }
    }
    let transport = match transport::choose(&inv.options, env.upstart_session.as_deref(), env.uid) {
        Ok(t) => t,
        Err(e) if e.is_usage() => {
            ui.usage_error(e.message());
            return 1;
        }
        Err(e) => {
            ui.error(e.message());
            return 1;
        }
    };
    zbus::block_on(async {
        let conn = match transport::connect(&transport).await {
            Ok(conn) => conn,
            Err(message) => {
                ui.error(&message);
                return 1;
            }
        };
        let upstart = match &transport {
            Transport::Peer { .. } => Upstart::new(conn, upstart_dbus::BUS_NAME, false),
            Transport::Bus { destination, .. } => Upstart::new(conn, destination, true),
        };
        match dispatch(&upstart, inv, env, &mut ui).await {
            Ok(status) => status,
            Err(e) => {
                ui.error(&e.message);
                1
            }
        }
    })
}

type Result<T> = std::result::Result<T, CallError>;

async fn dispatch(up: &Upstart, inv: &Invocation, env: &Env, ui: &mut Ui) -> Result<i32> {
    let args = &inv.args;
    let opts = &inv.options;
    let target = || JobTarget::from_args(args, env).expect("checked before connecting");
    let arg = |i: usize| args[i].as_str();
    match inv.command {
        Command::Start => start(up, &target(), opts, ui).await,
        Command::Stop => stop(up, &target(), opts, ui).await,
        Command::Restart => restart(up, &target(), opts, ui).await,
        Command::Reload => reload(up, &target(), ui).await,
        Command::Status => status(up, &target(), ui).await,
        Command::List => list(up, ui).await,
        Command::Emit => up.emit_event(arg(0), &args[1..], !opts.no_wait).await.map(|()| 0),
        Command::ReloadConfiguration => up.reload_configuration().await.map(|()| 0),
        Command::Version => {
            ui.message(&up.version().await?);
            Ok(0)
        }
        Command::LogPriority => match args.first() {
            Some(priority) => up.set_log_priority(priority).await.map(|()| 0),
            None => {
                ui.message(&up.log_priority().await?);
                Ok(0)
            }
        },
        Command::ShowConfig => show_config(up, args.first().map(String::as_str), opts, ui).await,
        Command::CheckConfig => check(up, args.first().map(String::as_str), opts, ui).await,
        Command::Usage => {
            let job = up.get_job_by_name(target().job()).await?;
            ui.message(&format!("Usage: {}", up.job_usage(&job).await?));
            Ok(0)
        }
        Command::NotifyDiskWriteable => up.notify_disk_writeable().await.map(|()| 0),
        Command::NotifyDbusAddress => up.notify_dbus_address(arg(0)).await.map(|()| 0),
        Command::NotifyCgroupManagerAddress => up.notify_cgroup_manager_address(arg(0)).await.map(|()| 0),
        Command::GetEnv => {
            ui.message(&up.get_env(&env.job_details(opts.global), arg(0)).await?);
            Ok(0)
        }
        Command::SetEnv => {
            let details = env.job_details(opts.global);
            match args.as_slice() {
                [one] => up.set_env(&details, one, !opts.retain).await?,
                many => up.set_env_list(&details, many, !opts.retain).await?,
            }
            Ok(0)
        }
        Command::UnsetEnv => {
            let details = env.job_details(opts.global);
            match args.as_slice() {
                [one] => up.unset_env(&details, one).await?,
                many => up.unset_env_list(&details, many).await?,
            }
            Ok(0)
        }
        Command::ListEnv => {
            let mut vars = up.list_env(&env.job_details(opts.global)).await?;
            sort_by_collation(&mut vars);
            for var in &vars {
                ui.message(var);
            }
            Ok(0)
        }
        Command::ResetEnv => up.reset_env(&env.job_details(opts.global)).await.map(|()| 0),
        Command::Poweroff | Command::Reboot | Command::Halt | Command::Shutdown => {
            let how = shutdown_how(inv).expect("checked before connecting");
            up.shutdown(how).await.map(|()| 0)
        }
        Command::ListSessions | Command::Help => unreachable!("handled without a connection"),
    }
}

/// Prints the status of `instance` of `job`.
async fn print_status(up: &Upstart, job: &Path, instance: Option<&Path>, ui: &mut Ui) -> Result<()> {
    let name = up.job_name(job).await?;
    let status = match instance {
        Some(instance) => up.instance_status(instance).await?,
        None => None,
    };
    ui.message(&status_line(&name, status.as_ref()));
    Ok(())
}

/// `start`: Job.Start, or from a job without arguments Instance.Start on
/// the caller (never waiting, which would block the caller).
async fn start(up: &Upstart, target: &JobTarget, opts: &Options, ui: &mut Ui) -> Result<i32> {
    let job = up.get_job_by_name(target.job()).await?;
    let instance = match target {
        JobTarget::Named { env, .. } => up.job_start(&job, env, !opts.no_wait).await?,
        JobTarget::Caller { instance, .. } => {
            let instance = up.get_instance_by_name(&job, instance).await?;
            up.instance_start(&instance, false).await?;
            instance
        }
    };
    print_status(up, &job, Some(&instance), ui).await?;
    Ok(0)
}

/// `stop`: the instance is looked up first (Job.GetInstance), then
/// Job.Stop; from a job without arguments Instance.Stop on the caller.
async fn stop(up: &Upstart, target: &JobTarget, opts: &Options, ui: &mut Ui) -> Result<i32> {
    let job = up.get_job_by_name(target.job()).await?;
    let instance = match target {
        JobTarget::Named { env, .. } => {
            let instance = up.get_instance(&job, env).await?;
            up.job_stop(&job, env, !opts.no_wait).await?;
            instance
        }
        JobTarget::Caller { instance, .. } => {
            let instance = up.get_instance_by_name(&job, instance).await?;
            up.instance_stop(&instance, false).await?;
            instance
        }
    };
    print_status(up, &job, Some(&instance), ui).await?;
    Ok(0)
}

/// `restart`: Job.Restart, or Instance.Restart on the caller.
async fn restart(up: &Upstart, target: &JobTarget, opts: &Options, ui: &mut Ui) -> Result<i32> {
    let job = up.get_job_by_name(target.job()).await?;
    let instance = match target {
        JobTarget::Named { env, .. } => up.job_restart(&job, env, !opts.no_wait).await?,
        JobTarget::Caller { instance, .. } => {
            let instance = up.get_instance_by_name(&job, instance).await?;
            up.instance_restart(&instance, false).await?;
            instance
        }
    };
    print_status(up, &job, Some(&instance), ui).await?;
    Ok(0)
}

async fn resolve_instance(up: &Upstart, job: &Path, target: &JobTarget) -> Result<Path> {
    match target {
        JobTarget::Named { env, .. } => up.get_instance(job, env).await,
        JobTarget::Caller { instance, .. } => up.get_instance_by_name(job, instance).await,
    }
}

/// `reload`: Instance.Reload; a daemon without it gets SIGHUP sent to the
/// main process instead, as Upstart's initctl does.
async fn reload(up: &Upstart, target: &JobTarget, ui: &mut Ui) -> Result<i32> {
    let job = up.get_job_by_name(target.job()).await?;
    let instance = resolve_instance(up, &job, target).await?;
    match up.instance_reload(&instance).await {
        Ok(()) => Ok(0),
        Err(e) if e.is_unknown_method() => {
            let main = up.instance_status(&instance).await?.and_then(|s| {
                s.processes
                    .first()
                    .filter(|(name, _)| name == "main")
                    .map(|&(_, pid)| pid)
            });
            let Some(pid) = main else {
                ui.error("Not running");
                return Ok(1);
            };
            // SAFETY: plain kill(2).
            if unsafe { libc::kill(pid, libc::SIGHUP) } < 0 {
                ui.error(&transport::strerror(&std::io::Error::last_os_error()));
                return Ok(1);
            }
            Ok(0)
        }
        Err(e) => Err(e),
    }
}

/// `status`: a job without a running instance is `JOB stop/waiting`
/// (exit 0), unless an environment was given to pick the instance.
async fn status(up: &Upstart, target: &JobTarget, ui: &mut Ui) -> Result<i32> {
    let job = up.get_job_by_name(target.job()).await?;
    let instance = match resolve_instance(up, &job, target).await {
        Ok(instance) => Some(instance),
        Err(e)
            if e.is_upstart("UnknownInstance")
                && matches!(target, JobTarget::Named { env, .. } if env.is_empty()) =>
        {
            None
        }
        Err(e) => return Err(e),
    };
    print_status(up, &job, instance.as_ref(), ui).await?;
    Ok(0)
}

/// `list`: a status line per instance, `JOB stop/waiting` for a job
/// without one; jobs that vanish meanwhile are skipped. Sorted by job,
/// then instance name.
async fn list(up: &Upstart, ui: &mut Ui) -> Result<i32> {
    let mut jobs = Vec::new();
    for job in up.get_all_jobs().await? {
        match up.job_name(&job).await {
            Ok(name) => jobs.push((name, job)),
            Err(e) if e.is_gone() => {}
            Err(e) => return Err(e),
        }
    }
    jobs.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, job) in jobs {
        let instances = match up.get_all_instances(&job).await {
            Ok(instances) => instances,
            Err(e) if e.is_gone() => continue,
            Err(e) => return Err(e),
        };
        if instances.is_empty() {
            ui.message(&status_line(&name, None));
            continue;
        }
        let mut statuses = Vec::with_capacity(instances.len());
        for instance in &instances {
            statuses.push(up.instance_status(instance).await?);
        }
        statuses.sort_by(|a, b| a.as_ref().map(|s| &s.name).cmp(&b.as_ref().map(|s| &s.name)));
        for status in &statuses {
            ui.message(&status_line(&name, status.as_ref()));
        }
    }
    Ok(0)
}

/// The jobs `show-config`/`check-config` look at: one by name, or all,
/// sorted by name.
async fn job_conditions(up: &Upstart, only: Option<&str>) -> Result<Vec<crate::conditions::JobConditions>> {
    let paths = match only {
        Some(name) => vec![up.get_job_by_name(name).await?],
        None => up.get_all_jobs().await?,
    };
    let mut jobs = Vec::with_capacity(paths.len());
    for path in &paths {
        jobs.push(up.job_conditions(path).await?);
    }
    jobs.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(jobs)
}

async fn show_config(up: &Upstart, only: Option<&str>, opts: &Options, ui: &mut Ui) -> Result<i32> {
    for job in job_conditions(up, only).await? {
        ui.message(&job.name);
        for event in &job.emits {
            ui.message(&format!("  emits {event}"));
        }
        for (stanza, rpn) in [("start on", &job.start_on), ("stop on", &job.stop_on)] {
            if opts.enumerate {
                for line in enumerate(stanza, rpn) {
                    ui.message(&line);
                }
            } else if let Some(condition) = render(rpn) {
                ui.message(&format!("  {stanza} {condition}"));
            }
        }
    }
    Ok(0)
}

async fn check(up: &Upstart, only: Option<&str>, opts: &Options, ui: &mut Ui) -> Result<i32> {
    let jobs = job_conditions(up, None).await?;
    match check_config(&jobs, only, &opts.ignored_events, opts.warn) {
        Ok((report, failures)) => {
            for line in &report {
                ui.message(line);
            }
            Ok(i32::from(failures > 0))
        }
        Err(message) => {
            ui.error(&message);
            Ok(1)
        }
    }
}

fn list_sessions(ui: &mut Ui, env: &Env) -> i32 {
    let Some(dir) = sessions::session_dir(env.xdg_runtime_dir.as_deref()) else {
        ui.error("Unable to query session directory");
        return 1;
    };
    let scan = match sessions::scan(&dir, sessions::pid_alive) {
        Ok(scan) => scan,
        // No session init has run yet.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => sessions::Scan::default(),
        Err(e) => {
            ui.error(&format!("{}: {}", dir.display(), transport::strerror(&e)));
            return 1;
        }
    };
    for pid in &scan.stale {
        ui.info(&format!("Ignoring stale session file for pid {pid}"));
    }
    for (pid, address) in &scan.sessions {
        ui.message(&format!("{pid} {address}"));
    }
    0
}

/// Sorts as `strcoll(3)` in the user's locale orders (what Upstart's
/// `list-env` does).
fn sort_by_collation(vars: &mut [String]) {
    // SAFETY: a valid C string; selecting the environment's collation is
    // harmless to zbus's thread, which does not use the locale.
    unsafe { libc::setlocale(libc::LC_COLLATE, c"".as_ptr()) };
    let key = |s: &String| CString::new(s.replace('\0', "")).unwrap_or_default();
    let mut keyed: Vec<(CString, String)> = vars.iter().map(|v| (key(v), v.clone())).collect();
    // SAFETY: both are valid NUL-terminated strings.
    keyed.sort_by(|a, b| unsafe { libc::strcoll(a.0.as_ptr(), b.0.as_ptr()) }.cmp(&0));
    for (slot, (_, v)) in vars.iter_mut().zip(keyed) {
        *slot = v;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::parse;

    fn env_in_job(job: &str, instance: Option<&str>) -> Env {
        Env {
            upstart_job: Some(job.into()),
            upstart_instance: instance.map(str::to_string),
            ..Env::default()
        }
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_job_name_on_the_command_line_wins() {
        let env = env_in_job("me", Some(""));
        assert_eq!(
            JobTarget::from_args(&strings(&["foo", "A=1"]), &env),
            Some(JobTarget::Named {
                job: "foo".into(),
                env: strings(&["A=1"])
            })
        );
    }

    #[test]
    fn without_a_job_name_a_job_acts_on_itself() {
        assert_eq!(
            JobTarget::from_args(&[], &env_in_job("me", Some("i1"))),
            Some(JobTarget::Caller {
                job: "me".into(),
                instance: "i1".into()
            })
        );
        assert_eq!(
            JobTarget::from_args(&[], &env_in_job("me", Some(""))),
            Some(JobTarget::Caller {
                job: "me".into(),
                instance: String::new()
            })
        );
        // Both variables are needed.
        assert_eq!(JobTarget::from_args(&[], &env_in_job("me", None)), None);
        assert_eq!(JobTarget::from_args(&[], &Env::default()), None);
    }

    #[test]
    fn environment_commands_use_the_callers_instance_unless_global() {
        let env = env_in_job("me", Some("i1"));
        assert_eq!(env.job_details(false), strings(&["me", "i1"]));
        assert_eq!(env.job_details(true), Vec::<String>::new());
        assert_eq!(env_in_job("me", None).job_details(false), strings(&["me", ""]));
        assert_eq!(Env::default().job_details(false), Vec::<String>::new());
    }

    fn missing(line: &str, env: &Env) -> Option<&'static str> {
        let argv: Vec<String> = line.split(' ').map(str::to_string).collect();
        missing_argument(&parse(&argv).unwrap(), env)
    }

    #[test]
    fn missing_arguments_are_usage_errors() {
        let none = Env::default();
        for cmd in ["start", "stop", "restart", "reload", "status", "usage"] {
            assert_eq!(
                missing(&format!("initctl {cmd}"), &none),
                Some("missing job name"),
                "{cmd}"
            );
            assert_eq!(
                missing(&format!("initctl {cmd}"), &env_in_job("j", Some(""))),
                None,
                "{cmd}"
            );
            assert_eq!(missing(&format!("initctl {cmd} j"), &none), None, "{cmd}");
        }
        assert_eq!(missing("status", &none), Some("missing job name"));
        assert_eq!(missing("initctl emit", &none), Some("missing event name"));
        assert_eq!(missing("emit -n", &none), Some("missing event name"));
        assert_eq!(missing("initctl get-env", &none), Some("missing variable name"));
        assert_eq!(
            missing("initctl unset-env -g", &none),
            Some("missing variable name")
        );
        assert_eq!(
            missing("initctl set-env -r", &none),
            Some("missing variable value")
        );
        assert_eq!(
            missing("initctl notify-dbus-address", &none),
            Some("missing D-Bus address")
        );
        assert_eq!(
            missing("initctl notify-cgroup-manager-address", &none),
            Some("missing cgroup manager address")
        );
        for ok in [
            "list",
            "version",
            "log-priority",
            "list-env",
            "reset-env",
            "show-config",
            "check-config",
        ] {
            assert_eq!(missing(&format!("initctl {ok}"), &none), None, "{ok}");
        }
    }

    #[test]
    fn collation_sort_orders_variables() {
        let mut vars = strings(&["TERM=x", "PATH=/bin", "A=1", "B=2"]);
        sort_by_collation(&mut vars);
        assert_eq!(vars, strings(&["A=1", "B=2", "PATH=/bin", "TERM=x"]));
    }
}

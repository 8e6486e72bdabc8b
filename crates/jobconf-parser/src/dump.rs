//! The JSON form of a job printed by `init --check --dump`: every stanza,
//! with the defaults filled in, and event expressions as trees. It is a
//! documented, stable format for people and tools (init(5), "CHECKING JOB
//! FILES"); the engine's own state uses serde on [`JobConf`] directly.

use serde_json::{Map, Value, json};

use crate::expr::{EventExpr, MatchArg};
use crate::job::{Bound, Console, JobConf, LimitValue, NormalExit, Process, ProcessKind};

/// The console type a job gets when it names none and the daemon runs with
/// its defaults.
pub const DEFAULT_CONSOLE: Console = Console::Log;
/// The umask a system job gets when it names none.
pub const DEFAULT_UMASK: u32 = 0o022;

/// The dump of one job.
pub fn dump_job(job: &JobConf) -> Value {
    let job = &job.fields();
    let process: Map<String, Value> = ProcessKind::ALL
        .into_iter()
        .map(|k| {
            (
                k.name().replace('-', "_"),
                job.process.get(k).map_or(Value::Null, dump_process),
            )
        })
        .collect();
    let limits: Map<String, Value> = job
        .limits
        .iter()
        .map(|l| {
            (
                l.resource.name().to_string(),
                json!({ "soft": limit_value(l.soft), "hard": limit_value(l.hard) }),
            )
        })
        .collect();
    json!({
        "description": job.description,
        "author": job.author,
        "version": job.version,
        "usage": job.usage,
        "instance": job.instance,
        "start_on": job.start_on.as_ref().map(dump_expr),
        "stop_on": job.stop_on.as_ref().map(dump_expr),
        "emits": job.emits,
        "env": job.env,
        "export": job.export,
        "process": process,
        "task": job.task,
        "respawn": job.respawn,
        "respawn_limit": {
            "count": job.respawn_limit.count,
            "interval": job.respawn_limit.interval,
            "unlimited": job.respawn_limit.is_unlimited(),
        },
        "normal_exit": job.normal_exit.iter().map(|n| match n {
            NormalExit::Status(s) => json!({ "status": s }),
            NormalExit::Signal(sig) => json!({ "signal": sig.to_string() }),
        }).collect::<Vec<_>>(),
        "kill_timeout": job.kill_timeout,
        "kill_signal": job.kill_signal.to_string(),
        "reload_signal": job.reload_signal.to_string(),
        "expect": job.expect.name(),
        "console": job.console_or(DEFAULT_CONSOLE).name(),
        "umask": format!("{:04o}", job.umask_or(DEFAULT_UMASK)),
        "nice": job.nice,
        "oom_score": job.oom_score,
        "limits": limits,
        "chroot": job.chroot,
        "chdir": job.chdir.as_deref().unwrap_or("/"),
        "setuid": job.setuid,
        "setgid": job.setgid,
        "apparmor_load": job.apparmor_load,
        "apparmor_switch": job.apparmor_switch,
        "cgroups": job.cgroups.iter().map(|c| json!({
            "controller": c.controller,
            "name": c.name,
            "settings": c.settings.iter().map(|(k, v)| json!({ "key": k, "value": v })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "debug": job.debug,
        "process_timeout": job.process_timeout.map(bound),
        "expect_timeout": job.expect_timeout.map(bound),
        "pid_file": job.pid_file,
    })
}

/// `null` (the daemon's default), a number of seconds, or `"unlimited"`.
fn bound(b: Bound) -> Value {
    match b {
        Bound::Seconds(n) => json!(n),
        Bound::Unlimited => json!("unlimited"),
    }
}

fn dump_process(p: &Process) -> Value {
    json!({ "type": if p.script { "script" } else { "exec" }, "command": p.command })
}

fn limit_value(v: LimitValue) -> Value {
    match v {
        LimitValue::Unlimited => json!("unlimited"),
        LimitValue::Value(n) => json!(n),
    }
}

/// An expression tree: `{"and": [L, R]}`, `{"or": [L, R]}`, or
/// `{"event": NAME, "args": [...]}` with each argument as
/// `{"value": V}` (positional) or `{"name": K, "op": "=" | "!=", "value": V}`.
pub fn dump_expr(e: &EventExpr) -> Value {
    match e {
        EventExpr::And(l, r) => json!({ "and": [dump_expr(l), dump_expr(r)] }),
        EventExpr::Or(l, r) => json!({ "or": [dump_expr(l), dump_expr(r)] }),
        EventExpr::Match(m) => json!({
            "event": m.name,
            "args": m.args.iter().map(|a| match a {
                MatchArg::Positional(v) => json!({ "value": v }),
                MatchArg::Equals(k, v) => json!({ "name": k, "op": "=", "value": v }),
                MatchArg::NotEquals(k, v) => json!({ "name": k, "op": "!=", "value": v }),
            }).collect::<Vec<_>>(),
        }),
    }
}

//! The canonical job-file rendering of a [`JobConf`]: stanzas in a fixed
//! order, only where they differ from the defaults, values quoted so the
//! tokenizer reads them back unchanged. Parsing the rendering gives the same
//! job (tested over the corpus and by property tests), which makes it the
//! reference for "what did this file mean".

use std::fmt::Write;

use crate::job::{
    Bound, DEFAULT_CGROUP_NAME, DEFAULT_KILL_TIMEOUT, JobConf, LimitValue, NormalExit, Process, ProcessKind,
    RespawnLimit,
};
use crate::signal::Signal;

/// Renders `job` as job-file text.
pub fn render_job(job: &JobConf) -> String {
    let job = &job.fields();
    let mut out = String::new();
    let mut line = |stanza: &str, value: &str| {
        let _ = if value.is_empty() {
            writeln!(out, "{stanza}")
        } else {
            writeln!(out, "{stanza} {value}")
        };
    };
    let q = |s: &str| quote_token(s, b"");

    for (stanza, v) in [
        ("description", &job.description),
        ("author", &job.author),
        ("version", &job.version),
        ("usage", &job.usage),
    ] {
        if let Some(v) = v {
            line(stanza, &q(v));
        }
    }
    if !job.instance.is_empty() {
        line("instance", &q(&job.instance));
    }
    if let Some(e) = &job.start_on {
        line("start on", &e.render());
    }
    if let Some(e) = &job.stop_on {
        line("stop on", &e.render());
    }
    if !job.emits.is_empty() {
        line(
            "emits",
            &job.emits.iter().map(|s| q(s)).collect::<Vec<_>>().join(" "),
        );
    }
    for e in &job.env {
        line("env", &q(e));
    }
    if !job.export.is_empty() {
        line(
            "export",
            &job.export.iter().map(|s| q(s)).collect::<Vec<_>>().join(" "),
        );
    }
    if job.task {
        line("task", "");
    }
    if job.respawn {
        line("respawn", "");
    }
    if job.respawn_limit != RespawnLimit::default() {
        let l = job.respawn_limit;
        if l.count == 0 && l.interval == 0 {
            line("respawn limit", "unlimited");
        } else {
            line("respawn limit", &format!("{} {}", l.count, l.interval));
        }
    }
    if !job.normal_exit.is_empty() {
        let items: Vec<String> = job
            .normal_exit
            .iter()
            .map(|n| match n {
                NormalExit::Status(s) => s.to_string(),
                NormalExit::Signal(sig) => render_signal(*sig),
            })
            .collect();
        line("normal exit", &items.join(" "));
    }
    if job.kill_timeout != DEFAULT_KILL_TIMEOUT {
        line("kill timeout", &job.kill_timeout.to_string());
    }
    if job.kill_signal != Signal::TERM {
        line("kill signal", &render_signal(job.kill_signal));
    }
    if job.reload_signal != Signal::HUP {
        line("reload signal", &render_signal(job.reload_signal));
    }
    if job.expect != Default::default() {
        line("expect", job.expect.name());
    }
    if let Some(c) = job.console {
        line("console", c.name());
    }
    if let Some(m) = job.umask {
        line("umask", &format!("{m:04o}"));
    }
    if let Some(n) = job.nice {
        line("nice", &n.to_string());
    }
    if let Some(s) = job.oom_score {
        line("oom score", &s.to_string());
    }
    for l in &job.limits {
        let v = |v: LimitValue| match v {
            LimitValue::Unlimited => "unlimited".to_string(),
            LimitValue::Value(n) => n.to_string(),
        };
        line(
            "limit",
            &format!("{} {} {}", l.resource.name(), v(l.soft), v(l.hard)),
        );
    }
    for (stanza, v) in [
        ("chroot", &job.chroot),
        ("chdir", &job.chdir),
        ("setuid", &job.setuid),
        ("setgid", &job.setgid),
        ("pid file", &job.pid_file),
        ("apparmor load", &job.apparmor_load),
        ("apparmor switch", &job.apparmor_switch),
    ] {
        if let Some(v) = v {
            line(stanza, &q(v));
        }
    }
    for c in &job.cgroups {
        let mut head = q(&c.controller);
        if c.name != DEFAULT_CGROUP_NAME {
            head = format!("{head} {}", q(&c.name));
        }
        if c.settings.is_empty() {
            line("cgroup", &head);
        }
        for (k, v) in &c.settings {
            line("cgroup", &format!("{head} {} {}", q(k), q(v)));
        }
    }
    if job.debug {
        line("debug", "");
    }
    for (stanza, b) in [
        ("process timeout", job.process_timeout),
        ("expect timeout", job.expect_timeout),
    ] {
        match b {
            Some(Bound::Seconds(n)) => line(stanza, &n.to_string()),
            Some(Bound::Unlimited) => line(stanza, "unlimited"),
            None => {}
        }
    }
    for kind in ProcessKind::ALL {
        if let Some(p) = job.process.get(kind) {
            render_process(&mut out, kind, p);
        }
    }
    out
}

fn render_process(out: &mut String, kind: ProcessKind, p: &Process) {
    let prefix = match kind {
        ProcessKind::Main => String::new(),
        other => format!("{} ", other.name()),
    };
    if p.script {
        let _ = writeln!(out, "{prefix}script");
        out.push_str(&p.command);
        if !p.command.is_empty() && !p.command.ends_with('\n') {
            out.push('\n');
        }
        out.push_str("end script\n");
    } else {
        let _ = writeln!(out, "{prefix}exec {}", p.command);
    }
}

/// A signal as a job file names it: `SIGTERM`, or its number.
fn render_signal(sig: Signal) -> String {
    sig.to_string()
}

/// Quotes a dequoted argument so the tokenizer gives it back unchanged:
/// bare when it holds nothing special, else double-quoted runs with `"` as
/// `'"'` and `\` as `\\`. `extra` lists further delimiters (the parentheses
/// of event expressions).
///
/// The empty string is `""` followed by an escaped newline. libnih rejects a
/// token whose length is zero, and `""` alone has length zero once its quotes
/// are removed; the backslash of an escaped newline that ends a token counts
/// towards the length but adds no text, so `""\⏎` spells an empty argument
/// (it is how one gets into a parsed job) without a NUL byte in the file.
/// The newline is a continuation: what follows on the next line (a space and
/// the next argument, `)`, or the line's own newline) goes on as if on the
/// same line.
pub(crate) fn quote_token(token: &str, extra: &[u8]) -> String {
    if token.is_empty() {
        return "\"\"\\\n".to_string();
    }
    let special = |c: u8| {
        matches!(c, b' ' | b'\t' | b'\r' | b'\n' | b'#' | b'"' | b'\'' | b'\\' | 0) || extra.contains(&c)
    };
    if !token.bytes().any(special) {
        return token.to_string();
    }
    let mut out = String::with_capacity(token.len() + 2);
    let mut open = false;
    for ch in token.chars() {
        match ch {
            '"' | '\\' => {
                if open {
                    out.push('"');
                    open = false;
                }
                out.push_str(if ch == '"' { "'\"'" } else { "\\\\" });
            }
            _ => {
                if !open {
                    out.push('"');
                    open = true;
                }
                out.push(ch);
            }
        }
    }
    if open {
        out.push('"');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lexer::Lexer;

    #[test]
    fn quoting_round_trips_through_the_tokenizer() {
        for s in [
            "plain",
            "two words",
            "a\"b",
            "it's",
            "back\\slash",
            "#hash",
            "tab\there",
            "  lead",
            "trail  ",
            "(x)",
            "'\"'",
            "",
        ] {
            let q = quote_token(s, b"()");
            let mut lx = Lexer::new(q.as_bytes());
            assert_eq!(
                lx.next_token(crate::lexer::PAREN_CNLWS, true).unwrap(),
                s,
                "quoted as {q}"
            );
            assert!(lx.at_end(), "{q} left input");
        }
    }
}

//! Round trips of the job-file parser: text → `JobConf` → canonical text →
//! the same `JobConf`, over the real-world corpus, over generated jobs and
//! expressions (proptest), over arbitrary bytes and token soups, and over
//! inputs built to be deep or long.
//!
//! The check run on every parsed job (render round trip, idempotent
//! rendering, `dump_job`, serde) is `tests/support/fuzz_check.rs`, shared
//! with the fuzzers (`fuzz/` and `examples/fuzz.rs`).

#[path = "support/fuzz_check.rs"]
mod fuzz_check;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::path::PathBuf;

use jobconf_parser::{
    Bound, Cgroup, Console, DEFAULT_CGROUP_NAME, ErrorKind, EventExpr, EventMatch, Expect, JobConf,
    JobFields, Limit, LimitValue, MAX_EXPR_DEPTH, MatchArg, NormalExit, PackedExpr, Process, ProcessKind,
    Processes, Resource, RespawnLimit, Signal, parse_job, render_job,
};
use proptest::prelude::*;

use fuzz_check::{check_job, fuzz_check};

// ---------------------------------------------------------------------------
// The corpus
// ---------------------------------------------------------------------------

/// The shared corpus of real job files (read in place, never copied).
fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/testdata/upstart-jobs")
}

fn corpus_files() -> Vec<(PathBuf, Vec<u8>)> {
    let dir = corpus_dir();
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("readable corpus dir").path())
        .filter(|p| p.extension().is_some_and(|x| x == "conf"))
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|p| {
            let data = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (p, data)
        })
        .collect()
}

/// Every corpus file that parses survives rendering, the dump and serde;
/// every one that does not gets a well-formed error.
#[test]
fn corpus_files_round_trip() {
    let (mut parsed, mut rejected) = (0usize, 0usize);
    let mut failures = Vec::new();
    for (path, data) in corpus_files() {
        match parse_job(&data) {
            Ok(_) => parsed += 1,
            Err(_) => rejected += 1,
        }
        if let Err(e) = std::panic::catch_unwind(|| fuzz_check(&data)) {
            let msg = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            failures.push(format!(
                "{}: {}",
                path.display(),
                msg.lines().next().unwrap_or("")
            ));
        }
    }
    let counts = format!("corpus: {parsed} files parsed, {rejected} rejected");
    eprintln!("{counts}");
    assert!(
        failures.is_empty(),
        "{counts}; round trip failures:\n{}",
        failures.join("\n")
    );
    // About 45 files are broken on purpose; a big change either way means
    // the corpus or the parser changed.
    assert!(parsed >= 500, "{counts}: expected at least 500 to parse");
    assert!(rejected <= 60, "{counts}: expected at most 60 rejections");
}

/// The JSON of every parsed corpus job reads back to an equal job, and the
/// dump's top level has every stanza.
#[test]
fn corpus_serde_and_dump() {
    for (path, data) in corpus_files() {
        let Ok(job) = parse_job(&data) else { continue };
        let json = serde_json::to_value(&job).expect("serializes");
        let back: JobConf = serde_json::from_value(json).expect("deserializes");
        assert_eq!(back, job, "{}", path.display());
        let dump = jobconf_parser::dump::dump_job(&job);
        for key in [
            "description",
            "start_on",
            "stop_on",
            "process",
            "env",
            "limits",
            "cgroups",
        ] {
            assert!(dump.get(key).is_some(), "{}: dump lacks {key}", path.display());
        }
    }
}

// ---------------------------------------------------------------------------
// Regressions: bugs found by the fuzzers and while writing these tests
// ---------------------------------------------------------------------------

/// An escaped newline ending a token counts towards libnih's token length
/// without adding text, so `""\⏎` is an empty argument (as in libnih). The
/// rendering used to print it as `""`, which is `Expected token`. Fixed in
/// `render.rs`.
#[test]
fn empty_arguments_round_trip() {
    for text in [
        "description \"\"\\\n\n",
        "env \"\"\\\n",
        "emits a \"\"\\\n b\n",
        "export \"\"\\\n\n",
        "instance \"\"\\\n\n",
        "chdir \"\"\\\n\n",
        "cgroup \"\"\\\n \"\"\\\n k \"\"\\\n\n",
        "start on \"\"\\\n\n",
        "start on (a \"\"\\\n) or \"\"\\\n\n",
        "stop on a \"\"\\\n x= \"\"\\\n=y\n",
    ] {
        let job = parse_job(text.as_bytes()).unwrap_or_else(|e| panic!("{text:?}: {e}"));
        check_job(&job);
    }
    let job = parse_job(b"emits a \"\"\\\n b\n").unwrap();
    assert!(job.emits().eq(["a", "", "b"]));
    let job = parse_job(b"start on (a \"\"\\\n) or \"\"\\\n\n").unwrap();
    let expr = job.start_on().unwrap().unpack();
    let m = expr.matches();
    assert_eq!(m[0].args, [MatchArg::Positional(String::new())]);
    assert_eq!(m[1].name, "");
}

/// NUL bytes are rejected up front (a job file is text): the inputs the
/// fuzzers found, where libnih's C-string cuts made jobs that could not be
/// rendered back, now give an error at the NUL.
#[test]
fn nul_bytes_are_rejected_where_they_are() {
    for (text, offset) in [
        (&b"script\na\0\nend script\n"[..], 8),
        (b"script\nend\0\n script\nend script\n", 10),
        (b"exec \"\0\"\n", 6),
        (b"exec a\\\0\n", 7),
    ] {
        let e = parse_job(text).unwrap_err();
        assert_eq!(
            (e.kind, e.offset),
            (jobconf_parser::ErrorKind::NulByte, offset),
            "{text:?}"
        );
        assert_eq!(e.kind.message(), "NUL byte in job file");
    }
}

/// `MAX_EXPR_DEPTH` is 256 but `serde_json` stops at 128 nested JSON values,
/// two per tree level when the tree was serialized as nested enums, so a job
/// with an expression deeper than 62 could not be read back. The mutation
/// fuzzer found it by duplicating lines of a `start on (a and` … `)`
/// expression; expressions now serialize as their text.
#[test]
fn deepest_accepted_expression_survives_serde() {
    let job = parse_job(chain("and", MAX_EXPR_DEPTH).as_bytes()).expect("MAX_EXPR_DEPTH is accepted");
    let json = serde_json::to_string(&job).unwrap();
    let back: JobConf = serde_json::from_str(&json).expect("reads back");
    assert_eq!(back, job);
}

/// `start on a and a and … a` with `depth` levels (left-nested, one line).
fn chain(op: &str, depth: usize) -> String {
    let mut s = String::from("start on a");
    for _ in 1..depth {
        s.push_str(&format!(" {op} a"));
    }
    s.push('\n');
    s
}

#[test]
fn expression_depth_limit() {
    let ok = parse_job(chain("or", MAX_EXPR_DEPTH).as_bytes()).unwrap();
    assert_eq!(ok.start_on().unwrap().unpack().depth(), MAX_EXPR_DEPTH);
    let err = parse_job(chain("or", MAX_EXPR_DEPTH + 1).as_bytes()).unwrap_err();
    assert_eq!(err.kind, ErrorKind::TooDeep);
}

// ---------------------------------------------------------------------------
// Generated jobs and expressions
// ---------------------------------------------------------------------------

/// A character of a single-line value: mostly ordinary, often one the
/// tokenizer treats specially, sometimes any character at all except the
/// two a single-line value cannot hold (newline, NUL).
fn value_char() -> impl Strategy<Value = char> {
    prop_oneof![
        6 => prop::char::range('a', 'z'),
        2 => prop::sample::select(vec!['A', 'Z', '0', '9', '_', '-', '/', '.', '=', '!', '$', '{', '}', '*', '[', ']']),
        4 => prop::sample::select(vec![' ', '\t', '\r', '"', '\'', '\\', '#', '(', ')']),
        1 => prop::sample::select(vec!['é', 'ß', '→', '日', '🦀', '\u{a0}', '\u{feff}']),
        1 => any::<char>().prop_filter("newline or NUL", |c| *c != '\n' && *c != '\0'),
    ]
}

/// A dequoted single-line value (description, env entry, event name, …).
/// Any such string is representable, the empty one included.
fn value(max: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(value_char(), 0..max).prop_map(|v| v.into_iter().collect())
}

/// A character that needs no quoting and no escaping in a command.
fn plain_char() -> impl Strategy<Value = char> {
    value_char().prop_filter("special in a command", |c| {
        !matches!(c, ' ' | '\t' | '\r' | '"' | '\'' | '\\' | '#')
    })
}

/// The text of an `exec` command, as the parser keeps it (raw: quotes and
/// backslashes are part of the text).
///
/// Only texts the parser can produce are representable, so this builds
/// commands from words separated by whitespace, each word made of plain
/// runs, quoted strings (which may hold whitespace, `#` and the other
/// quote) and backslash escapes. That rules out what a parsed command never
/// holds: leading or trailing unescaped whitespace (skipped and trimmed), an
/// unquoted unescaped `#` (a comment), newlines and NULs, an unbalanced quote
/// and a lone trailing backslash.
fn command() -> impl Strategy<Value = String> {
    let escape = any_escape();
    let quoted = |q: char| {
        prop::collection::vec(
            prop_oneof![
                4 => value_char().prop_filter("quote or backslash", move |c| *c != q && *c != '\\').prop_map(String::from),
                1 => any_escape(),
            ],
            0..8,
        )
        .prop_map(move |parts| format!("{q}{}{q}", parts.concat()))
    };
    let piece = prop_oneof![
        4 => prop::collection::vec(plain_char(), 1..8).prop_map(|v| v.into_iter().collect::<String>()),
        2 => quoted('"'),
        1 => quoted('\''),
        1 => escape,
    ];
    let word = prop::collection::vec(piece, 1..4).prop_map(|p| p.concat());
    let sep = prop::sample::select(vec![" ", " ", "  ", "\t", " \t "]);
    (word.clone(), prop::collection::vec((sep, word), 0..5)).prop_map(|(first, rest)| {
        let mut s = first;
        for (sep, w) in rest {
            s.push_str(sep);
            s.push_str(&w);
        }
        s
    })
}

/// A backslash and the character it escapes (anything but newline and NUL:
/// an escaped newline is a continuation, and a NUL ends the text).
fn any_escape() -> impl Strategy<Value = String> {
    value_char().prop_map(|c| format!("\\{c}"))
}

/// libnih's `end TYPE` line test for `script` blocks.
fn is_block_end(line: &str) -> bool {
    let ws = |c: char| matches!(c, ' ' | '\t' | '\r');
    let Some(rest) = line.trim_start_matches(ws).strip_prefix("end") else {
        return false;
    };
    if !rest.starts_with(ws) {
        return false;
    }
    let Some(rest) = rest.trim_start_matches(ws).strip_prefix("script") else {
        return false;
    };
    let rest = rest.trim_start_matches(ws);
    rest.is_empty() || rest.starts_with('#')
}

/// A script body as the parser keeps it: lines each ending in `\n`, or
/// nothing at all.
///
/// Restrictions, all of which hold for every parsed block: no line is an
/// `end script` line, no line holds a NUL, and the lines share no leading
/// whitespace with the first line (the parser strips such a common indent,
/// so a body with one cannot come out of it). Indented lines are generated;
/// when the first line is indented an unindented line goes before it.
fn script_body() -> impl Strategy<Value = String> {
    let indent = prop::sample::select(vec!["", "", "  ", "    ", "\t", " \t"]);
    let line = (indent, value(30)).prop_map(|(i, v)| format!("{i}{v}"));
    prop::collection::vec(line, 0..8).prop_map(|mut lines| {
        for l in lines.iter_mut() {
            if is_block_end(l) {
                l.insert(0, 'x');
            }
        }
        if lines.first().is_some_and(|l| l.starts_with([' ', '\t', '\r'])) {
            lines.insert(0, "set -e".to_string());
        }
        lines.iter().map(|l| format!("{l}\n")).collect()
    })
}

fn process() -> impl Strategy<Value = Process> {
    prop_oneof![
        command().prop_map(|command| Process {
            command,
            script: false
        }),
        script_body().prop_map(|command| Process {
            command,
            script: true
        }),
    ]
}

/// Any signal a job file can name: a libnih name (1…31) or a number up to
/// `INT_MAX`.
fn signal() -> impl Strategy<Value = Signal> {
    prop_oneof![(1..=31i32).prop_map(Signal), (0..=i32::MAX).prop_map(Signal)]
}

/// An entry of `normal exit`. A signal there must have a name: a number is
/// read back as an exit status.
fn normal_exit() -> impl Strategy<Value = NormalExit> {
    prop_oneof![
        (0..=i32::MAX as u32).prop_map(NormalExit::Status),
        (1..=31i32).prop_map(|n| NormalExit::Signal(Signal(n))),
    ]
}

/// A non-negative `long`, as `kill timeout` and `respawn limit` read them.
fn seconds() -> impl Strategy<Value = u64> {
    prop_oneof![0..100u64, 0..=i64::MAX as u64]
}

fn limit_value() -> impl Strategy<Value = LimitValue> {
    prop_oneof![
        Just(LimitValue::Unlimited),
        any::<u64>().prop_map(LimitValue::Value)
    ]
}

/// Limits as the parser keeps them: one per resource, sorted by resource.
fn limits() -> impl Strategy<Value = Vec<Limit>> {
    prop::collection::vec(
        (
            prop::sample::select(Resource::ALL.to_vec()),
            limit_value(),
            limit_value(),
        ),
        0..5,
    )
    .prop_map(|v| {
        let mut out: Vec<Limit> = Vec::new();
        for (resource, soft, hard) in v {
            if !out.iter().any(|l| l.resource == resource) {
                out.push(Limit { resource, soft, hard });
            }
        }
        out.sort_by_key(|l| l.resource);
        out
    })
}

/// Cgroups as the parser keeps them: one entry per controller and name.
fn cgroups() -> impl Strategy<Value = Vec<Cgroup>> {
    let name = prop_oneof![Just(DEFAULT_CGROUP_NAME.to_string()), value(12)];
    let settings = prop::collection::vec((value(10), value(10)), 0..3);
    prop::collection::vec((value(10), name, settings), 0..4).prop_map(|v| {
        let mut out: Vec<Cgroup> = Vec::new();
        for (controller, name, settings) in v {
            if !out.iter().any(|c| c.controller == controller && c.name == name) {
                out.push(Cgroup {
                    controller,
                    name,
                    settings,
                });
            }
        }
        out
    })
}

fn bound() -> impl Strategy<Value = Bound> {
    prop_oneof![Just(Bound::Unlimited), seconds().prop_map(Bound::Seconds)]
}

/// An event match built the way the parser builds one: a name, and argument
/// tokens classified by `MatchArg::from_token`, positional ones first.
fn event_match() -> impl Strategy<Value = EventMatch> {
    let token = prop_oneof![
        2 => value(10),
        1 => (value(6), prop::sample::select(vec!["=", "!=", "==", "=!="]), value(6))
            .prop_map(|(k, op, v)| format!("{k}{op}{v}")),
        1 => prop::sample::select(vec!["and", "or", "(", ")", "\"and\"", "$JOB", "[2345]"]).prop_map(String::from),
    ];
    (value(12), prop::collection::vec(token, 0..4)).prop_map(|(name, tokens)| {
        let mut args: Vec<MatchArg> = tokens.iter().map(|t| MatchArg::from_token(t)).collect();
        args.sort_by_key(MatchArg::is_named);
        EventMatch { name, args }
    })
}

/// An expression tree of depth at most 6.
fn event_expr() -> impl Strategy<Value = EventExpr> {
    event_match()
        .prop_map(EventExpr::Match)
        .prop_recursive(5, 32, 2, |inner| {
            (any::<bool>(), inner.clone(), inner).prop_map(|(and, l, r)| {
                if and {
                    EventExpr::And(Box::new(l), Box::new(r))
                } else {
                    EventExpr::Or(Box::new(l), Box::new(r))
                }
            })
        })
}

fn opt<S: Strategy>(s: S) -> impl Strategy<Value = Option<S::Value>> {
    prop::option::weighted(0.4, s)
}

/// A random job. Every field a job file can set is generated; the
/// restrictions are those of the strategies above (what the parser can
/// produce), so every generated job is representable.
fn job() -> impl Strategy<Value = JobConf> {
    let texts = (
        opt(value(20)),
        opt(value(20)),
        opt(value(8)),
        opt(value(20)),
        value(10),
        prop::collection::vec(value(12), 0..4),
        prop::collection::vec(value(16), 0..4),
        prop::collection::vec(value(8), 0..4),
    );
    let events = (opt(event_expr()), opt(event_expr()));
    let processes = (
        opt(process()),
        opt(process()),
        opt(process()),
        opt(process()),
        opt(process()),
    );
    let flags = (
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        opt((seconds(), seconds())),
        prop::collection::vec(normal_exit(), 0..4),
        seconds(),
        signal(),
        signal(),
        prop::sample::select(vec![Expect::None, Expect::Stop, Expect::Daemon, Expect::Fork]),
        opt(prop::sample::select(vec![
            Console::None,
            Console::Output,
            Console::Owner,
            Console::Log,
        ])),
    );
    let settings = (
        opt(0..=0o777u32),
        opt(-20..=19i32),
        opt(-1000..=1000i32),
        limits(),
        (opt(value(12)), opt(value(12)), opt(value(8)), opt(value(8))),
        (opt(value(12)), opt(value(12))),
        cgroups(),
        (opt(bound()), opt(bound()), opt(value(16))),
    );
    (texts, events, processes, flags, settings).prop_map(
        |(
            (description, author, version, usage, instance, emits, env, export),
            (start_on, stop_on),
            (main, pre_start, post_start, pre_stop, post_stop),
            (
                task,
                respawn,
                debug,
                respawn_limit,
                normal_exit,
                kill_timeout,
                kill_signal,
                reload_signal,
                expect,
                console,
            ),
            (
                umask,
                nice,
                oom_score,
                limits,
                (chroot, chdir, setuid, setgid),
                (apparmor_load, apparmor_switch),
                cgroups,
                (process_timeout, expect_timeout, pid_file),
            ),
        )| {
            JobConf::from(JobFields {
                description,
                author,
                version,
                usage,
                instance,
                start_on,
                stop_on,
                emits,
                env,
                export,
                process: Processes {
                    main,
                    pre_start,
                    post_start,
                    pre_stop,
                    post_stop,
                },
                task,
                respawn,
                respawn_limit: respawn_limit.map_or_else(RespawnLimit::default, |(count, interval)| {
                    RespawnLimit { count, interval }
                }),
                normal_exit,
                kill_timeout,
                kill_signal,
                reload_signal,
                expect,
                console,
                umask,
                nice,
                oom_score,
                limits,
                chroot,
                chdir,
                setuid,
                setgid,
                apparmor_load,
                apparmor_switch,
                cgroups,
                debug,
                process_timeout,
                expect_timeout,
                pid_file,
            })
        },
    )
}

/// The pieces of a token soup: stanza names and sub-keywords, operators,
/// parentheses, quotes, escapes, comments, block ends, numbers, `KEY=VALUE`.
const SOUP: &[&str] = &[
    "exec",
    "script",
    "pre-start",
    "post-start",
    "pre-stop",
    "post-stop",
    "start",
    "stop",
    "on",
    "manual",
    "instance",
    "description",
    "author",
    "version",
    "usage",
    "emits",
    "env",
    "export",
    "task",
    "respawn",
    "limit",
    "normal",
    "exit",
    "kill",
    "timeout",
    "signal",
    "reload",
    "expect",
    "fork",
    "daemon",
    "none",
    "console",
    "log",
    "output",
    "owner",
    "umask",
    "nice",
    "oom",
    "score",
    "never",
    "chroot",
    "chdir",
    "setuid",
    "setgid",
    "pid",
    "file",
    "apparmor",
    "load",
    "switch",
    "cgroup",
    "debug",
    "process",
    "unlimited",
    "nofile",
    "SIGTERM",
    "KILL",
    "(",
    ")",
    "and",
    "or",
    "\"",
    "'",
    "\\",
    "\n",
    "\n",
    "\n",
    "#",
    "end script",
    "\nend script\n",
    "0",
    "1",
    "-1",
    "5",
    "022",
    "0777",
    "-20",
    "1000",
    "2147483648",
    "18446744073709551616",
    "KEY=VALUE",
    "K!=V",
    "A=\"b c\"",
    "$JOB",
    " ",
    " ",
    " ",
    "\t",
    "a",
    "b",
];

/// How lines of a soup start, so that more of them parse.
const HEADS: &[&str] = &[
    "start on",
    "stop on",
    "exec",
    "script",
    "pre-start exec",
    "post-stop script",
    "env",
    "emits",
    "export",
    "normal exit",
    "kill signal",
    "kill timeout",
    "respawn",
    "respawn limit",
    "limit nofile",
    "cgroup",
    "oom score",
    "oom",
    "umask",
    "nice",
    "description",
    "instance",
    "expect",
    "console",
    "manual",
    "task",
    "end script",
    "  ",
    "#",
];

/// A token soup: either tokens strung together anyhow, or lines that start
/// like stanzas and go on with random tokens.
fn soup() -> impl Strategy<Value = Vec<u8>> {
    let tokens = |n: usize| prop::collection::vec(prop::sample::select(SOUP), 0..n);
    let glue = |tokens: Vec<&str>, out: &mut Vec<u8>| {
        for (i, t) in tokens.into_iter().enumerate() {
            // Mostly separate tokens, as a file would; sometimes glue them.
            if !out.is_empty() && !t.starts_with(['\n', ' ', '\t']) && i % 4 != 3 {
                out.push(b' ');
            }
            out.extend_from_slice(t.as_bytes());
        }
    };
    let anyhow = tokens(60).prop_map(move |t| {
        let mut out = Vec::new();
        glue(t, &mut out);
        out
    });
    let line = (prop::sample::select(HEADS), tokens(5));
    let lines = prop::collection::vec(line, 0..6).prop_map(move |lines| {
        let mut out = Vec::new();
        for (head, rest) in lines {
            out.extend_from_slice(head.as_bytes());
            glue(rest, &mut out);
            out.push(b'\n');
        }
        out
    });
    prop_oneof![anyhow, lines]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// `parse(render(job)) == job` for any representable job, and the other
    /// checks of `check_job` (idempotent rendering, dump, serde).
    #[test]
    fn generated_jobs_round_trip(job in job()) {
        let text = render_job(&job);
        let back = parse_job(text.as_bytes())
            .map_err(|e| TestCaseError::fail(format!("{e}\n{}\n{text}", e.caret())))?;
        prop_assert_eq!(&back, &job, "rendering:\n{}", text);
        check_job(&job);
    }

    /// An expression parses back from its rendering, in `start on` and in
    /// `stop on`.
    #[test]
    fn generated_expressions_round_trip(expr in event_expr()) {
        prop_assert!(expr.depth() <= 6);
        let text = expr.render();
        for stanza in ["start on", "stop on"] {
            let file = format!("{stanza} {text}\n");
            let job = parse_job(file.as_bytes())
                .map_err(|e| TestCaseError::fail(format!("{e}\n{}", e.caret())))?;
            let got = if stanza == "start on" { job.start_on() } else { job.stop_on() };
            prop_assert_eq!(got.map(PackedExpr::unpack), Some(expr.clone()), "{}", file);
        }
    }

    /// For operands that need no quoting, the show-config form (`Display`)
    /// is the job-file form.
    #[test]
    fn display_is_render_for_plain_operands(expr in event_expr()) {
        let plain = |s: &str| {
            !s.is_empty() && s != "and" && s != "or"
                && !s.bytes().any(|b| b" \t\r\n#\"'\\()\0".contains(&b))
        };
        let all_plain = expr.matches().iter().all(|m| {
            plain(&m.name) && m.args.iter().all(|a| plain(&a.to_token()))
        });
        if all_plain {
            prop_assert_eq!(expr.to_string(), expr.render());
        }
    }

    /// Arbitrary bytes never panic the parser; what parses round-trips.
    #[test]
    fn arbitrary_bytes(data in prop::collection::vec(any::<u8>(), 0..2000)) {
        fuzz_check(&data);
    }

    /// Token soups (far more likely to parse than random bytes) never panic
    /// the parser; what parses round-trips.
    #[test]
    fn token_soups(data in soup()) {
        fuzz_check(&data);
    }
}

// ---------------------------------------------------------------------------
// Deep and long inputs
// ---------------------------------------------------------------------------

/// Runs `f` on a thread with a 2 MiB stack, as a small init might have.
fn small_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(f)
        .expect("spawn")
        .join()
        .expect("no stack overflow or panic")
}

/// The deep and long inputs, at scale `n` (the full size is 100,000).
fn deep_inputs(n: usize) -> Vec<(&'static str, Vec<u8>)> {
    let mut v = Vec::new();
    v.push((
        "open parens",
        format!("start on {}\n", "(".repeat(n)).into_bytes(),
    ));
    v.push((
        "balanced parens",
        format!("start on {}a{}\n", "(".repeat(n), ")".repeat(n)).into_bytes(),
    ));
    v.push((
        "or chain",
        format!("start on {}\n", "a or ".repeat(n)).into_bytes(),
    ));
    v.push((
        "nested or",
        format!("start on {}a{}\n", "(a or ".repeat(n), ")".repeat(n)).into_bytes(),
    ));
    v.push((
        "long env",
        // `xy \\ ` is 5 bytes once dequoted: 1.1 MB at full size.
        format!("env BIG=\"{}\"\n", "xy \\\\ ".repeat(n * 11 / 5)).into_bytes(),
    ));
    v.push((
        "long script",
        format!("script\n{}end script\n", "  echo line\n".repeat(n / 2)).into_bytes(),
    ));
    v.push((
        "many stanzas",
        "env A=b\nexport A\nnormal exit 0 1 TERM\n"
            .repeat(n / 10)
            .into_bytes(),
    ));
    v
}

/// 100,000 `(`, 100,000 `a or`, a 1 MB `env` value and a 50,000-line script
/// block each parse or fail cleanly on a 2 MiB stack.
#[test]
fn deep_and_long_inputs_on_a_small_stack() {
    small_stack(|| {
        let n = 100_000;
        let results: Vec<(&str, Result<JobConf, ErrorKind>)> = deep_inputs(n)
            .into_iter()
            .map(|(name, data)| {
                let r = parse_job(&data);
                if let Err(e) = &r {
                    fuzz_check::check_error(&data, e);
                }
                (name, r.map_err(|e| e.kind))
            })
            .collect();
        for (name, r) in &results {
            match (*name, r) {
                ("open parens", Err(_)) => {}
                ("balanced parens", Ok(job)) => {
                    assert_eq!(job.start_on().map(|e| e.unpack().depth()), Some(1))
                }
                ("or chain" | "nested or", Err(ErrorKind::TooDeep)) => {}
                ("long env", Ok(job)) => assert_eq!(job.env().next().unwrap().len(), "BIG=".len() + n * 11),
                ("long script", Ok(job)) => {
                    let script = &job.process(ProcessKind::Main).unwrap().command;
                    assert_eq!(script.lines().count(), n / 2);
                }
                ("many stanzas", Ok(job)) => assert_eq!(job.env().len(), n / 10),
                (name, r) => panic!("{name}: unexpected {r:?}"),
            }
        }
        // The jobs that parsed round-trip too (on the small stack).
        for (_, r) in results {
            if let Ok(job) = r {
                check_job(&job);
            }
        }
        // The rejected deep inputs, once mutated into something that parses,
        // are dropped without recursion trouble: the deepest tree allowed.
        let job = parse_job(chain("and", MAX_EXPR_DEPTH).as_bytes()).unwrap();
        drop(job);
    });
}

/// Counts the bytes allocated on the current thread, so that the linearity
/// check below measures the parser and not the tests running beside it.
struct CountingAlloc;

thread_local! {
    static ALLOCATED: Cell<u64> = const { Cell::new(0) };
}

fn count(bytes: usize) {
    let _ = ALLOCATED.try_with(|a| a.set(a.get() + bytes as u64));
}

// SAFETY: every call is forwarded to the system allocator unchanged.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

fn allocated_by_parse(data: &[u8]) -> u64 {
    let before = ALLOCATED.with(Cell::get);
    let r = parse_job(data);
    let after = ALLOCATED.with(Cell::get);
    drop(r);
    after - before
}

/// A structural linearity check, with no clock: the bytes the parser
/// allocates for an input four times as large grow about four times (at most
/// 6×; a quadratic copy would be 16×). This catches re-copying of the text
/// (a token or line rebuilt per character, an error position recomputed per
/// token); it cannot see pure re-scanning, which allocates nothing — the
/// benchmark times that.
#[test]
fn allocation_grows_linearly_with_input() {
    small_stack(|| {
        let (small, large) = (10_000, 40_000);
        for ((name, a), (_, b)) in deep_inputs(small).into_iter().zip(deep_inputs(large)) {
            let (x, y) = (allocated_by_parse(&a), allocated_by_parse(&b));
            assert!(
                y <= 6 * x + 4096,
                "{name}: {x} bytes allocated for {} bytes of input, {y} for {}",
                a.len(),
                b.len()
            );
        }
    });
}

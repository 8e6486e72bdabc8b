//! What a job process sees: its environment (spec §1.6, §5), its file
//! descriptors and its credentials (spec §1.4 "Child setup").

use std::collections::BTreeSet;

use upshot_tests::{PATH, Session};

/// UPSTART_JOB, UPSTART_INSTANCE, UPSTART_EVENTS, UPSTART_SESSION; `env`
/// stanzas; the variables of the event that started the job, which win
/// over `env` stanzas; UPSTART_JOB/UPSTART_INSTANCE, set last, win over
/// everything; and the daemon's own environment, inherited.
#[test]
fn job_environment_has_upstart_variables_env_stanzas_and_event_variables() {
    let mut s = Session::new("env");
    s.set_env("UPSHOT_INHERITED", "yes");
    s.write_job(
        "a",
        "start on startup\nenv FOO=bar\nexec @BIN@/recorder --out @OUT@/a\n",
    );
    s.write_job(
        "b",
        "start on started a\nenv JOB=from-stanza\nenv UPSTART_JOB=fake\nenv FOO=b-foo\n\
         exec @BIN@/recorder --out @OUT@/b\n",
    );
    s.write_job(
        "i",
        "start on started a\ninstance $JOB\nexec @BIN@/recorder --out @OUT@/i\n",
    );
    s.start(&[]);
    let a = s.wait_record("a");
    let b = s.wait_record("b");
    let i = s.wait_record("i");
    let session = format!(
        "unix:abstract=/com/ubuntu/upstart-session/{}/{}",
        s.account().uid,
        s.pid()
    );

    let a = a.env();
    assert_eq!(a.get("UPSTART_JOB").map(String::as_str), Some("a"));
    assert_eq!(a.get("UPSTART_INSTANCE").map(String::as_str), Some(""));
    assert_eq!(a.get("UPSTART_EVENTS").map(String::as_str), Some("startup"));
    assert_eq!(a.get("UPSTART_SESSION"), Some(&session));
    assert_eq!(a.get("FOO").map(String::as_str), Some("bar"));
    assert_eq!(
        a.get("UPSHOT_INHERITED").map(String::as_str),
        Some("yes"),
        "inherited from the daemon"
    );
    assert_eq!(a.get("PATH").map(String::as_str), Some(PATH));
    assert_eq!(a.get("JOB"), None, "startup carries no variables");

    let b = b.env();
    assert_eq!(b.get("UPSTART_JOB").map(String::as_str), Some("b"), "set last");
    assert_eq!(b.get("UPSTART_EVENTS").map(String::as_str), Some("started"));
    assert_eq!(
        b.get("JOB").map(String::as_str),
        Some("a"),
        "event variables win over env stanzas"
    );
    assert_eq!(b.get("INSTANCE").map(String::as_str), Some(""));
    assert_eq!(b.get("FOO").map(String::as_str), Some("b-foo"));
    assert_eq!(b.get("UPSTART_SESSION"), Some(&session));

    let i = i.env();
    assert_eq!(i.get("UPSTART_JOB").map(String::as_str), Some("i"));
    assert_eq!(
        i.get("UPSTART_INSTANCE").map(String::as_str),
        Some("a"),
        "instance $JOB"
    );
}

/// With `--no-inherit-env` a job gets PATH and TERM from the daemon, the
/// UPSTART_* variables, and `env KEY` still copies the daemon's own value.
#[test]
fn no_inherit_env_leaves_only_path_term_and_upstart_variables() {
    let mut s = Session::new("noinherit");
    s.set_env("UPSHOT_INHERITED", "yes");
    s.set_env("TERM", "dumb");
    s.write_job(
        "plain",
        "start on startup\nexec @BIN@/recorder --out @OUT@/plain\n",
    );
    s.write_job(
        "copy",
        "start on startup\nenv UPSHOT_INHERITED\nenv NOT_IN_DAEMON_ENV\nexec @BIN@/recorder --out @OUT@/copy\n",
    );
    s.start(&["--no-inherit-env"]);
    let plain = s.wait_record("plain").env();
    let copy = s.wait_record("copy").env();
    let keys: BTreeSet<&str> = plain.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        BTreeSet::from([
            "PATH",
            "TERM",
            "UPSTART_EVENTS",
            "UPSTART_INSTANCE",
            "UPSTART_JOB",
            "UPSTART_SESSION"
        ]),
        "{plain:?}"
    );
    assert_eq!(plain["PATH"], PATH);
    assert_eq!(plain["TERM"], "dumb");
    assert_eq!(
        copy.get("UPSHOT_INHERITED").map(String::as_str),
        Some("yes"),
        "env KEY copies init's value"
    );
    assert_eq!(copy.get("NOT_IN_DAEMON_ENV"), None);
    assert_eq!(copy.get("UPSHOT_TEST_TREE"), None);
}

/// A job process has exactly fds 0, 1 and 2: nothing of the daemon leaks
/// (signalfd, timerfd, inotify, other jobs' ptys, the fd 9 script pipe).
/// With `console log` stdin is /dev/null and stdout/stderr a pty; with
/// `console none` all three are /dev/null.
#[test]
fn job_sees_only_fds_0_1_2() {
    let mut s = Session::new("fds");
    s.write_job(
        "direct",
        "start on startup\nexec @BIN@/recorder --out @OUT@/direct\n",
    );
    s.write_job(
        "script",
        "start on startup\nscript\n  true\n  exec @BIN@/recorder --out @OUT@/script\nend script\n",
    );
    s.write_job(
        "quiet",
        "start on startup\nconsole none\nexec @BIN@/recorder --out @OUT@/quiet\n",
    );
    // Started after the others, while their ptys and pipes are open.
    s.write_job(
        "late",
        "start on started direct and started script and started quiet\nexec @BIN@/recorder --out @OUT@/late\n",
    );
    s.start(&[]);
    for name in ["direct", "script", "late"] {
        let fds = s.wait_record(name).fds();
        let numbers: Vec<i32> = fds.iter().map(|(fd, _)| *fd).collect();
        assert_eq!(numbers, [0, 1, 2], "{name}: {fds:?}");
        assert_eq!(fds[0].1, "/dev/null", "{name}: stdin");
        assert!(fds[1].1.starts_with("/dev/pts/"), "{name}: stdout {:?}", fds[1].1);
        assert_eq!(fds[1].1, fds[2].1, "{name}: stdout and stderr share the pty");
    }
    let fds = s.wait_record("quiet").fds();
    assert_eq!(
        fds,
        [
            (0, "/dev/null".to_string()),
            (1, "/dev/null".to_string()),
            (2, "/dev/null".to_string())
        ]
    );
}

/// The daemon and every job process run as the unprivileged test user
/// (uid, gid, supplementary groups); a session job keeps the daemon's
/// umask and working directory, and leads its own session.
#[test]
fn job_runs_as_the_unprivileged_user() {
    let mut s = Session::new("user");
    s.write_job(
        "who",
        "start on startup\nscript\n  exec @BIN@/recorder --out @OUT@/who\nend script\n",
    );
    s.start(&[]);
    let r = s.wait_record("who");
    let acct = s.account().clone();
    assert_ne!(acct.uid, 0);
    for key in ["uid", "euid"] {
        assert_eq!(r.num(key), i64::from(acct.uid), "{key}");
    }
    for key in ["gid", "egid"] {
        assert_eq!(r.num(key), i64::from(acct.gid), "{key}");
    }
    if acct.switch {
        let mut want: Vec<u32> = acct.groups.clone();
        want.sort();
        let mut got: Vec<u32> = r
            .get("groups")
            .split(',')
            .filter(|g| !g.is_empty())
            .map(|g| g.parse().unwrap())
            .collect();
        got.sort();
        assert_eq!(got, want, "supplementary groups");
    }
    let pid = r.num("pid");
    assert_eq!(r.num("sid"), pid, "setsid");
    assert_eq!(r.num("pgid"), pid, "own process group");
    assert_eq!(
        r.get("cwd"),
        s.root().display().to_string(),
        "session jobs keep the daemon's cwd"
    );
    let my_umask = std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("Umask:").map(|v| v.trim().to_string()))
        .unwrap();
    assert_eq!(
        r.get("umask"),
        my_umask,
        "session jobs inherit the daemon's umask"
    );

    let daemon = upshot_tests::proc_info(s.pid()).unwrap();
    assert_eq!(daemon.uid, acct.uid, "the daemon itself");
    let procs = s.descendants();
    assert!(procs.iter().any(|p| i64::from(p.pid) == pid), "{procs:?}");
    for p in procs {
        assert_eq!(p.uid, acct.uid, "{p:?}");
    }
}

//! `console log`: job output in `LOGDIR/JOB[-INSTANCE].log` (spec §1.4
//! "Console details"), `--no-log`, and log rotation.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::time::Duration;

use nix::sys::signal::Signal;
use upshot_tests::Session;

/// The numbers of the `line N` lines of a ticker's log.
fn line_numbers(text: &str) -> Vec<u64> {
    text.lines()
        .map(|l| {
            l.strip_prefix("line ")
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("not a ticker line: {l:?}"))
        })
        .collect()
}

fn count_lines(s: &Session, file: &str) -> usize {
    s.job_log(file).map_or(0, |t| t.lines().count())
}

/// Asserts that `numbers` is exactly 1, 2, …, M with M ≥ `at_least`.
fn assert_contiguous(numbers: &[u64], at_least: u64) {
    let want: Vec<u64> = (1..=numbers.len() as u64).collect();
    assert!(
        numbers == want.as_slice(),
        "lines lost, repeated or out of order: {numbers:?}"
    );
    assert!(
        numbers.len() as u64 >= at_least,
        "the last line the ticker wrote ({at_least}) is missing: got {} lines",
        numbers.len()
    );
}

/// Standard output and error both go to `LOGDIR/JOB.log`, byte for byte
/// (no `\r`), in a file of the test user with mode 0600.
#[test]
fn console_log_captures_stdout_and_stderr() {
    let mut s = Session::new("log-content");
    s.write_job(
        "hello",
        "start on startup\ntask\nscript\n  echo out-line\n  echo err-line >&2\n  printf 'no newline'\nend script\n",
    );
    s.start(&[]);
    let want = "out-line\nerr-line\nno newline";
    s.wait_for("hello.log to hold the job's output", |s| {
        s.job_log("hello.log").as_deref() == Some(want)
    });
    let meta = fs::metadata(s.log_dir().join("hello.log")).unwrap();
    assert_eq!(meta.uid(), s.account().uid);
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert_eq!(s.terminate(Duration::from_secs(10)), 0);
    assert_eq!(s.job_log("hello.log").as_deref(), Some(want));
}

/// A `/` in the job name becomes `_` in the log file name; an instance
/// logs to `JOB-INSTANCE.log`, with `/` in the instance name replaced too.
#[test]
fn log_file_names_replace_slash_and_name_instances() {
    let mut s = Session::new("log-names");
    s.write_job("sub/dir", "start on startup\ntask\nexec echo from sub/dir\n");
    s.write_job(
        "inst",
        "start on stopped sub/dir\ninstance $JOB\ntask\nexec echo instance $UPSTART_INSTANCE\n",
    );
    s.write_job(
        "plain",
        "start on stopped sub/dir\ninstance x\ntask\nexec echo instance x\n",
    );
    s.start(&[]);
    s.wait_for("the three log files", |s| {
        s.job_log("sub_dir.log").as_deref() == Some("from sub/dir\n")
            && s.job_log("inst-sub_dir.log").as_deref() == Some("instance sub/dir\n")
            && s.job_log("plain-x.log").as_deref() == Some("instance x\n")
    });
    assert_eq!(s.terminate(Duration::from_secs(10)), 0);
    assert_eq!(
        s.job_log_files(),
        ["inst-sub_dir.log", "plain-x.log", "sub_dir.log"]
    );
}

/// Each run of a respawning job appends to the same file, after what the
/// file held before the daemon started.
#[test]
fn log_is_appended_across_respawns() {
    let mut s = Session::new("log-respawn");
    s.write_owned(&s.log_dir().join("crash.log"), "old line\n");
    s.write_job(
        "crash",
        "start on startup\nrespawn\nexec @BIN@/crasher --count @OUT@/count --stop-after 3\n",
    );
    s.start(&[]);
    s.wait_for("three runs", |s| s.read_out("count").as_deref() == Some("3\n"));
    s.wait_for("the third run's line", |s| count_lines(s, "crash.log") == 4);
    assert_eq!(s.terminate(Duration::from_secs(10)), 0);
    let log = s.job_log("crash.log").unwrap();
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines[0], "old line");
    for (i, line) in lines[1..].iter().enumerate() {
        assert!(line.starts_with(&format!("run {} pid ", i + 1)), "{log}");
    }
    assert_eq!(lines.len(), 4, "{log}");
}

/// `--no-log` turns `console log` into `console none`: no log file at all.
#[test]
fn no_log_writes_no_log_files() {
    let mut s = Session::new("nolog");
    s.write_job(
        "chatty",
        "start on startup\ntask\nscript\n  echo something\n  echo more >&2\n  touch @OUT@/done\nend script\n",
    );
    s.write_job(
        "service",
        "start on startup\nscript\n  echo service\n  exec @BIN@/recorder --out @OUT@/service\nend script\n",
    );
    s.start(&["--no-log"]);
    s.wait_out("done");
    let fds = s.wait_record("service").fds();
    assert!(fds.iter().all(|(_, t)| t == "/dev/null"), "{fds:?}");
    assert_eq!(s.terminate(Duration::from_secs(10)), 0);
    assert_eq!(s.job_log_files(), Vec::<String>::new());
}

/// logrotate's default: move the file away, then SIGHUP. Lines written
/// after that go to a new file at the path, and the old file plus the new
/// one hold every line exactly once, in order, up to the last line the job
/// wrote before it was stopped.
#[test]
fn logrotate_move_then_sighup_loses_nothing() {
    let mut s = Session::new("log-move");
    s.write_job(
        "tick",
        "start on startup\nexec @BIN@/ticker --state @OUT@/state --interval-ms 5\n",
    );
    s.start(&[]);
    s.wait_for("50 lines in tick.log", |s| count_lines(s, "tick.log") >= 50);
    fs::rename(s.log_dir().join("tick.log"), s.log_dir().join("tick.log.1")).unwrap();
    s.signal(Signal::SIGHUP);
    s.wait_for("50 lines in the new tick.log", |s| {
        count_lines(s, "tick.log") >= 50
    });
    assert_eq!(s.terminate(Duration::from_secs(10)), 0);
    let last: u64 = s.read_out("state").unwrap().trim().parse().unwrap();
    let old = line_numbers(&s.job_log("tick.log.1").unwrap());
    let new = line_numbers(&s.job_log("tick.log").unwrap());
    assert!(old.len() >= 50 && new.len() >= 50);
    let all: Vec<u64> = old.iter().chain(&new).copied().collect();
    assert_contiguous(&all, last);
}

/// logrotate's copytruncate: copy the file, truncate it in place. With
/// the job paused during the copy (so the copy is complete), the copy plus
/// the file afterwards hold every line exactly once, and the truncated file
/// has no hole of NUL bytes.
#[test]
fn copytruncate_loses_nothing_and_leaves_no_nul_bytes() {
    let mut s = Session::new("log-copytruncate");
    s.write_job(
        "tick",
        "start on startup\nexec @BIN@/ticker --state @OUT@/state --interval-ms 5 --pause @OUT@/pause\n",
    );
    s.start(&[]);
    s.wait_for("50 lines in tick.log", |s| count_lines(s, "tick.log") >= 50);
    s.write_owned(&s.out("pause"), "");
    let paused_at: u64 = s.wait_out("pause.ack").trim().parse().unwrap();
    s.wait_for("the daemon to write every line written so far", |s| {
        s.job_log("tick.log")
            .is_some_and(|t| t.ends_with(&format!("line {paused_at}\n")))
    });
    let log = s.log_dir().join("tick.log");
    fs::copy(&log, s.log_dir().join("tick.log.1")).unwrap();
    fs::OpenOptions::new()
        .write(true)
        .open(&log)
        .unwrap()
        .set_len(0)
        .unwrap();
    fs::remove_file(s.out("pause")).unwrap();
    s.wait_for("50 lines in the truncated tick.log", |s| {
        count_lines(s, "tick.log") >= 50
    });
    assert_eq!(s.terminate(Duration::from_secs(10)), 0);
    let last: u64 = s.read_out("state").unwrap().trim().parse().unwrap();
    let bytes = fs::read(&log).unwrap();
    assert!(!bytes.contains(&0), "NUL bytes in the truncated log");
    let new = line_numbers(&String::from_utf8(bytes).unwrap());
    assert_eq!(
        new[0],
        paused_at + 1,
        "the truncated file starts with the next line"
    );
    let old = line_numbers(&s.job_log("tick.log.1").unwrap());
    let all: Vec<u64> = old.iter().chain(&new).copied().collect();
    assert_contiguous(&all, last);
}

/// What a job prints while it is being stopped at shutdown (a TERM trap)
/// reaches its log before the daemon exits.
#[test]
fn output_written_while_stopping_is_logged() {
    let mut s = Session::new("log-last-words");
    s.write_job(
        "last",
        r#"
start on startup
script
  trap 'echo last words; exit 0' TERM
  echo ready > @OUT@/ready
  while true; do sleep 0.05; done
end script
"#,
    );
    s.start(&[]);
    s.wait_out("ready");
    assert_eq!(s.terminate(Duration::from_secs(10)), 0);
    // (The shell may first report its `sleep` "Terminated".)
    let log = s.job_log("last.log").unwrap_or_default();
    assert!(log.ends_with("last words\n"), "{log:?}");
}

//! Job files: watched conf dirs (inotify), removal, broken files, and the
//! conf dir options (spec §1.1, §5).

use std::time::Duration;

use upshot_tests::{Session, alive};

/// A job that respawns every 0.2 s, so `started pulse` happens again and
/// again: a job added later with `start on started pulse` starts at the
/// next pulse after the daemon has loaded it. (`startup` is long gone when
/// a job is added, and there is no initctl yet; the pulse makes "the new
/// job was loaded" observable without guessing how long inotify takes.)
const PULSE: &str = "start on startup\nrespawn\nrespawn limit unlimited\nexec sleep 0.2\n";

/// A job file created while the daemon runs, and one in a directory
/// created while it runs, are loaded without a reload.
#[test]
fn job_file_added_while_running_is_loaded() {
    let mut s = Session::new("inotify-add");
    s.write_job("pulse", PULSE);
    s.start(&[]);
    s.wait_log("pulse state changed from post-start to running");
    s.write_job(
        "late",
        "start on started pulse\ntask\nexec @BIN@/recorder --out @OUT@/late --exit 0\n",
    );
    let late = s.wait_record("late").env();
    assert_eq!(late.get("UPSTART_JOB").map(String::as_str), Some("late"));
    // A new subdirectory, then a job in it.
    s.mkdir("conf/newdir");
    s.write_job(
        "newdir/deep",
        "start on started pulse\ntask\nexec @BIN@/recorder --out @OUT@/deep --exit 0\n",
    );
    let deep = s.wait_record("deep").env();
    assert_eq!(deep.get("UPSTART_JOB").map(String::as_str), Some("newdir/deep"));
    assert_eq!(s.terminate(Duration::from_secs(10)), 0);
}

/// Removing the file of a running job leaves its instance running (it is
/// not stopped, nor restarted); it is stopped normally at shutdown. The
/// removal is known to be processed once a job added after it has run.
#[test]
fn job_file_removed_while_running_keeps_its_instance_until_stopped() {
    let mut s = Session::new("inotify-remove");
    s.write_job("pulse", PULSE);
    s.write_job("keep", "start on startup\nexec @BIN@/recorder --out @OUT@/keep\n");
    s.start(&[]);
    let pid = s.wait_record("keep").num("pid") as i32;
    s.remove_job("keep");
    s.write_job(
        "after",
        "start on started pulse\ntask\nexec @BIN@/recorder --out @OUT@/after --exit 0\n",
    );
    s.wait_out("after");
    assert!(alive(pid), "the removed job's process still runs");
    assert_eq!(s.terminate(Duration::from_secs(10)), 0);
    assert!(!alive(pid));
    let log = s.daemon_log();
    assert!(
        log.contains(&format!("keep main process ({pid}) killed by TERM signal")),
        "{log}"
    );
    assert_eq!(
        log.matches("keep state changed from waiting to starting").count(),
        1,
        "{log}"
    );
}

/// A job file that does not parse is reported as FILE:LINE:COL: MESSAGE,
/// at start-up and when it appears later, and the other jobs run.
#[test]
fn broken_job_file_is_reported_and_the_other_jobs_run() {
    let mut s = Session::new("broken");
    s.write_job("pulse", PULSE);
    s.write_job("broken", "start on startup\n\nbogus-stanza foo\nexec true\n");
    s.write_job("good", "start on startup\nexec @BIN@/recorder --out @OUT@/good\n");
    s.start(&[]);
    s.wait_out("good");
    let conf = s.conf_dir().display().to_string();
    s.wait_log(&format!("{conf}/broken.conf:3:1: Unknown stanza"));
    s.write_job("later", "start on started pulse\nexec\n");
    s.wait_log(&format!("{conf}/later.conf:2:5: Expected token"));
    s.write_job(
        "fine",
        "start on started pulse\ntask\nexec @BIN@/recorder --out @OUT@/fine --exit 0\n",
    );
    s.wait_out("fine");
    assert_eq!(s.terminate(Duration::from_secs(10)), 0);
    let log = s.daemon_log();
    assert!(!log.contains("broken state changed"), "{log}");
    assert!(!log.contains("later state changed"), "{log}");
}

/// Writes the same job names into several dirs; each job records which
/// dir it came from.
fn write_tagged(s: &Session, dir: &str, jobs: &[&str]) {
    let path = s.mkdir(dir);
    for job in jobs {
        s.write_job_in(
            &path,
            job,
            &format!("start on startup\ntask\nexec sh -c 'echo {dir} > @OUT@/{job}'\n"),
        );
    }
}

/// `--confdir` twice: the first dir holding a name owns it; a name only
/// the second dir holds is loaded from there.
#[test]
fn first_confdir_owns_a_job_name() {
    let mut s = Session::new("confdirs");
    write_tagged(&s, "one", &["dup"]);
    write_tagged(&s, "two", &["dup", "only2"]);
    let dir = |d: &str| s.root().join(d).display().to_string();
    let args = [
        "--user",
        "--confdir",
        &dir("one"),
        "--confdir",
        &dir("two"),
        "--logdir",
        &dir("log"),
        "-v",
    ]
    .map(String::from);
    s.start_args(&args);
    assert_eq!(s.wait_out("only2"), "two\n");
    assert_eq!(s.wait_out("dup"), "one\n");
    assert_eq!(s.terminate(Duration::from_secs(10)), 0);
    assert_eq!(s.read_out("dup").as_deref(), Some("one\n"));
}

/// `--prepend-confdir` comes before the `--confdir` list and
/// `--append-confdir` after it, wherever they are on the command line.
#[test]
fn prepend_and_append_confdir_extend_the_list() {
    let mut s = Session::new("confdirs-extend");
    write_tagged(&s, "pre", &["x"]);
    write_tagged(&s, "mid", &["x", "y"]);
    write_tagged(&s, "post", &["y", "z"]);
    let dir = |d: &str| s.root().join(d).display().to_string();
    let args = [
        "--user",
        "--append-confdir",
        &dir("post"),
        "--confdir",
        &dir("mid"),
        "--prepend-confdir",
        &dir("pre"),
        "--logdir",
        &dir("log"),
        "-v",
    ]
    .map(String::from);
    s.start_args(&args);
    assert_eq!(s.wait_out("x"), "pre\n");
    assert_eq!(s.wait_out("y"), "mid\n");
    assert_eq!(s.wait_out("z"), "post\n");
    assert_eq!(s.terminate(Duration::from_secs(10)), 0);
}

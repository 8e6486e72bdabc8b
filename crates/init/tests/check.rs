//! Black-box tests of `init --check`: the real binary on real files.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A fresh directory under the target dir, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let dir =
            PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("check-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn write(&self, rel: &str, text: &str) -> PathBuf {
        let p = self.0.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, text).unwrap();
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn init(args: &[&dyn AsRef<std::ffi::OsStr>]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_init"));
    for a in args {
        cmd.arg(a);
    }
    cmd.output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn dump(o: &Output) -> Vec<serde_json::Value> {
    serde_json::from_slice::<Vec<serde_json::Value>>(&o.stdout).expect("--dump prints a JSON array")
}

#[test]
fn good_file_exits_zero_silently() {
    let d = TempDir::new("good");
    let f = d.write("svc.conf", "start on startup\nexec /bin/true\n");
    let o = init(&[&"--check", &f]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(o.stdout.is_empty() && o.stderr.is_empty());
}

#[test]
fn error_names_file_line_column_and_shows_a_caret() {
    let d = TempDir::new("bad");
    let f = d.write("bad.conf", "description \"x\"\nrespawn limit 10 foo\n");
    let o = init(&[&"--check", &f]);
    assert_eq!(o.status.code(), Some(1));
    let want = format!(
        "{}:2:18: Illegal interval, expected number of seconds\n    respawn limit 10 foo\n                     ^\n",
        f.display()
    );
    assert_eq!(stderr(&o), want);
}

#[test]
fn directory_is_scanned_recursively_skipping_ignored_names_and_reporting_every_error() {
    let d = TempDir::new("dir");
    d.write("a.conf", "task\n");
    d.write(
        "net/apache.conf",
        "start on net-device-up IFACE!=lo\nexec apache2\n",
    );
    d.write("broken.conf", "decription \"typo\"\n");
    d.write("other.conf", "console out\n");
    d.write("a.conf~", "garbage garbage\n");
    d.write(".hidden.conf", "garbage\n");
    d.write("c.conf.dpkg-old", "garbage\n");
    d.write("README", "not a job\n");
    let o = init(&[&"--check", &"--dump", &d.0]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(err.contains("broken.conf:1:1: Unknown stanza\n"), "{err}");
    assert!(err.contains("other.conf:1:9: Unknown stanza\n"), "{err}");
    assert_eq!(err.lines().filter(|l| !l.starts_with(' ')).count(), 2, "{err}");
    let names: Vec<_> = dump(&o)
        .iter()
        .map(|j| j["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["a", "net/apache"]);
}

#[test]
fn override_beside_the_file_is_applied() {
    let d = TempDir::new("ovr");
    let f = d.write(
        "svc.conf",
        "start on startup\nenv A=1\nauthor \"me\"\nexec /bin/svc\n",
    );
    d.write("svc.override", "manual\nenv B=2\nauthor \"you\"\n");
    let o = init(&[&"--check", &"--dump", &f]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let job = &dump(&o)[0];
    assert_eq!(job["name"], "svc");
    assert_eq!(job["start_on"], serde_json::Value::Null);
    assert_eq!(job["env"], serde_json::json!(["A=1", "B=2"]));
    assert_eq!(job["author"], "you");
}

#[test]
fn broken_override_is_reported_against_the_override_file() {
    let d = TempDir::new("badovr");
    let f = d.write("svc.conf", "exec /bin/svc\n");
    let o_path = d.write("svc.override", "nice 99\n");
    let o = init(&[&"--check", &f]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).starts_with(&format!(
            "{}:1:6: Illegal nice value, expected -20 to 19\n",
            o_path.display()
        )),
        "{}",
        stderr(&o)
    );
}

#[test]
fn dump_fills_in_defaults_and_gives_expressions_as_trees() {
    let d = TempDir::new("dump");
    let f = d.write("t.conf", "start on a or b FOO=bar\n");
    let o = init(&[&"--check", &"--dump", &f]);
    let job = &dump(&o)[0];
    assert_eq!(job["kill_timeout"], 5);
    assert_eq!(job["kill_signal"], "SIGTERM");
    assert_eq!(job["console"], "log");
    assert_eq!(job["umask"], "0022");
    assert_eq!(
        job["respawn_limit"],
        serde_json::json!({"count": 10, "interval": 5, "unlimited": false})
    );
    assert_eq!(
        job["start_on"],
        serde_json::json!({"or": [
            {"event": "a", "args": []},
            {"event": "b", "args": [{"name": "FOO", "op": "=", "value": "bar"}]}
        ]})
    );
}

#[test]
fn missing_path_is_an_error_naming_it() {
    let o = init(&[&"--check", &Path::new("/nonexistent/upshot.conf")]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).starts_with("/nonexistent/upshot.conf: "),
        "{}",
        stderr(&o)
    );
}

#[test]
fn paths_without_check_are_a_usage_error() {
    let o = init(&[&"/etc/init"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--check"), "{}", stderr(&o));
}

#[test]
fn check_without_paths_is_a_usage_error() {
    let o = init(&[&"--check"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("PATH"), "{}", stderr(&o));
}

#[test]
fn not_pid_1_and_not_user_says_what_to_do() {
    let o = init(&[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("--user"), "{}", stderr(&o));
}

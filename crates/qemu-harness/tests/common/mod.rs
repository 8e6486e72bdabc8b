//! What the VM tests share: running the harness binary on a job (a shipped
//! one, or a variant of one written to a temporary file), and making sure
//! QEMU is there.
//!
//! Skipping: a test that needs QEMU installs it with apt-get when it is
//! missing (as `.ci/run` does). If that fails, the test prints
//! `SKIPPED: <why>` to stderr and fails, unless `UPSHOT_VM_SKIP_OK=1` is
//! set, in which case it passes after saying so.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A shipped job file's text.
pub fn shipped(name: &str) -> String {
    let path = workspace()
        .join("crates/qemu-harness/jobs")
        .join(format!("{name}.toml"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// What a harness run left.
pub struct Run {
    pub code: i32,
    pub stderr: String,
    pub elapsed: Duration,
    pub run_dir: PathBuf,
}

impl Run {
    pub fn console(&self) -> String {
        std::fs::read_to_string(self.run_dir.join("console.log")).unwrap_or_default()
    }

    /// The run passed, every one of the `job_text`'s tests (at least
    /// `min`) ran in order, and QEMU exited 0.
    pub fn assert_passed_every_test(&self, job_text: &str, min: usize) {
        assert_eq!(self.code, 0, "{}", self.stderr);
        let tests = job_text.matches("[[test]]").count();
        assert!(tests >= min, "{tests}");
        for n in 1..=tests {
            assert!(
                self.stderr.contains(&format!(" 3.{n} test/")),
                "no test 3.{n}:\n{}",
                self.stderr
            );
        }
        assert!(self.stderr.contains("QEMU exited with 0"), "{}", self.stderr);
    }
}

/// Writes `text` as a job file named after its `name` key and runs it.
pub fn run_text(text: &str) -> Run {
    let name = text
        .lines()
        .find_map(|l| l.strip_prefix("name = \""))
        .and_then(|r| r.strip_suffix('"'))
        .expect("a job text with a name")
        .to_string();
    let dir = std::env::temp_dir().join(format!("qemu-harness-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join(format!("{name}.toml"));
    std::fs::write(&file, text).unwrap();
    let run = run_job(file.to_str().unwrap(), &name);
    let _ = std::fs::remove_file(&file);
    let _ = std::fs::remove_dir(&dir); // once the last test's file is gone
    run
}

/// Runs `qemu-harness run JOB` (quiet; its log is in the run directory).
pub fn run_job(job: &str, name: &str) -> Run {
    let t = Instant::now();
    let out: Output = Command::new(env!("CARGO_BIN_EXE_qemu-harness"))
        .args(["run", job])
        .output()
        .expect("run qemu-harness");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    eprintln!(
        "--- qemu-harness run {job}: {:?} in {:.1} s\n{stderr}",
        out.status,
        t.elapsed().as_secs_f64()
    );
    Run {
        code: out.status.code().unwrap_or(-1),
        stderr,
        elapsed: t.elapsed(),
        run_dir: run_dir(name),
    }
}

/// Where the harness writes the run of job `name`.
pub fn run_dir(name: &str) -> PathBuf {
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(t) if !t.is_empty() => workspace().join(t),
        _ => workspace().join("target"),
    };
    target.join("qemu-harness/runs").join(name)
}

/// Makes sure QEMU is installed, or skips (loudly) as the module says.
/// Returns false when the test should stop here and pass.
pub fn have_qemu() -> bool {
    static CHECKED: Mutex<Option<Result<(), String>>> = Mutex::new(None);
    let mut checked = CHECKED.lock().unwrap_or_else(|e| e.into_inner());
    let result = checked.get_or_insert_with(install_qemu).clone();
    match result {
        Ok(()) => true,
        Err(why) => {
            eprintln!("\n*** SKIPPED: {why}");
            if std::env::var("UPSHOT_VM_SKIP_OK").as_deref() == Ok("1") {
                eprintln!("*** (passing anyway: UPSHOT_VM_SKIP_OK=1)\n");
                false
            } else {
                panic!("SKIPPED: {why} (set UPSHOT_VM_SKIP_OK=1 to let VM tests pass without QEMU)");
            }
        }
    }
}

fn install_qemu() -> Result<(), String> {
    let present = || {
        Command::new("qemu-system-x86_64")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if present() {
        return Ok(());
    }
    eprintln!("qemu-system-x86_64 is missing: apt-get install qemu-system-x86");
    let apt = |args: &[&str]| {
        Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .map_err(|e| format!("cannot run apt-get: {e}"))
            .and_then(|s| {
                if s.success() {
                    Ok(())
                } else {
                    Err(format!("apt-get {} failed: {s}", args.join(" ")))
                }
            })
    };
    apt(&["update", "-qq"])?;
    apt(&["install", "-y", "-qq", "qemu-system-x86"])?;
    if present() {
        Ok(())
    } else {
        Err("qemu-system-x86_64 still missing after apt-get install".into())
    }
}

//! The harness end to end on the placeholder job (a busybox script as
//! PID 1): a passing run, and each kind of failure with its exit status,
//! in bounded time.

mod common;

use std::time::Duration;

use common::{have_qemu, run_job, run_text, shipped};

/// A variant of the placeholder job under another name (each run has its
/// own output directory).
fn placeholder(name: &str) -> String {
    let text = shipped("placeholder");
    assert!(text.contains("name = \"placeholder\""));
    text.replace("name = \"placeholder\"", &format!("name = \"{name}\""))
}

#[test]
fn the_placeholder_job_boots_runs_its_tests_and_powers_off() {
    if !have_qemu() {
        return;
    }
    let run = run_job("placeholder", "placeholder");
    assert_eq!(run.code, 0, "{}", run.stderr);
    for level in [
        "1.1 deploy/build",
        "1.3 deploy/modules",
        "1.4 deploy/initramfs",
        "2.2 boot/accel",
        "3.3 test/",
        "4.2 finalize/poweroff",
    ] {
        assert!(run.stderr.contains(level), "no `{level}` line:\n{}", run.stderr);
    }
    let console = run.console();
    assert!(console.contains("placeholder-init: up on upshot-vm"), "{console}");
    assert!(console.contains("reboot: Power down"), "{console}");
    let collected = std::fs::read_to_string(run.run_dir.join("guest/var/log/placeholder.log")).unwrap();
    assert!(collected.starts_with("booted "), "{collected}");
}

#[test]
fn a_failing_check_is_a_test_error_naming_its_action() {
    if !have_qemu() {
        return;
    }
    let text = placeholder("fails-a-check").replace(
        "run = \"cat /proc/1/comm\"",
        "run = \"echo the wrong thing\"\ntimeout = 20",
    );
    let run = run_text(&text);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains(
            "FAILED: test error: action 3.1 test/proc is mounted: `(?m)^(init|sh)$` is not in the output of \
             `echo the wrong thing`; its output:\nthe wrong thing\n"
        ),
        "{}",
        run.stderr
    );
}

#[test]
fn a_prompt_that_never_comes_fails_at_the_boot_timeout_not_later() {
    if !have_qemu() {
        return;
    }
    let text = placeholder("never-prompts")
        .replace(
            "expect = [\"placeholder-init: up on upshot-vm\"",
            "expect = [\"no such line\"",
        )
        .replace("timeout = 60 ", "timeout = 20 ")
        .replace("retries = 1\n", "retries = 0\n");
    let run = run_text(&text);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains(
            "FAILED: test error: action 2.3 boot/qemu: waiting for `no such line`: nothing matched in 20 s"
        ),
        "{}",
        run.stderr
    );
    // The console's last lines come with it.
    assert!(run.stderr.contains("the console ended with:\n"), "{}", run.stderr);
    assert!(run.console().contains("Linux version"), "{}", run.console());
    // One boot attempt of 20 s (and a cached deploy): well under this.
    assert!(run.elapsed < Duration::from_secs(90), "{:?}", run.elapsed);
}

#[test]
fn every_shipped_job_file_is_valid() {
    let dir = common::workspace().join("crates/qemu-harness/jobs");
    let mut jobs: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path().display().to_string())
        .filter(|p| p.ends_with(".toml"))
        .collect();
    jobs.sort();
    assert!(jobs.iter().any(|j| j.ends_with("/vm.toml")), "{jobs:?}");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_qemu-harness"))
        .arg("check")
        .args(&jobs)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout.matches(": ok (").count(), jobs.len(), "{stdout}");
}

#[test]
fn a_bad_job_file_is_a_job_error_with_its_place() {
    let text = placeholder("bad-job").replace("smp = 1\n", "smp = 1\ncores = 2\n");
    let run = run_text(&text);
    assert_eq!(run.code, 65, "{}", run.stderr);
    let line = text.lines().position(|l| l == "cores = 2").unwrap() + 1;
    assert!(
        run.stderr
            .contains(&format!("bad-job.toml:{line}:1: unknown field `cores`")),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("FAILED: job error"), "{}", run.stderr);
}

#[test]
fn a_missing_qemu_is_an_infrastructure_error() {
    let text =
        placeholder("no-qemu").replace("qemu = \"qemu-system-x86_64\"", "qemu = \"/nonexistent/qemu\"");
    let run = run_text(&text);
    assert_eq!(run.code, 69, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("FAILED: infrastructure error: action 2 boot: /nonexistent/qemu is not installed"),
        "{}",
        run.stderr
    );
}

#[test]
fn kvm_required_but_unusable_is_an_infrastructure_error_within_seconds() {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let kvm_device = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok();
    if kvm_device && qemu_harness::accel::cpu_has_virt(&cpuinfo) {
        // KVM may work here: a required-KVM job is no failure to test.
        eprintln!("NOTE: this machine may have a usable KVM; nothing to check");
        return;
    }
    if !have_qemu() {
        return;
    }
    let text = placeholder("kvm-required")
        .replace("accel = \"auto\"", "accel = \"kvm\"")
        .replace("kvm_probe_timeout = 5", "kvm_probe_timeout = 3");
    let run = run_text(&text);
    assert_eq!(run.code, 69, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("infrastructure error: action 2.2 boot/accel: KVM is unusable"),
        "{}",
        run.stderr
    );
}

//! Failure injection inside the VM: init as process 1 of a real (emulated)
//! machine survives panics of its own.
//!
//! `--inject-panic-on-event NAME` (a hidden test aid of the system init)
//! makes init panic whenever NAME is emitted, at the start of handling it.
//! The shipped `vm-faults` job gives it on the kernel command line with
//! `control-alt-delete` and makes init panic twice: through `initctl emit`
//! (the D-Bus call fails, init goes on) and through Ctrl-Alt-Del's SIGINT
//! to process 1 (the main loop recovers). Its tests then check initctl,
//! jobs, events and the reaping of orphans; this test checks what the
//! console shows, and that `poweroff` still ends in a clean shutdown that
//! makes QEMU exit 0. A process 1 that died would panic the kernel, which
//! with `panic=-1` also makes QEMU exit 0: the console is what tells.
//!
//! The second test injects the panic into the shutdown itself (the
//! `shutdown` event): the jobs are then not stopped one by one, but the
//! shutdown goes on to its end all the same.

mod common;

use common::{have_qemu, run_job, run_text, shipped};

/// `lines` appear in `console` in this order.
fn in_order(console: &str, lines: &[&str]) {
    let mut at = 0;
    for line in lines {
        let found = console[at..]
            .find(line)
            .unwrap_or_else(|| panic!("no `{line}` after offset {at} of the console:\n{console}"));
        at += found + line.len();
    }
}

/// What a process 1 that died, or a kernel that gave up, prints.
const KERNEL_PANIC: [&str; 3] = ["Kernel panic", "Attempted to kill init", "segfault"];

#[test]
fn init_survives_injected_panics_and_still_powers_off_cleanly() {
    if !have_qemu() {
        return;
    }
    let run = run_job("vm-faults", "vm-faults");
    // Every test of the job ran and passed, in order.
    run.assert_passed_every_test(&shipped("vm-faults"), 9);
    let console = run.console();
    in_order(
        &console,
        &[
            // initctl emit: the call fails.
            "init: internal error: ",
            "injected panic on event control-alt-delete",
            "Internal error in init while handling this call",
            // SIGINT: the main loop recovers.
            "init: internal error: ",
            "injected panic on event control-alt-delete",
            "init: the main loop recovered from an internal error; going on",
            // …and later powers off.
            "init: system shutdown (poweroff): stopping every job",
            "reboot: Power down",
        ],
    );
    for bad in KERNEL_PANIC {
        assert!(!console.contains(bad), "`{bad}` on the console:\n{console}");
    }
}

#[test]
fn a_panic_in_the_shutdown_does_not_stop_it() {
    if !have_qemu() {
        return;
    }
    let text = shipped("vm-faults")
        .replace("name = \"vm-faults\"", "name = \"vm-faults-shutdown\"")
        .replace(
            "--inject-panic-on-event control-alt-delete\"",
            "--inject-panic-on-event=shutdown\"",
        );
    // The `=` form: the kernel hands it to init as an environment
    // variable, which init takes back as an option.
    assert!(text.contains("--inject-panic-on-event=shutdown\""));
    // Only the first test (the shell answers), then init's log priority
    // to info (what it signals at the end is logged at info); the
    // power-off is the test.
    let first = text.find("[[test]]").unwrap();
    let second = first + 1 + text[first + 1..].find("[[test]]").unwrap();
    let text = format!(
        "{}[[test]]\nname = \"log priority info\"\nrun = \"initctl log-priority info\"\n\n\
         [finalize]\ncollect = []\npoweroff = \"poweroff\"\n\
         expect = ['init: system shutdown \\(poweroff\\)', 'injected panic on event shutdown', \
         'init: sending SIGTERM to the processes left', 'reboot: Power down']\n\
         timeout = 60\n\
         exit_status = 0\n",
        &text[..second]
    );
    let run = run_text(&text);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let console = run.console();
    in_order(
        &console,
        &[
            "init: system shutdown (poweroff): stopping every job",
            "init: internal error: ",
            "injected panic on event shutdown",
            // The jobs were never asked to stop: they are signalled with
            // every other process once their time is up.
            "failed to stop",
            "init: sending SIGTERM to the processes left",
            "reboot: Power down",
        ],
    );
    for bad in KERNEL_PANIC {
        assert!(!console.contains(bad), "`{bad}` on the console:\n{console}");
    }
}

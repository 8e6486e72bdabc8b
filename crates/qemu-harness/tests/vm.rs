//! upshot's init as process 1 of a VM (the shipped `vm` job with
//! `conf/vm`): boot until every configured job runs, initctl and its links
//! (list, start, stop, status, emit), `expect fork` and `expect daemon`
//! pids, the respawned console shell, job logs, and a `poweroff` that makes
//! QEMU exit 0 after init's shutdown line. The checks themselves are the
//! job file's tests; this test runs it and looks at what it left.

mod common;

use common::{have_qemu, run_job};

#[test]
fn the_vm_job_boots_init_passes_its_checks_and_powers_off_cleanly() {
    if !have_qemu() {
        return;
    }
    let run = run_job("vm", "vm");
    // Every test of the job ran and passed, in order.
    run.assert_passed_every_test(&common::shipped("vm"), 10);
    let console = run.console();
    let shutdown = console
        .find("init: system shutdown (poweroff): stopping every job")
        .expect(&console);
    let power_down = console.find("reboot: Power down").expect(&console);
    assert!(shutdown < power_down);
    // Nothing was killed the hard way: the shell ends on its HUP.
    assert!(!console.contains("sending SIGKILL"), "{console}");
    let log = std::fs::read_to_string(run.run_dir.join("guest/var/log/upstart/hostname.log")).unwrap();
    assert_eq!(log, "host name set to upshot-vm\n");
}

//! Boot benchmark under TCG: upshot's init with `conf/vm` against
//! `baseline-init`, a minimal static /init that starts the same processes
//! one after the other and powers off on busybox's signal.
//!
//! Both boot the same kernel and the same initramfs (the `vm` job's, with
//! `baseline-init` added); only `rdinit=` differs, and the command typed to
//! power off (`poweroff` is upshot's, `busybox poweroff` signals the
//! baseline). Rounds alternate between the two. The two figures,
//! for each init:
//!
//! * **ready**: QEMU start to the console line `upshot-vm: all jobs
//!   running` (the `ready` job; the baseline prints it after starting the
//!   shell), with how much of it the kernel took (its own timestamp of
//!   `Run /sbin/… as init process`);
//! * **exit**: QEMU start to QEMU's exit after the power-off command,
//!   counted as ready plus the time from typing the command to the exit
//!   (what the harness waits in between, for a prompt, is left out).
//!
//! Both run with the `vm` job's vCPUs (one: whatever upshot does beyond
//! the baseline, its D-Bus thread, the first `initctl` and its server
//! side, job bookkeeping, log ptys, is added time there), and again with
//! one vCPU should the job have more. Target: upshot within 1.1× of the
//! baseline. `UPSHOT_BENCH_ROUNDS` sets the rounds per init and vCPU count
//! (default 5; the first round of each builds and is slower: use 15 for
//! figures).

use std::path::Path;
use std::time::Duration;

use qemu_harness::job::{self, Binary, Job};
use qemu_harness::level::Log;
use qemu_harness::run::{self, Options, Report};
use qemu_harness::static_build;
use regex::Regex;

struct Sample {
    ready: f64,
    off: f64,
    kernel: f64,
}

fn main() {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let workspace = workspace.canonicalize().unwrap_or(workspace);
    let opts = Options {
        cache_root: static_build::target_dir(&workspace).join("qemu-harness"),
        workspace: workspace.clone(),
    };
    let vm = job::load(&workspace.join("crates/qemu-harness/jobs/vm.toml"), &workspace)
        .unwrap_or_else(|f| panic!("{f}"));
    let rounds: usize = std::env::var("UPSHOT_BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(5);
    let own = vm.boot.smp;
    let mut counts = vec![own];
    if own != 1 {
        counts.push(1);
    }
    println!(
        "boot benchmark under TCG: {rounds} rounds per init and vCPU count, alternating (both share one initramfs)"
    );
    let mut verdicts = Vec::new();
    for smp in counts {
        let mut job = vm.clone();
        job.boot.smp = smp;
        let (upshot, baseline) = variants(job);
        println!(
            "{smp} vCPU(s){}:",
            if smp == own { " (the vm job's)" } else { "" }
        );
        let [u, b] = series(&upshot, &baseline, &opts, rounds);
        let (ur, br) = (median(&u, |s| s.ready), median(&b, |s| s.ready));
        let (ue, be) = (median(&u, |s| s.ready + s.off), median(&b, |s| s.ready + s.off));
        let (uo, bo) = (median(&u, |s| s.off), median(&b, |s| s.off));
        let (uk, bk) = (median(&u, |s| s.kernel), median(&b, |s| s.kernel));
        println!("  median over {rounds} rounds:");
        println!(
            "  QEMU start to all jobs running: upshot {ur:.2} s, baseline {br:.2} s, ratio {:.2}x (target <= 1.10x)",
            ur / br
        );
        println!(
            "    the kernel's share (until it runs init): upshot {uk:.2} s ({:.0} %), baseline {bk:.2} s ({:.0} %)",
            100.0 * uk / ur,
            100.0 * bk / br
        );
        println!(
            "    after the kernel: upshot {:.2} s, baseline {:.2} s",
            (ur - uk).max(0.0),
            (br - bk).max(0.0)
        );
        println!(
            "  QEMU start to QEMU exit after poweroff: upshot {ue:.2} s, baseline {be:.2} s, ratio {:.2}x (target <= 1.10x)",
            ue / be
        );
        println!(
            "    of which power-off to exit: upshot {uo:.2} s, baseline {bo:.2} s ({:+.0} ms)",
            1000.0 * (uo - bo)
        );
        verdicts.push((smp, ur / br, ue / be));
    }
    println!("summary (target <= 1.10x):");
    for (smp, ready, exit) in verdicts {
        let v = |r: f64| if r <= 1.10 { "met" } else { "missed" };
        println!(
            "  {smp} vCPU(s): to all jobs running {ready:.2}x ({}), to QEMU exit {exit:.2}x ({})",
            v(ready),
            v(exit)
        );
    }
}

fn median(v: &[Sample], f: fn(&Sample) -> f64) -> f64 {
    let mut x: Vec<f64> = v.iter().map(f).collect();
    x.sort_by(f64::total_cmp);
    x[x.len() / 2]
}

/// `rounds` boots of each job, alternating; the samples of each.
fn series(upshot: &Job, baseline: &Job, opts: &Options, rounds: usize) -> [Vec<Sample>; 2] {
    let mut samples: [Vec<Sample>; 2] = [Vec::new(), Vec::new()];
    for round in 0..rounds {
        for (i, job) in [upshot, baseline].into_iter().enumerate() {
            let log = Log::new(true);
            let report = run::run(job, opts, &log).unwrap_or_else(|f| {
                panic!(
                    "{}: {f}\n(see {})",
                    job.name,
                    opts.cache_root.join("runs").join(&job.name).display()
                )
            });
            let s = sample(&report);
            println!(
                "  round {} {:8}: ready {:.2} s (kernel {:.2} s), off {:.2} s ({})",
                round + 1,
                if i == 0 { "upshot" } else { "baseline" },
                s.ready,
                s.kernel,
                s.off,
                report.accel
            );
            samples[i].push(s);
        }
    }
    samples
}

/// The two jobs: `vm` without its tests (all but the first, which waits
/// for a prompt) and without collecting files, with `baseline-init` in
/// the image; and the same image booting `baseline-init`.
fn variants(mut vm: Job) -> (Job, Job) {
    vm.deploy.binaries.push(Binary {
        package: "baseline-init".into(),
        bin: "baseline-init".into(),
        path: "/sbin/baseline-init".into(),
        features: Vec::new(),
    });
    vm.tests.truncate(1);
    vm.finalize.collect.clear();
    let mut upshot = vm.clone();
    upshot.name = "bench-upshot".into();
    let mut baseline = vm;
    baseline.name = "bench-baseline".into();
    baseline.boot.append = baseline
        .boot
        .append
        .replace("rdinit=/sbin/init", "rdinit=/sbin/baseline-init");
    assert!(
        baseline.boot.append.contains("rdinit=/sbin/baseline-init"),
        "{}",
        baseline.boot.append
    );
    baseline.finalize.poweroff = "busybox poweroff".into();
    baseline.finalize.expect = vec![Regex::new("reboot: Power down").expect("literal")];
    (upshot, baseline)
}

fn sample(r: &Report) -> Sample {
    let ready = r.boot_marks.first().map_or(Duration::ZERO, |(_, t)| *t);
    let off = r
        .exited
        .unwrap_or_default()
        .saturating_sub(r.poweroff_sent.unwrap_or_default());
    Sample {
        ready: ready.as_secs_f64(),
        off: off.as_secs_f64(),
        kernel: r.kernel_init_at.unwrap_or(0.0),
    }
}

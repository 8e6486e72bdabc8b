//! Boot benchmark under TCG: upshot's init with `conf/vm` against
//! `baseline-init`, a minimal static /init that starts the same processes
//! one after the other and powers off on busybox's signal.
//!
//! Both boot the same kernel and the same initramfs (the `vm` job's, with
//! `baseline-init` added); only `rdinit=` differs, and the command typed to
//! power off (`poweroff` is upshot's, `busybox poweroff` signals the
//! baseline). Rounds alternate between the two. For each it reports:
//!
//! * **ready**: QEMU start to the console line `upshot-vm: all jobs
//!   running` (the `ready` job; the baseline prints it after starting the
//!   shell), and how much of that the kernel took (its own timestamp of
//!   `Run /sbin/… as init process`);
//! * **off**: typing the power-off command to QEMU's exit.
//!
//! Target: upshot within 1.1× of the baseline. `UPSHOT_BENCH_ROUNDS` sets
//! the rounds per init (default 5).

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
    let (upshot, baseline) = variants(vm);
    let rounds: usize = std::env::var("UPSHOT_BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(5);

    println!(
        "boot benchmark under TCG: {rounds} rounds each, alternating (first builds; both share one initramfs)"
    );
    let mut samples: [Vec<Sample>; 2] = [Vec::new(), Vec::new()];
    for round in 0..rounds {
        for (i, job) in [&upshot, &baseline].into_iter().enumerate() {
            let log = Log::new(true);
            let report = run::run(job, &opts, &log).unwrap_or_else(|f| {
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
    let med = |v: &[Sample], f: fn(&Sample) -> f64| {
        let mut x: Vec<f64> = v.iter().map(f).collect();
        x.sort_by(f64::total_cmp);
        x[x.len() / 2]
    };
    let [u, b] = &samples;
    let (ur, br) = (med(u, |s| s.ready), med(b, |s| s.ready));
    let (uo, bo) = (med(u, |s| s.off), med(b, |s| s.off));
    let (uk, bk) = (med(u, |s| s.kernel), med(b, |s| s.kernel));
    println!("median over {rounds} rounds:");
    println!(
        "  to all jobs running: upshot {ur:.2} s, baseline {br:.2} s, ratio {:.2}x (target <= 1.10x)",
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
        "  power-off to QEMU exit: upshot {uo:.2} s, baseline {bo:.2} s, ratio {:.2}x (target <= 1.10x)",
        uo / bo
    );
    println!(
        "  whole run (ready + off): upshot {:.2} s, baseline {:.2} s, ratio {:.2}x",
        ur + uo,
        br + bo,
        (ur + uo) / (br + bo)
    );
}

/// The two jobs: `vm` without its tests (all but the first, which waits
/// for a prompt) and without collecting files, with `baseline-init` in
/// the image; and the same image booting `baseline-init`.
fn variants(mut vm: Job) -> (Job, Job) {
    vm.deploy.binaries.push(Binary {
        package: "baseline-init".into(),
        bin: "baseline-init".into(),
        path: "/sbin/baseline-init".into(),
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

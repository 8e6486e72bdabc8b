//! The pipeline: deploy (1), boot (2), test (3), finalize (4), each action
//! with its own deadline and retries, each failure classified and named
//! after its action.
//!
//! A run writes to `target/qemu-harness/runs/JOB/`: `harness.log` (the
//! level-numbered lines), `build.log` (cargo's output), `console.log`
//! (everything the VM printed, every boot attempt), `guest/` (the files
//! finalize copied out of the VM) and the job's disk images, as the VM
//! left them. When a test fails, the files are still copied out if the
//! console answers, so the job logs are there to read.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use regex::Regex;

use crate::accel::{self, Decision, Facts, ProbeBoot};
use crate::cache::{Cache, Outcome};
use crate::console::{self, WaitError};
use crate::deploy::{self, Lab};
use crate::error::{Failure, Kind, Result};
use crate::job::{Action, Boot, Finalize, Job, Limits, Test};
use crate::level::{Level, Log};
use crate::qemu::{self, Launch, Vm};
use crate::{disk, exec, kernel};

/// Where a run finds the workspace and keeps its artifacts.
#[derive(Debug, Clone)]
pub struct Options {
    pub workspace: PathBuf,
    /// `target/qemu-harness` (the cache, and `runs/`).
    pub cache_root: PathBuf,
}

/// Console lines shown with a failure.
const TAIL: usize = 25;

/// What a successful run measured, for reports and the benchmark: times
/// are since QEMU was started (the last boot attempt).
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub job: String,
    pub run_dir: PathBuf,
    pub accel: String,
    /// When each boot pattern matched (its line was complete).
    pub boot_marks: Vec<(String, Duration)>,
    /// When QEMU exited after the power-off command.
    pub exited: Option<Duration>,
    /// When the power-off command was typed.
    pub poweroff_sent: Option<Duration>,
    /// The kernel's own timestamp (seconds) of `Run … as init process`.
    pub kernel_init_at: Option<f64>,
}

/// Runs a whole job.
pub fn run(job: &Job, opts: &Options, log: &Log) -> Result<Report> {
    let run_dir = opts.cache_root.join("runs").join(&job.name);
    let _ = fs::remove_dir_all(&run_dir);
    fs::create_dir_all(&run_dir).map_err(|e| Failure::infra(format!("{}: {e}", run_dir.display())))?;
    let _ = log.to_file(&run_dir.join("harness.log"));
    log.note(&format!(
        "job {} ({}): {}",
        job.name,
        job.file.display(),
        job.description
    ));
    let cache = Cache::new(&opts.cache_root);
    let lab = Lab {
        workspace: &opts.workspace,
        cache: &cache,
        log,
        run_dir: &run_dir,
    };
    let mut report = Report {
        job: job.name.clone(),
        run_dir: run_dir.clone(),
        ..Report::default()
    };

    let l1 = Level::root(1);
    log.line(&l1, "deploy", "initramfs");
    let initramfs = with_retries(log, &l1, "deploy", job.deploy.limits, |deadline| {
        deploy::deploy(&lab, &job.deploy, &job.boot.kernel_package, &l1, deadline)
    })?;

    let l2 = Level::root(2);
    let (vmlinux, kvm) = prepare_boot(&lab, &job.boot, &l2)?;
    report.accel = if kvm { "kvm" } else { "tcg" }.into();
    let mut launch = Launch::from_boot(&job.boot, kvm, &vmlinux, Some(&initramfs));
    launch.drives = drives(&job.boot, &run_dir);
    let console_log = run_dir.join("console.log");
    qemu::new_console_log(&console_log)?;
    let l23 = l2.child(3);
    let mut vm = with_retries(log, &l23, "boot/qemu", job.boot.limits, |deadline| {
        make_disks(log, &l23, &job.boot, &run_dir, deadline)?;
        boot(log, &l23, &launch, &job.boot, &console_log, deadline, &mut report)
    })?;
    let mut session = Session {
        vm: &mut vm,
        framed: 0,
        prompt: &job.boot.prompt,
    };

    let l3 = Level::root(3);
    if !job.tests.is_empty() {
        log.line(&l3, "test", &format!("{} tests", job.tests.len()));
    }
    for (i, test) in job.tests.iter().enumerate() {
        let level = l3.child(i as u32 + 1);
        let name = format!("test/{}", test.name);
        let r = with_retries(log, &level, &name, test.limits, |deadline| {
            run_test(&mut session, test, deadline)
        });
        if let Err(f) = r {
            if !session.vm.console.is_closed() {
                let l = Level::root(4).child(1);
                log.line(
                    &l,
                    "finalize/collect",
                    "copying the guest's files out after the failure",
                );
                let deadline = Instant::now() + job.finalize.limits.timeout;
                if let Err(e) = collect(&mut session, &job.finalize, &run_dir, deadline) {
                    log.line(&l, "finalize/collect", &format!("could not: {e}"));
                }
            }
            session.vm.kill();
            return Err(f);
        }
        log.line(&level, &name, "passed");
    }

    let l4 = Level::root(4);
    finalize(log, &l4, &mut session, &job.finalize, &run_dir, &mut report)?;
    report.kernel_init_at = kernel_time_of(&vm.console.text_from(0), "as init process");
    log.note(&format!("job {} passed; logs in {}", job.name, run_dir.display()));
    Ok(report)
}

/// Deploys and boots `job` with the VM's console on the caller's terminal;
/// returns QEMU's exit status.
pub fn interactive(job: &Job, opts: &Options, log: &Log) -> Result<std::process::ExitStatus> {
    let run_dir = opts.cache_root.join("runs").join(&job.name);
    fs::create_dir_all(&run_dir).map_err(|e| Failure::infra(format!("{}: {e}", run_dir.display())))?;
    let cache = Cache::new(&opts.cache_root);
    let lab = Lab {
        workspace: &opts.workspace,
        cache: &cache,
        log,
        run_dir: &run_dir,
    };
    let l1 = Level::root(1);
    let initramfs = with_retries(log, &l1, "deploy", job.deploy.limits, |deadline| {
        deploy::deploy(&lab, &job.deploy, &job.boot.kernel_package, &l1, deadline)
    })?;
    let l2 = Level::root(2);
    let (vmlinux, kvm) = prepare_boot(&lab, &job.boot, &l2)?;
    let mut launch = Launch::from_boot(&job.boot, kvm, &vmlinux, Some(&initramfs));
    launch.drives = drives(&job.boot, &run_dir);
    let deadline = Instant::now() + job.boot.limits.timeout;
    make_disks(log, &l2.child(3), &job.boot, &run_dir, deadline)
        .map_err(|f| f.in_action(&l2.child(3), "boot/disk"))?;
    log.line(
        &l2.child(3),
        "boot/qemu",
        "interactive: the serial console is this terminal; Ctrl-A X quits",
    );
    qemu::interactive(&launch).map_err(|f| f.in_action(&l2.child(3), "boot/qemu"))
}

/// The `-drive` values of the job's disks, which live in `run_dir`.
fn drives(boot: &Boot, run_dir: &Path) -> Vec<String> {
    boot.disks
        .iter()
        .map(|d| disk::drive_arg(&run_dir.join(&d.file), &d.interface))
        .collect()
}

/// Makes the job's disk images afresh (before every boot attempt: a retry
/// starts from the same blank file systems).
fn make_disks(log: &Log, level: &Level, boot: &Boot, run_dir: &Path, deadline: Instant) -> Result<()> {
    for d in &boot.disks {
        let path = disk::make(d, run_dir, deadline).map_err(|f| f.in_action(level, "boot/disk"))?;
        let how = if d.mkfs.is_empty() {
            "blank".to_string()
        } else {
            d.mkfs.join(" ")
        };
        log.line(
            level,
            "boot/disk",
            &format!(
                "{} ({} MiB, {how}) as if={}",
                path.display(),
                d.size >> 20,
                d.interface
            ),
        );
    }
    Ok(())
}

/// Tries `f` once, and again up to `limits.retries` times when it fails
/// with anything but a job error; each try has the full timeout.
fn with_retries<T>(
    log: &Log,
    level: &Level,
    name: &str,
    limits: Limits,
    mut f: impl FnMut(Instant) -> Result<T>,
) -> Result<T> {
    let mut attempt = 0;
    loop {
        let deadline = Instant::now() + limits.timeout;
        match f(deadline) {
            Ok(v) => return Ok(v),
            Err(e) if e.kind != Kind::Job && attempt < limits.retries => {
                attempt += 1;
                log.line(
                    level,
                    name,
                    &format!("failed ({e}); retry {attempt} of {}", limits.retries),
                );
            }
            Err(e) => return Err(e.in_action(level, name)),
        }
    }
}

/// 2.1 the kernel, 2.2 the accelerator.
fn prepare_boot(lab: &Lab, boot: &Boot, level: &Level) -> Result<(PathBuf, bool)> {
    let log = lab.log;
    let l1 = level.child(1);
    if !exec::on_path(&boot.qemu) {
        return Err(Failure::infra(format!(
            "{} is not installed (apt-get install qemu-system-x86; .ci/run does it)",
            boot.qemu
        ))
        .in_action(level, "boot"));
    }
    let (vmlinux, outcome, label) = with_retries(log, &l1, "boot/kernel", boot.limits, |deadline| {
        kernel::vmlinux(lab.cache, &boot.kernel_package, deadline)
    })?;
    let size = fs::metadata(&vmlinux).map(|m| m.len()).unwrap_or(0);
    let how = if outcome == Outcome::Hit {
        "cached"
    } else {
        "downloaded and unpacked"
    };
    log.line(
        &l1,
        "boot/kernel",
        &format!("{label}: vmlinux {:.1} MB ({how})", size as f64 / 1e6),
    );

    let l2 = level.child(2);
    let kvm = choose_accel(log, &l2, boot, &vmlinux).map_err(|f| f.in_action(&l2, "boot/accel"))?;
    Ok((vmlinux, kvm))
}

/// Decides KVM or TCG, probing as far as [`accel::decide`] needs.
fn choose_accel(log: &Log, level: &Level, boot: &Boot, vmlinux: &Path) -> Result<bool> {
    let t = Instant::now();
    let mut facts = Facts {
        dev_kvm: accel::probe_dev_kvm(Path::new("/dev/kvm")),
        cpu_virt: accel::cpu_has_virt(&fs::read_to_string("/proc/cpuinfo").unwrap_or_default()),
        probe: None,
    };
    loop {
        match accel::decide(boot.accel, &facts).map_err(Failure::infra)? {
            Decision::Kvm => {
                log.line(
                    level,
                    "boot/accel",
                    &format!("kvm (probe boot in {:.1} s)", t.elapsed().as_secs_f64()),
                );
                return Ok(true);
            }
            Decision::Tcg(why) => {
                log.line(level, "boot/accel", &format!("tcg: {why}"));
                return Ok(false);
            }
            Decision::ProbeNeeded => {
                log.line(level, "boot/accel", "probing KVM with a short boot");
                facts.probe = Some(probe_kvm(boot, vmlinux));
            }
        }
    }
}

/// Boots the kernel alone with KVM and waits for its banner.
fn probe_kvm(boot: &Boot, vmlinux: &Path) -> ProbeBoot {
    let mut launch = Launch::from_boot(boot, true, vmlinux, None);
    launch.append = "console=ttyS0 earlyprintk=ttyS0 panic=-1".into();
    let log = std::env::temp_dir().join(format!("qemu-harness-kvm-probe-{}.log", std::process::id()));
    let _ = qemu::new_console_log(&log);
    let result = match Vm::start(&launch, &log) {
        Err(e) => ProbeBoot::QemuFailed(e.message),
        Ok(mut vm) => {
            let deadline = Instant::now() + boot.kvm_probe_timeout;
            let banner = Regex::new("Linux version").expect("literal pattern");
            let r = match vm.console.wait_for(0, &banner, deadline) {
                Ok(_) => ProbeBoot::Booted,
                Err(WaitError::Timeout) => ProbeBoot::Silent {
                    seconds: boot.kvm_probe_timeout.as_secs(),
                },
                Err(WaitError::Closed) => {
                    vm.wait_exit(Instant::now() + Duration::from_secs(1));
                    ProbeBoot::QemuFailed(vm.stderr().trim().to_string())
                }
            };
            vm.kill();
            r
        }
    };
    let _ = fs::remove_file(log);
    result
}

/// 2.3: starts QEMU and waits for the boot patterns in order.
fn boot(
    log: &Log,
    level: &Level,
    launch: &Launch,
    spec: &Boot,
    console_log: &Path,
    deadline: Instant,
    report: &mut Report,
) -> Result<Vm> {
    let mut vm = Vm::start(launch, console_log)?;
    log.line(
        level,
        "boot/qemu",
        &format!(
            "QEMU started (pid {}): {}",
            vm.pid(),
            launch.args(qemu::ConsoleMode::Pipes).join(" ")
        ),
    );
    report.boot_marks.clear();
    let mut cursor = 0;
    for pattern in &spec.expect {
        match vm.console.wait_for(cursor, pattern, deadline) {
            Ok(found) => {
                let at = vm
                    .console
                    .time_of(found.end)
                    .unwrap_or_else(|| vm.started.elapsed());
                log.line(
                    level,
                    "boot/qemu",
                    &format!("`{pattern}` after {:.2} s", at.as_secs_f64()),
                );
                report.boot_marks.push((pattern.to_string(), at));
                cursor = found.end;
            }
            Err(e) => {
                return Err(vm_failure(
                    &mut vm,
                    e,
                    &format!("waiting for `{pattern}`"),
                    spec.limits.timeout,
                ));
            }
        }
    }
    Ok(vm)
}

/// A failure while waiting on the console: a VM that never printed
/// anything and whose QEMU complained is the lab's fault; otherwise the
/// system under test did not do what was expected.
fn vm_failure(vm: &mut Vm, e: WaitError, what: &str, timeout: Duration) -> Failure {
    match e {
        WaitError::Timeout => {
            let tail = vm.console.tail(TAIL);
            vm.kill();
            Failure::test(format!(
                "{what}: nothing matched in {} s; the console ended with:\n{tail}",
                timeout.as_secs()
            ))
        }
        WaitError::Closed => {
            let status = vm.wait_exit(Instant::now() + Duration::from_secs(2));
            let stderr = vm.stderr();
            let tail = vm.console.tail(TAIL);
            let status = status.map_or("still running".to_string(), |s| s.to_string());
            if vm.console.is_empty() && !stderr.trim().is_empty() {
                Failure::infra(format!("QEMU failed ({status}): {}", stderr.trim()))
            } else {
                Failure::test(format!(
                    "{what}: QEMU exited ({status}); the console ended with:\n{tail}"
                ))
            }
        }
    }
}

/// The VM, the count of framed commands typed so far, and the shell's
/// prompt.
struct Session<'a> {
    vm: &'a mut Vm,
    framed: u32,
    prompt: &'a Regex,
}

impl Session<'_> {
    /// Types `command` framed by markers and returns its output and exit
    /// status, once the shell has shown its prompt again.
    fn run(&mut self, command: &str, deadline: Instant, timeout: Duration) -> Result<(String, i32)> {
        self.framed += 1;
        let n = self.framed;
        let cursor = self.vm.console.len();
        self.vm.send_line(&console::framed_command(command, n))?;
        let framed = self
            .vm
            .console
            .wait_until(deadline, |text| console::framed_result(text, cursor, n))
            .map_err(|e| vm_failure(self.vm, e, &format!("running `{command}`"), timeout))?;
        self.vm
            .console
            .wait_for(framed.end, self.prompt, deadline)
            .map_err(|e| vm_failure(self.vm, e, &format!("the prompt after `{command}`"), timeout))?;
        Ok((framed.output, framed.status))
    }
}

/// One test: a framed command and its checks, or typed text and the
/// console patterns that must follow.
fn run_test(session: &mut Session, test: &Test, deadline: Instant) -> Result<()> {
    match &test.action {
        Action::Run(command) => {
            let (output, status) = session.run(command, deadline, test.limits.timeout)?;
            let shown = || {
                format!(
                    "; its output:\n{}",
                    if output.is_empty() { "(none)\n" } else { &output }
                )
            };
            if status != test.status {
                return Err(Failure::test(format!(
                    "`{command}` exited with {status}, expected {}{}",
                    test.status,
                    shown()
                )));
            }
            if let Some(p) = test.expect.iter().find(|p| !p.is_match(&output)) {
                return Err(Failure::test(format!(
                    "`{p}` is not in the output of `{command}`{}",
                    shown()
                )));
            }
            if let Some(p) = test.reject.iter().find(|p| p.is_match(&output)) {
                return Err(Failure::test(format!(
                    "`{p}` is in the output of `{command}`{}",
                    shown()
                )));
            }
            Ok(())
        }
        Action::Send(text) => {
            let mut cursor = session.vm.console.len();
            let start = cursor;
            session.vm.send_line(text)?;
            for p in &test.expect {
                match session.vm.console.wait_for(cursor, p, deadline) {
                    Ok(found) => cursor = found.end,
                    Err(e) => {
                        return Err(vm_failure(
                            session.vm,
                            e,
                            &format!("after typing `{text}`, waiting for `{p}`"),
                            test.limits.timeout,
                        ));
                    }
                }
            }
            let seen = session.vm.console.text_from(start);
            let seen = &seen[..(cursor - start).min(seen.len())];
            if let Some(p) = test.reject.iter().find(|p| p.is_match(seen)) {
                return Err(Failure::test(format!(
                    "`{p}` appeared after typing `{text}`:\n{seen}"
                )));
            }
            Ok(())
        }
    }
}

/// 4.1 copies the files out, 4.2 powers off and checks how QEMU ended.
fn finalize(
    log: &Log,
    level: &Level,
    session: &mut Session,
    spec: &Finalize,
    run_dir: &Path,
    report: &mut Report,
) -> Result<()> {
    let l1 = level.child(1);
    let copied = with_retries(log, &l1, "finalize/collect", spec.limits, |deadline| {
        collect(session, spec, run_dir, deadline)
    })?;
    log.line(
        &l1,
        "finalize/collect",
        &format!("{copied} files into {}", run_dir.join("guest").display()),
    );

    let l2 = level.child(2);
    let name = "finalize/poweroff";
    let deadline = Instant::now() + spec.limits.timeout;
    let cursor = session.vm.console.len();
    session
        .vm
        .send_line(&spec.poweroff)
        .map_err(|f| f.in_action(&l2, name))?;
    report.poweroff_sent = Some(session.vm.started.elapsed());
    log.line(&l2, name, &format!("typed `{}`", spec.poweroff));
    let mut at = cursor;
    for p in &spec.expect {
        match session.vm.console.wait_for(at, p, deadline) {
            Ok(found) => at = found.end,
            Err(WaitError::Timeout) => {
                let tail = session.vm.console.tail(TAIL);
                session.vm.kill();
                return Err(Failure::test(format!(
                    "`{p}` did not appear within {} s of `{}`; the console ended with:\n{tail}",
                    spec.limits.timeout.as_secs(),
                    spec.poweroff
                ))
                .in_action(&l2, name));
            }
            Err(WaitError::Closed) => {
                let tail = session.vm.console.tail(TAIL);
                return Err(Failure::test(format!(
                    "QEMU exited before `{p}` appeared; the console ended with:\n{tail}"
                ))
                .in_action(&l2, name));
            }
        }
    }
    let Some(status) = session.vm.wait_exit(deadline) else {
        session.vm.kill();
        return Err(Failure::test(format!(
            "QEMU did not exit within {} s of `{}`",
            spec.limits.timeout.as_secs(),
            spec.poweroff
        ))
        .in_action(&l2, name));
    };
    let exited = session.vm.started.elapsed();
    report.exited = Some(exited);
    if status.code() != Some(spec.exit_status) {
        return Err(Failure::test(format!(
            "QEMU exited with {status}, expected {}",
            spec.exit_status
        ))
        .in_action(&l2, name));
    }
    log.line(
        &l2,
        name,
        &format!(
            "QEMU exited with {} at {:.2} s",
            spec.exit_status,
            exited.as_secs_f64()
        ),
    );
    Ok(())
}

/// Copies every file of the guest directories in `spec.collect` (not
/// their subdirectories) to `run_dir/guest/`; returns how many. A directory that does not exist in
/// the guest is noted in its place, not an error.
fn collect(session: &mut Session, spec: &Finalize, run_dir: &Path, deadline: Instant) -> Result<usize> {
    let mut copied = 0;
    for dir in &spec.collect {
        let local = run_dir.join("guest").join(dir.trim_start_matches('/'));
        fs::create_dir_all(&local).map_err(|e| Failure::infra(format!("{}: {e}", local.display())))?;
        let listing = format!("find '{dir}' -maxdepth 1 -type f");
        let (listing, status) = session.run(&listing, deadline, spec.limits.timeout)?;
        if status != 0 {
            let _ = fs::write(local.join("NOT-IN-GUEST"), listing);
            continue;
        }
        for path in listing.lines().filter(|l| !l.is_empty()) {
            let name = path.rsplit('/').next().unwrap_or(path);
            let (content, _) = session.run(&format!("cat '{path}'"), deadline, spec.limits.timeout)?;
            let file = local.join(name);
            fs::write(&file, content).map_err(|e| Failure::infra(format!("{}: {e}", file.display())))?;
            copied += 1;
        }
    }
    Ok(copied)
}

/// The kernel's timestamp (`[    1.968450] …`) of the first console line
/// containing `needle`.
pub fn kernel_time_of(text: &str, needle: &str) -> Option<f64> {
    let line = text.lines().find(|l| l.contains(needle))?;
    let inside = line.trim_start().strip_prefix('[')?.split(']').next()?;
    inside.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_timestamps_are_read_from_the_console() {
        let text = "[    0.000000] Linux version 6.1\n[    1.968450] Run /sbin/init as init process\n";
        assert_eq!(kernel_time_of(text, "as init process"), Some(1.968450));
        assert_eq!(kernel_time_of(text, "Power down"), None);
        assert_eq!(
            kernel_time_of("no stamp: as init process", "as init process"),
            None
        );
    }

    #[test]
    fn job_errors_are_not_retried_other_errors_are() {
        let log = Log::new(true);
        let limits = Limits {
            timeout: Duration::from_secs(1),
            retries: 2,
        };
        let mut tries = 0;
        let r: Result<()> = with_retries(&log, &Level::root(3), "t", limits, |_| {
            tries += 1;
            Err(Failure::test("no"))
        });
        assert_eq!(tries, 3);
        assert_eq!(r.unwrap_err().action, "3 t");
        let mut tries = 0;
        let r: Result<()> = with_retries(&log, &Level::root(1), "t", limits, |_| {
            tries += 1;
            Err(Failure::job("bad"))
        });
        assert_eq!((tries, r.unwrap_err().kind), (1, Kind::Job));
        let mut tries = 0;
        let r = with_retries(&log, &Level::root(1), "t", limits, |_| {
            tries += 1;
            if tries < 2 {
                Err(Failure::infra("flaky"))
            } else {
                Ok(tries)
            }
        });
        assert_eq!(r.unwrap(), 2);
    }
}

//! The QEMU process: its command line, its serial console on stdin and
//! stdout, and its end.
//!
//! The guest's ttyS0 is QEMU's stdio. In a harness run that is a pair of
//! pipes: a reader thread feeds everything QEMU prints to the [`Console`]
//! and to `console.log`, and typed lines go to QEMU's stdin. In an
//! interactive boot it is the terminal itself, with `-nographic`, so QEMU
//! puts the terminal in raw mode and Ctrl-A X quits as usual.
//!
//! QEMU is its own process group and gets `SIGKILL` when the harness dies
//! (`PR_SET_PDEATHSIG`), so no VM outlives its run.

use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::console::Console;
use crate::error::{Failure, Result};
use crate::job::Boot;

/// How the serial console is connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsoleMode {
    /// Pipes read and written by the harness.
    Pipes,
    /// The caller's terminal (`-nographic`: serial and monitor muxed,
    /// Ctrl-A X quits).
    Terminal,
}

/// Everything QEMU is started with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launch {
    pub qemu: String,
    pub kvm: bool,
    pub cpu: String,
    pub memory: String,
    pub smp: u32,
    pub kernel: PathBuf,
    pub initrd: Option<PathBuf>,
    pub append: String,
    /// `-drive` values (see [`crate::disk::drive_arg`]).
    pub drives: Vec<String>,
    pub args: Vec<String>,
}

impl Launch {
    /// The launch a job's boot section asks for.
    pub fn from_boot(boot: &Boot, kvm: bool, kernel: &Path, initrd: Option<&Path>) -> Launch {
        Launch {
            qemu: boot.qemu.clone(),
            kvm,
            cpu: if kvm {
                boot.cpu_kvm.clone()
            } else {
                boot.cpu_tcg.clone()
            },
            memory: boot.memory.clone(),
            smp: boot.smp,
            kernel: kernel.to_path_buf(),
            initrd: initrd.map(Path::to_path_buf),
            append: boot.append.clone(),
            drives: Vec::new(),
            args: boot.args.clone(),
        }
    }

    /// QEMU's arguments.
    pub fn args(&self, stdio: ConsoleMode) -> Vec<String> {
        let mut a: Vec<String> = vec![
            "-accel".into(),
            if self.kvm { "kvm" } else { "tcg" }.into(),
            "-cpu".into(),
            self.cpu.clone(),
            "-m".into(),
            self.memory.clone(),
            "-smp".into(),
            self.smp.to_string(),
            "-kernel".into(),
            self.kernel.display().to_string(),
        ];
        if let Some(initrd) = &self.initrd {
            a.extend(["-initrd".into(), initrd.display().to_string()]);
        }
        a.extend(["-append".into(), self.append.clone(), "-no-reboot".into()]);
        match stdio {
            ConsoleMode::Pipes => {
                a.extend(["-display", "none", "-serial", "stdio", "-monitor", "none"].map(String::from))
            }
            ConsoleMode::Terminal => a.push("-nographic".into()),
        }
        for d in &self.drives {
            a.extend(["-drive".into(), d.clone()]);
        }
        a.extend(self.args.iter().cloned());
        a
    }

    /// The command, in its own process group, killed with the harness.
    pub fn command(&self, stdio: ConsoleMode) -> Command {
        let mut cmd = Command::new(&self.qemu);
        cmd.args(self.args(stdio)).process_group(0);
        // SAFETY: prctl is async-signal-safe and touches no memory of the
        // parent; it runs in the child between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        cmd
    }
}

/// A running VM with its console on pipes.
pub struct Vm {
    child: Child,
    stdin: Option<ChildStdin>,
    pub console: Console,
    /// When QEMU was started.
    pub started: Instant,
    stderr: Arc<Mutex<String>>,
    readers: Vec<JoinHandle<()>>,
    exit: Option<ExitStatus>,
}

impl Vm {
    /// Starts QEMU; its console is also appended to `console_log`.
    pub fn start(launch: &Launch, console_log: &Path) -> Result<Vm> {
        Vm::start_command(launch.command(ConsoleMode::Pipes), console_log)
    }

    /// Starts `cmd` as the VM (tests use a stand-in for QEMU).
    pub fn start_command(mut cmd: Command, console_log: &Path) -> Result<Vm> {
        let program = cmd.get_program().to_string_lossy().into_owned();
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(console_log)
            .map_err(|e| Failure::infra(format!("{}: {e}", console_log.display())))?;
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        let started = Instant::now();
        let mut child = cmd
            .spawn()
            .map_err(|e| Failure::infra(format!("cannot run {program}: {e}")))?;
        let console = Console::new();
        let mut out = child.stdout.take().expect("piped stdout");
        let mut err = child.stderr.take().expect("piped stderr");
        let stderr = Arc::new(Mutex::new(String::new()));
        let c = console.clone();
        let out_reader = thread::spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                match out.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        c.push(&buf[..n], started.elapsed());
                        let clean: Vec<u8> = buf[..n].iter().copied().filter(|&b| b != b'\r').collect();
                        let _ = log.write_all(&clean);
                    }
                }
            }
            c.close();
        });
        let e = stderr.clone();
        let err_reader = thread::spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                match err.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => e
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push_str(&String::from_utf8_lossy(&buf[..n])),
                }
            }
        });
        let stdin = child.stdin.take();
        Ok(Vm {
            child,
            stdin,
            console,
            started,
            stderr,
            readers: vec![out_reader, err_reader],
            exit: None,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Types `line` and Enter at the console.
    pub fn send_line(&mut self, line: &str) -> Result<()> {
        let stdin = self
            .stdin
            .as_mut()
            .ok_or_else(|| Failure::test("the console is closed"))?;
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .and_then(|()| stdin.flush())
            .map_err(|e| Failure::test(format!("typing at the console: QEMU is gone ({e})")))
    }

    /// What QEMU printed on stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// QEMU's exit status if it has exited.
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        if self.exit.is_none() {
            self.exit = self.child.try_wait().ok().flatten();
        }
        self.exit
    }

    /// Waits for QEMU to exit until `deadline`.
    pub fn wait_exit(&mut self, deadline: Instant) -> Option<ExitStatus> {
        loop {
            if let Some(s) = self.try_exit() {
                self.join_readers();
                return Some(s);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Ends QEMU now.
    pub fn kill(&mut self) -> Option<ExitStatus> {
        if self.try_exit().is_none() {
            crate::exec::kill_group(self.child.id());
            self.exit = self.child.wait().ok();
        }
        self.join_readers();
        self.exit
    }

    fn join_readers(&mut self) {
        self.stdin = None;
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs QEMU on the caller's terminal until it exits (Ctrl-A X, or the
/// guest powering off).
pub fn interactive(launch: &Launch) -> Result<ExitStatus> {
    let mut cmd = Command::new(&launch.qemu);
    cmd.args(launch.args(ConsoleMode::Terminal));
    cmd.status()
        .map_err(|e| Failure::infra(format!("cannot run {}: {e}", launch.qemu)))
}

/// Writes a console log from the start (truncating an old one).
pub fn new_console_log(path: &Path) -> Result<()> {
    File::create(path)
        .map(|_| ())
        .map_err(|e| Failure::infra(format!("{}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn launch(kvm: bool) -> Launch {
        Launch {
            qemu: "qemu-system-x86_64".into(),
            kvm,
            cpu: "max".into(),
            memory: "256M".into(),
            smp: 1,
            kernel: "/k/vmlinux".into(),
            initrd: Some("/c/initramfs.cpio".into()),
            append: "console=ttyS0 panic=-1".into(),
            drives: Vec::new(),
            args: vec!["-net".into(), "none".into()],
        }
    }

    #[test]
    fn a_harness_run_puts_the_serial_console_on_stdio_and_nothing_else() {
        assert_eq!(
            launch(false).args(ConsoleMode::Pipes).join(" "),
            "-accel tcg -cpu max -m 256M -smp 1 -kernel /k/vmlinux -initrd /c/initramfs.cpio \
             -append console=ttyS0 panic=-1 -no-reboot -display none -serial stdio -monitor none -net none"
        );
    }

    #[test]
    fn disks_are_drives_before_the_jobs_own_arguments() {
        let mut l = launch(false);
        l.drives = vec![
            "file=/r/a.img,format=raw,if=virtio".into(),
            "file=/r/b.img,format=raw,if=ide".into(),
        ];
        assert!(
            l.args(ConsoleMode::Pipes).join(" ").ends_with(
                "-monitor none -drive file=/r/a.img,format=raw,if=virtio -drive file=/r/b.img,format=raw,if=ide -net none"
            ),
            "{:?}",
            l.args(ConsoleMode::Pipes)
        );
    }

    #[test]
    fn an_interactive_boot_uses_nographic_for_ctrl_a_x() {
        let args = launch(true).args(ConsoleMode::Terminal);
        assert_eq!(&args[..2], ["-accel", "kvm"]);
        assert!(args.contains(&"-nographic".to_string()));
        assert!(!args.contains(&"stdio".to_string()));
    }

    #[test]
    fn a_vm_that_cannot_start_is_an_infrastructure_error() {
        let mut l = launch(false);
        l.qemu = "/no/such/qemu".into();
        let log = std::env::temp_dir().join(format!("qemu-harness-nolaunch-{}", std::process::id()));
        let err = Vm::start(&l, &log).err().unwrap();
        assert_eq!(err.kind, crate::error::Kind::Infrastructure);
        let _ = std::fs::remove_file(log);
    }

    #[test]
    fn the_console_reader_sees_output_and_the_end() {
        // Any program can stand in for QEMU: this one echoes a line typed
        // at it and exits.
        let log = std::env::temp_dir().join(format!("qemu-harness-sh-{}", std::process::id()));
        new_console_log(&log).unwrap();
        let mut sh = Command::new("sh");
        sh.args(["-c", "read line; echo \"got $line\"; echo done >&2"]);
        let mut vm = Vm::start_command(sh, &log).unwrap();
        vm.send_line("hello").unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        vm.console
            .wait_for(0, &regex::Regex::new("got hello").unwrap(), deadline)
            .unwrap();
        assert!(vm.wait_exit(deadline).unwrap().success());
        assert!(vm.console.is_closed());
        assert_eq!(vm.stderr(), "done\n");
        assert_eq!(std::fs::read_to_string(&log).unwrap(), "got hello\n");
        let _ = std::fs::remove_file(log);
    }
}

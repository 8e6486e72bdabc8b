//! Harness job files: what to build, how to boot, what to type and what to
//! expect, in TOML.
//!
//! A job is a fixed pipeline of four actions: `[deploy]` (1), `[boot]` (2),
//! `[[test]]` (3, each test 3.N) and `[finalize]` (4). The harness has no
//! built-in values: every scalar setting is written in the file. An action's
//! `timeout` and `retries` (and a test's `status`) may be left out, and then
//! come from the file's `[defaults]` table, which must give them; a list
//! left out is empty. Unknown keys are errors.
//!
//! Host paths are relative to the workspace root; guest paths are absolute.
//! Patterns are regular expressions (the `regex` crate's syntax) matched
//! against the console text with `\r` removed; write `(?m)^…$` to anchor
//! one at a line.
//!
//! Every mistake is reported as `FILE:LINE:COLUMN: message` with the line
//! and a caret (TOML spans give the place), and is a job error.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use regex::Regex;
use serde::Deserialize;
use toml::Spanned;

use crate::error::{Failure, Result};

/// How the VM is accelerated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    /// Emulation only.
    Tcg,
    /// KVM, or fail (an infrastructure error) when it is unusable.
    Kvm,
    /// KVM when it is usable here, else TCG.
    Auto,
}

/// How the static binaries are built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Target {
    /// `x86_64-unknown-linux-musl` (added with rustup when missing).
    Musl,
    /// `x86_64-unknown-linux-gnu` with `-C target-feature=+crt-static`.
    GnuStatic,
    /// musl when rustup has or can add it and the workspace builds for it,
    /// else gnu-static.
    Auto,
}

/// A fully read job: every value resolved, every pattern compiled.
#[derive(Debug, Clone)]
pub struct Job {
    pub file: PathBuf,
    pub name: String,
    pub description: String,
    pub deploy: Deploy,
    pub boot: Boot,
    pub tests: Vec<Test>,
    pub finalize: Finalize,
}

/// An action's time limit and how often it is tried again after failing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub timeout: Duration,
    pub retries: u32,
}

#[derive(Debug, Clone)]
pub struct Deploy {
    pub limits: Limits,
    pub target: Target,
    /// How long `rustup target add` may try before `auto` gives up on musl.
    pub rustup_timeout: Duration,
    pub profile: String,
    /// Strip the binaries' symbols and debug information in the image.
    pub strip: bool,
    /// Build position-independent binaries (loaded at a random address).
    /// `false` links them at a fixed address (`-C relocation-model=static`):
    /// no relocation at start-up, and QEMU's TCG can reuse the code it
    /// translated for one run of a binary in the next (its translations
    /// are keyed by virtual address too), which makes a second `initctl`
    /// about five times cheaper under TCG.
    pub pie: bool,
    pub binaries: Vec<Binary>,
    pub busybox: Busybox,
    pub dirs: Vec<String>,
    pub copies: Vec<Copy>,
    pub links: Vec<Link>,
    pub writes: Vec<WriteFile>,
    pub devices: Vec<Device>,
    /// Kernel modules (names or aliases) put under `/lib/modules/RELEASE`
    /// from the kernel package of `[boot]`, with every module they need
    /// (see [`crate::modules`]).
    pub modules: Vec<String>,
}

/// A binary of a workspace package, built static, put at `path`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Binary {
    pub package: String,
    pub bin: String,
    pub path: String,
    /// Cargo features of `package` to build it with.
    pub features: Vec<String>,
}

/// busybox from a Debian package, with a link per applet in `dir`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Busybox {
    /// The Debian package (`busybox-static`).
    pub package: String,
    /// Guest directory of the binary and its applet links.
    pub dir: String,
    /// Applets that get no link (the init system's own commands).
    pub skip: Vec<String>,
}

/// A host file, or every file under a host directory, copied to `to`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copy {
    pub from: PathBuf,
    pub to: String,
    pub mode: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Link {
    pub path: String,
    pub target: String,
}

/// A guest file with the given text.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WriteFile {
    pub path: String,
    pub content: String,
    pub mode: u32,
}

/// A character device node.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Device {
    pub path: String,
    pub major: u32,
    pub minor: u32,
    pub mode: u32,
}

/// A disk image the harness makes in the run directory before each boot
/// attempt and attaches to the VM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disk {
    /// The image's file name in the run directory.
    pub file: String,
    /// Its size in bytes.
    pub size: u64,
    /// The command that makes a file system on it (the image's path is
    /// added last); empty for a blank disk.
    pub mkfs: Vec<String>,
    /// QEMU's `-drive if=` (`virtio`: the guest's `/dev/vda`, `vdb`…).
    pub interface: String,
}

#[derive(Debug, Clone)]
pub struct Boot {
    pub limits: Limits,
    pub accel: Accel,
    pub kvm_probe_timeout: Duration,
    pub qemu: String,
    pub kernel_package: String,
    pub memory: String,
    pub smp: u32,
    pub cpu_tcg: String,
    pub cpu_kvm: String,
    pub append: String,
    pub args: Vec<String>,
    pub disks: Vec<Disk>,
    /// Console patterns to wait for, in order.
    pub expect: Vec<Regex>,
    /// The shell's prompt: after a command's output the harness waits for
    /// it, so that what is typed next reaches a shell that reads.
    pub prompt: Regex,
}

/// What a test does at the console.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// A shell command line: its output is what the patterns are matched
    /// against, and its exit status is checked.
    Run(String),
    /// Text typed as it is (a newline is added); the patterns are matched
    /// against the console from then on, in order.
    Send(String),
}

#[derive(Debug, Clone)]
pub struct Test {
    pub name: String,
    pub limits: Limits,
    pub action: Action,
    /// For [`Action::Run`]: the exit status wanted.
    pub status: i32,
    pub expect: Vec<Regex>,
    pub reject: Vec<Regex>,
}

#[derive(Debug, Clone)]
pub struct Finalize {
    pub limits: Limits,
    /// Guest directories whose files are copied out before power-off.
    pub collect: Vec<String>,
    /// The command line typed to power off.
    pub poweroff: String,
    /// Console patterns wanted after it, in order.
    pub expect: Vec<Regex>,
    /// QEMU's exit status wanted.
    pub exit_status: i32,
}

// ---- the file as written ------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJob {
    name: String,
    description: String,
    defaults: RawDefaults,
    deploy: RawDeploy,
    boot: RawBoot,
    #[serde(rename = "test")]
    tests: Option<Vec<Spanned<RawTest>>>,
    finalize: RawFinalize,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDefaults {
    timeout: u64,
    retries: u32,
    status: i32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDeploy {
    timeout: Option<u64>,
    retries: Option<u32>,
    target: Target,
    rustup_timeout: u64,
    profile: String,
    strip: bool,
    pie: bool,
    binary: Option<Vec<Binary>>,
    busybox: Busybox,
    dirs: Option<Vec<Spanned<String>>>,
    copy: Option<Vec<RawCopy>>,
    link: Option<Vec<Spanned<Link>>>,
    write: Option<Vec<Spanned<WriteFile>>>,
    device: Option<Vec<Spanned<Device>>>,
    modules: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCopy {
    from: Spanned<String>,
    to: Spanned<String>,
    mode: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBoot {
    timeout: Option<u64>,
    retries: Option<u32>,
    accel: Accel,
    kvm_probe_timeout: u64,
    qemu: String,
    kernel_package: String,
    memory: String,
    smp: u32,
    cpu_tcg: String,
    cpu_kvm: String,
    append: String,
    args: Option<Vec<String>>,
    disk: Option<Vec<RawDisk>>,
    expect: Option<Vec<Spanned<String>>>,
    prompt: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDisk {
    file: Spanned<String>,
    size: Spanned<String>,
    mkfs: Vec<String>,
    interface: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTest {
    name: String,
    timeout: Option<u64>,
    retries: Option<u32>,
    status: Option<i32>,
    run: Option<Spanned<String>>,
    send: Option<Spanned<String>>,
    expect: Option<Vec<Spanned<String>>>,
    reject: Option<Vec<Spanned<String>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFinalize {
    timeout: Option<u64>,
    retries: Option<u32>,
    collect: Option<Vec<Spanned<String>>>,
    poweroff: String,
    expect: Option<Vec<Spanned<String>>>,
    exit_status: i32,
}

/// Reads and checks the job file at `path`; host paths in it are resolved
/// against `workspace`.
pub fn load(path: &Path, workspace: &Path) -> Result<Job> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Failure::job(format!("{}: cannot read the job file: {e}", path.display())))?;
    parse(&text, path, workspace)
}

/// Parses a job file's `text`; `path` is only used in messages and kept in
/// the job.
pub fn parse(text: &str, path: &Path, workspace: &Path) -> Result<Job> {
    let at = |span: Option<Range<usize>>, message: &str| -> Failure {
        Failure::job(locate(text, &path.display().to_string(), span, message))
    };
    let raw: RawJob = toml::from_str(text).map_err(|e| at(e.span(), e.message()))?;
    let d = &raw.defaults;
    let limits = |timeout: Option<u64>, retries: Option<u32>| Limits {
        timeout: Duration::from_secs(timeout.unwrap_or(d.timeout)),
        retries: retries.unwrap_or(d.retries),
    };
    let regexes = |list: Option<Vec<Spanned<String>>>| -> Result<Vec<Regex>> {
        list.unwrap_or_default()
            .into_iter()
            .map(|p| Regex::new(p.get_ref()).map_err(|e| at(Some(p.span()), &format!("bad pattern: {e}"))))
            .collect()
    };
    let guest_path = |p: &Spanned<String>| -> Result<String> {
        if p.get_ref().starts_with('/') {
            Ok(p.get_ref().clone())
        } else {
            Err(at(Some(p.span()), "a guest path must be absolute"))
        }
    };

    let rd = raw.deploy;
    let mut copies = Vec::new();
    for c in rd.copy.unwrap_or_default() {
        let from = workspace.join(c.from.get_ref());
        if !from.exists() {
            return Err(at(
                Some(c.from.span()),
                &format!("no such file or directory: {}", from.display()),
            ));
        }
        copies.push(Copy {
            from,
            to: guest_path(&c.to)?,
            mode: c.mode,
        });
    }
    let mut dirs = Vec::new();
    for dir in rd.dirs.unwrap_or_default() {
        dirs.push(guest_path(&dir)?);
    }
    let check_all = |items: &[(Range<usize>, &str)]| -> Result<()> {
        for (span, p) in items {
            if !p.starts_with('/') {
                return Err(at(Some(span.clone()), "a guest path must be absolute"));
            }
        }
        Ok(())
    };
    let links = rd.link.unwrap_or_default();
    check_all(
        &links
            .iter()
            .map(|l| (l.span(), l.get_ref().path.as_str()))
            .collect::<Vec<_>>(),
    )?;
    let writes = rd.write.unwrap_or_default();
    check_all(
        &writes
            .iter()
            .map(|w| (w.span(), w.get_ref().path.as_str()))
            .collect::<Vec<_>>(),
    )?;
    let devices = rd.device.unwrap_or_default();
    check_all(
        &devices
            .iter()
            .map(|w| (w.span(), w.get_ref().path.as_str()))
            .collect::<Vec<_>>(),
    )?;
    let deploy = Deploy {
        limits: limits(rd.timeout, rd.retries),
        target: rd.target,
        rustup_timeout: Duration::from_secs(rd.rustup_timeout),
        profile: rd.profile,
        strip: rd.strip,
        pie: rd.pie,
        binaries: rd.binary.unwrap_or_default(),
        busybox: rd.busybox,
        dirs,
        copies,
        links: links.into_iter().map(Spanned::into_inner).collect(),
        writes: writes.into_iter().map(Spanned::into_inner).collect(),
        devices: devices.into_iter().map(Spanned::into_inner).collect(),
        modules: rd.modules.unwrap_or_default(),
    };

    let rb = raw.boot;
    let mut disks: Vec<Disk> = Vec::new();
    for d in rb.disk.unwrap_or_default() {
        let file = d.file.get_ref();
        if file.is_empty() || file.contains('/') || file.starts_with('.') {
            return Err(at(
                Some(d.file.span()),
                "a disk's `file` is a plain file name (it is made in the run directory)",
            ));
        }
        if RUN_FILES.contains(&file.as_str()) {
            return Err(at(
                Some(d.file.span()),
                &format!("`{file}` is the run directory's own: name the disk otherwise"),
            ));
        }
        if disks.iter().any(|other| &other.file == file) {
            return Err(at(Some(d.file.span()), "two disks with the same `file`"));
        }
        let size = parse_size(d.size.get_ref()).ok_or_else(|| {
            at(
                Some(d.size.span()),
                "a size is a number of bytes with an optional K, M or G (1024-based), e.g. \"64M\"",
            )
        })?;
        disks.push(Disk {
            file: file.clone(),
            size,
            mkfs: d.mkfs,
            interface: d.interface,
        });
    }
    let boot = Boot {
        limits: limits(rb.timeout, rb.retries),
        accel: rb.accel,
        kvm_probe_timeout: Duration::from_secs(rb.kvm_probe_timeout),
        qemu: rb.qemu,
        kernel_package: rb.kernel_package,
        memory: rb.memory,
        smp: rb.smp,
        cpu_tcg: rb.cpu_tcg,
        cpu_kvm: rb.cpu_kvm,
        append: rb.append,
        args: rb.args.unwrap_or_default(),
        disks,
        expect: regexes(rb.expect)?,
        prompt: regexes(Some(vec![rb.prompt]))?.remove(0),
    };

    let mut tests = Vec::new();
    for t in raw.tests.unwrap_or_default() {
        let span = t.span();
        let t = t.into_inner();
        let action = match (t.run, t.send) {
            (Some(run), None) => {
                if run.get_ref().contains('\n') {
                    return Err(at(
                        Some(run.span()),
                        "`run` is one command line (use `;` or `&&`)",
                    ));
                }
                Action::Run(run.into_inner())
            }
            (None, Some(send)) => Action::Send(send.into_inner()),
            (Some(_), Some(send)) => {
                return Err(at(
                    Some(send.span()),
                    "a test has either `run` or `send`, not both",
                ));
            }
            (None, None) => return Err(at(Some(span), "a test needs `run` or `send`")),
        };
        tests.push(Test {
            name: t.name,
            limits: limits(t.timeout, t.retries),
            action,
            status: t.status.unwrap_or(d.status),
            expect: regexes(t.expect)?,
            reject: regexes(t.reject)?,
        });
    }

    let rf = raw.finalize;
    let mut collect = Vec::new();
    for dir in rf.collect.unwrap_or_default() {
        collect.push(guest_path(&dir)?);
    }
    let finalize = Finalize {
        limits: limits(rf.timeout, rf.retries),
        collect,
        poweroff: rf.poweroff,
        expect: regexes(rf.expect)?,
        exit_status: rf.exit_status,
    };

    Ok(Job {
        file: path.to_path_buf(),
        name: raw.name,
        description: raw.description,
        deploy,
        boot,
        tests,
        finalize,
    })
}

/// What a run writes in its directory besides the disks
/// ([`crate::run`]).
pub const RUN_FILES: &[&str] = &["harness.log", "build.log", "console.log", "guest", "stripped"];

/// A size as `truncate(1)` takes it: bytes, or a number with `K`, `M` or
/// `G` (powers of 1024); zero is refused.
pub fn parse_size(text: &str) -> Option<u64> {
    let (digits, unit) = match text.char_indices().last()? {
        (i, 'K') => (&text[..i], 1u64 << 10),
        (i, 'M') => (&text[..i], 1 << 20),
        (i, 'G') => (&text[..i], 1 << 30),
        _ => (text, 1),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse::<u64>().ok()?.checked_mul(unit).filter(|&n| n > 0)
}

/// `FILE:LINE:COLUMN: message`, then the line and a caret under the
/// column (both 1-based, the column counted in characters).
pub fn locate(text: &str, file: &str, span: Option<Range<usize>>, message: &str) -> String {
    let Some(span) = span else {
        return format!("{file}: {message}");
    };
    let offset = floor_char_boundary(text, span.start.min(text.len()));
    let line_start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let line_end = text[offset..].find('\n').map_or(text.len(), |i| offset + i);
    let line_no = text[..offset].matches('\n').count() + 1;
    let column = text[line_start..offset].chars().count() + 1;
    let line = &text[line_start..line_end];
    let caret = " ".repeat(column - 1);
    format!("{file}:{line_no}:{column}: {message}\n    {line}\n    {caret}^")
}

fn floor_char_boundary(text: &str, mut i: usize) -> usize {
    while !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Kind;

    /// A complete job with every key written; tests take parts out.
    pub const FULL: &str = r#"name = "t"
description = "a test job"

[defaults]
timeout = 30
retries = 1
status = 0

[deploy]
timeout = 600
target = "auto"
rustup_timeout = 60
profile = "release"
strip = true
pie = false
dirs = ["/proc", "/sys"]
binary = [{ package = "init", bin = "init", path = "/sbin/init", features = ["initctl"] }]
busybox = { package = "busybox-static", dir = "/bin", skip = ["init"] }
copy = [{ from = "Cargo.toml", to = "/etc/Cargo.toml", mode = 0o644 }]
link = [{ path = "/sbin/start", target = "initctl" }]
write = [{ path = "/etc/hostname", content = "vm\n", mode = 0o644 }]
device = [{ path = "/dev/console", major = 5, minor = 1, mode = 0o600 }]
modules = ["virtio_blk", "ext4"]

[boot]
accel = "auto"
kvm_probe_timeout = 5
qemu = "qemu-system-x86_64"
kernel_package = "linux-image-amd64"
memory = "256M"
smp = 1
cpu_tcg = "max"
cpu_kvm = "host"
append = "console=ttyS0"
args = ["-net", "none"]
disk = [{ file = "disk.img", size = "64M", mkfs = ["mkfs.ext4", "-q"], interface = "virtio" }]
expect = ["(?m)^# $"]
prompt = "(?m)^# "

[[test]]
name = "list"
run = "initctl list"
expect = ["tty"]

[[test]]
name = "respawn"
timeout = 5
retries = 0
status = 3
send = "exit"
expect = ["again"]
reject = ["panic"]

[finalize]
collect = ["/var/log/upstart"]
poweroff = "poweroff"
expect = ["Power down"]
exit_status = 0
"#;

    fn workspace() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
    }

    fn parse_str(text: &str) -> Result<Job> {
        parse(text, Path::new("jobs/t.toml"), &workspace())
    }

    fn job_error(text: &str) -> String {
        let f = parse_str(text).expect_err("the job file should be refused");
        assert_eq!(f.kind, Kind::Job, "{f}");
        f.message
    }

    #[test]
    fn a_full_job_parses_with_every_value_as_written() {
        let job = parse_str(FULL).unwrap();
        assert_eq!(job.name, "t");
        assert_eq!(
            job.deploy.limits,
            Limits {
                timeout: Duration::from_secs(600),
                retries: 1
            }
        );
        assert_eq!(job.deploy.target, Target::Auto);
        assert_eq!(job.deploy.binaries[0].path, "/sbin/init");
        assert_eq!(job.deploy.copies[0].mode, 0o644);
        assert_eq!(job.deploy.devices[0].major, 5);
        assert_eq!(job.boot.accel, Accel::Auto);
        assert_eq!(job.boot.kvm_probe_timeout, Duration::from_secs(5));
        assert_eq!(job.boot.args, ["-net", "none"]);
        assert_eq!(
            job.boot.disks,
            [Disk {
                file: "disk.img".into(),
                size: 64 << 20,
                mkfs: vec!["mkfs.ext4".into(), "-q".into()],
                interface: "virtio".into(),
            }]
        );
        assert_eq!(job.deploy.modules, ["virtio_blk", "ext4"]);
        assert_eq!(job.tests.len(), 2);
        assert_eq!(job.tests[0].action, Action::Run("initctl list".into()));
        assert_eq!(job.tests[1].action, Action::Send("exit".into()));
        assert_eq!(job.finalize.collect, ["/var/log/upstart"]);
    }

    #[test]
    fn actions_without_limits_take_them_from_defaults() {
        let job = parse_str(FULL).unwrap();
        let defaults = Limits {
            timeout: Duration::from_secs(30),
            retries: 1,
        };
        assert_eq!(job.boot.limits, defaults);
        assert_eq!(job.finalize.limits, defaults);
        assert_eq!(job.tests[0].limits, defaults);
        assert_eq!(job.tests[0].status, 0);
        // …and the ones that set them keep their own.
        assert_eq!(
            job.tests[1].limits,
            Limits {
                timeout: Duration::from_secs(5),
                retries: 0
            }
        );
        assert_eq!(job.tests[1].status, 3);
    }

    #[test]
    fn left_out_lists_are_empty() {
        let text = FULL
            .replace("args = [\"-net\", \"none\"]\n", "")
            .replace("reject = [\"panic\"]\n", "")
            .replace("modules = [\"virtio_blk\", \"ext4\"]\n", "");
        let text = text.replace(
            &text[text.find("disk = [").unwrap()..text.find("expect = [\"(?m)").unwrap()],
            "",
        );
        let job = parse_str(&text).unwrap();
        assert!(job.boot.args.is_empty());
        assert!(job.tests[1].reject.is_empty());
        assert!(job.deploy.modules.is_empty());
        assert!(job.boot.disks.is_empty());
    }

    #[test]
    fn every_key_of_a_disk_must_be_written() {
        for key in [
            "file = \"disk.img\", ",
            "size = \"64M\", ",
            "mkfs = [\"mkfs.ext4\", \"-q\"], ",
        ] {
            let msg = job_error(&FULL.replace(key, ""));
            let name = key.split(' ').next().unwrap();
            assert!(
                msg.starts_with("jobs/t.toml:36:") && msg.contains(&format!("missing field `{name}`")),
                "{key}: {msg}"
            );
        }
        let msg = job_error(&FULL.replace(", interface = \"virtio\"", ""));
        assert!(msg.contains("missing field `interface`"), "{msg}");
        let msg = job_error(&FULL.replace(
            "interface = \"virtio\" }",
            "interface = \"virtio\", cache = \"none\" }",
        ));
        assert!(
            msg.starts_with("jobs/t.toml:36:") && msg.contains("unknown field `cache`"),
            "{msg}"
        );
    }

    #[test]
    fn a_disk_is_a_plain_file_name_of_a_given_size() {
        let msg = job_error(&FULL.replace("file = \"disk.img\"", "file = \"../disk.img\""));
        assert!(
            msg.starts_with("jobs/t.toml:36:18: a disk's `file` is a plain file name"),
            "{msg}"
        );
        let msg = job_error(&FULL.replace("size = \"64M\"", "size = \"64MB\""));
        assert!(
            msg.starts_with("jobs/t.toml:36:37: a size is a number of bytes"),
            "{msg}"
        );
        let two = FULL.replace("interface = \"virtio\" }]", "interface = \"virtio\" }, { file = \"disk.img\", size = \"1M\", mkfs = [], interface = \"ide\" }]");
        let msg = job_error(&two);
        assert!(msg.contains("two disks with the same `file`"), "{msg}");
        let msg = job_error(&FULL.replace("file = \"disk.img\"", "file = \"console.log\""));
        assert!(msg.contains("`console.log` is the run directory's own"), "{msg}");
        let job = parse_str(&two.replace(
            "{ file = \"disk.img\", size = \"1M\"",
            "{ file = \"blank.img\", size = \"1M\"",
        ))
        .unwrap();
        assert_eq!(job.boot.disks[1].size, 1 << 20);
        assert!(job.boot.disks[1].mkfs.is_empty());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("512"), Some(512));
        assert_eq!(parse_size("4K"), Some(4096));
        assert_eq!(parse_size("64M"), Some(64 << 20));
        assert_eq!(parse_size("2G"), Some(2 << 30));
        for bad in [
            "",
            "M",
            "0",
            "0M",
            "1.5G",
            "-1",
            "64MB",
            "64m",
            " 64M",
            "99999999999999999999G",
        ] {
            assert_eq!(parse_size(bad), None, "{bad}");
        }
    }

    #[test]
    fn defaults_have_no_fallback_in_the_code() {
        let msg = job_error(&FULL.replace("retries = 1\n", ""));
        assert!(
            msg.starts_with("jobs/t.toml:4:1: missing field `retries`"),
            "{msg}"
        );
    }

    #[test]
    fn a_missing_scalar_is_an_error_naming_it() {
        let msg = job_error(&FULL.replace("memory = \"256M\"\n", ""));
        assert!(
            msg.starts_with("jobs/t.toml:25:1: missing field `memory`"),
            "{msg}"
        );
    }

    #[test]
    fn unknown_keys_are_errors_at_their_line_and_column() {
        let msg = job_error(&FULL.replace("smp = 1\n", "smp = 1\n  cores = 2\n"));
        assert!(
            msg.starts_with("jobs/t.toml:32:3: unknown field `cores`"),
            "{msg}"
        );
        assert!(msg.contains("\n      cores = 2\n      ^"), "{msg}");
    }

    #[test]
    fn a_wrong_type_is_an_error_at_the_value() {
        let msg = job_error(&FULL.replace("kvm_probe_timeout = 5", "kvm_probe_timeout = \"5s\""));
        assert!(
            msg.starts_with("jobs/t.toml:27:21: invalid type: string \"5s\", expected u64"),
            "{msg}"
        );
    }

    #[test]
    fn an_unknown_accelerator_is_an_error() {
        let msg = job_error(&FULL.replace("accel = \"auto\"", "accel = \"xen\""));
        assert!(
            msg.starts_with("jobs/t.toml:26:9: unknown variant `xen`"),
            "{msg}"
        );
    }

    #[test]
    fn toml_syntax_errors_have_a_place() {
        let msg = job_error(&FULL.replace("smp = 1", "smp = = 1"));
        assert!(msg.starts_with("jobs/t.toml:31:7: extra"), "{msg}");
    }

    #[test]
    fn a_bad_pattern_is_an_error_at_the_pattern() {
        let msg = job_error(&FULL.replace("expect = [\"tty\"]", "expect = [\"ok\", \"(tty\"]"));
        assert!(msg.starts_with("jobs/t.toml:43:17: bad pattern:"), "{msg}");
    }

    #[test]
    fn a_test_needs_exactly_one_of_run_and_send() {
        let msg = job_error(&FULL.replace("send = \"exit\"", "send = \"exit\"\nrun = \"true\""));
        assert!(
            msg.starts_with("jobs/t.toml:50:8: a test has either `run` or `send`"),
            "{msg}"
        );
        let msg = job_error(&FULL.replace("run = \"initctl list\"\n", ""));
        assert!(
            msg.starts_with("jobs/t.toml:40:1: a test needs `run` or `send`"),
            "{msg}"
        );
    }

    #[test]
    fn run_is_a_single_line() {
        let msg = job_error(&FULL.replace("run = \"initctl list\"", "run = \"\"\"true\nfalse\"\"\""));
        assert!(
            msg.starts_with("jobs/t.toml:42:7: `run` is one command line"),
            "{msg}"
        );
    }

    #[test]
    fn guest_paths_must_be_absolute() {
        let msg = job_error(&FULL.replace("dirs = [\"/proc\", \"/sys\"]", "dirs = [\"/proc\", \"sys\"]"));
        assert!(
            msg.starts_with("jobs/t.toml:16:18: a guest path must be absolute"),
            "{msg}"
        );
        let msg = job_error(&FULL.replace("path = \"/sbin/start\"", "path = \"start\""));
        assert!(msg.starts_with("jobs/t.toml:20:"), "{msg}");
    }

    #[test]
    fn copies_from_missing_host_files_are_errors() {
        let msg = job_error(&FULL.replace("from = \"Cargo.toml\"", "from = \"no/such/file\""));
        assert!(
            msg.starts_with("jobs/t.toml:19:18: no such file or directory:"),
            "{msg}"
        );
    }

    #[test]
    fn locate_counts_characters_not_bytes() {
        let text = "a = 1\nbé = x\n";
        let at = text.find('x').unwrap();
        assert_eq!(
            locate(text, "f", Some(at..at + 1), "m"),
            "f:2:6: m\n    bé = x\n         ^"
        );
        assert_eq!(locate(text, "f", None, "m"), "f: m");
    }
}

//! PID 1 duties (design layer 6): where we run, the early set-up before
//! anything else (file systems, console, session, PATH, Ctrl-Alt-Del), and
//! the end of a shutdown (signalling every process left, sync, unmounting,
//! `reboot(2)`).
//!
//! `init` is a system init whenever it is process 1: of the machine, or of
//! a PID namespace (`unshare --pid --fork --mount-proc init`, a container).
//! The two differ in what they may touch:
//!
//! - **Machine**: `reboot(RB_DISABLE_CAD)` succeeds (so Ctrl-Alt-Del sends
//!   us SIGINT). Every file system of [`MOUNTS`] that is not mounted yet is
//!   mounted, `/dev/console` becomes standard input, output and error, and
//!   the last step of a shutdown is `reboot(2)`.
//! - **Namespace**: `reboot(RB_DISABLE_CAD)` fails with `EINVAL` (the kernel
//!   accepts only the power commands from a child PID namespace, and those
//!   kill its init) or `EPERM`. The console is left alone (it is the
//!   host's), and the last step of a shutdown is `exit(0)`. File systems
//!   are mounted only where that cannot touch the host: only when we are in
//!   a mount namespace of our own, and only those that are missing (not a
//!   mount point); a `/proc` showing another PID namespace's processes is
//!   replaced. We take the mount namespace as ours when `/proc` shows our
//!   own PID namespace (`/proc/self` is 1: `unshare --mount-proc` and
//!   container runtimes mount it so, in a new mount namespace), when there
//!   is no `/proc` at all (a root of its own), or when the `/proc` of
//!   another PID namespace shows its process 1 in another mount namespace.
//!   Otherwise nothing is mounted and a warning says why.
//!
//! Everything here reports what it did as [`Note`]s, logged once logging
//! is set up (which may need `/dev`).

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sys::signal::Signal;

/// Where `init` runs as process 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// Process 1 of the machine.
    Machine,
    /// Process 1 of a PID namespace.
    Namespace,
}

impl Place {
    pub fn name(self) -> &'static str {
        match self {
            Place::Machine => "the machine",
            Place::Namespace => "a PID namespace",
        }
    }
}

/// How the system goes down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShutdownKind {
    Poweroff,
    Reboot,
    Halt,
}

impl ShutdownKind {
    pub fn parse(s: &str) -> Option<ShutdownKind> {
        match s {
            "poweroff" => Some(ShutdownKind::Poweroff),
            "reboot" => Some(ShutdownKind::Reboot),
            "halt" => Some(ShutdownKind::Halt),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ShutdownKind::Poweroff => "poweroff",
            ShutdownKind::Reboot => "reboot",
            ShutdownKind::Halt => "halt",
        }
    }

    /// The SysV runlevel of the `runlevel` event emitted with it.
    pub fn runlevel(self) -> &'static str {
        match self {
            ShutdownKind::Reboot => "6",
            ShutdownKind::Poweroff | ShutdownKind::Halt => "0",
        }
    }
}

/// A message for the daemon's log, kept until logging is set up.
#[derive(Debug, Clone)]
pub struct Note {
    pub warning: bool,
    pub text: String,
}

fn info(notes: &mut Vec<Note>, text: impl Into<String>) {
    notes.push(Note {
        warning: false,
        text: text.into(),
    });
}

fn warn(notes: &mut Vec<Note>, text: impl Into<String>) {
    notes.push(Note {
        warning: true,
        text: text.into(),
    });
}

/// The `PATH` of a system init that was given none (the kernel gives
/// none).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Whether this process is process 1 (of the machine or of a PID
/// namespace).
pub fn is_pid1() -> bool {
    nix::unistd::getpid().as_raw() == 1
}

/// A file system a system init mounts when it is missing.
pub struct MountSpec {
    pub target: &'static str,
    pub fstype: &'static str,
    pub flags: MsFlags,
    pub data: &'static str,
}

/// What is mounted, in order (`/dev` first: a static glibc binary reads
/// `/dev/urandom` for random bytes, and the D-Bus GUID needs them).
pub const MOUNTS: &[MountSpec] = &[
    MountSpec {
        target: "/dev",
        fstype: "devtmpfs",
        flags: MsFlags::MS_NOSUID,
        data: "mode=0755",
    },
    MountSpec {
        target: "/proc",
        fstype: "proc",
        flags: MsFlags::MS_NOSUID
            .union(MsFlags::MS_NODEV)
            .union(MsFlags::MS_NOEXEC),
        data: "",
    },
    MountSpec {
        target: "/sys",
        fstype: "sysfs",
        flags: MsFlags::MS_NOSUID
            .union(MsFlags::MS_NODEV)
            .union(MsFlags::MS_NOEXEC),
        data: "",
    },
    MountSpec {
        target: "/dev/pts",
        fstype: "devpts",
        flags: MsFlags::MS_NOSUID.union(MsFlags::MS_NOEXEC),
        data: "gid=5,mode=0620,ptmxmode=0666",
    },
    MountSpec {
        target: "/run",
        fstype: "tmpfs",
        flags: MsFlags::MS_NOSUID.union(MsFlags::MS_NODEV),
        data: "mode=0755",
    },
];

/// Whether `path` is the root of a mount: `statx`'s mount-root attribute
/// where the kernel reports it, else a device different from its
/// parent's (which misses a bind mount of the same file system).
pub fn is_mount_point(path: &Path) -> bool {
    let Ok(c) = CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: statx with a valid C string and a zeroed buffer it fills.
    let mut buf: libc::statx = unsafe { std::mem::zeroed() };
    let rc = unsafe {
        libc::statx(
            libc::AT_FDCWD,
            c.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
            libc::STATX_BASIC_STATS,
            &mut buf,
        )
    };
    let mount_root = libc::STATX_ATTR_MOUNT_ROOT as u64;
    if rc == 0 && buf.stx_attributes_mask & mount_root != 0 {
        return buf.stx_attributes & mount_root != 0;
    }
    let Ok(own) = std::fs::symlink_metadata(path) else {
        return false;
    };
    let parent = path.join("..");
    match std::fs::metadata(&parent) {
        Ok(up) => own.dev() != up.dev() || own.ino() == up.ino(),
        Err(_) => false,
    }
}

/// What `/proc` is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ProcState {
    Missing,
    /// It shows our PID namespace.
    Ours,
    /// It shows another PID namespace (the host's).
    Foreign,
}

fn proc_state() -> ProcState {
    if !is_mount_point(Path::new("/proc")) {
        return ProcState::Missing;
    }
    match std::fs::read_link("/proc/self") {
        Ok(p) if p.as_os_str() == "1" => ProcState::Ours,
        _ => ProcState::Foreign,
    }
}

fn same_file(a: &str, b: &str) -> Option<bool> {
    let (a, b) = (std::fs::metadata(a).ok()?, std::fs::metadata(b).ok()?);
    Some(a.dev() == b.dev() && a.ino() == b.ino())
}

/// The outcome of the early set-up.
#[derive(Debug, Clone)]
pub struct Setup {
    pub place: Place,
    /// Whether we may mount and unmount (see the module docs).
    pub own_mounts: bool,
    /// What happened, to be logged.
    pub notes: Vec<Note>,
}

/// The early set-up of a system init, before logging (which may need
/// `/dev`) and before any thread: each step only when needed, none fatal.
pub fn early_setup() -> Setup {
    let mut notes = Vec::new();
    ensure_std_fds();
    // RB_DISABLE_CAD: Ctrl-Alt-Del becomes a SIGINT to us. It also tells
    // where we are: from a child PID namespace the kernel refuses it.
    let place = match nix::sys::reboot::set_cad_enabled(false) {
        Ok(()) => Place::Machine,
        Err(e) => {
            info(
                &mut notes,
                format!("reboot(RB_DISABLE_CAD): {e}: running as process 1 of a PID namespace"),
            );
            Place::Namespace
        }
    };
    let own_mounts = match place {
        Place::Machine => true,
        Place::Namespace => match proc_state() {
            ProcState::Ours | ProcState::Missing => true,
            ProcState::Foreign => same_file("/proc/self/ns/mnt", "/proc/1/ns/mnt") == Some(false),
        },
    };
    if own_mounts {
        for spec in MOUNTS {
            mount_missing(spec, place, &mut notes);
            if spec.target == "/dev" && place == Place::Machine {
                take_console(&mut notes);
                // No console: /dev/null at least, now that there is one.
                ensure_std_fds();
            }
        }
    } else {
        warn(
            &mut notes,
            "the mount namespace is shared with another system (its /proc shows another PID namespace): \
             mounting nothing; use `unshare --pid --fork --mount-proc`",
        );
    }
    // Our own session, so that no terminal's signals reach us.
    if let Err(e) = nix::unistd::setsid() {
        info(&mut notes, format!("setsid: {e}"));
    }
    let _ = std::env::set_current_dir("/");
    if std::env::var_os("PATH").is_none() {
        // SAFETY: no other thread exists yet.
        unsafe { std::env::set_var("PATH", DEFAULT_PATH) };
    }
    if place == Place::Machine && std::env::var_os("TERM").is_none() {
        // SAFETY: no other thread exists yet.
        unsafe { std::env::set_var("TERM", "linux") };
    }
    Setup {
        place,
        own_mounts,
        notes,
    }
}

/// Descriptors 0, 1 and 2 must exist, or the first files we open would
/// become them: the kernel starts init without them when `/dev/console`
/// is missing.
fn ensure_std_fds() {
    for fd in 0..3 {
        // SAFETY: F_GETFD on a descriptor number only queries it.
        if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
            // SAFETY: open with a valid C string; the result is checked.
            let null = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDWR) };
            if null >= 0 && null != fd {
                // SAFETY: plain descriptor calls.
                unsafe {
                    libc::dup2(null, fd);
                    libc::close(null);
                }
            }
        }
    }
}

fn mount_missing(spec: &MountSpec, place: Place, notes: &mut Vec<Note>) {
    let target = Path::new(spec.target);
    let replace = spec.target == "/proc" && place == Place::Namespace && proc_state() == ProcState::Foreign;
    if is_mount_point(target) && !replace {
        return;
    }
    if !target.is_dir()
        && let Err(e) = std::fs::create_dir_all(target)
    {
        warn(notes, format!("unable to create {}: {e}", spec.target));
        return;
    }
    let data = (!spec.data.is_empty()).then_some(spec.data);
    match mount(Some(spec.fstype), target, Some(spec.fstype), spec.flags, data) {
        Ok(()) => info(notes, format!("mounted {} on {}", spec.fstype, spec.target)),
        Err(e) => warn(
            notes,
            format!("unable to mount {} on {}: {e}", spec.fstype, spec.target),
        ),
    }
}

/// `/dev/console` as standard input, output and error; it is not made our
/// controlling terminal. The keyboard request (Alt-Up) is asked to send
/// SIGWINCH.
fn take_console(notes: &mut Vec<Note>) {
    // SAFETY: open with a valid C string; the result is checked.
    let fd = unsafe { libc::open(c"/dev/console".as_ptr(), libc::O_RDWR | libc::O_NOCTTY) };
    if fd < 0 {
        warn(
            notes,
            format!("unable to open /dev/console: {}", std::io::Error::last_os_error()),
        );
        return;
    }
    // SAFETY: plain descriptor calls on descriptors we own.
    unsafe {
        for std in 0..3 {
            if fd != std {
                libc::dup2(fd, std);
            }
        }
        if fd > 2 {
            libc::close(fd);
        }
        // KDSIGACCEPT: the keyboard request is sent as this signal.
        const KDSIGACCEPT: libc::c_ulong = 0x4B4E;
        libc::ioctl(0, KDSIGACCEPT as _, libc::SIGWINCH as libc::c_ulong);
    }
}

// ---------------------------------------------------------------------------
// The end of a shutdown

/// Whether any process other than us is left to wait for: every process
/// of a machine (or of a PID namespace) descends from process 1, and the
/// orphans among them are our children, so this is "has process 1 any
/// child", without reading `/proc` (a zombie child counts until reaped).
/// A process entered into our namespace from outside (`nsenter`) is not
/// our child until its parent is gone: it gets the signals of
/// [`signal_rest`] but is not waited for.
pub fn rest_alive() -> bool {
    use nix::sys::wait::{Id, WaitPidFlag, waitid};
    let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT;
    !matches!(waitid(Id::All, flags), Err(Errno::ECHILD))
}

/// Sends `signal` to every process but us (`kill(-1)` reaches all but
/// process 1 and the caller; the kernel's own threads ignore it).
pub fn signal_rest(signal: Signal) {
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(-1), signal);
}

/// How long the processes left after the jobs are stopped get between
/// SIGTERM and SIGKILL.
pub const TERM_GRACE: Duration = Duration::from_secs(5);

/// How long we wait for the SIGKILLed to go.
pub const KILL_GRACE: Duration = Duration::from_secs(2);

/// The last step: in a PID namespace, exit 0; on the machine, sync,
/// unmount (or remount read-only) what can be, and `reboot(2)`. Never
/// returns: should `reboot(2)` fail, the daemon reaps orphans forever.
pub fn finish(kind: ShutdownKind, place: Place) -> ! {
    nix::unistd::sync();
    if place == Place::Namespace {
        tracing::info!("{}: process 1 of a PID namespace exits", kind.name());
        std::process::exit(0);
    }
    unmount_all();
    nix::unistd::sync();
    let mode = match kind {
        ShutdownKind::Poweroff => nix::sys::reboot::RebootMode::RB_POWER_OFF,
        ShutdownKind::Reboot => nix::sys::reboot::RebootMode::RB_AUTOBOOT,
        ShutdownKind::Halt => nix::sys::reboot::RebootMode::RB_HALT_SYSTEM,
    };
    tracing::info!("{}: calling reboot(2)", kind.name());
    let Err(e) = nix::sys::reboot::reboot(mode);
    tracing::error!(
        "reboot(2) for {} failed: {e}; reaping orphans from now on",
        kind.name()
    );
    reap_forever()
}

/// Whatever else fails, process 1 reaps its orphans.
pub fn reap_forever() -> ! {
    loop {
        let mut status = 0;
        // SAFETY: waitpid with a valid pointer.
        let pid = unsafe { libc::waitpid(-1, &mut status, 0) };
        if pid < 0 && Errno::last() == Errno::ECHILD {
            // Nothing to wait for: sleep until a signal (SIGCHLD is not
            // ignored, so a new orphan wakes us).
            // SAFETY: pause has no arguments.
            unsafe { libc::pause() };
        }
    }
}

/// File systems whose unmounting is pointless or harmful at the end
/// (kernel-backed; their data is not on a disk).
const VIRTUAL: &[&str] = &[
    "proc",
    "sysfs",
    "devtmpfs",
    "devpts",
    "tmpfs",
    "ramfs",
    "rootfs",
    "cgroup",
    "cgroup2",
    "securityfs",
    "debugfs",
    "tracefs",
    "pstore",
    "bpf",
    "mqueue",
    "hugetlbfs",
    "configfs",
    "fusectl",
    "autofs",
    "binfmt_misc",
    "efivarfs",
];

/// Unmounts every disk file system, innermost first; what is busy (`/`
/// among them) is remounted read-only instead.
fn unmount_all() {
    let Ok(text) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    let mut mounts: Vec<(String, String)> = text.lines().filter_map(parse_mountinfo).collect();
    mounts.reverse();
    for (target, fstype) in mounts {
        if VIRTUAL.contains(&fstype.as_str()) {
            continue;
        }
        if target != "/" && umount2(target.as_str(), MntFlags::empty()).is_ok() {
            tracing::info!("unmounted {target}");
            continue;
        }
        let flags = MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
        match mount(None::<&str>, target.as_str(), None::<&str>, flags, None::<&str>) {
            Ok(()) => tracing::info!("remounted {target} read-only"),
            Err(e) => tracing::warn!("unable to unmount or remount {target} read-only: {e}"),
        }
    }
}

/// The mount point and type of a `/proc/self/mountinfo` line (octal
/// escapes in the mount point decoded).
fn parse_mountinfo(line: &str) -> Option<(String, String)> {
    let mut fields = line.split(' ');
    let target = fields.nth(4)?;
    let mut rest = fields.skip_while(|f| *f != "-");
    rest.next()?;
    let fstype = rest.next()?;
    Some((unescape_octal(target), fstype.to_string()))
}

fn unescape_octal(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shutdown_kinds() {
        for k in [ShutdownKind::Poweroff, ShutdownKind::Reboot, ShutdownKind::Halt] {
            assert_eq!(ShutdownKind::parse(k.name()), Some(k));
        }
        assert_eq!(ShutdownKind::parse("off"), None);
        assert_eq!(ShutdownKind::Reboot.runlevel(), "6");
        assert_eq!(ShutdownKind::Halt.runlevel(), "0");
    }

    #[test]
    fn mountinfo_lines() {
        let line = "36 35 98:0 /mnt1 /mnt\\040two rw,noatime master:1 - ext3 /dev/root rw,errors=continue";
        assert_eq!(
            parse_mountinfo(line),
            Some(("/mnt two".to_string(), "ext3".to_string()))
        );
        let line = "22 1 0:21 / /proc rw,nosuid - proc proc rw";
        assert_eq!(parse_mountinfo(line), Some(("/proc".into(), "proc".into())));
        assert_eq!(parse_mountinfo("garbage"), None);
    }

    #[test]
    fn mount_points() {
        assert!(is_mount_point(Path::new("/")));
        assert!(is_mount_point(Path::new("/proc")));
        assert!(!is_mount_point(Path::new("/proc/self")));
        assert!(!is_mount_point(Path::new("/nonexistent-upshot")));
    }
}

//! Per-job log files for `console log` (spec §1.4 "Console details").
//!
//! A job process with `console log` has its stdout and stderr on the slave side of a pty; the
//! daemon keeps the master side and hands it to [`JobLogs::attach`].  The single-threaded main
//! loop polls [`JobLogs::fds`] for `POLLIN` and calls [`JobLogs::on_readable`], which reads
//! everything available (without blocking: masters are switched to `O_NONBLOCK`) and appends it
//! to `LOGDIR/JOB.log`, or `LOGDIR/JOB-INSTANCE.log` for a named instance, with every `/` in the
//! job and instance names replaced by `_`.  All processes of one instance (pre-start, main,
//! post-stop, ...) share one file.  A stream ends on EOF or `EIO` (the kernel's answer once every
//! copy of the slave is closed and the data queued before that has been read).
//!
//! # Files
//!
//! Files are opened `O_WRONLY | O_APPEND | O_CLOEXEC | O_NOCTTY | O_NONBLOCK`.  A file that did
//! not exist is created with the configured mode exactly (default `0640`, see
//! [`JobLogs::with_mode`]; `fchmod` afterwards so the umask does not interfere).  A missing log
//! directory is created `0755` (only its last component unless [`JobLogs::with_create_parents`]:
//! in early boot a missing `/var/log` usually means `/var` is not mounted yet, and creating the
//! directory underneath the future mount point would hide the logs).  Only regular files and
//! character devices (say a symlink to `/dev/null`) are written to.  Every failure is reported
//! with `tracing::warn!` naming the file, once per run of failures, and never panics.
//!
//! # Buffering
//!
//! Output that cannot be written (directory missing or read-only, disk full, ...) is kept in
//! memory, per log file, up to a bound (default 1 MiB, [`JobLogs::with_buffer_limit`]).  When the
//! bound is exceeded the *oldest* buffered bytes are dropped (rounded up to the end of that line
//! when a newline follows within 4 KiB), and when the buffer is eventually written it is preceded
//! by one line `[upshot: N bytes dropped]`.  Buffered output is written, in order and before any
//! newer output, at the next write attempt for that file (that is, whenever its job produces
//! output), on [`JobLogs::disk_writeable`] (`NotifyDiskWriteable`) and on [`JobLogs::reopen`].
//! A log whose streams have all ended is closed as soon as it has nothing buffered.
//!
//! # Rotation
//!
//! * **copytruncate** (logrotate copies the file, then truncates it in place): because the file
//!   is opened with `O_APPEND`, the next write lands at the new end of the file, i.e. at offset 0
//!   after the truncation, so there is never a hole of NUL bytes and the daemon does not need to
//!   notice anything.  (Output written between logrotate's copy and its truncation is lost; that
//!   window is inherent to copytruncate and outside the daemon's control.)
//! * **move (or delete) then signal**: before every write the open file is checked against its
//!   path: `fstat` of our descriptor versus `stat` of the path.  If the path no longer exists, or
//!   names a different file (device or inode differ), or our file has no links left, the file is
//!   closed and the path is opened (created) afresh.  So *the first write after the move goes to
//!   the new file at the path*, nothing is written to the moved file after the move has happened,
//!   and a SIGHUP is not needed.  [`JobLogs::reopen`] (the daemon's SIGHUP handler) closes every
//!   log file at once, releasing moved files even for jobs that stay silent; each path is opened
//!   again at its next write (immediately if output is buffered), so a silent job does not
//!   recreate an empty file.  The only residual race is a rename between our check and our
//!   `write` (microseconds): those bytes land at the end of the moved file, still not lost.  If
//!   logrotate's `create` runs after we already recreated the file, logrotate moves ours aside
//!   to a `.backup` name; again nothing is lost.  The same check notices a file system mounted
//!   over the log directory after the file was opened.
//! * **size-based rotation by the daemon** ([`JobLogs::set_max_size`], off by default): before a
//!   write would make the file larger than the limit, `X.log.4` → `X.log.5`, ..., `X.log.1` →
//!   `X.log.2`, `X.log` → `X.log.1` (the old `X.log.5` is replaced, so at most five old files
//!   are kept) and a new `X.log` is started.  Output is split at line boundaries, so a file
//!   exceeds the limit never, and a line is split only if it alone is longer than the limit.
//!   The size is taken from `fstat` at every write, so external truncation is accounted for.  If
//!   a rename fails the file keeps growing (one warning) until [`JobLogs::reopen`] or
//!   [`JobLogs::disk_writeable`] re-enables rotation.
//!
//! # Terminal modes
//!
//! The bytes read from the master are written unchanged.  With the kernel's default pty modes
//! (`OPOST | ONLCR`, as Upstart used them) every `\n` the job writes arrives as `\r\n`;
//! [`open_pty`] with `raw_output` clears `OPOST` on the slave so the log holds exactly what the
//! job wrote.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::ffi::OsString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, FdFlag, OFlag, fcntl, open};
use nix::sys::stat::{Mode, SFlag, fchmod, fstat, stat};

/// Default mode of a newly created log file (a session init uses `0600`).
pub const DEFAULT_MODE: u32 = 0o640;
/// Mode of a log directory this module creates.
pub const DIR_MODE: u32 = 0o755;
/// Default bound of the in-memory buffer of one log file.
pub const DEFAULT_BUFFER_LIMIT: usize = 1 << 20;
/// Number of old files kept by size-based rotation (`X.log.1` ... `X.log.5`).
pub const ROTATE_KEEP: u32 = 5;

/// Bytes read from a master per `read` call.
const READ_CHUNK: usize = 64 * 1024;
/// Bytes read from one master per `on_readable` call, so that one chatty job cannot starve the
/// main loop; poll is level-triggered and reports the rest at once.
const READ_BUDGET: usize = 1 << 20;
/// How many read budgets [`JobLogs::drain`] spends on one stream.
const DRAIN_BUDGETS: usize = 16;
/// How far past the cut we look for a newline when dropping buffered output.
const DROP_ALIGN: usize = 4096;

/// The log files of all `console log` jobs, and the pty masters feeding them.
pub struct JobLogs {
    cfg: Config,
    logs: HashMap<PathBuf, Log>,
    streams: BTreeMap<RawFd, Stream>,
    scratch: Vec<u8>,
}

struct Config {
    dir: PathBuf,
    mode: u32,
    buffer_limit: usize,
    max_size: Option<u64>,
    create_parents: bool,
}

/// One pty master being drained into the log at `log`.
struct Stream {
    fd: OwnedFd,
    log: PathBuf,
}

/// One log file: where it goes, what could not be written yet, and who feeds it.
struct Log {
    sink: Sink,
    buf: VecDeque<u8>,
    /// Bytes dropped from the front of `buf` since the last marker line was written.
    dropped: u64,
    /// Attached streams writing here.
    streams: usize,
}

/// The file side of a log.
struct Sink {
    path: PathBuf,
    file: Option<OpenFile>,
    /// The last byte written ended a line (or nothing was written yet).
    at_line_start: bool,
    /// A failure has been reported and nothing was written since.
    failing: bool,
    /// Size-based rotation failed; don't retry until reopen/disk_writeable.
    rotate_failed: bool,
}

struct OpenFile {
    fd: OwnedFd,
    dev: libc::dev_t,
    ino: libc::ino_t,
    size: u64,
}

impl JobLogs {
    /// Logs under `dir` (`/var/log/upstart`, `$XDG_CACHE_HOME/upstart`, `--logdir`, ...).
    pub fn new(dir: PathBuf) -> JobLogs {
        JobLogs {
            cfg: Config {
                dir,
                mode: DEFAULT_MODE,
                buffer_limit: DEFAULT_BUFFER_LIMIT,
                max_size: None,
                create_parents: false,
            },
            logs: HashMap::new(),
            streams: BTreeMap::new(),
            scratch: vec![0; READ_CHUNK],
        }
    }

    /// Mode of newly created log files (default [`DEFAULT_MODE`]; `0o600` for a session init).
    pub fn with_mode(mut self, mode: u32) -> JobLogs {
        self.cfg.mode = mode & 0o7777;
        self
    }

    /// Bound of the in-memory buffer of each log file (default [`DEFAULT_BUFFER_LIMIT`]).
    pub fn with_buffer_limit(mut self, bytes: usize) -> JobLogs {
        self.cfg.buffer_limit = bytes;
        self
    }

    /// Create missing parents of the log directory too (for a session init, whose
    /// `$XDG_CACHE_HOME` may not exist yet).  Off by default: see the module docs.
    pub fn with_create_parents(mut self, yes: bool) -> JobLogs {
        self.cfg.create_parents = yes;
        self
    }

    /// Size-based rotation: keep each log file at most `max` bytes, see the module docs.
    /// `None` (the default) turns it off.
    pub fn set_max_size(&mut self, max: Option<u64>) {
        self.cfg.max_size = max;
        for log in self.logs.values_mut() {
            log.sink.rotate_failed = false;
        }
    }

    pub fn dir(&self) -> &Path {
        &self.cfg.dir
    }

    /// `DIR/JOB[-INSTANCE].log` with '/' in JOB and INSTANCE replaced by '_'.
    pub fn path_for(&self, job: &str, instance: &str) -> PathBuf {
        let mut name = job.replace('/', "_");
        if !instance.is_empty() {
            name.push('-');
            name.push_str(&instance.replace('/', "_"));
        }
        name.push_str(".log");
        self.cfg.dir.join(name)
    }

    /// Start draining a pty master for an instance (a later process of the same instance
    /// appends to the same file).  The master is made non-blocking and close-on-exec.
    pub fn attach(&mut self, job: &str, instance: &str, master: OwnedFd) {
        let path = self.path_for(job, instance);
        if let Err(e) = set_nonblock_cloexec(master.as_fd()) {
            tracing::warn!(file = %path.display(), error = %e, "cannot make log pty non-blocking");
        }
        let fd = master.as_raw_fd();
        self.logs
            .entry(path.clone())
            .or_insert_with(|| Log::new(path.clone()))
            .streams += 1;
        self.streams.insert(
            fd,
            Stream {
                fd: master,
                log: path,
            },
        );
    }

    /// Fds to poll for POLLIN.
    pub fn fds(&self) -> Vec<RawFd> {
        self.streams.keys().copied().collect()
    }

    /// Called when `fd` is readable (or has POLLHUP/POLLERR): read everything available,
    /// write it out; EIO or EOF ends that stream (drop it after draining).  Returns `true` if
    /// it stopped at the per-call budget with the stream still open (more may be waiting).
    pub fn on_readable(&mut self, fd: RawFd) -> bool {
        let Some(stream) = self.streams.get(&fd) else {
            tracing::debug!(fd, "on_readable for an fd that is not a log stream");
            return false;
        };
        let log = self.logs.entry(stream.log.clone()).or_insert_with(|| {
            let mut log = Log::new(stream.log.clone());
            log.streams = 1;
            log
        });
        let mut total = 0;
        let ended = loop {
            match nix::unistd::read(&stream.fd, &mut self.scratch) {
                Ok(0) => break true,
                Ok(n) => {
                    log.submit(&self.scratch[..n], &self.cfg);
                    total += n;
                    if total >= READ_BUDGET {
                        break false;
                    }
                }
                Err(Errno::EINTR) => {}
                Err(Errno::EAGAIN) => break false,
                // The slave side is closed everywhere and everything queued has been read.
                Err(Errno::EIO) => break true,
                Err(e) => {
                    tracing::warn!(file = %stream.log.display(), error = %e, "reading job output failed");
                    break true;
                }
            }
        };
        if ended && let Some(stream) = self.streams.remove(&fd) {
            if let Some(log) = self.logs.get_mut(&stream.log) {
                log.streams = log.streams.saturating_sub(1);
            }
            self.collect(&stream.log);
        }
        !ended && total >= READ_BUDGET
    }

    /// Reads what every stream holds right now, without waiting for more (the daemon is
    /// exiting: output a job wrote just before it ended must not be lost).  At most
    /// `DRAIN_BUDGETS` budgets per stream, so a writer that outlives its job cannot hold the
    /// daemon up.
    pub fn drain(&mut self) {
        for fd in self.fds() {
            for _ in 0..DRAIN_BUDGETS {
                if !self.on_readable(fd) {
                    break;
                }
            }
        }
    }

    /// SIGHUP: close every log file; each is reopened by path at its next write, at once if
    /// output is buffered for it.
    pub fn reopen(&mut self) {
        for log in self.logs.values_mut() {
            log.sink.file = None;
            log.sink.failing = false;
            log.sink.rotate_failed = false;
            log.flush(&self.cfg);
        }
        self.collect_all();
    }

    /// `NotifyDiskWriteable`: flush buffers now.
    pub fn disk_writeable(&mut self) {
        for log in self.logs.values_mut() {
            if log.pending() {
                log.sink.failing = false;
                log.sink.rotate_failed = false;
                log.flush(&self.cfg);
            }
        }
        self.collect_all();
    }

    /// Bytes buffered in memory (for tests and status).
    pub fn buffered(&self) -> usize {
        self.logs.values().map(|log| log.buf.len()).sum()
    }

    /// Drop the log at `path` if nothing feeds it and nothing is buffered (closes the file).
    fn collect(&mut self, path: &Path) {
        if self
            .logs
            .get(path)
            .is_some_and(|log| log.streams == 0 && !log.pending())
        {
            self.logs.remove(path);
        }
    }

    fn collect_all(&mut self) {
        self.logs.retain(|_, log| log.streams > 0 || log.pending());
    }
}

impl Drop for JobLogs {
    /// Last chance for buffered output (the daemon exiting or re-executing).
    fn drop(&mut self) {
        for log in self.logs.values_mut() {
            log.flush(&self.cfg);
        }
    }
}

impl Log {
    fn new(path: PathBuf) -> Log {
        Log {
            sink: Sink {
                path,
                file: None,
                at_line_start: true,
                failing: false,
                rotate_failed: false,
            },
            buf: VecDeque::new(),
            dropped: 0,
            streams: 0,
        }
    }

    fn pending(&self) -> bool {
        !self.buf.is_empty() || self.dropped > 0
    }

    /// New output: write it, after anything buffered; buffer what cannot be written.
    fn submit(&mut self, data: &[u8], cfg: &Config) {
        if data.is_empty() {
            return;
        }
        if self.pending() {
            self.push(data, cfg.buffer_limit);
            self.flush(cfg);
            return;
        }
        let written = if self.sink.ensure_open(cfg) {
            self.sink.write_out(data, cfg)
        } else {
            0
        };
        if written < data.len() {
            self.push(&data[written..], cfg.buffer_limit);
        }
    }

    /// Write out the buffer (marker line first if output was dropped), as far as possible.
    fn flush(&mut self, cfg: &Config) {
        if !self.pending() || !self.sink.ensure_open(cfg) {
            return;
        }
        if self.dropped > 0 {
            let marker = format!(
                "{}[upshot: {} bytes dropped]\n",
                if self.sink.at_line_start { "" } else { "\n" },
                self.dropped
            );
            if self.sink.write_out(marker.as_bytes(), cfg) == 0 {
                return;
            }
            self.dropped = 0;
        }
        while !self.buf.is_empty() {
            let (front, _) = self.buf.as_slices();
            let want = front.len();
            let n = self.sink.write_out(front, cfg);
            self.buf.drain(..n);
            if n < want {
                return;
            }
        }
        // Give back the memory of a large backlog.
        self.buf.shrink_to(READ_CHUNK);
    }

    /// Buffer `data`, dropping the oldest bytes beyond `limit`.
    fn push(&mut self, data: &[u8], limit: usize) {
        self.buf.extend(data);
        if self.buf.len() <= limit {
            return;
        }
        let mut cut = self.buf.len() - limit;
        if self.buf[cut - 1] != b'\n'
            && let Some(p) = self.buf.range(cut..).take(DROP_ALIGN).position(|&b| b == b'\n')
        {
            cut += p + 1;
        }
        self.buf.drain(..cut);
        if self.dropped == 0 {
            tracing::warn!(
                file = %self.sink.path.display(),
                limit,
                "log file not writable and its buffer is full; dropping the oldest output"
            );
        }
        self.dropped += cut as u64;
    }
}

impl Sink {
    /// Make sure `file` is open and is the file at `path` (see "Rotation" in the module docs);
    /// refresh its size.  False (after reporting) if no file can be opened.
    fn ensure_open(&mut self, cfg: &Config) -> bool {
        if let Some(file) = &mut self.file {
            if file.is_current(&self.path) {
                return true;
            }
            tracing::info!(file = %self.path.display(), "log file was moved or deleted; reopening it");
            self.file = None;
        }
        match open_log_file(&self.path, cfg) {
            Ok(file) => {
                self.file = Some(file);
                true
            }
            Err(e) => {
                self.fail("cannot open log file", &e);
                false
            }
        }
    }

    /// Write `data` to the open file, rotating by size as configured.  Returns how many bytes
    /// were written; on a failure (reported) the file is closed, to be reopened by path at the
    /// next attempt.
    fn write_out(&mut self, data: &[u8], cfg: &Config) -> usize {
        let mut off = 0;
        let mut just_rotated = false;
        while off < data.len() {
            let rest = &data[off..];
            let mut len = rest.len();
            if let Some(max) = cfg.max_size
                && !self.rotate_failed
            {
                let size = self.file.as_ref().map_or(0, |f| f.size);
                let room = usize::try_from(max.saturating_sub(size)).unwrap_or(usize::MAX);
                if len > room {
                    match rest[..room].iter().rposition(|&b| b == b'\n') {
                        Some(p) => len = p + 1,
                        None if size > 0 && !just_rotated => {
                            if self.rotate(cfg) {
                                just_rotated = true;
                                continue;
                            }
                            return off;
                        }
                        // A line longer than the limit into an empty file (or into the one a
                        // rotation just started, whatever it holds): split it.
                        None => len = room.max(1),
                    }
                }
            }
            let Some(file) = &mut self.file else {
                return off;
            };
            let (n, err) = write_all(file.fd.as_fd(), &rest[..len]);
            file.size += n as u64;
            just_rotated = false;
            if n > 0 {
                self.at_line_start = rest[n - 1] == b'\n';
            }
            off += n;
            if let Some(e) = err {
                self.file = None;
                self.fail("cannot write log file", &io::Error::from(e));
                return off;
            }
        }
        if self.failing {
            tracing::info!(file = %self.path.display(), "log file is writable again");
            self.failing = false;
        }
        off
    }

    /// Shift `X.log.N` up by one and `X.log` to `X.log.1`, then open a new `X.log`.  On a rename
    /// failure rotation is disabled (reported once) and the current path is reopened.  True if
    /// a file is open afterwards.
    fn rotate(&mut self, cfg: &Config) -> bool {
        self.file = None;
        let mut renames: Vec<(PathBuf, PathBuf)> = (1..ROTATE_KEEP)
            .rev()
            .map(|i| (numbered(&self.path, i), numbered(&self.path, i + 1)))
            .collect();
        renames.push((self.path.clone(), numbered(&self.path, 1)));
        for (from, to) in renames {
            match std::fs::rename(&from, &to) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(
                        file = %from.display(),
                        to = %to.display(),
                        error = %e,
                        "cannot rotate log file; it will grow past its size limit"
                    );
                    self.rotate_failed = true;
                    break;
                }
            }
        }
        self.ensure_open(cfg)
    }

    fn fail(&mut self, what: &str, e: &io::Error) {
        if self.failing {
            tracing::debug!(file = %self.path.display(), error = %e, "{what}");
        } else {
            tracing::warn!(file = %self.path.display(), error = %e, "{what}; buffering output in memory");
            self.failing = true;
        }
    }
}

impl OpenFile {
    /// Is this still the file at `path`?  Refreshes `size`.
    fn is_current(&mut self, path: &Path) -> bool {
        let Ok(st) = fstat(&self.fd) else {
            return false;
        };
        if st.st_nlink == 0 {
            return false;
        }
        self.size = u64::try_from(st.st_size).unwrap_or(0);
        match stat(path) {
            Ok(p) => p.st_dev == self.dev && p.st_ino == self.ino,
            Err(Errno::ENOENT | Errno::ENOTDIR) => false,
            // Cannot tell (EACCES, ...): keep the file we have.
            Err(_) => true,
        }
    }
}

/// Open `path` for appending, creating it (and the log directory) if needed.
fn open_log_file(path: &Path, cfg: &Config) -> io::Result<OpenFile> {
    let flags = OFlag::O_WRONLY | OFlag::O_APPEND | OFlag::O_CLOEXEC | OFlag::O_NOCTTY | OFlag::O_NONBLOCK;
    let mode = Mode::from_bits_truncate(cfg.mode);
    let mut made_dir = false;
    // Create exclusively first so that a file we create gets exactly `mode`; an existing file
    // keeps its mode.  Retry if the file disappears in between.
    for _ in 0..4 {
        match open(path, flags | OFlag::O_CREAT | OFlag::O_EXCL, mode) {
            Ok(fd) => {
                if let Err(e) = fchmod(&fd, mode) {
                    tracing::warn!(file = %path.display(), error = %e, "cannot set log file mode");
                }
                return describe(fd);
            }
            Err(Errno::EEXIST) => {}
            Err(Errno::ENOENT) if !made_dir => {
                made_dir = true;
                create_dir(&cfg.dir, cfg.create_parents)?;
                continue;
            }
            Err(e) => return Err(e.into()),
        }
        match open(path, flags, Mode::empty()) {
            Ok(fd) => return describe(fd),
            Err(Errno::ENOENT) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Err(Errno::ENOENT.into())
}

fn describe(fd: OwnedFd) -> io::Result<OpenFile> {
    let st = fstat(&fd)?;
    let kind = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT;
    if kind != SFlag::S_IFREG && kind != SFlag::S_IFCHR {
        return Err(io::Error::other("not a regular file"));
    }
    Ok(OpenFile {
        fd,
        dev: st.st_dev,
        ino: st.st_ino,
        size: u64::try_from(st.st_size).unwrap_or(0),
    })
}

fn create_dir(dir: &Path, parents: bool) -> io::Result<()> {
    match std::fs::DirBuilder::new()
        .recursive(parents)
        .mode(DIR_MODE)
        .create(dir)
    {
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => Err(e),
        _ => Ok(()),
    }
}

/// `write` until done or failed; returns bytes written and the error, if any.
fn write_all(fd: BorrowedFd<'_>, data: &[u8]) -> (usize, Option<Errno>) {
    let mut done = 0;
    while done < data.len() {
        match nix::unistd::write(fd, &data[done..]) {
            Ok(0) => return (done, Some(Errno::EIO)),
            Ok(n) => done += n,
            Err(Errno::EINTR) => {}
            Err(e) => return (done, Some(e)),
        }
    }
    (done, None)
}

/// `X.log` → `X.log.N`.
fn numbered(path: &Path, n: u32) -> PathBuf {
    let mut s = OsString::from(path.as_os_str());
    s.push(format!(".{n}"));
    PathBuf::from(s)
}

fn set_nonblock_cloexec(fd: BorrowedFd<'_>) -> nix::Result<()> {
    let fl = OFlag::from_bits_retain(fcntl(fd, FcntlArg::F_GETFL)?);
    if !fl.contains(OFlag::O_NONBLOCK) {
        fcntl(fd, FcntlArg::F_SETFL(fl | OFlag::O_NONBLOCK))?;
    }
    let fdfl = FdFlag::from_bits_retain(fcntl(fd, FcntlArg::F_GETFD)?);
    if !fdfl.contains(FdFlag::FD_CLOEXEC) {
        fcntl(fd, FcntlArg::F_SETFD(fdfl | FdFlag::FD_CLOEXEC))?;
    }
    Ok(())
}

/// A pty pair for a `console log` process: `(master, slave)`, both close-on-exec (the child's
/// `dup2` onto stdout/stderr clears the flag on the copies), the master non-blocking, ready
/// for [`JobLogs::attach`].  With `raw_output` the slave's output post-processing (`OPOST`) is
/// off, so the log holds the job's bytes verbatim; without it the kernel defaults stay, as in
/// Upstart, and `\n` is logged as `\r\n`.
pub fn open_pty(raw_output: bool) -> nix::Result<(OwnedFd, OwnedFd)> {
    use nix::pty::{grantpt, posix_openpt, ptsname_r, unlockpt};
    use nix::sys::termios::{OutputFlags, SetArg, tcgetattr, tcsetattr};

    let master = posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)?;
    grantpt(&master)?;
    unlockpt(&master)?;
    let name = ptsname_r(&master)?;
    let slave = open(
        name.as_str(),
        OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    if raw_output {
        let mut t = tcgetattr(&slave)?;
        t.output_flags.remove(OutputFlags::OPOST);
        tcsetattr(&slave, SetArg::TCSANOW, &t)?;
    }
    let master = OwnedFd::from(master);
    set_nonblock_cloexec(master.as_fd())?;
    Ok((master, slave))
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    use nix::pty::openpty;
    use nix::sys::termios::{OutputFlags, SetArg, tcgetattr, tcsetattr};
    use std::fs;
    use std::os::unix::fs::PermissionsExt;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A fresh directory, removed when dropped.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new() -> TempDir {
            static N: AtomicUsize = AtomicUsize::new(0);
            let n = N.fetch_add(1, Ordering::Relaxed);
            let dir = std::env::temp_dir().join(format!("joblog-test-{}-{n}", std::process::id()));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    /// A pty from `openpty` with output post-processing off (bytes arrive verbatim).
    fn pty() -> (OwnedFd, OwnedFd) {
        let p = openpty(None, None).unwrap();
        let mut t = tcgetattr(&p.slave).unwrap();
        t.output_flags.remove(OutputFlags::OPOST);
        tcsetattr(&p.slave, SetArg::TCSANOW, &t).unwrap();
        (p.master, p.slave)
    }

    fn put(slave: &OwnedFd, s: &str) {
        let (n, err) = write_all(slave.as_fd(), s.as_bytes());
        assert_eq!((n, err), (s.len(), None));
    }

    /// Run the main loop until nothing is readable for 100 ms or no stream is left.
    fn pump(logs: &mut JobLogs) {
        loop {
            let fds = logs.fds();
            if fds.is_empty() {
                return;
            }
            let ready: Vec<RawFd> = {
                let borrowed: Vec<BorrowedFd<'_>> = fds
                    .iter()
                    .map(|&fd| unsafe { BorrowedFd::borrow_raw(fd) })
                    .collect();
                let mut pfds: Vec<PollFd<'_>> = borrowed
                    .iter()
                    .map(|fd| PollFd::new(*fd, PollFlags::POLLIN))
                    .collect();
                if poll(&mut pfds, PollTimeout::from(100u16)).unwrap() == 0 {
                    return;
                }
                pfds.iter()
                    .zip(&fds)
                    .filter(|(p, _)| p.revents().is_some_and(|r| !r.is_empty()))
                    .map(|(_, fd)| *fd)
                    .collect()
            };
            for fd in ready {
                logs.on_readable(fd);
            }
        }
    }

    /// Close the slave and run the loop until its stream has ended.
    fn finish(logs: &mut JobLogs, slave: OwnedFd) {
        let before = logs.fds().len();
        drop(slave);
        for _ in 0..50 {
            pump(logs);
            if logs.fds().len() < before {
                return;
            }
        }
        panic!("stream did not end");
    }

    fn read(path: &Path) -> String {
        String::from_utf8(fs::read(path).unwrap()).unwrap()
    }

    fn mode_of(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    fn lines(range: std::ops::Range<usize>) -> String {
        range.map(|i| format!("line {i}\n")).collect()
    }

    #[test]
    fn writes_output_to_job_log() {
        let tmp = TempDir::new();
        let dir = tmp.0.join("logs");
        let mut logs = JobLogs::new(dir.clone());
        assert_eq!(logs.dir(), dir);
        let (master, slave) = pty();
        let mfd = master.as_raw_fd();
        logs.attach("foo", "", master);
        assert_eq!(logs.fds(), vec![mfd]);
        put(&slave, "hello\nworld\n");
        pump(&mut logs);
        let path = dir.join("foo.log");
        assert_eq!(read(&path), "hello\nworld\n");
        assert_eq!(mode_of(&path), 0o640);
        assert_eq!(mode_of(&dir), 0o755);
        assert_eq!(logs.buffered(), 0);
        // A partial line is written as it comes.
        put(&slave, "no newline");
        pump(&mut logs);
        assert_eq!(read(&path), "hello\nworld\nno newline");
        finish(&mut logs, slave);
        assert_eq!(read(&path), "hello\nworld\nno newline");
    }

    #[test]
    fn fds_are_nonblocking_and_cloexec() {
        let tmp = TempDir::new();
        let mut logs = JobLogs::new(tmp.0.clone());
        let p = openpty(None, None).unwrap(); // blocking, inheritable
        let mfd = p.master.as_raw_fd();
        logs.attach("j", "", p.master);
        let stream = &logs.streams[&mfd];
        let fl = OFlag::from_bits_retain(fcntl(&stream.fd, FcntlArg::F_GETFL).unwrap());
        assert!(fl.contains(OFlag::O_NONBLOCK));
        let fdfl = FdFlag::from_bits_retain(fcntl(&stream.fd, FcntlArg::F_GETFD).unwrap());
        assert!(fdfl.contains(FdFlag::FD_CLOEXEC));
        // Nothing to read: returns at once.
        logs.on_readable(mfd);
        assert_eq!(logs.fds(), vec![mfd]);
        put(&p.slave, "x\n");
        pump(&mut logs);
        let file = logs.logs.values().next().unwrap().sink.file.as_ref().unwrap();
        let fdfl = FdFlag::from_bits_retain(fcntl(&file.fd, FcntlArg::F_GETFD).unwrap());
        assert!(fdfl.contains(FdFlag::FD_CLOEXEC));
        // An unknown fd is ignored.
        logs.on_readable(9999);
    }

    #[test]
    fn naming() {
        let tmp = TempDir::new();
        let mut logs = JobLogs::new(tmp.0.clone());
        assert_eq!(logs.path_for("foo", ""), tmp.0.join("foo.log"));
        assert_eq!(logs.path_for("foo", "bar"), tmp.0.join("foo-bar.log"));
        assert_eq!(logs.path_for("a/b/c", ""), tmp.0.join("a_b_c.log"));
        assert_eq!(logs.path_for("net/if", "eth0/1"), tmp.0.join("net_if-eth0_1.log"));

        let (m1, s1) = pty();
        let (m2, s2) = pty();
        let (m3, s3) = pty();
        logs.attach("net/if", "eth0/1", m1);
        logs.attach("net/if", "lo", m2);
        logs.attach("net/if", "", m3);
        put(&s1, "one\n");
        put(&s2, "two\n");
        put(&s3, "three\n");
        pump(&mut logs);
        assert_eq!(read(&tmp.0.join("net_if-eth0_1.log")), "one\n");
        assert_eq!(read(&tmp.0.join("net_if-lo.log")), "two\n");
        assert_eq!(read(&tmp.0.join("net_if.log")), "three\n");
        let mut names: Vec<_> = fs::read_dir(&tmp.0)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        assert_eq!(names, ["net_if-eth0_1.log", "net_if-lo.log", "net_if.log"]);
    }

    #[test]
    fn appends_to_existing_file_and_across_processes() {
        let tmp = TempDir::new();
        let path = tmp.0.join("svc-a.log");
        fs::write(&path, "old\n").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o604)).unwrap();
        let mut logs = JobLogs::new(tmp.0.clone());

        // pre-start
        let (m, s) = pty();
        logs.attach("svc", "a", m);
        put(&s, "pre-start\n");
        finish(&mut logs, s);
        assert_eq!(read(&path), "old\npre-start\n");
        assert!(logs.logs.is_empty(), "idle log closed");

        // main and post-start at the same time
        let (m1, s1) = pty();
        let (m2, s2) = pty();
        logs.attach("svc", "a", m1);
        logs.attach("svc", "a", m2);
        put(&s1, "main\n");
        pump(&mut logs);
        put(&s2, "post-start\n");
        pump(&mut logs);
        finish(&mut logs, s2);
        put(&s1, "main again\n");
        finish(&mut logs, s1);
        assert_eq!(read(&path), "old\npre-start\nmain\npost-start\nmain again\n");
        // An existing file keeps its mode.
        assert_eq!(mode_of(&path), 0o604);
    }

    #[test]
    fn with_mode() {
        let tmp = TempDir::new();
        let mut logs = JobLogs::new(tmp.0.clone()).with_mode(0o600);
        let (m, s) = pty();
        logs.attach("s", "", m);
        put(&s, "x\n");
        finish(&mut logs, s);
        assert_eq!(mode_of(&tmp.0.join("s.log")), 0o600);
    }

    /// The log dir lives under a regular file: not creatable (even as root) until the file is
    /// replaced by a directory.
    fn unwritable_dir(tmp: &TempDir) -> (PathBuf, PathBuf) {
        let blocker = tmp.0.join("file");
        fs::write(&blocker, "").unwrap();
        (blocker.clone(), blocker.join("logs"))
    }

    #[test]
    fn buffers_until_writable_then_flushes_on_disk_writeable() {
        let tmp = TempDir::new();
        let (blocker, dir) = unwritable_dir(&tmp);
        let mut logs = JobLogs::new(dir.clone());
        let (m, s) = pty();
        logs.attach("early", "", m);
        put(&s, &lines(0..50));
        pump(&mut logs);
        put(&s, &lines(50..100));
        pump(&mut logs);
        assert_eq!(logs.buffered(), lines(0..100).len());
        logs.disk_writeable(); // still not writable: nothing lost
        assert_eq!(logs.buffered(), lines(0..100).len());

        fs::remove_file(&blocker).unwrap();
        fs::create_dir(&blocker).unwrap();
        logs.disk_writeable();
        assert_eq!(logs.buffered(), 0);
        let path = dir.join("early.log");
        assert_eq!(read(&path), lines(0..100));
        assert_eq!(mode_of(&dir), 0o755, "we created the log dir itself");
        put(&s, &lines(100..110));
        finish(&mut logs, s);
        assert_eq!(read(&path), lines(0..110));
    }

    #[test]
    fn buffers_until_writable_then_flushes_on_next_write() {
        let tmp = TempDir::new();
        let (blocker, dir) = unwritable_dir(&tmp);
        let mut logs = JobLogs::new(dir.clone());
        let (m, s) = pty();
        logs.attach("early", "", m);
        put(&s, &lines(0..100));
        pump(&mut logs);
        assert!(logs.buffered() > 0);
        fs::remove_file(&blocker).unwrap();
        fs::create_dir_all(&dir).unwrap();
        put(&s, &lines(100..200));
        pump(&mut logs);
        assert_eq!(logs.buffered(), 0);
        assert_eq!(read(&dir.join("early.log")), lines(0..200));
        finish(&mut logs, s);
    }

    #[test]
    fn buffered_output_of_an_ended_stream_is_kept() {
        let tmp = TempDir::new();
        let (blocker, dir) = unwritable_dir(&tmp);
        let mut logs = JobLogs::new(dir.clone()).with_create_parents(true);
        let (m, s) = pty();
        logs.attach("gone", "", m);
        put(&s, "last words\n");
        finish(&mut logs, s);
        assert_eq!(logs.fds(), Vec::<RawFd>::new());
        assert_eq!(logs.buffered(), 11);
        fs::remove_file(&blocker).unwrap(); // parents are created on request
        logs.disk_writeable();
        assert_eq!(logs.buffered(), 0);
        assert!(logs.logs.is_empty());
        assert_eq!(read(&dir.join("gone.log")), "last words\n");
    }

    #[test]
    fn buffer_is_bounded_and_drops_oldest_with_marker() {
        let tmp = TempDir::new();
        let (blocker, dir) = unwritable_dir(&tmp);
        let mut logs = JobLogs::new(dir.clone()).with_buffer_limit(100);
        let (m, s) = pty();
        logs.attach("chatty", "", m);
        for i in 0..30 {
            put(&s, &lines(i..i + 1));
            pump(&mut logs);
            assert!(logs.buffered() <= 100);
        }
        fs::remove_file(&blocker).unwrap();
        fs::create_dir(&blocker).unwrap();
        logs.disk_writeable();
        let all = lines(0..30);
        let text = read(&dir.join("chatty.log"));
        let (marker, rest) = text.split_once('\n').unwrap();
        assert!(all.ends_with(rest), "a suffix of the output is kept: {rest:?}");
        assert!(rest.starts_with("line "), "cut at a line boundary: {rest:?}");
        assert!(rest.len() <= 100 && rest.len() > 80);
        assert_eq!(
            marker,
            format!("[upshot: {} bytes dropped]", all.len() - rest.len())
        );
        // Later output follows normally.
        put(&s, "after\n");
        finish(&mut logs, s);
        assert_eq!(read(&dir.join("chatty.log")), format!("{text}after\n"));
    }

    #[test]
    fn marker_starts_on_a_new_line() {
        let tmp = TempDir::new();
        let dir = tmp.0.join("logs");
        let mut logs = JobLogs::new(dir.clone()).with_buffer_limit(10);
        let (m, s) = pty();
        logs.attach("p", "", m);
        put(&s, "partial");
        pump(&mut logs);
        // Make the path unusable for a while: move the dir away and put a file in its place.
        let away = tmp.0.join("away");
        fs::rename(&dir, &away).unwrap();
        fs::write(&dir, "").unwrap();
        put(&s, " line\n0123456789abcdef\nxyz\n");
        pump(&mut logs);
        assert_eq!(logs.buffered(), 4);
        fs::remove_file(&dir).unwrap();
        fs::rename(&away, &dir).unwrap();
        logs.disk_writeable();
        assert_eq!(
            read(&dir.join("p.log")),
            "partial\n[upshot: 23 bytes dropped]\nxyz\n"
        );
        finish(&mut logs, s);
    }

    #[test]
    fn copytruncate() {
        let tmp = TempDir::new();
        let mut logs = JobLogs::new(tmp.0.clone());
        let (m, s) = pty();
        logs.attach("rot", "", m);
        let path = tmp.0.join("rot.log");
        put(&s, &lines(0..100));
        pump(&mut logs);
        // What logrotate's copytruncate does.
        let copy = tmp.0.join("rot.log.1");
        fs::copy(&path, &copy).unwrap();
        fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(0)
            .unwrap();
        put(&s, &lines(100..110));
        pump(&mut logs);
        let text = fs::read(&path).unwrap();
        assert!(!text.contains(&0), "no NUL hole");
        assert_eq!(String::from_utf8(text).unwrap(), lines(100..110));
        assert_eq!(read(&copy), lines(0..100));
        finish(&mut logs, s);
    }

    #[test]
    fn move_then_write_goes_to_new_file() {
        let tmp = TempDir::new();
        let mut logs = JobLogs::new(tmp.0.clone());
        let (m, s) = pty();
        logs.attach("mv", "", m);
        let path = tmp.0.join("mv.log");
        put(&s, &lines(0..10));
        pump(&mut logs);
        let moved = tmp.0.join("mv.log.1");
        fs::rename(&path, &moved).unwrap();
        // No reopen(): noticed before the next write.
        put(&s, &lines(10..20));
        pump(&mut logs);
        assert_eq!(read(&moved), lines(0..10));
        assert_eq!(read(&path), lines(10..20));
        assert_eq!(mode_of(&path), 0o640);

        // Deleted rather than moved.
        fs::remove_file(&path).unwrap();
        put(&s, &lines(20..30));
        pump(&mut logs);
        assert_eq!(read(&path), lines(20..30));

        // Replaced by another file (logrotate `create` before we wrote again).
        let moved2 = tmp.0.join("mv.log.2");
        fs::rename(&path, &moved2).unwrap();
        fs::write(&path, "").unwrap();
        put(&s, &lines(30..40));
        finish(&mut logs, s);
        assert_eq!(read(&moved2), lines(20..30));
        assert_eq!(read(&path), lines(30..40));
        assert_eq!(read(&moved), lines(0..10));
    }

    #[test]
    fn move_then_reopen() {
        let tmp = TempDir::new();
        let mut logs = JobLogs::new(tmp.0.clone());
        let (m, s) = pty();
        logs.attach("hup", "", m);
        let path = tmp.0.join("hup.log");
        put(&s, &lines(0..10));
        pump(&mut logs);
        let moved = tmp.0.join("hup.log.1");
        fs::rename(&path, &moved).unwrap();
        logs.reopen();
        // The moved file is released at once; the path is recreated at the next write only.
        assert!(logs.logs.values().all(|l| l.sink.file.is_none()));
        assert!(!path.exists());
        put(&s, &lines(10..20));
        pump(&mut logs);
        assert_eq!(read(&moved), lines(0..10));
        assert_eq!(read(&path), lines(10..20));
        // reopen() without a move: keeps appending to the same file.
        logs.reopen();
        put(&s, &lines(20..30));
        finish(&mut logs, s);
        assert_eq!(read(&path), lines(10..30));
    }

    #[test]
    fn reopen_flushes_buffered_output() {
        let tmp = TempDir::new();
        let (blocker, dir) = unwritable_dir(&tmp);
        let mut logs = JobLogs::new(dir.clone());
        let (m, s) = pty();
        logs.attach("b", "", m);
        put(&s, "buffered\n");
        pump(&mut logs);
        assert_eq!(logs.buffered(), 9);
        fs::remove_file(&blocker).unwrap();
        fs::create_dir(&blocker).unwrap();
        logs.reopen();
        assert_eq!(logs.buffered(), 0);
        assert_eq!(read(&dir.join("b.log")), "buffered\n");
        finish(&mut logs, s);
    }

    #[test]
    fn eio_ends_stream_after_all_data() {
        let tmp = TempDir::new();
        let mut logs = JobLogs::new(tmp.0.clone());
        let (m, s) = pty();
        let mfd = m.as_raw_fd();
        logs.attach("e", "", m);
        let data = lines(0..200);
        put(&s, &data);
        drop(s);
        // Wait for the hangup, then one call drains the data and sees EIO.
        let mut revents = PollFlags::empty();
        for _ in 0..50 {
            let fd = unsafe { BorrowedFd::borrow_raw(mfd) };
            let mut p = [PollFd::new(fd, PollFlags::POLLIN)];
            poll(&mut p, PollTimeout::from(100u16)).unwrap();
            revents = p[0].revents().unwrap();
            if revents.contains(PollFlags::POLLHUP) {
                break;
            }
        }
        assert!(revents.contains(PollFlags::POLLHUP));
        logs.on_readable(mfd);
        assert!(logs.fds().is_empty(), "stream ended");
        assert!(logs.logs.is_empty(), "file closed");
        assert_eq!(read(&tmp.0.join("e.log")), data);
    }

    #[test]
    fn ten_thousand_lines_without_loss() {
        let tmp = TempDir::new();
        let mut logs = JobLogs::new(tmp.0.clone());
        let (m, s) = pty();
        logs.attach("flood", "", m);
        let writer = std::thread::spawn(move || {
            // Blocking writes of varying size: the pty fills up unless the master is drained.
            let mut i = 0;
            while i < 10_000 {
                let n = 1 + i % 37;
                let end = (i + n).min(10_000);
                put(&s, &lines(i..end));
                i = end;
            }
            drop(s);
        });
        while !logs.fds().is_empty() {
            pump(&mut logs);
        }
        writer.join().unwrap();
        assert_eq!(read(&tmp.0.join("flood.log")), lines(0..10_000));
    }

    #[test]
    fn size_based_rotation() {
        let tmp = TempDir::new();
        let mut logs = JobLogs::new(tmp.0.clone());
        logs.set_max_size(Some(100));
        let (m, s) = pty();
        logs.attach("big", "", m);
        let path = tmp.0.join("big.log");
        // Some in small writes, some in one large chunk.
        for i in 0..20 {
            put(&s, &lines(i..i + 1));
            pump(&mut logs);
        }
        put(&s, &lines(20..100));
        finish(&mut logs, s);
        let mut kept = String::new();
        for n in (1..=ROTATE_KEEP).rev() {
            let text = read(&numbered(&path, n));
            assert!(text.len() <= 100 && text.len() > 80, "{n}: {} bytes", text.len());
            assert!(text.starts_with("line ") && text.ends_with('\n'), "whole lines");
            kept.push_str(&text);
        }
        let last = read(&path);
        assert!(last.len() <= 100);
        kept.push_str(&last);
        assert!(lines(0..100).ends_with(&kept), "newest output kept in order");
        assert!(!numbered(&path, ROTATE_KEEP + 1).exists());
    }

    #[test]
    fn size_rotation_splits_overlong_lines() {
        let tmp = TempDir::new();
        let mut logs = JobLogs::new(tmp.0.clone());
        logs.set_max_size(Some(10));
        let (m, s) = pty();
        logs.attach("long", "", m);
        let path = tmp.0.join("long.log");
        put(&s, "ab\n0123456789abcdefghij\n");
        finish(&mut logs, s);
        assert_eq!(read(&numbered(&path, 3)), "ab\n");
        assert_eq!(read(&numbered(&path, 2)), "0123456789");
        assert_eq!(read(&numbered(&path, 1)), "abcdefghij");
        assert_eq!(read(&path), "\n");
    }

    #[test]
    fn open_pty_helper() {
        let tmp = TempDir::new();
        let mut logs = JobLogs::new(tmp.0.clone());
        let (m, s) = open_pty(true).unwrap();
        let fdfl = FdFlag::from_bits_retain(fcntl(&s, FcntlArg::F_GETFD).unwrap());
        assert!(fdfl.contains(FdFlag::FD_CLOEXEC));
        logs.attach("raw", "", m);
        put(&s, "a\nb\n");
        finish(&mut logs, s);
        assert_eq!(read(&tmp.0.join("raw.log")), "a\nb\n");

        let (m, s) = open_pty(false).unwrap();
        logs.attach("cooked", "", m);
        put(&s, "a\nb\n");
        finish(&mut logs, s);
        assert_eq!(read(&tmp.0.join("cooked.log")), "a\r\nb\r\n");
    }
}

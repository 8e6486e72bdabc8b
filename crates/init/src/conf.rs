//! Configuration sources: which job files the conf dirs hold, what jobs they
//! define, and watching the dirs so that changes are picked up (spec §1.1,
//! §1.2, and §5 for the session dirs).
//!
//! This module owns the file system side of configuration: walking the conf
//! dirs, choosing the file that owns each job name, applying `.override`
//! files, caching parses, inotify, and reporting what changed as
//! [`ConfChange`] values. It does not own parsing (`jobconf-parser`) nor what
//! a changed definition does to running jobs (the engine).
//!
//! Rules, in brief:
//! - Every `*.conf` under each conf dir, recursively, is a job named by its
//!   path relative to the dir without `.conf`; names `is_ignored` rejects are
//!   skipped, as files and as directories. A `.conf` may be a symlink to a
//!   regular file (as `init --check` accepts); symlinked directories are not
//!   followed.
//! - The first dir, in order, holding a job of a name owns it; later
//!   same-named files are not even read. A file that has never parsed holds
//!   no job (as in Upstart, whose `conf_select_job` skips files without a job),
//!   so it does not shadow a good file in a later dir.
//! - `NAME.override` applies if it is a regular file (never a symlink) beside
//!   the owning `.conf` or in an earlier dir; only the first one in search
//!   order counts. It is applied all or nothing: a broken override leaves the
//!   job as it is without it, and the error is reported.
//! - A `.conf` that fails to parse (or to be read) keeps its last good
//!   definition, with the current override applied on top of it: the daemon
//!   keeps running the old definition. Removing the `.conf` removes the job.
//! - Changes are found by a rescan: a full one on request, or one limited to
//!   the conf dirs an inotify event concerns. Files whose (dev, inode, size,
//!   mtime) did not change are not read again, unless their mtime was so
//!   recent when they were read that a later write could have kept it (the
//!   "racily clean" problem); those are read and compared, not reparsed.
//! - A file seen being written (created empty, or modified, with no
//!   `IN_CLOSE_WRITE` yet) is not read until it is closed, so a half-written
//!   file never replaces a good definition. The mark is dropped when a later
//!   inotify wake-up finds it older than [`PENDING_EXPIRY`] (a writer that
//!   never closes), and a full [`ConfSources::rescan`] ignores it.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fs::{self, OpenOptions};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use jobconf_parser::{
    FileError, JobConf, apply_override, is_ignored, job_name, override_job_name, parse_job,
};
use nix::errno::Errno;
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, WatchDescriptor};
use tracing::{debug, warn};

/// Job files larger than this are refused (a job file is a few kilobytes).
const MAX_FILE_SIZE: u64 = 8 << 20;

/// A file whose mtime is within this window of the time it was read may be
/// rewritten without its mtime changing (coarse timestamps; 2 s covers
/// file systems with one- and two-second granularity).
const RACY_WINDOW: Duration = Duration::from_secs(2);

/// How long a file seen being written is left alone without further events.
pub const PENDING_EXPIRY: Duration = Duration::from_secs(5);

/// The default system conf dir (spec §1.1).
pub const SYSTEM_CONFDIR: &str = "/etc/init";

/// The system-wide session job dir (spec §5).
pub const SYSTEM_USERCONFDIR: &str = "/usr/share/upstart/sessions";

/// A change in the set of job definitions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfChange {
    /// A job is new, or its definition (or the file it comes from) changed.
    Load {
        /// Shared with the sources' own record of the job.
        name: Arc<str>,
        conf: Arc<JobConf>,
        /// The `.conf` file the definition comes from.
        path: PathBuf,
    },
    /// A job no longer has a definition.
    Remove { name: Arc<str> },
}

impl ConfChange {
    /// The job this change is about.
    pub fn name(&self) -> &str {
        match self {
            ConfChange::Load { name, .. } | ConfChange::Remove { name } => name,
        }
    }
}

/// The conf dirs, the jobs they define, and their inotify watches.
#[derive(Debug)]
pub struct ConfSources {
    dirs: Vec<PathBuf>,
    watcher: Option<Watcher>,
    /// What the last walk of each dir found, by index into `dirs`.
    listings: Vec<Listing>,
    cache: Cache,
    /// The definitions reported so far.
    loaded: ByName<Loaded>,
    errors: Vec<FileError>,
    scanned: bool,
}

#[derive(Debug)]
struct Loaded {
    conf: Arc<JobConf>,
    /// The conf dir it comes from, by index into `dirs`.
    dir: usize,
}

/// The `.conf` file of job `name` in conf dir `dir` (no path is stored:
/// each is the dir, the name and the suffix).
fn conf_path(dir: &Path, name: &str) -> PathBuf {
    let mut path = PathBuf::new();
    set_path(&mut path, dir, name, ".conf");
    path
}

/// Makes `buf` the file of job `name` with `suffix` in conf dir `dir`,
/// reusing its allocation (a new path for each file read would be freed
/// among what parsing keeps, leaving holes).
fn set_path<'a>(buf: &'a mut PathBuf, dir: &Path, name: &str, suffix: &str) -> &'a Path {
    buf.as_mut_os_string().clear();
    buf.push(dir);
    buf.push(name);
    buf.as_mut_os_string().push(suffix);
    buf
}

impl ConfSources {
    /// Conf dirs in priority order; sets up inotify (if inotify is
    /// unavailable, log it and work by `rescan` only). Relative dirs are made
    /// absolute against the current directory. Nothing is read until the
    /// first [`rescan`](Self::rescan), which also adds the watches.
    pub fn new(dirs: Vec<PathBuf>) -> ConfSources {
        let dirs: Vec<PathBuf> = dirs
            .into_iter()
            .map(|d| std::path::absolute(&d).unwrap_or(d))
            .collect();
        let watcher = match Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC) {
            Ok(inotify) => Some(Watcher {
                inotify,
                by_path: HashMap::new(),
                by_wd: HashMap::new(),
                wds: HashSet::new(),
                limit_warned: false,
            }),
            Err(e) => {
                warn!("Unable to watch configuration directories: inotify: {e}; changes need a reload");
                None
            }
        };
        ConfSources {
            listings: dirs.iter().map(|_| Listing::default()).collect(),
            dirs,
            watcher,
            cache: Cache::default(),
            loaded: ByName::default(),
            errors: Vec::new(),
            scanned: false,
        }
    }

    pub fn dirs(&self) -> &[PathBuf] {
        &self.dirs
    }

    /// The inotify fd to poll, if any.
    pub fn fd(&self) -> Option<BorrowedFd<'_>> {
        self.watcher.as_ref().map(|w| w.inotify.as_fd())
    }

    /// Full rescan (start-up, SIGHUP, `reload-configuration`): the changes
    /// since the last scan, in job-name order; the first call loads
    /// everything. Unchanged files are still not reparsed, but every current
    /// error is logged again.
    pub fn rescan(&mut self) -> Vec<ConfChange> {
        self.cache.pending.clear();
        self.cache.io_logged.clear();
        self.cache.dir_logged.clear();
        let all: BTreeSet<usize> = (0..self.dirs.len()).collect();
        self.walk(&all);
        self.scanned = true;
        self.resolve(true)
    }

    /// The inotify fd is readable: drain it and rescan the conf dirs the
    /// events concern (all of them if the queue overflowed).
    pub fn on_inotify(&mut self) -> Vec<ConfChange> {
        if !self.scanned {
            return self.rescan();
        }
        let Some(watcher) = self.watcher.as_mut() else {
            return Vec::new();
        };
        let mut affected = BTreeSet::new();
        let mut overflow = false;
        loop {
            match watcher.inotify.read_events() {
                Ok(events) if events.is_empty() => break,
                Ok(events) => {
                    for event in events {
                        classify_event(
                            &self.dirs,
                            watcher,
                            &mut self.cache.pending,
                            &event,
                            &mut affected,
                            &mut overflow,
                        );
                    }
                }
                Err(Errno::EAGAIN) => break,
                Err(Errno::EINTR) => continue,
                Err(e) => {
                    warn!("Unable to read inotify events: {e}; rescanning");
                    overflow = true;
                    break;
                }
            }
        }
        self.cache
            .pending
            .retain(|_, seen| seen.elapsed() < PENDING_EXPIRY);
        if overflow {
            // Events were lost, so were the ends of writes.
            self.cache.pending.clear();
            affected = (0..self.dirs.len()).collect();
        }
        if affected.is_empty() {
            return Vec::new();
        }
        self.walk(&affected);
        self.resolve(false)
    }

    /// Where a job's definition came from (for status output and tests).
    pub fn source_of(&self, job: &str) -> Option<PathBuf> {
        self.loaded.get(job).map(|l| conf_path(&self.dirs[l.dir], job))
    }

    /// The current definition of a job.
    pub fn job(&self, name: &str) -> Option<&JobConf> {
        self.loaded.get(name).map(|l| &*l.conf)
    }

    /// All current jobs, in name order.
    pub fn jobs(&self) -> impl Iterator<Item = (&str, &JobConf)> {
        self.loaded.iter().map(|(n, l)| (&**n, &*l.conf))
    }

    /// Parse errors of the last scan (file error values), in job-name order:
    /// those of every `.conf` read while looking for a job's owner and of the
    /// override that applies, including files still broken since an
    /// earlier scan. Shadowed files are not read, so their errors are absent.
    pub fn errors(&self) -> &[FileError] {
        &self.errors
    }

    /// How many times a text was parsed (a `.conf`, or an override applied
    /// to one), for tests that pin that unchanged files are not reparsed.
    pub fn parses(&self) -> u64 {
        self.cache.parses
    }

    /// Walks the given conf dirs again, then drops watches no longer needed.
    fn walk(&mut self, which: &BTreeSet<usize>) {
        for &i in which {
            let mut old = std::mem::take(&mut self.listings[i]);
            let logged = &mut self.cache.dir_logged;
            let mut new = walk_conf_dir(&self.dirs[i], &mut self.watcher, &old, logged);
            new.confs.finish();
            new.overrides.finish();
            new.confs.adopt_caches(&mut old.confs);
            new.overrides.adopt_caches(&mut old.overrides);
            self.listings[i] = new;
        }
        if let Some(w) = self.watcher.as_mut() {
            let desired: HashSet<&Path> = self
                .listings
                .iter()
                .flat_map(|l| l.watched.iter().map(PathBuf::as_path))
                .collect();
            w.sync(&desired);
        }
    }

    /// Chooses each job's definition from the current listings and reports
    /// the differences from what was reported before.
    fn resolve(&mut self, full: bool) -> Vec<ConfChange> {
        let names: BTreeSet<Arc<str>> = self
            .listings
            .iter()
            .flat_map(|l| l.confs.keys())
            .cloned()
            .collect();
        let mut errors: Vec<(FileError, bool)> = Vec::new();
        // Allocated before parsing starts, not grown among what parsing
        // keeps: what is freed at the end leaves no holes between the jobs.
        let mut current = ByName(Vec::with_capacity(names.len()));
        let cache = &mut self.cache;
        let mut path = PathBuf::new();
        for name in names {
            let mut ovr: Option<Ovr> = None;
            let mut owner: Option<(usize, Def)> = None;
            for (i, listing) in self.listings.iter_mut().enumerate() {
                let dir = &self.dirs[i];
                if ovr.is_none()
                    && let Some(e) = listing.overrides.get_mut(&name)
                {
                    match cache.override_text(e, set_path(&mut path, dir, &name, ".override")) {
                        Ovr::Absent => {}
                        found => ovr = Some(found),
                    }
                }
                if let Some(e) = listing.confs.get_mut(&name)
                    && let Some(def) = cache.conf(e, set_path(&mut path, dir, &name, ".conf"), &mut errors)
                {
                    owner = Some((i, def));
                    break;
                }
            }
            let Some((dir, base)) = owner else { continue };
            let conf = match ovr {
                Some(Ovr::Text { path, text, version }) => {
                    cache.merge(&name, &base, &path, &text, version, &mut errors)
                }
                _ => base.0,
            };
            current.push(name, Loaded { conf, dir });
        }

        // Forget what no listing holds any more (what the cache knew of a
        // file went with its entry).
        let listed = |p: &Path| {
            self.dirs.iter().zip(&self.listings).any(|(dir, l)| {
                let Some(rel) = p.strip_prefix(dir).ok().and_then(Path::to_str) else {
                    return false;
                };
                rel.strip_suffix(".conf")
                    .is_some_and(|n| l.confs.get(n).is_some())
                    || rel
                        .strip_suffix(".override")
                        .is_some_and(|n| l.overrides.get(n).is_some())
            })
        };
        cache.io_logged.retain(|p, _| listed(p));
        cache.pending.retain(|p, _| listed(p));
        cache.merges.retain(|n, _| current.get(n).is_some());
        cache.merges.shrink_to_fit();

        for (err, fresh) in &errors {
            if *fresh || full {
                warn!("{err}");
                debug!("{}", err.with_caret());
            }
        }
        self.errors = errors.into_iter().map(|(e, _)| e).collect();

        let mut changes = Vec::new();
        let names: BTreeSet<Arc<str>> = self.loaded.keys().chain(current.keys()).cloned().collect();
        for name in names {
            match (self.loaded.get(&name), current.get_mut(&name)) {
                (Some(_), None) => changes.push(ConfChange::Remove { name: name.clone() }),
                // Unchanged: keep the old `Arc`, so that pointer equality
                // short-cuts the next comparison.
                (Some(old), Some(new)) if old.dir == new.dir && old.conf == new.conf => {
                    new.conf = old.conf.clone();
                }
                (_, Some(new)) => changes.push(ConfChange::Load {
                    conf: new.conf.clone(),
                    path: conf_path(&self.dirs[new.dir], &name),
                    name: name.clone(),
                }),
                (None, None) => {}
            }
        }
        current.0.shrink_to_fit();
        self.loaded = current;
        changes
    }
}

// ---------------------------------------------------------------------------
// Session and command-line dirs

/// Upstart's session-init conf dirs (spec §5), given the environment:
/// `$XDG_CONFIG_HOME/upstart` (default `~/.config/upstart`; a relative
/// `XDG_CONFIG_HOME` is invalid per the XDG spec and ignored), `~/.init`,
/// each absolute `$XDG_CONFIG_DIRS/upstart` (default `/etc/xdg`), and
/// `/usr/share/upstart/sessions` unless `UPSTART_NO_SYSTEM_USERCONFDIR` is
/// set (to anything). Without `HOME`, the dirs under it are left out (as
/// Upstart does). Nothing is created: a missing dir is watched until it
/// appears.
pub fn session_dirs(env: &dyn Fn(&str) -> Option<String>) -> Vec<PathBuf> {
    let non_empty = |key: &str| env(key).filter(|v| !v.is_empty());
    let home = non_empty("HOME").map(PathBuf::from);
    let mut dirs = Vec::new();
    let config_home = non_empty("XDG_CONFIG_HOME")
        .filter(|v| v.starts_with('/'))
        .map(PathBuf::from)
        .or_else(|| home.as_ref().map(|h| h.join(".config")));
    if let Some(dir) = config_home {
        dirs.push(dir.join("upstart"));
    }
    if let Some(home) = &home {
        dirs.push(home.join(".init"));
    }
    let config_dirs = non_empty("XDG_CONFIG_DIRS").unwrap_or_else(|| "/etc/xdg".to_string());
    for dir in config_dirs.split(':').filter(|d| d.starts_with('/')) {
        dirs.push(Path::new(dir).join("upstart"));
    }
    if env("UPSTART_NO_SYSTEM_USERCONFDIR").is_none() {
        dirs.push(PathBuf::from(SYSTEM_USERCONFDIR));
    }
    dirs
}

/// The system conf dir: `$UPSTART_CONFDIR` if set and not empty, else
/// `/etc/init` (spec §1.1).
pub fn system_dirs(env: &dyn Fn(&str) -> Option<String>) -> Vec<PathBuf> {
    let dir = env("UPSTART_CONFDIR").filter(|v| !v.is_empty());
    vec![PathBuf::from(dir.as_deref().unwrap_or(SYSTEM_CONFDIR))]
}

/// Apply `--confdir` (replaces the defaults; repeatable, in order),
/// `--prepend-confdir` and `--append-confdir` (always before/after the rest
/// regardless of order on the command line).
pub fn apply_dir_options(
    defaults: Vec<PathBuf>,
    confdir: &[PathBuf],
    prepend: &[PathBuf],
    append: &[PathBuf],
) -> Vec<PathBuf> {
    let middle = if confdir.is_empty() {
        defaults
    } else {
        confdir.to_vec()
    };
    prepend
        .iter()
        .cloned()
        .chain(middle)
        .chain(append.iter().cloned())
        .collect()
}

// ---------------------------------------------------------------------------
// Walking the dirs

/// What identifies a file's content cheaply: a hash of its device, inode,
/// size and mtime (kept for every file twice, in the listing and in the
/// cache, so 16 bytes rather than 40; a change goes unseen only if two
/// hashes collide, one chance in 2^64), and the mtime itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileKey {
    stat: u64,
    /// Nanoseconds since the epoch.
    mtime: i64,
}

impl FileKey {
    fn of(m: &fs::Metadata) -> FileKey {
        let mut h = DefaultHasher::new();
        (m.dev(), m.ino(), m.size(), m.mtime(), m.mtime_nsec()).hash(&mut h);
        FileKey {
            stat: h.finish(),
            mtime: m
                .mtime()
                .saturating_mul(1_000_000_000)
                .saturating_add(m.mtime_nsec()),
        }
    }

    /// True when a write after now could leave this key as it is.
    fn racy(&self) -> bool {
        let Ok(now) = SystemTime::now().duration_since(UNIX_EPOCH) else {
            return true;
        };
        i128::from(self.mtime) + RACY_WINDOW.as_nanos() as i128 > now.as_nanos() as i128
    }
}

/// Entries by job name, sorted, in one allocation (a map's nodes would
/// take about half as much again).
#[derive(Debug)]
struct ByName<T>(Vec<(Arc<str>, T)>);

impl<T> Default for ByName<T> {
    fn default() -> Self {
        ByName(Vec::new())
    }
}

impl<T> ByName<T> {
    fn get(&self, name: &str) -> Option<&T> {
        let i = self.0.binary_search_by(|(n, _)| (**n).cmp(name)).ok()?;
        Some(&self.0[i].1)
    }

    fn get_mut(&mut self, name: &str) -> Option<&mut T> {
        let i = self.0.binary_search_by(|(n, _)| (**n).cmp(name)).ok()?;
        Some(&mut self.0[i].1)
    }

    fn iter(&self) -> impl Iterator<Item = (&Arc<str>, &T)> {
        self.0.iter().map(|(n, v)| (n, v))
    }

    fn keys(&self) -> impl Iterator<Item = &Arc<str>> {
        self.0.iter().map(|(n, _)| n)
    }

    /// Adds an entry; the order is restored by [`ByName::finish`].
    fn push(&mut self, name: Arc<str>, value: T) {
        self.0.push((name, value));
    }

    /// Sorts what was pushed, keeping the first entry of each name.
    fn finish(&mut self) {
        self.0.sort_by(|a, b| a.0.cmp(&b.0));
        self.0.dedup_by(|later, first| later.0 == first.0);
        self.0.shrink_to_fit();
    }
}

/// A job file or override found by a walk (its path is [`conf_path`] or
/// [`override_path`] of its name), with what the cache knows of it
/// (carried over from the entry of the last walk).
#[derive(Debug)]
struct Entry {
    key: FileKey,
    cached: Option<Box<Cached>>,
}

impl Entry {
    fn new(m: &fs::Metadata) -> Entry {
        Entry {
            key: FileKey::of(m),
            cached: None,
        }
    }

    /// The same file, with nothing cached (the cache moves separately).
    fn uncached(&self) -> Entry {
        Entry {
            key: self.key,
            cached: None,
        }
    }
}

impl ByName<Entry> {
    /// Takes over what `old` (the same dir's last walk, so the same name
    /// is the same file) cached.
    fn adopt_caches(&mut self, old: &mut ByName<Entry>) {
        for (name, e) in &mut self.0 {
            if let Some(o) = old.get_mut(name)
                && o.cached.is_some()
            {
                e.cached = o.cached.take();
            }
        }
    }
}

/// What a walk of one conf dir found.
#[derive(Debug, Default)]
struct Listing {
    /// `.conf` files by job name.
    confs: ByName<Entry>,
    /// `.override` files (regular files only) by job name.
    overrides: ByName<Entry>,
    /// Directories watched for this conf dir: itself and its subdirectories,
    /// or the nearest existing ancestor while it does not exist.
    watched: Vec<PathBuf>,
}

impl Listing {
    /// Carries over what `old` held under `rel` (a relative dir; empty for
    /// all) when that dir cannot be read now: nothing is lost to a transient
    /// error. (What the walk found itself comes first, and stays.)
    fn keep_subtree(&mut self, old: &Listing, root: &Path, rel: &str) {
        let prefix = format!("{rel}/");
        let under = |name: &Arc<str>| rel.is_empty() || name.starts_with(&prefix);
        for (name, e) in old.confs.iter().filter(|(n, _)| under(n)) {
            self.confs.push(name.clone(), e.uncached());
        }
        for (name, e) in old.overrides.iter().filter(|(n, _)| under(n)) {
            self.overrides.push(name.clone(), e.uncached());
        }
        let dir = root.join(rel);
        for p in old.watched.iter().filter(|p| p.starts_with(&dir)) {
            if !self.watched.contains(p) {
                self.watched.push(p.clone());
            }
        }
    }
}

/// Logs a directory read error, unless it was the last one logged for it.
fn log_dir_error(logged: &mut HashMap<PathBuf, String>, dir: &Path, e: &io::Error) {
    let msg = e.to_string();
    if logged.get(dir) != Some(&msg) {
        warn!("{}: unable to read configuration directory: {msg}", dir.display());
        logged.insert(dir.to_path_buf(), msg);
    }
}

fn is_missing(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::NotFound | io::ErrorKind::NotADirectory)
}

/// Walks one conf dir, adding a watch to every directory before reading it
/// (so nothing created meanwhile is missed). A missing dir gets a watch on
/// its nearest existing ancestor instead.
fn walk_conf_dir(
    dir: &Path,
    watcher: &mut Option<Watcher>,
    old: &Listing,
    logged: &mut HashMap<PathBuf, String>,
) -> Listing {
    // Each retry follows a dir that appeared while we looked, one level
    // closer to `dir`, so the path's depth bounds the retries.
    let tries = dir.components().count() + 1;
    let mut out = Listing::default();
    for _ in 0..tries {
        out = Listing::default();
        let watched = watcher.as_mut().is_some_and(|w| w.add(dir, true).is_ok());
        match fs::read_dir(dir) {
            Ok(entries) => {
                if watched {
                    out.watched.push(dir.to_path_buf());
                }
                logged.remove(dir);
                walk_tree(dir, entries, watcher, old, &mut out, logged);
                return out;
            }
            Err(e) if is_missing(&e) => {
                debug!("{}: configuration directory does not exist (yet)", dir.display());
                let Some(w) = watcher.as_mut() else { return out };
                let Some(ancestor) = w.add_nearest_ancestor(dir) else {
                    return out;
                };
                // The next dir towards `dir` may have appeared before the
                // watch was in place: if so, look again.
                let next = dir
                    .strip_prefix(&ancestor)
                    .ok()
                    .and_then(|rest| rest.components().next())
                    .map(|c| ancestor.join(c));
                out.watched.push(ancestor);
                match next {
                    Some(next) if fs::metadata(&next).is_ok_and(|m| m.is_dir()) => continue,
                    _ => return out,
                }
            }
            Err(e) => {
                log_dir_error(logged, dir, &e);
                if watched {
                    out.watched.push(dir.to_path_buf());
                }
                out.keep_subtree(old, dir, "");
                return out;
            }
        }
    }
    out
}

/// Walks the tree under an opened conf dir (iteratively: no recursion depth
/// to exhaust). Directories already visited (bind mounts) are skipped.
fn walk_tree(
    root: &Path,
    entries: fs::ReadDir,
    watcher: &mut Option<Watcher>,
    old: &Listing,
    out: &mut Listing,
    logged: &mut HashMap<PathBuf, String>,
) {
    let mut visited: HashSet<(u64, u64)> = HashSet::new();
    if let Ok(m) = fs::metadata(root) {
        visited.insert((m.dev(), m.ino()));
    }
    let mut stack: Vec<(PathBuf, String, Option<fs::ReadDir>)> =
        vec![(root.to_path_buf(), String::new(), Some(entries))];
    while let Some((abs, rel, opened)) = stack.pop() {
        let entries = match opened {
            Some(entries) => entries,
            None => {
                let watched = watcher.as_mut().is_some_and(|w| w.add(&abs, false).is_ok());
                match fs::read_dir(&abs) {
                    Ok(entries) => {
                        if watched {
                            out.watched.push(abs.clone());
                        }
                        logged.remove(&abs);
                        entries
                    }
                    Err(e) if is_missing(&e) => continue,
                    Err(e) => {
                        log_dir_error(logged, &abs, &e);
                        if watched {
                            out.watched.push(abs.clone());
                        }
                        out.keep_subtree(old, root, &rel);
                        continue;
                    }
                }
            }
        };
        for entry in entries {
            let entry = match entry {
                Ok(entry) => entry,
                Err(e) => {
                    log_dir_error(logged, &abs, &e);
                    out.keep_subtree(old, root, &rel);
                    break;
                }
            };
            let file_name = entry.file_name();
            let Some(name) = file_name.to_str() else { continue };
            if is_ignored(name) {
                continue;
            }
            let child = if rel.is_empty() {
                name.to_string()
            } else {
                format!("{rel}/{name}")
            };
            // Entries that vanish or cannot be examined now are skipped.
            let Ok(kind) = entry.file_type() else { continue };
            let path = entry.path();
            if kind.is_dir() {
                if let Ok(m) = entry.metadata()
                    && visited.insert((m.dev(), m.ino()))
                {
                    stack.push((path, child, None));
                }
            } else if let Some(job) = job_name(&child) {
                let meta = if kind.is_symlink() {
                    fs::metadata(&path)
                } else {
                    entry.metadata()
                };
                if let Ok(m) = meta
                    && m.is_file()
                {
                    out.confs.push(job.into(), Entry::new(&m));
                }
            } else if let Some(job) = override_job_name(&child)
                && kind.is_file()
                && let Ok(m) = entry.metadata()
                && m.is_file()
            {
                out.overrides.push(job.into(), Entry::new(&m));
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Reading and parsing, with a cache

/// A parsed definition and the content version it came from.
type Def = (Arc<JobConf>, u64);

/// What is known of all files; what is known of each is its [`Entry`]'s.
#[derive(Debug, Default)]
struct Cache {
    /// Override merges by job name.
    merges: HashMap<String, Merge>,
    /// Files seen being written (created empty or modified, not yet closed).
    pending: HashMap<PathBuf, Instant>,
    /// The I/O error last logged for a file, so it is not logged at every scan.
    io_logged: HashMap<PathBuf, String>,
    /// The same for directories that could not be read.
    dir_logged: HashMap<PathBuf, String>,
    /// Every content read gets a new version (never reused).
    next_version: u64,
    parses: u64,
}

#[derive(Debug)]
struct Cached {
    key: FileKey,
    /// The key could hide a rewrite: compare the content next time.
    racy: bool,
    hash: u64,
    /// At most [`MAX_FILE_SIZE`].
    len: u32,
    version: u64,
    content: Content,
}

#[derive(Debug)]
enum Content {
    Conf {
        /// The current content's parse error, if any.
        error: Option<Box<FileError>>,
        /// The last definition that parsed.
        last_good: Option<Def>,
    },
    Override {
        text: Arc<[u8]>,
    },
}

#[derive(Debug)]
struct Merge {
    base: u64,
    ovr: u64,
    result: Result<Arc<JobConf>, FileError>,
}

/// The override found for a job.
enum Ovr {
    /// None here (vanished, a symlink, or not written yet): look further.
    Absent,
    /// There, but unreadable and never read: the job is as without it.
    Unusable,
    Text {
        path: PathBuf,
        text: Arc<[u8]>,
        version: u64,
    },
}

/// What a file's entry means for the cache.
enum Fresh {
    /// The cached content is current.
    Cached,
    /// New content.
    Read(Vec<u8>, FileKey),
    /// Not there (or not a regular file) any more.
    Gone,
    /// Cannot be read now (logged).
    Failed,
}

enum ReadError {
    Gone,
    Io(io::Error),
}

fn content_hash(bytes: &[u8]) -> u64 {
    let mut h = DefaultHasher::new();
    bytes.hash(&mut h);
    h.finish()
}

/// Reads a regular file without blocking (a FIFO swapped in is refused) and
/// without following a symlink if `nofollow`. The key is that of the file
/// read, not of what the walk saw.
fn read_file(path: &Path, nofollow: bool) -> Result<(Vec<u8>, FileKey), ReadError> {
    let mut flags = libc::O_NONBLOCK;
    if nofollow {
        flags |= libc::O_NOFOLLOW;
    }
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(flags)
        .open(path)
        .map_err(|e| {
            if is_missing(&e) || e.raw_os_error() == Some(libc::ELOOP) {
                ReadError::Gone
            } else {
                ReadError::Io(e)
            }
        })?;
    let meta = file.metadata().map_err(ReadError::Io)?;
    if !meta.is_file() {
        return Err(ReadError::Gone);
    }
    let too_large = || ReadError::Io(io::Error::other(format!("larger than {MAX_FILE_SIZE} bytes")));
    if meta.len() > MAX_FILE_SIZE {
        return Err(too_large());
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    (&file)
        .take(MAX_FILE_SIZE + 1)
        .read_to_end(&mut bytes)
        .map_err(ReadError::Io)?;
    if bytes.len() as u64 > MAX_FILE_SIZE {
        return Err(too_large());
    }
    Ok((bytes, FileKey::of(&meta)))
}

impl Cache {
    fn version(&mut self) -> u64 {
        self.next_version += 1;
        self.next_version
    }

    /// Decides whether an entry's cached content is current, reading the
    /// file when it may not be.
    fn check(&mut self, e: &mut Entry, path: &Path, nofollow: bool) -> Fresh {
        let pending = self.pending.contains_key(path);
        match &e.cached {
            Some(c) if pending || (c.key == e.key && !c.racy) => return Fresh::Cached,
            None if pending => return Fresh::Gone,
            _ => {}
        }
        match read_file(path, nofollow) {
            Ok((bytes, key)) => {
                self.io_logged.remove(path);
                if let Some(c) = e.cached.as_mut()
                    && c.len as usize == bytes.len()
                    && c.hash == content_hash(&bytes)
                {
                    c.key = key;
                    c.racy = key.racy();
                    return Fresh::Cached;
                }
                Fresh::Read(bytes, key)
            }
            Err(ReadError::Gone) => Fresh::Gone,
            Err(ReadError::Io(err)) => {
                let msg = err.to_string();
                if self.io_logged.get(path) != Some(&msg) {
                    warn!("{}: unable to read: {msg}", path.display());
                    self.io_logged.insert(path.to_path_buf(), msg);
                }
                Fresh::Failed
            }
        }
    }

    fn store(e: &mut Entry, bytes: &[u8], key: FileKey, version: u64, content: Content) {
        let cached = Cached {
            key,
            racy: key.racy(),
            hash: content_hash(bytes),
            len: bytes.len() as u32,
            version,
            content,
        };
        e.cached = Some(Box::new(cached));
    }

    /// The definition a `.conf` holds: its current one, else its last good
    /// one. Errors go to `errors`, marked fresh when parsed just now.
    fn conf(&mut self, e: &mut Entry, path: &Path, errors: &mut Vec<(FileError, bool)>) -> Option<Def> {
        let cached = |e: &Entry| match e.cached.as_ref().map(|c| &c.content) {
            Some(Content::Conf { error, last_good }) => (error.as_deref().cloned(), last_good.clone()),
            _ => (None, None),
        };
        match self.check(e, path, false) {
            Fresh::Cached => {
                let (error, last_good) = cached(e);
                if let Some(err) = error {
                    errors.push((err, false));
                }
                last_good
            }
            Fresh::Gone => None,
            Fresh::Failed => cached(e).1,
            Fresh::Read(bytes, key) => {
                self.parses += 1;
                let version = self.version();
                let (error, last_good) = match parse_job(&bytes) {
                    Ok(job) => (None, Some((Arc::new(job), version))),
                    Err(err) => {
                        let err = FileError::new(path, err);
                        errors.push((err.clone(), true));
                        (Some(err), cached(e).1)
                    }
                };
                let content = Content::Conf {
                    error: error.map(Box::new),
                    last_good: last_good.clone(),
                };
                Cache::store(e, &bytes, key, version, content);
                last_good
            }
        }
    }

    /// The text of an override file.
    fn override_text(&mut self, e: &mut Entry, path: &Path) -> Ovr {
        let cached = |e: &Entry| match e.cached.as_deref() {
            Some(Cached {
                version,
                content: Content::Override { text },
                ..
            }) => Ovr::Text {
                path: path.to_path_buf(),
                text: text.clone(),
                version: *version,
            },
            _ => Ovr::Unusable,
        };
        match self.check(e, path, true) {
            Fresh::Cached | Fresh::Failed => cached(e),
            Fresh::Gone => Ovr::Absent,
            Fresh::Read(bytes, key) => {
                let version = self.version();
                let text: Arc<[u8]> = bytes.as_slice().into();
                let content = Content::Override { text: text.clone() };
                Cache::store(e, &bytes, key, version, content);
                Ovr::Text {
                    path: path.to_path_buf(),
                    text,
                    version,
                }
            }
        }
    }

    /// A job's definition with its override applied; the definition alone
    /// (and the error reported) if the override does not parse.
    fn merge(
        &mut self,
        name: &str,
        base: &Def,
        path: &Path,
        text: &[u8],
        version: u64,
        errors: &mut Vec<(FileError, bool)>,
    ) -> Arc<JobConf> {
        let (result, fresh) = match self.merges.get(name) {
            Some(m) if m.base == base.1 && m.ovr == version => (m.result.clone(), false),
            _ => {
                self.parses += 1;
                let result = apply_override(&base.0, text)
                    .map(Arc::new)
                    .map_err(|e| FileError::new(path, e));
                let merge = Merge {
                    base: base.1,
                    ovr: version,
                    result: result.clone(),
                };
                self.merges.insert(name.to_string(), merge);
                (result, true)
            }
        };
        match result {
            Ok(job) => job,
            Err(err) => {
                errors.push((err, fresh));
                base.0.clone()
            }
        }
    }
}

// ---------------------------------------------------------------------------
// inotify

#[derive(Debug)]
struct Watcher {
    inotify: Inotify,
    by_path: HashMap<PathBuf, WatchDescriptor>,
    /// The reverse of `by_path` as of the last `sync` (one inode can be
    /// reached by more than one path).
    by_wd: HashMap<WatchDescriptor, Vec<PathBuf>>,
    /// Every watch added and not yet removed.
    wds: HashSet<WatchDescriptor>,
    limit_warned: bool,
}

fn watch_mask() -> AddWatchFlags {
    AddWatchFlags::IN_CREATE
        | AddWatchFlags::IN_DELETE
        | AddWatchFlags::IN_MODIFY
        | AddWatchFlags::IN_CLOSE_WRITE
        | AddWatchFlags::IN_MOVED_FROM
        | AddWatchFlags::IN_MOVED_TO
        | AddWatchFlags::IN_DELETE_SELF
        | AddWatchFlags::IN_MOVE_SELF
        | AddWatchFlags::IN_ATTRIB
}

impl Watcher {
    /// Watches a directory (adding a watch for an inode already watched
    /// returns the same descriptor). `follow`: the path may be a symlink to
    /// a directory (conf dirs and their ancestors may be).
    fn add(&mut self, path: &Path, follow: bool) -> Result<(), Errno> {
        let mut flags = watch_mask() | AddWatchFlags::IN_ONLYDIR;
        if !follow {
            flags |= AddWatchFlags::IN_DONT_FOLLOW;
        }
        match self.inotify.add_watch(path, flags) {
            Ok(wd) => {
                self.by_path.insert(path.to_path_buf(), wd);
                self.wds.insert(wd);
                Ok(())
            }
            Err(e) => {
                if matches!(e, Errno::ENOSPC | Errno::ENOMEM) && !self.limit_warned {
                    self.limit_warned = true;
                    warn!(
                        "{}: unable to watch directory: {e} (inotify watch limit?); changes there need a reload",
                        path.display()
                    );
                }
                Err(e)
            }
        }
    }

    /// Watches the nearest existing ancestor of a missing dir, so that its
    /// creation is seen; returns it.
    fn add_nearest_ancestor(&mut self, dir: &Path) -> Option<PathBuf> {
        for ancestor in dir.ancestors().skip(1) {
            let ancestor = if ancestor.as_os_str().is_empty() {
                Path::new(".")
            } else {
                ancestor
            };
            match self.add(ancestor, true) {
                Ok(()) => return Some(ancestor.to_path_buf()),
                Err(Errno::ENOENT | Errno::ENOTDIR) => continue,
                Err(e) => {
                    debug!("{}: unable to watch: {e}", ancestor.display());
                    return None;
                }
            }
        }
        None
    }

    /// Keeps only the watches some listing needs.
    fn sync(&mut self, desired: &HashSet<&Path>) {
        self.by_path.retain(|p, _| desired.contains(p.as_path()));
        let live: HashSet<WatchDescriptor> = self.by_path.values().copied().collect();
        for wd in self.wds.difference(&live) {
            // It may be gone already (its directory was deleted).
            let _ = self.inotify.rm_watch(*wd);
        }
        self.wds = live;
        self.by_wd.clear();
        for (p, wd) in &self.by_path {
            self.by_wd.entry(*wd).or_default().push(p.clone());
        }
    }

    /// The kernel dropped a watch (`IN_IGNORED`): forget it; returns the
    /// paths it watched.
    fn forget(&mut self, wd: WatchDescriptor) -> Vec<PathBuf> {
        self.wds.remove(&wd);
        let paths = self.by_wd.remove(&wd).unwrap_or_default();
        for p in &paths {
            if self.by_path.get(p) == Some(&wd) {
                self.by_path.remove(p);
            }
        }
        paths
    }
}

/// Notes which conf dirs an event concerns, and which files are being
/// written.
fn classify_event(
    dirs: &[PathBuf],
    watcher: &mut Watcher,
    pending: &mut HashMap<PathBuf, Instant>,
    event: &nix::sys::inotify::InotifyEvent,
    affected: &mut BTreeSet<usize>,
    overflow: &mut bool,
) {
    let mask = event.mask;
    if mask.contains(AddWatchFlags::IN_Q_OVERFLOW) {
        *overflow = true;
        return;
    }
    if mask.contains(AddWatchFlags::IN_IGNORED) {
        for p in watcher.forget(event.wd) {
            for (i, dir) in dirs.iter().enumerate() {
                if p.starts_with(dir) || dir.starts_with(&p) {
                    affected.insert(i);
                }
            }
        }
        return;
    }
    let Some(paths) = watcher.by_wd.get(&event.wd) else {
        return;
    };
    let name = event.name.as_deref();
    let is_dir = mask.contains(AddWatchFlags::IN_ISDIR);
    for p in paths {
        for (i, dir) in dirs.iter().enumerate() {
            if p.starts_with(dir) {
                // Inside the tree: only job files, overrides and
                // directories matter (and the directory itself).
                let Some(name) = name else {
                    affected.insert(i);
                    continue;
                };
                let Some(name) = name.to_str() else { continue };
                if is_ignored(name) {
                    continue;
                }
                if is_dir {
                    affected.insert(i);
                } else if name.ends_with(".conf") || name.ends_with(".override") {
                    affected.insert(i);
                    note_writing(pending, p.join(name), mask);
                }
            } else if let Ok(rest) = dir.strip_prefix(p) {
                // An ancestor of a missing conf dir: only the next step
                // towards it matters.
                let next = rest.components().next();
                if name.is_none() || matches!(next, Some(Component::Normal(n)) if Some(n) == name) {
                    affected.insert(i);
                }
            }
        }
    }
}

/// Tracks files being written: created empty or modified, and not closed.
fn note_writing(pending: &mut HashMap<PathBuf, Instant>, path: PathBuf, mask: AddWatchFlags) {
    if mask.contains(AddWatchFlags::IN_MODIFY) {
        pending.insert(path, Instant::now());
    } else if mask.contains(AddWatchFlags::IN_CREATE) {
        // A creation with content (a hard link) or a symlink is complete.
        if fs::symlink_metadata(&path).is_ok_and(|m| m.is_file() && m.len() == 0) {
            pending.insert(path, Instant::now());
        }
    } else if mask.intersects(
        AddWatchFlags::IN_CLOSE_WRITE
            | AddWatchFlags::IN_DELETE
            | AddWatchFlags::IN_MOVED_FROM
            | AddWatchFlags::IN_MOVED_TO,
    ) {
        pending.remove(&path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

    /// A unique temporary directory, removed on drop.
    struct Tree {
        root: PathBuf,
    }

    impl Tree {
        fn new(tag: &str) -> Tree {
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let root = std::env::temp_dir().join(format!("upshot-conf-{}-{n}-{tag}", std::process::id()));
            let _ = fs::remove_dir_all(&root);
            fs::create_dir_all(&root).unwrap();
            Tree { root }
        }

        fn path(&self, rel: &str) -> PathBuf {
            self.root.join(rel)
        }

        fn write(&self, rel: &str, text: &str) {
            let path = self.path(rel);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, text).unwrap();
        }

        fn remove(&self, rel: &str) {
            fs::remove_file(self.path(rel)).unwrap();
        }

        fn sources(&self, dirs: &[&str]) -> ConfSources {
            ConfSources::new(dirs.iter().map(|d| self.path(d)).collect())
        }
    }

    impl Drop for Tree {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.root);
        }
    }

    fn job(desc: &str) -> String {
        format!("description \"{desc}\"\nstart on startup\nexec /bin/true\n")
    }

    fn desc(src: &ConfSources, name: &str) -> Option<String> {
        src.job(name).and_then(|j| j.description().map(String::from))
    }

    /// `load NAME DESC` / `remove NAME`, for compact assertions.
    fn summary(changes: &[ConfChange]) -> Vec<String> {
        changes
            .iter()
            .map(|c| match c {
                ConfChange::Load { name, conf, .. } => {
                    format!("load {name} {}", conf.description().unwrap_or("-"))
                }
                ConfChange::Remove { name } => format!("remove {name}"),
            })
            .collect()
    }

    /// Waits on the inotify fd (bounded) and handles events until `done`.
    fn wait_until(src: &mut ConfSources, what: &str, done: impl Fn(&ConfSources) -> bool) -> Vec<ConfChange> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut changes = Vec::new();
        while !done(src) {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "timed out waiting for {what}; changes: {changes:?}"
            );
            let ready = {
                let fd = src.fd().expect("inotify is available");
                let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
                let timeout = PollTimeout::try_from(left.min(Duration::from_secs(1))).unwrap();
                match poll(&mut fds, timeout) {
                    Ok(n) => n > 0,
                    Err(Errno::EINTR) => false,
                    Err(e) => panic!("poll: {e}"),
                }
            };
            if ready {
                changes.extend(src.on_inotify());
            }
        }
        changes
    }

    #[test]
    fn initial_scan_finds_nested_jobs_and_skips_ignored_names() {
        let t = Tree::new("initial");
        t.write("init/foo.conf", &job("foo"));
        t.write("init/net/apache.conf", &job("apache"));
        t.write("init/a/b/c.conf", &job("c"));
        for ignored in [
            "init/.hidden.conf",
            "init/foo.conf~",
            "init/bar.conf.dpkg-old",
            "init/#bar.conf#",
            "init/bar.conf.swp",
            "init/CVS/cvs.conf",
            "init/.git/git.conf",
            "init/old.bak/x.conf",
            "init/notes.txt",
            "init/bar",
        ] {
            t.write(ignored, &job("ignored"));
        }
        let mut src = t.sources(&["init"]);
        let changes = src.rescan();
        assert_eq!(
            summary(&changes),
            ["load a/b/c c", "load foo foo", "load net/apache apache"]
        );
        assert_eq!(src.source_of("net/apache"), Some(t.path("init/net/apache.conf")));
        match &changes[2] {
            ConfChange::Load { path, conf, .. } => {
                assert_eq!(path, &t.path("init/net/apache.conf"));
                assert_eq!(**conf, parse_job(job("apache").as_bytes()).unwrap());
            }
            other => panic!("{other:?}"),
        }
        assert!(src.errors().is_empty());
        assert_eq!(src.rescan(), [], "a second scan reports nothing");
    }

    #[test]
    fn odd_entries_are_skipped_without_blocking() {
        let t = Tree::new("odd");
        t.write("elsewhere/real.conf", &job("linked"));
        t.write("elsewhere/sub/deep.conf", &job("deep"));
        t.write("init/dir.conf/inner.conf", &job("inner"));
        symlink(t.path("elsewhere/real.conf"), t.path("init/linked.conf")).unwrap();
        symlink(t.path("elsewhere/sub"), t.path("init/linkdir")).unwrap();
        symlink(t.path("init"), t.path("init/loop")).unwrap();
        symlink(t.path("nowhere.conf"), t.path("init/dangling.conf")).unwrap();
        nix::unistd::mkfifo(&t.path("init/fifo.conf"), nix::sys::stat::Mode::S_IRWXU).unwrap();
        let mut src = t.sources(&["init"]);
        let changes = src.rescan();
        // A symlinked job file is read (as `init --check` does); symlinked
        // directories, dangling links and FIFOs are not.
        assert_eq!(
            summary(&changes),
            ["load dir.conf/inner inner", "load linked linked"]
        );
    }

    #[test]
    fn first_dir_holding_a_name_owns_it_and_a_later_one_takes_over_when_it_goes() {
        let t = Tree::new("owner");
        t.write("one/foo.conf", &job("foo from one"));
        t.write("two/foo.conf", &job("foo from two"));
        t.write("two/bar.conf", &job("bar from two"));
        let mut src = t.sources(&["one", "two"]);
        assert_eq!(
            summary(&src.rescan()),
            ["load bar bar from two", "load foo foo from one"]
        );
        assert_eq!(src.source_of("foo"), Some(t.path("one/foo.conf")));

        // A later same-named file is not even read.
        let parses = src.parses();
        t.write("two/foo.conf", "this is not a job file\n");
        assert_eq!(src.rescan(), []);
        assert_eq!(src.parses(), parses);
        assert!(src.errors().is_empty());

        t.write("two/foo.conf", &job("foo from two, again"));
        t.remove("one/foo.conf");
        assert_eq!(summary(&src.rescan()), ["load foo foo from two, again"]);
        assert_eq!(src.source_of("foo"), Some(t.path("two/foo.conf")));

        t.write("one/bar.conf", &job("bar from one"));
        assert_eq!(summary(&src.rescan()), ["load bar bar from one"]);
        t.remove("two/foo.conf");
        assert_eq!(summary(&src.rescan()), ["remove foo"]);
    }

    #[test]
    fn same_definition_from_another_file_is_reported_with_its_new_path() {
        let t = Tree::new("moved");
        t.write("two/foo.conf", &job("foo"));
        let mut src = t.sources(&["one", "two"]);
        src.rescan();
        t.write("one/foo.conf", &job("foo"));
        let changes = src.rescan();
        assert_eq!(summary(&changes), ["load foo foo"]);
        assert!(matches!(&changes[0], ConfChange::Load { path, .. } if path == &t.path("one/foo.conf")));
    }

    #[test]
    fn override_beside_the_conf_applies_and_removing_it_reloads_the_conf_alone() {
        let t = Tree::new("beside");
        t.write("init/foo.conf", &job("foo"));
        t.write("init/foo.override", "manual\nenv EXTRA=1\n");
        let mut src = t.sources(&["init"]);
        src.rescan();
        let foo = src.job("foo").unwrap();
        assert_eq!(foo.start_on(), None, "manual in the override clears start on");
        assert!(foo.env().eq(["EXTRA=1"]));
        assert_eq!(desc(&src, "foo").as_deref(), Some("foo"));

        t.write("init/foo.override", "description \"overridden\"\n");
        assert_eq!(summary(&src.rescan()), ["load foo overridden"]);
        assert!(src.job("foo").unwrap().start_on().is_some());

        t.remove("init/foo.override");
        let changes = src.rescan();
        assert_eq!(summary(&changes), ["load foo foo"]);
        assert_eq!(src.job("foo"), Some(&parse_job(job("foo").as_bytes()).unwrap()));
    }

    #[test]
    fn override_in_an_earlier_dir_applies_but_not_one_in_a_later_dir() {
        let t = Tree::new("earlier");
        t.write("one/foo.override", "description \"first override\"\n");
        t.write("two/foo.override", "description \"second override\"\n");
        t.write("two/foo.conf", &job("foo"));
        t.write("one/bar.conf", &job("bar"));
        t.write("two/bar.override", "manual\n");
        let mut src = t.sources(&["one", "two"]);
        assert_eq!(
            summary(&src.rescan()),
            ["load bar bar", "load foo first override"]
        );
        assert!(
            src.job("bar").unwrap().start_on().is_some(),
            "a later dir's override is ignored"
        );

        t.remove("one/foo.override");
        assert_eq!(summary(&src.rescan()), ["load foo second override"]);
    }

    #[test]
    fn lone_override_is_ignored_and_removing_the_conf_removes_the_job_despite_its_override() {
        let t = Tree::new("lone");
        t.write("init/lone.override", "manual\n");
        t.write("init/foo.conf", &job("foo"));
        t.write("init/foo.override", "manual\n");
        let mut src = t.sources(&["init"]);
        assert_eq!(summary(&src.rescan()), ["load foo foo"]);
        assert!(src.job("lone").is_none());
        t.remove("init/foo.conf");
        assert_eq!(summary(&src.rescan()), ["remove foo"]);
        assert!(src.errors().is_empty());
    }

    #[test]
    fn symlinked_override_is_ignored() {
        let t = Tree::new("symovr");
        t.write("init/foo.conf", &job("foo"));
        t.write("elsewhere/foo.override", "manual\n");
        symlink(t.path("elsewhere/foo.override"), t.path("init/foo.override")).unwrap();
        let mut src = t.sources(&["init"]);
        src.rescan();
        assert!(src.job("foo").unwrap().start_on().is_some());
    }

    #[test]
    fn broken_override_leaves_the_job_as_without_it_and_is_reported() {
        let t = Tree::new("badovr");
        t.write("init/foo.conf", &job("foo"));
        t.write("init/foo.override", "manual\nbogus stanza\n");
        let mut src = t.sources(&["init"]);
        assert_eq!(summary(&src.rescan()), ["load foo foo"]);
        assert_eq!(src.job("foo"), Some(&parse_job(job("foo").as_bytes()).unwrap()));
        let errors = src.errors();
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].path, t.path("init/foo.override"));
        assert_eq!(
            errors[0].to_string(),
            format!("{}:2:1: Unknown stanza", t.path("init/foo.override").display())
        );
        // Still reported by the next scan, without reparsing.
        let parses = src.parses();
        assert_eq!(src.rescan(), []);
        assert_eq!(src.errors().len(), 1);
        assert_eq!(src.parses(), parses);

        t.write("init/foo.override", "manual\n");
        assert_eq!(summary(&src.rescan()), ["load foo foo"]);
        assert_eq!(src.job("foo").unwrap().start_on(), None);
        assert!(src.errors().is_empty());
    }

    #[test]
    fn broken_file_keeps_the_last_good_definition_and_fixing_it_reloads() {
        let t = Tree::new("broken");
        t.write("init/foo.conf", &job("good"));
        t.write("init/foo.override", "env A=1\n");
        let mut src = t.sources(&["init"]);
        assert_eq!(summary(&src.rescan()), ["load foo good"]);

        t.write("init/foo.conf", "description \"half\nstart on\n");
        assert_eq!(src.rescan(), [], "the old definition stays");
        assert_eq!(desc(&src, "foo").as_deref(), Some("good"));
        assert_eq!(src.errors().len(), 1);
        assert_eq!(src.errors()[0].path, t.path("init/foo.conf"));

        // The override still applies, on top of the last good definition.
        t.write("init/foo.override", "env B=2\n");
        assert_eq!(summary(&src.rescan()), ["load foo good"]);
        assert!(src.job("foo").unwrap().env().eq(["B=2"]));

        t.write("init/foo.conf", &job("fixed"));
        assert_eq!(summary(&src.rescan()), ["load foo fixed"]);
        assert!(src.errors().is_empty());

        // Removing a broken file removes the job.
        t.write("init/foo.conf", "bogus\n");
        assert_eq!(src.rescan(), []);
        t.remove("init/foo.conf");
        assert_eq!(summary(&src.rescan()), ["remove foo"]);
    }

    #[test]
    fn file_that_never_parsed_defines_no_job_and_does_not_shadow_a_later_dir() {
        let t = Tree::new("never");
        t.write("one/foo.conf", "bogus\n");
        t.write("one/bar.conf", "start on (\n");
        t.write("two/foo.conf", &job("foo from two"));
        let mut src = t.sources(&["one", "two"]);
        assert_eq!(summary(&src.rescan()), ["load foo foo from two"]);
        assert!(src.job("bar").is_none());
        let errors: Vec<String> = src.errors().iter().map(|e| e.to_string()).collect();
        assert_eq!(
            errors,
            [
                format!("{}:1:10: Expected event", t.path("one/bar.conf").display()),
                format!("{}:1:1: Unknown stanza", t.path("one/foo.conf").display()),
            ]
        );
        assert!(src.errors()[1].with_caret().ends_with("    bogus\n    ^"));

        t.write("one/foo.conf", &job("foo from one"));
        assert_eq!(summary(&src.rescan()), ["load foo foo from one"]);
        t.write("one/foo.conf", "bogus again\n");
        assert_eq!(src.rescan(), [], "now it has a last good definition");
        assert_eq!(desc(&src, "foo").as_deref(), Some("foo from one"));
    }

    #[test]
    fn unchanged_files_are_not_reparsed() {
        let t = Tree::new("reparse");
        t.write("init/a.conf", &job("a"));
        t.write("init/b.conf", &job("b"));
        t.write("init/b.override", "manual\n");
        let mut src = t.sources(&["init"]);
        src.rescan();
        assert_eq!(src.parses(), 3, "two files and one override");
        assert_eq!(src.rescan(), []);
        assert_eq!(src.parses(), 3);

        // A new mtime with the same content: read and compared, not parsed.
        let file = fs::File::options()
            .write(true)
            .open(t.path("init/a.conf"))
            .unwrap();
        file.set_modified(SystemTime::now() + Duration::from_secs(60))
            .unwrap();
        assert_eq!(src.rescan(), []);
        assert_eq!(src.parses(), 3);

        t.write("init/a.conf", &job("a2"));
        assert_eq!(summary(&src.rescan()), ["load a a2"]);
        assert_eq!(src.parses(), 4);
        t.write("init/b.conf", &job("b2"));
        assert_eq!(summary(&src.rescan()), ["load b b2"]);
        assert_eq!(src.parses(), 6, "b and its override again");
    }

    #[test]
    fn same_size_rewrite_with_an_unchanged_mtime_is_seen() {
        let t = Tree::new("racy");
        t.write("init/foo.conf", &job("aaaa"));
        let mtime = fs::metadata(t.path("init/foo.conf")).unwrap().modified().unwrap();
        let mut src = t.sources(&["init"]);
        src.rescan();
        t.write("init/foo.conf", &job("bbbb"));
        let file = fs::File::options()
            .write(true)
            .open(t.path("init/foo.conf"))
            .unwrap();
        file.set_modified(mtime).unwrap();
        assert_eq!(summary(&src.rescan()), ["load foo bbbb"]);
    }

    #[test]
    fn inotify_sees_create_modify_and_delete() {
        let t = Tree::new("inotify");
        t.write("init/old.conf", &job("old"));
        let mut src = t.sources(&["init"]);
        assert!(src.fd().is_some());
        src.rescan();

        t.write("init/new.conf", &job("new"));
        let changes = wait_until(&mut src, "create", |s| s.job("new").is_some());
        assert_eq!(summary(&changes), ["load new new"], "never a half-written file");

        // Same length, written in place: seen even if the mtime does not move.
        t.write("init/new.conf", &job("NEW"));
        let changes = wait_until(&mut src, "modify", |s| desc(s, "new").as_deref() == Some("NEW"));
        assert_eq!(summary(&changes), ["load new NEW"]);

        t.write("init/new.override", "manual\n");
        wait_until(&mut src, "override", |s| {
            s.job("new").is_some_and(|j| j.start_on().is_none())
        });
        t.remove("init/new.override");
        wait_until(&mut src, "override removal", |s| {
            s.job("new").is_some_and(|j| j.start_on().is_some())
        });

        t.remove("init/old.conf");
        let changes = wait_until(&mut src, "delete", |s| s.job("old").is_none());
        assert_eq!(summary(&changes), ["remove old"]);
        assert_eq!(desc(&src, "new").as_deref(), Some("NEW"));
    }

    #[test]
    fn inotify_sees_atomic_rename_into_place() {
        let t = Tree::new("rename");
        t.write("init/foo.conf", &job("before"));
        let mut src = t.sources(&["init"]);
        src.rescan();
        t.write("init/.foo.conf.tmp", &job("after"));
        fs::rename(t.path("init/.foo.conf.tmp"), t.path("init/foo.conf")).unwrap();
        let changes = wait_until(&mut src, "rename", |s| desc(s, "foo").as_deref() == Some("after"));
        assert_eq!(summary(&changes), ["load foo after"]);

        // A broken file renamed into place keeps the old definition.
        t.write("init/.foo.conf.tmp", "bogus\n");
        fs::rename(t.path("init/.foo.conf.tmp"), t.path("init/foo.conf")).unwrap();
        wait_until(&mut src, "the error", |s| !s.errors().is_empty());
        assert_eq!(desc(&src, "foo").as_deref(), Some("after"));
    }

    #[test]
    fn inotify_sees_a_new_subdirectory_and_its_jobs() {
        let t = Tree::new("subdir");
        fs::create_dir_all(t.path("init")).unwrap();
        let mut src = t.sources(&["init"]);
        src.rescan();
        // Created together, faster than the watch on `net` can be added.
        t.write("init/net/deeper/apache.conf", &job("apache"));
        wait_until(&mut src, "the nested job", |s| {
            s.job("net/deeper/apache").is_some()
        });
        // Now the new directories are watched too.
        t.write("init/net/deeper/nginx.conf", &job("nginx"));
        wait_until(&mut src, "the second nested job", |s| {
            s.job("net/deeper/nginx").is_some()
        });
        // Moving a directory away removes its jobs.
        fs::rename(t.path("init/net"), t.path("gone")).unwrap();
        let changes = wait_until(&mut src, "move away", |s| s.jobs().next().is_none());
        assert_eq!(
            summary(&changes),
            ["remove net/deeper/apache", "remove net/deeper/nginx"]
        );
    }

    #[test]
    fn inotify_sees_a_conf_dir_created_after_start() {
        let t = Tree::new("late");
        let mut src = t.sources(&["missing/deeper/init"]);
        assert_eq!(src.rescan(), []);
        fs::create_dir(t.path("missing")).unwrap();
        fs::create_dir(t.path("missing/deeper")).unwrap();
        t.write("missing/deeper/init/foo.conf", &job("foo"));
        wait_until(&mut src, "the late dir", |s| s.job("foo").is_some());
        assert_eq!(src.source_of("foo"), Some(t.path("missing/deeper/init/foo.conf")));

        // The conf dir moving away removes its jobs; coming back restores them.
        fs::rename(t.path("missing/deeper/init"), t.path("missing/deeper/init.old")).unwrap();
        let changes = wait_until(&mut src, "the dir going", |s| s.job("foo").is_none());
        assert_eq!(summary(&changes), ["remove foo"]);
        fs::rename(t.path("missing/deeper/init.old"), t.path("missing/deeper/init")).unwrap();
        let changes = wait_until(&mut src, "the dir coming back", |s| s.job("foo").is_some());
        assert_eq!(summary(&changes), ["load foo foo"]);

        // Deleted, then created again.
        fs::remove_dir_all(t.path("missing")).unwrap();
        wait_until(&mut src, "the dir deleted", |s| s.job("foo").is_none());
        t.write("missing/deeper/init/bar.conf", &job("bar"));
        wait_until(&mut src, "the dir recreated", |s| s.job("bar").is_some());
    }

    #[test]
    fn inotify_queue_overflow_rescans_everything() {
        let limit: usize = fs::read_to_string("/proc/sys/fs/inotify/max_queued_events")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(usize::MAX);
        if limit > 100_000 {
            eprintln!("max_queued_events is {limit}: skipping");
            return;
        }
        let t = Tree::new("overflow");
        fs::create_dir_all(t.path("init")).unwrap();
        let mut src = t.sources(&["init"]);
        src.rescan();
        // One event per write; alternating files keeps the kernel from
        // merging them; the names do not matter to us.
        use std::io::Write;
        let mut a = fs::File::create(t.path("init/.noise-a")).unwrap();
        let mut b = fs::File::create(t.path("init/.noise-b")).unwrap();
        for _ in 0..limit / 2 + 100 {
            a.write_all(b"x").unwrap();
            b.write_all(b"x").unwrap();
        }
        t.write("init/foo.conf", &job("foo"));
        wait_until(&mut src, "the job after the overflow", |s| s.job("foo").is_some());
        assert!(src.cache.pending.is_empty());
    }

    #[test]
    fn inotify_rescans_only_what_changed() {
        let t = Tree::new("onlychanged");
        for n in 0..5 {
            t.write(&format!("one/job{n}.conf"), &job("one"));
            t.write(&format!("two/job{n}.conf"), &job("two"));
        }
        let mut src = t.sources(&["one", "two"]);
        src.rescan();
        assert_eq!(src.parses(), 5, "files shadowed by the first dir are not read");
        t.write("two/extra.conf", &job("extra"));
        wait_until(&mut src, "extra", |s| s.job("extra").is_some());
        assert_eq!(src.parses(), 6);
        t.write("one/job3.conf", &job("three"));
        let changes = wait_until(&mut src, "job3", |s| desc(s, "job3").as_deref() == Some("three"));
        assert_eq!(summary(&changes), ["load job3 three"]);
        assert_eq!(src.parses(), 7);
        // Ignored names do not even cause a rescan.
        t.write("one/.swapfile.swp", "x");
        t.write("one/README", "x");
        assert_eq!(src.on_inotify(), []);
        assert_eq!(src.parses(), 7);
    }

    #[test]
    fn session_dirs_follow_the_environment() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |k: &str| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())
        };
        let paths = |v: &[&str]| v.iter().map(PathBuf::from).collect::<Vec<_>>();
        assert_eq!(
            session_dirs(&env(&[("HOME", "/home/u")])),
            paths(&[
                "/home/u/.config/upstart",
                "/home/u/.init",
                "/etc/xdg/upstart",
                "/usr/share/upstart/sessions"
            ])
        );
        assert_eq!(
            session_dirs(&env(&[
                ("HOME", "/home/u"),
                ("XDG_CONFIG_HOME", "/cfg"),
                ("XDG_CONFIG_DIRS", "/a:relative::/b/"),
                ("UPSTART_NO_SYSTEM_USERCONFDIR", ""),
            ])),
            paths(&["/cfg/upstart", "/home/u/.init", "/a/upstart", "/b/upstart"])
        );
        assert_eq!(
            session_dirs(&env(&[
                ("HOME", "/h"),
                ("XDG_CONFIG_HOME", "rel"),
                ("XDG_CONFIG_DIRS", "")
            ])),
            paths(&[
                "/h/.config/upstart",
                "/h/.init",
                "/etc/xdg/upstart",
                "/usr/share/upstart/sessions"
            ])
        );
        assert_eq!(
            session_dirs(&env(&[])),
            paths(&["/etc/xdg/upstart", "/usr/share/upstart/sessions"]),
            "no HOME: nothing under it"
        );
        assert_eq!(system_dirs(&env(&[])), paths(&["/etc/init"]));
        assert_eq!(system_dirs(&env(&[("UPSTART_CONFDIR", "/x")])), paths(&["/x"]));
    }

    #[test]
    fn dir_options_replace_prepend_and_append() {
        let p = |v: &[&str]| v.iter().map(PathBuf::from).collect::<Vec<_>>();
        let defaults = p(&["/d1", "/d2"]);
        assert_eq!(apply_dir_options(defaults.clone(), &[], &[], &[]), defaults);
        assert_eq!(
            apply_dir_options(defaults.clone(), &p(&["/c1", "/c2"]), &[], &[]),
            p(&["/c1", "/c2"])
        );
        assert_eq!(
            apply_dir_options(defaults.clone(), &[], &p(&["/p1", "/p2"]), &p(&["/a1"])),
            p(&["/p1", "/p2", "/d1", "/d2", "/a1"])
        );
        assert_eq!(
            apply_dir_options(defaults, &p(&["/c"]), &p(&["/p"]), &p(&["/a1", "/a2"])),
            p(&["/p", "/c", "/a1", "/a2"])
        );
    }
}

//! The daemon's own log (design layer 6): `tracing` to journald when its
//! socket is there; otherwise, as process 1 of the machine, to the kernel
//! log (`/dev/kmsg`, plus the console with `--verbose` or `--debug`);
//! otherwise to standard error. `tracing-journald` cannot tell when
//! journald goes away later (environment notes §7), so the choice is made
//! once, at start-up.

use std::path::Path;
use std::sync::atomic::{AtomicU8, Ordering};

use tracing::level_filters::LevelFilter;
use tracing_subscriber::prelude::*;

/// Where daemon messages go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sink {
    Journald,
    /// `/dev/kmsg`, and the console (standard error) too when `console`.
    Kmsg {
        console: bool,
    },
    Stderr,
}

/// `--quiet` → errors only, default → warnings, `--verbose` → info,
/// `--debug` → everything (Upstart's `message` level sits between warn and
/// info: job failures and respawns are warnings here).
pub fn level(quiet: bool, verbose: bool, debug: bool) -> LevelFilter {
    if debug {
        LevelFilter::DEBUG
    } else if verbose {
        LevelFilter::INFO
    } else if quiet {
        LevelFilter::ERROR
    } else {
        LevelFilter::WARN
    }
}

/// The level in force, changed at run time by `log_priority` (0 off, 1
/// error … 5 trace).
static LEVEL: AtomicU8 = AtomicU8::new(2);

fn encode(level: LevelFilter) -> u8 {
    match level {
        LevelFilter::OFF => 0,
        LevelFilter::ERROR => 1,
        LevelFilter::WARN => 2,
        LevelFilter::INFO => 3,
        LevelFilter::DEBUG => 4,
        _ => 5,
    }
}

fn decode(n: u8) -> LevelFilter {
    [
        LevelFilter::OFF,
        LevelFilter::ERROR,
        LevelFilter::WARN,
        LevelFilter::INFO,
        LevelFilter::DEBUG,
        LevelFilter::TRACE,
    ][usize::from(n.min(5))]
}

/// Changes the level of the daemon's own messages.
pub fn set_level(level: LevelFilter) {
    LEVEL.store(encode(level), Ordering::Relaxed);
    // A filter's verdict is cached per call site (a `filter_fn` is taken
    // to be static): drop the cache, or sites seen before keep the old
    // level.
    tracing::callsite::rebuild_interest_cache();
}

/// The level in force.
pub fn current_level() -> LevelFilter {
    decode(LEVEL.load(Ordering::Relaxed))
}

/// Upstart's name for a level (`log_priority`).
pub fn priority_name(level: LevelFilter) -> &'static str {
    match encode(level) {
        0 | 1 => "error",
        2 => "message",
        3 => "info",
        _ => "debug",
    }
}

fn dynamic() -> tracing_subscriber::filter::FilterFn {
    tracing_subscriber::filter::filter_fn(|meta| *meta.level() <= current_level())
}

/// Installs the global subscriber; returns where it logs.
pub fn init(level: LevelFilter) -> Sink {
    init_with(level, false)
}

/// [`init`] for a system init: `machine` (process 1 of the machine) logs
/// to `/dev/kmsg` unless journald listens, and to the console as well when
/// the level is `--verbose` or more.
pub fn init_with(level: LevelFilter, machine: bool) -> Sink {
    set_level(level);
    if Path::new("/run/systemd/journal/socket").exists()
        && let Ok(layer) = tracing_journald::layer()
    {
        let _ = tracing_subscriber::registry()
            .with(layer.with_filter(dynamic()))
            .try_init();
        return Sink::Journald;
    }
    if machine && std::fs::OpenOptions::new().write(true).open("/dev/kmsg").is_ok() {
        let kmsg = tracing_subscriber::fmt::layer()
            .with_writer(Kmsg)
            .with_ansi(false)
            .with_level(false)
            .with_target(false)
            .without_time()
            .with_filter(dynamic());
        // The kernel shows on the console the records more urgent than its
        // console log level; with --verbose or --debug the others are
        // written to the console directly (so none appears twice).
        let console = level >= LevelFilter::INFO;
        let shown = console_loglevel();
        let on_console = tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(false)
            .with_target(false)
            .without_time()
            .with_filter(tracing_subscriber::filter::filter_fn(move |meta| {
                console && *meta.level() <= current_level() && kmsg_priority(meta.level()) >= shown
            }));
        let _ = tracing_subscriber::registry()
            .with(kmsg)
            .with(on_console)
            .try_init();
        return Sink::Kmsg { console };
    }
    let _ = tracing_subscriber::registry()
        .with(stderr().with_filter(dynamic()))
        .try_init();
    Sink::Stderr
}

/// Daemon messages on standard error.
fn stderr<S>() -> impl tracing_subscriber::Layer<S>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .without_time()
}

/// Writes each message as one record of the kernel log, `<PRIORITY>init: `
/// first (syslog priorities: error 3, warning 4, info 6, debug 7).
/// `/dev/kmsg` is opened for each message, as Upstart does: the kernel
/// rate-limits what is written through one open file (10 records in 5 s by
/// default), which would lose a verbose boot's messages.
#[derive(Clone)]
struct Kmsg;

/// One message being formatted; written out whole when dropped.
struct KmsgRecord {
    buf: Vec<u8>,
}

impl std::io::Write for KmsgRecord {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for KmsgRecord {
    fn drop(&mut self) {
        // The kernel log keeps a record to about 1 KiB: longer messages
        // are cut rather than lost.
        let mut buf = std::mem::take(&mut self.buf);
        buf.truncate(1000);
        if let Ok(mut kmsg) = std::fs::OpenOptions::new().write(true).open("/dev/kmsg") {
            let _ = std::io::Write::write(&mut kmsg, &buf);
        }
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Kmsg {
    type Writer = KmsgRecord;

    fn make_writer(&'a self) -> KmsgRecord {
        self.record(6)
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> KmsgRecord {
        self.record(kmsg_priority(meta.level()))
    }
}

/// The syslog priority of a level.
fn kmsg_priority(level: &tracing::Level) -> u8 {
    match *level {
        tracing::Level::ERROR => 3,
        tracing::Level::WARN => 4,
        tracing::Level::INFO => 6,
        _ => 7,
    }
}

/// The kernel's console log level (the first field of
/// `/proc/sys/kernel/printk`; 7 when unknown): records of a lower
/// priority number reach the console.
fn console_loglevel() -> u8 {
    std::fs::read_to_string("/proc/sys/kernel/printk")
        .ok()
        .and_then(|t| t.split_whitespace().next()?.parse().ok())
        .unwrap_or(7)
}

impl Kmsg {
    fn record(&self, priority: u8) -> KmsgRecord {
        KmsgRecord {
            buf: format!("<{priority}>init: ").into_bytes(),
        }
    }
}

//! The daemon's own log (design layer 6): `tracing` to journald when its
//! socket is there, otherwise to standard error. `tracing-journald` cannot
//! tell when journald goes away later (environment notes §7), so the
//! choice is made once, at start-up.

use std::path::Path;
use std::sync::atomic::{AtomicU8, Ordering};

use tracing::level_filters::LevelFilter;
use tracing_subscriber::prelude::*;

/// Where daemon messages go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sink {
    Journald,
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
    set_level(level);
    if Path::new("/run/systemd/journal/socket").exists()
        && let Ok(layer) = tracing_journald::layer()
    {
        let _ = tracing_subscriber::registry()
            .with(layer.with_filter(dynamic()))
            .try_init();
        return Sink::Journald;
    }
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .without_time()
        .with_filter(dynamic());
    let _ = tracing_subscriber::registry().with(fmt).try_init();
    Sink::Stderr
}

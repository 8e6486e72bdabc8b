//! The daemon's own log (design layer 6): `tracing` to journald when its
//! socket is there, otherwise to standard error. `tracing-journald` cannot
//! tell when journald goes away later (environment notes §7), so the
//! choice is made once, at start-up.

use std::path::Path;

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

/// Installs the global subscriber; returns where it logs.
pub fn init(level: LevelFilter) -> Sink {
    if Path::new("/run/systemd/journal/socket").exists()
        && let Ok(layer) = tracing_journald::layer()
    {
        let _ = tracing_subscriber::registry()
            .with(layer.with_filter(level))
            .try_init();
        return Sink::Journald;
    }
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .without_time()
        .with_filter(level);
    let _ = tracing_subscriber::registry().with(fmt).try_init();
    Sink::Stderr
}

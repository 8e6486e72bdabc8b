//! upshot's `init`: the library behind the daemon binary.
//!
//! - [`engine`]: the pure job and event state machine (no I/O, no clock).
//! - [`daemon`]: the main loop that drives it: signals, timers, reaping.
//! - [`ptrace`]: following the forks of `expect fork|daemon`, `expect stop`.
//! - [`spawn`]: starting job processes with their whole setup.
//! - [`kill`]: finding and signalling every process of an instance.
//! - [`joblog`]: `console log` output into per-job log files.
//! - [`conf`]: conf dirs, overrides and inotify.
//! - [`session`], [`logging`]: session-init duties and the daemon's own log.
//! - [`pid1`]: process-1 duties (early mounts, console, the end of a
//!   shutdown).
//! - [`control`]: the D-Bus transport thread (the API itself is in
//!   `daemon/bus.rs`).

pub mod conf;
pub mod control;
pub mod daemon;
pub mod engine;
pub mod joblog;
pub mod kill;
pub mod logging;
pub mod pid1;
pub mod ptrace;
pub mod session;
pub mod spawn;

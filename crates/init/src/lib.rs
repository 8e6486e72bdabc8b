//! upshot's `init`: the library behind the daemon binary.
//!
//! - [`engine`]: the pure job and event state machine (no I/O, no clock).
//! - [`kill`]: finding and signalling every process of an instance.
//! - [`session`], [`logging`]: session-init duties and the daemon's own log.
//!
//! Control over D-Bus and PID 1 duties come with their issues; see
//! `shared/design.md`.

pub mod engine;
pub mod kill;
pub mod logging;
pub mod session;

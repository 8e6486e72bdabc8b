//! upshot's `init`: the library behind the daemon binary.
//!
//! - [`engine`]: the pure job and event state machine (no I/O, no clock).
//!
//! The main loop, supervisor, control and system layers come with their
//! issues; see `shared/design.md`.

pub mod engine;

//! qemu-harness: upshot's VM test lab.
//!
//! A harness job file (TOML, see [`job`]) describes a pipeline of actions,
//! each logged with a level number ([`level`]):
//!
//! 1. **deploy** builds `init` and `initctl` as static binaries and
//!    assembles an initramfs with them, job files, busybox and kernel
//!    modules ([`modules`]);
//! 2. **boot** starts QEMU (KVM when usable, else TCG: [`accel`]) on a
//!    Debian kernel with the initramfs and the job's disk images
//!    ([`disk`]), and waits for the console prompts;
//! 3. **test** types commands at the serial console and matches their
//!    output ([`console`]);
//! 4. **finalize** copies log files out, powers the VM off and checks that
//!    it went down cleanly.
//!
//! A failure names its action and is an infrastructure, job or test error,
//! each with its own exit status ([`error`]). Built artifacts are cached
//! under `target/qemu-harness/` by a checksum of their inputs ([`cache`]).
//! The crate does not know what init does: it only builds, boots, types and
//! reads.

pub mod accel;
pub mod cache;
pub mod console;
pub mod cpio;
pub mod debian;
pub mod deploy;
pub mod disk;
pub mod error;
pub mod exec;
pub mod job;
pub mod kernel;
pub mod level;
pub mod modules;
pub mod qemu;
pub mod run;
pub mod static_build;

/// The job `run` and `boot` use when none is named.
pub const DEFAULT_JOB: &str = "vm";

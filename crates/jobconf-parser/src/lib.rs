//! The Upstart job-file language: text in, typed job definitions out.
//!
//! This crate owns everything about reading job files and nothing about
//! running them: the tokenizer of libnih (`lexer`), the 35 stanzas and the
//! `start on`/`stop on` grammar (`parse`), the typed result ([`JobConf`]),
//! `.override` merging, job names and ignored file names (`names`), `$`
//! expansion and glob matching of event values (used by the engine), and the
//! printed forms: Upstart's `show-config` expression syntax, a canonical job
//! file rendering, and the JSON dump of `init --check --dump`.
//!
//! It is pure: no file system, no environment, no clock. The reference is
//! section 1 of `upstart-reference.md`; where it flags an Upstart bug, the
//! fix is documented at the function that makes it.

mod bytes;
pub mod dump;
mod error;
pub mod expand;
mod expr;
pub mod glob;
mod job;
mod lexer;
mod names;
mod number;
mod packed;
mod parse;
pub mod render;
mod signal;

pub use error::{ErrorKind, FileError, ParseError};
pub use expr::{EventExpr, EventMatch, MatchArg};
pub use job::*;
pub use names::{is_ignored, job_name, override_job_name};
pub use packed::{ArgRef, Args, Nodes, PackedExpr, PackedMatch, PackedNode};
pub use parse::{MAX_EXPR_DEPTH, parse_into, parse_job};
pub use signal::Signal;

/// Applies an override file to a parsed job, all or nothing: the override is
/// parsed "into the same job after the conf file" (so single-valued stanzas
/// are replaced, accumulating ones added to, `manual` clears `start on`),
/// but into a copy, so an override with an error changes nothing (Upstart
/// half-applies it; spec §1.2 and §7.7).
pub fn apply_override(job: &JobConf, override_text: &[u8]) -> Result<JobConf, ParseError> {
    let mut merged = job.fields();
    parse::parse_fields(&mut merged, override_text)?;
    Ok(merged.into())
}
pub use render::render_job;

//! Events and what waits on them (spec §2.1).

use serde::{Deserialize, Serialize};

use super::{InstanceKey, ReplyTo};

/// An event's identity: a counter, so ids also give queue order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct EventId(pub u64);

/// `pending` → `handling` → `finished`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Progress {
    Pending,
    Handling,
}

/// What a request waiting on a job or an event was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WaitKind {
    Emit,
    Start,
    Stop,
    Restart,
}

/// Something held up until a job or an event is done (Upstart's `Blocked`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Blocked {
    /// An instance sitting in `starting`/`stopping` until its event finishes.
    Job(InstanceKey),
    /// An event that started or stopped an instance, held until that
    /// instance settles.
    Event(EventId),
    /// A client request answered when the thing it waits on is done.
    Waiter { to: ReplyTo, kind: WaitKind },
}

/// An event in the queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub name: String,
    /// `KEY=VALUE` entries, in order (order matters for positional matches).
    pub env: Vec<String>,
    pub progress: Progress,
    /// References held by job trees and instances; the event finishes when
    /// it is handled and this drops to zero.
    pub blockers: u32,
    /// A job it started or stopped failed: `NAME/failed` follows.
    pub failed: bool,
    /// What waits for this event to finish.
    pub blocking: Vec<Blocked>,
}

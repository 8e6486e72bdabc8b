//! Goals and states of an instance, and Upstart's transition table
//! (`job_next_state`, spec §1.9). The 1.13 transient `*-ing` states are
//! folded: a process being spawned is a property of its slot, not a state,
//! so clients see the classic names only.

use serde::{Deserialize, Serialize};

/// What an instance is trying to reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Goal {
    Stop,
    Start,
    /// Internal: the main process died while post-start or pre-stop was
    /// running and will be respawned once that process is done.
    Respawn,
}

impl Goal {
    pub fn name(self) -> &'static str {
        match self {
            Goal::Stop => "stop",
            Goal::Start => "start",
            Goal::Respawn => "respawn",
        }
    }
}

/// Where an instance is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    Waiting,
    Starting,
    PreStart,
    Spawned,
    PostStart,
    Running,
    PreStop,
    Stopping,
    Killed,
    PostStop,
}

impl State {
    pub fn name(self) -> &'static str {
        match self {
            State::Waiting => "waiting",
            State::Starting => "starting",
            State::PreStart => "pre-start",
            State::Spawned => "spawned",
            State::PostStart => "post-start",
            State::Running => "running",
            State::PreStop => "pre-stop",
            State::Stopping => "stopping",
            State::Killed => "killed",
            State::PostStop => "post-stop",
        }
    }
}

/// The next state for `state` given `goal`, and the goal to adopt with it
/// (only `respawn` changes: it becomes `start` on the way to `stopping`).
/// `main_alive` decides between `pre-stop` and `stopping` from `running`.
///
/// Returns `None` for combinations Upstart asserts never happen (the
/// caller then stays put and logs it), so no input can panic the engine.
pub fn next_state(state: State, goal: Goal, main_alive: bool) -> Option<(State, Goal)> {
    use Goal::*;
    use State::*;
    Some(match (state, goal) {
        (Waiting, Start) => (Starting, Start),
        (Waiting, _) => return None,

        (Starting, Stop) => (Stopping, Stop),
        (Starting, Start) => (PreStart, Start),
        (PreStart, Stop) => (Stopping, Stop),
        (PreStart, Start) => (Spawned, Start),
        (Spawned, Stop) => (Stopping, Stop),
        (Spawned, Start) => (PostStart, Start),
        (PostStart, Stop) => (Stopping, Stop),
        (PostStart, Start) => (Running, Start),
        (Running, Stop) if main_alive => (PreStop, Stop),
        (Running, Stop) => (Stopping, Stop),
        // The main process ended and will be respawned.
        (Running, Start) => (Stopping, Start),
        (PreStop, Stop) => (Stopping, Stop),
        // A start during pre-stop cancels the stop.
        (PreStop, Start) => (Running, Start),
        // Main died during spawned/post-start/running/pre-stop and will be
        // respawned: go round through stopping without a `stopped` event.
        (Spawned | PostStart | Running | PreStop, Respawn) => (Stopping, Start),
        (Starting | PreStart, Respawn) => return None,
        (Stopping, Stop | Start) => (Killed, goal),
        (Stopping, Respawn) => (Killed, Start),
        (Killed, g) => (PostStop, if g == Respawn { Start } else { g }),
        (PostStop, Stop) => (Waiting, Stop),
        // Restart or respawn: round again, with no `stopped` event.
        (PostStop, Start | Respawn) => (Starting, Start),
    })
}

#[cfg(test)]
mod tests {
    use super::Goal::*;
    use super::State::*;
    use super::*;

    type Row = (State, Goal, bool, Option<(State, Goal)>);

    /// The classic table of init(8) and spec §1.9, row by row.
    #[test]
    fn transition_table_of_the_spec() {
        let rows: &[Row] = &[
            (Waiting, Start, false, Some((Starting, Start))),
            (Waiting, Stop, false, None),
            (Starting, Start, false, Some((PreStart, Start))),
            (Starting, Stop, false, Some((Stopping, Stop))),
            (PreStart, Start, false, Some((Spawned, Start))),
            (PreStart, Stop, false, Some((Stopping, Stop))),
            (Spawned, Start, true, Some((PostStart, Start))),
            (Spawned, Stop, true, Some((Stopping, Stop))),
            (PostStart, Start, true, Some((Running, Start))),
            (PostStart, Stop, true, Some((Stopping, Stop))),
            (PostStart, Respawn, false, Some((Stopping, Start))),
            (Running, Start, false, Some((Stopping, Start))),
            (Running, Stop, true, Some((PreStop, Stop))),
            (Running, Stop, false, Some((Stopping, Stop))),
            (Running, Respawn, false, Some((Stopping, Start))),
            (PreStop, Start, true, Some((Running, Start))),
            (PreStop, Stop, true, Some((Stopping, Stop))),
            (PreStop, Respawn, false, Some((Stopping, Start))),
            (Stopping, Start, false, Some((Killed, Start))),
            (Stopping, Stop, false, Some((Killed, Stop))),
            (Killed, Start, false, Some((PostStop, Start))),
            (Killed, Stop, false, Some((PostStop, Stop))),
            (PostStop, Start, false, Some((Starting, Start))),
            (PostStop, Stop, false, Some((Waiting, Stop))),
        ];
        for &(state, goal, alive, want) in rows {
            assert_eq!(
                next_state(state, goal, alive),
                want,
                "{state:?} + {goal:?} (main alive: {alive})"
            );
        }
    }

    #[test]
    fn every_combination_is_defined_or_refused_without_panic() {
        let states = [
            Waiting, Starting, PreStart, Spawned, PostStart, Running, PreStop, Stopping, Killed, PostStop,
        ];
        for s in states {
            for g in [Stop, Start, Respawn] {
                for alive in [false, true] {
                    if let Some((_, goal)) = next_state(s, g, alive) {
                        assert_ne!(goal, Respawn, "respawn is never carried forward");
                    }
                }
            }
        }
    }
}

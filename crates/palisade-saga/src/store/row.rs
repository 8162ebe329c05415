//! The rows the log holds: a saga's current state and the events of its timeline.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::StoreError;

/// Where a saga is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SagaState {
    /// Running its steps forward.
    Running,
    /// Undoing its steps, last first.
    Compensating,
    /// Every step done.
    Completed,
    /// Every step that may have had an effect undone.
    Compensated,
    /// Stopped for an operator, with a reason (a compensation that kept failing, an
    /// unregistered definition version).
    Parked,
    /// Given up by an operator while parked; effects may remain (the reason says why).
    Aborted,
}

impl SagaState {
    /// Every state, for listing.
    pub const ALL: [SagaState; 6] = [
        Self::Running,
        Self::Compensating,
        Self::Completed,
        Self::Compensated,
        Self::Parked,
        Self::Aborted,
    ];

    /// The stable name used in the store, the API and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Compensating => "compensating",
            Self::Completed => "completed",
            Self::Compensated => "compensated",
            Self::Parked => "parked",
            Self::Aborted => "aborted",
        }
    }

    /// Running or compensating: a runner drives it.
    pub fn is_active(self) -> bool {
        matches!(self, Self::Running | Self::Compensating)
    }

    /// Completed, compensated or aborted: nothing more will happen.
    pub fn is_finished(self) -> bool {
        matches!(self, Self::Completed | Self::Compensated | Self::Aborted)
    }
}

impl fmt::Display for SagaState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SagaState {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| format!("unknown saga state {s:?}"))
    }
}

/// A saga's current state, one row per saga.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SagaRow {
    /// The saga's id (a client's idempotency key, or generated).
    pub id: String,
    /// The definition's name.
    pub definition: String,
    /// The definition's version.
    pub version: u32,
    /// Where it is.
    pub state: SagaState,
    /// Running: the next step to run. Compensating: the next step to undo (−1: none).
    /// Parked: where it stopped, in the state `parked_from`.
    pub cursor: i64,
    /// Failed attempts of the compensation at `cursor`.
    pub attempt: u32,
    /// The saga's input.
    pub input: Value,
    /// Each step's output; `null` for a step not run or whose outcome is unknown.
    pub outputs: Vec<Value>,
    /// The forward step whose failure (or the cancel or deadline) started compensation.
    pub failed_step: Option<i64>,
    /// Why it compensates.
    pub failure: Option<String>,
    /// Why it is parked (a code, `:`, details): `compensation_failed: …`,
    /// `unknown_version: …`.
    pub reason: Option<String>,
    /// The state it was parked from.
    pub parked_from: Option<SagaState>,
    /// Past this instant (ms since the Unix epoch) a running saga compensates.
    pub deadline_ms: Option<i64>,
    /// A cancellation was asked for and not yet acted on.
    pub cancel_requested: bool,
    /// The runner holding the lease.
    pub owner: Option<String>,
    /// Bumped by every claim; writes from an older epoch are refused.
    pub epoch: i64,
    /// The lease's end (ms since the Unix epoch).
    pub lease_until_ms: i64,
    /// Created at (ms since the Unix epoch).
    pub created_ms: i64,
    /// Last changed at (ms since the Unix epoch).
    pub updated_ms: i64,
    /// Events appended so far; the next event's sequence number.
    pub seq: i64,
}

/// One entry in a saga's timeline.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EventRow {
    /// The saga.
    pub saga_id: String,
    /// Position in the timeline, from 0.
    pub seq: i64,
    /// When (ms since the Unix epoch).
    pub at_ms: i64,
    /// The step concerned, if any.
    pub step: Option<i64>,
    /// What happened: `started`, `claimed`, `step_done`, `step_failed`,
    /// `compensation_done`, `compensation_failed`, `cancelled`, `deadline`, `completed`,
    /// `compensated`, `parked`, `resumed`, `retried`, `aborted`.
    pub kind: String,
    /// The attempt (of a compensation), from 1.
    pub attempt: u32,
    /// Details: an error, a duration, the runner.
    pub detail: Option<String>,
}

// === impl SagaRow ===

impl SagaRow {
    pub(crate) fn outputs_json(&self) -> String {
        Value::Array(self.outputs.clone()).to_string()
    }

    pub(crate) fn decode_outputs(id: &str, text: &str) -> Result<Vec<Value>, StoreError> {
        match serde_json::from_str(text) {
            Ok(Value::Array(values)) => Ok(values),
            Ok(_) => Err(corrupt(id, "outputs is not a JSON array")),
            Err(e) => Err(corrupt(id, e)),
        }
    }

    pub(crate) fn decode_input(id: &str, text: &str) -> Result<Value, StoreError> {
        serde_json::from_str(text).map_err(|e| corrupt(id, e))
    }

    pub(crate) fn decode_state(id: &str, text: &str) -> Result<SagaState, StoreError> {
        text.parse().map_err(|e| corrupt(id, e))
    }
}

pub(crate) fn corrupt(id: &str, reason: impl fmt::Display) -> StoreError {
    StoreError::Corrupt {
        id: id.to_owned(),
        reason: reason.to_string(),
    }
}

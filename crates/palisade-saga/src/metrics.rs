//! The metrics a runner emits, through the `metrics` facade.
//!
//! | name | kind | labels |
//! |---|---|---|
//! | `palisade_saga_started_total` | counter | `saga` |
//! | `palisade_saga_completed_total` | counter | `saga` |
//! | `palisade_saga_compensated_total` | counter | `saga` |
//! | `palisade_saga_parked_total` | counter | `saga`, `reason` |
//! | `palisade_saga_step_duration_seconds` | histogram | `saga`, `step`, `phase` (`action`/`compensation`) |
//! | `palisade_saga_running` | gauge | — (sagas driven by this runner) |

use std::time::Duration;

/// Sagas started.
pub const STARTED: &str = "palisade_saga_started_total";
/// Sagas that completed.
pub const COMPLETED: &str = "palisade_saga_completed_total";
/// Sagas that were compensated.
pub const COMPENSATED: &str = "palisade_saga_compensated_total";
/// Sagas parked for an operator.
pub const PARKED: &str = "palisade_saga_parked_total";
/// Latency of each action and compensation.
pub const STEP_DURATION: &str = "palisade_saga_step_duration_seconds";
/// Sagas being driven by this runner.
pub const RUNNING: &str = "palisade_saga_running";

pub(crate) fn started(saga: &str) {
    metrics::counter!(STARTED, "saga" => saga.to_owned()).increment(1);
}

pub(crate) fn completed(saga: &str) {
    metrics::counter!(COMPLETED, "saga" => saga.to_owned()).increment(1);
}

pub(crate) fn compensated(saga: &str) {
    metrics::counter!(COMPENSATED, "saga" => saga.to_owned()).increment(1);
}

pub(crate) fn parked(saga: &str, reason: &str) {
    let reason: String = reason.split(':').next().unwrap_or(reason).to_owned();
    metrics::counter!(PARKED, "saga" => saga.to_owned(), "reason" => reason).increment(1);
}

pub(crate) fn step(saga: &str, step: &str, phase: &'static str, took: Duration) {
    metrics::histogram!(STEP_DURATION, "saga" => saga.to_owned(), "step" => step.to_owned(), "phase" => phase)
        .record(took.as_secs_f64());
}

pub(crate) fn running(n: usize) {
    #[allow(clippy::cast_precision_loss)] // a count of sagas, far below 2^52
    metrics::gauge!(RUNNING).set(n as f64);
}

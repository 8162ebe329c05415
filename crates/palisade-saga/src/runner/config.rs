//! The runner's settings, validated by its builder.

use std::time::Duration;

use crate::error::DefinitionError;

/// A runner's bounds and timings; see each field for its default.
#[derive(Clone, Debug, PartialEq)]
pub struct RunnerConfig {
    /// This runner's id in a fleet; a restarted runner with the same id takes its sagas
    /// back at once. Default: `runner-{pid}`.
    pub runner_id: String,
    /// Sagas driven at once, at most; a start beyond it is refused
    /// ([`SagaError::Full`](crate::SagaError::Full)). A saga sleeping between compensation
    /// attempts gives its slot back (up to `max_running` of them). Default 1024.
    pub max_running: usize,
    /// Recovered (or taken-over) sagas driven at once, at most. Default 64.
    pub recovery_concurrency: usize,
    /// How long a claim on a saga lasts without renewal; renewed every third of it.
    /// Another runner takes a dead runner's sagas within `lease` plus one second.
    /// Default 10 s.
    pub lease: Duration,
    /// Finished sagas (completed, compensated, aborted) are deleted this long after
    /// their last change. Default 7 days.
    pub retention: Duration,
    /// How often finished sagas are pruned. Default 60 s.
    pub prune_interval: Duration,
    /// Seed of the jitter between compensation retries; `None` draws one from the OS.
    pub seed: Option<u64>,
}

impl Default for RunnerConfig {
    fn default() -> Self {
        Self {
            runner_id: format!("runner-{}", std::process::id()),
            max_running: 1024,
            recovery_concurrency: 64,
            lease: Duration::from_secs(10),
            retention: Duration::from_secs(7 * 24 * 3600),
            prune_interval: Duration::from_secs(60),
            seed: None,
        }
    }
}

impl RunnerConfig {
    /// Checks the values.
    pub fn validate(&self) -> Result<(), DefinitionError> {
        let bad = |m: &str| Err(DefinitionError::Invalid(m.to_owned()));
        if self.runner_id.is_empty() || self.runner_id.len() > 200 {
            return bad("runner_id must be 1 to 200 bytes");
        }
        if self.max_running == 0 || self.max_running > 1 << 20 {
            return bad("max_running must be in 1..=1048576");
        }
        if self.recovery_concurrency == 0 || self.recovery_concurrency > self.max_running {
            return bad("recovery_concurrency must be in 1..=max_running");
        }
        if self.lease < Duration::from_millis(300) {
            return bad("lease must be at least 300ms");
        }
        if self.prune_interval.is_zero() {
            return bad("prune_interval must be positive");
        }
        Ok(())
    }

    /// How often a runner looks for sagas whose lease ended: at most every second.
    pub fn takeover_interval(&self) -> Duration {
        (self.lease / 2).min(Duration::from_secs(1))
    }
}

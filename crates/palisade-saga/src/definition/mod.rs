//! What a saga is: a named, versioned list of steps, a deadline and a compensation retry.
//!
//! A definition is data (names, numbers) plus closures, so the sidecar can build one from
//! its config and a library user from code. It is validated once, at
//! [`SagaDefinitionBuilder::build`]: at least one step, unique step names, a name without
//! `/` (the idempotency key is `{saga_id}/{step}`), and a sound compensation retry.
//!
//! **Invariant:** a stored saga is only ever driven by the definition with its recorded
//! name *and* version; a runner without that version parks it (`unknown_version`).

mod step;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use palisade::policy::retry::{Backoff, BackoffKind, Jitter};
use serde::{Deserialize, Serialize};

use crate::error::DefinitionError;

pub use step::{BoxFuture, Step, StepClassifier, StepContext, StepError, StepPolicy};

/// How a failed compensation is retried before the saga is parked: Palisade's retry
/// backoff (`palisade::policy::retry::backoff`) between attempts.
///
/// Default: 24 attempts, exponential from 1 s doubling to at most 5 min, equal jitter —
/// about an hour in all (0.75 × (511 s + 15 × 300 s) ≈ 63 min on average).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CompensationRetry {
    /// Attempts of one compensation, the first included, before the saga is parked.
    pub max_attempts: u32,
    /// The first delay.
    #[serde(with = "humantime_serde")]
    pub base: Duration,
    /// The cap on every delay.
    #[serde(with = "humantime_serde")]
    pub max_delay: Duration,
    /// Growth factor of the exponential curve.
    pub multiplier: f64,
    /// The spread of each delay.
    pub jitter: Jitter,
}

impl Default for CompensationRetry {
    fn default() -> Self {
        Self {
            max_attempts: 24,
            base: Duration::from_secs(1),
            max_delay: Duration::from_secs(300),
            multiplier: 2.0,
            jitter: Jitter::Equal,
        }
    }
}

impl CompensationRetry {
    /// Checks the numbers.
    pub fn validate(&self) -> Result<(), DefinitionError> {
        if self.max_attempts == 0 {
            return Err(DefinitionError::Invalid(
                "compensation_retry.max_attempts must be at least 1".into(),
            ));
        }
        if self.base.is_zero() || self.max_delay < self.base {
            return Err(DefinitionError::Invalid(
                "compensation_retry needs 0 < base <= max_delay".into(),
            ));
        }
        if !(self.multiplier.is_finite() && self.multiplier >= 1.0) {
            return Err(DefinitionError::Invalid(
                "compensation_retry.multiplier must be >= 1".into(),
            ));
        }
        Ok(())
    }

    /// Palisade's backoff curve for these numbers.
    pub fn backoff(&self) -> Backoff {
        Backoff {
            kind: BackoffKind::Exponential,
            base: self.base,
            multiplier: self.multiplier,
            max_delay: self.max_delay,
            jitter: self.jitter,
            jitter_factor: 0.5,
        }
    }
}

/// A saga's definition; cheap to clone.
#[derive(Clone, Debug)]
pub struct SagaDefinition {
    pub(crate) inner: Arc<DefinitionInner>,
}

#[derive(Debug)]
pub(crate) struct DefinitionInner {
    pub(crate) name: String,
    pub(crate) version: u32,
    pub(crate) steps: Vec<Step>,
    pub(crate) deadline: Option<Duration>,
    pub(crate) compensation_retry: CompensationRetry,
}

/// Builds a [`SagaDefinition`].
#[derive(Debug)]
pub struct SagaDefinitionBuilder {
    name: String,
    version: u32,
    steps: Vec<Step>,
    deadline: Option<Duration>,
    compensation_retry: CompensationRetry,
}

// === impl SagaDefinition ===

impl SagaDefinition {
    /// Starts a definition named `name` at `version`. Defaults: no deadline, the default
    /// [`CompensationRetry`].
    pub fn builder(name: impl Into<String>, version: u32) -> SagaDefinitionBuilder {
        SagaDefinitionBuilder {
            name: name.into(),
            version,
            steps: Vec::new(),
            deadline: None,
            compensation_retry: CompensationRetry::default(),
        }
    }

    /// The definition's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The definition's version.
    pub fn version(&self) -> u32 {
        self.inner.version
    }

    /// The steps, in order.
    pub fn steps(&self) -> &[Step] {
        &self.inner.steps
    }

    /// The whole saga's deadline, from its start.
    pub fn deadline(&self) -> Option<Duration> {
        self.inner.deadline
    }

    /// How failed compensations are retried.
    pub fn compensation_retry(&self) -> &CompensationRetry {
        &self.inner.compensation_retry
    }
}

// === impl SagaDefinitionBuilder ===

impl SagaDefinitionBuilder {
    /// Appends a step.
    pub fn step(mut self, step: Step) -> Self {
        self.steps.push(step);
        self
    }

    /// Past this time from the start, a running saga compensates as if cancelled.
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.deadline = Some(deadline);
        self
    }

    /// How failed compensations are retried before parking.
    pub fn compensation_retry(mut self, retry: CompensationRetry) -> Self {
        self.compensation_retry = retry;
        self
    }

    /// Validates and builds.
    pub fn build(self) -> Result<SagaDefinition, DefinitionError> {
        if self.name.is_empty() || self.name.len() > 200 {
            return Err(DefinitionError::Invalid(
                "a saga needs a name of 1 to 200 bytes".into(),
            ));
        }
        if self.steps.is_empty() {
            return Err(DefinitionError::Invalid(format!(
                "saga {:?} has no steps",
                self.name
            )));
        }
        if self.steps.len() > MAX_STEPS {
            return Err(DefinitionError::Invalid(format!(
                "saga {:?} has more than {MAX_STEPS} steps",
                self.name
            )));
        }
        let mut seen = HashSet::new();
        for step in &self.steps {
            if step.name.is_empty() || step.name.contains('/') {
                return Err(DefinitionError::Invalid(format!(
                    "step name {:?} must be non-empty and without '/'",
                    step.name
                )));
            }
            if !seen.insert(step.name.clone()) {
                return Err(DefinitionError::Invalid(format!(
                    "step {:?} appears twice",
                    step.name
                )));
            }
        }
        if self.deadline.is_some_and(|d| d.is_zero()) {
            return Err(DefinitionError::Invalid("deadline must be positive".into()));
        }
        self.compensation_retry.validate()?;
        Ok(SagaDefinition {
            inner: Arc::new(DefinitionInner {
                name: self.name,
                version: self.version,
                steps: self.steps,
                deadline: self.deadline,
                compensation_retry: self.compensation_retry,
            }),
        })
    }
}

/// The most steps a saga may have (its log and outputs stay bounded).
pub const MAX_STEPS: usize = 256;

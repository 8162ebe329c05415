//! One step: its action, its compensation, the policies they run through, and how an
//! outcome is classified.
//!
//! **Why the classification is explicit.** Whether step N is compensated after it fails
//! depends on whether it *may have had an effect*. Only the caller knows: a connect
//! failure or a 4xx rejection is [`StepError::Definitive`] (nothing happened, no
//! compensation); a timeout, a connection lost after the request was sent or a 5xx is
//! [`StepError::Unknown`] (something may have happened, so step N is compensated too).
//! Palisade's own rejections map the same way: an open breaker, a full bulkhead, a rate
//! limit or a shed never sent the call (definitive); a timeout or a passed deadline may
//! have cut it short (unknown).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use palisade::outcome::{Classify, Outcome};
use palisade::{Error, Policy};
use serde_json::Value;

/// A boxed, sendable future, as the step closures return.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// How a step's action or compensation failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StepError {
    /// Nothing can have happened (connect failure, definitive rejection): the step is not
    /// compensated; as a compensation's error, retrying cannot help and the saga parks.
    #[error("definitive failure: {0}")]
    Definitive(String),
    /// Something may have happened (timeout, connection lost after sending, server error):
    /// the step is compensated too; as a compensation's error, it is retried with backoff.
    #[error("unknown outcome: {0}")]
    Unknown(String),
}

impl StepError {
    /// A definitive failure.
    pub fn definitive(reason: impl fmt::Display) -> Self {
        Self::Definitive(reason.to_string())
    }

    /// A failure whose effect is unknown.
    pub fn unknown(reason: impl fmt::Display) -> Self {
        Self::Unknown(reason.to_string())
    }

    /// Whether something may have happened.
    pub fn is_unknown(&self) -> bool {
        matches!(self, Self::Unknown(_))
    }

    /// Maps one of Palisade's errors: rejections that never sent the call are
    /// definitive; a timeout or a passed deadline is unknown.
    pub fn from_policy(error: Error<StepError>) -> Self {
        match error {
            Error::Inner(e) => e,
            Error::Timeout { after } => Self::Unknown(format!("timed out after {after:?}")),
            Error::DeadlineExceeded => Self::Unknown("deadline exceeded".into()),
            Error::RetriesExhausted { last, .. } => Self::from_policy(*last),
            other => Self::Definitive(format!("rejected: {}", other.reason())),
        }
    }
}

/// What an action or a compensation is given.
#[derive(Clone, Debug)]
pub struct StepContext {
    /// The saga's id.
    pub saga_id: Arc<str>,
    /// The step's name.
    pub step: Arc<str>,
    /// The step's position, from 0.
    pub index: usize,
    /// `{saga_id}/{step}` for the action, `{saga_id}/{step}/compensate` for the
    /// compensation: the same on every attempt and after a restart.
    pub idempotency_key: String,
    /// The saga's input.
    pub input: Arc<Value>,
    /// The outputs of the steps before this one (for a compensation, this step's own
    /// output is [`output`](Self::output)).
    pub previous: Arc<Vec<Value>>,
    /// For a compensation: this step's output, `None` when its outcome was unknown.
    pub output: Option<Value>,
}

type StepFn = dyn Fn(StepContext) -> BoxFuture<Result<Value, StepError>> + Send + Sync;

/// An object-safe policy for step calls: any [`Policy`] over `Value` and [`StepError`].
pub trait StepPolicy: Send + Sync + 'static {
    /// Runs `operation` under the policy.
    fn run(
        &self,
        operation: Arc<dyn Fn() -> BoxFuture<Result<Value, StepError>> + Send + Sync>,
    ) -> BoxFuture<Result<Value, StepError>>;
}

/// Retries and breakers see an unknown outcome as a retryable failure (the idempotency key
/// makes the repeat safe) and a definitive one as a failure not worth repeating.
#[derive(Clone, Copy, Debug, Default)]
pub struct StepClassifier;

impl Classify<Value, StepError> for StepClassifier {
    fn classify_err(&self, error: &StepError) -> Outcome {
        match error {
            StepError::Unknown(_) => Outcome::failure().retryable(),
            StepError::Definitive(_) => Outcome::failure(),
        }
    }
}

struct PolicyAdapter<P>(P);

impl<P> StepPolicy for PolicyAdapter<P>
where
    P: Policy<Value, StepError>,
{
    fn run(
        &self,
        operation: Arc<dyn Fn() -> BoxFuture<Result<Value, StepError>> + Send + Sync>,
    ) -> BoxFuture<Result<Value, StepError>> {
        let policy = self.0.clone();
        Box::pin(async move {
            policy
                .execute(&StepClassifier, || {
                    let fut = operation();
                    async move { fut.await.map_err(Error::Inner) }
                })
                .await
                .map_err(StepError::from_policy)
        })
    }
}

/// A step of a saga: a name, an action and (optionally) a compensation.
#[derive(Clone)]
pub struct Step {
    pub(crate) name: Arc<str>,
    pub(crate) action: Arc<StepFn>,
    pub(crate) compensation: Option<Arc<StepFn>>,
    pub(crate) action_policy: Option<Arc<dyn StepPolicy>>,
    pub(crate) compensation_policy: Option<Arc<dyn StepPolicy>>,
}

// === impl Step ===

impl Step {
    /// A step named `name` whose action is `action`; without a compensation, undoing it
    /// is a no-op.
    pub fn new<F, Fut>(name: impl Into<String>, action: F) -> Self
    where
        F: Fn(StepContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Value, StepError>> + Send + 'static,
    {
        Self {
            name: Arc::from(name.into()),
            action: Arc::new(move |cx| Box::pin(action(cx))),
            compensation: None,
            action_policy: None,
            compensation_policy: None,
        }
    }

    /// The compensation: undoes the action (given its output in [`StepContext::output`]).
    /// It must be idempotent by its key and succeed when there is nothing to undo.
    pub fn compensate<F, Fut>(mut self, compensation: F) -> Self
    where
        F: Fn(StepContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Value, StepError>> + Send + 'static,
    {
        self.compensation = Some(Arc::new(move |cx| Box::pin(compensation(cx))));
        self
    }

    /// The policy (a timeout, retry, breaker, or a [`palisade::Pipeline`]) each run of the
    /// action goes through.
    pub fn policy<P: Policy<Value, StepError>>(mut self, policy: P) -> Self {
        self.action_policy = Some(Arc::new(PolicyAdapter(policy)));
        self
    }

    /// The policy each attempt of the compensation goes through (the engine's own
    /// backoff between attempts is outside it; see
    /// [`CompensationRetry`](crate::CompensationRetry)).
    pub fn compensation_policy<P: Policy<Value, StepError>>(mut self, policy: P) -> Self {
        self.compensation_policy = Some(Arc::new(PolicyAdapter(policy)));
        self
    }

    /// The step's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn run_action(&self, cx: StepContext) -> BoxFuture<Result<Value, StepError>> {
        run(&self.action, self.action_policy.as_ref(), cx)
    }

    pub(crate) fn run_compensation(&self, cx: StepContext) -> BoxFuture<Result<Value, StepError>> {
        match &self.compensation {
            Some(f) => run(f, self.compensation_policy.as_ref(), cx),
            None => Box::pin(async { Ok(Value::Null) }),
        }
    }
}

fn run(
    f: &Arc<StepFn>,
    policy: Option<&Arc<dyn StepPolicy>>,
    cx: StepContext,
) -> BoxFuture<Result<Value, StepError>> {
    match policy {
        None => f(cx),
        Some(policy) => {
            let f = Arc::clone(f);
            policy.run(Arc::new(move || f(cx.clone())))
        }
    }
}

impl fmt::Debug for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Step")
            .field("name", &self.name)
            .field("compensated", &self.compensation.is_some())
            .field("action_policy", &self.action_policy.is_some())
            .field("compensation_policy", &self.compensation_policy.is_some())
            .finish()
    }
}

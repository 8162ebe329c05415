//! One saga's driver: runs the steps forward, compensates backward, and commits each
//! state change before the next action.
//!
//! | state, cursor | does | then |
//! |---|---|---|
//! | running, `i < n` | action `i`, key `{id}/{step}` | ok: output `i`, cursor `i+1`; definitive: compensating from `i−1`; unknown, cancel, deadline: compensating from `i` |
//! | running, `i = n` | — | completed |
//! | compensating, `j ≥ 0` | compensation `j`, key `{id}/{step}/compensate` | ok: cursor `j−1`; unknown: retry after backoff; definitive or attempts used up: parked |
//! | compensating, `−1` | — | compensated |
//!
//! A cancel or a passed deadline between steps compensates from `i−1`; during action `i`,
//! the action is dropped and its outcome is unknown, so from `i` — and from `i` too when
//! the saga came from the log (a restart, a take-over) and this driver has not run step
//! `i` yet, since the last driver may have sent it. After a crash, the log
//! says where the saga is: an action in flight is run again with the same key.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use palisade::policy::retry::BackoffState;
use serde_json::Value;
use tokio::sync::{OwnedSemaphorePermit, watch};
use tokio::time::Instant;

use super::Inner;
use crate::definition::{SagaDefinition, StepContext, StepError};
use crate::error::StoreError;
use crate::store::{SagaRow, SagaState};

enum Ran {
    Done(Result<Value, StepError>),
    Cancelled,
    Deadline,
}

pub(crate) async fn drive(
    inner: &Arc<Inner>,
    mut row: SagaRow,
    def: SagaDefinition,
    mut cancel: watch::Receiver<bool>,
    state: watch::Sender<SagaState>,
    resumed: bool,
    slots: &mut Slots,
) {
    let steps = def.steps();
    let n = i64::try_from(steps.len()).unwrap_or(i64::MAX);
    let name = def.name().to_owned();
    let saga_id: Arc<str> = Arc::from(row.id.as_str());
    let input = Arc::new(row.input.clone());
    row.outputs.resize(steps.len(), Value::Null);
    let _ = state.send(row.state);
    // A saga taken from the log (recovery, take-over, an operator) may have had the action
    // at its cursor in flight when its last driver stopped: until this driver runs that
    // step itself, a cancel or deadline treats its outcome as unknown.
    let mut uncertain = (resumed && row.state == SagaState::Running).then_some(row.cursor);
    loop {
        let committed = match row.state {
            SagaState::Running => {
                let i = row.cursor.clamp(0, n);
                let deadline = row
                    .deadline_ms
                    .map(|d| Instant::now() + ms_until(inner.wall.now_ms(), d));
                let cancel_now = row.cancel_requested || *cancel.borrow();
                if cancel_now || deadline.is_some_and(|d| d <= Instant::now()) {
                    let (kind, failure) = if cancel_now {
                        ("cancelled", "cancelled")
                    } else {
                        ("deadline", "deadline exceeded")
                    };
                    let from = if uncertain == Some(i) { i } else { i - 1 };
                    to_compensating(&mut row, i, from, failure.to_owned());
                    commit(inner, &mut row, kind, Some(i), 0, None).await
                } else if i >= n {
                    row.state = SagaState::Completed;
                    commit(inner, &mut row, "completed", None, 0, None).await
                } else {
                    let index = usize::try_from(i).unwrap_or(0);
                    let step = &steps[index];
                    let cx = StepContext {
                        saga_id: Arc::clone(&saga_id),
                        step: Arc::clone(&step.name),
                        index,
                        idempotency_key: format!("{saga_id}/{}", step.name),
                        input: Arc::clone(&input),
                        previous: Arc::new(row.outputs[..index].to_vec()),
                        output: None,
                    };
                    let started = Instant::now();
                    let ran = tokio::select! {
                        r = step.run_action(cx) => Ran::Done(r),
                        () = cancelled(&mut cancel) => Ran::Cancelled,
                        () = sleep_until(deadline) => Ran::Deadline,
                    };
                    uncertain = None;
                    let took = started.elapsed();
                    crate::metrics::step(&name, &step.name, "action", took);
                    let detail = Some(format!("{} ms", took.as_millis()));
                    match ran {
                        Ran::Done(Ok(output)) => {
                            row.outputs[index] = output;
                            row.cursor = i + 1;
                            // The last step's end is the saga's end: one write.
                            let last = i + 1 >= n;
                            if last {
                                row.state = SagaState::Completed;
                            }
                            let then = last.then_some("completed");
                            commit_then(inner, &mut row, ("step_done", Some(i), 1, detail), then)
                                .await
                        }
                        Ran::Done(Err(e)) => {
                            let from = if e.is_unknown() { i } else { i - 1 };
                            to_compensating(&mut row, i, from, e.to_string());
                            commit(
                                inner,
                                &mut row,
                                "step_failed",
                                Some(i),
                                1,
                                Some(e.to_string()),
                            )
                            .await
                        }
                        Ran::Cancelled => {
                            to_compensating(&mut row, i, i, "cancelled".into());
                            commit(inner, &mut row, "cancelled", Some(i), 1, detail).await
                        }
                        Ran::Deadline => {
                            to_compensating(&mut row, i, i, "deadline exceeded".into());
                            commit(inner, &mut row, "deadline", Some(i), 1, detail).await
                        }
                    }
                }
            }
            SagaState::Compensating => {
                let j = row.cursor.min(n - 1);
                if j < 0 {
                    row.state = SagaState::Compensated;
                    commit(inner, &mut row, "compensated", None, 0, None).await
                } else {
                    let index = usize::try_from(j).unwrap_or(0);
                    let step = &steps[index];
                    let completed = row.failed_step.is_none_or(|f| j < f);
                    let cx = StepContext {
                        saga_id: Arc::clone(&saga_id),
                        step: Arc::clone(&step.name),
                        index,
                        idempotency_key: format!("{saga_id}/{}/compensate", step.name),
                        input: Arc::clone(&input),
                        previous: Arc::new(row.outputs[..index].to_vec()),
                        output: completed.then(|| row.outputs[index].clone()),
                    };
                    let started = Instant::now();
                    let result = step.run_compensation(cx).await;
                    crate::metrics::step(&name, &step.name, "compensation", started.elapsed());
                    let attempt = row.attempt + 1;
                    match result {
                        Ok(_) => {
                            row.cursor = j - 1;
                            row.attempt = 0;
                            // The last compensation's end is the saga's end: one write.
                            let last = j == 0;
                            if last {
                                row.state = SagaState::Compensated;
                            }
                            let then = last.then_some("compensated");
                            let event = ("compensation_done", Some(j), attempt, None);
                            commit_then(inner, &mut row, event, then).await
                        }
                        Err(e) => {
                            let retry = def.compensation_retry();
                            if e.is_unknown() && attempt < retry.max_attempts {
                                row.attempt = attempt;
                                let r = commit(
                                    inner,
                                    &mut row,
                                    "compensation_failed",
                                    Some(j),
                                    attempt,
                                    Some(e.to_string()),
                                )
                                .await;
                                if r.is_ok() {
                                    let delay = backoff_delay(inner, &def, attempt);
                                    back_off(inner, slots, delay).await;
                                }
                                r
                            } else {
                                let reason = format!(
                                    "compensation_failed: step {} after {attempt} attempts: {e}",
                                    step.name
                                );
                                row.parked_from = Some(SagaState::Compensating);
                                row.state = SagaState::Parked;
                                row.attempt = attempt;
                                row.reason = Some(reason.clone());
                                let r = commit(
                                    inner,
                                    &mut row,
                                    "parked",
                                    Some(j),
                                    attempt,
                                    Some(reason.clone()),
                                )
                                .await;
                                if r.is_ok() {
                                    crate::metrics::parked(&name, &reason);
                                }
                                r
                            }
                        }
                    }
                }
            }
            _ => return,
        };
        match committed {
            Ok(()) => {
                let _ = state.send(row.state);
                match row.state {
                    SagaState::Completed => crate::metrics::completed(&name),
                    SagaState::Compensated => crate::metrics::compensated(&name),
                    _ => {}
                }
            }
            Err(e) => {
                tracing::info!(saga = %row.id, error = %e, "saga driver stops");
                return;
            }
        }
    }
}

fn to_compensating(row: &mut SagaRow, failed: i64, from: i64, failure: String) {
    row.state = SagaState::Compensating;
    row.failed_step = Some(failed);
    row.cursor = from;
    row.attempt = 0;
    row.failure = Some(failure);
    row.cancel_requested = false;
}

/// Commits the row's new state with one event; a backend failure is retried (the state
/// change must be durable before anything else happens), a fenced write is final.
async fn commit(
    inner: &Inner,
    row: &mut SagaRow,
    kind: &str,
    step: Option<i64>,
    attempt: u32,
    detail: Option<String>,
) -> Result<(), StoreError> {
    commit_then(inner, row, (kind, step, attempt, detail), None).await
}

/// [`commit`] with a second event (`completed`, `compensated`) in the same write.
async fn commit_then(
    inner: &Inner,
    row: &mut SagaRow,
    (kind, step, attempt, detail): (&str, Option<i64>, u32, Option<String>),
    then: Option<&str>,
) -> Result<(), StoreError> {
    row.updated_ms = inner.wall.now_ms();
    let mut events = vec![inner.event(row, row.seq, kind, step, attempt, detail)];
    row.seq += 1;
    if let Some(then) = then {
        events.push(inner.event(row, row.seq, then, None, 0, None));
        row.seq += 1;
    }
    let mut wait = Duration::from_millis(50);
    loop {
        match inner.store.commit_all(row.clone(), events.clone()).await {
            Ok(()) => return Ok(()),
            Err(e @ (StoreError::Fenced(_) | StoreError::Closed)) => return Err(e),
            Err(e) => {
                tracing::warn!(saga = %row.id, error = %e, "saga commit failed; retrying");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// The slots a driver holds: one of `max_running`, and (for a recovered saga) one of
/// `recovery_concurrency`.
pub(crate) struct Slots {
    pub(crate) permit: Option<OwnedSemaphorePermit>,
    pub(crate) recovery: Option<OwnedSemaphorePermit>,
}

/// Sleeps between compensation attempts. A saga waiting out a long backoff (a dependency
/// down for an hour) gives its slots back, so it does not keep new sagas or recovery out;
/// it takes a running slot again before its next attempt. At most `max_running` drivers
/// sleep without a slot; beyond that, they keep theirs.
async fn back_off(inner: &Inner, slots: &mut Slots, delay: Duration) {
    slots.recovery = None;
    let max = inner.config.max_running;
    let released = inner
        .backing_off
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < max).then_some(n + 1)
        })
        .is_ok();
    if !released {
        tokio::time::sleep(delay).await;
        return;
    }
    let _counted = BackingOff(&inner.backing_off); // uncounted however the sleep ends
    slots.permit = None;
    tokio::time::sleep(delay).await;
    slots.permit = Arc::clone(&inner.permits).acquire_owned().await.ok();
}

struct BackingOff<'a>(&'a AtomicUsize);

impl Drop for BackingOff<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

fn backoff_delay(inner: &Inner, def: &SagaDefinition, attempt: u32) -> Duration {
    let mut rng = inner.rng.lock().unwrap_or_else(PoisonError::into_inner);
    def.compensation_retry()
        .backoff()
        .delay(attempt, &mut BackoffState::default(), &mut *rng)
}

fn ms_until(now_ms: i64, at_ms: i64) -> Duration {
    Duration::from_millis(u64::try_from(at_ms.saturating_sub(now_ms)).unwrap_or(0))
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Resolves when a cancel is signalled; never if the signal's sender is gone.
async fn cancelled(cancel: &mut watch::Receiver<bool>) {
    if cancel.wait_for(|c| *c).await.is_err() {
        std::future::pending::<()>().await;
    }
}

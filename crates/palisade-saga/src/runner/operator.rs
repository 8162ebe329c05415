//! What callers and operators ask of a runner: a saga's view, lists by state, waiting
//! for an outcome, cancel, and the three operator actions on a parked saga.
//!
//! | action | applies to | does |
//! |---|---|---|
//! | `cancel` | running | compensates as a failure would (the owner acts at once, or at its next lease renewal) |
//! | `resume` | parked (or an active saga no live runner holds) | continues where it stopped, with a fresh compensation retry budget |
//! | `retry` | parked before any compensation succeeded | runs the failed forward step again (same key) and goes on forward |
//! | `abort` | parked: ends it as `aborted`, effects left as they are; running: as `cancel` |

use std::sync::{Arc, PoisonError};
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

use super::{Inner, Runner};
use crate::error::SagaError;
use crate::store::{EventRow, Op, SagaRow, SagaState};

/// A saga as the log has it, with its timeline.
#[derive(Clone, Debug, Serialize)]
pub struct SagaView {
    /// The saga's row.
    #[serde(flatten)]
    pub saga: SagaRow,
    /// Every step and attempt, oldest first (at most [`MAX_EVENTS`]).
    pub timeline: Vec<EventRow>,
}

/// Events a [`SagaView`] holds, at most.
pub const MAX_EVENTS: usize = 1000;

// === impl Runner ===

impl Runner {
    /// The saga with its timeline, if it exists.
    pub async fn get(&self, id: &str) -> Result<Option<SagaView>, SagaError> {
        let Some(saga) = self.inner.store.load(id).await? else {
            return Ok(None);
        };
        let timeline = self.inner.store.events(id, MAX_EVENTS).await?;
        Ok(Some(SagaView { saga, timeline }))
    }

    /// Up to `limit` sagas, newest first, in `state` if given.
    pub async fn list(
        &self,
        state: Option<SagaState>,
        limit: usize,
    ) -> Result<Vec<SagaRow>, SagaError> {
        Ok(self.inner.store.list(state, limit.min(10_000)).await?)
    }

    /// Waits up to `within` for the saga to settle (completed, compensated, parked or
    /// aborted) and answers its row; [`SagaError::StillRunning`] if it has not.
    pub async fn wait(&self, id: &str, within: Duration) -> Result<SagaRow, SagaError> {
        let until = Instant::now() + within;
        loop {
            let local = self
                .inner
                .local
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get(id)
                .map(|l| l.state.clone());
            if let Some(mut state) = local {
                let settled =
                    tokio::time::timeout_at(until, state.wait_for(|s| !s.is_active())).await;
                if settled.is_err() {
                    return Err(SagaError::StillRunning(id.to_owned()));
                }
            }
            let row = self
                .inner
                .store
                .load(id)
                .await?
                .ok_or_else(|| SagaError::NotFound(id.to_owned()))?;
            if !row.state.is_active() {
                return Ok(row);
            }
            if Instant::now() >= until {
                return Err(SagaError::StillRunning(id.to_owned()));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Asks a running saga to compensate; answers whether it was running.
    pub async fn cancel(&self, id: &str) -> Result<bool, SagaError> {
        // Durable first (a crash before the owner acts still compensates), then the
        // owner's signal: at once here, at its next lease renewal elsewhere.
        let running = matches!(
            self.inner
                .store
                .call(Op::RequestCancel { id: id.to_owned() })
                .await?,
            crate::store::Reply::Done(true)
        );
        if running {
            if let Some(local) = self
                .inner
                .local
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get(id)
            {
                let _ = local.cancel.send(true);
            }
        }
        Ok(running)
    }

    /// Continues a parked saga where it stopped, with a fresh compensation budget.
    pub async fn resume(&self, id: &str) -> Result<SagaState, SagaError> {
        self.operate(id, "resume", |row| match (row.state, row.parked_from) {
            (SagaState::Parked, Some(from)) if from.is_active() => {
                row.state = from;
                Ok(())
            }
            (state, _) if state.is_active() => Ok(()),
            _ => Err(()),
        })
        .await
    }

    /// Runs the failed forward step of a parked saga again and goes on forward; only
    /// while no compensation has succeeded yet.
    pub async fn retry(&self, id: &str) -> Result<SagaState, SagaError> {
        self.operate(id, "retry", |row| {
            match (row.state, row.parked_from, row.failed_step) {
                (SagaState::Parked, Some(SagaState::Compensating), Some(failed))
                    if row.cursor >= failed - 1 =>
                {
                    row.state = SagaState::Running;
                    row.cursor = failed;
                    row.failed_step = None;
                    row.failure = None;
                    Ok(())
                }
                (SagaState::Parked, Some(SagaState::Running), _) => {
                    row.state = SagaState::Running;
                    Ok(())
                }
                _ => Err(()),
            }
        })
        .await
    }

    /// Ends a parked saga as `aborted` (effects stay as they are, the reason is kept);
    /// cancels a running one.
    pub async fn abort(&self, id: &str) -> Result<SagaState, SagaError> {
        let row = self
            .inner
            .store
            .load(id)
            .await?
            .ok_or_else(|| SagaError::NotFound(id.to_owned()))?;
        if row.state == SagaState::Running {
            self.cancel(id).await?;
            return Ok(SagaState::Running);
        }
        self.operate(id, "abort", |row| match row.state {
            SagaState::Parked => {
                row.state = SagaState::Aborted;
                Ok(())
            }
            _ => Err(()),
        })
        .await
    }

    /// Claims the saga, applies `change`, commits, and drives it if it became active.
    async fn operate(
        &self,
        id: &str,
        action: &'static str,
        change: impl FnOnce(&mut SagaRow) -> Result<(), ()>,
    ) -> Result<SagaState, SagaError> {
        let inner: &Arc<Inner> = &self.inner;
        if inner
            .local
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains_key(id)
        {
            let state = inner
                .store
                .load(id)
                .await?
                .map_or(SagaState::Running, |r| r.state);
            return Err(SagaError::InvalidState {
                id: id.to_owned(),
                state: state.to_string(),
                action,
            });
        }
        let op = Op::ClaimOne {
            id: id.to_owned(),
            owner: inner.config.runner_id.clone(),
            now_ms: inner.wall.now_ms(),
            lease_until_ms: inner.lease_until(),
        };
        let mut row = inner
            .store
            .row(op)
            .await?
            .ok_or_else(|| SagaError::NotFound(id.to_owned()))?;
        if row.owner.as_deref() != Some(inner.config.runner_id.as_str()) {
            return Err(SagaError::NotOwner(id.to_owned()));
        }
        let before = row.state;
        if change(&mut row).is_err() {
            return Err(SagaError::InvalidState {
                id: id.to_owned(),
                state: before.to_string(),
                action,
            });
        }
        let def = inner
            .definitions
            .get(&row.definition)
            .and_then(|v| v.get(&row.version))
            .cloned();
        if row.state.is_active() && def.is_none() {
            return Err(SagaError::UnknownDefinition(format!(
                "{} v{}",
                row.definition, row.version
            )));
        }
        let permit = if row.state.is_active() {
            Some(
                Arc::clone(&inner.permits)
                    .try_acquire_owned()
                    .map_err(|_| SagaError::Full(inner.config.max_running))?,
            )
        } else {
            None
        };
        if row.state != before || row.state == SagaState::Parked || row.state.is_finished() {
            row.parked_from = None;
            row.attempt = 0;
            if row.state != SagaState::Aborted {
                row.reason = None;
            }
        }
        row.updated_ms = inner.wall.now_ms();
        let kind = match action {
            "resume" => "resumed",
            "retry" => "retried",
            _ => "aborted",
        };
        let event = inner.event(&row, row.seq, kind, None, 0, None);
        row.seq += 1;
        inner.store.commit(row.clone(), event).await?;
        if let (Some(def), Some(permit)) = (def, permit) {
            inner.spawn_with(row.clone(), def, permit, None, true);
        }
        Ok(row.state)
    }
}

//! The runner's background tasks: lease renewal (and the cancellations it brings back),
//! take-over of sagas whose lease ended, and pruning of finished sagas.

use std::sync::{Arc, PoisonError};

use tokio::time::MissedTickBehavior;

use super::Inner;
use crate::store::{ClaimMode, Op, Reply};

pub(super) fn spawn(inner: &Arc<Inner>) {
    let tasks = [
        tokio::spawn(renew(Arc::clone(inner))).abort_handle(),
        tokio::spawn(take_over(Arc::clone(inner))).abort_handle(),
        tokio::spawn(prune(Arc::clone(inner))).abort_handle(),
    ];
    inner
        .background
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .extend(tasks);
}

/// Every third of a lease: extend this runner's leases; pass on cancellations asked of
/// other runners.
async fn renew(inner: Arc<Inner>) {
    let mut tick = tokio::time::interval(inner.config.lease / 3);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let op = Op::Renew {
            owner: inner.config.runner_id.clone(),
            lease_until_ms: inner.lease_until(),
        };
        match inner.store.call(op).await {
            Ok(Reply::Renewed(renewed)) => {
                // Not driven, not queued and unchanged for a lease: an orphan.
                let stale = inner
                    .wall
                    .now_ms()
                    .saturating_sub(crate::wall::millis(inner.config.lease));
                let mut orphans = Vec::new();
                {
                    let local = inner.local.lock().unwrap_or_else(PoisonError::into_inner);
                    let queued = inner.queued.lock().unwrap_or_else(PoisonError::into_inner);
                    for r in renewed {
                        match local.get(&r.id) {
                            Some(l) if r.cancel_requested => {
                                let _ = l.cancel.send(true);
                            }
                            Some(_) => {}
                            None if !queued.contains(&r.id) && r.updated_ms < stale => {
                                orphans.push(r.id)
                            }
                            None => {}
                        }
                    }
                }
                orphans.truncate(inner.config.recovery_concurrency);
                inner.adopt_orphans(orphans).await;
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "saga lease renewal failed"),
        }
    }
}

/// At most every second: claim sagas whose lease ended (their runner died), as many as
/// there is room for.
async fn take_over(inner: Arc<Inner>) {
    let mut tick = tokio::time::interval(inner.config.takeover_interval());
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let room = inner
            .permits
            .available_permits()
            .min(inner.config.recovery_concurrency);
        if room == 0 {
            continue;
        }
        match inner.claim(ClaimMode::Expired, room).await {
            Ok(rows) if !rows.is_empty() => {
                tracing::info!(runner = %inner.config.runner_id, sagas = rows.len(), "took over sagas");
                inner.recover(rows);
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "saga take-over failed"),
        }
    }
}

/// Deletes finished sagas older than the retention, a bounded batch at a time.
async fn prune(inner: Arc<Inner>) {
    let mut tick = tokio::time::interval(inner.config.prune_interval);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let before_ms = inner
            .wall
            .now_ms()
            .saturating_sub(crate::wall::millis(inner.config.retention));
        match inner
            .store
            .call(Op::Prune {
                before_ms,
                limit: 1000,
            })
            .await
        {
            Ok(Reply::Count(n)) if n > 0 => tracing::debug!(sagas = n, "pruned finished sagas"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "saga pruning failed"),
        }
    }
}

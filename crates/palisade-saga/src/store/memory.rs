//! A store in memory: the engine's semantics without a disk, for tests and for sagas that
//! need not outlive the process. Bounded by the runner's retention, like the others.

use std::collections::{BTreeMap, HashMap};

use super::{Backend, ClaimMode, EventRow, Op, Renewed, Reply, SagaRow, Store};
use crate::error::StoreError;

/// The in-memory backend.
#[derive(Debug, Default)]
pub struct Memory {
    sagas: HashMap<String, SagaRow>,
    events: HashMap<String, BTreeMap<i64, EventRow>>,
}

/// A store in memory, its writer spawned on the current runtime.
pub fn open() -> Store {
    Store::from_backend(Memory::default(), "memory")
}

// === impl Memory ===

impl Memory {
    fn claimable(row: &SagaRow, owner: &str, now_ms: i64, mode: ClaimMode) -> bool {
        row.state.is_active()
            && (mode == ClaimMode::All
                || (mode == ClaimMode::OwnAndExpired && row.owner.as_deref() == Some(owner))
                || row.lease_until_ms < now_ms)
    }

    fn one(&mut self, op: &Op) -> Result<Reply, StoreError> {
        match op {
            Op::Create { row, event } => {
                if let Some(existing) = self.sagas.get(&row.id) {
                    return Ok(Reply::Exists(Box::new(existing.clone())));
                }
                self.sagas.insert(row.id.clone(), row.clone());
                self.events
                    .entry(row.id.clone())
                    .or_default()
                    .insert(event.seq, event.clone());
                Ok(Reply::Created)
            }
            Op::Commit { row, events } => match self.sagas.get_mut(&row.id) {
                Some(stored) if stored.epoch == row.epoch => {
                    let cancel = stored.cancel_requested && row.state == super::SagaState::Running;
                    *stored = row.clone();
                    stored.cancel_requested = cancel;
                    let log = self.events.entry(row.id.clone()).or_default();
                    for event in events {
                        log.insert(event.seq, event.clone());
                    }
                    Ok(Reply::Done(true))
                }
                _ => Err(StoreError::Fenced(row.id.clone())),
            },
            Op::Claim {
                owner,
                now_ms,
                lease_until_ms,
                limit,
                mode,
            } => {
                let mut ids: Vec<(i64, String)> = self
                    .sagas
                    .values()
                    .filter(|r| Self::claimable(r, owner, *now_ms, *mode))
                    .map(|r| (r.created_ms, r.id.clone()))
                    .collect();
                ids.sort();
                ids.truncate(*limit);
                let mut out = Vec::with_capacity(ids.len());
                for (_, id) in ids {
                    if let Some(row) = self.sagas.get_mut(&id) {
                        row.owner = Some(owner.clone());
                        row.epoch += 1;
                        row.lease_until_ms = *lease_until_ms;
                        out.push(row.clone());
                    }
                }
                Ok(Reply::Rows(out))
            }
            Op::ClaimOne {
                id,
                owner,
                now_ms,
                lease_until_ms,
            } => {
                let Some(row) = self.sagas.get_mut(id) else {
                    return Ok(Reply::Row(None));
                };
                let held = row.state.is_active()
                    && row.owner.as_deref() != Some(owner)
                    && row.lease_until_ms >= *now_ms;
                if !held {
                    row.owner = Some(owner.clone());
                    row.epoch += 1;
                    row.lease_until_ms = *lease_until_ms;
                }
                Ok(Reply::Row(Some(Box::new(row.clone()))))
            }
            Op::Renew {
                owner,
                lease_until_ms,
            } => {
                let mut renewed = Vec::new();
                for row in self.sagas.values_mut() {
                    if row.state.is_active() && row.owner.as_deref() == Some(owner) {
                        row.lease_until_ms = *lease_until_ms;
                        renewed.push(Renewed {
                            id: row.id.clone(),
                            cancel_requested: row.cancel_requested,
                            updated_ms: row.updated_ms,
                        });
                    }
                }
                Ok(Reply::Renewed(renewed))
            }
            Op::RequestCancel { id } => Ok(Reply::Done(match self.sagas.get_mut(id) {
                Some(row) if row.state == super::SagaState::Running => {
                    row.cancel_requested = true;
                    true
                }
                _ => false,
            })),
            Op::Load { id } => Ok(Reply::Row(self.sagas.get(id).cloned().map(Box::new))),
            Op::Events { id, limit } => Ok(Reply::Events(
                self.events
                    .get(id)
                    .map(|e| e.values().take(*limit).cloned().collect())
                    .unwrap_or_default(),
            )),
            Op::List { state, limit } => {
                let mut rows: Vec<SagaRow> = self
                    .sagas
                    .values()
                    .filter(|r| state.is_none_or(|s| r.state == s))
                    .cloned()
                    .collect();
                rows.sort_by(|a, b| {
                    b.created_ms
                        .cmp(&a.created_ms)
                        .then_with(|| a.id.cmp(&b.id))
                });
                rows.truncate(*limit);
                Ok(Reply::Rows(rows))
            }
            Op::Prune { before_ms, limit } => {
                let ids: Vec<String> = self
                    .sagas
                    .values()
                    .filter(|r| r.state.is_finished() && r.updated_ms < *before_ms)
                    .take(*limit)
                    .map(|r| r.id.clone())
                    .collect();
                for id in &ids {
                    self.sagas.remove(id);
                    self.events.remove(id);
                }
                Ok(Reply::Count(ids.len() as u64))
            }
        }
    }
}

impl Backend for Memory {
    const BLOCKING: bool = false;
    const SINGLE_PROCESS: bool = true;

    fn apply(&mut self, ops: &[Op]) -> Vec<Result<Reply, StoreError>> {
        ops.iter().map(|op| self.one(op)).collect()
    }
}

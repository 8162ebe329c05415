//! The PostgreSQL store, for a fleet of runners sharing one database: the same schema as
//! SQLite, one transaction per batch (PostgreSQL's default `synchronous_commit = on`: a
//! commit is flushed before it answers), claims with `FOR UPDATE SKIP LOCKED` so runners
//! claiming at once take different sagas, and every commit fenced by the saga's epoch.
//!
//! The client is the synchronous `postgres` crate (tokio-postgres underneath), called on
//! tokio's blocking pool like SQLite, so a batch never blocks the executor.

use std::collections::HashSet;

use postgres::{Client, NoTls, Row, Transaction};

use super::sqlite::{limit_i64, op_id};
use super::{Backend, EventRow, Op, Renewed, Reply, SagaRow, Store, pg_batch, schema};
use crate::error::StoreError;

/// The PostgreSQL backend.
pub struct Postgres {
    client: Option<Client>,
    url: String,
}

impl std::fmt::Debug for Postgres {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Postgres").finish_non_exhaustive()
    }
}

/// Connects (a libpq-style string or a `postgres://` URL) and creates the schema if
/// missing. Must be called inside a tokio runtime (it spawns the writer).
pub async fn open(url: &str) -> Result<Store, StoreError> {
    let url = url.to_owned();
    let backend = tokio::task::spawn_blocking(move || Postgres::connect(&url))
        .await
        .map_err(|e| StoreError::Open(e.to_string()))??;
    Ok(Store::from_backend(backend, "postgres"))
}

impl From<postgres::Error> for StoreError {
    fn from(e: postgres::Error) -> Self {
        StoreError::Backend(describe(&e))
    }
}

/// The server's message when there is one (`postgres::Error` alone says "db error").
fn describe(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {}", db.code().code(), db.message()),
        None => match std::error::Error::source(e) {
            Some(source) => format!("{e}: {source}"),
            None => e.to_string(),
        },
    }
}

// === impl Postgres ===

impl Postgres {
    /// Connects and prepares the schema; blocking.
    pub fn connect(url: &str) -> Result<Self, StoreError> {
        let open = |e: postgres::Error| StoreError::Open(describe(&e));
        let mut client = Client::connect(url, NoTls).map_err(open)?;
        // Our transactions never wait on the client between statements; one that does
        // belongs to a runner that stopped (SIGSTOP, a long GC-like pause) while holding
        // row locks. The server ends it, so the others are not blocked behind it.
        client
            .batch_execute("SET idle_in_transaction_session_timeout = '2s'")
            .map_err(open)?;
        // `CREATE … IF NOT EXISTS` races with itself: runners starting at once take turns.
        let mut tx = client.transaction().map_err(open)?;
        tx.batch_execute("SELECT pg_advisory_xact_lock(7261001)")
            .map_err(open)?;
        for ddl in schema::DDL {
            tx.batch_execute(ddl).map_err(open)?;
        }
        tx.commit().map_err(open)?;
        Ok(Self {
            client: Some(client),
            url: url.to_owned(),
        })
    }

    /// Creates and commits go as one statement each (see `pg_batch`); a batch of only
    /// one kind is that one statement (its own transaction); anything else runs in one
    /// transaction.
    fn transaction(
        client: &mut Client,
        ops: &[Op],
    ) -> Result<Vec<Result<Reply, StoreError>>, StoreError> {
        let mut creates = Vec::new();
        let mut commits = Vec::new();
        let mut others = false;
        let mut ids = HashSet::new();
        let mut duplicate = false;
        for op in ops {
            match op {
                Op::Create { row, event } => {
                    duplicate |= !ids.insert(row.id.as_str());
                    creates.push((row, event));
                }
                Op::Commit { row, events } => {
                    duplicate |= !ids.insert(row.id.as_str());
                    commits.push((row, events.as_slice()));
                }
                _ => others = true,
            }
        }
        if duplicate {
            return Self::one_by_one(client, ops);
        }
        let single = !others && (creates.is_empty() || commits.is_empty());
        let (created, committed) = if single {
            let created = if creates.is_empty() {
                HashSet::new()
            } else {
                pg_batch::creates(client, &creates)?
            };
            let committed = if commits.is_empty() {
                HashSet::new()
            } else {
                pg_batch::commits(client, &commits)?
            };
            (created, committed)
        } else {
            let mut tx = client.transaction()?;
            let created = if creates.is_empty() {
                HashSet::new()
            } else {
                pg_batch::creates(&mut tx, &creates)?
            };
            let committed = if commits.is_empty() {
                HashSet::new()
            } else {
                pg_batch::commits(&mut tx, &commits)?
            };
            let mut results = Vec::with_capacity(ops.len());
            for op in ops {
                results.push(Self::answer(&mut tx, op, &created, &committed)?);
            }
            tx.commit()?;
            return Ok(results);
        };
        let mut results = Vec::with_capacity(ops.len());
        for op in ops {
            results.push(match op {
                Op::Create { row, .. } if !created.contains(&row.id) => {
                    // The id was taken: answer that saga (a read after the insert).
                    let mut tx = client.transaction()?;
                    let existing = load(&mut tx, &row.id)?;
                    tx.commit()?;
                    Ok(existing.map_or(Reply::Created, |r| Reply::Exists(Box::new(r))))
                }
                Op::Create { .. } => Ok(Reply::Created),
                Op::Commit { row, .. } if committed.contains(&row.id) => Ok(Reply::Done(true)),
                _ => Err(StoreError::Fenced(op_id(op))),
            });
        }
        Ok(results)
    }

    fn answer(
        tx: &mut Transaction<'_>,
        op: &Op,
        created: &HashSet<String>,
        committed: &HashSet<String>,
    ) -> Result<Result<Reply, StoreError>, StoreError> {
        Ok(match op {
            Op::Create { row, .. } if created.contains(&row.id) => Ok(Reply::Created),
            Op::Create { row, .. } => {
                Ok(load(tx, &row.id)?.map_or(Reply::Created, |r| Reply::Exists(Box::new(r))))
            }
            Op::Commit { row, .. } if committed.contains(&row.id) => Ok(Reply::Done(true)),
            Op::Commit { .. } => Err(StoreError::Fenced(op_id(op))),
            other => Ok(one(tx, other)?),
        })
    }

    /// The plain path: one statement per op, in one transaction.
    fn one_by_one(
        client: &mut Client,
        ops: &[Op],
    ) -> Result<Vec<Result<Reply, StoreError>>, StoreError> {
        let mut tx = client.transaction()?;
        let mut results = Vec::with_capacity(ops.len());
        for op in ops {
            results.push(match one(&mut tx, op)? {
                Reply::Done(false) if matches!(op, Op::Commit { .. }) => {
                    Err(StoreError::Fenced(op_id(op)))
                }
                reply => Ok(reply),
            });
        }
        tx.commit()?;
        Ok(results)
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // The client owns a small runtime, which may not be dropped on an async thread.
        if let Some(client) = self.client.take() {
            let _ = std::thread::Builder::new()
                .name("saga-pg-close".into())
                .spawn(move || drop(client));
        }
    }
}

impl Backend for Postgres {
    const BLOCKING: bool = true;
    const SINGLE_PROCESS: bool = false;

    /// A lost connection (server restarted, connection killed) is dropped and made again
    /// on the next batch; meanwhile every op answers the error and the drivers retry.
    fn apply(&mut self, ops: &[Op]) -> Vec<Result<Reply, StoreError>> {
        if self.client.as_ref().is_none_or(Client::is_closed) {
            self.client = None;
            match Self::connect(&self.url) {
                Ok(mut fresh) => self.client = fresh.client.take(),
                Err(e) => {
                    let e = StoreError::Backend(format!("reconnecting: {e}"));
                    return ops.iter().map(|_| Err(e.clone())).collect();
                }
            }
        }
        let result = match self.client.as_mut() {
            Some(client) => Self::transaction(client, ops),
            None => Err(StoreError::Closed),
        };
        match result {
            Ok(results) => results,
            Err(e) => ops.iter().map(|_| Err(e.clone())).collect(),
        }
    }
}

fn one(tx: &mut Transaction<'_>, op: &Op) -> Result<Reply, StoreError> {
    match op {
        Op::Create { row, event } => {
            let parked_from = row.parked_from.map(|s| s.as_str());
            let n = tx.execute(
                schema::INSERT,
                &[
                    &row.id,
                    &row.definition,
                    &i64::from(row.version),
                    &row.state.as_str(),
                    &row.cursor,
                    &i64::from(row.attempt),
                    &row.input.to_string(),
                    &row.outputs_json(),
                    &row.failed_step,
                    &row.failure,
                    &row.reason,
                    &parked_from,
                    &row.deadline_ms,
                    &i64::from(row.cancel_requested),
                    &row.owner,
                    &row.epoch,
                    &row.lease_until_ms,
                    &row.created_ms,
                    &row.updated_ms,
                    &row.seq,
                ],
            )?;
            if n == 0 {
                return Ok(match load(tx, &row.id)? {
                    Some(existing) => Reply::Exists(Box::new(existing)),
                    None => Reply::Created,
                });
            }
            event_insert(tx, event)?;
            Ok(Reply::Created)
        }
        Op::Commit { row, events } => {
            let parked_from = row.parked_from.map(|s| s.as_str());
            let n = tx.execute(
                schema::COMMIT,
                &[
                    &row.id,
                    &row.state.as_str(),
                    &row.cursor,
                    &i64::from(row.attempt),
                    &row.outputs_json(),
                    &row.failed_step,
                    &row.failure,
                    &row.reason,
                    &parked_from,
                    &row.deadline_ms,
                    &row.updated_ms,
                    &row.seq,
                    &row.epoch,
                ],
            )?;
            if n == 0 {
                return Ok(Reply::Done(false));
            }
            for event in events {
                event_insert(tx, event)?;
            }
            Ok(Reply::Done(true))
        }
        Op::Claim {
            owner,
            now_ms,
            lease_until_ms,
            limit,
            mode,
        } => {
            let rows = tx.query(
                &schema::claim("FOR UPDATE SKIP LOCKED"),
                &[
                    owner,
                    now_ms,
                    lease_until_ms,
                    &(*mode as i64),
                    &limit_i64(*limit),
                ],
            )?;
            Ok(Reply::Rows(
                rows.iter().map(decode).collect::<Result<_, _>>()?,
            ))
        }
        Op::ClaimOne {
            id,
            owner,
            now_ms,
            lease_until_ms,
        } => {
            let rows = tx.query(&schema::claim_one(), &[id, owner, now_ms, lease_until_ms])?;
            match rows.first() {
                Some(row) => Ok(Reply::Row(Some(Box::new(decode(row)?)))),
                None => Ok(Reply::Row(load(tx, id)?.map(Box::new))),
            }
        }
        Op::Renew {
            owner,
            lease_until_ms,
        } => {
            let rows = tx.query(schema::RENEW, &[owner, lease_until_ms])?;
            Ok(Reply::Renewed(
                rows.iter()
                    .map(|r| {
                        Ok(Renewed {
                            id: col(r, 0)?,
                            cancel_requested: col::<i64>(r, 1)? != 0,
                            updated_ms: col(r, 2)?,
                        })
                    })
                    .collect::<Result<_, StoreError>>()?,
            ))
        }
        Op::RequestCancel { id } => Ok(Reply::Done(tx.execute(schema::REQUEST_CANCEL, &[id])? > 0)),
        Op::Load { id } => Ok(Reply::Row(load(tx, id)?.map(Box::new))),
        Op::Events { id, limit } => {
            let rows = tx.query(schema::events(), &[id, &limit_i64(*limit)])?;
            Ok(Reply::Events(
                rows.iter()
                    .map(|r| -> Result<EventRow, StoreError> {
                        Ok(EventRow {
                            saga_id: col(r, 0)?,
                            seq: col(r, 1)?,
                            at_ms: col(r, 2)?,
                            step: col(r, 3)?,
                            kind: col(r, 4)?,
                            attempt: u32::try_from(col::<i64>(r, 5)?).unwrap_or(u32::MAX),
                            detail: col(r, 6)?,
                        })
                    })
                    .collect::<Result<_, _>>()?,
            ))
        }
        Op::List { state, limit } => {
            let rows = match state {
                Some(s) => tx.query(&schema::list(true), &[&s.as_str(), &limit_i64(*limit)])?,
                None => tx.query(&schema::list(false), &[&limit_i64(*limit)])?,
            };
            Ok(Reply::Rows(
                rows.iter().map(decode).collect::<Result<_, _>>()?,
            ))
        }
        Op::Prune { before_ms, limit } => {
            let limit = limit_i64(*limit);
            tx.execute(schema::PRUNE_EVENTS, &[before_ms, &limit])?;
            Ok(Reply::Count(
                tx.execute(schema::PRUNE_SAGAS, &[before_ms, &limit])?,
            ))
        }
    }
}

fn load(tx: &mut Transaction<'_>, id: &str) -> Result<Option<SagaRow>, StoreError> {
    tx.query_opt(&schema::load(), &[&id])?
        .as_ref()
        .map(decode)
        .transpose()
}

fn event_insert(tx: &mut Transaction<'_>, e: &EventRow) -> Result<(), postgres::Error> {
    tx.execute(
        schema::INSERT_EVENT,
        &[
            &e.saga_id,
            &e.seq,
            &e.at_ms,
            &e.step,
            &e.kind,
            &i64::from(e.attempt),
            &e.detail,
        ],
    )?;
    Ok(())
}

fn decode(r: &Row) -> Result<SagaRow, StoreError> {
    decode_row(r)
}

fn decode_row(r: &Row) -> Result<SagaRow, StoreError> {
    let id: String = col(r, 0)?;
    let state: String = col(r, 3)?;
    let input: String = col(r, 6)?;
    let outputs: String = col(r, 7)?;
    let parked_from: Option<String> = col(r, 11)?;
    Ok(SagaRow {
        definition: col(r, 1)?,
        version: u32::try_from(col::<i64>(r, 2)?).unwrap_or(u32::MAX),
        state: SagaRow::decode_state(&id, &state)?,
        cursor: col(r, 4)?,
        attempt: u32::try_from(col::<i64>(r, 5)?).unwrap_or(u32::MAX),
        input: SagaRow::decode_input(&id, &input)?,
        outputs: SagaRow::decode_outputs(&id, &outputs)?,
        failed_step: col(r, 8)?,
        failure: col(r, 9)?,
        reason: col(r, 10)?,
        parked_from: parked_from
            .map(|s| SagaRow::decode_state(&id, &s))
            .transpose()?,
        deadline_ms: col(r, 12)?,
        cancel_requested: col::<i64>(r, 13)? != 0,
        owner: col(r, 14)?,
        epoch: col(r, 15)?,
        lease_until_ms: col(r, 16)?,
        created_ms: col(r, 17)?,
        updated_ms: col(r, 18)?,
        seq: col(r, 19)?,
        id,
    })
}

/// One column, typed; a mismatch (a table not made by this schema) is an error, not a panic.
pub(crate) fn col<'a, T: postgres::types::FromSql<'a>>(
    r: &'a Row,
    i: usize,
) -> Result<T, StoreError> {
    Ok(r.try_get(i)?)
}

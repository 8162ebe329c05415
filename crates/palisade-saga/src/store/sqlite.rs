//! The SQLite store: a file, WAL journal, `synchronous = FULL` (a commit survives a power
//! cut, not only a process crash), one writer connection on tokio's blocking pool, one
//! transaction (`BEGIN IMMEDIATE`) per batch.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, Row, params};

use super::{Backend, EventRow, Op, Renewed, Reply, SagaRow, Store, schema};
use crate::error::StoreError;

/// The SQLite backend.
#[derive(Debug)]
pub struct Sqlite {
    conn: Connection,
}

fn sql(text: &str) -> String {
    text.replace('$', "?")
}

fn backend(e: rusqlite::Error) -> StoreError {
    StoreError::Backend(e.to_string())
}

/// Opens (creating if needed) the store at `path`: WAL, `synchronous = FULL`, schema.
/// Must be called inside a tokio runtime (it spawns the writer).
pub async fn open(path: impl AsRef<Path>) -> Result<Store, StoreError> {
    let path = path.as_ref().to_owned();
    let backend = tokio::task::spawn_blocking(move || Sqlite::open(&path))
        .await
        .map_err(|e| StoreError::Open(e.to_string()))??;
    Ok(Store::from_backend(backend, "sqlite"))
}

// === impl Sqlite ===

impl Sqlite {
    /// Opens the file and prepares it; blocking.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let open = |e: rusqlite::Error| StoreError::Open(format!("{}: {e}", path.display()));
        let conn = Connection::open(path).map_err(open)?;
        conn.busy_timeout(Duration::from_secs(5)).map_err(open)?;
        let mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(open)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Open(format!(
                "{}: journal_mode is {mode}, not wal",
                path.display()
            )));
        }
        conn.execute_batch("PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;")
            .map_err(open)?;
        for ddl in schema::DDL {
            conn.execute(ddl, []).map_err(open)?;
        }
        Ok(Self { conn })
    }

    fn one(&self, op: &Op) -> Result<Reply, rusqlite::Error> {
        let c = &self.conn;
        match op {
            Op::Create { row, event } => {
                let n = c.prepare_cached(&sql(schema::INSERT))?.execute(params![
                    row.id,
                    row.definition,
                    row.version,
                    row.state.as_str(),
                    row.cursor,
                    row.attempt,
                    row.input.to_string(),
                    row.outputs_json(),
                    row.failed_step,
                    row.failure,
                    row.reason,
                    row.parked_from.map(|s| s.as_str()),
                    row.deadline_ms,
                    i64::from(row.cancel_requested),
                    row.owner,
                    row.epoch,
                    row.lease_until_ms,
                    row.created_ms,
                    row.updated_ms,
                    row.seq,
                ])?;
                if n == 0 {
                    let existing = self.load(&row.id)?;
                    return Ok(match existing {
                        Some(existing) => Reply::Exists(Box::new(existing)),
                        None => Reply::Created,
                    });
                }
                self.event(event)?;
                Ok(Reply::Created)
            }
            Op::Commit { row, events } => {
                let n = c.prepare_cached(&sql(schema::COMMIT))?.execute(params![
                    row.id,
                    row.state.as_str(),
                    row.cursor,
                    row.attempt,
                    row.outputs_json(),
                    row.failed_step,
                    row.failure,
                    row.reason,
                    row.parked_from.map(|s| s.as_str()),
                    row.deadline_ms,
                    row.updated_ms,
                    row.seq,
                    row.epoch,
                ])?;
                if n == 0 {
                    return Ok(Reply::Done(false));
                }
                for event in events {
                    self.event(event)?;
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
                let mut stmt = c.prepare_cached(&sql(&schema::claim("")))?;
                let rows = stmt.query_map(
                    params![
                        owner,
                        now_ms,
                        lease_until_ms,
                        *mode as i64,
                        limit_i64(*limit)
                    ],
                    decode,
                )?;
                Ok(Reply::Rows(rows.collect::<Result<Vec<_>, _>>()?))
            }
            Op::ClaimOne {
                id,
                owner,
                now_ms,
                lease_until_ms,
            } => {
                let claimed = c
                    .prepare_cached(&sql(&schema::claim_one()))?
                    .query_row(params![id, owner, now_ms, lease_until_ms], decode)
                    .optional()?;
                match claimed {
                    Some(row) => Ok(Reply::Row(Some(Box::new(row)))),
                    None => Ok(Reply::Row(self.load(id)?.map(Box::new))),
                }
            }
            Op::Renew {
                owner,
                lease_until_ms,
            } => {
                let mut stmt = c.prepare_cached(&sql(schema::RENEW))?;
                let rows = stmt.query_map(params![owner, lease_until_ms], |r| {
                    Ok(Renewed {
                        id: r.get(0)?,
                        cancel_requested: r.get::<_, i64>(1)? != 0,
                        updated_ms: r.get(2)?,
                    })
                })?;
                Ok(Reply::Renewed(rows.collect::<Result<_, _>>()?))
            }
            Op::RequestCancel { id } => Ok(Reply::Done(
                c.prepare_cached(&sql(schema::REQUEST_CANCEL))?
                    .execute(params![id])?
                    > 0,
            )),
            Op::Load { id } => Ok(Reply::Row(self.load(id)?.map(Box::new))),
            Op::Events { id, limit } => {
                let mut stmt = c.prepare_cached(&sql(schema::events()))?;
                let rows = stmt.query_map(params![id, limit_i64(*limit)], |r| {
                    Ok(EventRow {
                        saga_id: r.get(0)?,
                        seq: r.get(1)?,
                        at_ms: r.get(2)?,
                        step: r.get(3)?,
                        kind: r.get(4)?,
                        attempt: r.get(5)?,
                        detail: r.get(6)?,
                    })
                })?;
                Ok(Reply::Events(rows.collect::<Result<Vec<_>, _>>()?))
            }
            Op::List { state, limit } => {
                let mut stmt = c.prepare_cached(&sql(&schema::list(state.is_some())))?;
                let rows = match state {
                    Some(s) => stmt.query_map(params![s.as_str(), limit_i64(*limit)], decode)?,
                    None => stmt.query_map(params![limit_i64(*limit)], decode)?,
                };
                Ok(Reply::Rows(rows.collect::<Result<Vec<_>, _>>()?))
            }
            Op::Prune { before_ms, limit } => {
                let limit = limit_i64(*limit);
                c.prepare_cached(&sql(schema::PRUNE_EVENTS))?
                    .execute(params![before_ms, limit])?;
                let n = c
                    .prepare_cached(&sql(schema::PRUNE_SAGAS))?
                    .execute(params![before_ms, limit])?;
                Ok(Reply::Count(n as u64))
            }
        }
    }

    fn load(&self, id: &str) -> Result<Option<SagaRow>, rusqlite::Error> {
        self.conn
            .prepare_cached(&sql(&schema::load()))?
            .query_row(params![id], decode)
            .optional()
    }

    fn event(&self, e: &EventRow) -> Result<(), rusqlite::Error> {
        self.conn
            .prepare_cached(&sql(schema::INSERT_EVENT))?
            .execute(params![
                e.saga_id, e.seq, e.at_ms, e.step, e.kind, e.attempt, e.detail
            ])?;
        Ok(())
    }

    /// Runs the batch between `BEGIN IMMEDIATE` and `COMMIT`; any error rolls it all back.
    fn transaction(
        &mut self,
        ops: &[Op],
    ) -> Result<Vec<Result<Reply, StoreError>>, rusqlite::Error> {
        self.conn.execute_batch("BEGIN IMMEDIATE")?;
        let mut results = Vec::with_capacity(ops.len());
        for op in ops {
            match self.one(op) {
                Ok(Reply::Done(false)) if matches!(op, Op::Commit { .. }) => {
                    results.push(Err(StoreError::Fenced(op_id(op))));
                }
                Ok(reply) => results.push(Ok(reply)),
                Err(e) => {
                    let _ = self.conn.execute_batch("ROLLBACK");
                    return Err(e);
                }
            }
        }
        if let Err(e) = self.conn.execute_batch("COMMIT") {
            let _ = self.conn.execute_batch("ROLLBACK");
            return Err(e);
        }
        Ok(results)
    }
}

impl Backend for Sqlite {
    const BLOCKING: bool = true;
    const SINGLE_PROCESS: bool = true;

    fn apply(&mut self, ops: &[Op]) -> Vec<Result<Reply, StoreError>> {
        match self.transaction(ops) {
            Ok(results) => results,
            Err(e) => {
                let e = backend(e);
                ops.iter().map(|_| Err(e.clone())).collect()
            }
        }
    }
}

pub(crate) fn op_id(op: &Op) -> String {
    match op {
        Op::Create { row, .. } | Op::Commit { row, .. } => row.id.clone(),
        Op::ClaimOne { id, .. }
        | Op::RequestCancel { id }
        | Op::Load { id }
        | Op::Events { id, .. } => id.clone(),
        _ => String::new(),
    }
}

pub(crate) fn limit_i64(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

fn decode(r: &Row<'_>) -> Result<SagaRow, rusqlite::Error> {
    let id: String = r.get(0)?;
    let bad = |e: StoreError| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
    };
    let state: String = r.get(3)?;
    let input: String = r.get(6)?;
    let outputs: String = r.get(7)?;
    let parked_from: Option<String> = r.get(11)?;
    let cancel: i64 = r.get(13)?;
    Ok(SagaRow {
        definition: r.get(1)?,
        version: r.get(2)?,
        state: SagaRow::decode_state(&id, &state).map_err(bad)?,
        cursor: r.get(4)?,
        attempt: r.get(5)?,
        input: SagaRow::decode_input(&id, &input).map_err(bad)?,
        outputs: SagaRow::decode_outputs(&id, &outputs).map_err(bad)?,
        failed_step: r.get(8)?,
        failure: r.get(9)?,
        reason: r.get(10)?,
        parked_from: match parked_from {
            Some(s) => Some(SagaRow::decode_state(&id, &s).map_err(bad)?),
            None => None,
        },
        deadline_ms: r.get(12)?,
        cancel_requested: cancel != 0,
        owner: r.get(14)?,
        epoch: r.get(15)?,
        lease_until_ms: r.get(16)?,
        created_ms: r.get(17)?,
        updated_ms: r.get(18)?,
        seq: r.get(19)?,
        id,
    })
}

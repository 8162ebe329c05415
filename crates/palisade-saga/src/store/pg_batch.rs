//! PostgreSQL's group commit in one round trip: a batch's state changes (and its new
//! sagas) go as arrays into one statement each — `unnest` the arrays, `UPDATE … FROM`
//! them under the epoch fence, append the events of the rows that were written — so a
//! batch of 64 commits costs one statement and one flush, not 128 statements.

use std::collections::HashSet;

use postgres::GenericClient;

use super::{EventRow, SagaRow};
use crate::error::StoreError;

const COMMITS: &str = "WITH v AS (SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], \
    $4::bigint[], $5::text[], $6::bigint[], $7::text[], $8::text[], $9::text[], $10::bigint[], \
    $11::bigint[], $12::bigint[], $13::bigint[]) AS v(id, state, step_cursor, attempt, outputs, \
    failed_step, failure, reason, parked_from, deadline_ms, updated_ms, seq, epoch)), \
    u AS (UPDATE palisade_sagas s SET state = v.state, step_cursor = v.step_cursor, \
    attempt = v.attempt, outputs = v.outputs, failed_step = v.failed_step, failure = v.failure, \
    reason = v.reason, parked_from = v.parked_from, deadline_ms = v.deadline_ms, \
    updated_ms = v.updated_ms, seq = v.seq, \
    cancel_requested = CASE WHEN v.state = 'running' THEN s.cancel_requested ELSE 0 END \
    FROM v WHERE s.id = v.id AND s.epoch = v.epoch RETURNING s.id), \
    e AS (INSERT INTO palisade_saga_events (saga_id, seq, at_ms, step, kind, attempt, detail) \
    SELECT ev.saga_id, ev.seq, ev.at_ms, ev.step, ev.kind, ev.attempt, ev.detail \
    FROM unnest($14::text[], $15::bigint[], $16::bigint[], $17::bigint[], $18::text[], \
    $19::bigint[], $20::text[]) AS ev(saga_id, seq, at_ms, step, kind, attempt, detail) \
    JOIN u ON u.id = ev.saga_id ON CONFLICT (saga_id, seq) DO NOTHING) \
    SELECT id FROM u";

const CREATES: &str = "WITH v AS (SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], \
    $4::text[], $5::bigint[], $6::bigint[], $7::text[], $8::text[], $9::bigint[], $10::text[], \
    $11::text[], $12::text[], $13::bigint[], $14::bigint[], $15::text[], $16::bigint[], \
    $17::bigint[], $18::bigint[], $19::bigint[], $20::bigint[], $21::bigint[], $22::bigint[], \
    $23::text[], $24::bigint[], $25::text[]) AS v(id, definition, version, state, step_cursor, \
    attempt, input, outputs, failed_step, failure, reason, parked_from, deadline_ms, \
    cancel_requested, owner, epoch, lease_until_ms, created_ms, updated_ms, seq, ev_seq, ev_at, \
    ev_kind, ev_attempt, ev_detail)), \
    i AS (INSERT INTO palisade_sagas (id, definition, version, state, step_cursor, attempt, input, \
    outputs, failed_step, failure, reason, parked_from, deadline_ms, cancel_requested, owner, epoch, \
    lease_until_ms, created_ms, updated_ms, seq) SELECT id, definition, version, state, step_cursor, \
    attempt, input, outputs, failed_step, failure, reason, parked_from, deadline_ms, \
    cancel_requested, owner, epoch, lease_until_ms, created_ms, updated_ms, seq FROM v \
    ON CONFLICT (id) DO NOTHING RETURNING id), \
    e AS (INSERT INTO palisade_saga_events (saga_id, seq, at_ms, step, kind, attempt, detail) \
    SELECT v.id, v.ev_seq, v.ev_at, NULL, v.ev_kind, v.ev_attempt, v.ev_detail \
    FROM v JOIN i ON i.id = v.id ON CONFLICT (saga_id, seq) DO NOTHING) \
    SELECT id FROM i";

fn texts<'a, T: 'a>(
    items: &[(&'a SagaRow, &'a EventRow)],
    f: impl Fn(&SagaRow, &EventRow) -> T,
) -> Vec<T> {
    items.iter().map(|(r, e)| f(r, e)).collect()
}

/// Writes every state change whose epoch still holds, with its events; answers the ids
/// written.
pub(crate) fn commits<C: GenericClient>(
    client: &mut C,
    items: &[(&SagaRow, &[EventRow])],
) -> Result<HashSet<String>, StoreError> {
    let rows: Vec<&SagaRow> = items.iter().map(|(r, _)| *r).collect();
    let column =
        |f: &dyn Fn(&SagaRow) -> Option<i64>| rows.iter().map(|r| f(r)).collect::<Vec<_>>();
    let events: Vec<&EventRow> = items.iter().flat_map(|(_, e)| e.iter()).collect();
    let ev_text =
        |f: &dyn Fn(&EventRow) -> Option<String>| events.iter().map(|e| f(e)).collect::<Vec<_>>();
    let ev_int =
        |f: &dyn Fn(&EventRow) -> Option<i64>| events.iter().map(|e| f(e)).collect::<Vec<_>>();
    let result = client.query(
        COMMITS,
        &[
            &rows.iter().map(|r| r.id.clone()).collect::<Vec<_>>(),
            &rows
                .iter()
                .map(|r| r.state.as_str().to_owned())
                .collect::<Vec<_>>(),
            &column(&|r| Some(r.cursor)),
            &column(&|r| Some(i64::from(r.attempt))),
            &rows.iter().map(|r| r.outputs_json()).collect::<Vec<_>>(),
            &column(&|r| r.failed_step),
            &rows.iter().map(|r| r.failure.clone()).collect::<Vec<_>>(),
            &rows.iter().map(|r| r.reason.clone()).collect::<Vec<_>>(),
            &rows
                .iter()
                .map(|r| r.parked_from.map(|s| s.as_str().to_owned()))
                .collect::<Vec<_>>(),
            &column(&|r| r.deadline_ms),
            &column(&|r| Some(r.updated_ms)),
            &column(&|r| Some(r.seq)),
            &column(&|r| Some(r.epoch)),
            &ev_text(&|e| Some(e.saga_id.clone())),
            &ev_int(&|e| Some(e.seq)),
            &ev_int(&|e| Some(e.at_ms)),
            &ev_int(&|e| e.step),
            &ev_text(&|e| Some(e.kind.clone())),
            &ev_int(&|e| Some(i64::from(e.attempt))),
            &ev_text(&|e| e.detail.clone()),
        ],
    )?;
    result
        .iter()
        .map(|r| r.try_get::<_, String>(0).map_err(StoreError::from))
        .collect()
}

/// Inserts every new saga whose id is free; answers the ids inserted.
pub(crate) fn creates<C: GenericClient>(
    client: &mut C,
    items: &[(&SagaRow, &EventRow)],
) -> Result<HashSet<String>, StoreError> {
    let rows = client.query(
        CREATES,
        &[
            &texts(items, |r, _| r.id.clone()),
            &texts(items, |r, _| r.definition.clone()),
            &texts(items, |r, _| i64::from(r.version)),
            &texts(items, |r, _| r.state.as_str().to_owned()),
            &texts(items, |r, _| r.cursor),
            &texts(items, |r, _| i64::from(r.attempt)),
            &texts(items, |r, _| r.input.to_string()),
            &texts(items, |r, _| r.outputs_json()),
            &texts(items, |r, _| r.failed_step),
            &texts(items, |r, _| r.failure.clone()),
            &texts(items, |r, _| r.reason.clone()),
            &texts(items, |r, _| r.parked_from.map(|s| s.as_str().to_owned())),
            &texts(items, |r, _| r.deadline_ms),
            &texts(items, |r, _| i64::from(r.cancel_requested)),
            &texts(items, |r, _| r.owner.clone()),
            &texts(items, |r, _| r.epoch),
            &texts(items, |r, _| r.lease_until_ms),
            &texts(items, |r, _| r.created_ms),
            &texts(items, |r, _| r.updated_ms),
            &texts(items, |r, _| r.seq),
            &texts(items, |_, e| e.seq),
            &texts(items, |_, e| e.at_ms),
            &texts(items, |_, e| e.kind.clone()),
            &texts(items, |_, e| i64::from(e.attempt)),
            &texts(items, |_, e| e.detail.clone()),
        ],
    )?;
    rows.iter()
        .map(|r| r.try_get::<_, String>(0).map_err(StoreError::from))
        .collect()
}

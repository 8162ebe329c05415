//! The schema and the statements both SQL stores share (PostgreSQL's `$n` placeholders;
//! SQLite reads them as `?n`). Types are the portable subset: `TEXT` and `BIGINT`
//! (SQLite gives `BIGINT` integer affinity), JSON kept as text.

/// Creates the tables if missing. Version 1.
pub(crate) const DDL: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS palisade_sagas (
        id TEXT PRIMARY KEY,
        definition TEXT NOT NULL,
        version BIGINT NOT NULL,
        state TEXT NOT NULL,
        step_cursor BIGINT NOT NULL,
        attempt BIGINT NOT NULL,
        input TEXT NOT NULL,
        outputs TEXT NOT NULL,
        failed_step BIGINT,
        failure TEXT,
        reason TEXT,
        parked_from TEXT,
        deadline_ms BIGINT,
        cancel_requested BIGINT NOT NULL,
        owner TEXT,
        epoch BIGINT NOT NULL,
        lease_until_ms BIGINT NOT NULL,
        created_ms BIGINT NOT NULL,
        updated_ms BIGINT NOT NULL,
        seq BIGINT NOT NULL
    )",
    "CREATE INDEX IF NOT EXISTS palisade_sagas_by_state ON palisade_sagas (state, lease_until_ms)",
    "CREATE INDEX IF NOT EXISTS palisade_sagas_by_owner ON palisade_sagas (owner)",
    "CREATE TABLE IF NOT EXISTS palisade_saga_events (
        saga_id TEXT NOT NULL,
        seq BIGINT NOT NULL,
        at_ms BIGINT NOT NULL,
        step BIGINT,
        kind TEXT NOT NULL,
        attempt BIGINT NOT NULL,
        detail TEXT,
        PRIMARY KEY (saga_id, seq)
    )",
];

/// The saga row's columns, in [`SagaRow`](super::SagaRow)'s order.
pub(crate) const COLUMNS: &str = "id, definition, version, state, step_cursor, attempt, input, outputs, \
    failed_step, failure, reason, parked_from, deadline_ms, cancel_requested, owner, epoch, \
    lease_until_ms, created_ms, updated_ms, seq";

pub(crate) const INSERT: &str = "INSERT INTO palisade_sagas (id, definition, version, state, step_cursor, \
    attempt, input, outputs, failed_step, failure, reason, parked_from, deadline_ms, cancel_requested, \
    owner, epoch, lease_until_ms, created_ms, updated_ms, seq) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, \
    $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20) ON CONFLICT (id) DO NOTHING";

pub(crate) const INSERT_EVENT: &str = "INSERT INTO palisade_saga_events (saga_id, seq, at_ms, step, kind, \
    attempt, detail) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (saga_id, seq) DO NOTHING";

/// The fenced write: applies only under the epoch the writer holds. A cancellation
/// request survives only while the saga stays running.
pub(crate) const COMMIT: &str = "UPDATE palisade_sagas SET state = $2, step_cursor = $3, attempt = $4, \
    outputs = $5, failed_step = $6, failure = $7, reason = $8, parked_from = $9, deadline_ms = $10, \
    updated_ms = $11, seq = $12, \
    cancel_requested = CASE WHEN $2 = 'running' THEN cancel_requested ELSE 0 END \
    WHERE id = $1 AND epoch = $13";

pub(crate) const RENEW: &str = "UPDATE palisade_sagas SET lease_until_ms = $2 \
    WHERE owner = $1 AND state IN ('running', 'compensating') \
    RETURNING id, cancel_requested, updated_ms";

pub(crate) const REQUEST_CANCEL: &str =
    "UPDATE palisade_sagas SET cancel_requested = 1 WHERE id = $1 AND state = 'running'";

pub(crate) const PRUNE_EVENTS: &str = "DELETE FROM palisade_saga_events WHERE saga_id IN (SELECT id FROM \
    palisade_sagas WHERE state IN ('completed', 'compensated', 'aborted') AND updated_ms < $1 \
    ORDER BY updated_ms LIMIT $2)";

pub(crate) const PRUNE_SAGAS: &str = "DELETE FROM palisade_sagas WHERE id IN (SELECT id FROM \
    palisade_sagas WHERE state IN ('completed', 'compensated', 'aborted') AND updated_ms < $1 \
    ORDER BY updated_ms LIMIT $2)";

pub(crate) fn load() -> String {
    format!("SELECT {COLUMNS} FROM palisade_sagas WHERE id = $1")
}

pub(crate) fn events() -> &'static str {
    "SELECT saga_id, seq, at_ms, step, kind, attempt, detail FROM palisade_saga_events \
     WHERE saga_id = $1 ORDER BY seq LIMIT $2"
}

pub(crate) fn list(with_state: bool) -> String {
    if with_state {
        format!(
            "SELECT {COLUMNS} FROM palisade_sagas WHERE state = $1 ORDER BY created_ms DESC, id LIMIT $2"
        )
    } else {
        format!("SELECT {COLUMNS} FROM palisade_sagas ORDER BY created_ms DESC, id LIMIT $1")
    }
}

/// Takes over one saga unless another live owner holds it; answers the row if taken.
pub(crate) fn claim_one() -> String {
    format!(
        "UPDATE palisade_sagas SET owner = $2, epoch = epoch + 1, lease_until_ms = $4 WHERE id = $1 \
         AND NOT (state IN ('running', 'compensating') AND owner IS NOT NULL AND owner <> $2 \
         AND lease_until_ms >= $3) RETURNING {COLUMNS}"
    )
}

/// Takes over unfinished sagas: `$1` owner, `$2` now, `$3` new lease end, `$4` the [`ClaimMode`](super::ClaimMode) as 0, 1, 2,
/// `$5` limit. `lock` is PostgreSQL's `FOR UPDATE SKIP LOCKED`, so runners claiming at
/// once take different sagas.
pub(crate) fn claim(lock: &str) -> String {
    format!(
        "UPDATE palisade_sagas SET owner = $1, epoch = epoch + 1, lease_until_ms = $3 WHERE id IN \
         (SELECT id FROM palisade_sagas WHERE state IN ('running', 'compensating') \
         AND (CAST($4 AS BIGINT) = 2 OR (CAST($4 AS BIGINT) = 1 AND owner = $1) OR lease_until_ms < $2) ORDER BY created_ms LIMIT $5 {lock}) \
         RETURNING {COLUMNS}"
    )
}

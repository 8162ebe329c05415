//! The durable log: one row per saga (its current state) and its timeline of events, in
//! SQLite, PostgreSQL or memory, behind one [`Store`] that groups commits.
//!
//! **What.** A [`Store`] takes [`Op`]s (create, commit a state change, claim, renew a
//! lease, read) from many sagas at once and hands them to its [`Backend`] in batches: one
//! transaction per batch, so 64 concurrent sagas cost one fsync, not 64.
//!
//! **Invariants.**
//! - A commit answers only after its transaction is durable; the runner starts no action
//!   before the commit of the state change that precedes it has answered.
//! - Every commit names the epoch it was made under; a row whose epoch moved on (another
//!   runner claimed it) refuses the write with [`StoreError::Fenced`], and its event is
//!   not appended.
//! - A failed transaction commits nothing of its batch: every op in it gets the error.
//! - The backend's blocking calls run on tokio's blocking pool (`spawn_blocking`), never
//!   on the executor; which also keeps tokio's paused test clock from jumping ahead while
//!   a commit is on disk.

mod batch;
pub mod memory;
mod pg_batch;
pub mod postgres;
mod row;
pub(crate) mod schema;
pub mod sqlite;

pub use batch::Store;

/// Opens the store a URL names: `sqlite://relative/path.db`, `sqlite:///absolute/path.db`,
/// `postgres://user@host:port/db` (or `postgresql://`, or a libpq `host=… dbname=…`
/// string after `postgres:`), or `memory://`. Must be called inside a tokio runtime.
pub async fn open(url: &str) -> Result<Store, StoreError> {
    if let Some(path) = url.strip_prefix("sqlite://") {
        if path.is_empty() {
            return Err(StoreError::Open(format!("{url}: no path")));
        }
        sqlite::open(path).await
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        postgres::open(url).await
    } else if let Some(conn) = url.strip_prefix("postgres:") {
        postgres::open(conn).await
    } else if url == "memory://" || url == "memory:" {
        Ok(memory::open())
    } else {
        Err(StoreError::Open(format!(
            "unsupported store URL {url:?}: use sqlite://PATH, postgres://… or memory://"
        )))
    }
}
pub use row::{EventRow, SagaRow, SagaState};

use crate::error::StoreError;

/// One request to the store.
#[derive(Clone, Debug)]
pub enum Op {
    /// Inserts a saga unless its id exists; answers [`Reply::Created`] or the existing row.
    Create {
        /// The new row (owner and epoch set by the runner).
        row: SagaRow,
        /// Its first event.
        event: EventRow,
    },
    /// Writes the saga's new state if its epoch is still `row.epoch`, and appends `events`.
    Commit {
        /// The whole row as it is now.
        row: SagaRow,
        /// The events recording the change (one, or two when a step's end also ends the
        /// saga).
        events: Vec<EventRow>,
    },
    /// Claims unfinished (running or compensating) sagas as `mode` says; bumps each epoch.
    Claim {
        /// The claiming runner.
        owner: String,
        /// Now, for lease expiry.
        now_ms: i64,
        /// The new lease's end.
        lease_until_ms: i64,
        /// At most this many.
        limit: usize,
        /// Which sagas.
        mode: ClaimMode,
    },
    /// Claims one saga whatever its state (for an operator's action); bumps its epoch
    /// unless another live owner holds it and `force` is false.
    ClaimOne {
        /// The saga.
        id: String,
        /// The claiming runner.
        owner: String,
        /// Now, for lease expiry.
        now_ms: i64,
        /// The new lease's end.
        lease_until_ms: i64,
    },
    /// Extends the leases of every unfinished saga `owner` holds; answers them.
    Renew {
        /// The runner.
        owner: String,
        /// The new lease's end.
        lease_until_ms: i64,
    },
    /// Flags a saga for cancellation by its owner; answers whether it was running.
    RequestCancel {
        /// The saga.
        id: String,
    },
    /// Reads one saga.
    Load {
        /// The saga.
        id: String,
    },
    /// Reads a saga's timeline, oldest first.
    Events {
        /// The saga.
        id: String,
        /// At most this many.
        limit: usize,
    },
    /// Lists sagas, newest first, optionally in one state.
    List {
        /// The state to list.
        state: Option<SagaState>,
        /// At most this many.
        limit: usize,
    },
    /// Deletes finished sagas (and their events) last updated before `before_ms`.
    Prune {
        /// The cut-off.
        before_ms: i64,
        /// At most this many sagas.
        limit: usize,
    },
}

/// Which unfinished sagas a claim takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClaimMode {
    /// Those whose lease has ended (another runner died): the periodic take-over.
    Expired = 0,
    /// Those owned by this runner's id or whose lease has ended: a restart in a fleet.
    OwnAndExpired = 1,
    /// Every one, leases or not: a restart on a single-process store.
    All = 2,
}

/// The answer to one [`Op`].
#[derive(Clone, Debug)]
pub enum Reply {
    /// Create: inserted.
    Created,
    /// Create: the id existed; here is its row.
    Exists(Box<SagaRow>),
    /// Commit, RequestCancel: done (for RequestCancel, whether it applied).
    Done(bool),
    /// Claim, List: rows.
    Rows(Vec<SagaRow>),
    /// ClaimOne, Load: a row, if any.
    Row(Option<Box<SagaRow>>),
    /// Events.
    Events(Vec<EventRow>),
    /// Renew: every saga whose lease was extended.
    Renewed(Vec<Renewed>),
    /// Prune: sagas deleted.
    Count(u64),
}

/// One saga whose lease a renewal extended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Renewed {
    /// The saga.
    pub id: String,
    /// A cancellation was asked for.
    pub cancel_requested: bool,
    /// Last changed at (ms since the Unix epoch).
    pub updated_ms: i64,
}

/// A store's engine: applies a batch of ops in one transaction.
pub trait Backend: Send + 'static {
    /// Whether `apply` blocks (runs on the blocking pool) or is instant (memory).
    const BLOCKING: bool;

    /// Whether one process owns the whole store (SQLite, memory): a runner starting on it
    /// takes over every unfinished saga at once instead of waiting for leases to end.
    const SINGLE_PROCESS: bool;

    /// Applies `ops` in one transaction; answers one result per op, in order. When the
    /// transaction fails, every op answers the error and nothing is committed.
    fn apply(&mut self, ops: &[Op]) -> Vec<Result<Reply, StoreError>>;
}

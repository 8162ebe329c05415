//! The crate's errors, one enum per concern.

/// A definition or runner configuration that does not hold together.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DefinitionError {
    /// A value out of range or a name that clashes; the message says which.
    #[error("invalid saga definition: {0}")]
    Invalid(String),
}

/// A store that failed or refused a write.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The store could not be opened (bad path or URL, unreachable server, schema).
    #[error("cannot open saga store: {0}")]
    Open(String),
    /// A read or write failed (full disk, lost connection); nothing of it was committed.
    #[error("saga store failed: {0}")]
    Backend(String),
    /// The write came from an owner whose lease was taken over (an older epoch): refused.
    #[error("saga {0} is owned by a newer epoch; write refused")]
    Fenced(String),
    /// A stored row could not be decoded.
    #[error("corrupt saga row {id}: {reason}")]
    Corrupt {
        /// The saga.
        id: String,
        /// What was wrong.
        reason: String,
    },
    /// The store's writer has stopped.
    #[error("saga store is closed")]
    Closed,
}

/// Why the runner refused a request.
#[derive(Debug, thiserror::Error)]
pub enum SagaError {
    /// No definition with this name is registered.
    #[error("no saga definition named {0:?}")]
    UnknownDefinition(String),
    /// No saga with this id.
    #[error("no saga with id {0:?}")]
    NotFound(String),
    /// `max_running` sagas are running; try later.
    #[error("{0} sagas are running; no room for another")]
    Full(usize),
    /// The id is empty, too long, or holds a `/`.
    #[error("invalid saga id {0:?}: 1 to 200 bytes, no '/'")]
    InvalidId(String),
    /// The id names a saga of another definition.
    #[error("saga id {id:?} is taken by a saga of {definition:?}")]
    IdTaken {
        /// The id.
        id: String,
        /// The definition of the saga holding it.
        definition: String,
    },
    /// The operation does not apply in the saga's state.
    #[error("saga {id} is {state}; cannot {action}")]
    InvalidState {
        /// The saga.
        id: String,
        /// Its state.
        state: String,
        /// What was asked.
        action: &'static str,
    },
    /// The saga is owned by another runner of the fleet.
    #[error("saga {0} is owned by another runner")]
    NotOwner(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The configuration does not hold together.
    #[error(transparent)]
    Definition(#[from] DefinitionError),
    /// Waiting for a saga ran out of time; it is still going.
    #[error("saga {0} still going")]
    StillRunning(String),
}

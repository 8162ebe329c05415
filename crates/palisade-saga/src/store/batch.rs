//! Group commit: one writer task per store gathers the ops waiting in a bounded queue
//! and applies them as one transaction.
//!
//! While a batch is on disk the next one fills up, so the batch size follows the load:
//! one op when idle, up to `max_batch` under load, and the cost of an fsync is shared.

use tokio::sync::{mpsc, oneshot};

use super::{Backend, EventRow, Op, Reply, SagaRow, SagaState};
use crate::error::StoreError;

type Answer = oneshot::Sender<Result<Reply, StoreError>>;

/// A saga store: the log the runner writes through; cheap to clone (clones share the
/// writer).
#[derive(Clone, Debug)]
pub struct Store {
    queue: mpsc::Sender<(Op, Answer)>,
    single_process: bool,
    kind: &'static str,
}

/// Ops waiting for the writer, at most (a full queue makes callers wait).
pub const QUEUE: usize = 4096;
/// Ops in one transaction, at most.
pub const MAX_BATCH: usize = 512;

// === impl Store ===

impl Store {
    /// A store over `backend`, with its writer task spawned on the current tokio runtime.
    pub fn from_backend<B: Backend>(backend: B, kind: &'static str) -> Self {
        let (queue, rx) = mpsc::channel(QUEUE);
        tokio::spawn(writer(backend, rx));
        Self {
            queue,
            single_process: B::SINGLE_PROCESS,
            kind,
        }
    }

    /// Whether one process owns the whole store (SQLite, memory).
    pub fn is_single_process(&self) -> bool {
        self.single_process
    }

    /// `memory`, `sqlite` or `postgres`.
    pub fn kind(&self) -> &'static str {
        self.kind
    }

    /// Sends one op and waits for its transaction.
    pub async fn call(&self, op: Op) -> Result<Reply, StoreError> {
        let (tx, rx) = oneshot::channel();
        self.queue
            .send((op, tx))
            .await
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Inserts a saga; `Some(existing)` when the id was taken.
    pub async fn create(
        &self,
        row: SagaRow,
        event: EventRow,
    ) -> Result<Option<SagaRow>, StoreError> {
        match self.call(Op::Create { row, event }).await? {
            Reply::Exists(row) => Ok(Some(*row)),
            _ => Ok(None),
        }
    }

    /// Commits a state change under `row.epoch`; [`StoreError::Fenced`] if it moved on.
    pub async fn commit(&self, row: SagaRow, event: EventRow) -> Result<(), StoreError> {
        self.commit_all(row, vec![event]).await
    }

    /// Commits a state change recorded by several events, in one write.
    pub async fn commit_all(&self, row: SagaRow, events: Vec<EventRow>) -> Result<(), StoreError> {
        self.call(Op::Commit { row, events }).await.map(|_| ())
    }

    /// Reads one saga.
    pub async fn load(&self, id: &str) -> Result<Option<SagaRow>, StoreError> {
        match self.call(Op::Load { id: id.to_owned() }).await? {
            Reply::Row(row) => Ok(row.map(|r| *r)),
            _ => Ok(None),
        }
    }

    /// Reads a saga's timeline.
    pub async fn events(&self, id: &str, limit: usize) -> Result<Vec<EventRow>, StoreError> {
        match self
            .call(Op::Events {
                id: id.to_owned(),
                limit,
            })
            .await?
        {
            Reply::Events(events) => Ok(events),
            _ => Ok(Vec::new()),
        }
    }

    /// Lists sagas, newest first.
    pub async fn list(
        &self,
        state: Option<SagaState>,
        limit: usize,
    ) -> Result<Vec<SagaRow>, StoreError> {
        rows(self.call(Op::List { state, limit }).await?)
    }

    /// Sends an op answered with rows (a claim, a list).
    pub async fn rows(&self, op: Op) -> Result<Vec<SagaRow>, StoreError> {
        rows(self.call(op).await?)
    }

    pub(crate) async fn row(&self, op: Op) -> Result<Option<SagaRow>, StoreError> {
        match self.call(op).await? {
            Reply::Row(row) => Ok(row.map(|r| *r)),
            _ => Ok(None),
        }
    }
}

fn rows(reply: Reply) -> Result<Vec<SagaRow>, StoreError> {
    match reply {
        Reply::Rows(rows) => Ok(rows),
        _ => Ok(Vec::new()),
    }
}

async fn writer<B: Backend>(backend: B, mut rx: mpsc::Receiver<(Op, Answer)>) {
    let mut backend = Some(backend);
    let mut ops = Vec::new();
    let mut answers = Vec::new();
    while let Some((op, answer)) = rx.recv().await {
        ops.push(op);
        answers.push(answer);
        while ops.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok((op, answer)) => {
                    ops.push(op);
                    answers.push(answer);
                }
                Err(_) => break,
            }
        }
        let batch = std::mem::take(&mut ops);
        let results = match backend.take() {
            None => Vec::new(),
            Some(mut b) if !B::BLOCKING => {
                let results = b.apply(&batch);
                backend = Some(b);
                results
            }
            Some(mut b) => {
                match tokio::task::spawn_blocking(move || {
                    let results = b.apply(&batch);
                    (b, results)
                })
                .await
                {
                    Ok((b, results)) => {
                        backend = Some(b);
                        results
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "saga store writer failed; store closed");
                        Vec::new()
                    }
                }
            }
        };
        let mut results = results.into_iter();
        for answer in answers.drain(..) {
            let _ = answer.send(results.next().unwrap_or(Err(StoreError::Closed)));
        }
        if backend.is_none() {
            return;
        }
    }
}

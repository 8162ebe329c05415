//! The runner: starts sagas, drives each one as its own task, recovers and takes over
//! unfinished sagas, and answers operators.
//!
//! **What.** [`Runner::start_saga`] writes the saga's first row and spawns its driver
//! (`drive.rs`); [`RunnerBuilder::start`] first claims every unfinished saga the store
//! holds for this runner and drives them again from where their log stands. Background
//! tasks renew this runner's leases, take over sagas whose lease ended, and prune
//! finished sagas.
//!
//! **Invariants.**
//! - At most one local driver per saga id; at most `max_running` drivers.
//! - A driver commits each state change before starting the next action; a fenced
//!   commit (another runner claimed the saga) stops it without another action.
//! - A saga whose definition name and version are not registered is parked with
//!   `unknown_version`, never run with another definition.

mod background;
mod config;
mod drive;
mod operator;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};

use rand::SeedableRng;
use rand::rngs::SmallRng;
use serde_json::Value;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::AbortHandle;

use crate::definition::SagaDefinition;
use crate::error::{DefinitionError, SagaError, StoreError};
use crate::store::{ClaimMode, EventRow, Op, SagaRow, SagaState, Store};
use crate::wall::{WallClock, millis};

pub use config::RunnerConfig;
pub use operator::{MAX_EVENTS, SagaView};

/// Drives sagas on a store; cheap to clone (clones share one runner).
#[derive(Clone)]
pub struct Runner {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    store: Store,
    definitions: HashMap<String, BTreeMap<u32, SagaDefinition>>,
    config: RunnerConfig,
    wall: WallClock,
    local: Mutex<HashMap<String, Local>>,
    /// Claimed sagas waiting for a slot to be driven (at most `RECOVERY_LIMIT` per pass).
    queued: Mutex<HashSet<String>>,
    /// Drivers sleeping between compensation attempts without a slot (at most
    /// `max_running`).
    backing_off: std::sync::atomic::AtomicUsize,
    permits: Arc<Semaphore>,
    recovery: Arc<Semaphore>,
    rng: Mutex<SmallRng>,
    background: Mutex<Vec<AbortHandle>>,
}

struct Local {
    cancel: watch::Sender<bool>,
    state: watch::Receiver<SagaState>,
    task: AbortHandle,
    epoch: i64,
}

/// Builds and starts a [`Runner`].
#[derive(Debug)]
pub struct RunnerBuilder {
    store: Store,
    definitions: Vec<SagaDefinition>,
    config: RunnerConfig,
    wall: Option<WallClock>,
}

/// How to start one saga.
#[derive(Clone, Debug, Default)]
pub struct StartOptions {
    /// The saga's id (a client's idempotency key): starting an id that exists answers
    /// that saga instead of starting another. Default: generated.
    pub id: Option<String>,
    /// The definition's version. Default: the highest registered.
    pub version: Option<u32>,
}

// === impl RunnerBuilder ===

impl RunnerBuilder {
    /// Registers a definition (several versions of one name may be registered).
    pub fn register(mut self, definition: SagaDefinition) -> Self {
        self.definitions.push(definition);
        self
    }

    /// Replaces the whole configuration.
    pub fn config(mut self, config: RunnerConfig) -> Self {
        self.config = config;
        self
    }

    /// Sets the runner's id ([`RunnerConfig::runner_id`]).
    pub fn runner_id(mut self, id: impl Into<String>) -> Self {
        self.config.runner_id = id.into();
        self
    }

    /// Sets [`RunnerConfig::max_running`].
    pub fn max_running(mut self, n: usize) -> Self {
        self.config.max_running = n;
        self
    }

    /// Sets [`RunnerConfig::recovery_concurrency`].
    pub fn recovery_concurrency(mut self, n: usize) -> Self {
        self.config.recovery_concurrency = n;
        self
    }

    /// Sets [`RunnerConfig::lease`].
    pub fn lease(mut self, lease: std::time::Duration) -> Self {
        self.config.lease = lease;
        self
    }

    /// Sets [`RunnerConfig::retention`].
    pub fn retention(mut self, retention: std::time::Duration) -> Self {
        self.config.retention = retention;
        self
    }

    /// Sets [`RunnerConfig::seed`].
    pub fn seed(mut self, seed: u64) -> Self {
        self.config.seed = Some(seed);
        self
    }

    /// Shares a wall clock with other runners in the process (tests on the paused clock).
    pub fn wall_clock(mut self, wall: WallClock) -> Self {
        self.wall = Some(wall);
        self
    }

    /// Validates, recovers every unfinished saga this runner may take, and starts the
    /// background tasks. Needs a tokio runtime.
    pub async fn start(self) -> Result<Runner, SagaError> {
        self.config.validate()?;
        let mut definitions: HashMap<String, BTreeMap<u32, SagaDefinition>> = HashMap::new();
        for def in self.definitions {
            let versions = definitions.entry(def.name().to_owned()).or_default();
            if versions.insert(def.version(), def.clone()).is_some() {
                return Err(DefinitionError::Invalid(format!(
                    "saga {:?} version {} registered twice",
                    def.name(),
                    def.version()
                ))
                .into());
            }
        }
        let rng = match self.config.seed {
            Some(seed) => SmallRng::seed_from_u64(seed),
            None => SmallRng::from_os_rng(),
        };
        let inner = Arc::new(Inner {
            store: self.store,
            definitions,
            permits: Arc::new(Semaphore::new(self.config.max_running)),
            recovery: Arc::new(Semaphore::new(self.config.recovery_concurrency)),
            config: self.config,
            wall: self.wall.unwrap_or_default(),
            local: Mutex::new(HashMap::new()),
            queued: Mutex::new(HashSet::new()),
            backing_off: std::sync::atomic::AtomicUsize::new(0),
            rng: Mutex::new(rng),
            background: Mutex::new(Vec::new()),
        });
        let mode = if inner.store.is_single_process() {
            ClaimMode::All
        } else {
            ClaimMode::OwnAndExpired
        };
        let claimed = inner.claim(mode, RECOVERY_LIMIT).await?;
        tracing::info!(runner = %inner.config.runner_id, sagas = claimed.len(), "saga recovery");
        inner.recover(claimed);
        background::spawn(&inner);
        Ok(Runner { inner })
    }
}

/// The most sagas one recovery pass claims; the take-over loop picks up the rest.
const RECOVERY_LIMIT: usize = 100_000;

// === impl Runner ===

impl Runner {
    /// A runner on `store`, with the default [`RunnerConfig`].
    pub fn builder(store: Store) -> RunnerBuilder {
        RunnerBuilder {
            store,
            definitions: Vec::new(),
            config: RunnerConfig::default(),
            wall: None,
        }
    }

    /// Starts a saga of definition `name` with `input`; answers its id. An id that exists
    /// answers that saga's id and starts nothing ([`SagaError::IdTaken`] if that saga is
    /// of another definition).
    pub async fn start_saga(
        &self,
        name: &str,
        input: Value,
        options: StartOptions,
    ) -> Result<String, SagaError> {
        let inner = &self.inner;
        let versions = inner
            .definitions
            .get(name)
            .ok_or_else(|| SagaError::UnknownDefinition(name.to_owned()))?;
        let def = match options.version {
            Some(v) => versions.get(&v),
            None => versions.values().next_back(),
        }
        .ok_or_else(|| SagaError::UnknownDefinition(format!("{name} v{:?}", options.version)))?
        .clone();
        let id = match options.id {
            Some(id) => id,
            None => generate_id(inner),
        };
        if id.is_empty() || id.len() > 200 || id.contains('/') {
            return Err(SagaError::InvalidId(id));
        }
        let permit = Arc::clone(&inner.permits)
            .try_acquire_owned()
            .map_err(|_| SagaError::Full(inner.config.max_running))?;
        let now = inner.wall.now_ms();
        let row = SagaRow {
            id: id.clone(),
            definition: def.name().to_owned(),
            version: def.version(),
            state: SagaState::Running,
            cursor: 0,
            attempt: 0,
            input,
            outputs: vec![Value::Null; def.steps().len()],
            failed_step: None,
            failure: None,
            reason: None,
            parked_from: None,
            deadline_ms: def.deadline().map(|d| now.saturating_add(millis(d))),
            cancel_requested: false,
            owner: Some(inner.config.runner_id.clone()),
            epoch: 1,
            lease_until_ms: now.saturating_add(millis(inner.config.lease)),
            created_ms: now,
            updated_ms: now,
            seq: 1,
        };
        let event = inner.event(
            &row,
            0,
            "started",
            None,
            0,
            Some(inner.config.runner_id.clone()),
        );
        if let Some(existing) = inner.store.create(row.clone(), event).await? {
            if existing.definition != def.name() {
                return Err(SagaError::IdTaken {
                    id,
                    definition: existing.definition,
                });
            }
            return Ok(id);
        }
        crate::metrics::started(def.name());
        inner.spawn(row, def, permit);
        Ok(id)
    }

    /// Stops this runner's tasks at once, without writing anything: its sagas stay in the
    /// store as they are, for a restart or another runner to take over (as after a crash).
    pub fn shutdown(&self) {
        let inner = &self.inner;
        for task in inner
            .background
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .drain(..)
        {
            task.abort();
        }
        for (_, local) in inner
            .local
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .drain()
        {
            local.task.abort();
        }
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// The runner's configuration.
    pub fn config(&self) -> &RunnerConfig {
        &self.inner.config
    }

    /// Sagas this runner is driving now.
    pub fn running(&self) -> usize {
        self.inner
            .local
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

impl std::fmt::Debug for Runner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runner")
            .field("runner_id", &self.inner.config.runner_id)
            .field("store", &self.inner.store.kind())
            .field("definitions", &self.inner.definitions.len())
            .field("running", &self.running())
            .finish()
    }
}

fn generate_id(inner: &Inner) -> String {
    use rand::Rng;
    let n: u64 = inner
        .rng
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .random();
    format!("{:x}-{n:016x}", inner.wall.now_ms())
}

// === impl Inner ===

impl Inner {
    pub(crate) fn event(
        &self,
        row: &SagaRow,
        seq: i64,
        kind: &str,
        step: Option<i64>,
        attempt: u32,
        detail: Option<String>,
    ) -> EventRow {
        EventRow {
            saga_id: row.id.clone(),
            seq,
            at_ms: self.wall.now_ms(),
            step,
            kind: kind.to_owned(),
            attempt,
            detail,
        }
    }

    fn lease_until(&self) -> i64 {
        self.wall.now_ms().saturating_add(millis(self.config.lease))
    }

    async fn claim(&self, mode: ClaimMode, limit: usize) -> Result<Vec<SagaRow>, StoreError> {
        self.store
            .rows(Op::Claim {
                owner: self.config.runner_id.clone(),
                now_ms: self.wall.now_ms(),
                lease_until_ms: self.lease_until(),
                limit,
                mode,
            })
            .await
    }

    /// Drives claimed sagas, `recovery_concurrency` at a time.
    fn recover(self: &Arc<Self>, rows: Vec<SagaRow>) {
        for row in rows {
            let inner = Arc::clone(self);
            self.queued
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(row.id.clone());
            let handle = tokio::spawn(async move {
                let id = row.id.clone();
                let slot = Arc::clone(&inner.recovery).acquire_owned().await;
                let permit = Arc::clone(&inner.permits).acquire_owned().await;
                if let (Ok(slot), Ok(permit)) = (slot, permit) {
                    inner.adopt(row, permit, Some(slot)).await;
                }
                inner
                    .queued
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .remove(&id);
            });
            drop(handle);
        }
    }

    /// Sagas this runner owns in the store but neither drives nor has queued (a start
    /// whose answer was lost after its commit): claimed again and driven.
    async fn adopt_orphans(self: &Arc<Self>, ids: Vec<String>) {
        for id in ids {
            let op = Op::ClaimOne {
                id,
                owner: self.config.runner_id.clone(),
                now_ms: self.wall.now_ms(),
                lease_until_ms: self.lease_until(),
            };
            match self.store.row(op).await {
                Ok(Some(row))
                    if row.state.is_active()
                        && row.owner.as_deref() == Some(&self.config.runner_id) =>
                {
                    tracing::warn!(saga = %row.id, "orphaned saga adopted");
                    self.recover(vec![row]);
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "orphaned saga not adopted"),
            }
        }
    }

    /// Drives a claimed saga, or parks it when its definition version is not registered.
    async fn adopt(
        self: &Arc<Self>,
        mut row: SagaRow,
        permit: OwnedSemaphorePermit,
        slot: Option<OwnedSemaphorePermit>,
    ) {
        let def = self
            .definitions
            .get(&row.definition)
            .and_then(|v| v.get(&row.version))
            .cloned();
        match def {
            Some(def) => {
                let seq = row.seq;
                row.seq += 1;
                let event = self.event(
                    &row,
                    seq,
                    "claimed",
                    None,
                    0,
                    Some(format!("{} epoch {}", self.config.runner_id, row.epoch)),
                );
                match self.store.commit(row.clone(), event).await {
                    Ok(()) => self.spawn_with(row, def, permit, slot, true),
                    Err(e) => {
                        tracing::warn!(saga = %row.id, error = %e, "claimed saga not adopted")
                    }
                }
            }
            None => {
                let reason = format!(
                    "unknown_version: {} v{} is not registered",
                    row.definition, row.version
                );
                row.parked_from = Some(row.state);
                row.state = SagaState::Parked;
                row.reason = Some(reason.clone());
                row.updated_ms = self.wall.now_ms();
                let seq = row.seq;
                row.seq += 1;
                let event = self.event(&row, seq, "parked", None, 0, Some(reason.clone()));
                if self.store.commit(row.clone(), event).await.is_ok() {
                    crate::metrics::parked(&row.definition, &reason);
                }
            }
        }
    }

    /// Drives a saga just created: nothing of it has run.
    fn spawn(self: &Arc<Self>, row: SagaRow, def: SagaDefinition, permit: OwnedSemaphorePermit) {
        self.spawn_with(row, def, permit, None, false);
    }

    fn spawn_with(
        self: &Arc<Self>,
        row: SagaRow,
        def: SagaDefinition,
        permit: OwnedSemaphorePermit,
        slot: Option<OwnedSemaphorePermit>,
        resumed: bool,
    ) {
        let (cancel_tx, cancel_rx) = watch::channel(row.cancel_requested);
        let (state_tx, state_rx) = watch::channel(row.state);
        let id = row.id.clone();
        let epoch = row.epoch;
        let mut local = self.local.lock().unwrap_or_else(PoisonError::into_inner);
        let inner = Arc::clone(self);
        let task = tokio::spawn(async move {
            let id = row.id.clone();
            let mut slots = drive::Slots {
                permit: Some(permit),
                recovery: slot,
            };
            drive::drive(&inner, row, def, cancel_rx, state_tx, resumed, &mut slots).await;
            drop(slots);
            let mut local = inner.local.lock().unwrap_or_else(PoisonError::into_inner);
            if local.get(&id).is_some_and(|l| l.epoch == epoch) {
                local.remove(&id);
            }
            crate::metrics::running(local.len());
        });
        if let Some(old) = local.insert(
            id,
            Local {
                cancel: cancel_tx,
                state: state_rx,
                task: task.abort_handle(),
                epoch,
            },
        ) {
            old.task.abort();
        }
        crate::metrics::running(local.len());
    }
}

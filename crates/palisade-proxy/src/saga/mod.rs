//! Sagas over HTTP: routes with `saga = "…"` start a saga whose steps are requests to
//! upstreams, each sent through that upstream's policies (`forward::call`), logged by
//! `palisade-saga`'s runner in the configured store (SQLite by default).
//!
//! - `mod.rs` (here): the service — the store opened, every `[[saga]]` turned into a
//!   definition whose steps call upstreams, the runner started;
//! - `steps.rs`: one step's request and how its answer is read (done, definitive,
//!   unknown);
//! - `answer.rs`: a saga route's answers to clients (200 / 409 / 202);
//! - `admin.rs`: `/admin/sagas…` on the admin port;
//! - `gauge.rs`: `palisade_sagas_parked{saga}`, the sagas waiting for an operator, read
//!   from the store when `/metrics` is scraped;
//! - `cli.rs`: `palisade saga …`, the operator's commands, through the admin port.
//!
//! The service is built once, at start, and outlives config reloads: a reload that
//! changes `[saga_store]` or `[[saga]]` keeps the running definitions (a restart applies
//! it). Steps reach upstreams through a [`Sender`] the server gives, which looks the
//! upstream up in the live runtime at each call (so steps use the policies as reloaded);
//! this module imports neither the runtime nor the request path.

mod admin;
mod answer;
pub mod cli;
pub mod gauge;
mod steps;

use std::sync::Arc;

use palisade_saga::{Runner, SagaDefinition, Step, store};

use crate::config::Config;
use crate::config::saga::Saga;
use steps::Caller;
pub use steps::{Answered, Sender, Unanswered};

pub use admin::handle as admin;
pub use answer::{Asked, SAGA_ID_HEADER, SAGA_REASONS, SagaRoute, answer};

/// The sidecar's sagas: the runner and what its steps need.
pub struct Sagas {
    runner: Runner,
    /// The store's URL, for `/admin/state`.
    pub store_url: String,
    /// The configured sagas' names, for the parked-sagas gauge.
    names: Vec<String>,
}

// === impl Sagas ===

impl Sagas {
    /// Opens the store and starts the runner for `config`'s sagas (`None` without any):
    /// unfinished sagas resume at once. `send`: how steps reach their upstreams.
    pub async fn start(config: &Config, send: Sender) -> Result<Option<Arc<Sagas>>, String> {
        if config.saga.is_empty() {
            return Ok(None);
        }
        let store_url = config.saga_store.clone().unwrap_or_default().url;
        let store = store::open(&store_url)
            .await
            .map_err(|e| format!("saga store {store_url}: {e}"))?;
        let mut builder = Runner::builder(store);
        for saga in &config.saga {
            builder = builder.register(definition(saga, &send)?);
        }
        let runner = builder.start().await.map_err(|e| e.to_string())?;
        let names = config.saga.iter().map(|s| s.name.clone()).collect();
        Ok(Some(Arc::new(Sagas {
            runner,
            store_url,
            names,
        })))
    }

    /// The runner, for the route and the admin API.
    pub fn runner(&self) -> &Runner {
        &self.runner
    }
}

impl Drop for Sagas {
    fn drop(&mut self) {
        self.runner.shutdown();
    }
}

/// `saga`'s definition: each step a request to its upstream, and its compensation's.
fn definition(saga: &Saga, send: &Sender) -> Result<SagaDefinition, String> {
    let mut builder = SagaDefinition::builder(saga.name.clone(), saga.version)
        .compensation_retry(saga.compensation_retry.clone());
    if let Some(deadline) = saga.deadline {
        builder = builder.deadline(deadline);
    }
    for step in &saga.step {
        let caller = Arc::new(Caller::new(step, send.clone()));
        let act = caller.clone();
        let mut built = Step::new(step.name.clone(), move |cx| {
            let caller = act.clone();
            async move { caller.act(&cx).await }
        });
        if step.compensate.is_some() {
            built = built.compensate(move |cx| {
                let caller = caller.clone();
                async move { caller.undo(&cx).await }
            });
        }
        builder = builder.step(built);
    }
    builder
        .build()
        .map_err(|e| format!("saga {}: {e}", saga.name))
}

//! # Palisade sagas
//!
//! Durable sagas: a transaction across services as ordered steps, each an action and a
//! compensation, whose every state change is committed to a log (SQLite, PostgreSQL or
//! memory) before the next action starts — so a crash, a restart or a runner dying in a
//! fleet never leaves a saga half done.
//!
//! **When to use it.** Create order → reserve stock → charge → ship, where each step is a
//! call to another service and a failure must undo what was done. Steps are
//! at-least-once with a stable idempotency key (`{saga_id}/{step}`,
//! `{saga_id}/{step}/compensate`): pass it on and each effect happens once.
//!
//! **Semantics** (`docs/SAGAS.md` has them in full): on the failure of step N, steps
//! N−1..1 are compensated in reverse; step N too when its outcome is
//! [unknown](StepError::Unknown) (timeout, lost connection, server error), not when it is
//! [definitive](StepError::Definitive). A cancel or a passed deadline compensates the same
//! way. A compensation that keeps failing is retried with backoff (about an hour by
//! default), then the saga is *parked* for an operator ([`Runner::resume`],
//! [`Runner::retry`], [`Runner::abort`]).
//!
//! ```
//! use palisade_saga::{Runner, SagaDefinition, SagaState, StartOptions, Step, StepError, store};
//! use serde_json::json;
//! use std::time::Duration;
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let checkout = SagaDefinition::builder("checkout", 1)
//!     .step(Step::new("reserve", |cx| async move { Ok(json!({ "reservation": cx.idempotency_key })) })
//!         .compensate(|_cx| async { Ok(json!(null)) }))
//!     .step(Step::new("charge", |_cx| async { Err(StepError::definitive("card declined")) }))
//!     .deadline(Duration::from_secs(30))
//!     .build()?;
//!
//! let dir = std::env::temp_dir().join(format!("saga-doc-{}", std::process::id()));
//! std::fs::create_dir_all(&dir)?;
//! let store = store::sqlite::open(dir.join("sagas.db")).await?;
//! let runner = Runner::builder(store).register(checkout).start().await?;
//!
//! let id = runner.start_saga("checkout", json!({ "cart": 7 }), StartOptions::default()).await?;
//! let saga = runner.wait(&id, Duration::from_secs(5)).await?;
//! assert_eq!(saga.state, SagaState::Compensated); // "reserve" was undone
//! # runner.shutdown(); let _ = std::fs::remove_dir_all(&dir); Ok(()) }
//! ```
//!
//! **Serving sagas (the sidecar's face).** Everything an HTTP face needs is here:
//! [`store::open`] takes the configured URL (`sqlite://…`, `postgres://…`); a definition
//! is built from data — a name, a version, named [`Step`]s whose closures capture the
//! upstream to call, a deadline, a [`CompensationRetry`] (serde, humantime durations);
//! [`Runner::start_saga`] takes the client's `Idempotency-Key` as the saga id (a repeat
//! answers the same saga); [`Runner::wait`] with the client's budget answers the settled
//! [`SagaRow`] (completed: `outputs`; compensated: `failure`) or
//! [`SagaError::StillRunning`]; [`Runner::get`] (a [`SagaView`], serde, with the timeline),
//! [`Runner::list`], [`Runner::resume`], [`Runner::retry`] and [`Runner::abort`] serve
//! the admin API. Saga ids are 1–200 bytes without `/`.
//!
//! See `docs/SAGAS.md` for the log's schema, durability settings and the recovery and
//! lease rules.

#![forbid(unsafe_code)]
#![deny(rust_2018_idioms, clippy::disallowed_methods, clippy::disallowed_types)]
#![warn(missing_docs)]
// Library code answers bad input with errors, never a panic; tests may unwrap.
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

pub mod definition;
pub mod error;
pub mod metrics;
pub mod runner;
pub mod store;
pub mod wall;

pub use definition::{CompensationRetry, SagaDefinition, Step, StepContext, StepError};
pub use error::{DefinitionError, SagaError, StoreError};
pub use runner::{Runner, RunnerConfig, SagaView, StartOptions};
pub use store::{SagaRow, SagaState, Store};
pub use wall::WallClock;

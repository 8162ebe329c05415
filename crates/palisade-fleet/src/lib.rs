//! # Palisade fleet
//!
//! Limits shared by every instance of a service through Redis, the store most teams
//! already run. A limit held per instance is multiplied by the number of instances
//! (twenty sidecars each allowing 100 calls/s let 2,000 through); a limit held in Redis
//! is one limit for the fleet.
//!
//! This crate talks to Redis; the core `palisade` crate has no sockets. What is here:
//!
//! - [`store`]: the Redis connection ([`RedisStore`]: one server or a cluster), every
//!   call behind the store's circuit breaker and under a Palisade timeout (5 ms by
//!   default), and the one error type every failure of it becomes ([`FleetError`]:
//!   timeout, unavailable, malformed answer, breaker open).
//! - [`membership`]: the live instances of a scope, from heartbeats ([`Membership`]).
//! - [`rate_limit`]: the fleet-wide GCRA rate limit: decided by Redis in *exact* mode
//!   ([`FleetRateLimiter`]: one script evaluation per decision, every limit of a request
//!   decided together, on the server's clock only), and the policy on top of it
//!   ([`SharedRateLimit`]: exact or lease mode, and what decides while Redis fails —
//!   a local share, open or closed).
//! - [`retry_budget`]: one retry budget for the fleet ([`FleetRetryBudget`]), behind a
//!   `palisade` [`RetryBudget`](palisade::policy::retry::RetryBudget).
//!
//! An error of the store is an answer, never a panic and never an admission; the
//! policies decide what to do with it.
//!
//! ```no_run
//! use palisade::policy::rate_limit::Quota;
//! use palisade_fleet::{Check, Decision, FleetLimit, FleetRateLimiter, RedisStore, StoreConfig};
//!
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let store = RedisStore::connect(&StoreConfig::new("redis://127.0.0.1:6379")).await?;
//! let limiter = FleetRateLimiter::builder().name("checkout").store(store).build()?;
//! let global = FleetLimit::new("global", Quota::new(1000.0, 100))?;
//! let per_client = FleetLimit::new("client", Quota::new(10.0, 5))?;
//!
//! match limiter.check(&[Check::global(&global), Check::keyed(&per_client, "alice")]).await? {
//!     Decision::Admitted => { /* serve it */ }
//!     Decision::Refused { retry_after, .. } => { /* 429 with Retry-After */ let _ = retry_after; }
//! }
//! # Ok(()) }
//! ```
//!
//! See `docs/FLEET.md` for the algorithm, the keys and the bounds.

#![forbid(unsafe_code)]
#![deny(rust_2018_idioms, clippy::disallowed_methods, clippy::disallowed_types)]
#![warn(missing_docs)]
// Library code answers bad input with errors, never a panic; tests may unwrap.
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

pub mod error;
pub mod membership;
pub mod rate_limit;
mod reply;
pub mod retry_budget;
pub mod store;

pub use error::FleetError;
pub use membership::{Membership, MembershipConfig};
pub use rate_limit::{
    Admit, Counting, Mode, OnStoreDown, SharedRateLimit, SharedRateLimitBuilder,
    SharedRateLimitConfig,
};
pub use rate_limit::{
    Check, Decision, FleetLimit, FleetRateLimitConfig, FleetRateLimiter, FleetRateLimiterBuilder,
};
pub use retry_budget::{FleetRetryBudget, FleetRetryBudgetConfig};
pub use store::{RedisStore, StoreConfig};

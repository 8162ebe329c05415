//! # Palisade
//!
//! Resilience policies for async Rust — timeout, retry, circuit breaker, bulkhead, rate
//! limit and fallback — that compose into one pipeline, run lock-free on the success path
//! and behave deterministically on tokio's paused clock.
//!
//! Every policy is `Clone` with shared state, runs plain async code through
//! [`Policy::call`] and wraps tower services through its layer. A [`Pipeline`] nests
//! policies in the order the builder names them, outermost first.
//!
//! ```
//! use std::time::Duration;
//! use palisade::{Error, Pipeline, Policy};
//! use palisade::policy::{circuit_breaker::CircuitBreaker, retry::Retry, timeout::Timeout};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
//! let pipeline = Pipeline::builder()
//!     .push(Timeout::new(Duration::from_secs(2)))          // total budget
//!     .push(Retry::builder().max_attempts(3).build().unwrap())
//!     .push(CircuitBreaker::builder().name("db").build().unwrap())
//!     .push(Timeout::new(Duration::from_millis(500)))      // per attempt
//!     .build();
//!
//! let answer = pipeline.call(|| async { Ok::<_, std::io::Error>("row") }).await;
//! assert_eq!(answer.unwrap(), "row");
//! # }
//! ```
//!
//! See `docs/ARCHITECTURE.md` for the design and `docs/CONFIG.md` for every setting.

#![forbid(unsafe_code)]
#![deny(rust_2018_idioms, clippy::disallowed_methods, clippy::disallowed_types)]
#![warn(missing_docs)]
// Library code answers bad input with errors, never a panic; tests may unwrap.
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

pub mod clock;
pub mod config;
pub(crate) mod context;
pub mod criticality;
pub mod deadline;
pub(crate) mod either;
pub mod error;
pub mod events;
pub mod layer;
pub mod outcome;
pub mod pipeline;
pub mod policy;
pub(crate) mod random;
pub mod settings;
pub(crate) mod sync;
pub(crate) mod window;

pub use config::ConfigError;
pub use error::{Error, Name};
pub use outcome::{Classify, DefaultClassifier, Outcome};
pub use pipeline::Pipeline;
pub use policy::Policy;

/// The README's examples, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;

//! The Palisade sidecar: an HTTP reverse proxy that applies Palisade's policies to a
//! service's upstreams, configured by one TOML file.
//!
//! It is built from the library's policy objects — the same retry, circuit breaker,
//! bulkhead, rate limiter and timeout — never from copies of them.

#![forbid(unsafe_code)]
#![deny(rust_2018_idioms, clippy::disallowed_methods, clippy::disallowed_types)]
#![warn(missing_docs)]
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

pub mod admin;
pub mod alerts;
pub mod body;
pub mod body_fault;
pub mod config;
pub mod dashboard;
pub mod demo;
pub mod forward;
pub mod gameday;
mod h1;
pub mod respond;
pub mod route;
pub mod runbooks;
pub mod runtime;
pub mod saga;
pub mod serve;
pub mod telemetry;
pub mod toxic;
pub mod upstream;

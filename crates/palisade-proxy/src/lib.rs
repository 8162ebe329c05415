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
pub mod body;
mod cap;
pub mod config;
pub mod demo;
mod drain;
pub mod forward;
pub mod head_timeout;
mod http1_server;
pub mod respond;
pub mod runtime;
pub mod server;
pub mod sniff;
pub mod telemetry;
mod wire;
mod workers;

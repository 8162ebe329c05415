//! HTTP knowledge for Palisade's policies.
//!
//! The core `palisade` crate knows nothing of HTTP. This crate teaches it:
//!
//! * [`classify`] — which responses and transport errors are failures of the upstream,
//!   which are retryable, and the `Retry-After` they ask for;
//! * [`deadline`] — reading a caller's time budget from `X-Request-Timeout`,
//!   `X-Request-Deadline` and `grpc-timeout`, and writing the remaining budget on;
//! * [`headers`] — hop-by-hop headers that a proxy must not forward;
//! * [`body`] — request bodies buffered up to a bound so that they can be replayed;
//! * [`status`] — the HTTP status (and response) that answers a policy's error.

#![forbid(unsafe_code)]
#![deny(rust_2018_idioms, clippy::disallowed_methods, clippy::disallowed_types)]
#![warn(missing_docs)]
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

pub mod body;
pub mod classify;
pub mod deadline;
pub mod headers;
pub mod retry_after;
pub mod status;
pub mod wall;

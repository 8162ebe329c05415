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
//! * [`replay`] — a tower layer that makes requests replayable, so that a pipeline with a
//!   retry can wrap an axum `Router` or any HTTP service;
//! * [`status`] — the HTTP answer to each of Palisade's refusals.

//!
//! # An axum handler behind every policy
//!
//! A timeout, a rate limit, a bulkhead, a circuit breaker, a retry and a fallback around
//! a handler, as one pipeline. [`replay::ReplayLayer`] makes requests replayable for the
//! retry; [`classify::HttpClassifier`] says which responses are failures (5xx) and which
//! are retried; [`status::error_response`] answers each refusal with its status.
//!
//! ```
//! use std::convert::Infallible;
//! use std::sync::Arc;
//! use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
//! use std::time::Duration;
//!
//! use axum::{Router, body::Body, error_handling::HandleErrorLayer, routing::post};
//! use http::{Request, Response, StatusCode};
//! use http_body_util::BodyExt;
//! use palisade::{Error, Pipeline};
//! use palisade::policy::{bulkhead::Bulkhead, circuit_breaker::CircuitBreaker,
//!     fallback::{Fallback, Trigger}, rate_limit::{Quota, RateLimiter}, retry::Retry,
//!     timeout::Timeout};
//! use palisade_http::classify::{HttpClassifier, Replay, RetryOn};
//! use palisade_http::{replay::ReplayLayer, status::error_response};
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! const OK: u8 = 0;
//! const SLOW: u8 = 1;
//! const FAILING: u8 = 2;
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
//! let mode = Arc::new(AtomicU8::new(OK));
//! let bodies_seen = Arc::new(AtomicUsize::new(0));
//! let handler = {
//!     let (mode, bodies_seen) = (mode.clone(), bodies_seen.clone());
//!     move |body: String| async move {
//!         assert_eq!(body, "order 7", "every attempt gets the whole body");
//!         bodies_seen.fetch_add(1, Ordering::SeqCst);
//!         match mode.load(Ordering::SeqCst) {
//!             SLOW => { tokio::time::sleep(Duration::from_secs(1)).await; (StatusCode::OK, "late") }
//!             FAILING => (StatusCode::INTERNAL_SERVER_ERROR, "broken"),
//!             _ => (StatusCode::OK, "stored"),
//!         }
//!     }
//! };
//!
//! let pipeline = Pipeline::builder()                                  // outermost first
//!     .push(Fallback::<Response<Body>, Infallible>::builder()
//!         .on(&[Trigger::CircuitOpen])
//!         .compute(|_| Response::new(Body::from("cached")))
//!         .build().unwrap())
//!     .push(Timeout::new(Duration::from_millis(100)))                   // the whole call
//!     .push(RateLimiter::builder().quota(Quota::new(1.0, 5)).build().unwrap())
//!     .push(Retry::builder().max_attempts(2).build().unwrap())
//!     .push(CircuitBreaker::builder().consecutive_failures(2).build().unwrap())
//!     .push(Bulkhead::builder().max_concurrent(1).queue(0, Duration::ZERO).build().unwrap())
//!     .classifier(HttpClassifier::new(RetryOn::parse(&["5xx"]).unwrap(), Replay::Safe))
//!     .build();
//!
//! let app = Router::new().route("/orders", post(handler)).layer(
//!     ServiceBuilder::new()
//!         .layer(HandleErrorLayer::new(|error: Error<Infallible>| async move {
//!             error_response::<_, Body>(&error)
//!         }))
//!         .layer(ReplayLayer::new(64 * 1024))
//!         .layer(pipeline.layer()),
//! );
//! let send = |app: Router| async move {
//!     let request = Request::post("/orders").body(Body::from("order 7")).unwrap();
//!     let response = app.oneshot(request).await.unwrap();
//!     let status = response.status();
//!     (status, response.into_body().collect().await.unwrap().to_bytes())
//! };
//!
//! assert_eq!(send(app.clone()).await, (StatusCode::OK, "stored".into()));
//!
//! // Slow: the timeout answers 504; a second call meanwhile finds the bulkhead full, 503.
//! mode.store(SLOW, Ordering::SeqCst);
//! let (first, second) = tokio::join!(send(app.clone()), send(app.clone()));
//! let mut statuses = [first.0, second.0];
//! statuses.sort();
//! assert_eq!(statuses, [StatusCode::SERVICE_UNAVAILABLE, StatusCode::GATEWAY_TIMEOUT]);
//!
//! // Failing: retried once (the handler sees the body twice), and the breaker opens.
//! mode.store(FAILING, Ordering::SeqCst);
//! let before = bodies_seen.load(Ordering::SeqCst);
//! assert_eq!(send(app.clone()).await.0, StatusCode::INTERNAL_SERVER_ERROR);
//! assert_eq!(bodies_seen.load(Ordering::SeqCst) - before, 2);
//!
//! // Open: the fallback answers.
//! assert_eq!(send(app.clone()).await, (StatusCode::OK, "cached".into()));
//!
//! // Five calls spent the rate limiter's burst: 429.
//! assert_eq!(send(app.clone()).await.0, StatusCode::TOO_MANY_REQUESTS);
//! # }
//! ```

#![forbid(unsafe_code)]
#![deny(rust_2018_idioms, clippy::disallowed_methods, clippy::disallowed_types)]
#![warn(missing_docs)]
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

pub mod body;
pub mod classify;
pub mod deadline;
pub mod headers;
pub mod replay;
pub mod retry_after;
pub mod status;
pub mod wall;

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
//! * [`retry`] — a retry for requests that are not `Clone` (an axum `Router`'s), which
//!   replays a body buffered up to a bound;
//! * [`status`] — the HTTP status (and response) that answers a policy's error;
//! * [`health`] — named health checks and the `/health/live`, `/ready`, `/deep` endpoints.
//!
//! # With axum
//!
//! A handler behind a timeout, a rate limit, a retry, a breaker, a bulkhead and a
//! fallback, on an axum 0.8 `Router`. Two things make this work for HTTP: the retry is a
//! [`BufferedRetry`](retry::BufferedRetry), because a request with a streaming body is
//! not `Clone` (it replays a copy of a body buffered up to a bound); and the policies'
//! errors become responses through [`status::response`] (axum wants a route to be
//! infallible): 504 for a timeout, 429 when rate limited, 503 when the breaker is open
//! or the bulkhead full. The fallback answers for the handler when it kept failing; its
//! page is an `http::Response`, which is not `Clone` either, so it is computed.
//!
//! ```
//! use std::sync::Arc;
//! use std::sync::atomic::{AtomicU8, Ordering::SeqCst};
//! use std::time::Duration;
//!
//! use axum::Router;
//! use axum::body::Body;
//! use axum::error_handling::HandleErrorLayer;
//! use axum::response::{IntoResponse, Response};
//! use http::{Request, StatusCode};
//! use http_body_util::BodyExt;
//! use palisade::policy::bulkhead::Bulkhead;
//! use palisade::policy::circuit_breaker::CircuitBreaker;
//! use palisade::policy::fallback::{Fallback, Trigger};
//! use palisade::policy::rate_limit::{Quota, RateLimiter};
//! use palisade::policy::retry::Retry;
//! use palisade::policy::timeout::Timeout;
//! use palisade::{Error, Pipeline};
//! use palisade_http::body::ReplayBody;
//! use palisade_http::classify::{RetryOn, StatusClassifier};
//! use palisade_http::retry::BufferedRetry;
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! /// The kitchen's failures: its own, or its order's body's.
//! type KitchenError = Box<dyn std::error::Error + Send + Sync>;
//!
//! // How the kitchen behaves, switched by the example below.
//! const COOK: u8 = 0;
//! const DAWDLE: u8 = 1;
//! const FAIL: u8 = 2;
//!
//! /// The handler: a tower service, so that it can fail with an error of its own. The
//! /// retry hands it the body as a `ReplayBody` (a copy of the buffered bytes).
//! async fn kitchen(mode: u8, request: Request<ReplayBody<Body>>) -> Result<Response, KitchenError> {
//!     let order = request.into_body().collect().await?.to_bytes();
//!     match mode {
//!         COOK => Ok(format!("{}, cooked", String::from_utf8_lossy(&order)).into_response()),
//!         DAWDLE => {
//!             tokio::time::sleep(Duration::from_secs(10)).await;
//!             Ok("too late".into_response())
//!         }
//!         _ => Err("out of stock".into()),
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mode = Arc::new(AtomicU8::new(COOK));
//! let switch = mode.clone();
//! let handler = service_fn(move |request| kitchen(switch.load(SeqCst), request));
//!
//! let policies = Pipeline::builder()                                       // outermost first
//!     .push(
//!         Fallback::<Response, KitchenError>::builder()
//!             .on(&[Trigger::Inner, Trigger::RetriesExhausted])            // the kitchen failed
//!             .compute(|_| (StatusCode::OK, "today's special").into_response())
//!             .build()?,
//!     )
//!     .push(Timeout::new(Duration::from_secs(1)))                          // 504
//!     .push(RateLimiter::builder().quota(Quota::new(0.01, 5)).build()?)    // 429
//!     .push(BufferedRetry::new(Retry::builder().max_attempts(3).seed(7).build()?))
//!     .push(CircuitBreaker::builder().consecutive_failures(3).build()?)    // 503 when open
//!     .push(Bulkhead::builder().max_concurrent(1).queue(0, Duration::ZERO).build()?) // 503 when full
//!     .classifier(StatusClassifier::new(RetryOn::parse(&["502", "503", "504"])?))
//!     .build();
//! let app = Router::new().route_service(
//!     "/order",
//!     ServiceBuilder::new()
//!         .layer(HandleErrorLayer::new(|error: Error<KitchenError>| async move {
//!             palisade_http::status::response::<_, Body>(&error)
//!         }))
//!         .layer(policies.layer())
//!         .service(handler),
//! );
//! let order = |dish: &'static str| Request::post("/order").body(Body::from(dish)).unwrap();
//! let text = |response: Response| async move {
//!     let bytes = response.into_body().collect().await.unwrap().to_bytes();
//!     String::from_utf8(bytes.to_vec()).unwrap()
//! };
//!
//! // All is well.
//! let response = app.clone().oneshot(order("soup")).await?;
//! assert_eq!(response.status(), StatusCode::OK);
//! assert_eq!(text(response).await, "soup, cooked");
//!
//! // A slow kitchen: the first order holds the bulkhead's one slot, so a second one is
//! // turned away (503), and the first runs out of time (504).
//! mode.store(DAWDLE, SeqCst);
//! let slow = tokio::spawn(app.clone().oneshot(order("stew")));
//! tokio::time::sleep(Duration::from_millis(1)).await;
//! let turned_away = app.clone().oneshot(order("salad")).await?;
//! assert_eq!(turned_away.status(), StatusCode::SERVICE_UNAVAILABLE);
//! assert_eq!(turned_away.headers()["x-palisade-reason"], "bulkhead-full");
//! assert_eq!(slow.await??.status(), StatusCode::GATEWAY_TIMEOUT);
//!
//! // A failing kitchen: three attempts, then the fallback's page. The three failures
//! // open the breaker, so the next order is refused at once (503).
//! mode.store(FAIL, SeqCst);
//! let response = app.clone().oneshot(order("pie")).await?;
//! assert_eq!(response.status(), StatusCode::OK);
//! assert_eq!(text(response).await, "today's special");
//! let refused = app.clone().oneshot(order("pie")).await?;
//! assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
//! assert_eq!(refused.headers()["x-palisade-reason"], "circuit-open");
//! assert!(refused.headers().contains_key("retry-after"));
//!
//! // Five orders took the rate limit's burst of five: the sixth is over the quota.
//! let limited = app.clone().oneshot(order("tea")).await?;
//! assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
//! assert_eq!(limited.headers()["x-palisade-reason"], "rate-limited");
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]
#![deny(rust_2018_idioms, clippy::disallowed_methods, clippy::disallowed_types)]
#![warn(missing_docs)]
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

pub mod body;
pub mod classify;
pub mod client;
pub mod deadline;
pub mod headers;
pub mod health;
pub mod retry;
pub mod retry_after;
pub mod status;
pub mod wall;

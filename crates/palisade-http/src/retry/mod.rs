//! Retrying HTTP requests whose bodies stream: buffer the body up to a bound, replay the
//! copy.
//!
//! Palisade's [`Retry`] layer sends a request again by cloning it, and an
//! `http::Request` with a streaming body (axum's `Body`, hyper's `Incoming`) is not
//! `Clone`: a pipeline with a plain `Retry` cannot wrap an axum `Router`. A
//! [`BufferedRetry`] is that same `Retry` for such requests, as the sidecar does it:
//!
//! * the body is read into memory if it is at most [`limit`](BufferedRetry::limit) bytes
//!   ([`body::buffer`](crate::body::buffer); 64 KiB by default), and every attempt sends
//!   a copy of it, with a copy of the request's head, under the retry policy and the
//!   classifier as usual;
//! * a larger body is never held, and never lost: what was read of it goes out in front
//!   of the rest of the stream, and the request is sent **once**, without retries;
//! * a body that fails while it is read is handed on, failing with its error, once.
//!
//! The inner service receives `http::Request<ReplayBody<B>>` ([`ReplayBody`]); an axum
//! `Route`, a hyper client and tower-http's services take any body, so they need nothing
//! more. Which outcomes are retried is the classifier's call, as for any `Retry`: a
//! request with a body is usually a `POST`, so retry only what the handler can take
//! twice.
//!
//! A `BufferedRetry` goes into a [`Pipeline`](palisade::Pipeline) where a `Retry` would
//! (its tower layer is the buffering one, and through `call` it is the plain `Retry`),
//! or is used on its own through [`layer`](BufferedRetry::layer).
//!
//! ```
//! use std::convert::Infallible;
//! use axum::{Router, body::Body, error_handling::HandleErrorLayer, routing::post};
//! use http::{Request, StatusCode};
//! use palisade::policy::retry::Retry;
//! use palisade_http::classify::{RetryOn, StatusClassifier};
//! use palisade_http::retry::BufferedRetry;
//! use std::sync::{Arc, Mutex};
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
//! let seen = Arc::new(Mutex::new(Vec::new()));
//! let log = seen.clone();
//! let app = Router::new()
//!     .route("/orders", post(move |body: String| async move {
//!         let mut seen = log.lock().unwrap();
//!         seen.push(body);
//!         // Busy the first time, fine the second.
//!         if seen.len() == 1 { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::CREATED }
//!     }))
//!     .layer(
//!         ServiceBuilder::new()
//!             // axum wants a route's stack to be infallible: errors become responses.
//!             .layer(HandleErrorLayer::new(|e: palisade::Error<Infallible>| async move {
//!                 palisade_http::status::response::<_, Body>(&e)
//!             }))
//!             .layer(
//!                 BufferedRetry::new(Retry::builder().max_attempts(2).seed(1).build().unwrap())
//!                     .limit(1024)
//!                     .layer_with(StatusClassifier::new(RetryOn::parse(&["503"]).unwrap())),
//!             ),
//!     );
//! let request = Request::post("/orders").body(Body::from("one coffee")).unwrap();
//! let response = app.oneshot(request).await.unwrap();
//! assert_eq!(response.status(), StatusCode::CREATED);
//! assert_eq!(*seen.lock().unwrap(), ["one coffee", "one coffee"]);
//! # }
//! ```

mod layer;

pub use layer::{BufferedRetryLayer, BufferedRetryService};

use std::fmt;
use std::future::Future;

use palisade::outcome::{Classify, DefaultClassifier};
use palisade::pipeline::IntoLayer;
use palisade::policy::retry::Retry;
use palisade::{Error, Policy};

pub use crate::body::ReplayBody;

/// A [`Retry`] for HTTP requests that are not `Clone`; see the [module docs](self).
#[derive(Clone, Debug)]
pub struct BufferedRetry {
    /// The retry policy every attempt runs under.
    retry: Retry,
    /// The largest body buffered for replay, in bytes.
    limit: usize,
}

// === impl BufferedRetry ===

impl BufferedRetry {
    /// The default [`limit`](Self::limit): 64 KiB, as the sidecar's `replay_body_bytes`.
    pub const DEFAULT_LIMIT: usize = 64 * 1024;

    /// `retry`, buffering bodies of up to [`DEFAULT_LIMIT`](Self::DEFAULT_LIMIT) bytes.
    pub fn new(retry: Retry) -> Self {
        Self {
            retry,
            limit: Self::DEFAULT_LIMIT,
        }
    }

    /// Buffers bodies of up to `bytes` bytes; a larger one is sent once. Memory held for
    /// replay is at most this per request in flight.
    pub fn limit(mut self, bytes: usize) -> Self {
        self.limit = bytes;
        self
    }

    /// The retry policy.
    pub fn retry(&self) -> &Retry {
        &self.retry
    }

    /// This policy as a tower layer, with the default classifier (every error retried).
    pub fn layer(&self) -> BufferedRetryLayer {
        self.layer_with(DefaultClassifier)
    }

    /// This policy as a tower layer classifying responses with `classifier`.
    pub fn layer_with<C: Clone>(&self, classifier: C) -> BufferedRetryLayer<C> {
        BufferedRetryLayer::new(self.retry.clone(), classifier, self.limit)
    }
}

/// In a pipeline's tower layer: the buffering retry layer, with the pipeline's classifier.
impl<C: Clone> IntoLayer<C> for BufferedRetry {
    type Layer = BufferedRetryLayer<C>;

    fn to_layer(&self, classifier: &C) -> Self::Layer {
        self.layer_with(classifier.clone())
    }
}

/// Through `call`, the operation can run again as it is: the plain [`Retry`].
impl<T, E> Policy<T, E> for BufferedRetry
where
    T: Send,
    E: Send + fmt::Debug,
{
    fn execute<C, F, Fut>(
        &self,
        classifier: &C,
        operation: F,
    ) -> impl Future<Output = Result<T, Error<E>>> + Send
    where
        C: Classify<T, E> + ?Sized,
        F: Fn() -> Fut + Send + Sync,
        Fut: Future<Output = Result<T, Error<E>>> + Send,
    {
        self.retry.execute(classifier, operation)
    }
}

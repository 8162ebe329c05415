//! Requests that a retry can send again, for tower and axum services.
//!
//! Palisade's [`Retry`](palisade::policy::retry::Retry) layer sends a request again by
//! cloning it, so its request type must be `Clone`. An `http::Request` is `Clone` only if
//! its body is, and a server's request body (axum's `Body`, hyper's `Incoming`) is a
//! stream read once: a pipeline holding a `Retry` cannot wrap an axum `Router` as it is.
//! [`ReplayLayer`] goes outside such a pipeline: it reads each request's body into
//! memory, up to a bound, and hands the pipeline a `Request<Full<Bytes>>`, which clones
//! cheaply (the bytes are shared). A body over the bound is answered 413 by the layer
//! itself, before any policy runs: a body that cannot be kept cannot be retried, so put
//! large uploads on routes outside the retrying pipeline. A body that fails to arrive
//! (the client went away, a broken chunk) is answered 400.
//!
//! ```
//! use std::convert::Infallible;
//! use bytes::Bytes;
//! use http::{Request, Response, StatusCode};
//! use http_body_util::{BodyExt, Full};
//! use palisade::policy::retry::Retry;
//! use palisade_http::replay::ReplayLayer;
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
//! let retry = Retry::builder().max_attempts(2).build().unwrap();
//! let service = ServiceBuilder::new()
//!     .layer(ReplayLayer::new(64 * 1024))      // outside: makes the request Clone
//!     .layer(retry.layer())                     // inside: may send it twice
//!     .service_fn(|request: Request<Full<Bytes>>| async move {
//!         let body = request.into_body().collect().await.unwrap().to_bytes();
//!         Ok::<_, Infallible>(Response::new(Full::new(body)))
//!     });
//! let request = Request::post("/").body(Full::new(Bytes::from("order 7"))).unwrap();
//! let response = service.oneshot(request).await.unwrap();
//! assert_eq!(response.status(), StatusCode::OK);
//! # }
//! ```

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body::Body;
use http_body_util::Full;
use tower_layer::Layer;
use tower_service::Service;

use crate::body::{RequestBody, buffer};

/// Buffers request bodies up to `max_bytes` so that the services inside may resend them.
#[derive(Clone, Copy, Debug)]
pub struct ReplayLayer {
    max_bytes: usize,
}

/// The service of [`ReplayLayer`].
#[derive(Clone, Debug)]
pub struct ReplayService<S> {
    inner: S,
    max_bytes: usize,
}

/// The response future of [`ReplayService`].
pub type ReplayFuture<R, E> = Pin<Box<dyn Future<Output = Result<R, E>> + Send>>;

// === impl ReplayLayer ===

impl ReplayLayer {
    /// Keeps bodies of at most `max_bytes` (413 beyond).
    pub fn new(max_bytes: usize) -> Self {
        Self { max_bytes }
    }
}

impl<S> Layer<S> for ReplayLayer {
    type Service = ReplayService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ReplayService {
            inner,
            max_bytes: self.max_bytes,
        }
    }
}

// === impl ReplayService ===

impl<S, B, ResBody> Service<Request<B>> for ReplayService<S>
where
    S: Service<Request<Full<Bytes>>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Send,
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: fmt::Display + Send,
    ResBody: Default + Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ReplayFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        // The instance driven ready takes this request; a clone stays for the next.
        let clone = self.inner.clone();
        let mut ready = std::mem::replace(&mut self.inner, clone);
        let max_bytes = self.max_bytes;
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            match buffer(body, max_bytes).await {
                Ok(RequestBody::Buffered(bytes)) => {
                    ready
                        .call(Request::from_parts(parts, Full::new(bytes)))
                        .await
                }
                Ok(RequestBody::Streaming(_)) => Ok(answer(StatusCode::PAYLOAD_TOO_LARGE)),
                Err(error) => {
                    tracing::debug!(%error, "request body failed");
                    Ok(answer(StatusCode::BAD_REQUEST))
                }
            }
        })
    }
}

/// An empty answer with `status`.
fn answer<B: Default>(status: StatusCode) -> Response<B> {
    let mut response = Response::new(B::default());
    *response.status_mut() = status;
    response
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use http_body_util::BodyExt;
    use tower::{ServiceBuilder, ServiceExt};

    use super::*;

    #[tokio::test]
    async fn a_body_over_the_bound_is_413_and_never_reaches_the_service() {
        let calls = Arc::new(AtomicUsize::new(0));
        let seen = calls.clone();
        let service = ServiceBuilder::new().layer(ReplayLayer::new(8)).service_fn(
            move |request: Request<Full<Bytes>>| {
                seen.fetch_add(1, Ordering::SeqCst);
                async move {
                    let body = request.into_body().collect().await.map(|b| b.to_bytes());
                    Ok::<_, Infallible>(Response::new(Full::new(body.unwrap_or_default())))
                }
            },
        );
        let small = Request::post("/")
            .body(Full::new(Bytes::from("12345678")))
            .unwrap();
        let answer = service.clone().oneshot(small).await.unwrap();
        assert_eq!(answer.status(), StatusCode::OK);
        let big = Request::post("/")
            .body(Full::new(Bytes::from("123456789")))
            .unwrap();
        let answer = service.oneshot(big).await.unwrap();
        assert_eq!(answer.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(
            calls.load(Ordering::SeqCst),
            1,
            "only the small body went in"
        );
    }
}

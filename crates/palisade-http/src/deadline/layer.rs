//! The inbound budget as a tower middleware, for a Rust HTTP service (axum, hyper).
//!
//! [`InboundDeadlineLayer`] reads the caller's budget from the request's headers (see the
//! [module docs](super)): a spent budget is answered 504 at once, without running the
//! service; an unreadable one is ignored (the request runs as if it had sent none: a
//! caller's malformed header is no reason to fail its request) and counted in
//! `palisade_deadline_header_invalid_total`; otherwise the service's future runs inside Palisade's
//! [deadline scope](palisade::deadline), so every policy inside it — a timeout, a retry
//! deciding whether one more attempt can finish — and every outbound call that forwards
//! the remaining budget sees the caller's time, not its own.
//!
//! ```
//! use std::convert::Infallible;
//! use std::time::Duration;
//! use http::{Request, Response, StatusCode};
//! use palisade_http::deadline::InboundDeadlineLayer;
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
//! let service = ServiceBuilder::new()
//!     .layer(InboundDeadlineLayer::new())
//!     .service_fn(|_: Request<()>| async {
//!         // What the handler has left of the caller's budget.
//!         let left = palisade::deadline::remaining().unwrap_or(Duration::MAX);
//!         Ok::<_, Infallible>(Response::new(format!("{}", left.as_millis())))
//!     });
//! let request = Request::get("/").header("x-request-timeout", "250").body(()).unwrap();
//! let response = service.clone().oneshot(request).await.unwrap();
//! assert_eq!(response.into_body(), "250");
//!
//! let spent = Request::get("/").header("x-request-timeout", "0").body(()).unwrap();
//! assert_eq!(service.oneshot(spent).await.unwrap().status(), StatusCode::GATEWAY_TIMEOUT);
//! # }
//! ```

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::{Request, Response, StatusCode};
use palisade::deadline::{Scoped, scope_for};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use super::inbound;

/// Runs services inside the caller's budget; see the [module docs](self).
#[derive(Clone, Copy, Debug, Default)]
pub struct InboundDeadlineLayer;

/// The service of [`InboundDeadlineLayer`].
#[derive(Clone, Debug)]
pub struct InboundDeadline<S> {
    inner: S,
}

pin_project! {
    /// The response future of [`InboundDeadline`].
    #[project = ResponseProj]
    #[allow(missing_docs)] // variants are documented; fields are internal
    pub enum ResponseFuture<F, B> {
        /// The service's call, inside the caller's deadline (or without one).
        Running {
            #[pin]
            inner: Scoped<F>,
        },
        /// The service's call with no budget stated.
        Unbounded {
            #[pin]
            inner: F,
        },
        /// Answered at once: a spent budget (504).
        Answered { status: StatusCode, body: Option<B> },
    }
}

// === impl InboundDeadlineLayer ===

impl InboundDeadlineLayer {
    /// The layer.
    pub fn new() -> Self {
        Self
    }
}

impl<S> Layer<S> for InboundDeadlineLayer {
    type Service = InboundDeadline<S>;

    fn layer(&self, inner: S) -> Self::Service {
        InboundDeadline { inner }
    }
}

// === impl InboundDeadline ===

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for InboundDeadline<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: Default,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        match inbound(request.headers()) {
            Err(_) => {
                metrics::counter!(INVALID_TOTAL).increment(1);
                ResponseFuture::Unbounded {
                    inner: self.inner.call(request),
                }
            }
            Ok(Some(budget)) if budget.is_zero() => answered(StatusCode::GATEWAY_TIMEOUT),
            Ok(Some(budget)) => ResponseFuture::Running {
                inner: scope_for(budget, self.inner.call(request)),
            },
            Ok(None) => ResponseFuture::Unbounded {
                inner: self.inner.call(request),
            },
        }
    }
}

/// Requests whose deadline header could not be read (and were run without a budget).
pub const INVALID_TOTAL: &str = "palisade_deadline_header_invalid_total";

/// An answer made at once, with an empty body.
fn answered<F, B: Default>(status: StatusCode) -> ResponseFuture<F, B> {
    ResponseFuture::Answered {
        status,
        body: Some(B::default()),
    }
}

impl<F, B, E> Future for ResponseFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: Default,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            ResponseProj::Running { inner } => inner.poll(cx),
            ResponseProj::Unbounded { inner } => inner.poll(cx),
            ResponseProj::Answered { status, body } => {
                let mut response = Response::new(body.take().unwrap_or_default());
                *response.status_mut() = *status;
                Poll::Ready(Ok(response))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use tower::{ServiceBuilder, ServiceExt};

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_handler_runs_inside_the_budget_a_spent_one_never_runs_it_and_a_bad_one_is_ignored()
    {
        let calls = Arc::new(AtomicUsize::new(0));
        let seen = calls.clone();
        let service = ServiceBuilder::new()
            .layer(InboundDeadlineLayer::new())
            .service_fn(move |_: Request<()>| {
                seen.fetch_add(1, Ordering::SeqCst);
                async {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    let left = palisade::deadline::remaining();
                    Ok::<_, Infallible>(Response::new(format!("{left:?}")))
                }
            });
        let ask = |header: Option<(&'static str, &'static str)>| {
            let mut request = Request::get("/");
            if let Some((name, value)) = header {
                request = request.header(name, value);
            }
            service.clone().oneshot(request.body(()).unwrap())
        };
        let answer = ask(Some(("grpc-timeout", "300m"))).await.unwrap();
        assert_eq!(
            answer.into_body(),
            "Some(200ms)",
            "300 ms less the 100 ms it took"
        );
        let answer = ask(None).await.unwrap();
        assert_eq!(answer.into_body(), "None");
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        let spent = ask(Some(("x-request-timeout", "0"))).await.unwrap();
        assert_eq!(spent.status(), StatusCode::GATEWAY_TIMEOUT);
        assert_eq!(
            calls.load(Ordering::SeqCst),
            2,
            "a spent budget never runs it"
        );
        let recorder = metrics_util::debugging::DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        let request = Request::get("/")
            .header("x-request-timeout", "soon")
            .body(())
            .unwrap();
        let mut direct = service.clone();
        // `call` reads the header (and counts it) at once: inside the local recorder.
        let bad = metrics::with_local_recorder(&recorder, || direct.call(request))
            .await
            .unwrap();
        assert_eq!(bad.status(), StatusCode::OK);
        assert_eq!(bad.into_body(), "None", "run without a budget");
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        let counted: Vec<_> = snapshotter
            .snapshot()
            .into_vec()
            .into_iter()
            .filter(|(key, ..)| key.key().name() == INVALID_TOTAL)
            .map(|(.., value)| value)
            .collect();
        assert_eq!(
            counted,
            [metrics_util::debugging::DebugValue::Counter(1)],
            "counted once"
        );
    }
}

//! The [`Retry`] as a tower middleware. Requests must be [`Replayable`] (every `Clone`
//! type is) to be sent again.
//!
//! A retry needs a service to send the request to again. Tower's own `Retry` clones the
//! inner service into every response future, in case it is needed; for a stack of
//! Palisade services that is one reference-count increment and decrement per policy
//! below, on every call. Here the first attempt goes to the service that was driven
//! ready, and retries to a clone of a *replay template*: a clone of the inner service
//! kept, with the policy and the classifier, behind one `Arc` shared by every clone of
//! the [`RetryService`]. A response future holds that one `Arc`, and clones the template
//! only when it retries (and drives the clone ready before calling it).
//!
//! An HTTP request with a streaming body (`http::Request<axum::body::Body>`, hyper's
//! `Incoming`) is not `Clone`, so this layer cannot retry it; `palisade_http::retry`
//! has the retry for those, which buffers the body up to a bound. [`Replayable`] exists
//! so that the compiler says so, rather than only that some `Service` bound deep in a
//! stack is not met.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use super::Retry;
use super::future::Cold;
use crate::Error;
use crate::clock::Nanos;
use crate::error::IntoPolicyError;
use crate::outcome::{Classify, DefaultClassifier, classify_result};

/// Applies a [`Retry`] to a service, classifying responses with `C`.
#[derive(Clone, Debug)]
pub struct RetryLayer<C = DefaultClassifier> {
    retry: Retry,
    classifier: C,
}

/// A service whose failed calls are retried.
#[derive(Clone, Debug)]
pub struct RetryService<S, C = DefaultClassifier> {
    inner: S,
    replay: Arc<Replay<S, C>>,
}

/// What every call of a [`RetryService`] (and of its clones) shares.
#[derive(Debug)]
struct Replay<S, C> {
    retry: Retry,
    classifier: C,
    /// Cloned for each retry; never called itself.
    template: S,
}

pin_project! {
    /// The response future of [`RetryService`]: the attempt running now, and the retry
    /// state, boxed and allocated only when a retry is wanted (as in the `call` API).
    pub struct ResponseFuture<S, Req, F, C> {
        replay: Arc<Replay<S, C>>,
        request: Req,
        // When the call started, if `max_elapsed` needs it (0 otherwise).
        started: Nanos,
        // The attempt running now; `None` between attempts.
        #[pin]
        attempt: Option<F>,
        // The service retries go to: a clone of the template, made on the first retry.
        service: Option<S>,
        cold: Option<Pin<Box<Cold>>>,
    }
}

/// A request a retry can send again: every `Clone` type, by cloning it.
///
/// Implement it for a request type of your own that can be copied for another attempt
/// some other way. A request that is neither is refused at compile time, with a note
/// that says why and what to use for HTTP:
///
/// ```compile_fail,E0277
/// use palisade::policy::retry::Retry;
/// use tower::{Layer, Service, service_fn};
///
/// struct Upload; // a request with a body that streams: not `Clone`
/// fn serve<S: Service<Upload>>(_: S) {}
///
/// let retry = Retry::builder().build().unwrap();
/// serve(retry.layer().layer(service_fn(|_: Upload| async { Ok::<_, std::io::Error>(()) })));
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be retried: a request must be `Clone` to be sent again",
    label = "a retry sends this request again, so it must be `Clone`",
    note = "an HTTP request with a streaming body (such as `http::Request<axum::body::Body>`) is not `Clone`: use `palisade_http::retry::BufferedRetry` in place of `Retry`; it buffers the body up to a bound, and sends a larger one once, without retries"
)]
pub trait Replayable {
    /// A copy of this request for another attempt.
    fn replay(&self) -> Self;
}

// Not recommended, so that the compiler reports the note above for a request that is
// not `Clone`, not just that `Clone` is missing.
#[diagnostic::do_not_recommend]
impl<T: Clone> Replayable for T {
    #[inline(always)]
    fn replay(&self) -> Self {
        self.clone()
    }
}

// === impl RetryLayer ===

impl Retry {
    /// This policy as a tower layer, with the default classifier.
    pub fn layer(&self) -> RetryLayer {
        self.layer_with(DefaultClassifier)
    }

    /// This policy as a tower layer classifying responses with `classifier`.
    pub fn layer_with<C: Clone>(&self, classifier: C) -> RetryLayer<C> {
        RetryLayer {
            retry: self.clone(),
            classifier,
        }
    }
}

impl<S: Clone, C: Clone> Layer<S> for RetryLayer<C> {
    type Service = RetryService<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        RetryService {
            replay: Arc::new(Replay {
                retry: self.retry.clone(),
                classifier: self.classifier.clone(),
                template: inner.clone(),
            }),
            inner,
        }
    }
}

// === impl RetryService ===

impl<S, C, Req> Service<Req> for RetryService<S, C>
where
    S: Service<Req> + Clone,
    S::Error: IntoPolicyError,
    <S::Error as IntoPolicyError>::Inner: fmt::Debug,
    C: Classify<S::Response, <S::Error as IntoPolicyError>::Inner>,
    Req: Replayable,
{
    type Response = S::Response;
    type Error = Error<<S::Error as IntoPolicyError>::Inner>;
    type Future = ResponseFuture<S, Req, S::Future, C>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner
            .poll_ready(cx)
            .map_err(IntoPolicyError::into_policy_error)
    }

    #[inline(always)] // see `crate::layer`: built in place, not copied out
    fn call(&mut self, request: Req) -> Self::Future {
        let started = self.replay.retry.start();
        let attempt = self.inner.call(request.replay());
        ResponseFuture {
            replay: Arc::clone(&self.replay),
            request,
            started,
            attempt: Some(attempt),
            service: None,
            cold: None,
        }
    }
}

// === impl ResponseFuture ===

impl<S, Req, F, C, T, E, I> Future for ResponseFuture<S, Req, F, C>
where
    S: Service<Req, Future = F, Error = E> + Clone,
    F: Future<Output = Result<T, E>>,
    E: IntoPolicyError<Inner = I>,
    I: fmt::Debug,
    C: Classify<T, I>,
    Req: Replayable,
{
    type Output = Result<T, Error<I>>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            if let Some(attempt) = this.attempt.as_mut().as_pin_mut() {
                let result = ready!(attempt.poll(cx)).map_err(IntoPolicyError::into_policy_error);
                let outcome = classify_result(&this.replay.classifier, &result);
                if !outcome.is_retryable() {
                    return Poll::Ready(result);
                }
                this.attempt.set(None);
                let retry = &this.replay.retry;
                if let Some(done) = Cold::settle(this.cold, *this.started, retry, &outcome, result)
                {
                    return Poll::Ready(done);
                }
            }
            // Between attempts: `cold` exists once an attempt was retried.
            if let Some(cold) = this.cold.as_mut() {
                ready!(cold.as_mut().poll_sleep(cx));
            }
            let service = this
                .service
                .get_or_insert_with(|| this.replay.template.clone());
            if let Err(e) = ready!(service.poll_ready(cx)) {
                return Poll::Ready(Err(e.into_policy_error()));
            }
            let attempt = service.call(this.request.replay());
            this.attempt.set(Some(attempt));
        }
    }
}

//! The [`BufferedRetry`](super::BufferedRetry) as a tower middleware.
//!
//! The first attempt goes to the service the caller drove ready; retries go to a clone
//! of a *template* (a clone of the inner service kept behind the layer's one `Arc`, as
//! palisade's own retry layer does), driven ready before each is sent. The body is read
//! before the first attempt, so the response future is boxed: one allocation per call,
//! next to the buffer itself.

use std::fmt;
use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::Request;
use http::request::Parts;
use http_body::Body;
use palisade::error::IntoPolicyError;
use palisade::outcome::{Classify, DefaultClassifier};
use palisade::policy::retry::Retry;
use palisade::{Error, Policy};
use tower_layer::Layer;
use tower_service::Service;

use crate::body::{self, ReplayBody, RequestBody};

/// Applies a [`BufferedRetry`](super::BufferedRetry) to a service, classifying responses
/// with `C`.
#[derive(Clone, Debug)]
pub struct BufferedRetryLayer<C = DefaultClassifier> {
    /// The retry policy.
    retry: Retry,
    /// Classifies each attempt's result.
    classifier: C,
    /// The largest body buffered for replay, in bytes.
    limit: usize,
}

/// A service whose requests are buffered and, when an attempt fails, sent again.
#[derive(Debug)]
pub struct BufferedRetryService<S, C = DefaultClassifier> {
    /// The service driven ready by `poll_ready`; it takes the next first attempt.
    inner: S,
    /// What every call of this service (and of its clones) shares.
    shared: Arc<Shared<S, C>>,
}

/// The policy, the classifier, the bound and the replay template.
#[derive(Debug)]
struct Shared<S, C> {
    /// The retry policy.
    retry: Retry,
    /// Classifies each attempt's result.
    classifier: C,
    /// The largest body buffered for replay, in bytes.
    limit: usize,
    /// Cloned for each retry, never called itself; behind a lock so that a response
    /// future is `Send` for any `S: Send`.
    template: Mutex<S>,
}

/// The boxed response future of [`BufferedRetryService`].
pub type ResponseFuture<T, I> = Pin<Box<dyn Future<Output = Result<T, Error<I>>> + Send>>;

// === impl BufferedRetryLayer ===

impl<C> BufferedRetryLayer<C> {
    pub(super) fn new(retry: Retry, classifier: C, limit: usize) -> Self {
        Self {
            retry,
            classifier,
            limit,
        }
    }
}

impl<S: Clone, C: Clone> Layer<S> for BufferedRetryLayer<C> {
    type Service = BufferedRetryService<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        BufferedRetryService {
            shared: Arc::new(Shared {
                retry: self.retry.clone(),
                classifier: self.classifier.clone(),
                limit: self.limit,
                template: Mutex::new(inner.clone()),
            }),
            inner,
        }
    }
}

// === impl BufferedRetryService ===

impl<S: Clone, C> Clone for BufferedRetryService<S, C> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<S, C, B> Service<Request<B>> for BufferedRetryService<S, C>
where
    S: Service<Request<ReplayBody<B>>> + Clone + Send + 'static,
    S::Future: Send,
    S::Response: Send + 'static,
    S::Error: IntoPolicyError,
    <S::Error as IntoPolicyError>::Inner: Send + fmt::Debug + 'static,
    C: Classify<S::Response, <S::Error as IntoPolicyError>::Inner> + 'static,
    B: Body<Data = Bytes> + Unpin + Send + 'static,
    B::Error: Send,
{
    type Response = S::Response;
    type Error = Error<<S::Error as IntoPolicyError>::Inner>;
    type Future = ResponseFuture<S::Response, <S::Error as IntoPolicyError>::Inner>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner
            .poll_ready(cx)
            .map_err(IntoPolicyError::into_policy_error)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        // The instance driven ready takes this request; a clone stays for the next.
        let clone = self.inner.clone();
        let ready = std::mem::replace(&mut self.inner, clone);
        let shared = Arc::clone(&self.shared);
        Box::pin(async move { shared.send(ready, request).await })
    }
}

impl<S, C> Shared<S, C> {
    /// Buffers the body, then sends the request: under the retry if it was buffered,
    /// once otherwise.
    async fn send<B, T, I>(&self, mut ready: S, request: Request<B>) -> Result<T, Error<I>>
    where
        S: Service<Request<ReplayBody<B>>, Response = T> + Clone + Send,
        S::Future: Send,
        S::Error: IntoPolicyError<Inner = I>,
        T: Send,
        I: Send + fmt::Debug,
        C: Classify<T, I>,
        B: Body<Data = Bytes> + Unpin + Send,
        B::Error: Send,
    {
        let (parts, body) = request.into_parts();
        let once = match body::buffer(body, self.limit).await {
            Ok(RequestBody::Buffered(bytes)) => return self.replay(ready, parts, bytes).await,
            Ok(RequestBody::Streaming(rest)) => ReplayBody::Streaming(rest),
            Err(error) => ReplayBody::Failed(Some(error)),
        };
        ready
            .call(Request::from_parts(parts, once))
            .await
            .map_err(IntoPolicyError::into_policy_error)
    }

    /// Sends copies of the request under the retry policy: the first to `ready`, each
    /// retry to a clone of the template.
    async fn replay<B, T, I>(&self, ready: S, parts: Parts, bytes: Bytes) -> Result<T, Error<I>>
    where
        S: Service<Request<ReplayBody<B>>, Response = T> + Clone + Send,
        S::Future: Send,
        S::Error: IntoPolicyError<Inner = I>,
        T: Send,
        I: Send + fmt::Debug,
        C: Classify<T, I>,
        B: Body<Data = Bytes> + Unpin + Send,
        B::Error: Send,
    {
        let first = Mutex::new(Some(ready));
        let operation = || {
            let request = Request::from_parts(parts.clone(), ReplayBody::buffered(bytes.clone()));
            let ready = first.lock().unwrap_or_else(|e| e.into_inner()).take();
            async move {
                let mut service = match ready {
                    Some(service) => service,
                    None => {
                        let mut service = self
                            .template
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .clone();
                        poll_fn(|cx| service.poll_ready(cx))
                            .await
                            .map_err(IntoPolicyError::into_policy_error)?;
                        service
                    }
                };
                service
                    .call(request)
                    .await
                    .map_err(IntoPolicyError::into_policy_error)
            }
        };
        self.retry.execute(&self.classifier, operation).await
    }
}

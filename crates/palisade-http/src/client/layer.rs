//! [`ResilientLayer`]: the client's policies as a tower layer over any HTTP client service
//! — hyper-util's legacy `Client`, or any `Service<Request<ReplayBody<B>>>`.
//!
//! A `fallback` section is the reqwest middleware's alone (this layer cannot make an
//! inner service's body): around this layer, the library's `Fallback` policy gives one.
//!
//! A request's body is read into memory up to a bound (64 KiB by default, as the
//! sidecar's `replay_body_bytes`) so that an attempt can be sent again; a larger body goes
//! out once, streamed, whatever the retry rules say. Every attempt after the first goes to
//! a clone of the inner service, driven ready first.
//!
//! ```no_run
//! use std::sync::Arc;
//! use bytes::Bytes;
//! use http_body_util::Full;
//! use hyper_util::client::legacy::Client;
//! use hyper_util::rt::TokioExecutor;
//! use palisade_http::body::ReplayBody;
//! use palisade_http::client::{ClientConfig, Resilience, ResilientLayer};
//! use tower_layer::Layer;
//!
//! let client = Client::builder(TokioExecutor::new())
//!     .build_http::<ReplayBody<Full<Bytes>>>();
//! let resilience = Arc::new(Resilience::new("inventory", &ClientConfig::default()).unwrap());
//! let inventory = ResilientLayer::new(resilience).layer(client);
//! # let _ = inventory;
//! ```

use std::fmt;
use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::request::Parts;
use http::{Request, Response};
use http_body::Body;
use palisade::Error;
use tower_layer::Layer;
use tower_service::Service;

use super::{Attempt, Attempted, Call, Resilience, budget_header};
use crate::body::{self, ReplayBody, RequestBody};
use crate::classify::{TransportError, TransportErrorKind};

/// The largest request body held for replay by default.
pub const DEFAULT_REPLAY_BYTES: usize = 64 * 1024;

/// How an HTTP client's error reads as a transport failure (what the retry rules judge).
pub trait TransportFailure {
    /// The failure's kind and words.
    fn transport(&self) -> TransportError;
}

#[cfg(feature = "http-check")]
impl TransportFailure for hyper_util::client::legacy::Error {
    fn transport(&self) -> TransportError {
        let kind = if self.is_connect() {
            TransportErrorKind::ConnectFailure
        } else {
            TransportErrorKind::Reset
        };
        TransportError {
            kind,
            message: self.to_string(),
        }
    }
}

impl TransportFailure for std::convert::Infallible {
    fn transport(&self) -> TransportError {
        match *self {}
    }
}

/// The policies of a [`Resilience`] around an HTTP client service.
#[derive(Clone, Debug)]
pub struct ResilientLayer {
    resilience: Arc<Resilience>,
    replay_bytes: usize,
}

/// The service of [`ResilientLayer`].
#[derive(Debug)]
pub struct ResilientService<S> {
    /// Driven ready by `poll_ready`; it takes the next call's first attempt.
    inner: S,
    /// Cloned for each later attempt; behind a lock so a call's future is `Send`.
    template: Arc<Mutex<S>>,
    resilience: Arc<Resilience>,
    replay_bytes: usize,
}

/// A call's future.
pub type ResponseFuture<R> =
    Pin<Box<dyn Future<Output = Result<Response<R>, Error<TransportError>>> + Send>>;

// === impl ResilientLayer ===

impl ResilientLayer {
    /// The layer over `resilience` (share one per dependency).
    pub fn new(resilience: Arc<Resilience>) -> Self {
        Self {
            resilience,
            replay_bytes: DEFAULT_REPLAY_BYTES,
        }
    }

    /// Holds request bodies of at most `bytes` for replay (default
    /// [`DEFAULT_REPLAY_BYTES`]); larger ones are sent once.
    pub fn replay_bytes(mut self, bytes: usize) -> Self {
        self.replay_bytes = bytes;
        self
    }
}

impl<S: Clone> Layer<S> for ResilientLayer {
    type Service = ResilientService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ResilientService {
            template: Arc::new(Mutex::new(inner.clone())),
            inner,
            resilience: self.resilience.clone(),
            replay_bytes: self.replay_bytes,
        }
    }
}

// === impl ResilientService ===

impl<S: Clone> Clone for ResilientService<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            template: self.template.clone(),
            resilience: self.resilience.clone(),
            replay_bytes: self.replay_bytes,
        }
    }
}

impl<S, B, R> Service<Request<B>> for ResilientService<S>
where
    S: Service<Request<ReplayBody<B>>, Response = Response<R>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: TransportFailure,
    B: Body<Data = Bytes> + Unpin + Send + 'static,
    B::Error: Send,
    R: Send + 'static,
{
    type Response = Response<R>;
    type Error = Error<TransportError>;
    type Future = ResponseFuture<R>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner
            .poll_ready(cx)
            .map_err(|e| Error::Inner(e.transport()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let clone = self.inner.clone();
        let ready = std::mem::replace(&mut self.inner, clone);
        let (template, resilience, limit) = (
            self.template.clone(),
            self.resilience.clone(),
            self.replay_bytes,
        );
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            let (body, replayable) = match body::buffer(body, limit).await {
                Ok(RequestBody::Buffered(bytes)) => (Sending::Copies(bytes), true),
                Ok(RequestBody::Streaming(rest)) => (
                    Sending::Once(Mutex::new(Some(ReplayBody::Streaming(rest)))),
                    false,
                ),
                Err(error) => (
                    Sending::Once(Mutex::new(Some(ReplayBody::Failed(Some(error))))),
                    false,
                ),
            };
            let sender = Sender {
                first: Mutex::new(Some(ready)),
                template,
                parts: &parts,
                body,
            };
            let attempt: &Attempt<'_, Response<R>> = &|budget| sender.attempt(budget);
            let call = Call {
                authority: parts.uri.authority().map_or("", |a| a.as_str()),
                method: &parts.method,
                idempotency_key: parts.headers.contains_key(super::IDEMPOTENCY_KEY),
                body_replayable: replayable,
            };
            resilience.execute(call, attempt).await
        })
    }
}

/// One call's attempts: the request's head, its body (copies, or the one stream), the
/// service driven ready for the first attempt and the template for the others.
struct Sender<'a, S, B: Body> {
    first: Mutex<Option<S>>,
    template: Arc<Mutex<S>>,
    parts: &'a Parts,
    body: Sending<B>,
}

enum Sending<B: Body> {
    Copies(Bytes),
    Once(Mutex<Option<ReplayBody<B>>>),
}

impl<S, B, R> Sender<'_, S, B>
where
    S: Service<Request<ReplayBody<B>>, Response = Response<R>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: TransportFailure,
    B: Body<Data = Bytes> + Unpin + Send + 'static,
    B::Error: Send,
    R: Send + 'static,
{
    fn attempt(&self, budget: Option<http::HeaderValue>) -> Attempted<'_, Response<R>> {
        let body = match &self.body {
            Sending::Copies(bytes) => Some(ReplayBody::buffered(bytes.clone())),
            Sending::Once(once) => once.lock().unwrap_or_else(|e| e.into_inner()).take(),
        };
        let mut parts = self.parts.clone();
        if let Some(budget) = budget {
            parts.headers.insert(budget_header(), budget);
        }
        let ready = self.first.lock().unwrap_or_else(|e| e.into_inner()).take();
        let template = self.template.clone();
        Box::pin(async move {
            let Some(body) = body else {
                return Err(TransportError {
                    kind: TransportErrorKind::Other,
                    message: "a streamed request body cannot be sent twice".into(),
                });
            };
            let mut service = match ready {
                Some(service) => service,
                None => {
                    let mut service = template.lock().unwrap_or_else(|e| e.into_inner()).clone();
                    poll_fn(|cx| service.poll_ready(cx))
                        .await
                        .map_err(|e| e.transport())?;
                    service
                }
            };
            service
                .call(Request::from_parts(parts, body))
                .await
                .map_err(|e| e.transport())
        })
    }
}

impl<B: Body> fmt::Debug for Sending<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Sending::Copies(bytes) => write!(f, "Copies({} bytes)", bytes.len()),
            Sending::Once(_) => f.write_str("Once"),
        }
    }
}

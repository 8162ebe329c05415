//! One request's attempts: each picks an endpoint (another than the last when it can),
//! runs under the endpoint's breaker and the per-try timeout, and writes the request
//! upstream, straight from the client's head when it can.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use http::header::HOST;
use http::request::Parts;
use http::uri::{self, PathAndQuery, Scheme};
use http::{HeaderMap, HeaderValue, Request, Response, Uri};
use http_body_util::BodyExt;
use palisade::outcome::classify_result;
use palisade::{Error, Policy};
use palisade_http::classify::{HttpClassifier, TransportError, TransportErrorKind};

use super::{ADDED_HEADERS, Client, Outgoing, X_FORWARDED_FOR};
use crate::body::{BoxError, ProxyBody, boxed, empty, full};
use crate::h1::client::RequestHead;
use crate::upstream::{Endpoint, Picked, PooledBody, SendError, Upstream};

/// One request's attempts.
pub(super) struct Attempt<'a> {
    pub(super) upstream: &'a Upstream,
    pub(super) parts: &'a Parts,
    pub(super) body: Outgoing,
    pub(super) client: &'a Client,
    /// The first attempt's endpoint, picked in advance (see `Exchange::forward`).
    pub(super) first: Mutex<Option<Picked>>,
    /// The request may be sent again (see `Replay`).
    pub(super) replayable: bool,
    /// Endpoints tried, a bit per index, so a retry goes elsewhere when it can.
    pub(super) tried: AtomicU64,
    /// Attempts sent.
    pub(super) attempts: AtomicU32,
    /// The last attempt's round trip, in nanoseconds (0: none finished).
    pub(super) last_took: AtomicU64,
}

/// An attempt's result. The response is boxed (see `Pool::send_http1`): every policy
/// above the attempt returns it, and boxed it moves as one word.
pub(super) type Attempted = Result<Box<Response<PooledBody>>, Error<TransportError>>;

impl Attempt<'_> {
    /// The last finished attempt's round trip.
    pub(super) fn last_round_trip(&self) -> Option<Duration> {
        match self.last_took.load(Ordering::Relaxed) {
            0 => None,
            nanos => Some(Duration::from_nanos(nanos)),
        }
    }

    /// One attempt: an endpoint from the balancer (its breaker's permit with it), the
    /// exchange under the per-try timeout. The policies around it are the upstream's
    /// `Calls`.
    pub(super) async fn once(&self, classifier: &HttpClassifier) -> Attempted {
        let balancer = &self.upstream.balancer;
        let first = self.first.lock().unwrap_or_else(|e| e.into_inner()).take();
        let mut picked = match first {
            Some(picked) => picked,
            None => balancer.pick(self.tried.load(Ordering::Relaxed))?,
        };
        self.attempts.fetch_add(1, Ordering::Relaxed);
        if picked.index < 64 {
            self.tried.fetch_or(1 << picked.index, Ordering::Relaxed);
        }
        let started = balancer.clock().now();
        let endpoint = &*picked.endpoint;
        let result = self
            .upstream
            .pipeline
            .per_try
            .execute(classifier, || self.send(endpoint))
            .await;
        let finished = balancer.clock().now();
        let took = Duration::from_nanos(finished.saturating_sub(started));
        self.last_took
            .store(took.as_nanos() as u64, Ordering::Relaxed);
        let outcome = classify_result(classifier, &result);
        balancer.finish(&mut picked, finished, took, &outcome);
        result
    }

    async fn send(&self, endpoint: &Endpoint) -> Attempted {
        let body = match &self.body {
            // Most requests have no body: an empty one is boxed without allocating.
            Outgoing::Buffered(bytes) if bytes.is_empty() => empty(),
            Outgoing::Buffered(bytes) => full(bytes.clone()),
            Outgoing::Streaming(slot) => {
                match slot.lock().unwrap_or_else(|e| e.into_inner()).take() {
                    Some(stream) => boxed(stream.map_err(BoxError::from)),
                    None => {
                        return Err(transport(
                            TransportErrorKind::Other,
                            "a streamed body cannot be sent twice",
                        ));
                    }
                }
            }
        };
        let sent = if endpoint.pool.is_http1() && RequestHead::can_write(&self.parts.headers) {
            // Written straight from the client's head: no copy of its header map.
            let chained;
            let forwarded_for = match self.chained_forwarded_for() {
                Some(value) => {
                    chained = value;
                    chained.as_ref()
                }
                None => self.client.forwarded_for.as_ref(),
            };
            let timeout = palisade::deadline::remaining().map(|remaining| {
                let left =
                    palisade_http::deadline::outbound_budget(remaining, self.upstream.margin);
                let grpc = self
                    .is_grpc()
                    .then(|| {
                        HeaderValue::from_str(&palisade_http::deadline::format_grpc_timeout(left))
                            .ok()
                    })
                    .flatten();
                (u64::try_from(left.as_millis()).unwrap_or(u64::MAX), grpc)
            });
            let head = RequestHead {
                method: &self.parts.method,
                path: self
                    .parts
                    .uri
                    .path_and_query()
                    .map_or("/", PathAndQuery::as_str),
                headers: &self.parts.headers,
                host: self.parts.uri.authority().map(uri::Authority::as_str),
                forwarded_for,
                timeout,
                early_hints: Some(&self.client.early_hints).filter(|hints| hints.is_relayed()),
            };
            endpoint
                .pool
                .send_http1(&head, body, !self.replayable, self.client.worker)
                .await
        } else {
            // Boxed: the general path (HTTP/2, or a head that cannot be written as it is)
            // is rare, and its future would otherwise size every attempt's.
            let request = self.upstream_request(endpoint, body)?;
            Box::pin(endpoint.pool.send(request, self.client.worker)).await
        };
        sent.map_err(|e| {
            let kind = match e {
                SendError::Connect { .. } => TransportErrorKind::ConnectFailure,
                SendError::Request(_) | SendError::Http1(_) => TransportErrorKind::Reset,
            };
            transport(kind, &e.to_string())
        })
    }

    fn upstream_request(
        &self,
        endpoint: &Endpoint,
        body: ProxyBody,
    ) -> Result<Request<ProxyBody>, Error<TransportError>> {
        let mut target = uri::Parts::default();
        target.scheme = Some(Scheme::HTTP);
        target.authority = Some(endpoint.authority.clone());
        target.path_and_query = Some(
            self.parts
                .uri
                .path_and_query()
                .cloned()
                .unwrap_or_else(|| PathAndQuery::from_static("/")),
        );
        let uri = Uri::from_parts(target)
            .map_err(|_| transport(TransportErrorKind::Other, "cannot form the upstream URI"))?;
        let mut request = Request::new(body);
        *request.method_mut() = self.parts.method.clone();
        *request.uri_mut() = uri;
        // Room for the headers added below, so that adding them never grows the map.
        let mut copy = HeaderMap::with_capacity(self.parts.headers.len() + ADDED_HEADERS);
        for (name, value) in &self.parts.headers {
            copy.append(name.clone(), value.clone());
        }
        *request.headers_mut() = copy;
        let headers = request.headers_mut();
        palisade_http::headers::strip_hop_by_hop(headers);
        // The relay passes trailers on: a client that takes them may have them asked for.
        if palisade_http::headers::accepts_trailers(&self.parts.headers) {
            headers.insert(http::header::TE, HeaderValue::from_static("trailers"));
        }
        if !headers.contains_key(HOST) {
            if let Some(authority) = self.parts.uri.authority() {
                if let Ok(host) = HeaderValue::from_str(authority.as_str()) {
                    headers.insert(HOST, host);
                }
            }
        }
        let forwarded = match self.chained_forwarded_for() {
            Some(chained) => chained,
            None => self.client.forwarded_for.clone(),
        };
        if let Some(value) = forwarded {
            headers.insert(X_FORWARDED_FOR, value);
        }
        if let Some(remaining) = palisade::deadline::remaining() {
            let grpc = self.is_grpc();
            palisade_http::deadline::outbound(headers, remaining, self.upstream.margin, grpc);
        }
        Ok(request)
    }

    /// `X-Forwarded-For` when the client sent one: its chain with the client's address
    /// added (`Some(None)` if that is not a valid value). `None`: the client sent none,
    /// and the connection's own value goes.
    fn chained_forwarded_for(&self) -> Option<Option<HeaderValue>> {
        let chain = self.parts.headers.get(&X_FORWARDED_FOR)?;
        let chain = chain.to_str().ok()?;
        Some(HeaderValue::from_str(&format!("{chain}, {}", self.client.address.ip())).ok())
    }

    /// A gRPC request, which gets its deadline as `grpc-timeout` too.
    fn is_grpc(&self) -> bool {
        self.parts
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/grpc"))
    }
}

pub(super) fn transport(kind: TransportErrorKind, message: &str) -> Error<TransportError> {
    Error::Inner(TransportError {
        kind,
        message: message.to_owned(),
    })
}

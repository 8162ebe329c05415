//! The request path: from a client's request to the upstream's answer, or an explained
//! refusal.
//!
//! ```text
//! route ─▶ deadline ─▶ fault ─▶ rate limit ─▶ bulkhead ─▶ total timeout ─▶ retry
//!       ─▶ [upstream breaker] ─▶ balancer (endpoint breaker, health) ─▶ per-try timeout ─▶ upstream
//! ```
//!
//! Every policy here is the library's: `Timeout`, `Retry`, `CircuitBreaker`, `Bulkhead`,
//! `RateLimiter`, run with the HTTP classifier of `palisade-http`.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use http::header::HOST;
use http::request::Parts;
use http::uri::{self, PathAndQuery, Scheme};
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Limited};
use palisade::clock::{Clock, Nanos};
use palisade::outcome::{Classify, classify_result};
use palisade::{Error, Policy};
use palisade_http::body::{Prefixed, RequestBody};
use palisade_http::classify::{HttpClassifier, Replay, TransportError, TransportErrorKind};
use tokio::time::Instant;

use crate::body::{BoxError, ClientBody, Guarded, ProxyBody, boxed, empty, full};
use crate::head_timeout::{IdleOnDrop, Waiting};
use crate::respond::{self, Reason, Reply};
use crate::runtime::{
    Endpoint, InFlight, Injected, Picked, PooledBody, RequestHead, Route, Runtime, SendError,
    Upstream,
};

const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
/// Headers the proxy may add to a request it forwards: `Host`, `X-Forwarded-For`,
/// `X-Request-Timeout` and `grpc-timeout`.
const ADDED_HEADERS: usize = 4;
/// `x-palisade-attempts`: how many attempts a relayed response took.
pub const ATTEMPTS: HeaderName = HeaderName::from_static("x-palisade-attempts");

/// The client at the other end of a connection, as every request on it forwards it.
pub struct Client {
    /// Its address.
    pub address: SocketAddr,
    /// Its IP as an `X-Forwarded-For` value, formatted once per connection.
    forwarded_for: Option<HeaderValue>,
    /// Whether the connection waits for a request head (its header timeout).
    pub waiting: Arc<Waiting>,
}

impl Client {
    /// The client connected from `address` just now; `clock` times its waits for
    /// request heads.
    pub fn new(address: SocketAddr, clock: Clock) -> Self {
        let forwarded_for = HeaderValue::from_str(&address.ip().to_string()).ok();
        Self {
            address,
            forwarded_for,
            waiting: Arc::new(Waiting::new(clock)),
        }
    }
}

/// A response, and why the proxy made it itself (`None`: relayed from the upstream).
type Answer = (Reply, Option<Reason>);

/// Answers one client request. `raw_heads`: the client's connection writes an
/// upstream's header lines through as received (see `runtime::RawHead`), so a relayed
/// response may carry them instead of a full header map.
///
/// Not an `async fn`: the request is split here and its head kept once, in the returned
/// future, which everything below borrows. An `async fn` keeps each argument it is given
/// beside whatever it moves out of it, and every byte of this future is copied when
/// hyper boxes it and touched on every request.
pub fn handle(
    runtime: Arc<Runtime>,
    request: Request<ClientBody>,
    client: Arc<Client>,
    raw_heads: bool,
) -> impl Future<Output = Result<Reply, Infallible>> + Send + 'static {
    let started = runtime.clock.now();
    client.waiting.busy();
    let (head, body) = request.into_parts();
    let exchange = Exchange {
        runtime,
        client,
        head,
        started,
        in_flight: InFlight::enter(),
        raw_heads,
    };
    async move { Ok(exchange.answer(body).await) }
}

/// A client's request while the proxy answers it: its head and where it came from.
struct Exchange {
    runtime: Arc<Runtime>,
    client: Arc<Client>,
    head: Parts,
    /// When the request arrived, by the runtime's clock.
    started: Nanos,
    /// Counts the request among its worker's requests in flight.
    in_flight: InFlight,
    /// Upstream heads may be relayed raw (see [`handle`]).
    raw_heads: bool,
}

impl Exchange {
    async fn answer(&self, body: ClientBody) -> Reply {
        let runtime = &*self.runtime;
        let Some(route) = runtime.route(self.head.uri.path()) else {
            let (reply, reason) = self.explained(Reason::NoRoute);
            runtime
                .unrouted
                .record(reply.response.status(), reason, self.took());
            self.client.waiting.idle();
            return reply;
        };
        let class = route.criticality(&self.head.headers);
        let (reply, reason) = palisade::criticality::scope(class, self.forward(route, body)).await;
        route
            .requests
            .record(reply.response.status(), reason, self.took());
        if reason.is_some() {
            // The proxy's own answer is written whole at once; a relayed one marks the
            // connection idle when its body ends (see `relay`).
            self.client.waiting.idle();
        }
        reply
    }

    /// Time since the request arrived.
    fn took(&self) -> Duration {
        self.runtime.clock.elapsed_since(self.started)
    }

    /// Forwards the request on `route` through every policy of its upstream.
    async fn forward(&self, route: &Route, body: ClientBody) -> Answer {
        let upstream = &route.upstream;
        let max_body = self.runtime.config.listener.max_body_bytes;
        // The declared length, as hyper framed the body (no header lookup): exact for a
        // `Content-Length` body or none, unknown for a chunked one (bounded as it is read).
        let declared = http_body::Body::size_hint(&body).exact();
        if declared.is_some_and(|len| len > max_body) {
            return self.explained(Reason::BodyTooLarge);
        }
        let budget = match palisade_http::deadline::inbound(&self.head.headers) {
            Ok(budget) => budget,
            Err(error) => {
                tracing::debug!(%error, "unreadable deadline header");
                return self.explained(Reason::BadDeadline);
            }
        };
        if budget.is_some_and(|b| b.is_zero()) {
            return self.refuse(route, Reason::DeadlineExceeded, None);
        }
        let deadline = budget.map(|b| palisade::clock::instant_after(Instant::now(), b));
        match route.inject() {
            Injected::Abort(status) => {
                let status =
                    StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
                return (
                    respond::explained_reply(Reason::FaultInjected, status, None, self.raw_heads),
                    Some(Reason::FaultInjected),
                );
            }
            Injected::Delay(delay) => {
                let until = palisade::clock::instant_after(Instant::now(), delay);
                if deadline.is_some_and(|d| d <= until) {
                    tokio::time::sleep_until(deadline.unwrap_or(until)).await;
                    return self.refuse(route, Reason::DeadlineExceeded, None);
                }
                tokio::time::sleep_until(until).await;
            }
            Injected::None => {}
        }
        if let Some(throttle) = &upstream.throttle {
            if !throttle.admit() {
                return self.refuse(route, Reason::Throttled, None);
            }
        }
        if let Some(limiter) = &upstream.rate_limit {
            if let Err(after) = limiter.check() {
                return self.refuse(route, Reason::RateLimited, Some(after));
            }
        }
        let _shed_slot = match &upstream.shedder {
            Some(shedder) => match shedder
                .acquire::<TransportError>(palisade::criticality::current())
                .await
            {
                Ok(permit) => Some(permit),
                Err(_) => return self.refuse(route, Reason::Shed, None),
            },
            None => None,
        };
        let limit_permit = match &upstream.adaptive {
            Some(limiter) => match limiter.acquire::<TransportError>().await {
                Ok(permit) => Some(permit),
                Err(_) => {
                    return self.refuse(route, Reason::BulkheadFull, None);
                }
            },
            None => None,
        };
        let slot = match &upstream.bulkhead {
            Some(bulkhead) => match bulkhead.acquire_owned::<TransportError>().await {
                Ok(permit) => Some(permit),
                Err(_) => {
                    return self.refuse(route, Reason::BulkheadFull, None);
                }
            },
            None => None,
        };
        let body = match read_body(body, max_body, upstream.replay_body_bytes).await {
            Ok(body) => body,
            Err(response) => return response,
        };
        // The key matters only for a method not replayed anyway.
        let keyed = !upstream.methods.contains(&self.head.method)
            && self.head.headers.contains_key(IDEMPOTENCY_KEY);
        let replay = Replay::of(
            &self.head.method,
            keyed,
            matches!(body, Outgoing::Buffered(_)),
            &upstream.methods,
        );
        let classifier = HttpClassifier::new(upstream.retry_on.clone(), replay);
        // The first attempt's endpoint is picked before the retries and timeouts are set
        // up around it: when no endpoint takes the request (every breaker open, none
        // healthy), it is refused at once, as it would be after them (a refusal is never
        // retried), without their cost. With an upstream-wide breaker, that decides first.
        let (first, refused) = match upstream.breaker {
            None => match upstream.balancer.pick(0) {
                Ok(picked) => (Some(picked), None),
                Err(refused) => (None, Some(refused)),
            },
            Some(_) => (None, None),
        };
        // Sent upstream after the rest of the event loop's ready requests are read, when
        // others are in flight (see `turn`): here, before the policies below are first
        // polled, the yield costs least. HTTP/2 writes are batched by their connection.
        let writes_http1 = first
            .as_ref()
            .is_none_or(|picked| picked.endpoint.pool.is_http1());
        if refused.is_none() && writes_http1 {
            self.in_flight.before_upstream_write().await;
        }
        let attempt = Attempt {
            upstream,
            parts: &self.head,
            body,
            client: &self.client,
            first: Mutex::new(first),
            replayable: replay == Replay::Safe,
            raw_heads: self.raw_heads,
            tried: AtomicU64::new(0),
            attempts: AtomicU32::new(0),
        };
        let result = match refused {
            Some(refused) => Err(refused),
            None => {
                let hedged = replay == Replay::Safe;
                // Each attempt's future is boxed: it is most of a request's state (the
                // endpoint breaker, the per-try timeout and the upstream exchange, nested),
                // and boxed once here it is not also copied with, and does not enlarge,
                // every future above it.
                let run = upstream.total.execute(&classifier, || {
                    upstream.retry.execute(&classifier, || {
                        Box::pin(attempt.hedged(&classifier, hedged))
                    })
                });
                match deadline {
                    Some(at) => palisade::deadline::scope(at, run).await,
                    None => run.await,
                }
            }
        };
        let outcome = classify_result(&classifier, &result);
        if let Some(permit) = limit_permit {
            permit.record(&outcome);
        }
        if let Some(throttle) = &upstream.throttle {
            if palisade::policy::throttle::backend_accepted(&classifier, &result) {
                throttle.accepted();
            }
        }
        match result {
            Ok(response) => {
                let failed = <HttpClassifier as Classify<
                    Box<Response<PooledBody>>,
                    TransportError,
                >>::classify_ok(&classifier, &response)
                .is_failure();
                match (&route.fallback, failed) {
                    (Some(fallback), true) => (
                        respond::fallback_reply(fallback, Reason::RetriesExhausted, self.raw_heads),
                        Some(Reason::RetriesExhausted),
                    ),
                    _ => {
                        let idle = IdleOnDrop(self.client.waiting.clone());
                        let mut reply = relay(*response, (slot, idle));
                        let attempts = attempt.attempts.load(Ordering::Relaxed);
                        reply
                            .response
                            .headers_mut()
                            .insert(ATTEMPTS, attempts_value(attempts));
                        (reply, None)
                    }
                }
            }
            Err(error) => {
                let (mut reason, after) = Reason::of(&error);
                if reason == Reason::DeadlineExceeded && budget.is_none() {
                    // Without a caller's deadline, the only deadline is the route's total timeout.
                    reason = Reason::Timeout;
                }
                tracing::debug!(%error, reason = reason.as_str(), "request failed");
                self.refuse(route, reason, after)
            }
        }
    }

    /// The proxy's own answer for `reason`, with its usual status.
    fn explained(&self, reason: Reason) -> Answer {
        (
            respond::explained_reply(reason, reason.status(), None, self.raw_heads),
            Some(reason),
        )
    }

    /// The refusal for `reason`, or the route's fallback if it has one.
    fn refuse(&self, route: &Route, reason: Reason, retry_after: Option<Duration>) -> Answer {
        let reply = match &route.fallback {
            Some(fallback) if reason != Reason::BadDeadline && reason != Reason::BodyTooLarge => {
                respond::fallback_reply(fallback, reason, self.raw_heads)
            }
            _ => respond::explained_reply(reason, reason.status(), retry_after, self.raw_heads),
        };
        (reply, Some(reason))
    }
}

/// The value of `x-palisade-attempts`.
fn attempts_value(attempts: u32) -> HeaderValue {
    match attempts {
        1 => HeaderValue::from_static("1"),
        2 => HeaderValue::from_static("2"),
        3 => HeaderValue::from_static("3"),
        n => HeaderValue::from(n),
    }
}

/// The request body, ready to send once or many times.
enum Outgoing {
    Buffered(bytes::Bytes),
    Streaming(Mutex<Option<Prefixed<Limited<ClientBody>>>>),
}

async fn read_body(
    body: ClientBody,
    max_body: u64,
    replay_limit: usize,
) -> Result<Outgoing, Answer> {
    let limited = Limited::new(body, usize::try_from(max_body).unwrap_or(usize::MAX));
    match palisade_http::body::buffer(limited, replay_limit).await {
        Ok(RequestBody::Buffered(bytes)) => Ok(Outgoing::Buffered(bytes)),
        Ok(RequestBody::Streaming(prefixed)) => Ok(Outgoing::Streaming(Mutex::new(Some(prefixed)))),
        Err(error) if error.is::<http_body_util::LengthLimitError>() => Err((
            Reply::plain(respond::explained(
                Reason::BodyTooLarge,
                Reason::BodyTooLarge.status(),
                None,
            )),
            Some(Reason::BodyTooLarge),
        )),
        Err(error) => {
            tracing::debug!(%error, "client body failed");
            Err((
                Reply::plain(respond::explained(
                    Reason::UpstreamError,
                    StatusCode::BAD_REQUEST,
                    None,
                )),
                Some(Reason::UpstreamError),
            ))
        }
    }
}

/// One request's attempts.
struct Attempt<'a> {
    upstream: &'a Upstream,
    parts: &'a Parts,
    body: Outgoing,
    client: &'a Client,
    /// The first attempt's endpoint, picked in advance (see `Exchange::forward`).
    first: Mutex<Option<Picked>>,
    /// The request may be sent again (see `Replay`).
    replayable: bool,
    /// Upstream heads may be relayed raw (see [`handle`]).
    raw_heads: bool,
    /// Endpoints tried, a bit per index, so a retry goes elsewhere when it can.
    tried: AtomicU64,
    /// Attempts sent.
    attempts: AtomicU32,
}

/// An attempt's result. The response is boxed (see `Pool::send_http1`): every policy
/// above the attempt returns it, and boxed it moves as one word.
type Attempted = Result<Box<Response<PooledBody>>, Error<TransportError>>;

impl Attempt<'_> {
    /// One attempt, hedged when the upstream hedges and the request may be replayed.
    async fn hedged(&self, classifier: &HttpClassifier, replayable: bool) -> Attempted {
        match &self.upstream.hedge {
            // Boxed: hedging holds two attempts at once, and an unboxed hedge would make
            // every request's future (and every copy of it) that much larger.
            Some(hedge) if replayable => {
                Box::pin(palisade::policy::hedge::idempotent(
                    hedge.execute(classifier, || self.run(classifier)),
                ))
                .await
            }
            _ => self.run(classifier).await,
        }
    }

    async fn run(&self, classifier: &HttpClassifier) -> Attempted {
        match &self.upstream.breaker {
            Some(breaker) => breaker.execute(classifier, || self.once(classifier)).await,
            None => self.once(classifier).await,
        }
    }

    async fn once(&self, classifier: &HttpClassifier) -> Attempted {
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
        let result = match &self.upstream.adaptive_timeout {
            Some(timeout) => timeout.execute(classifier, || self.send(endpoint)).await,
            None => {
                self.upstream
                    .per_try
                    .execute(classifier, || self.send(endpoint))
                    .await
            }
        };
        let finished = balancer.clock().now();
        let took = Duration::from_nanos(finished.saturating_sub(started));
        picked.endpoint.observe(finished, took);
        if let Some(permit) = picked.permit.take() {
            permit.record(&classify_result(classifier, &result));
        }
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
                raw_response: self.raw_heads,
            };
            endpoint
                .pool
                .send_http1(&head, body, !self.replayable)
                .await
        } else {
            // Boxed: the general path (HTTP/2, or a head that cannot be written as it is)
            // is rare, and its future would otherwise size every attempt's.
            let request = self.upstream_request(endpoint, body)?;
            Box::pin(endpoint.pool.send(request)).await
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

fn transport(kind: TransportErrorKind, message: &str) -> Error<TransportError> {
    Error::Inner(TransportError {
        kind,
        message: message.to_owned(),
    })
}

/// The upstream's response, relayed: hop-by-hop headers stripped (its raw header lines,
/// if kept, go with it), `guard` (the bulkhead slot, the connection's idle mark) held
/// until the body is done.
fn relay<G: Send + 'static>(response: Response<PooledBody>, guard: G) -> Reply {
    let (mut parts, mut body) = response.into_parts();
    let head = body.take_raw();
    palisade_http::headers::strip_hop_by_hop(&mut parts.headers);
    Reply {
        response: Response::from_parts(parts, boxed(Guarded::new(body, guard))),
        head,
    }
}

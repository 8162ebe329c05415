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

use std::net::SocketAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use http::header::{CONTENT_LENGTH, HOST};
use http::request::Parts;
use http::{HeaderName, HeaderValue, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use palisade::outcome::{Classify, classify_result};
use palisade::{Error, Policy};
use palisade_http::body::{Prefixed, RequestBody};
use palisade_http::classify::{HttpClassifier, Replay, TransportError, TransportErrorKind};
use tokio::time::Instant;

use crate::body::{BoxError, Guarded, ProxyBody, boxed, full};
use crate::respond::{self, Reason};
use crate::runtime::{Injected, Route, Runtime, Upstream};

const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
/// `x-palisade-attempts`: how many attempts a relayed response took.
pub const ATTEMPTS: HeaderName = HeaderName::from_static("x-palisade-attempts");

/// Answers one client request.
pub async fn handle(
    runtime: &Runtime,
    request: Request<Incoming>,
    client: SocketAddr,
) -> Response<ProxyBody> {
    let started = Instant::now();
    let Some(route) = runtime.route(request.uri().path()) else {
        let response = respond::explained(Reason::NoRoute, Reason::NoRoute.status(), None);
        record("", "", &response, started);
        return response;
    };
    let max_body = runtime.config.listener.max_body_bytes;
    let class = route.criticality(request.headers());
    let response =
        palisade::criticality::scope(class, forward(route, request, client, max_body)).await;
    record(&route.path_prefix, &route.upstream.name, &response, started);
    response
}

fn record(route: &str, upstream: &str, response: &Response<ProxyBody>, started: Instant) {
    let reason = response
        .headers()
        .get(respond::REASON)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("upstream")
        .to_owned();
    metrics::counter!(
        "palisade_requests_total",
        "route" => route.to_owned(),
        "upstream" => upstream.to_owned(),
        "status" => response.status().as_str().to_owned(),
        "reason" => reason
    )
    .increment(1);
    metrics::histogram!(
        "palisade_request_duration_seconds",
        "route" => route.to_owned(),
        "upstream" => upstream.to_owned()
    )
    .record(started.elapsed().as_secs_f64());
}

/// The refusal for `reason`, or the route's fallback if it has one.
fn refuse(
    route: &Route,
    reason: Reason,
    status: StatusCode,
    retry_after: Option<Duration>,
) -> Response<ProxyBody> {
    match &route.fallback {
        Some(fallback) if reason != Reason::BadDeadline && reason != Reason::BodyTooLarge => {
            respond::fallback(fallback, reason)
        }
        _ => respond::explained(reason, status, retry_after),
    }
}

async fn forward(
    route: &Route,
    request: Request<Incoming>,
    client: SocketAddr,
    max_body: u64,
) -> Response<ProxyBody> {
    let upstream = &route.upstream;
    let declared = request
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > max_body) {
        return respond::explained(Reason::BodyTooLarge, Reason::BodyTooLarge.status(), None);
    }
    let budget = match palisade_http::deadline::inbound(request.headers()) {
        Ok(budget) => budget,
        Err(error) => {
            tracing::debug!(%error, "unreadable deadline header");
            return respond::explained(Reason::BadDeadline, Reason::BadDeadline.status(), None);
        }
    };
    if budget.is_some_and(|b| b.is_zero()) {
        return refuse(
            route,
            Reason::DeadlineExceeded,
            Reason::DeadlineExceeded.status(),
            None,
        );
    }
    let deadline = budget.map(|b| palisade::clock::instant_after(Instant::now(), b));
    match route.inject() {
        Injected::Abort(status) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
            return respond::explained(Reason::FaultInjected, status, None);
        }
        Injected::Delay(delay) => {
            let until = palisade::clock::instant_after(Instant::now(), delay);
            if deadline.is_some_and(|d| d <= until) {
                tokio::time::sleep_until(deadline.unwrap_or(until)).await;
                return refuse(
                    route,
                    Reason::DeadlineExceeded,
                    Reason::DeadlineExceeded.status(),
                    None,
                );
            }
            tokio::time::sleep_until(until).await;
        }
        Injected::None => {}
    }
    if let Some(throttle) = &upstream.throttle {
        if !throttle.admit() {
            return refuse(route, Reason::Throttled, Reason::Throttled.status(), None);
        }
    }
    if let Some(limiter) = &upstream.rate_limit {
        if let Err(after) = limiter.check() {
            return refuse(
                route,
                Reason::RateLimited,
                Reason::RateLimited.status(),
                Some(after),
            );
        }
    }
    let _shed_slot = match &upstream.shedder {
        Some(shedder) => match shedder
            .acquire::<TransportError>(palisade::criticality::current())
            .await
        {
            Ok(permit) => Some(permit),
            Err(_) => return refuse(route, Reason::Shed, Reason::Shed.status(), None),
        },
        None => None,
    };
    let limit_permit = match &upstream.adaptive {
        Some(limiter) => match limiter.acquire::<TransportError>().await {
            Ok(permit) => Some(permit),
            Err(_) => {
                return refuse(
                    route,
                    Reason::BulkheadFull,
                    Reason::BulkheadFull.status(),
                    None,
                );
            }
        },
        None => None,
    };
    let slot = match &upstream.bulkhead {
        Some(bulkhead) => match bulkhead.acquire_owned::<TransportError>().await {
            Ok(permit) => Some(permit),
            Err(_) => {
                return refuse(
                    route,
                    Reason::BulkheadFull,
                    Reason::BulkheadFull.status(),
                    None,
                );
            }
        },
        None => None,
    };
    let (parts, body) = request.into_parts();
    let body = match read_body(body, max_body, upstream.replay_body_bytes).await {
        Ok(body) => body,
        Err(response) => return response,
    };
    let replay = Replay::of(
        &parts.method,
        parts.headers.contains_key(IDEMPOTENCY_KEY),
        matches!(body, Outgoing::Buffered(_)),
        &upstream.methods,
    );
    let classifier = HttpClassifier::new(upstream.retry_on.clone(), replay);
    let attempt = Attempt {
        upstream,
        parts,
        body,
        client,
        tried: AtomicU64::new(0),
        attempts: AtomicU32::new(0),
    };
    let hedged = replay == Replay::Safe;
    let run = upstream.total.execute(&classifier, || {
        upstream
            .retry
            .execute(&classifier, || attempt.hedged(&classifier, hedged))
    });
    let result = match deadline {
        Some(at) => palisade::deadline::scope(at, run).await,
        None => run.await,
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
            let failed =
                <HttpClassifier as Classify<Response<Incoming>, TransportError>>::classify_ok(
                    &classifier,
                    &response,
                )
                .is_failure();
            match (&route.fallback, failed) {
                (Some(fallback), true) => respond::fallback(fallback, Reason::RetriesExhausted),
                _ => {
                    let mut response = relay(response, slot);
                    let attempts = attempt.attempts.load(Ordering::Relaxed);
                    response
                        .headers_mut()
                        .insert(ATTEMPTS, HeaderValue::from(attempts));
                    response
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
            refuse(route, reason, reason.status(), after)
        }
    }
}

/// The request body, ready to send once or many times.
enum Outgoing {
    Buffered(bytes::Bytes),
    Streaming(Mutex<Option<Prefixed<Limited<Incoming>>>>),
}

async fn read_body(
    body: Incoming,
    max_body: u64,
    replay_limit: usize,
) -> Result<Outgoing, Response<ProxyBody>> {
    let limited = Limited::new(body, usize::try_from(max_body).unwrap_or(usize::MAX));
    match palisade_http::body::buffer(limited, replay_limit).await {
        Ok(RequestBody::Buffered(bytes)) => Ok(Outgoing::Buffered(bytes)),
        Ok(RequestBody::Streaming(prefixed)) => Ok(Outgoing::Streaming(Mutex::new(Some(prefixed)))),
        Err(error) if error.is::<http_body_util::LengthLimitError>() => Err(respond::explained(
            Reason::BodyTooLarge,
            Reason::BodyTooLarge.status(),
            None,
        )),
        Err(error) => {
            tracing::debug!(%error, "client body failed");
            Err(respond::explained(
                Reason::UpstreamError,
                StatusCode::BAD_REQUEST,
                None,
            ))
        }
    }
}

/// One request's attempts.
struct Attempt<'a> {
    upstream: &'a Upstream,
    parts: Parts,
    body: Outgoing,
    client: SocketAddr,
    /// Endpoints tried, a bit per index, so a retry goes elsewhere when it can.
    tried: AtomicU64,
    /// Attempts sent.
    attempts: AtomicU32,
}

type Attempted = Result<Response<Incoming>, Error<TransportError>>;

impl Attempt<'_> {
    /// One attempt, hedged when the upstream hedges and the request may be replayed.
    async fn hedged(&self, classifier: &HttpClassifier, replayable: bool) -> Attempted {
        match &self.upstream.hedge {
            Some(hedge) if replayable => {
                palisade::policy::hedge::idempotent(
                    hedge.execute(classifier, || self.run(classifier)),
                )
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
        let picked = balancer.pick(self.tried.load(Ordering::Relaxed))?;
        self.attempts.fetch_add(1, Ordering::Relaxed);
        if picked.index < 64 {
            self.tried.fetch_or(1 << picked.index, Ordering::Relaxed);
        }
        let started = balancer.clock().now();
        let address = &picked.endpoint.address;
        let result = match &self.upstream.adaptive_timeout {
            Some(timeout) => timeout.execute(classifier, || self.send(address)).await,
            None => {
                self.upstream
                    .per_try
                    .execute(classifier, || self.send(address))
                    .await
            }
        };
        picked
            .endpoint
            .finish(balancer.clock(), balancer.clock().elapsed_since(started));
        if let Some(permit) = picked.permit {
            permit.record(&classify_result(classifier, &result));
        }
        result
    }

    async fn send(&self, address: &str) -> Attempted {
        let body = match &self.body {
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
        let request = self.upstream_request(address, body)?;
        self.upstream.client.request(request).await.map_err(|e| {
            let kind = if e.is_connect() {
                TransportErrorKind::ConnectFailure
            } else {
                TransportErrorKind::Reset
            };
            transport(kind, &e.to_string())
        })
    }

    fn upstream_request(
        &self,
        address: &str,
        body: ProxyBody,
    ) -> Result<Request<ProxyBody>, Error<TransportError>> {
        let path = self.parts.uri.path_and_query().map_or("/", |p| p.as_str());
        let uri: Uri = format!("http://{address}{path}")
            .parse()
            .map_err(|_| transport(TransportErrorKind::Other, "cannot form the upstream URI"))?;
        let mut request = Request::new(body);
        *request.method_mut() = self.parts.method.clone();
        *request.uri_mut() = uri;
        let headers = request.headers_mut();
        headers.clone_from(&self.parts.headers);
        palisade_http::headers::strip_hop_by_hop(headers);
        if !headers.contains_key(HOST) {
            if let Some(authority) = self.parts.uri.authority() {
                if let Ok(host) = HeaderValue::from_str(authority.as_str()) {
                    headers.insert(HOST, host);
                }
            }
        }
        let forwarded = match headers.get(&X_FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
            Some(chain) => format!("{chain}, {}", self.client.ip()),
            None => self.client.ip().to_string(),
        };
        if let Ok(value) = HeaderValue::from_str(&forwarded) {
            headers.insert(X_FORWARDED_FOR, value);
        }
        if let Some(remaining) = palisade::deadline::remaining() {
            let grpc = headers
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with("application/grpc"));
            palisade_http::deadline::outbound(headers, remaining, self.upstream.margin, grpc);
        }
        Ok(request)
    }
}

fn transport(kind: TransportErrorKind, message: &str) -> Error<TransportError> {
    Error::Inner(TransportError {
        kind,
        message: message.to_owned(),
    })
}

/// The upstream's response, relayed: hop-by-hop headers stripped, the bulkhead slot held
/// until the body is done.
fn relay<G: Send + 'static>(response: Response<Incoming>, slot: Option<G>) -> Response<ProxyBody> {
    let (mut parts, body) = response.into_parts();
    palisade_http::headers::strip_hop_by_hop(&mut parts.headers);
    let body = match slot {
        Some(slot) => boxed(Guarded::new(body, slot)),
        None => boxed(body),
    };
    Response::from_parts(parts, body)
}

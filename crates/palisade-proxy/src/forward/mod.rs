//! The request path: from a client's request to the upstream's answer, or an explained
//! refusal.
//!
//! ```text
//! head settled ─▶ route ─▶ deadline ─▶ the upstream's pipeline ─▶ upstream
//! ```
//!
//! The upstream's pipeline is its policies in their declared order (see
//! `runtime::pipeline`, which says why that order): route's faults, certain refusal,
//! throttle, rate limit, body read, shedding, adaptive limit, bulkhead, total timeout,
//! retry, hedge, upstream breaker, balancer (endpoint breakers, health), per-try timeout.
//! Every policy is the library's, run with the HTTP classifier of `palisade-http`.
//!
//! The steps up to the certain refusal need no waiting and are taken before the
//! request's future exists (see [`handle`]): a request they answer (no route, a spent
//! deadline, an injected abort, an open breaker) is answered there and then, without the
//! future, its allocation and its policies. The admission steps after them run in
//! `Exchange::admission`, in the list's order; the policies around each attempt in
//! `Calls::execute`; the balancer and per-try timeout in `Attempt::once`.

mod attempt;
pub(crate) mod call;
mod target;
mod tunnel;
mod turn;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use http::request::Parts;
use http::{HeaderName, HeaderValue, Request, Response, StatusCode};
use http_body_util::Limited;
use palisade::clock::{Clock, Nanos};
use palisade::outcome::{Classify, classify_result};
use palisade::policy::fault::FaultSlot;
use palisade_http::body::{Prefixed, RequestBody};
use palisade_http::classify::{HttpClassifier, Replay, TransportError};
use tokio::time::Instant;

use crate::body::{BodyIdle, ClientBody, Guarded, IdleTimeout, boxed};
use crate::body_fault::{BodyFault, FaultyBody};
use crate::h1::interim::EarlyHints;
use crate::respond::{self, Reason, Reply};
use crate::route::{Injected, Route};
use crate::runtime::Runtime;
use crate::serve::head_timeout::{IdleOnDrop, Waiting};
use crate::upstream::{Admission, Held, PooledBody, Upstream};
use attempt::Attempt;
use turn::InFlight;

const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
/// Headers the proxy may add to a request it forwards: `Host`, `X-Forwarded-For`,
/// `X-Request-Timeout` and `grpc-timeout`.
const ADDED_HEADERS: usize = 4;

/// The client at the other end of a connection, as every request on it forwards it.
pub struct Client {
    /// Its address.
    pub address: SocketAddr,
    /// The worker serving the connection: whose idle upstream connections its requests
    /// use (see `upstream::pool`).
    pub worker: usize,
    /// Its IP as an `X-Forwarded-For` value, formatted once per connection.
    forwarded_for: Option<HeaderValue>,
    /// Whether the connection waits for a request head (its header timeout).
    pub waiting: Arc<Waiting>,
    /// Interim answers to relay to it, when its connection writes them.
    pub(crate) early_hints: EarlyHints,
}

impl Client {
    /// The client connected from `address` just now, served by worker `worker`; `clock`
    /// times its waits for request heads.
    pub fn new(address: SocketAddr, worker: usize, clock: Clock) -> Self {
        let forwarded_for = HeaderValue::from_str(&address.ip().to_string()).ok();
        Self {
            address,
            worker,
            forwarded_for,
            waiting: Arc::new(Waiting::new(clock)),
            early_hints: EarlyHints::default(),
        }
    }
}

/// A response, and why the proxy made it itself (`None`: relayed from the upstream).
type Answer = (Reply, Option<Reason>);

/// The future of a request forwarded through the policies: its answer.
///
/// Boxed where it is made (in [`handle`]): it is most of a request's state, and boxed at
/// once it is written to the heap where it is built instead of being copied there (and
/// inline, it would size every idle connection's task as well).
pub type Forwarding = Pin<Box<dyn Future<Output = Reply> + Send + 'static>>;

/// How [`handle`] answers a request.
// The reply goes by value: boxed, it would cost the refusals this path exists to make
// cheap an allocation each.
#[allow(clippy::large_enum_variant)]
pub enum Handled {
    /// At once: the steps that need no waiting answered it (see the module's doc).
    Answered(Reply),
    /// Through the policies.
    Forwarded(Forwarding),
}

/// Answers one client request. Its answer may carry header lines to write as they are
/// (an upstream's, kept raw; the proxy's own, encoded once): see [`Reply`].
///
/// Not an `async fn`: the request is split here and its head kept once, in the
/// forwarding future, which everything below borrows. An `async fn` keeps each argument
/// it is given beside whatever it moves out of it, and every byte of that future is
/// touched on every request.
pub fn handle(runtime: Arc<Runtime>, request: Request<ClientBody>, client: Arc<Client>) -> Handled {
    let started = runtime.clock.now();
    client.waiting.busy();
    if !runtime.saga_routes.is_empty() && runtime.saga_route(request.uri().path()).is_some() {
        return Handled::Forwarded(Box::pin(saga_answer(runtime, request, client)));
    }
    let (mut head, body) = request.into_parts();
    let settled = target::settle(&mut head);
    // The client's side of a protocol switch, taken before the head is shared. Only a
    // server that can switch puts one in (hyper's HTTP/1, with upgrades): for other
    // requests this is one look at an empty extension map.
    let upgrade = head
        .extensions
        .remove::<hyper::upgrade::OnUpgrade>()
        .filter(|_| tunnel::is_upgrade(&head));
    let exchange = Exchange {
        runtime,
        client,
        head,
        started,
        in_flight: InFlight::enter(),
    };
    if let Err(reason) = settled {
        return Handled::Answered(exchange.malformed(reason));
    }
    match exchange.admit(&body) {
        Err(reply) => Handled::Answered(reply),
        Ok(mut admitted) => {
            admitted.upgrade = upgrade;
            Handled::Forwarded(Box::pin(
                async move { exchange.answer(admitted, body).await },
            ))
        }
    }
}

/// Answers a request on a saga route (see `crate::saga`).
async fn saga_answer(
    runtime: Arc<Runtime>,
    request: Request<ClientBody>,
    client: Arc<Client>,
) -> Reply {
    let (head, body) = request.into_parts();
    let reply = match runtime.saga_route(head.uri.path()) {
        Some(route) => {
            let listener = &runtime.config.listener;
            let asked = crate::saga::Asked {
                route,
                head,
                body,
                max_body: listener.max_body_bytes,
                body_timeout: listener.body_timeout,
            };
            crate::saga::answer(runtime.sagas.get().map(|s| &**s), asked).await
        }
        None => respond::explained_reply(Reason::NoRoute, Reason::NoRoute.status(), None),
    };
    client.waiting.idle();
    reply
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
}

/// A request the steps without waiting let through, and what they found.
struct Admitted {
    /// Its route's position in the runtime's routes.
    route: usize,
    /// The end of the caller's budget (deadline headers), if it sent one.
    deadline: Option<Instant>,
    /// The fault injected into it, if any: a delay to wait first, or a fault of its
    /// response body, each with its place among the faults in progress (an abort is
    /// answered at once). Boxed: a request carries it through its whole exchange, and a
    /// pointer keeps that state small for the requests without one.
    fault: Option<Box<Injected>>,
    /// For a request to switch protocols: the client's side of the switch.
    upgrade: Option<hyper::upgrade::OnUpgrade>,
}

// The answers go by value (see `Handled`).
#[allow(clippy::result_large_err)]
impl Exchange {
    /// The steps that need no waiting (see the module's doc): the request's answer if
    /// one of them gives it, recorded as every answer is; else what they found.
    fn admit(&self, body: &ClientBody) -> Result<Admitted, Reply> {
        let Some((position, route)) = self.runtime.route_with_position(self.head.uri.path()) else {
            return Err(self.unrouted());
        };
        self.checks(position, route, body)
            .map_err(|answer| self.answered(route, answer))
    }

    /// The answer to a request refused before routing (see `target`), recorded on its
    /// route if one would take it.
    fn malformed(&self, reason: Reason) -> Reply {
        let answer = self.explained(reason);
        match self.runtime.route_with_position(self.head.uri.path()) {
            Some((_, route)) => self.answered(route, answer),
            None => {
                let (reply, reason) = answer;
                self.runtime
                    .unrouted
                    .record(reply.response.status(), reason, self.took());
                self.client.waiting.idle();
                reply
            }
        }
    }

    /// The answer to a request no route takes (404), recorded.
    fn unrouted(&self) -> Reply {
        let (reply, reason) = self.explained(Reason::NoRoute);
        self.runtime
            .unrouted
            .record(reply.response.status(), reason, self.took());
        self.client.waiting.idle();
        reply
    }

    /// Body size, deadline, fault injection, and the upstream's certain refusal.
    fn checks(
        &self,
        position: usize,
        route: &Route,
        body: &ClientBody,
    ) -> Result<Admitted, Answer> {
        let max_body = self.runtime.config.listener.max_body_bytes;
        // The declared length, as hyper framed the body (no header lookup): exact for a
        // `Content-Length` body or none, unknown for a chunked one (bounded as it is read).
        let declared = http_body::Body::size_hint(body).exact();
        if declared.is_some_and(|len| len > max_body) {
            return Err(self.explained(Reason::BodyTooLarge));
        }
        let budget = match palisade_http::deadline::inbound(&self.head.headers) {
            Ok(budget) => budget,
            Err(error) => {
                tracing::debug!(%error, "unreadable deadline header");
                return Err(self.explained(Reason::BadDeadline));
            }
        };
        if budget.is_some_and(|b| b.is_zero()) {
            return Err(self.refuse(route, Reason::DeadlineExceeded, None));
        }
        let deadline = budget.map(|b| palisade::clock::instant_after(Instant::now(), b));
        let fault = match route.inject() {
            Injected::Abort(status) => {
                let status =
                    StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
                return Err((
                    respond::explained_reply(Reason::FaultInjected, status, None),
                    Some(Reason::FaultInjected),
                ));
            }
            // The refusal is asked after the delay, when it is over.
            delay @ Injected::Delay(..) => Some(Box::new(delay)),
            Injected::None => {
                self.refusal(route)?;
                None
            }
            body @ Injected::Body(..) => {
                self.refusal(route)?;
                Some(Box::new(body))
            }
        };
        Ok(Admitted {
            route: position,
            deadline,
            fault,
            upgrade: None,
        })
    }

    /// The upstream's refusal, when it is certain now (see `Upstream::refusal`).
    fn refusal(&self, route: &Route) -> Result<(), Answer> {
        match route.upstream.refusal() {
            None => Ok(()),
            Some(error) => {
                let (reason, after) = Reason::of(&error);
                Err(self.refuse(route, reason, after))
            }
        }
    }

    /// Forwards an admitted request; its answer, recorded.
    async fn answer(&self, admitted: Admitted, body: ClientBody) -> Reply {
        let Some(route) = self.runtime.routed(admitted.route) else {
            return self.unrouted(); // not reached: the position came from this runtime
        };
        let class = route.criticality(&self.head.headers);
        let answer = palisade::criticality::scope(class, self.forward(route, admitted, body)).await;
        if answer.1 == Some(Reason::Shed) {
            route.requests.tally().shed(class);
        }
        self.answered(route, answer)
    }

    /// Records the answer on its route; the proxy's own answer is written whole at
    /// once, so the connection is idle again (a relayed one marks it when its body ends,
    /// see `relay`).
    fn answered(&self, route: &Route, (reply, reason): Answer) -> Reply {
        route
            .requests
            .record(reply.response.status(), reason, self.took());
        if reason.is_some() {
            self.client.waiting.idle();
        }
        reply
    }

    /// Time since the request arrived.
    fn took(&self) -> Duration {
        self.runtime.clock.elapsed_since(self.started)
    }

    /// Forwards the request on `route` through every policy of its upstream.
    async fn forward(&self, route: &Route, admitted: Admitted, body: ClientBody) -> Answer {
        let upstream = &route.upstream;
        let Admitted {
            deadline,
            fault,
            upgrade,
            ..
        } = admitted;
        let mut body_fault = None;
        if let Some(fault) = fault {
            match *fault {
                Injected::Delay(delay, slot) => {
                    let until = palisade::clock::instant_after(Instant::now(), delay);
                    if deadline.is_some_and(|d| d <= until) {
                        tokio::time::sleep_until(deadline.unwrap_or(until)).await;
                        return self.refuse(route, Reason::DeadlineExceeded, None);
                    }
                    tokio::time::sleep_until(until).await;
                    drop(slot);
                    if let Err(answer) = self.refusal(route) {
                        return answer;
                    }
                }
                Injected::Body(fault, slot) => body_fault = Some((fault, slot)),
                Injected::None | Injected::Abort(_) => {}
            }
        }
        let mut held = Held::default();
        let body = match self.admission(route, &mut held, body, upgrade).await {
            Ok(body) => body,
            Err(answer) => return answer,
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
        let (first, refused) = match upstream.pipeline.breaker() {
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
            tried: AtomicU64::new(0),
            attempts: AtomicU32::new(0),
            last_took: AtomicU64::new(0),
        };
        let result = match refused {
            Some(refused) => Err(refused),
            None => {
                // Each attempt's future is boxed: it is most of a request's state (the
                // endpoint breaker, the per-try timeout and the upstream exchange, nested),
                // and boxed once here it is not also copied with, and does not enlarge,
                // every future above it.
                let calls = &upstream.pipeline.calls;
                let run = async {
                    let attempt = || Box::pin(attempt.once(&classifier));
                    // A hedge sends a second attempt only of a request that may be
                    // repeated: one marked idempotent.
                    if replay == Replay::Safe && upstream.pipeline.hedge().is_some() {
                        palisade::policy::hedge::idempotent(calls.execute(&classifier, attempt))
                            .await
                    } else {
                        calls.execute(&classifier, attempt).await
                    }
                };
                match deadline {
                    Some(at) => palisade::deadline::scope(at, run).await,
                    None => run.await,
                }
            }
        };
        let outcome = classify_result(&classifier, &result);
        let settled = (&outcome, attempt.last_round_trip());
        held.settle(&upstream.pipeline, &classifier, &result, settled);
        match result {
            Ok(response) => {
                let failed = <HttpClassifier as Classify<
                    Box<Response<PooledBody>>,
                    TransportError,
                >>::classify_ok(&classifier, &response)
                .is_failure();
                match (&route.fallback, failed) {
                    (Some(fallback), true) => (
                        respond::fallback_reply(fallback, Reason::RetriesExhausted),
                        Some(Reason::RetriesExhausted),
                    ),
                    _ => {
                        let idle = IdleOnDrop(self.client.waiting.clone());
                        let guard = (held.slot, idle);
                        let mut reply = relay(*response, upstream.body_idle, guard, body_fault);
                        let attempts = attempt.attempts.load(Ordering::Relaxed);
                        reply
                            .response
                            .headers_mut()
                            .insert(respond::ATTEMPTS, respond::attempts_value(attempts));
                        (reply, None)
                    }
                }
            }
            Err(error) => {
                // The route's total timeout reports its own expiry as a timeout, also when
                // the per-try timeout inside it noticed first: `DeadlineExceeded` is the
                // caller's deadline.
                let (reason, after) = Reason::of(&error);
                tracing::debug!(%error, reason = reason.as_str(), "request failed");
                self.refuse(route, reason, after)
            }
        }
    }

    /// Runs the upstream's admission steps in their declared order (see `Pipeline`),
    /// keeping in `held` what they took; the request's body, read where the order says.
    /// `Err`: the request was answered here — refused by a step, or, for a request
    /// switching protocols, through its tunnel.
    async fn admission<'u>(
        &self,
        route: &'u Route,
        held: &mut Held<'u>,
        body: ClientBody,
        mut upgrade: Option<hyper::upgrade::OnUpgrade>,
    ) -> Result<Outgoing, Answer> {
        let mut unread = Some(body);
        let mut outgoing = None;
        for step in &route.upstream.pipeline.admission {
            if let Admission::ReadBody = step {
                if let Some(client) = upgrade.take() {
                    return Err(self.tunnel(route, client).await);
                }
                if let Some(body) = unread.take() {
                    outgoing = Some(self.read(&route.upstream, body).await?);
                }
            } else if let Err(refused) = step.admit(held).await {
                return Err(self.refuse(route, refused.reason, refused.retry_after));
            }
        }
        match (outgoing, unread) {
            (Some(outgoing), _) => Ok(outgoing),
            (None, Some(body)) => self.read(&route.upstream, body).await,
            // Not reached: the body is taken only where it is read.
            (None, None) => Ok(Outgoing::Buffered(bytes::Bytes::new())),
        }
    }

    /// Reads the request body for replay (see [`read_body`]), by the listener's limits.
    async fn read(&self, upstream: &Upstream, body: ClientBody) -> Result<Outgoing, Answer> {
        let listener = &self.runtime.config.listener;
        read_body(
            body,
            listener.max_body_bytes,
            upstream.replay_body_bytes,
            listener.body_timeout,
        )
        .await
    }

    /// Opens a tunnel for a request to switch protocols (see `tunnel`).
    async fn tunnel(&self, route: &Route, upgrade: hyper::upgrade::OnUpgrade) -> Answer {
        let opened = tunnel::open(
            route,
            &self.head,
            upgrade,
            self.client.forwarded_for.as_ref(),
        )
        .await;
        match opened {
            Ok(reply) => {
                // Its answer has no body to wait for: the connection is idle (or, after a
                // 101, no longer the server's).
                self.client.waiting.idle();
                (reply, None)
            }
            Err(tunnel::Failed::Refused(reason, after)) => self.refuse(route, reason, after),
            Err(tunnel::Failed::Timeout) => self.refuse(route, Reason::Timeout, None),
            Err(error @ tunnel::Failed::Upstream(_)) => {
                tracing::debug!(%error, "upgrade failed");
                self.refuse(route, Reason::UpstreamError, None)
            }
        }
    }

    /// The proxy's own answer for `reason`, with its usual status.
    fn explained(&self, reason: Reason) -> Answer {
        (
            respond::explained_reply(reason, reason.status(), None),
            Some(reason),
        )
    }

    /// The refusal for `reason`, or the route's fallback if it has one.
    fn refuse(&self, route: &Route, reason: Reason, retry_after: Option<Duration>) -> Answer {
        let reply = match &route.fallback {
            Some(fallback) if !reason.is_clients() => respond::fallback_reply(fallback, reason),
            _ => respond::explained_reply(reason, reason.status(), retry_after),
        };
        (reply, Some(reason))
    }
}

/// The request body, ready to send once or many times.
enum Outgoing {
    Buffered(bytes::Bytes),
    Streaming(Mutex<Option<Prefixed<Limited<IdleTimeout<ClientBody>>>>>),
}

/// Reads `body` for replay, up to `replay_limit` bytes (a longer one streams), failing
/// past `max_body` bytes or after `idle` without a piece.
async fn read_body(
    body: ClientBody,
    max_body: u64,
    replay_limit: usize,
    idle: Duration,
) -> Result<Outgoing, Answer> {
    let body = IdleTimeout::new(body, idle);
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
        Err(error) if error.is::<BodyIdle>() => Err((
            Reply::plain(respond::explained(
                Reason::BodyTimeout,
                Reason::BodyTimeout.status(),
                None,
            )),
            Some(Reason::BodyTimeout),
        )),
        Err(error) => {
            // The client's body broke its framing or its connection: the client's fault.
            tracing::debug!(%error, "client body failed");
            Err((
                Reply::plain(respond::explained(
                    Reason::BadRequest,
                    Reason::BadRequest.status(),
                    None,
                )),
                Some(Reason::BadRequest),
            ))
        }
    }
}

/// The upstream's response, relayed: hop-by-hop headers stripped (its raw header lines,
/// if kept, go with it), `guard` (the bulkhead slot, the connection's idle mark) held
/// until the body is done; the body slowed or cut if a body fault was injected (its head
/// unchanged: see `body_fault`).
fn relay<G: Send + 'static>(
    response: Response<PooledBody>,
    idle: Duration,
    guard: G,
    fault: Option<(BodyFault, FaultSlot)>,
) -> Reply {
    let (mut parts, mut body) = response.into_parts();
    let head = body.take_raw();
    palisade_http::headers::strip_hop_by_hop(&mut parts.headers);
    let body = boxed(Guarded::new(IdleTimeout::new(body, idle), guard));
    // The fault wraps the boxed body: the relayed body's type stays the one type of the
    // path without a fault, whose code is then the same as if body faults did not exist.
    let body = match fault {
        None => body,
        Some((fault, slot)) => boxed(FaultyBody::new(body, fault, slot)),
    };
    Reply {
        response: Response::from_parts(parts, body),
        head,
    }
}

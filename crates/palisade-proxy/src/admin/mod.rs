//! The admin port: health, metrics, state and controls.
//!
//! | method and path | answer |
//! |---|---|
//! | `GET /health/live` | 200 while the process serves |
//! | `GET /health/ready` | 200 when every upstream has an available endpoint, else 503 with the reasons |
//! | `GET /health/deep` | every endpoint's checks and breakers (cached for 1 s) |
//! | `GET /metrics` | Prometheus text (with sagas: the parked ones counted from the store first) |
//! | `GET /admin/state` | JSON of every upstream, endpoint, breaker, bulkhead, limiter and route |
//! | `POST /admin/upstream/{name}/circuit` | `{"state": "open" \| "closed" \| "auto"}` forces every breaker of the upstream |
//! | `GET /dashboard…`, `POST /dashboard/action` | the live dashboard (see `dashboard`) |
//! | `POST /admin/route/{n}/fault` | a `[route.fault]` table as JSON replaces the route's fault injection; with `?lease=10s`, only for that long (the config's fault is back when it runs out; posting again renews it) |
//!
//! POST endpoints need `Authorization: Bearer <token>` when `admin.token` is set (and it
//! must be set when the admin address is not loopback).
//!
//! Each connection's socket send buffer is fixed at 64 KiB (the kernel's own sizing grows
//! it to megabytes for a client that stops reading).
//!
//! The port's connections are bounded as the proxy port's are, by their own keys: a
//! connection with no request in flight for `admin.header_timeout` (from its opening, or
//! since its last response ended) is told to close (HTTP/2: GOAWAY) and dropped after
//! another such wait; an HTTP/1 request head must be whole within that time too; at
//! most `admin.max_connections` are open at once, and one more is closed as soon as it
//! is accepted. Its idle clients would otherwise spend the file descriptors the proxy
//! port needs.

mod dashboard;
mod state;

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use palisade::clock::Clock;
use serde::Deserialize;
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::body::{ProxyBody, full};
use crate::config::{self, FaultSection};
use crate::dashboard::{Dashboard, Hangup};
use crate::route::{MAX_LEASE, MIN_LEASE};
use crate::runtime::Runtime;
use crate::serve::cap::Cap;
use crate::serve::drain::Hyper;
use crate::serve::head_timeout::{self, Counted, Streams};

/// The admin service's state.
pub struct Admin {
    runtime: Arc<ArcSwap<Runtime>>,
    token: Option<String>,
    deep: Mutex<Option<(Instant, Bytes)>>,
    dashboard: Arc<Dashboard>,
}

const DEEP_CACHE: Duration = Duration::from_secs(1);
/// Each admin connection's socket send buffer, bytes (the kernel doubles it).
const SEND_BUFFER: usize = 64 * 1024;
const MAX_BODY: usize = 64 * 1024;

impl Admin {
    /// An admin service over `runtime`, serving `dashboard`.
    pub fn new(
        runtime: Arc<ArcSwap<Runtime>>,
        token: Option<String>,
        dashboard: Arc<Dashboard>,
    ) -> Self {
        Self {
            runtime,
            token,
            deep: Mutex::new(None),
            dashboard,
        }
    }

    /// Answers one admin request.
    pub async fn handle(&self, request: Request<Incoming>) -> Response<ProxyBody> {
        let method = request.method().clone();
        let path = request.uri().path().to_owned();
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        match (&method, segments.as_slice()) {
            (&Method::GET, ["health", "live"]) => {
                json(StatusCode::OK, &serde_json::json!({"status": "live"}))
            }
            (&Method::GET, ["health", "ready"]) => self.ready(),
            (&Method::GET, ["health", "deep"]) => self.deep(),
            (&Method::GET, ["metrics"]) => {
                let sagas = self.runtime.load().sagas.get().cloned();
                if let Some(sagas) = sagas {
                    crate::saga::gauge::refresh(&sagas).await;
                }
                text(
                    StatusCode::OK,
                    crate::telemetry::render_metrics(),
                    "text/plain; version=0.0.4",
                )
            }
            (&Method::GET, ["admin", "state"]) => {
                json(StatusCode::OK, &state::of(&self.runtime.load()))
            }
            (&Method::POST, ["admin", "upstream", name, "circuit"]) => {
                let name = (*name).to_owned();
                self.authorized(request, |admin, body| admin.force_circuit(&name, body))
                    .await
            }
            (&Method::POST, ["admin", "route", index, "fault"]) => match index.parse::<usize>() {
                Ok(index) => {
                    let query = request.uri().query().map(str::to_owned);
                    self.authorized(request, |admin, body| {
                        admin.set_fault(index, query.as_deref(), body)
                    })
                    .await
                }
                Err(_) => error(StatusCode::NOT_FOUND, "route index must be a number"),
            },
            (&Method::GET, ["admin", "sagas", rest @ ..]) => {
                let query = request.uri().query().map(str::to_owned);
                let runtime = self.runtime.load();
                let (status, body) = crate::saga::admin(
                    runtime.sagas.get().map(|s| &**s),
                    &method,
                    rest,
                    query.as_deref(),
                )
                .await;
                json(status, &body)
            }
            (&Method::POST, ["admin", "sagas", rest @ ..]) => {
                if let Some(token) = &self.token {
                    if !bearer_matches(request.headers().get(AUTHORIZATION), token) {
                        return error(StatusCode::UNAUTHORIZED, "missing or wrong bearer token");
                    }
                }
                let runtime = self.runtime.load();
                let (status, body) =
                    crate::saga::admin(runtime.sagas.get().map(|s| &**s), &method, rest, None)
                        .await;
                json(status, &body)
            }
            (_, ["dashboard", rest @ ..]) => {
                let rest: Vec<String> = rest.iter().map(|s| (*s).to_owned()).collect();
                self.dashboard(request, &rest).await
            }
            (_, ["health", ..] | ["metrics"] | ["admin", ..]) => {
                error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
            }
            _ => error(StatusCode::NOT_FOUND, "no such admin endpoint"),
        }
    }

    async fn authorized(
        &self,
        request: Request<Incoming>,
        act: impl FnOnce(&Self, &[u8]) -> Response<ProxyBody>,
    ) -> Response<ProxyBody> {
        if let Some(token) = &self.token {
            if !bearer_matches(request.headers().get(AUTHORIZATION), token) {
                return error(StatusCode::UNAUTHORIZED, "missing or wrong bearer token");
            }
        }
        match Limited::new(request.into_body(), MAX_BODY).collect().await {
            Ok(body) => act(self, &body.to_bytes()),
            Err(_) => error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "admin bodies are at most 64 KiB",
            ),
        }
    }

    fn ready(&self) -> Response<ProxyBody> {
        let runtime = self.runtime.load();
        let reasons: Vec<String> = runtime
            .upstreams
            .iter()
            .filter(|u| !u.has_available_endpoint())
            .map(|u| format!("upstream {} has no available endpoint", u.name))
            .collect();
        if reasons.is_empty() {
            json(StatusCode::OK, &serde_json::json!({"status": "ready"}))
        } else {
            json(
                StatusCode::SERVICE_UNAVAILABLE,
                &serde_json::json!({"status": "not ready", "reasons": reasons}),
            )
        }
    }

    fn deep(&self) -> Response<ProxyBody> {
        let mut cache = self.deep.lock().unwrap_or_else(|e| e.into_inner());
        let body = match &*cache {
            Some((at, body)) if at.elapsed() < DEEP_CACHE => body.clone(),
            _ => {
                let body = Bytes::from(
                    serde_json::to_vec_pretty(&state::deep(&self.runtime.load()))
                        .unwrap_or_default(),
                );
                *cache = Some((Instant::now(), body.clone()));
                body
            }
        };
        let status = if self
            .runtime
            .load()
            .upstreams
            .iter()
            .all(|u| u.has_available_endpoint())
        {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        };
        text(status, body, "application/json")
    }

    fn force_circuit(&self, name: &str, body: &[u8]) -> Response<ProxyBody> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Force {
            state: String,
        }
        if self.runtime.load().upstream(name).is_none() {
            return error(
                StatusCode::NOT_FOUND,
                &format!("no upstream named {name:?}"),
            );
        }
        let Ok(force) = serde_json::from_slice::<Force>(body) else {
            return error(
                StatusCode::BAD_REQUEST,
                r#"expected {"state": "open" | "closed" | "auto"}"#,
            );
        };
        self.force_breakers(name, &force.state)
    }

    /// Forces every breaker of upstream `name` `state` (`open`, `closed` or `auto`).
    fn force_breakers(&self, name: &str, state: &str) -> Response<ProxyBody> {
        let runtime = self.runtime.load();
        let Some(upstream) = runtime.upstream(name) else {
            return error(
                StatusCode::NOT_FOUND,
                &format!("no upstream named {name:?}"),
            );
        };
        let breakers = upstream.breakers();
        match state {
            "open" => breakers.iter().for_each(|b| b.force_open()),
            "closed" => breakers.iter().for_each(|b| b.force_closed()),
            "auto" => breakers.iter().for_each(|b| b.reset()),
            other => {
                return error(
                    StatusCode::BAD_REQUEST,
                    &format!("state {other:?} is not open, closed or auto"),
                );
            }
        }
        tracing::info!(upstream = name, state, "breakers forced by the admin API");
        let states: Vec<_> = breakers.iter().map(|b| b.snapshot()).collect();
        json(
            StatusCode::OK,
            &serde_json::json!({"upstream": name, "breakers": states}),
        )
    }

    fn set_fault(&self, index: usize, query: Option<&str>, body: &[u8]) -> Response<ProxyBody> {
        let lease = match lease_of(query) {
            Ok(lease) => lease,
            Err(why) => return error(StatusCode::BAD_REQUEST, &why),
        };
        match serde_json::from_slice(body) {
            Ok(fault) => self.apply_fault(index, lease, fault),
            Err(e) => error(StatusCode::BAD_REQUEST, &format!("not a fault table: {e}")),
        }
    }

    /// Replaces route `index`'s fault with `fault`, for `lease` if given.
    fn apply_fault(
        &self,
        index: usize,
        lease: Option<Duration>,
        fault: FaultSection,
    ) -> Response<ProxyBody> {
        let runtime = self.runtime.load();
        let Some(route) = runtime.route_at(index) else {
            return error(StatusCode::NOT_FOUND, &format!("no route {index}"));
        };
        let percents_ok = [fault.abort_percent, fault.delay_percent, fault.body_percent]
            .iter()
            .all(|p| (0.0..=100.0).contains(p));
        if !percents_ok || !crate::config::FINAL_STATUSES.contains(&fault.abort_status) {
            return error(
                StatusCode::BAD_REQUEST,
                "percents must be 0 to 100 and abort_status a final status, 200 to 599",
            );
        }
        if !config::BODY_RATES.contains(&fault.body_rate) {
            return error(
                StatusCode::BAD_REQUEST,
                &format!(
                    "body_rate {} is out of range: 1 to {} (bytes per second)",
                    fault.body_rate,
                    config::BODY_RATES.end()
                ),
            );
        }
        tracing::info!(
            route = index,
            ?fault,
            ?lease,
            "fault injection changed by the admin API"
        );
        let set = match lease {
            None => route.set_fault(fault),
            Some(lease) => {
                let until = tokio::time::Instant::now() + lease;
                route.lease_fault(fault, until, |generation| {
                    self.watch_lease(index, generation, until)
                })
            }
        };
        if let Err(refused) = set {
            return error(StatusCode::BAD_REQUEST, &refused.to_string());
        }
        let lease_ms = route.fault_lease_ms();
        json(
            StatusCode::OK,
            &serde_json::json!({"route": index, "fault": route.fault(), "fault_lease_ms": lease_ms}),
        )
    }

    /// The task that ends lease `generation` on route `index` at `until`: it finds the
    /// route in the runtime then in force, whose lease, after a reload, is another one.
    fn watch_lease(
        &self,
        index: usize,
        generation: u64,
        until: tokio::time::Instant,
    ) -> tokio::task::AbortHandle {
        let runtime = self.runtime.clone();
        tokio::spawn(async move {
            tokio::time::sleep_until(until).await;
            if let Some(route) = runtime.load().route_at(index) {
                route.end_lease(generation);
            }
        })
        .abort_handle()
    }
}

/// The `lease` of a fault's query string (`lease=10s`), within the bounds.
fn lease_of(query: Option<&str>) -> Result<Option<Duration>, String> {
    let mut lease = None;
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let Some(("lease", value)) = pair.split_once('=') else {
            return Err(format!("{pair:?}: allowed: lease=…"));
        };
        let duration = humantime::parse_duration(value)
            .map_err(|e| format!("lease {value:?} is not a duration ({e}), e.g. lease=10s"))?;
        if !(MIN_LEASE..=MAX_LEASE).contains(&duration) {
            return Err(format!("lease {value:?} is out of range: 100ms to 24h"));
        }
        lease = Some(duration);
    }
    Ok(lease)
}

/// Whether `header` is `Bearer <token>`: the scheme in any case (RFC 9110 §11.1), the
/// token compared in constant time, so that the time of a refusal says nothing about how
/// much of a guess was right.
fn bearer_matches(header: Option<&HeaderValue>, token: &str) -> bool {
    let Some(value) = header else { return false };
    let value = value.as_bytes();
    let Some(space) = value.iter().position(|b| *b == b' ') else {
        return false;
    };
    let (scheme, given) = value.split_at(space);
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return false;
    }
    let given = given.trim_ascii();
    bool::from(given.ct_eq(token.as_bytes()))
}

/// Serves the admin port until `stopped` says so, its connections bounded by `config`'s
/// `header_timeout` and `max_connections` (see the module's doc).
pub async fn serve(
    listener: TcpListener,
    admin: Arc<Admin>,
    config: config::Admin,
    mut stopped: watch::Receiver<bool>,
) {
    let limit = config.header_timeout;
    let cap = Cap::new(config.max_connections, "admin");
    let clock = Clock::tokio();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limit);
    loop {
        let (stream, client) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors, typically: retried, not spun on.
                    tracing::warn!(%error, "admin accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
            _ = stopped.changed() => return,
        };
        // Over the cap: dropped, which closes it.
        let Some(place) = cap.admit(client) else {
            continue;
        };
        // Without it the kernel grows a socket's buffer to megabytes for a client that
        // does not read (a dashboard viewer); with it, such a client is found out after
        // a few dozen kilobytes (see `dashboard::viewers`).
        let _ = socket2::SockRef::from(&stream).set_send_buffer_size(SEND_BUFFER);
        let hangup = Hangup::default();
        let service = Service {
            admin: admin.clone(),
            hangup: hangup.clone(),
        };
        let streams = Arc::new(Streams::new(clock.clone()));
        let connection = builder
            .serve_connection(TokioIo::new(stream), Counted::new(service, streams.clone()))
            .into_owned();
        tokio::spawn(async move {
            // A dashboard viewer that stopped reading is hung up on (dropped at once).
            tokio::select! {
                _ = head_timeout::serve_while_used(Hyper::new(connection), &streams, limit) => {}
                () = hangup.fired() => {}
            }
            drop(place);
        });
    }
}

/// The admin port as a hyper service, for one connection: each request carries the
/// connection's [`Hangup`].
#[derive(Clone)]
struct Service {
    admin: Arc<Admin>,
    hangup: Hangup,
}

impl hyper::service::Service<Request<Incoming>> for Service {
    type Response = Response<ProxyBody>;
    type Error = Infallible;
    // A named future type, boxed as `Send`: with `service_fn`'s closure future inside
    // it, rustc cannot prove the connection's task `Send` (a higher-ranked lifetime
    // error about the body's boxed error type).
    type Future = Pin<Box<dyn Future<Output = Result<Response<ProxyBody>, Infallible>> + Send>>;

    fn call(&self, mut request: Request<Incoming>) -> Self::Future {
        request.extensions_mut().insert(self.hangup.clone());
        let admin = self.admin.clone();
        Box::pin(async move { Ok(admin.handle(request).await) })
    }
}

fn text(
    status: StatusCode,
    body: impl Into<Bytes>,
    content_type: &'static str,
) -> Response<ProxyBody> {
    let mut response = Response::new(full(body.into()));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

fn json<T: serde::Serialize>(status: StatusCode, value: &T) -> Response<ProxyBody> {
    text(
        status,
        serde_json::to_vec_pretty(value).unwrap_or_default(),
        "application/json",
    )
}

fn error(status: StatusCode, message: &str) -> Response<ProxyBody> {
    json(status, &serde_json::json!({"error": message}))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(value: &str) -> HeaderValue {
        HeaderValue::from_str(value).unwrap()
    }

    #[test]
    fn the_bearer_scheme_is_matched_in_any_case() {
        for value in [
            "Bearer s3cret",
            "bearer s3cret",
            "BEARER s3cret",
            "Bearer  s3cret ",
        ] {
            assert!(bearer_matches(Some(&header(value)), "s3cret"), "{value}");
        }
    }

    #[test]
    fn anything_but_the_exact_token_is_refused() {
        for value in [
            "Bearer s3cre",
            "Bearer s3cret2",
            "Bearer S3CRET",
            "Basic s3cret",
            "Bearers3cret",
            "s3cret",
            "Bearer",
            "Bearer ",
        ] {
            assert!(!bearer_matches(Some(&header(value)), "s3cret"), "{value}");
        }
        assert!(!bearer_matches(None, "s3cret"));
    }
}

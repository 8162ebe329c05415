//! What the dashboard shows, read from the runtime: a second's point for the history,
//! and the state now.
//!
//! Rates, success shares and percentiles come from the routes' tallies of the last whole
//! second; an upstream's are the sum of its routes'. States (breakers, bulkheads,
//! limits, budgets, faults) are read as they are at the sample.

use std::collections::BTreeMap;

use palisade::criticality::Criticality;
use palisade::policy::circuit_breaker::CircuitBreaker;
use serde_json::{Value, json};

use crate::respond::Reason;
use crate::route::{Counts, Route};
use crate::runtime::Runtime;
use crate::upstream::Upstream;

/// Answers that a rate limit refused.
const RATE_LIMITED: [Reason; 4] = [
    Reason::RateLimited,
    Reason::FleetRateLimited,
    Reason::LocalShareRateLimited,
    Reason::FleetStoreDown,
];

/// One whole second's counts, by route path and by upstream name.
#[derive(Debug, Default)]
pub struct Second {
    /// Its length, in seconds (a tick may come late).
    pub seconds: f64,
    /// By route path: the route's upstream and its counts.
    pub routes: BTreeMap<String, (String, Counts)>,
}

// === impl Second ===

impl Second {
    /// Adds what each route of `runtime` counted since the last take.
    pub fn take(&mut self, runtime: &Runtime) {
        for route in &runtime.routes {
            let counts = route.requests.tally().take();
            let entry = self
                .routes
                .entry(route.path_prefix.clone())
                .or_insert_with(|| (route.upstream.name.to_string(), Counts::default()));
            entry.1.add(&counts);
        }
    }

    /// The counts of every route of `upstream`.
    pub fn upstream(&self, upstream: &str) -> Counts {
        let mut sum = Counts::default();
        for (name, counts) in self.routes.values() {
            if name == upstream {
                sum.add(counts);
            }
        }
        sum
    }

    /// The counts of route `path`.
    pub fn route(&self, path: &str) -> Counts {
        self.routes
            .get(path)
            .map(|(_, counts)| counts.clone())
            .unwrap_or_default()
    }
}

/// Rate, success share and percentiles of `counts` over `seconds`.
pub fn figures(counts: &Counts, seconds: f64) -> Value {
    let answers = counts.answers();
    #[allow(clippy::cast_precision_loss)] // counts of one second
    let (answered, errors) = (answers as f64, counts.server_errors as f64);
    let ms = |q: f64| counts.quantile(q).map(|d| round(d.as_secs_f64() * 1000.0));
    json!({
        "rps": round(answered / seconds.max(1e-3)),
        "ok": (answers > 0).then(|| round(100.0 * (answered - errors) / answered)),
        "p50": ms(0.5),
        "p99": ms(0.99),
    })
}

/// The history's point for the second that ended at `t_ms` (Unix time, ms).
pub fn point(t_ms: u64, runtime: &Runtime, second: &Second) -> Value {
    let routes: serde_json::Map<String, Value> = second
        .routes
        .iter()
        .map(|(path, (_, counts))| (path.clone(), figures(counts, second.seconds)))
        .collect();
    let upstreams: serde_json::Map<String, Value> = runtime
        .upstreams
        .iter()
        .map(|u| {
            let mut figures = figures(&second.upstream(&u.name), second.seconds);
            figures["breaker"] = u.pipeline.breaker().map_or(Value::Null, state_of);
            figures["endpoints"] = u
                .endpoints()
                .filter_map(|e| Some((e.address.clone(), state_of(e.breaker.as_ref()?))))
                .collect::<serde_json::Map<_, _>>()
                .into();
            (u.name.to_string(), figures)
        })
        .collect();
    json!({ "t": t_ms, "routes": routes, "upstreams": upstreams })
}

/// Every route and upstream as it is now, with the figures of `last` (the last whole
/// second), and `sagas` as last read.
pub fn now(t_ms: u64, runtime: &Runtime, last: &Second, sagas: &Value) -> Value {
    let mut routes: Vec<&Route> = runtime.routes.iter().collect();
    routes.sort_by_key(|r| r.index);
    let routes: Vec<Value> = routes.iter().map(|r| route(r, last)).collect();
    let upstreams: Vec<Value> = runtime
        .upstreams
        .iter()
        .map(|u| upstream(u, &runtime.routes, last))
        .collect();
    json!({ "t": t_ms, "routes": routes, "upstreams": upstreams, "sagas": sagas })
}

fn route(r: &Route, last: &Second) -> Value {
    let counts = last.route(&r.path_prefix);
    let fault = r.fault();
    let active = fault.abort_percent > 0.0 || fault.delay_percent > 0.0 || fault.body_percent > 0.0;
    let mut value = figures(&counts, last.seconds);
    value["index"] = json!(r.index);
    value["path"] = json!(r.path_prefix);
    value["upstream"] = json!(&*r.upstream.name);
    value["fault"] = if active { json!(fault) } else { Value::Null };
    value["fault_lease_ms"] = json!(r.fault_lease_ms());
    value["fallbacks"] = json!(if r.fallback.is_some() {
        fallbacks(&counts)
    } else {
        0
    });
    value
}

/// The upstream's adaptive limit, or the sum of its endpoints' when they have their own.
fn adaptive_limit(u: &Upstream) -> Value {
    if let Some(l) = u.pipeline.adaptive_limit() {
        return json!({"scope": "upstream", "limit": l.limit(), "in_flight": l.in_flight()});
    }
    let limited: Vec<_> = u
        .endpoints()
        .filter_map(|e| Some((e.concurrency_limit()?, e.in_flight())))
        .collect();
    if limited.is_empty() {
        return Value::Null;
    }
    json!({
        "scope": "endpoint",
        "limit": limited.iter().map(|(limit, _)| limit).sum::<usize>(),
        "in_flight": limited.iter().map(|(_, in_flight)| in_flight).sum::<usize>(),
    })
}

fn upstream(u: &Upstream, routes: &[Route], last: &Second) -> Value {
    let counts = last.upstream(&u.name);
    let pipeline = &u.pipeline;
    let endpoints: Vec<Value> = u
        .endpoints()
        .map(|e| {
            json!({
                "address": e.address,
                "role": e.role,
                "healthy": e.is_healthy(),
                "in_flight": e.in_flight(),
                "limit": e.concurrency_limit(),
                "breaker": e.breaker.as_ref().map(breaker),
            })
        })
        .collect();
    let rejected: u64 = RATE_LIMITED.iter().map(|r| counts.of(*r)).sum();
    let rate_limit = match (pipeline.rate_limit(), pipeline.fleet_rate_limit()) {
        (None, None) => Value::Null,
        (_, fleet) => json!({
            "scope": if fleet.is_some() { "fleet" } else { "local" },
            "counting": fleet.map(|l| l.counting().as_str()),
            "admitted": counts.answers().saturating_sub(rejected),
            "rejected": rejected,
        }),
    };
    let shed: serde_json::Map<String, Value> = Criticality::ALL
        .iter()
        .map(|c| (c.as_str().to_owned(), json!(counts.shed[c.rank()])))
        .collect();
    let fallbacks: u64 = routes
        .iter()
        .filter(|r| *r.upstream.name == *u.name && r.fallback.is_some())
        .map(|r| fallbacks(&last.route(&r.path_prefix)))
        .sum();
    let mut value = figures(&counts, last.seconds);
    value["name"] = json!(&*u.name);
    value["available"] = json!(u.has_available_endpoint());
    value["breaker"] = json!(pipeline.breaker().map(breaker));
    value["endpoints"] = json!(endpoints);
    value["bulkhead"] = json!(pipeline.bulkhead().map(|b| {
        let s = b.snapshot();
        json!({"active": s.active, "queued": s.queued, "max_concurrent": s.max_concurrent, "max_queue": s.max_queue})
    }));
    value["rate_limit"] = rate_limit;
    value["retry_budget"] = json!(pipeline.retry().budget().map(|b| b.available()));
    value["adaptive_limit"] = adaptive_limit(u);
    value["shed"] = if pipeline.shedder().is_some() {
        shed.into()
    } else {
        Value::Null
    };
    value["fallbacks"] = json!(fallbacks);
    value
}

/// A breaker's state, how long it has held, and its window's failure rate.
fn breaker(b: &CircuitBreaker) -> Value {
    let s = b.snapshot();
    json!({
        "state": s.state,
        "for_ms": u64::try_from(s.in_state_for.as_millis()).unwrap_or(u64::MAX),
        "failure_rate": round(s.failure_rate * 100.0),
        "retry_after_ms": s.retry_after.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
    })
}

/// A breaker's state alone, for the history.
fn state_of(b: &CircuitBreaker) -> Value {
    json!(b.state())
}

/// Answers a route's fallback gave: every refusal but the client's own mistakes and
/// injected aborts (which answer their configured status).
fn fallbacks(counts: &Counts) -> u64 {
    Reason::ALL
        .iter()
        .filter(|r| !r.is_clients() && !matches!(r, Reason::FaultInjected | Reason::NoRoute))
        .map(|r| counts.of(*r))
        .sum()
}

/// Two decimals are all a page shows.
fn round(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

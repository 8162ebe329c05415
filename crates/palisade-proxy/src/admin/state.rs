//! The JSON of `/admin/state` and `/health/deep`.

use serde_json::{Value, json};

use crate::runtime::Runtime;
use crate::upstream::Upstream;

/// Every upstream, endpoint, breaker, bulkhead, limiter and route.
pub(crate) fn of(runtime: &Runtime) -> Value {
    let upstreams: Vec<Value> = runtime.upstreams.iter().map(|u| upstream(u)).collect();
    let mut routes: Vec<_> = runtime.routes.iter().collect();
    routes.sort_by_key(|r| r.index);
    let routes: Vec<Value> = routes
        .iter()
        .map(|r| {
            json!({
                "index": r.index,
                "path_prefix": r.path_prefix,
                "upstream": &*r.upstream.name,
                "fault": r.fault(),
                "fault_lease_ms": r.fault_lease_ms(),
                "fallback": r.fallback,
            })
        })
        .collect();
    json!({ "upstreams": upstreams, "routes": routes })
}

fn upstream(u: &Upstream) -> Value {
    let clock = u.balancer.clock();
    let endpoints: Vec<Value> = u
        .endpoints()
        .map(|e| {
            json!({
                "address": e.address,
                "role": e.role,
                "healthy": e.is_healthy(),
                "available": e.is_available(),
                "in_flight": e.in_flight(),
                "concurrency_limit": e.concurrency_limit(),
                "idle_connections": e.idle_connections(),
                "latency_seconds": e.latency_estimate(clock, u.balancer.typical_latency()),
                "breaker": e.breaker.as_ref().map(|b| b.snapshot()),
            })
        })
        .collect();
    json!({
        "name": &*u.name,
        "available": u.has_available_endpoint(),
        "pipeline": u.pipeline.order(),
        "breaker": u.pipeline.breaker().map(|b| b.snapshot()),
        "bulkhead": u.pipeline.bulkhead().map(|b| b.snapshot()),
        "rate_limit": u.pipeline.rate_limit().map(|l| l.quota()),
        "retry_budget_available": u.pipeline.retry().budget().map(|b| b.available()),
        "fleet": fleet(u),
        "endpoints": endpoints,
    })
}

/// The upstream's fleet-scoped policies: how each decides now (`shared` in Redis, or
/// its fallback while Redis fails) and how many sidecars share them.
fn fleet(u: &Upstream) -> Value {
    let limit = u.pipeline.fleet_rate_limit();
    let budget = u.pipeline.fleet_budget();
    if limit.is_none() && budget.is_none() {
        return Value::Null;
    }
    json!({
        "rate_limit": limit.map(|l| json!({
            "per_second": l.config().per_second,
            "burst": l.config().burst,
            "mode": l.config().mode,
            "on_store_down": l.config().on_store_down,
            "counting": l.counting().as_str(),
            "live_instances": l.live_instances(),
        })),
        "retry_budget": budget.map(|b| json!({
            "counting": b.counting(),
        })),
    })
}

/// Per endpoint: health-check detail and breaker state.
pub(crate) fn deep(runtime: &Runtime) -> Value {
    let upstreams: Vec<Value> = runtime
        .upstreams
        .iter()
        .map(|u| {
            let endpoints: Vec<Value> = u
                .endpoints()
                .map(|e| {
                    let check = e.check.lock().unwrap_or_else(|p| p.into_inner()).clone();
                    json!({
                        "address": e.address,
                        "role": e.role,
                        "healthy": e.is_healthy(),
                        "available": e.is_available(),
                        "breaker": e.breaker_state(),
                        "health_check": check,
                    })
                })
                .collect();
            json!({ "name": &*u.name, "available": u.has_available_endpoint(), "endpoints": endpoints })
        })
        .collect();
    json!({ "upstreams": upstreams })
}

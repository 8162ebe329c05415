//! `deadline`: the inbound-deadline middleware's cost per request, beside tower-http's
//! `TimeoutLayer` (a fixed timeout, the usual alternative), over the same ready
//! `service_fn` answering `Request<()>` with an empty `Response<()>`.
//!
//! - `bare`, `bare_no_header`: the service alone, with the request of each case below
//!   (building a request with a header costs about 90 ns of its own) — the floors;
//! - `palisade_with_budget`: `InboundDeadlineLayer`, the request carrying
//!   `X-Request-Timeout: 1000` (read, then the call runs inside the deadline scope);
//! - `palisade_no_header`: the same layer, a request stating no budget;
//! - `tower_http_timeout`: `tower_http::timeout::TimeoutLayer` of 1 s (a timer per request).

#![allow(missing_docs)] // criterion_group! generates undocumented items

use std::convert::Infallible;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use http::{Request, Response};
use palisade_bench::{runtime, short_config};
use palisade_http::deadline::InboundDeadlineLayer;
use tower::{Layer, Service, ServiceExt, service_fn};

fn request(budget: bool) -> Request<()> {
    let mut request = Request::get("/orders/7");
    if budget {
        request = request.header("x-request-timeout", "1000");
    }
    request.body(()).unwrap_or_default()
}

async fn handler(_: Request<()>) -> Result<Response<()>, Infallible> {
    Ok(Response::new(()))
}

fn run<S>(c: &mut Criterion, rt: &tokio::runtime::Runtime, name: &str, service: S, budget: bool)
where
    S: Service<Request<()>, Response = Response<()>> + Clone,
    S::Error: std::fmt::Debug,
{
    c.bench_function(&format!("deadline/{name}"), |b| {
        b.to_async(rt).iter(|| {
            let service = service.clone();
            async move { service.oneshot(request(budget)).await.map(|_| ()) }
        });
    });
}

fn bench(c: &mut Criterion) {
    let rt = runtime();
    run(c, &rt, "bare", service_fn(handler), true);
    run(c, &rt, "bare_no_header", service_fn(handler), false);
    let ours = InboundDeadlineLayer::new().layer(service_fn(handler));
    run(c, &rt, "palisade_with_budget", ours.clone(), true);
    run(c, &rt, "palisade_no_header", ours, false);
    #[allow(deprecated)] // `new` answers 408; the status does not matter here
    let theirs =
        tower_http::timeout::TimeoutLayer::new(Duration::from_secs(1)).layer(service_fn(handler));
    run(c, &rt, "tower_http_timeout", theirs, true);
}

criterion_group! {
    name = benches;
    config = short_config();
    targets = bench
}
criterion_main!(benches);

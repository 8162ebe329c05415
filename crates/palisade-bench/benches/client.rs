//! `client`: the resilient client's cost per call, beside reqwest-retry's, with the network
//! taken out: the last middleware (or the inner service) answers 200 at once, so what is
//! measured is the middleware's own work. Every policy on: bulkhead, total timeout, retry
//! with budget, breaker, per-try timeout.
//!
//! - `reqwest_bare`: a reqwest-middleware client with only the answering middleware;
//! - `reqwest_palisade`: `ResilientMiddleware` in front of it;
//! - `reqwest_retry`: reqwest-retry's `RetryTransientMiddleware` (3 retries) in front of it;
//! - `tower_bare` / `tower_palisade`: a tower `service_fn` answering 200, bare and behind
//!   `ResilientLayer` (the hyper-util integration's path, without hyper).

#![allow(missing_docs)] // criterion_group! generates undocumented items

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http::Extensions;
use http_body_util::Full;
use palisade_bench::{runtime, short_config};
use palisade_http::body::ReplayBody;
use palisade_http::client::{ClientConfig, Resilience, ResilientLayer, ResilientMiddleware};
use reqwest_middleware::{ClientBuilder, ClientWithMiddleware, Middleware, Next};
use tower::{Layer, ServiceExt, service_fn};

/// Answers 200 without sending anything.
struct Answer;

#[async_trait::async_trait]
impl Middleware for Answer {
    async fn handle(
        &self,
        _: reqwest::Request,
        _: &mut Extensions,
        _: Next<'_>,
    ) -> reqwest_middleware::Result<reqwest::Response> {
        Ok(reqwest::Response::from(http::Response::new("ok")))
    }
}

fn resilience() -> Arc<Resilience> {
    let config: ClientConfig = toml::from_str(
        r#"
[timeout]
total = "2s"
per_try = "500ms"
[retry]
max_attempts = 3
budget = { ratio = 0.2, min_per_second = 10 }
[bulkhead]
max_concurrent = 64
"#,
    )
    .unwrap_or_default();
    Arc::new(Resilience::new("bench", &config).unwrap_or_else(|e| panic!("{e}")))
}

fn reqwest_client(front: Option<Arc<dyn Middleware>>) -> ClientWithMiddleware {
    let mut builder = ClientBuilder::new(reqwest::Client::new());
    if let Some(front) = front {
        builder = builder.with_arc(front);
    }
    builder.with(Answer).build()
}

fn bench(c: &mut Criterion) {
    let rt = runtime();
    let policy = reqwest_retry::policies::ExponentialBackoff::builder().build_with_max_retries(3);
    for (name, client) in [
        ("reqwest_bare", reqwest_client(None)),
        (
            "reqwest_palisade",
            reqwest_client(Some(Arc::new(ResilientMiddleware::new(resilience())))),
        ),
        (
            "reqwest_retry",
            reqwest_client(Some(Arc::new(
                reqwest_retry::RetryTransientMiddleware::new_with_policy(policy),
            ))),
        ),
    ] {
        c.bench_function(&format!("client/{name}"), |b| {
            b.to_async(&rt).iter(|| async {
                let response = client.get("http://127.0.0.1:9/orders/7").send().await;
                response.map(|r| r.status()).ok()
            });
        });
    }

    let answer = |_: http::Request<ReplayBody<Full<Bytes>>>| async {
        Ok::<_, Infallible>(http::Response::new(()))
    };
    let bare = service_fn(|_: http::Request<Full<Bytes>>| async {
        Ok::<_, Infallible>(http::Response::new(()))
    });
    let ours = ResilientLayer::new(resilience()).layer(service_fn(answer));
    let request = || {
        http::Request::get("http://127.0.0.1:9/orders/7")
            .body(Full::new(Bytes::new()))
            .unwrap_or_default()
    };
    c.bench_function("client/tower_bare", |b| {
        b.to_async(&rt)
            .iter(|| async { bare.oneshot(request()).await.map(|r| r.status()) });
    });
    c.bench_function("client/tower_palisade", |b| {
        b.to_async(&rt)
            .iter(|| async { ours.clone().oneshot(request()).await.map(|r| r.status()) });
    });
}

criterion_group! {
    name = benches;
    config = short_config();
    targets = bench
}
criterion_main!(benches);

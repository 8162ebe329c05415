//! The resilient client (`ResilientMiddleware` on reqwest) against real HTTP servers on
//! loopback (axum apps): retries only where HTTP allows them, `Retry-After` honoured, a
//! POST replayed only with an `Idempotency-Key`, a hanging attempt cut and retried, the
//! breaker opening and recovering, and the caller's budget sent on and shrinking across
//! three services.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use palisade_http::client::{ClientConfig, Resilience, ResilientMiddleware};
use palisade_http::deadline::InboundDeadlineLayer;
use reqwest_middleware::{ClientBuilder, ClientWithMiddleware};

async fn serve(router: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    addr
}

fn client(config: &str) -> (ClientWithMiddleware, Arc<Resilience>) {
    let config: ClientConfig = toml::from_str(config).unwrap();
    let resilience = Arc::new(Resilience::new("test", &config).unwrap());
    let client = ClientBuilder::new(reqwest::Client::new())
        .with(ResilientMiddleware::new(resilience.clone()))
        .build();
    (client, resilience)
}

const RETRIES: &str = r#"
[timeout]
total = "3s"
per_try = "300ms"
[retry]
max_attempts = 2
base = "1ms"
max_delay = "5ms"
max_retry_after = "50ms"
"#;

/// Answers 503 (with `Retry-After`) to its first request, 200 after; counts them.
async fn busy_once(State(count): State<Arc<AtomicUsize>>) -> impl IntoResponse {
    if count.fetch_add(1, Ordering::SeqCst) == 0 {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            [("retry-after", "1")],
            "busy",
        )
            .into_response()
    } else {
        (StatusCode::OK, "done").into_response()
    }
}

async fn always(State(count): State<Arc<AtomicUsize>>, status: StatusCode) -> StatusCode {
    count.fetch_add(1, Ordering::SeqCst);
    status
}

#[tokio::test]
async fn a_503_is_retried_after_its_retry_after_and_a_404_never_is() {
    let count = Arc::new(AtomicUsize::new(0));
    let missing = Arc::new(AtomicUsize::new(0));
    let app = Router::new()
        .route("/busy", get(busy_once))
        .with_state(count.clone())
        .merge(
            Router::new()
                .route(
                    "/missing",
                    get(|s: State<Arc<AtomicUsize>>| always(s, StatusCode::NOT_FOUND)),
                )
                .with_state(missing.clone()),
        );
    let addr = serve(app).await;
    let (client, _) = client(RETRIES);
    let r = client
        .get(format!("http://{addr}/busy"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(count.load(Ordering::SeqCst), 2, "retried once");
    let r = client
        .get(format!("http://{addr}/missing"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(missing.load(Ordering::SeqCst), 1, "a 4xx is never retried");
}

#[tokio::test]
async fn a_post_is_replayed_only_with_an_idempotency_key() {
    let count = Arc::new(AtomicUsize::new(0));
    let app = Router::new()
        .route(
            "/orders",
            post(|s: State<Arc<AtomicUsize>>| always(s, StatusCode::SERVICE_UNAVAILABLE)),
        )
        .with_state(count.clone());
    let addr = serve(app).await;
    let (client, _) = client(RETRIES);
    let url = format!("http://{addr}/orders");
    let r = client.post(&url).body("one coffee").send().await.unwrap();
    assert_eq!(r.status(), 503, "the failure comes back as the response");
    assert_eq!(
        count.load(Ordering::SeqCst),
        1,
        "a POST without a key is sent once"
    );
    count.store(0, Ordering::SeqCst);
    let r = client
        .post(&url)
        .header("idempotency-key", "order-1")
        .body("one coffee")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(
        count.load(Ordering::SeqCst),
        2,
        "with a key it may be sent again"
    );
}

#[tokio::test]
async fn a_hanging_attempt_is_cut_by_the_per_try_timeout_and_retried() {
    let count = Arc::new(AtomicUsize::new(0));
    let app = Router::new()
        .route(
            "/slow",
            get(|State(count): State<Arc<AtomicUsize>>| async move {
                if count.fetch_add(1, Ordering::SeqCst) == 0 {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                }
                "fast"
            }),
        )
        .with_state(count.clone());
    let addr = serve(app).await;
    let (client, _) = client(RETRIES);
    let r = client
        .get(format!("http://{addr}/slow"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "fast");
    assert_eq!(count.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn the_breaker_opens_on_failures_refuses_without_calling_and_recovers() {
    let count = Arc::new(AtomicUsize::new(0));
    let healthy = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let state = (count.clone(), healthy.clone());
    let app = Router::new()
        .route(
            "/pay",
            get(
                |State((count, healthy)): State<(
                    Arc<AtomicUsize>,
                    Arc<std::sync::atomic::AtomicBool>,
                )>| async move {
                    count.fetch_add(1, Ordering::SeqCst);
                    if healthy.load(Ordering::SeqCst) {
                        StatusCode::OK
                    } else {
                        StatusCode::INTERNAL_SERVER_ERROR
                    }
                },
            ),
        )
        .with_state(state);
    let addr = serve(app).await;
    let (client, resilience) = client(
        r#"
[retry]
max_attempts = 1
[circuit_breaker]
window = "count"
size = 10
minimum_calls = 4
failure_rate = 0.5
open_for = "100ms"
max_open_for = "100ms"
open_jitter = 0.0
half_open_calls = 1
"#,
    );
    let url = format!("http://{addr}/pay");
    for _ in 0..4 {
        let r = client.get(&url).send().await.unwrap();
        assert_eq!(r.status(), 500);
    }
    let refused = client.get(&url).send().await;
    let error = refused.expect_err("the breaker refuses");
    assert!(error.to_string().contains("circuit"), "{error}");
    assert_eq!(count.load(Ordering::SeqCst), 4, "refused without calling");
    healthy.store(true, Ordering::SeqCst);
    let mut recovered = false;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        if let Ok(r) = client.get(&url).send().await {
            recovered = r.status() == 200;
            if recovered {
                break;
            }
        }
    }
    assert!(recovered, "a probe after the open time closes it");
    assert_eq!(
        resilience.breaker(&addr.to_string()).state(),
        palisade::policy::circuit_breaker::CircuitState::Closed
    );
}

/// Service C reports the budget it received; B calls C, A calls B, each an axum app
/// reading its caller's budget and calling on with the client.
#[tokio::test]
async fn the_callers_budget_is_sent_on_and_shrinks_across_three_services() {
    let c = serve(Router::new().route(
        "/c",
        get(|headers: HeaderMap| async move {
            headers
                .get("x-request-timeout")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("none")
                .to_owned()
        }),
    ))
    .await;
    let hop = |next: String| {
        let (client, _) = client("[timeout]\nmargin = \"20ms\"\n");
        Router::new()
            .route(
                "/hop",
                get(move |headers: HeaderMap| {
                    let client = client.clone();
                    let next = next.clone();
                    async move {
                        let mine = headers
                            .get("x-request-timeout")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("none")
                            .to_owned();
                        let theirs = client
                            .get(&next)
                            .send()
                            .await
                            .unwrap()
                            .text()
                            .await
                            .unwrap();
                        format!("{mine} {theirs}")
                    }
                }),
            )
            .layer(InboundDeadlineLayer::new())
    };
    let b = serve(hop(format!("http://{c}/c"))).await;
    let a = serve(hop(format!("http://{b}/hop"))).await;
    let answer = reqwest::Client::new()
        .get(format!("http://{a}/hop"))
        .header("x-request-timeout", "1000")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let budgets: Vec<u64> = answer
        .split(' ')
        .map(|b| {
            b.parse()
                .unwrap_or_else(|_| panic!("a budget in {answer:?}"))
        })
        .collect();
    assert_eq!(budgets.len(), 3, "{answer}");
    assert_eq!(budgets[0], 1000, "A got the caller's");
    assert!(
        budgets[1] <= 980 && budgets[2] <= budgets[1] - 20,
        "each hop sends what is left minus its margin: {budgets:?}"
    );
}

#[test]
fn the_sidecars_upstream_sections_configure_the_client() {
    // An [upstream]'s policy sections, as a sidecar's file has them.
    let sections = r#"
[timeout]
total = "2s"
per_try = "500ms"
margin = "10ms"
[retry]
max_attempts = 3
base = "20ms"
on = ["connect-failure", "503"]
methods = ["GET"]
budget = { ratio = 0.2, min_per_second = 10 }
[circuit_breaker]
scope = "upstream"
failure_rate = 0.5
[bulkhead]
max_concurrent = 16
"#;
    let config: ClientConfig = toml::from_str(sections).unwrap();
    Resilience::new("payments", &config).expect("the same keys build the client");
    let bad: ClientConfig = toml::from_str("[retry]\nmax_attempts = 0\n").unwrap();
    let error = Resilience::new("payments", &bad).unwrap_err();
    assert_eq!(error.field, "retry.max_attempts", "{error}");
}

/// The tower layer over hyper-util's client: a keyed POST's body, held for replay, is
/// sent whole on each attempt; without a key it is sent once.
#[tokio::test]
async fn the_tower_layer_over_hyper_utils_client_replays_a_keyed_posts_body() {
    use bytes::Bytes;
    use http_body_util::Full;
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;
    use palisade_http::body::ReplayBody;
    use palisade_http::client::ResilientLayer;
    use tower::{Layer, ServiceExt};

    let bodies = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let app = Router::new()
        .route(
            "/orders",
            post(
                |State(bodies): State<Arc<std::sync::Mutex<Vec<String>>>>, body: String| async move {
                    let mut bodies = bodies.lock().unwrap();
                    bodies.push(body);
                    if bodies.len() % 2 == 1 {
                        StatusCode::SERVICE_UNAVAILABLE
                    } else {
                        StatusCode::CREATED
                    }
                },
            ),
        )
        .with_state(bodies.clone());
    let addr = serve(app).await;
    let config: ClientConfig = toml::from_str(RETRIES).unwrap();
    let resilience = Arc::new(Resilience::new("orders", &config).unwrap());
    let client = Client::builder(TokioExecutor::new()).build_http::<ReplayBody<Full<Bytes>>>();
    let service = ResilientLayer::new(resilience).layer(client);
    let order = |key: Option<&str>| {
        let mut request = http::Request::post(format!("http://{addr}/orders"));
        if let Some(key) = key {
            request = request.header("idempotency-key", key);
        }
        request
            .body(Full::new(Bytes::from_static(b"one coffee")))
            .unwrap()
    };
    let response = service.clone().oneshot(order(Some("k1"))).await.unwrap();
    assert_eq!(response.status(), 201);
    assert_eq!(*bodies.lock().unwrap(), ["one coffee", "one coffee"]);
    let response = service.oneshot(order(None)).await.unwrap();
    assert_eq!(
        response.status(),
        503,
        "sent once: its failure is the answer"
    );
    assert_eq!(bodies.lock().unwrap().len(), 3);
}

/// A connection closed without an answer (reset) fails the attempt; a GET is retried on a
/// new connection. A server killed fails calls at once (connection refused, retried, then
/// the error); started again on its port, it is called again.
#[tokio::test]
async fn a_reset_is_retried_and_a_killed_server_fails_fast_until_it_returns() {
    use tokio::io::AsyncReadExt;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let resets = Arc::new(AtomicUsize::new(0));
    let server = tokio::spawn({
        let resets = resets.clone();
        async move {
            // The first connection: read the request, close without answering.
            let (mut first, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            let _ = first.read(&mut buf).await;
            resets.fetch_add(1, Ordering::SeqCst);
            drop(first);
            axum::serve(
                listener,
                Router::new().route("/stock", get(|| async { "42" })),
            )
            .await
            .unwrap();
        }
    });
    let (client, _) = client(RETRIES);
    let url = format!("http://{addr}/stock");
    let r = client.get(&url).send().await.unwrap();
    assert_eq!(r.text().await.unwrap(), "42", "retried after the reset");
    assert_eq!(resets.load(Ordering::SeqCst), 1);

    // Killed: the port refuses connections.
    server.abort();
    let _ = server.await;
    let started = tokio::time::Instant::now();
    let refused = client.get(&url).send().await;
    assert!(refused.is_err(), "{refused:?}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "a refused connection fails at once, it does not wait out the total timeout"
    );
    // Started again on the same port.
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            Router::new().route("/stock", get(|| async { "41" })),
        )
        .await
    });
    let r = client.get(&url).send().await.unwrap();
    assert_eq!(r.text().await.unwrap(), "41");
}

/// A hedge sends a second copy of a slow idempotent request; the first answer wins.
#[tokio::test]
async fn a_slow_get_is_hedged_and_the_fallback_answers_when_the_policies_give_up() {
    let count = Arc::new(AtomicUsize::new(0));
    let app = Router::new()
        .route(
            "/slow",
            get(|State(count): State<Arc<AtomicUsize>>| async move {
                if count.fetch_add(1, Ordering::SeqCst) == 0 {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                }
                "hedged"
            }),
        )
        .route("/down", get(|| async { StatusCode::SERVICE_UNAVAILABLE }))
        .with_state(count.clone());
    let addr = serve(app).await;
    let (client, _) = client(
        r#"
[timeout]
total = "3s"
per_try = "2s"
[retry]
max_attempts = 1
[hedge]
delay = "50ms"
learn = false
max_extra_load = 1.0
[fallback]
status = 200
body = '{"rates": "cached"}'
content_type = "application/json"
"#,
    );
    let r = client
        .get(format!("http://{addr}/slow"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.text().await.unwrap(), "hedged");
    assert_eq!(count.load(Ordering::SeqCst), 2, "the hedge answered");
    let r = client
        .get(format!("http://{addr}/down"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers().get("x-palisade-fallback").map(|v| v.as_bytes()),
        Some(&b"1"[..])
    );
    assert_eq!(r.text().await.unwrap(), r#"{"rates": "cached"}"#);
}

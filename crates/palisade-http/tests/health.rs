//! The health registry and endpoints: classes, the readiness gates, timeouts, panics, and
//! at most one run of a check per TTL however many ask at once (paused clock).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use palisade_http::health::{Class, Health, HealthService, Status, breaker_check};
use tower::ServiceExt;

async fn get(health: &Arc<Health>, path: &str) -> (StatusCode, String) {
    let request = Request::get(path).body(()).unwrap();
    let response = HealthService::new(Arc::clone(health))
        .oneshot(request)
        .await
        .unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

#[tokio::test(start_paused = true)]
async fn readiness_names_the_failed_dependency_and_liveness_ignores_it() {
    let database_up = Arc::new(AtomicBool::new(false));
    let up = Arc::clone(&database_up);
    let health = Arc::new(
        Health::builder()
            .check("loop", Class::Liveness, Duration::from_secs(1), || async {
                Status::Ok
            })
            .check_with_ttl(
                "database",
                Class::Readiness,
                Duration::from_secs(1),
                Duration::ZERO,
                move || {
                    let up = up.load(Ordering::Relaxed);
                    async move {
                        if up {
                            Status::Ok
                        } else {
                            Status::Failed("connection refused".into())
                        }
                    }
                },
            )
            .check("disk", Class::Deep, Duration::from_secs(1), || async {
                Status::Degraded("80% full".into())
            })
            .build()
            .unwrap(),
    );
    health.warmed_up();
    assert_eq!(
        get(&health, "/health/live").await,
        (
            StatusCode::OK,
            r#"{"status":"live","checks":{"loop":"ok"}}"#.to_owned()
        )
    );
    assert_eq!(
        get(&health, "/health/ready").await,
        (
            StatusCode::SERVICE_UNAVAILABLE,
            r#"{"status":"not_ready","checks":{"database":"error: connection refused"}}"#
                .to_owned()
        )
    );
    let (status, deep) = get(&health, "/health/deep").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        deep,
        r#"{"status":"failing","checks":{"database":"error: connection refused","disk":"degraded: 80% full","loop":"ok"}}"#
    );
    database_up.store(true, Ordering::Relaxed);
    let (status, ready) = get(&health, "/health/ready").await;
    assert_eq!(
        (status, ready.as_str()),
        (
            StatusCode::OK,
            r#"{"status":"ready","checks":{"database":"ok"}}"#
        )
    );
    assert_eq!(
        get(&health, "/health/deep").await.0,
        StatusCode::OK,
        "degraded passes"
    );
}

#[tokio::test(start_paused = true)]
async fn not_ready_while_warming_up_or_draining() {
    let health = Arc::new(Health::builder().build().unwrap());
    assert_eq!(
        get(&health, "/health/ready").await,
        (
            StatusCode::SERVICE_UNAVAILABLE,
            r#"{"status":"not_ready","reason":"warming up","checks":{}}"#.to_owned()
        )
    );
    assert_eq!(get(&health, "/health/live").await.0, StatusCode::OK);
    health.warmed_up();
    assert_eq!(get(&health, "/health/ready").await.0, StatusCode::OK);
    health.draining();
    let (status, body) = get(&health, "/health/ready").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body.contains(r#""reason":"draining""#), "{body}");
    assert_eq!(get(&health, "/health/live").await.0, StatusCode::OK);
}

#[tokio::test(start_paused = true)]
async fn a_thousand_concurrent_deep_requests_run_a_check_once_per_ttl() {
    let runs = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&runs);
    let health = Arc::new(
        Health::builder()
            .check_with_ttl(
                "payments",
                Class::Deep,
                Duration::from_secs(1),
                Duration::from_secs(10),
                move || {
                    counted.fetch_add(1, Ordering::Relaxed);
                    async {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        Status::Ok
                    }
                },
            )
            .build()
            .unwrap(),
    );
    let ask = |health: &Arc<Health>| {
        let health = Arc::clone(health);
        tokio::spawn(async move { get(&health, "/health/deep").await.0 })
    };
    let asked: Vec<_> = (0..1000).map(|_| ask(&health)).collect();
    for answer in asked {
        assert_eq!(answer.await.unwrap(), StatusCode::OK);
    }
    assert_eq!(runs.load(Ordering::Relaxed), 1, "one run served all 1,000");
    tokio::time::advance(Duration::from_secs(9)).await;
    assert_eq!(ask(&health).await.unwrap(), StatusCode::OK);
    assert_eq!(runs.load(Ordering::Relaxed), 1, "still within the TTL");
    tokio::time::advance(Duration::from_secs(2)).await;
    let asked: Vec<_> = (0..100).map(|_| ask(&health)).collect();
    for answer in asked {
        answer.await.unwrap();
    }
    assert_eq!(
        runs.load(Ordering::Relaxed),
        2,
        "one more run after the TTL"
    );
}

#[tokio::test(start_paused = true)]
async fn a_hung_check_fails_at_its_timeout_and_a_panicking_one_with_its_message() {
    let health = Arc::new(
        Health::builder()
            .check("hung", Class::Readiness, Duration::from_millis(300), || {
                std::future::pending::<Status>()
            })
            .check(
                "broken",
                Class::Readiness,
                Duration::from_secs(1),
                || async { panic!("boom") },
            )
            .build()
            .unwrap(),
    );
    health.warmed_up();
    let report = health.report(Class::Readiness).await;
    assert!(!report.passes());
    assert_eq!(
        report
            .checks()
            .iter()
            .map(|(n, s)| (n.to_string(), s.clone()))
            .collect::<Vec<_>>(),
        [
            (
                "hung".to_owned(),
                Status::Failed("no answer within 300ms".into())
            ),
            ("broken".to_owned(), Status::Failed("panicked: boom".into())),
        ]
    );
    // The server goes on answering.
    assert_eq!(get(&health, "/health/live").await.0, StatusCode::OK);
}

#[tokio::test(start_paused = true)]
async fn other_paths_and_methods_and_bad_registries_are_refused() {
    let health = Arc::new(Health::builder().build().unwrap());
    assert_eq!(get(&health, "/health").await.0, StatusCode::NOT_FOUND);
    let post = Request::builder()
        .method(Method::POST)
        .uri("/health/live")
        .body(())
        .unwrap();
    let response = HealthService::new(Arc::clone(&health))
        .oneshot(post)
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    let twice = Health::builder()
        .check("db", Class::Readiness, Duration::from_secs(1), || async {
            Status::Ok
        })
        .check("db", Class::Deep, Duration::from_secs(1), || async {
            Status::Ok
        })
        .build();
    assert!(twice.is_err());
    let zero = Health::builder()
        .check("db", Class::Readiness, Duration::ZERO, || async {
            Status::Ok
        })
        .build();
    assert_eq!(zero.unwrap_err().field, "health.check.db.timeout");
}

#[tokio::test(start_paused = true)]
async fn readiness_can_follow_a_breaker() {
    use palisade::policy::circuit_breaker::CircuitBreaker;
    let breaker = CircuitBreaker::with_defaults("payments");
    let health = Arc::new(
        Health::builder()
            .check_with_ttl(
                "payments",
                Class::Readiness,
                Duration::from_secs(1),
                Duration::ZERO,
                breaker_check(breaker.clone()),
            )
            .build()
            .unwrap(),
    );
    health.warmed_up();
    assert_eq!(get(&health, "/health/ready").await.0, StatusCode::OK);
    breaker.force_open();
    let (status, body) = get(&health, "/health/ready").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body.contains("error: payments is open"), "{body}");
}

/// An HTTP server on loopback answering every request with `status`, until aborted
/// (its connections go with it).
fn http_server(listener: tokio::net::TcpListener, status: u16) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut connections = tokio::task::JoinSet::new();
        while let Ok((stream, _)) = listener.accept().await {
            let service = hyper::service::service_fn(move |_| async move {
                let mut response =
                    http::Response::new(http_body_util::Empty::<bytes::Bytes>::new());
                *response.status_mut() = StatusCode::from_u16(status).unwrap();
                Ok::<_, std::convert::Infallible>(response)
            });
            connections.spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service),
            );
        }
    })
}

/// Readiness follows a real HTTP dependency: 200 while it answers 2xx, 503 naming it
/// when it answers 503 or is gone, 200 again when it is back.
#[tokio::test]
async fn readiness_follows_an_http_dependency_that_goes_and_comes_back() {
    use palisade_http::health::http_check;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let mut server = http_server(listener, 200);
    let uri: http::Uri = format!("http://{address}/ready").parse().unwrap();
    let health = Arc::new(
        Health::builder()
            .check_with_ttl(
                "payments",
                Class::Readiness,
                Duration::from_secs(2),
                Duration::ZERO,
                http_check(uri),
            )
            .build()
            .unwrap(),
    );
    health.warmed_up();
    assert_eq!(get(&health, "/health/ready").await.0, StatusCode::OK);
    server.abort();
    let _ = (&mut server).await;
    let (status, body) = get(&health, "/health/ready").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(body.contains(r#""payments":"error: unreachable"#), "{body}");
    assert_eq!(
        get(&health, "/health/live").await.0,
        StatusCode::OK,
        "liveness stays"
    );
    let server = http_server(tokio::net::TcpListener::bind(address).await.unwrap(), 503);
    let (status, body) = get(&health, "/health/ready").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        body.contains("error: status 503 Service Unavailable"),
        "{body}"
    );
    server.abort();
    let _ = server.await;
    let _back = http_server(tokio::net::TcpListener::bind(address).await.unwrap(), 200);
    assert_eq!(get(&health, "/health/ready").await.0, StatusCode::OK);
}

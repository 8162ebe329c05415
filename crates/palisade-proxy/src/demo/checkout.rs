//! The demo's saga: `POST /checkout` reserves stock on *steady* and charges on a
//! simulated *payments* service that declines every third card, so some checkouts
//! complete and the others are compensated (their reservation released). The saga log is
//! a SQLite file in the temp directory, removed at the end.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::time::Instant;

/// The simulated payments service: every third charge is declined (402); refunds pass.
pub(super) async fn payments() -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let charges = Arc::new(AtomicU64::new(0));
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let charges = charges.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request: Request<_>| {
                    let charges = charges.clone();
                    async move { Ok::<_, Infallible>(charge(&request, &charges)) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(address)
}

fn charge<B>(request: &Request<B>, charges: &AtomicU64) -> Response<Full<Bytes>> {
    let (status, body) = if request.uri().path() == "/charges" {
        if charges.fetch_add(1, Ordering::Relaxed) % 3 == 2 {
            (StatusCode::PAYMENT_REQUIRED, "card declined")
        } else {
            (StatusCode::OK, r#"{"charge":"accepted"}"#)
        }
    } else {
        (StatusCode::OK, r#"{"refund":"done"}"#)
    };
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    response
}

/// Where the demo's saga log goes.
pub(super) fn store() -> PathBuf {
    std::env::temp_dir().join(format!("palisade-demo-sagas-{}.db", std::process::id()))
}

/// The config sections of the saga, its upstream and its route.
pub(super) fn config(payments: SocketAddr, store: &std::path::Path) -> String {
    format!(
        r#"
[[upstream]]
name = "payments"
endpoints = ["{payments}"]
[upstream.timeout]
per_try = "300ms"
[upstream.retry]
budget = {{ ratio = 0.2, min_per_second = 10 }}
[upstream.bulkhead]
max_concurrent = 64

[saga_store]
url = "sqlite://{}"

[[saga]]
name = "checkout"
compensation_retry = {{ max_attempts = 5, base = "50ms", max_delay = "200ms" }}
[[saga.step]]
name = "reserve"
upstream = "steady"
method = "POST"
path = "/reservations"
compensate = {{ method = "DELETE", path = "/reservations/{{saga_id}}" }}
[[saga.step]]
name = "charge"
upstream = "payments"
method = "POST"
path = "/charges"
compensate = {{ method = "POST", path = "/refunds" }}

[[route]]
path_prefix = "/checkout"
saga = "checkout"
"#,
        store.display()
    )
}

/// What the demo's checkouts came to.
#[derive(Debug, Default)]
pub(super) struct Checkouts {
    pub completed: usize,
    pub compensated: usize,
    pub other: usize,
}

/// A checkout every 2 s until `until`, each printed as it settles.
pub(super) async fn run(proxy: SocketAddr, until: Instant) -> Checkouts {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut tally = Checkouts::default();
    let mut n = 0;
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    while Instant::now() < until {
        tick.tick().await;
        n += 1;
        let id = format!("demo-{}-{n}", std::process::id());
        let request = Request::builder()
            .method(Method::POST)
            .uri(format!("http://{proxy}/checkout"))
            .header("idempotency-key", &id)
            .header("x-request-timeout", "3000")
            .body(Full::new(Bytes::from(format!(r#"{{"cart":{n}}}"#))));
        let Ok(request) = request else { continue };
        let (status, body) = match client.request(request).await {
            Ok(response) => {
                let status = response.status();
                let body = response
                    .into_body()
                    .collect()
                    .await
                    .map(|b| b.to_bytes())
                    .unwrap_or_default();
                (status, body)
            }
            Err(error) => {
                println!("  checkout {n}: no answer ({error})");
                tally.other += 1;
                continue;
            }
        };
        let saga: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        match status {
            StatusCode::OK => {
                tally.completed += 1;
                println!("  checkout {n}: completed — reserved, charged");
            }
            StatusCode::CONFLICT if saga["state"] == "compensated" => {
                tally.compensated += 1;
                println!(
                    "  checkout {n}: compensated — {} failed ({}); the reservation was released",
                    saga["failed_step"].as_str().unwrap_or("a step"),
                    saga["failure"].as_str().unwrap_or("?")
                );
            }
            _ => {
                tally.other += 1;
                println!(
                    "  checkout {n}: {status} {}",
                    String::from_utf8_lossy(&body)
                );
            }
        }
    }
    tally
}

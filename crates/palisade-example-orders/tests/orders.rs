//! The example order service, black-box: the real `orders` binary on a free port, in front
//! of a PostgreSQL cluster and a redis-server of the test's own and a payments service
//! the test plays (an axum app it can turn down). Orders are stored and charged once
//! under their key; rates come fresh, then from the cache (stale) when payments is down;
//! readiness names the database when it stops and recovers when it returns; liveness
//! never moves.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use palisade_testkit::postgres::OwnServer;
use palisade_testkit::redis::OwnRedis;

#[derive(Default)]
struct Payments {
    down: AtomicBool,
    keys: Mutex<Vec<String>>,
}

async fn payments() -> (SocketAddr, Arc<Payments>) {
    let state = Arc::new(Payments::default());
    let app = Router::new()
        .route(
            "/charges",
            post(
                |State(p): State<Arc<Payments>>, headers: HeaderMap| async move {
                    if p.down.load(Ordering::SeqCst) {
                        return StatusCode::SERVICE_UNAVAILABLE;
                    }
                    let key = headers
                        .get("idempotency-key")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_owned();
                    p.keys.lock().unwrap().push(key);
                    StatusCode::CREATED
                },
            ),
        )
        .route(
            "/rates",
            get(|State(p): State<Arc<Payments>>| async move {
                if p.down.load(Ordering::SeqCst) {
                    (StatusCode::SERVICE_UNAVAILABLE, "down".to_owned())
                } else {
                    (StatusCode::OK, r#"{"EUR":1.0,"USD":1.08}"#.to_owned())
                }
            }),
        )
        .with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, state)
}

struct Orders(Child);

impl Drop for Orders {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn until(what: &str, mut done: impl AsyncFnMut() -> bool) {
    for _ in 0..500 {
        if done().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("not within 10 s: {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_order_service_stores_charges_falls_back_and_reports_its_readiness() {
    let Some(pg) = OwnServer::start() else { return };
    let Some(redis) = OwnRedis::start() else {
        return;
    };
    let (payments_addr, payments) = payments().await;
    let port = palisade_testkit::free_port();
    let _orders = Orders(
        Command::new(env!("CARGO_BIN_EXE_orders"))
            .env("ORDERS_LISTEN", format!("127.0.0.1:{port}"))
            .env("ORDERS_POSTGRES", pg.url())
            .env("ORDERS_REDIS", redis.url())
            .env("ORDERS_PAYMENTS", format!("http://{payments_addr}"))
            .stdout(Stdio::null())
            .spawn()
            .expect("start orders"),
    );
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let status = async |path: &str| {
        http.get(format!("{base}{path}"))
            .send()
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or(0)
    };
    until("ready", async || status("/health/ready").await == 200).await;

    let order = http
        .post(format!("{base}/orders"))
        .header("x-request-timeout", "2000")
        .json(&serde_json::json!({"item": "coffee", "cents": 350}))
        .send()
        .await
        .unwrap();
    assert_eq!(order.status(), 201);
    let order: serde_json::Value = order.json().await.unwrap();
    assert_eq!(order["paid"], true);
    let id = order["id"].as_i64().unwrap();
    assert_eq!(*payments.keys.lock().unwrap(), [format!("order-{id}")]);

    let rates: serde_json::Value = http
        .get(format!("{base}/rates"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(rates["stale"], false);
    payments.down.store(true, Ordering::SeqCst);
    let rates: serde_json::Value = http
        .get(format!("{base}/rates"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(rates["stale"], true, "the cached rates, marked stale");
    assert_eq!(rates["rates"]["USD"], 1.08);
    let pending = http
        .post(format!("{base}/orders"))
        .json(&serde_json::json!({"item": "tea", "cents": 300}))
        .send()
        .await
        .unwrap();
    assert_eq!(pending.status(), 202, "stored, payment pending");

    pg.stop_immediately();
    until("not ready naming postgres", async || {
        let r = http
            .get(format!("{base}/health/ready"))
            .send()
            .await
            .unwrap();
        r.status() == 503 && r.text().await.unwrap().contains(r#""postgres":"error:"#)
    })
    .await;
    assert_eq!(status("/health/live").await, 200);
    pg.start_again();
    until("ready again", async || status("/health/ready").await == 200).await;
}

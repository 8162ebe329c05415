//! Connection pooling to upstreams: connections are reused, and a connection the server
//! closed while it sat idle never costs a request — not even one that must not be retried.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use support::*;

/// A raw HTTP/1.1 server that answers one request per connection and then closes it
/// without saying so (no `Connection: close`), as servers with short keep-alive timeouts
/// do. Counts connections and requests.
struct OneShotServer {
    address: std::net::SocketAddr,
    connections: Arc<AtomicUsize>,
    requests: Arc<AtomicUsize>,
}

impl OneShotServer {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let connections = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(AtomicUsize::new(0));
        let (c, r) = (connections.clone(), requests.clone());
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                c.fetch_add(1, Ordering::SeqCst);
                let r = r.clone();
                tokio::spawn(async move {
                    let mut seen = Vec::new();
                    let mut buf = [0u8; 4096];
                    // Head, then the body its Content-Length announces.
                    loop {
                        let Ok(n) = stream.read(&mut buf).await else {
                            return;
                        };
                        if n == 0 {
                            return;
                        }
                        seen.extend_from_slice(&buf[..n]);
                        if let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                            let head = String::from_utf8_lossy(&seen[..end]).to_lowercase();
                            let length = head
                                .lines()
                                .find_map(|l| l.strip_prefix("content-length:"))
                                .and_then(|v| v.trim().parse::<usize>().ok())
                                .unwrap_or(0);
                            if seen.len() >= end + 4 + length {
                                break;
                            }
                        }
                    }
                    r.fetch_add(1, Ordering::SeqCst);
                    let _ = stream
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                        .await;
                    // Closed at once: the proxy may still hold it as idle.
                });
            }
        });
        Self {
            address,
            connections,
            requests,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_closed_while_idle_costs_no_request() {
    let server = OneShotServer::start().await;
    let proxy = Proxy::start(&format!(
        r#"
[[upstream]]
name = "api"
endpoints = ["{}"]
[upstream.retry]
max_attempts = 1

[[route]]
path_prefix = "/"
upstream = "api"
"#,
        server.address
    ))
    .await;
    for i in 0..20 {
        let r = proxy
            .http
            .send("POST", &proxy.url("/orders"), &[], format!("order {i}"))
            .await;
        assert_eq!(r.status, 200, "POST {i}: {r:?}");
        assert_eq!(r.text(), "ok");
    }
    assert_eq!(
        server.requests.load(Ordering::SeqCst),
        20,
        "every POST reached it once"
    );
    assert_eq!(
        server.connections.load(Ordering::SeqCst),
        20,
        "one connection each"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_connections_are_reused() {
    let upstream = Upstream::start("api", Behaviour::Ok).await;
    let proxy = Proxy::start(&format!(
        r#"
[[upstream]]
name = "api"
endpoints = ["{}"]

[[route]]
path_prefix = "/"
upstream = "api"
"#,
        upstream.addr()
    ))
    .await;
    for _ in 0..20 {
        assert_eq!(proxy.get("/x").await.status, 200);
    }
    let state = proxy.state().await;
    let endpoint = &endpoints_of(&state, "api")[0];
    // Each worker thread keeps its own upstream connections (one event loop per core),
    // and the test's client may spread its requests over two connections, served by
    // different workers: at most one upstream connection per worker, never one per
    // request.
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    let idle = endpoint["idle_connections"].as_u64().expect("a count");
    assert!(
        (1..=workers).contains(&idle),
        "sequential requests share one connection per worker ({workers}): {endpoint}"
    );
}

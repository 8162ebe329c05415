//! Slow bodies cannot lock an upstream out: a client that stalls mid-upload holds no
//! bulkhead slot and is answered 408 after `listener.body_timeout`; a client that stops
//! reading its response is cut after the same time; an upstream that stalls
//! mid-response is cut after `[upstream.timeout] body_idle`. Each frees its slot. Real
//! binary, loopback sockets.

mod support;

use std::net::SocketAddr;

use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;

fn sections() -> Sections {
    Sections {
        listener: "body_timeout = \"400ms\"".into(),
        ..Sections::default()
    }
}

fn config(endpoint: SocketAddr) -> String {
    format!(
        r#"
[[upstream]]
name = "api"
endpoints = ["{endpoint}"]
[upstream.timeout]
body_idle = "400ms"
[upstream.retry]
max_attempts = 1
[upstream.bulkhead]
max_concurrent = 2
max_queue = 0

[[route]]
path_prefix = "/api"
upstream = "api"
"#
    )
}

/// Reads what comes back until the server closes or `limit` passes.
async fn read_all(stream: &mut TcpStream, limit: std::time::Duration) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let _ = timeout(limit, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_uploads_hold_no_slot_and_are_answered_408() {
    let up = Upstream::start("api", Behaviour::Ok).await;
    let proxy = Proxy::start_with(&sections(), &config(up.addr())).await;

    // More stalled uploads than the bulkhead has slots: each sends a head promising
    // 100 bytes, then 10 of them, then nothing.
    let mut stalled = Vec::new();
    for _ in 0..4 {
        let mut s = TcpStream::connect(proxy.addr).await.unwrap();
        s.write_all(
            b"POST /api/upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789",
        )
        .await
        .unwrap();
        stalled.push(s);
    }
    // Meanwhile everyone else is served.
    for i in 0..3 {
        let r = proxy.get("/api/x").await;
        assert_eq!(r.status, 200, "request {i} while uploads stall: {r:?}");
    }
    for (i, s) in stalled.iter_mut().enumerate() {
        let answer = read_all(s, secs(5)).await;
        assert!(
            answer.starts_with("HTTP/1.1 408"),
            "stalled upload {i} got {answer:?}"
        );
        assert!(
            answer
                .to_ascii_lowercase()
                .contains("x-palisade-reason: body-timeout"),
            "{answer:?}"
        );
    }
    assert_eq!(
        up.requests()
            .iter()
            .filter(|r| r.path == "/api/upload")
            .count(),
        0,
        "a stalled upload reached the upstream"
    );
}

/// An upstream that answers every request with a head promising 100 bytes, sends 5 of
/// them, and stalls; counts requests.
async fn stalling_upstream() -> (SocketAddr, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = count.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let mut head = Vec::new();
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nhello")
                    .await;
                // Stall, holding the connection open, until the proxy gives up.
                let _ = s.read(&mut buf).await;
            });
        }
    });
    (address, count)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_stalling_mid_body_is_cut_and_frees_its_slot() {
    let (endpoint, count) = stalling_upstream().await;
    let proxy = Proxy::start_with(&sections(), &config(endpoint)).await;

    // More stalled responses, one after the other, than the bulkhead has slots: each
    // ends (cut short) and gives its slot back.
    for i in 0..4 {
        let mut s = TcpStream::connect(proxy.addr).await.unwrap();
        s.write_all(b"GET /api/x HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let answer = read_all(&mut s, secs(5)).await;
        assert!(
            answer.starts_with("HTTP/1.1 200"),
            "request {i}: {answer:?}"
        );
        assert!(
            answer.ends_with("hello"),
            "the body is cut short: {answer:?}"
        );
        assert!(
            !answer.contains("bulkhead-full"),
            "request {i} found the bulkhead full: {answer:?}"
        );
    }
    assert_eq!(count.load(std::sync::atomic::Ordering::SeqCst), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_cut_and_frees_its_slot() {
    // A response far larger than the socket buffers between client and proxy.
    let big = "x".repeat(32 * 1024 * 1024);
    let up = Upstream::start(
        "api",
        Behaviour::Respond {
            status: 200,
            headers: Vec::new(),
            body: big,
        },
    )
    .await;
    let proxy = Proxy::start_with(&sections(), &config_with_one_slot(up.addr())).await;

    let mut stalled = TcpStream::connect(proxy.addr).await.unwrap();
    stalled
        .write_all(b"GET /api/big HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    up.wait_for(1, secs(5)).await;
    // The stalled client holds the only slot until the proxy gives up on it.
    let served = eventually(
        "a request served after the stalled one",
        secs(10),
        async || {
            let r = proxy.get("/api/x").await;
            (r.status == 200).then_some(r)
        },
    )
    .await;
    assert_eq!(served.body.len(), 32 * 1024 * 1024);
    assert!(
        closed_within(&mut stalled, secs(5)).await,
        "the stalled connection was not closed"
    );
}

fn config_with_one_slot(endpoint: SocketAddr) -> String {
    config(endpoint).replace("max_concurrent = 2", "max_concurrent = 1")
}

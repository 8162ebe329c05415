//! The header timeout after a response: a kept-alive connection that stays idle, or sends
//! its next head too slowly, is cut off; a response that takes longer than the timeout
//! to stream is not. Raw TCP against the real binary.

mod support;

use std::time::Duration;

use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{Instant, timeout};

const HEADER_TIMEOUT: &str = "300ms";

fn sections() -> Sections {
    Sections {
        listener: format!("header_timeout = \"{HEADER_TIMEOUT}\""),
        ..Sections::default()
    }
}

fn config(endpoint: &str) -> String {
    format!(
        r#"
[[upstream]]
name = "api"
endpoints = ["{endpoint}"]

[[route]]
path_prefix = "/api"
upstream = "api"
"#
    )
}

/// Reads one response with a `Content-Length` body; returns its head and body.
async fn read_response(s: &mut TcpStream) -> (String, String) {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    let read = timeout(secs(5), async {
        loop {
            let n = s.read(&mut buf).await.expect("read");
            assert!(
                n > 0,
                "closed mid-response: {}",
                String::from_utf8_lossy(&seen)
            );
            seen.extend_from_slice(&buf[..n]);
            let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") else {
                continue;
            };
            let head = String::from_utf8_lossy(&seen[..end]).to_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map(|v| v.trim().parse().expect("length"))
                .expect("content-length");
            if seen.len() >= end + 4 + length {
                let body = String::from_utf8_lossy(&seen[end + 4..end + 4 + length]);
                return (head, body.into_owned());
            }
        }
    })
    .await;
    read.expect("no whole response within 5 s")
}

/// Waits until the server closes `s`; returns how long that took from `since`.
async fn closed_after(s: &mut TcpStream, since: Instant) -> Duration {
    assert!(
        closed_within(s, secs(5)).await,
        "still open 5 s after a {HEADER_TIMEOUT} header_timeout"
    );
    since.elapsed()
}

async fn served_once(up: &Upstream) -> (Proxy, TcpStream) {
    let proxy = Proxy::start_with(&sections(), &config(&up.addr().to_string())).await;
    let mut s = TcpStream::connect(proxy.addr).await.expect("connect");
    s.write_all(b"GET /api/1 HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    let (head, _) = read_response(&mut s).await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    (proxy, s)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_second_head_is_cut_off() {
    let up = Upstream::start("api", Behaviour::Ok).await;
    let (_proxy, mut s) = served_once(&up).await;

    s.write_all(b"GET /api/2 HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("write");
    let took = closed_after(&mut s, Instant::now()).await;
    assert!(
        took >= ms(200),
        "cut off after {took:?}, before the timeout"
    );
    assert_eq!(up.count(), 1, "the unfinished head reached the upstream");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_connection_is_closed_after_the_header_timeout() {
    let up = Upstream::start("api", Behaviour::Ok).await;
    let (_proxy, mut s) = served_once(&up).await;

    let took = closed_after(&mut s, Instant::now()).await;
    assert!(took >= ms(200), "closed after {took:?}, before the timeout");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_streaming_longer_than_the_header_timeout_is_not_cut_off() {
    // An upstream that sends its 10-byte body a byte every 100 ms: a second in all,
    // more than three header timeouts.
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let endpoint = listener.local_addr().expect("address").to_string();
    let upstream = tokio::spawn(async move {
        let (mut conn, _) = listener.accept().await.expect("accept");
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = conn.read(&mut buf).await.expect("read");
            assert!(n > 0, "the proxy closed before its request was whole");
            seen.extend_from_slice(&buf[..n]);
        }
        conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n")
            .await
            .expect("head");
        for digit in b"0123456789" {
            tokio::time::sleep(ms(100)).await;
            conn.write_all(&[*digit]).await.expect("body");
        }
        // Keep the connection until the proxy is done with it.
        let _ = conn.read(&mut buf).await;
    });
    let proxy = Proxy::start_with(&sections(), &config(&endpoint)).await;
    let mut s = TcpStream::connect(proxy.addr).await.expect("connect");
    s.write_all(b"GET /api/slow HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");

    let started = Instant::now();
    let (head, body) = read_response(&mut s).await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert_eq!(body, "0123456789");
    assert!(
        started.elapsed() >= ms(900),
        "the body was meant to take a second, took {:?}",
        started.elapsed()
    );
    // And the connection is still usable for the next request.
    s.write_all(b"GET /api/next HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    let mut buf = [0u8; 64];
    let answered = timeout(secs(5), s.read(&mut buf)).await;
    assert!(
        matches!(answered, Ok(Ok(n)) if n > 0),
        "the connection was closed after the slow response: {answered:?}"
    );
    upstream.abort();
}

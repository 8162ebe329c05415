//! Bad client input: malformed HTTP, oversized heads and bodies, slow heads. Raw TCP.

mod support;

use std::net::SocketAddr;

use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

fn config(up: &Upstream) -> String {
    format!(
        r#"
[[upstream]]
name = "api"
endpoints = [{endpoints}]

[[route]]
path_prefix = "/api"
upstream = "api"
"#,
        endpoints = list(&[up])
    )
}

fn sections() -> Sections {
    Sections {
        listener: "max_body_bytes = 1024\nmax_header_bytes = 8192\nheader_timeout = \"300ms\""
            .into(),
        ..Sections::default()
    }
}

/// Writes `bytes` and reads until the server closes or 5 s pass; returns what came back.
async fn exchange(addr: SocketAddr, bytes: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    // The server may answer and close before reading everything; ignore write errors.
    let _ = s.write_all(bytes).await;
    read_answer(&mut s).await
}

async fn read_answer(s: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let _ = timeout(secs(5), async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    out.extend_from_slice(&buf[..n]);
                    // One response head is enough for these checks.
                    if out.windows(4).any(|w| w == b"\r\n\r\n") {
                        break;
                    }
                }
            }
        }
    })
    .await;
    String::from_utf8_lossy(&out).into_owned()
}

fn status_of(answer: &str) -> Option<u16> {
    let line = answer.lines().next()?;
    let mut parts = line.split_whitespace();
    parts.next()?.starts_with("HTTP/").then_some(())?;
    parts.next()?.parse().ok()
}

async fn still_serving(proxy: &Proxy, up: &Upstream) {
    let before = up.count();
    let r = proxy.get("/api/ok").await;
    assert_eq!(r.status, 200, "the proxy stopped serving: {r:?}");
    assert_eq!(up.count(), before + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_http_is_400_and_the_proxy_stays_up() {
    let up = Upstream::start("api", Behaviour::Ok).await;
    let proxy = Proxy::start_with(&sections(), &config(&up)).await;
    for garbage in [
        &b"this is not http\r\n\r\n"[..],
        b"GET /api/x HTTP/1.1\r\nHost: x\r\nBad Header Without Colon\r\n\r\n",
        b"GET /api/x HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n",
        // Two framings (a smuggling attempt): which one ends the body?
        b"POST /api/x HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"POST /api/x HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcde",
    ] {
        let answer = exchange(proxy.addr, garbage).await;
        assert_eq!(
            status_of(&answer),
            Some(400),
            "{:?} got {answer:?}",
            String::from_utf8_lossy(garbage)
        );
    }
    assert_eq!(up.count(), 0, "malformed requests reached the upstream");
    still_serving(&proxy, &up).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_over_the_limit_are_431() {
    let up = Upstream::start("api", Behaviour::Ok).await;
    let proxy = Proxy::start_with(&sections(), &config(&up)).await;
    let big = "a".repeat(16 * 1024);
    let req = format!("GET /api/x HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\n\r\n");
    let answer = exchange(proxy.addr, req.as_bytes()).await;
    assert_eq!(status_of(&answer), Some(431), "{answer:?}");
    assert_eq!(up.count(), 0);
    still_serving(&proxy, &up).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_over_the_limit_are_413() {
    let up = Upstream::start("api", Behaviour::Ok).await;
    let proxy = Proxy::start_with(&sections(), &config(&up)).await;

    // Declared too large.
    let body = "b".repeat(2048);
    let req = format!(
        "POST /api/x HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let answer = exchange(proxy.addr, req.as_bytes()).await;
    assert_eq!(status_of(&answer), Some(413), "{answer:?}");

    // Chunked, found too large while reading.
    let chunk = "c".repeat(600);
    let req = format!(
        "POST /api/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n258\r\n{chunk}\r\n258\r\n{chunk}\r\n0\r\n\r\n"
    );
    let answer = exchange(proxy.addr, req.as_bytes()).await;
    assert_eq!(status_of(&answer), Some(413), "{answer:?}");
    assert!(
        up.requests().iter().all(|r| r.body.len() <= 1024),
        "an oversized body reached the upstream whole"
    );

    // At the limit is fine.
    let r = proxy.send("POST", "/api/x", &[], "d".repeat(1024)).await;
    assert_eq!(r.status, 200, "{r:?}");
    still_serving(&proxy, &up).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_sending_headers_too_slowly_is_cut_off() {
    let up = Upstream::start("api", Behaviour::Ok).await;
    let proxy = Proxy::start_with(&sections(), &config(&up)).await;

    let mut s = TcpStream::connect(proxy.addr).await.expect("connect");
    s.write_all(b"GET /api/x HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("write");
    let start = tokio::time::Instant::now();
    // Never finish the head. The proxy must close (optionally answering 408) soon after
    // header_timeout (300 ms).
    assert!(
        closed_within(&mut s, secs(5)).await,
        "the connection was still open 5 s after a 300 ms header_timeout"
    );
    assert!(
        start.elapsed() >= ms(200),
        "cut off after {:?}, before header_timeout",
        start.elapsed()
    );
    assert_eq!(up.count(), 0);
    still_serving(&proxy, &up).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ambiguous_heads_are_400_and_never_forwarded() {
    let up = Upstream::start("api", Behaviour::Ok).await;
    let proxy = Proxy::start_with(&sections(), &config(&up)).await;
    for request in [
        // Two Host headers: which one is meant?
        &b"GET /api/x HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\n\r\n"[..],
        b"GET /api/x HTTP/1.1\r\nHost: a.example\r\nHost: a.example\r\n\r\n",
        // Bytes beyond ASCII in the target.
        b"GET /api/caf\xc3\xa9 HTTP/1.1\r\nHost: a.example\r\n\r\n",
        b"GET /api/x?q=\xff HTTP/1.1\r\nHost: a.example\r\n\r\n",
    ] {
        let answer = exchange(proxy.addr, request).await;
        assert_eq!(
            status_of(&answer),
            Some(400),
            "{:?} got {answer:?}",
            String::from_utf8_lossy(request)
        );
    }
    assert_eq!(up.count(), 0, "an ambiguous request reached the upstream");
    still_serving(&proxy, &up).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_absolute_form_target_names_the_host_sent_upstream() {
    let up = Upstream::start("api", Behaviour::Ok).await;
    let proxy = Proxy::start_with(&sections(), &config(&up)).await;
    let request = b"GET http://target.example:81/api/x HTTP/1.1\r\nHost: other.example\r\n\r\n";
    let answer = exchange(proxy.addr, request).await;
    assert_eq!(status_of(&answer), Some(200), "{answer:?}");
    let seen = up.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        seen[0].header("host"),
        Some("target.example:81"),
        "{seen:?}"
    );
    assert_eq!(seen[0].path, "/api/x");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_chunked_body_is_the_clients_fault() {
    let up = Upstream::start("api", Behaviour::Ok).await;
    let proxy = Proxy::start_with(&sections(), &config(&up)).await;
    let request =
        b"POST /api/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n";
    let answer = exchange(proxy.addr, request).await;
    assert_eq!(status_of(&answer), Some(400), "{answer:?}");
    assert!(
        answer
            .to_ascii_lowercase()
            .contains("x-palisade-reason: bad-request"),
        "{answer:?}"
    );
    still_serving(&proxy, &up).await;
}

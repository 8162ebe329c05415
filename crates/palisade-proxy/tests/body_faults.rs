//! Body faults on a route: the upstream's response body slowed to a rate, or cut after a
//! number of bytes, measured at the client on raw sockets — through the sidecar's own
//! HTTP/1 server (a GET without a body) and through hyper's (a POST with one), from an
//! upstream framing its body by length and from one sending it chunked. Real binary,
//! loopback sockets.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

/// The upstream's body: 2 KiB.
const BODY_LEN: usize = 2048;

fn body() -> String {
    (0..BODY_LEN)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect()
}

fn config(endpoint: SocketAddr, fault: &str) -> String {
    format!(
        r#"
[[upstream]]
name = "api"
endpoints = ["{endpoint}"]
[upstream.retry]
max_attempts = 1

[[route]]
path_prefix = "/api"
upstream = "api"
{fault}
"#
    )
}

/// An upstream answering every request with [`body`], framed by `Content-Length`.
async fn sized_upstream() -> Upstream {
    Upstream::start(
        "api",
        Behaviour::Respond {
            status: 200,
            headers: vec![("content-type".into(), "text/plain".into())],
            body: body(),
        },
    )
    .await
}

/// An upstream answering every request with [`body`] in chunks of 512 bytes, on raw
/// sockets with keep-alive.
async fn chunked_upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut read = Vec::new();
                let mut buf = [0u8; 4096];
                loop {
                    let Ok(n) = stream.read(&mut buf).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    read.extend_from_slice(&buf[..n]);
                    // Requests here have no body, or one of a byte (see `exchange`).
                    while let Some(end) = find(&read, b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&read[..end]).to_ascii_lowercase();
                        let body = usize::from(head.contains("content-length: 1"));
                        if read.len() < end + 4 + body {
                            break;
                        }
                        read.drain(..end + 4 + body);
                        let mut out =
                            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
                        for chunk in body_chunks() {
                            out.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
                            out.extend_from_slice(chunk.as_bytes());
                            out.extend_from_slice(b"\r\n");
                        }
                        out.extend_from_slice(b"0\r\n\r\n");
                        if stream.write_all(&out).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    addr
}

fn body_chunks() -> Vec<String> {
    let body = body();
    body.as_bytes()
        .chunks(512)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect()
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// How a request is sent: which of the sidecar's servers answers it.
#[derive(Clone, Copy, Debug)]
enum Via {
    /// A GET without a body: the sidecar's own HTTP/1 server.
    Own,
    /// A POST with a body: hyper's server.
    Hyper,
}

/// A response as read off the socket.
#[derive(Debug)]
struct Raw {
    head: String,
    /// The body's bytes (chunked: decoded).
    body: Vec<u8>,
    /// Whether the body was whole by its framing (the declared length; the last chunk).
    complete: bool,
    /// Whether the connection was closed.
    closed: bool,
    /// From sending the request to the body's end or the connection's closing.
    elapsed: Duration,
}

impl Raw {
    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|line| {
            let (k, v) = line.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    }
}

/// Sends one request for `/api/x` on a new connection and reads its response until its
/// body is whole or the connection closes (10 s at most).
async fn exchange(proxy: SocketAddr, via: Via) -> Raw {
    let mut stream = TcpStream::connect(proxy).await.unwrap();
    let request: &[u8] = match via {
        Via::Own => b"GET /api/x HTTP/1.1\r\nHost: x\r\n\r\n",
        Via::Hyper => b"POST /api/x HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\n!",
    };
    let started = Instant::now();
    stream.write_all(request).await.unwrap();
    let mut read = Vec::new();
    let mut buf = [0u8; 8192];
    let mut closed = false;
    let deadline = started + Duration::from_secs(10);
    loop {
        if parse(&read).is_some_and(|(_, _, complete)| complete) {
            break;
        }
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                closed = true;
                break;
            }
            Ok(Ok(n)) => read.extend_from_slice(&buf[..n]),
            Err(_) => break,
        }
    }
    let elapsed = started.elapsed();
    let (head, body, complete) = parse(&read).unwrap_or_default();
    Raw {
        head,
        body,
        complete,
        closed,
        elapsed,
    }
}

/// The head, the body so far and whether it is whole, once the head is there.
fn parse(read: &[u8]) -> Option<(String, Vec<u8>, bool)> {
    let end = find(read, b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&read[..end]).into_owned();
    let rest = &read[end + 4..];
    let lower = head.to_ascii_lowercase();
    if lower.contains("transfer-encoding: chunked") {
        let (body, complete) = dechunk(rest);
        return Some((head, body, complete));
    }
    let length = lower
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())?;
    Some((head, rest.to_vec(), rest.len() >= length))
}

/// A chunked body's data so far, and whether its last chunk came.
fn dechunk(mut rest: &[u8]) -> (Vec<u8>, bool) {
    let mut body = Vec::new();
    loop {
        let Some(line) = find(rest, b"\r\n") else {
            return (body, false);
        };
        let size = std::str::from_utf8(&rest[..line])
            .ok()
            .and_then(|s| usize::from_str_radix(s.trim(), 16).ok());
        let Some(size) = size else {
            return (body, false);
        };
        if size == 0 {
            return (body, rest[line + 2..].starts_with(b"\r\n"));
        }
        let data = &rest[line + 2..];
        if data.len() < size + 2 {
            body.extend_from_slice(&data[..data.len().min(size)]);
            return (body, false);
        }
        body.extend_from_slice(&data[..size]);
        rest = &data[size + 2..];
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_body_arrives_whole_at_its_rate() {
    let up = sized_upstream().await;
    // 2 KiB at 4 KiB/s: half a second.
    let fault = "[route.fault]\nbody_percent = 100\nbody = \"slow\"\nbody_rate = 4096\n";
    let proxy = Proxy::start(&config(up.addr(), fault)).await;
    for via in [Via::Own, Via::Hyper] {
        let r = exchange(proxy.addr, via).await;
        assert!(r.head.starts_with("HTTP/1.1 200"), "{via:?}: {r:?}");
        assert!(r.complete, "{via:?}: the whole body: {r:?}");
        assert_eq!(r.body, body().as_bytes(), "{via:?}");
        assert_eq!(r.header("content-length").as_deref(), Some("2048"));
        assert!(
            r.elapsed >= ms(450),
            "{via:?}: 2 KiB at 4 KiB/s took {:?}",
            r.elapsed
        );
        assert!(r.elapsed < secs(5), "{via:?}: took {:?}", r.elapsed);
    }
    let m = proxy.metrics().await;
    assert_eq!(
        sum(
            &m,
            "palisade_faults_injected_total",
            &[("policy", "/api"), ("kind", "degrade")]
        ),
        2.0,
        "{:?}",
        matching(&m, "palisade_faults_injected_total", &[])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_body_stops_after_its_bytes_and_the_client_sees_it_incomplete() {
    let sized = sized_upstream().await;
    let chunked = chunked_upstream().await;
    for (upstream, framing) in [(sized.addr(), "length"), (chunked, "chunked")] {
        for after in [0usize, 100, 700] {
            let fault = format!(
                "[route.fault]\nbody_percent = 100\nbody = \"truncate\"\ntruncate_after = {after}\n"
            );
            let proxy = Proxy::start(&config(upstream, &fault)).await;
            for via in [Via::Own, Via::Hyper] {
                let case = format!("{framing}, cut after {after}, {via:?}");
                let r = exchange(proxy.addr, via).await;
                assert!(r.head.starts_with("HTTP/1.1 200"), "{case}: {r:?}");
                assert_eq!(r.body.len(), after, "{case}: {r:?}");
                assert_eq!(r.body, body().as_bytes()[..after], "{case}");
                assert!(!r.complete, "{case}: the body looks whole: {r:?}");
                assert!(r.closed, "{case}: the connection stayed open: {r:?}");
                if framing == "length" {
                    assert_eq!(
                        r.header("content-length").as_deref(),
                        Some("2048"),
                        "{case}: the declared length is kept"
                    );
                }
                assert!(r.elapsed < secs(5), "{case}: {:?}", r.elapsed);
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_faults_set_and_cleared_through_the_admin_api() {
    let up = sized_upstream().await;
    let proxy = Proxy::start(&config(up.addr(), "")).await;
    let r = exchange(proxy.addr, Via::Own).await;
    assert!(r.complete && r.body.len() == BODY_LEN, "{r:?}");

    let cut = r#"{"body_percent":100,"body":"truncate","truncate_after":10}"#;
    let r = proxy.admin_post("/admin/route/0/fault", cut).await;
    assert_eq!(r.status, 200, "{r:?}");
    let state = proxy.state().await;
    let fault = &state["routes"][0]["fault"];
    assert_eq!(fault["body_percent"].as_f64(), Some(100.0), "{state}");
    assert_eq!(fault["body"], "truncate", "{state}");
    assert_eq!(fault["truncate_after"], 10, "{state}");
    assert_eq!(fault["body_rate"], 1024, "the default: {state}");
    let r = exchange(proxy.addr, Via::Own).await;
    assert_eq!(r.body.len(), 10, "{r:?}");
    assert!(!r.complete && r.closed, "{r:?}");

    // The same fault at 0 percent leaves every body whole.
    let off = r#"{"body_percent":0,"body":"truncate","truncate_after":10}"#;
    let r = proxy.admin_post("/admin/route/0/fault", off).await;
    assert_eq!(r.status, 200, "{r:?}");
    for via in [Via::Own, Via::Hyper, Via::Own] {
        let r = exchange(proxy.addr, via).await;
        assert!(r.complete, "{via:?}: {r:?}");
        assert_eq!(r.body, body().as_bytes(), "{via:?}");
    }

    // Bad values are refused, saying what is allowed, and change nothing.
    for (json, says) in [
        (r#"{"body_percent":101}"#, "0 to 100"),
        (r#"{"body_percent":-1}"#, "0 to 100"),
        (r#"{"body_percent":100,"body_rate":0}"#, "body_rate 0"),
        (
            r#"{"body_percent":100,"body":"sideways"}"#,
            "unknown variant",
        ),
        (
            r#"{"body_percent":100,"truncate_after":-1}"#,
            "expected u64",
        ),
        (r#"{"body_percent":100,"body_rte":10}"#, "unknown field"),
    ] {
        let r = proxy.admin_post("/admin/route/0/fault", json).await;
        assert_eq!(r.status, 400, "{json}: {r:?}");
        assert!(r.text().contains(says), "{json}: {}", r.text());
    }
    let r = exchange(proxy.addr, Via::Own).await;
    assert!(r.complete && r.body.len() == BODY_LEN, "{r:?}");
    assert_eq!(
        proxy.state().await["routes"][0]["fault"]["body_percent"].as_f64(),
        Some(0.0)
    );
}

/// Body faults are the library's faults: at most `max_concurrent` in progress, a slowed
/// body counting as one until it ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowed_bodies_in_progress_are_capped_by_max_concurrent() {
    let up = sized_upstream().await;
    // 2 KiB at 1 KiB/s: two seconds.
    let fault = "[route.fault]\nbody_percent = 100\nbody_rate = 1024\nmax_concurrent = 1\n";
    let proxy = Proxy::start(&config(up.addr(), fault)).await;
    let slow = tokio::spawn(exchange(proxy.addr, Via::Own));
    eventually("the first body's fault to start", secs(5), async || {
        let m = proxy.metrics().await;
        let started = sum(&m, "palisade_faults_injected_total", &[("kind", "degrade")]);
        (started >= 1.0).then_some(())
    })
    .await;
    let r = exchange(proxy.addr, Via::Own).await;
    assert!(r.complete && r.body.len() == BODY_LEN, "{r:?}");
    assert!(
        r.elapsed < ms(1000),
        "the one slot is taken, this body is not slowed: {:?}",
        r.elapsed
    );
    let r = slow.await.unwrap();
    assert!(r.complete, "{r:?}");
    assert!(r.elapsed >= ms(1800), "{:?}", r.elapsed);
    // Its slot is back: the next body is slowed again.
    let r = exchange(proxy.addr, Via::Own).await;
    assert!(r.elapsed >= ms(1800), "{:?}", r.elapsed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_body_fault_keys_are_config_errors_with_their_line() {
    let up = dead_addr();
    for (keys, says) in [
        (
            "body_percent = 150.0",
            "route[0].fault.body_percent: 150 is out of range; allowed: 0 to 100",
        ),
        (
            "body_rate = 0",
            "route[0].fault.body_rate: 0 is out of range; allowed: 1 to 1073741824 (bytes per second)",
        ),
        (
            "body = \"sideways\"",
            "body: unknown variant `sideways`, expected `slow` or `truncate`",
        ),
        ("truncate_after = -5", "truncate_after: "),
    ] {
        let fault = format!("[route.fault]\nbody_percent = 10\n{keys}\n").replace(
            "body_percent = 10\nbody_percent = 150.0",
            "body_percent = 150.0",
        );
        let text = config_text(
            dead_addr(),
            dead_addr(),
            &Sections::default(),
            &config(up, &fault),
        );
        let line = text
            .lines()
            .position(|l| l == keys)
            .map(|i| i + 1)
            .expect("the key's line");
        let out = check(&text).await;
        assert!(!out.status.success(), "{keys}: {out:?}");
        let expected = format!(":{line}: {says}");
        assert!(
            out.stderr.contains(&expected),
            "{keys}: want {expected:?} in {out:?}"
        );
    }
}

/// A body fault set with a lease ends with it: the config's (none here) is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leased_body_fault_ends_with_its_lease() {
    let up = sized_upstream().await;
    let proxy = Proxy::start(&config(up.addr(), "")).await;
    let cut = r#"{"body_percent":100,"body":"truncate","truncate_after":5}"#;
    let r = proxy
        .admin_post("/admin/route/0/fault?lease=300ms", cut)
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    let r = exchange(proxy.addr, Via::Own).await;
    assert_eq!(r.body.len(), 5, "{r:?}");
    eventually("the lease to run out", secs(5), async || {
        let r = exchange(proxy.addr, Via::Own).await;
        (r.complete && r.body.len() == BODY_LEN).then_some(())
    })
    .await;
    let state = proxy.state().await;
    assert_eq!(
        state["routes"][0]["fault"]["body_percent"].as_f64(),
        Some(0.0),
        "{state}"
    );
}

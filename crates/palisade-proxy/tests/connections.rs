//! Bounds on client connections, on both ports: an HTTP/2 connection with no request in
//! flight is closed after the header timeout (a GOAWAY first), one with requests in flight
//! is not; each port caps its open connections, closing one more at once and accepting
//! again when one ends; the admin port times out idle and half-sent connections. Raw TCP
//! (and hyper's HTTP/2 client) against the real binary.

mod support;

use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio::time::{Instant, timeout};

/// The HTTP/2 connection preface.
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// An empty SETTINGS frame: length 0, type 4, no flags, stream 0.
const SETTINGS: [u8; 9] = [0, 0, 0, 0x4, 0, 0, 0, 0, 0];
/// The GOAWAY frame type.
const GOAWAY: u8 = 0x7;

fn short_header_timeout() -> Sections {
    Sections {
        listener: "header_timeout = \"300ms\"".into(),
        ..Sections::default()
    }
}

fn config(fast: &Upstream, slow: &Upstream) -> String {
    format!(
        r#"
[[upstream]]
name = "fast"
endpoints = ["{}"]

[[upstream]]
name = "slow"
endpoints = ["{}"]

[[route]]
path_prefix = "/fast"
upstream = "fast"

[[route]]
path_prefix = "/slow"
upstream = "slow"
"#,
        fast.addr(),
        slow.addr()
    )
}

/// A proxy in front of a fast upstream and one that answers after a second.
async fn proxy_with(sections: &Sections) -> (Proxy, Upstream, Upstream) {
    let fast = Upstream::start("fast", Behaviour::Ok).await;
    let slow = Upstream::start("slow", Behaviour::Delay(secs(1))).await;
    let proxy = Proxy::start_with(sections, &config(&fast, &slow)).await;
    (proxy, fast, slow)
}

/// Everything the server sends until it closes `s` (or resets it); panics if it is still
/// open after 5 s.
async fn read_to_close(s: &mut TcpStream) -> Vec<u8> {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    let read = timeout(secs(5), async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(
        read.is_ok(),
        "still open after 5 s; received {:?}",
        String::from_utf8_lossy(&seen)
    );
    seen
}

/// The types of the HTTP/2 frames in `bytes`.
fn frame_types(bytes: &[u8]) -> Vec<u8> {
    let mut types = Vec::new();
    let mut at = 0;
    while at + 9 <= bytes.len() {
        let length = usize::from(bytes[at]) << 16
            | usize::from(bytes[at + 1]) << 8
            | usize::from(bytes[at + 2]);
        types.push(bytes[at + 3]);
        at += 9 + length;
    }
    types
}

/// An HTTP/2 connection by hyper's client, and its task (which ends when the
/// connection closes).
async fn h2(addr: SocketAddr) -> (SendRequest<Full<Bytes>>, JoinHandle<()>) {
    let stream = TcpStream::connect(addr).await.expect("connect");
    let (send, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .expect("HTTP/2 handshake");
    let task = tokio::spawn(async move {
        let _ = connection.await;
    });
    (send, task)
}

/// GET `path` on `send`; the status and body.
async fn h2_get(
    mut send: SendRequest<Full<Bytes>>,
    addr: SocketAddr,
    path: &str,
) -> Result<(u16, String), String> {
    let request = hyper::Request::get(format!("http://{addr}{path}"))
        .body(Full::new(Bytes::new()))
        .expect("request");
    let call = async {
        let response = send
            .send_request(request)
            .await
            .map_err(|e| format!("{e:?}"))?;
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("{e:?}"))?
            .to_bytes();
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    };
    timeout(secs(10), call)
        .await
        .unwrap_or_else(|_| Err(format!("GET {path}: no answer within 10 s")))
}

/// The value of `palisade_connections_refused_total{port}` in a `/metrics` text.
fn refused(metrics: &str, port: &str) -> f64 {
    samples(metrics)
        .iter()
        .find(|s| {
            s.name == "palisade_connections_refused_total"
                && s.labels.get("port").map(String::as_str) == Some(port)
        })
        .map_or(0.0, |s| s.value)
}

/// Sends a request head on a new connection to `addr` and asserts that the connection
/// is closed without an answer.
async fn refused_at_once(addr: SocketAddr) {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    // The proxy may have closed it already: a failed write is a refusal too.
    let _ = s
        .write_all(b"GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    let answer = read_to_close(&mut s).await;
    assert!(
        answer.is_empty(),
        "a connection over the cap was answered: {}",
        String::from_utf8_lossy(&answer)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_connection_without_requests_gets_a_goaway_and_is_closed() {
    let (proxy, _fast, _slow) = proxy_with(&short_header_timeout()).await;
    let mut s = TcpStream::connect(proxy.addr).await.expect("connect");
    s.write_all(PREFACE).await.expect("preface");
    s.write_all(&SETTINGS).await.expect("settings");

    let started = Instant::now();
    let received = read_to_close(&mut s).await;
    assert!(
        started.elapsed() >= ms(200),
        "closed after {:?}, before the header timeout",
        started.elapsed()
    );
    assert!(
        frame_types(&received).contains(&GOAWAY),
        "closed without a GOAWAY; frame types {:?}",
        frame_types(&received)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_requests_in_flight_keep_their_connection_which_closes_once_idle() {
    let (proxy, _fast, _slow) = proxy_with(&short_header_timeout()).await;
    let (send, connection) = h2(proxy.addr).await;

    // A second-long request (three header timeouts), and a quick one beside it that
    // ends first: the connection stays while either is in flight.
    let slow = tokio::spawn(h2_get(send.clone(), proxy.addr, "/slow/1"));
    tokio::time::sleep(ms(100)).await;
    let quick = h2_get(send.clone(), proxy.addr, "/fast/1").await;
    assert_eq!(quick.map(|(status, _)| status), Ok(200));
    let slow = slow.await.expect("slow request task");
    assert_eq!(slow, Ok((200, "ok from slow".to_owned())));

    // Idle now: told to go away and closed by the proxy, well within 5 s (the client
    // keeps its handle, so it would keep the connection).
    timeout(secs(5), connection)
        .await
        .expect("the idle HTTP/2 connection is still open 5 s after its last response")
        .expect("connection task");
    drop(send);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_over_the_proxy_port_s_cap_is_closed_until_one_ends() {
    let sections = Sections {
        listener: "max_connections = 2".into(),
        ..Sections::default()
    };
    let (proxy, _fast, _slow) = proxy_with(&sections).await;
    let mut first = Conn::open(proxy.addr).await;
    let mut second = Conn::open(proxy.addr).await;
    assert_eq!(first.get("/fast/1").await.map(|r| r.status), Ok(200));
    assert_eq!(second.get("/fast/2").await.map(|r| r.status), Ok(200));

    refused_at_once(proxy.addr).await;
    assert_eq!(
        second.get("/fast/3").await.map(|r| r.status),
        Ok(200),
        "an open connection suffered from the refusal"
    );

    drop(first);
    eventually(
        "a connection accepted after one ended",
        secs(5),
        async || {
            let mut third = Conn::open(proxy.addr).await;
            third.get("/fast/4").await.ok().map(|r| r.status)
        },
    )
    .await;
    let metrics = proxy.admin_get("/metrics").await.text();
    assert!(refused(&metrics, "proxy") >= 1.0, "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_port_closes_idle_and_half_sent_connections() {
    let sections = Sections {
        admin: "header_timeout = \"300ms\"".into(),
        ..Sections::default()
    };
    let (proxy, _fast, _slow) = proxy_with(&sections).await;

    let mut silent = TcpStream::connect(proxy.admin).await.expect("connect");
    let mut half = TcpStream::connect(proxy.admin).await.expect("connect");
    half.write_all(b"GET /health/live HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("write");
    let mut http2 = TcpStream::connect(proxy.admin).await.expect("connect");
    http2.write_all(PREFACE).await.expect("preface");
    http2.write_all(&SETTINGS).await.expect("settings");
    let mut kept = Conn::open(proxy.admin).await;
    assert_eq!(kept.get("/health/live").await.map(|r| r.status), Ok(200));

    assert!(
        read_to_close(&mut silent).await.is_empty(),
        "a connection that sent nothing was answered"
    );
    assert!(
        read_to_close(&mut half).await.is_empty(),
        "half a request head was answered"
    );
    assert!(frame_types(&read_to_close(&mut http2).await).contains(&GOAWAY));
    eventually(
        "the idle keep-alive connection closed",
        secs(5),
        async || kept.is_closed().then_some(()),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_over_the_admin_port_s_cap_is_closed_until_one_ends() {
    let sections = Sections {
        admin: "max_connections = 2".into(),
        ..Sections::default()
    };
    let (mut proxy, _fast, _slow) = proxy_with(&sections).await;
    // The harness's own client keeps the connection it polled readiness on: let it go.
    proxy.http = Http::new();

    let admin = proxy.admin;
    let (first, mut second) = eventually("two admin connections served", secs(15), async || {
        let mut first = Conn::open(admin).await;
        let mut second = Conn::open(admin).await;
        let served = first
            .get("/health/live")
            .await
            .is_ok_and(|r| r.status == 200)
            && second
                .get("/health/live")
                .await
                .is_ok_and(|r| r.status == 200);
        served.then_some((first, second))
    })
    .await;

    refused_at_once(admin).await;

    drop(first);
    let metrics = eventually(
        "a connection accepted after one ended",
        secs(5),
        async || {
            let mut third = Conn::open(admin).await;
            third.get("/metrics").await.ok().map(|r| r.text())
        },
    )
    .await;
    assert!(refused(&metrics, "admin") >= 1.0, "{metrics}");
    assert_eq!(
        second.get("/health/live").await.map(|r| r.status),
        Ok(200),
        "an open connection suffered from the refusal"
    );
}

//! The sidecar's own HTTP/1.1 server, seen from a client's socket: upstream heads
//! relayed as sent, bodies re-framed, pipelining, the hand-over to hyper for requests
//! with a body, a client's disconnect cancelling its request, and `Connection: close` on
//! the last response before a stop.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;

use support::*;

/// A raw HTTP/1.1 upstream that answers every request with the same bytes, and counts
/// the requests. An answer that starts `HTTP/1.0` is followed by the connection's close
/// (its body ends there); others leave the connection open for the next request.
struct Scripted {
    address: SocketAddr,
    requests: Arc<AtomicUsize>,
}

impl Scripted {
    async fn start(answer: &'static [u8]) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let requests = Arc::new(AtomicUsize::new(0));
        let counted = requests.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let counted = counted.clone();
                tokio::spawn(async move {
                    let mut seen = Vec::new();
                    let mut buf = [0u8; 4096];
                    loop {
                        while let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                            seen.drain(..end + 4);
                            counted.fetch_add(1, Ordering::SeqCst);
                            if stream.write_all(answer).await.is_err()
                                || answer.starts_with(b"HTTP/1.0")
                            {
                                return;
                            }
                        }
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => seen.extend_from_slice(&buf[..n]),
                        }
                    }
                });
            }
        });
        Self { address, requests }
    }
}

/// Sends `request` on a new connection, half-closes it, and reads the whole answer (the
/// proxy closes the connection after it).
async fn half_closed_exchange(proxy: SocketAddr, request: &[u8]) -> String {
    let mut client = TcpStream::connect(proxy).await.expect("connect");
    client.write_all(request).await.expect("write");
    client.shutdown().await.expect("half-close");
    let mut answer = Vec::new();
    timeout(secs(10), client.read_to_end(&mut answer))
        .await
        .expect("an answer within 10 s")
        .expect("read");
    String::from_utf8_lossy(&answer).into_owned()
}

fn route_to(address: SocketAddr) -> String {
    format!(
        r#"
[[upstream]]
name = "api"
endpoints = ["{address}"]

[[route]]
path_prefix = "/"
upstream = "api"
"#
    )
}

/// Reads one response (head and a `Content-Length` or chunked body) from `stream`,
/// leaving anything after it in `pending`. Returns the head's text and the body.
async fn read_response(stream: &mut TcpStream, pending: &mut Vec<u8>) -> (String, Vec<u8>) {
    let end = loop {
        if let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        fill(stream, pending).await;
    };
    let head = String::from_utf8(pending.drain(..end).collect()).expect("text head");
    let lower = head.to_ascii_lowercase();
    let mut body = Vec::new();
    if let Some(length) = lower
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map(|v| v.trim().parse::<usize>().expect("a length"))
    {
        while pending.len() < length {
            fill(stream, pending).await;
        }
        body.extend(pending.drain(..length));
    } else if lower.contains("transfer-encoding: chunked") {
        loop {
            let line_end = loop {
                if let Some(at) = pending.windows(2).position(|w| w == b"\r\n") {
                    break at;
                }
                fill(stream, pending).await;
            };
            let size = std::str::from_utf8(&pending[..line_end]).expect("size");
            let size = usize::from_str_radix(size, 16).expect("hex size");
            while pending.len() < line_end + 2 + size + 2 {
                fill(stream, pending).await;
            }
            body.extend_from_slice(&pending[line_end + 2..line_end + 2 + size]);
            pending.drain(..line_end + 2 + size + 2);
            if size == 0 {
                break;
            }
        }
    }
    (head, body)
}

/// Reads more of the response into `pending`.
async fn fill(stream: &mut TcpStream, pending: &mut Vec<u8>) {
    let mut buf = [0u8; 4096];
    let n = timeout(secs(10), stream.read(&mut buf))
        .await
        .expect("a response within 10 s")
        .expect("read");
    assert!(n > 0, "the connection closed mid-response: {pending:?}");
    pending.extend_from_slice(&buf[..n]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_header_lines_are_relayed_as_sent_without_hop_by_hop_ones() {
    let upstream = Scripted::start(
        b"HTTP/1.1 200 OK\r\nX-Custom:  Mixed Case\r\nConnection: keep-alive\r\n\
          Keep-Alive: timeout=5\r\nDate: Tue, 01 Dec 2026 00:00:00 GMT\r\n\
          Content-Length: 2\r\nX-Last: z\r\n\r\nok",
    )
    .await;
    let proxy = Proxy::start(&route_to(upstream.address)).await;
    let mut client = TcpStream::connect(proxy.addr).await.expect("connect");
    let mut pending = Vec::new();
    for round in 0..2 {
        client
            .write_all(b"GET /a HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .expect("write");
        let (head, body) = read_response(&mut client, &mut pending).await;
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert!(head.contains("\r\nX-Custom:  Mixed Case\r\n"), "{head}");
        assert!(head.contains("\r\nX-Last: z\r\n"), "{head}");
        assert_eq!(head.matches("Date: ").count(), 1, "{head}");
        assert_eq!(
            head.to_ascii_lowercase().matches("date: ").count(),
            1,
            "{head}"
        );
        assert!(!head.to_ascii_lowercase().contains("keep-alive"), "{head}");
        assert!(head.contains("\r\nx-palisade-attempts: 1\r\n"), "{head}");
        assert_eq!(body, b"ok", "round {round}");
    }
    assert_eq!(upstream.requests.load(Ordering::SeqCst), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunked_or_close_delimited_upstream_body_reaches_the_client_chunked() {
    for answer in [
        &b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n"
            [..],
        b"HTTP/1.0 200 OK\r\n\r\nabcdefg",
    ] {
        let upstream = Scripted::start(answer).await;
        let proxy = Proxy::start(&route_to(upstream.address)).await;
        let mut client = TcpStream::connect(proxy.addr).await.expect("connect");
        client
            .write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .expect("write");
        let (head, body) = read_response(&mut client, &mut Vec::new()).await;
        let lower = head.to_ascii_lowercase();
        assert_eq!(
            lower.matches("transfer-encoding: chunked").count(),
            1,
            "{head}"
        );
        assert!(!lower.contains("content-length"), "{head}");
        assert_eq!(body, b"abcdefg");
        // The connection serves on: a second request gets its answer.
        client
            .write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .expect("write");
        let (_, again) = read_response(&mut client, &mut Vec::new()).await;
        assert_eq!(again, b"abcdefg");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_bodies_stream_through_whole_with_a_length_or_chunked() {
    // 1 MiB of varied bytes, with a Content-Length, then chunked in 64 KiB chunks.
    let body: Vec<u8> = (0..1024 * 1024u32).map(|i| (i * 31 % 251) as u8).collect();
    let mut with_length =
        format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
    with_length.extend_from_slice(&body);
    let mut chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for chunk in body.chunks(64 * 1024) {
        chunked.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        chunked.extend_from_slice(chunk);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    for answer in [with_length, chunked] {
        let upstream = Scripted::start(Vec::leak(answer)).await;
        let proxy = Proxy::start(&route_to(upstream.address)).await;
        let mut client = TcpStream::connect(proxy.addr).await.expect("connect");
        let mut pending = Vec::new();
        for _ in 0..2 {
            client
                .write_all(b"GET /big HTTP/1.1\r\nhost: x\r\n\r\n")
                .await
                .expect("write");
            let (head, received) = read_response(&mut client, &mut pending).await;
            assert!(head.starts_with("HTTP/1.1 200"), "{head}");
            assert_eq!(received.len(), body.len());
            assert!(received == body, "the body arrived changed");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_and_304_answers_carry_no_body() {
    let upstream =
        Scripted::start(b"HTTP/1.1 304 Not Modified\r\nETag: \"v1\"\r\nContent-Length: 9\r\n\r\n")
            .await;
    let proxy = Proxy::start(&route_to(upstream.address)).await;
    let mut client = TcpStream::connect(proxy.addr).await.expect("connect");
    let mut pending = Vec::new();
    // A GET and a HEAD, then a GET whose answer shows that nothing followed either
    // head: a body would stand between one head and the next status line.
    client
        .write_all(
            b"GET / HTTP/1.1\r\nhost: x\r\n\r\nHEAD / HTTP/1.1\r\nhost: x\r\n\r\nGET / HTTP/1.1\r\nhost: x\r\n\r\n",
        )
        .await
        .expect("write");
    for _ in 0..3 {
        let end = loop {
            if let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
                break end + 4;
            }
            fill(&mut client, &mut pending).await;
        };
        let head = String::from_utf8(pending.drain(..end).collect()).expect("text");
        assert!(head.starts_with("HTTP/1.1 304 Not Modified\r\n"), "{head}");
        assert!(head.contains("Content-Length: 9\r\n"), "{head}");
    }
    assert!(
        pending.is_empty(),
        "bytes after a bodiless answer: {pending:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_are_answered_in_order() {
    let upstream = Upstream::start("api", Behaviour::Echo).await;
    let proxy = Proxy::start(&route_to(upstream.addr())).await;
    let mut client = TcpStream::connect(proxy.addr).await.expect("connect");
    client
        .write_all(b"GET /first HTTP/1.1\r\nhost: x\r\n\r\nGET /second HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .expect("write");
    let mut pending = Vec::new();
    for path in ["/first", "/second"] {
        let (head, body) = read_response(&mut client, &mut pending).await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        let echoed: serde_json::Value = serde_json::from_slice(&body).expect("echo JSON");
        assert_eq!(echoed["path"], path, "{echoed}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_with_a_body_hands_the_connection_to_hyper_without_losing_a_byte() {
    let upstream = Upstream::start("api", Behaviour::Echo).await;
    let proxy = Proxy::start(&route_to(upstream.addr())).await;
    let mut client = TcpStream::connect(proxy.addr).await.expect("connect");
    // A bodiless GET (the own server), then a POST with a body in the same write as a
    // GET after it (hyper, from the POST on).
    client
        .write_all(b"GET /one HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .expect("write");
    let mut pending = Vec::new();
    let (head, _) = read_response(&mut client, &mut pending).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    client
        .write_all(
            b"POST /two HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\n\r\nhelloGET /three HTTP/1.1\r\nhost: x\r\n\r\n",
        )
        .await
        .expect("write");
    for path in ["/two", "/three"] {
        let (head, body) = read_response(&mut client, &mut pending).await;
        assert!(head.starts_with("HTTP/1.1 200"), "{path}: {head}");
        let echoed: serde_json::Value = serde_json::from_slice(&body).expect("echo JSON");
        assert_eq!(echoed["path"], path, "{echoed}");
    }
    let received = upstream.requests();
    assert_eq!(received.len(), 3);
    assert_eq!(&received[1].body[..], b"hello");
    assert!(received[2].body.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_abort_on_close_a_client_that_disconnects_cancels_its_request_and_frees_its_slot() {
    let upstream = Upstream::start("api", Behaviour::Hang).await;
    let sections = Sections {
        listener: "abort_on_close = true".to_owned(),
        ..Sections::default()
    };
    let proxy = Proxy::start_with(
        &sections,
        &format!(
            r#"
[[upstream]]
name = "api"
endpoints = ["{}"]
[upstream.timeout]
total = "60s"
per_try = "60s"
[upstream.bulkhead]
max_concurrent = 1
max_queue = 0

[[route]]
path_prefix = "/"
upstream = "api"
"#,
            upstream.addr()
        ),
    )
    .await;
    let mut first = TcpStream::connect(proxy.addr).await.expect("connect");
    first
        .write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .expect("write");
    upstream.wait_for(1, secs(10)).await;
    // The one slot is taken: another request is refused at once.
    let refused = proxy.get("/").await;
    assert_eq!(refused.status, 503);
    assert_eq!(refused.reason(), Some("bulkhead-full"));
    assert!(
        refused.header("date").is_some(),
        "the proxy dates its own answers"
    );
    drop(first);
    // The hanging call is cancelled with its client: the slot frees long before the
    // 60 s timeout, and the next request reaches the upstream.
    upstream.set_behaviour(Behaviour::Ok);
    let admitted = eventually("a request admitted", secs(10), async || {
        let r = proxy.get("/").await;
        (r.status == 200).then_some(r)
    })
    .await;
    assert_eq!(admitted.text(), "ok from api");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_response_in_flight_at_a_stop_says_connection_close_and_the_connection_closes() {
    let upstream = Upstream::start("api", Behaviour::Ok).await;
    let mut proxy = Proxy::start(&route_to(upstream.addr())).await;
    // A connection that has been answered once and waits for its next request.
    let mut idle = TcpStream::connect(proxy.addr).await.expect("connect");
    idle.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .expect("write");
    read_response(&mut idle, &mut Vec::new()).await;
    upstream.set_behaviour(Behaviour::Gate);
    let mut client = TcpStream::connect(proxy.addr).await.expect("connect");
    client
        .write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .expect("write");
    upstream.wait_for(2, secs(10)).await;
    proxy.signal("TERM");
    assert!(
        closed_within(&mut idle, secs(5)).await,
        "an idle connection closes at the stop"
    );
    upstream.open_gate();
    let mut pending = Vec::new();
    let (head, body) = read_response(&mut client, &mut pending).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains("\r\nconnection: close\r\n"), "{head}");
    assert_eq!(body, b"ok from api");
    assert!(closed_within(&mut client, secs(5)).await);
    assert!(proxy.wait_exit(secs(10)).await.success());
}

/// A client that half-closes after its request (`shutdown(Write)`) still gets its answer
/// (HAProxy's default; `listener.abort_on_close` cancels instead): on the own server (a
/// bodiless GET) and on hyper's (a POST with a body, which the own server hands over).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_half_closes_after_its_request_is_answered() {
    let upstream = Upstream::start("api", Behaviour::Gate).await;
    let proxy = Proxy::start(&route_to(upstream.addr())).await;
    let requests: [&[u8]; 2] = [
        b"GET /own HTTP/1.1\r\nhost: x\r\n\r\n",
        b"POST /hyper HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\nhi",
    ];
    for (n, request) in requests.into_iter().enumerate() {
        let mut client = TcpStream::connect(proxy.addr).await.expect("connect");
        client.write_all(request).await.expect("write");
        // The request reaches the upstream, which holds it while the client half-closes.
        upstream.wait_for(n + 1, secs(10)).await;
        client.shutdown().await.expect("half-close");
        upstream.open_gate();
        let mut answer = Vec::new();
        timeout(secs(10), client.read_to_end(&mut answer))
            .await
            .expect("an answer within 10 s")
            .expect("read");
        let text = String::from_utf8_lossy(&answer);
        assert!(text.starts_with("HTTP/1.1 200"), "request {n}: {text}");
        upstream.close_gate();
    }
}

/// An upstream's chunked answer with trailers reaches a client that takes them (`TE:
/// trailers`) with its trailers, on the own server (a GET) and on hyper's (a POST, which
/// the own server hands over); the client's `TE: trailers` is passed upstream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trailers_are_relayed_after_a_chunked_body() {
    let upstream = Scripted::start(
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ntrailer: grpc-status\r\n\r\n\
          2\r\nok\r\n0\r\ngrpc-status: 0\r\n\r\n",
    )
    .await;
    let proxy = Proxy::start(&route_to(upstream.address)).await;
    let requests: [&[u8]; 2] = [
        b"GET /own HTTP/1.1\r\nhost: x\r\nte: trailers\r\n\r\n",
        b"POST /hyper HTTP/1.1\r\nhost: x\r\nte: trailers\r\ncontent-length: 2\r\n\r\nhi",
    ];
    for request in requests {
        let text = half_closed_exchange(proxy.addr, request)
            .await
            .to_ascii_lowercase();
        assert!(text.starts_with("http/1.1 200"), "{text}");
        assert!(text.contains("\r\ntrailer: grpc-status\r\n"), "{text}");
        assert!(
            text.ends_with("\r\n2\r\nok\r\n0\r\ngrpc-status: 0\r\n\r\n"),
            "{text}"
        );
    }
    // The client's `TE: trailers` goes upstream (hyper's server sends trailers only to a
    // client that asked; so does a gRPC server).
    let echo = Upstream::start("api", Behaviour::Echo).await;
    let proxy = Proxy::start(&route_to(echo.addr())).await;
    half_closed_exchange(
        proxy.addr,
        b"GET / HTTP/1.1\r\nhost: x\r\nte: gzip, trailers\r\n\r\n",
    )
    .await;
    let received = echo.requests();
    let te: Vec<_> = received[0]
        .headers
        .iter()
        .filter(|(name, _)| name == "te")
        .map(|(_, value)| value.as_str())
        .collect();
    assert_eq!(te, ["trailers"], "{:?}", received[0].headers);
}

/// An upstream's `103 Early Hints` reach the client before the final answer on the own
/// server (a GET), with their lines; hyper's server (a POST, handed over) sends no 1xx
/// answers, and the client gets the final answer alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn early_hints_are_relayed_before_the_final_answer() {
    let upstream = Scripted::start(
        b"HTTP/1.1 103 Early Hints\r\nlink: </style.css>; rel=preload\r\n\r\n\
          HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
    )
    .await;
    let proxy = Proxy::start(&route_to(upstream.address)).await;
    let own = half_closed_exchange(proxy.addr, b"GET / HTTP/1.1\r\nhost: x\r\n\r\n").await;
    assert!(
        own.starts_with(
            "HTTP/1.1 103 Early Hints\r\nlink: </style.css>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\n"
        ),
        "{own}"
    );
    assert!(own.ends_with("\r\n\r\nok"), "{own}");
    let handed = half_closed_exchange(
        proxy.addr,
        b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\nhi",
    )
    .await;
    assert!(handed.starts_with("HTTP/1.1 200 OK\r\n"), "{handed}");
    assert!(!handed.contains("103"), "{handed}");
}

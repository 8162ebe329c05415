//! The client against raw loopback servers: framing both ways, reuse, and failures.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::parse;
use super::{Body, Connection, Error, RequestHead};
use crate::body::{BoxError, ProxyBody, boxed, empty, full};
use crate::h1::framing::{Decoded, Decoder, Invalid};

/// A server that reads one request head (and `body` more bytes), answers `reply`, and
/// returns what it read.
async fn serve_once(
    reply: &'static [u8],
    body: usize,
) -> (Box<Connection>, tokio::task::JoinHandle<Vec<u8>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    let server = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.expect("accept");
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = stream.read(&mut buf).await.expect("read");
            assert!(
                n > 0,
                "client closed early: {}",
                String::from_utf8_lossy(&seen)
            );
            seen.extend_from_slice(&buf[..n]);
            if let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                if seen.len() >= end + 4 + body {
                    break;
                }
            }
        }
        stream.write_all(reply).await.expect("write");
        // Keep the connection open until the client is done with it.
        let _ = stream.read(&mut buf).await;
        seen
    });
    let stream = TcpStream::connect(address).await.expect("connect");
    (Connection::new(stream), server)
}

fn authority() -> http::uri::Authority {
    http::uri::Authority::from_static("upstream:80")
}

/// Sends `request` as the pool does a request it is handed whole.
async fn send(
    conn: Box<Connection>,
    request: Request<ProxyBody>,
) -> Result<Box<Response<Body>>, Error> {
    let (parts, body) = request.into_parts();
    let head = RequestHead::of(&parts);
    conn.send(&head, body, &authority(), |body| body).await
}

fn get(path: &str) -> Request<ProxyBody> {
    Request::get(path).body(empty()).expect("request")
}

#[tokio::test]
async fn a_small_answer_frees_its_connection_with_the_head() {
    let (conn, server) = serve_once(
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-A: b\r\n\r\nok",
        0,
    )
    .await;
    let response = send(conn, get("/x?y=1")).await.expect("response");
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = response.into_body();
    // The header lines are kept as received, for the relay to write through.
    let mut lines = Vec::new();
    body.take_raw().expect("raw lines").write_to(&mut lines);
    assert_eq!(lines, b"Content-Length: 2\r\nX-A: b\r\n");
    assert!(body.is_read(), "the body came with the head");
    let conn = body.take_connection().expect("reusable at once");
    assert!(conn.is_open(false));
    assert!(conn.is_open(true));
    let bytes = body.collect().await.expect("body").to_bytes();
    assert_eq!(bytes, "ok");
    drop(conn);
    let seen = server.await.expect("server");
    assert_eq!(seen, b"GET /x?y=1 HTTP/1.1\r\nhost: upstream:80\r\n\r\n");
}

#[tokio::test]
async fn a_buffered_body_goes_with_its_head_and_a_declared_length() {
    let (conn, server) = serve_once(b"HTTP/1.1 204 No Content\r\n\r\n", 5).await;
    let request = Request::post("/orders")
        .header("content-length", "5")
        .header("host", "client.example")
        .body(full("hello"))
        .expect("request");
    let response = send(conn, request).await.expect("response");
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let mut body = response.into_body();
    assert!(body.is_read());
    assert!(body.take_connection().is_some());
    let seen = server.await.expect("server");
    assert_eq!(
        String::from_utf8_lossy(&seen),
        "POST /orders HTTP/1.1\r\nhost: client.example\r\ncontent-length: 5\r\n\r\nhello"
    );
}

#[tokio::test]
async fn an_unsized_body_is_sent_chunked() {
    let (conn, server) = serve_once(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n", 25).await;
    let chunks = Chunks(["abc", "defghij"].into());
    let request = Request::put("/p").body(boxed(chunks)).expect("request");
    let response = send(conn, request).await.expect("response");
    assert_eq!(response.status(), StatusCode::OK);
    drop(response);
    let seen = server.await.expect("server");
    let seen = String::from_utf8_lossy(&seen).into_owned();
    assert!(
        seen.ends_with("transfer-encoding: chunked\r\n\r\n3\r\nabc\r\n7\r\ndefghij\r\n0\r\n\r\n"),
        "{seen:?}"
    );
}

/// A body of the given chunks, of unknown length.
struct Chunks(std::collections::VecDeque<&'static str>);

impl http_body::Body for Chunks {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, BoxError>>> {
        std::task::Poll::Ready(
            self.0
                .pop_front()
                .map(|c| Ok(http_body::Frame::data(Bytes::from_static(c.as_bytes())))),
        )
    }
}

#[tokio::test]
async fn a_chunked_answer_streams_and_then_frees_its_connection() {
    let (conn, server) = serve_once(
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
          4;ext=1\r\nwiki\r\n5\r\npedia\r\n0\r\nx-trailer: t\r\n\r\n",
        0,
    )
    .await;
    let response = send(conn, get("/")).await.expect("response");
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "the interim 100 is skipped"
    );
    let mut body = response.into_body();
    let mut read = Vec::new();
    let mut trailers = None;
    while let Some(frame) = body.frame().await {
        match frame.expect("frame").into_data() {
            Ok(data) => read.extend_from_slice(&data),
            Err(frame) => trailers = Some(frame.into_trailers().expect("trailers")),
        }
    }
    assert_eq!(read, b"wikipedia");
    let trailers = trailers.expect("the trailer is passed on after the data");
    assert_eq!(trailers.get("x-trailer").expect("x-trailer"), "t");
    assert!(
        body.take_connection().is_some(),
        "reusable after the last chunk"
    );
    drop(body);
    server.await.expect("server");
}

#[tokio::test]
async fn connection_close_and_close_delimited_bodies_are_not_reused() {
    let (conn, server) = serve_once(
        b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\nx",
        0,
    )
    .await;
    let mut body = send(conn, get("/")).await.expect("response").into_body();
    assert!(body.is_read());
    assert!(body.take_connection().is_none());
    drop(body);
    server.await.expect("server");

    let mut framing = Decoder::Eof;
    let mut buf = BytesMut::from(&b"abc"[..]);
    assert_eq!(
        framing.decode(&mut buf, false).expect("decode"),
        Decoded::Data(Bytes::from_static(b"abc"))
    );
    assert_eq!(
        framing.decode(&mut buf, false).expect("decode"),
        Decoded::More
    );
    assert_eq!(
        framing.decode(&mut buf, true).expect("decode"),
        Decoded::End
    );
}

#[tokio::test]
async fn a_closed_connection_is_an_error_not_a_response() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    let server = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.expect("accept");
        let mut buf = [0u8; 1024];
        let _ = stream.read(&mut buf).await;
        // Closed without answering.
    });
    let conn = Connection::new(TcpStream::connect(address).await.expect("connect"));
    let error = send(conn, get("/")).await.expect_err("no answer");
    assert!(matches!(error, Error::Closed | Error::Io(_)), "{error:?}");
    server.await.expect("server");
}

#[tokio::test]
async fn an_idle_connection_closed_by_the_server_is_seen_closed() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    let conn = Connection::new(TcpStream::connect(address).await.expect("connect"));
    let (stream, _) = listener.accept().await.expect("accept");
    assert!(conn.is_open(false));
    assert!(conn.is_open(true));
    drop(stream);
    // Asked to confirm, the kernel tells at once, before the reactor has seen the close.
    assert!(!conn.is_open(true), "a confirmed check missed the close");
    // The reactor learns of the close when it next polls; wait for readability, bounded.
    tokio::time::timeout(Duration::from_secs(5), conn.io.readable())
        .await
        .expect("readable")
        .expect("readiness");
    assert!(!conn.is_open(false));
}

#[test]
fn malformed_heads_and_chunks_are_refused() {
    for head in [
        &b"HTTP/2 200 OK\r\n\r\n"[..],
        b"HTTP/1.1 2x0 OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\n folded: x\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\n",
    ] {
        for keep_raw in [false, true] {
            let mut buf = BytesMut::from(head);
            assert!(
                matches!(parse(&mut buf, false, keep_raw), Err(Error::Malformed(_))),
                "{} (raw: {keep_raw})",
                String::from_utf8_lossy(head)
            );
        }
    }
    let mut partial = BytesMut::from(&b"HTTP/1.1 200 OK\r\ncontent-le"[..]);
    assert!(matches!(
        super::head::parse_full(&mut partial, false),
        Ok(None)
    ));

    let mut framing = Decoder::chunked();
    let mut buf = BytesMut::from(&b"zz\r\n"[..]);
    assert!(matches!(
        framing.decode(&mut buf, false),
        Err(Invalid::Malformed(_))
    ));
    let mut framing = Decoder::chunked();
    let mut buf = BytesMut::from(&b"2\r\nabc\r\n"[..]);
    assert_eq!(
        framing.decode(&mut buf, false).expect("data"),
        Decoded::Data(Bytes::from_static(b"ab"))
    );
    assert!(matches!(
        framing.decode(&mut buf, false),
        Err(Invalid::Malformed(_))
    ));
    let mut framing = Decoder::Length(3);
    let mut buf = BytesMut::from(&b"ab"[..]);
    assert_eq!(
        framing.decode(&mut buf, false).expect("data"),
        Decoded::Data(Bytes::from_static(b"ab"))
    );
    assert!(matches!(
        framing.decode(&mut buf, true),
        Err(Invalid::Incomplete)
    ));
}

#[test]
fn heads_without_a_body_and_http10_framing() {
    let mut buf = BytesMut::from(&b"HTTP/1.1 304 Not Modified\r\ncontent-length: 10\r\n\r\n"[..]);
    let head = super::head::parse_full(&mut buf, false)
        .expect("valid")
        .expect("whole");
    assert!(head.framing.is_done() && head.keep_alive);
    let mut buf = BytesMut::from(&b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n"[..]);
    let head = super::head::parse_full(&mut buf, true)
        .expect("valid")
        .expect("whole");
    assert!(head.framing.is_done(), "the answer to a HEAD has no body");
    let mut buf = BytesMut::from(&b"HTTP/1.0 200 OK\r\ncontent-length: 1\r\n\r\n"[..]);
    let head = super::head::parse_full(&mut buf, false)
        .expect("valid")
        .expect("whole");
    assert!(
        !head.keep_alive,
        "HTTP/1.0 closes unless it says keep-alive"
    );
    let mut buf = BytesMut::from(
        &b"HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\ncontent-length: 1\r\n\r\n"[..],
    );
    let head = super::head::parse_full(&mut buf, false)
        .expect("valid")
        .expect("whole");
    assert!(head.keep_alive);
}

#[tokio::test]
async fn the_proxy_headers_replace_the_clients_and_hop_by_hop_ones_are_not_sent() {
    let (conn, server) = serve_once(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n", 0).await;
    let mut headers = HeaderMap::new();
    for (name, value) in [
        ("x-forwarded-for", "10.0.0.1"),
        ("x-request-timeout", "9000"),
        ("x-request-deadline", "123"),
        ("connection", "keep-alive"),
        ("te", "trailers"),
        ("accept", "*/*"),
    ] {
        headers.append(name, HeaderValue::from_static(value));
    }
    assert!(RequestHead::can_write(&headers));
    let forwarded = HeaderValue::from_static("10.0.0.1, 127.0.0.1");
    let head = RequestHead {
        method: &Method::GET,
        path: "/a",
        headers: &headers,
        host: Some("client.example"),
        forwarded_for: Some(&forwarded),
        timeout: Some((250, None)),
        early_hints: None,
    };
    let response = conn
        .send(&head, empty(), &authority(), |body| body)
        .await
        .expect("response");
    drop(response);
    let seen = String::from_utf8(server.await.expect("server")).expect("ascii");
    // `te: trailers` is the proxy's own: it passes trailers on.
    assert_eq!(
        seen,
        "GET /a HTTP/1.1\r\naccept: */*\r\nhost: client.example\r\n\
         x-forwarded-for: 10.0.0.1, 127.0.0.1\r\nte: trailers\r\nx-request-timeout: 250\r\n\r\n"
    );
    headers.insert(
        "connection",
        HeaderValue::from_static("keep-alive, x-secret"),
    );
    assert!(
        !RequestHead::can_write(&headers),
        "named headers need the full strip"
    );
}

#[test]
fn hop_by_hop_response_headers_are_dropped_unless_connection_names_others() {
    let mut buf = BytesMut::from(
        &b"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\nServer: s\r\ncontent-length: 0\r\n\r\n"[..],
    );
    let head = super::head::parse_full(&mut buf, false)
        .expect("valid")
        .expect("whole");
    assert_eq!(head.headers.len(), 2, "{:?}", head.headers);
    let mut buf = BytesMut::from(
        &b"HTTP/1.1 200 OK\r\nConnection: x-a\r\nx-a: 1\r\ncontent-length: 0\r\n\r\n"[..],
    );
    let head = super::head::parse_full(&mut buf, false)
        .expect("valid")
        .expect("whole");
    assert!(
        head.headers.contains_key("connection"),
        "kept for the relay to apply"
    );
}

/// The header lines a parsed head relays, lower-cased names: its raw lines if kept, else
/// its map.
fn relayed(head: &super::response::ResponseHead) -> Vec<(String, String)> {
    match &head.raw {
        Some(raw) => {
            let mut lines = Vec::new();
            raw.write_to(&mut lines);
            String::from_utf8_lossy(&lines)
                .split("\r\n")
                .filter_map(|line| line.split_once(':'))
                .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
                .collect()
        }
        None => head
            .headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or("").to_owned()))
            .collect(),
    }
}

fn lengths(head: &super::response::ResponseHead) -> Vec<String> {
    relayed(head)
        .into_iter()
        .filter(|(n, _)| n == "content-length")
        .map(|(_, v)| v)
        .collect()
}

#[test]
fn content_length_is_relayed_once_and_never_beside_a_coding_or_on_a_204() {
    let cases: [(&[u8], &[&str]); 5] = [
        (b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n", &["5"]),
        (
            b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nContent-Length: 5\r\n\r\n",
            &["5"],
        ),
        (b"HTTP/1.1 200 OK\r\ncontent-length: 5, 5\r\n\r\n", &["5"]),
        (
            b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\ntransfer-encoding: chunked\r\n\r\n",
            &[],
        ),
        (b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n", &[]),
    ];
    for (wire, expected) in cases {
        for keep_raw in [false, true] {
            let mut buf = BytesMut::from(wire);
            let head = parse(&mut buf, false, keep_raw)
                .expect("valid")
                .expect("whole");
            assert_eq!(
                lengths(&head),
                expected,
                "{} (raw: {keep_raw})",
                String::from_utf8_lossy(wire)
            );
        }
    }
    let mut buf = BytesMut::from(
        &b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\ntransfer-encoding: chunked\r\n\r\n"[..],
    );
    let head = super::parse_response(&mut buf, false)
        .expect("valid")
        .expect("whole");
    assert_eq!(
        head.framing,
        Decoder::chunked(),
        "the coding frames the body"
    );
    assert!(
        !head.keep_alive,
        "an ambiguous message's connection is not reused"
    );
}

#[test]
fn a_head_over_the_limit_is_refused_even_when_it_arrived_whole() {
    let mut wire = b"HTTP/1.1 200 OK\r\n".to_vec();
    let line = format!("x-big: {}\r\n", "a".repeat(8 * 1024));
    while wire.len() <= super::response::MAX_HEAD {
        wire.extend_from_slice(line.as_bytes());
    }
    wire.extend_from_slice(b"content-length: 0\r\n\r\n");
    for keep_raw in [false, true] {
        let mut buf = BytesMut::from(&wire[..]);
        assert!(
            matches!(parse(&mut buf, false, keep_raw), Err(Error::Malformed(_))),
            "raw: {keep_raw}"
        );
    }
}

#[test]
fn a_transfer_coding_other_than_chunked_is_refused() {
    for head in [
        &b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\n\r\n"[..],
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\ntransfer-encoding: chunked\r\n\r\n",
    ] {
        for keep_raw in [false, true] {
            let mut buf = BytesMut::from(head);
            assert!(
                matches!(parse(&mut buf, false, keep_raw), Err(Error::Malformed(_))),
                "{} (raw: {keep_raw})",
                String::from_utf8_lossy(head)
            );
        }
    }
}

// === properties of the parsers: no input panics, framing round-trips ===

/// Feeds `wire` to a chunked decoder in pieces of the given sizes; returns the body, or
/// the error, once the decoder says the body ended or the input ran out.
fn decode_chunked_in_pieces(wire: &[u8], pieces: &[usize]) -> Result<Vec<u8>, Error> {
    let mut framing = Decoder::chunked();
    let mut buf = BytesMut::new();
    let mut body = Vec::new();
    let mut rest = wire;
    let mut sizes = pieces.iter().cycle();
    loop {
        let n = sizes
            .next()
            .copied()
            .unwrap_or(1)
            .clamp(1, 64)
            .min(rest.len());
        buf.extend_from_slice(&rest[..n]);
        rest = &rest[n..];
        loop {
            match framing.decode(&mut buf, rest.is_empty())? {
                Decoded::Data(data) => body.extend_from_slice(&data),
                Decoded::Trailer(_) => {}
                Decoded::End => return Ok(body),
                Decoded::More => break,
            }
        }
        if rest.is_empty() {
            return Err(Error::Incomplete);
        }
    }
}

proptest::proptest! {
    #[test]
    fn no_response_head_panics_the_parser(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512), head_request: bool, keep_raw: bool) {
        let mut buf = BytesMut::from(&bytes[..]);
        let before = buf.len();
        if let Ok(Some(_)) = parse(&mut buf, head_request, keep_raw) {
            // A head was split off: what it consumed ended with its empty line.
            let consumed = before - buf.len();
            proptest::prop_assert!(consumed >= 2 && bytes[consumed - 1] == b'\n');
        }
    }

    #[test]
    fn no_input_panics_the_chunk_decoder(bytes in proptest::collection::vec(proptest::num::u8::ANY, 1..512), pieces in proptest::collection::vec(1usize..64, 1..8)) {
        let _ = decode_chunked_in_pieces(&bytes, &pieces);
    }

    #[test]
    fn chunked_bodies_decode_to_what_was_sent(
        chunks in proptest::collection::vec(proptest::collection::vec(proptest::num::u8::ANY, 1..100), 0..8),
        pieces in proptest::collection::vec(1usize..64, 1..8),
    ) {
        let mut wire = Vec::new();
        for chunk in &chunks {
            wire.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
            wire.extend_from_slice(chunk);
            wire.extend_from_slice(b"\r\n");
        }
        wire.extend_from_slice(b"0\r\n\r\n");
        let body = decode_chunked_in_pieces(&wire, &pieces).expect("a well-formed body");
        proptest::prop_assert_eq!(body, chunks.concat());
    }
}

/// A body that sends `first`, then never ends (a client still uploading).
struct Endless(Option<&'static str>);

impl http_body::Body for Endless {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, BoxError>>> {
        match self.0.take() {
            Some(first) => std::task::Poll::Ready(Some(Ok(http_body::Frame::data(
                Bytes::from_static(first.as_bytes()),
            )))),
            None => std::task::Poll::Pending,
        }
    }
}

#[tokio::test]
async fn an_early_final_answer_stops_the_body_and_is_relayed() {
    // The endpoint answers as soon as the head is in, without reading the body.
    let (conn, _server) = serve_once(
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 413 Payload Too Large\r\ncontent-length: 4\r\n\r\nbig!",
        0,
    )
    .await;
    let request = Request::post("/upload")
        .body(boxed(Endless(Some("the first piece"))))
        .expect("request");
    let response = tokio::time::timeout(Duration::from_secs(5), send(conn, request))
        .await
        .expect("the early answer came before the body ended")
        .expect("response");
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let mut body = response.into_body();
    let bytes = (&mut body).collect().await.expect("body").to_bytes();
    assert_eq!(&bytes[..], b"big!");
    assert!(
        body.take_connection().is_none(),
        "a connection whose request was cut short is not reused"
    );
}

/// The fields of the trailers after `wire`'s chunked body, as a streamed body reads them.
async fn trailers_of(wire: &'static [u8]) -> Result<Option<HeaderMap>, Error> {
    let (conn, server) = serve_once(wire, 0).await;
    let response = send(conn, get("/")).await?;
    let mut body = response.into_body();
    let mut trailers = None;
    while let Some(frame) = body.frame().await {
        if let Err(frame) = frame?.into_data() {
            trailers = frame.into_trailers().ok();
        }
    }
    drop(body);
    server.abort();
    Ok(trailers)
}

#[tokio::test]
async fn trailers_are_passed_on_without_the_fields_trailers_may_not_carry() {
    let trailers = trailers_of(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: grpc-status\r\n\r\n\
          2\r\nok\r\n0\r\ngrpc-status: 0\r\nContent-Length: 99\r\nHost: evil\r\n\
          grpc-message: fine\r\n\r\n",
    )
    .await
    .expect("body")
    .expect("trailers");
    assert_eq!(trailers.get("grpc-status").expect("grpc-status"), "0");
    assert_eq!(trailers.get("grpc-message").expect("grpc-message"), "fine");
    assert_eq!(
        trailers.len(),
        2,
        "framing and routing fields dropped: {trailers:?}"
    );
    // Only dropped fields: no trailers frame at all.
    let none = trailers_of(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\nContent-Length: 2\r\n\r\n",
    )
    .await
    .expect("body");
    assert!(none.is_none(), "{none:?}");
}

#[tokio::test]
async fn a_folded_invalid_or_endless_trailer_section_fails_the_body() {
    for wire in [
        &b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nx-a: 1\r\n  folded\r\n\r\n"[..],
        &b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nno colon here\r\n\r\n"[..],
    ] {
        let wire: &'static [u8] = wire;
        assert!(
            matches!(trailers_of(wire).await, Err(Error::Malformed(_))),
            "{}",
            String::from_utf8_lossy(wire)
        );
    }
    let mut endless = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n".to_vec();
    for n in 0..=100 {
        endless.extend_from_slice(format!("x-{n}: v\r\n").as_bytes());
    }
    endless.extend_from_slice(b"\r\n");
    let endless: &'static [u8] = endless.leak();
    assert!(matches!(
        trailers_of(endless).await,
        Err(Error::Malformed("too many trailer fields"))
    ));
}

#[test]
fn more_than_100_response_headers_are_refused() {
    let mut wire = b"HTTP/1.1 200 OK\r\n".to_vec();
    for n in 0..=super::response::MAX_HEADERS {
        wire.extend_from_slice(format!("x-{n}: v\r\n").as_bytes());
    }
    wire.extend_from_slice(b"\r\n");
    for keep_raw in [false, true] {
        let mut buf = BytesMut::from(&wire[..]);
        assert!(
            matches!(
                parse(&mut buf, false, keep_raw),
                Err(Error::Malformed("too many response headers"))
            ),
            "raw: {keep_raw}"
        );
    }
    // One fewer is taken.
    let mut wire = b"HTTP/1.1 200 OK\r\n".to_vec();
    for n in 0..super::response::MAX_HEADERS {
        wire.extend_from_slice(format!("x-{n}: v\r\n").as_bytes());
    }
    wire.extend_from_slice(b"\r\n");
    assert!(matches!(
        parse(&mut BytesMut::from(&wire[..]), false, true),
        Ok(Some(_))
    ));
}

#[test]
fn a_chunk_line_longer_than_4_kib_fails_the_body() {
    let mut framing = Decoder::chunked();
    let mut buf = BytesMut::from(format!("1{}", "0".repeat(5000)).as_bytes());
    assert!(matches!(
        framing.decode(&mut buf, false),
        Err(Invalid::Malformed("chunk line too long"))
    ));
}

#[tokio::test]
async fn a_switch_of_protocols_on_a_pooled_connection_is_refused() {
    let (conn, server) = serve_once(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
        0,
    )
    .await;
    assert!(matches!(
        send(conn, get("/")).await,
        Err(Error::Malformed("protocol upgrades are not relayed"))
    ));
    server.abort();
}

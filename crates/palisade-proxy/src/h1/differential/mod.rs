//! The sidecar's HTTP/1 parsing beside hyper's, on the same bytes.
//!
//! A proxy and the next hop must agree on where a message ends, or one message becomes
//! two (request smuggling, response desync). Each case here is fed whole to the sidecar
//! and to hyper, and what each makes of it is compared:
//! - a response (interim answers, the final head, body bytes, then the connection's
//!   close), as the answer to a `GET` or a `HEAD`, to the sidecar's HTTP/1 client (the
//!   pool's `Connection` on a loopback socket: its response parse, the body's decoder
//!   and its trailer checks) and to hyper's HTTP/1 client (`client::conn::http1` over an
//!   in-memory pipe). Whenever both read it, they read the same status and the same body
//!   bytes, which also says they chose the same framing (a length, chunks, or the close).
//!   The sidecar reads nothing hyper refuses. Where the sidecar refuses what hyper
//!   reads, it is with the refusal, and for the reason, written in
//!   [`stricter_on_purpose`];
//! - a request head the own server takes (`server::request::parse`) to hyper's HTTP/1
//!   server: hyper takes it too, with the same method, target and header values (in
//!   their order for each name; names in any order), and finds no body after it (the
//!   own server takes only bodiless requests, and reads the next bytes as the next
//!   request).
//!
//! Disagreements this comparison found were fixed in the parser; each is held by a named
//! regression test below.
//!
//! Cases are built from pieces chosen to stress framing: lengths (equal and conflicting
//! duplicates, lists, signs, spaces, leading zeros, overflow), transfer codings (chunked,
//! others, lists with empty elements, both with a length, on HTTP/1.0), chunks (sizes in
//! every spelling, extensions, bad hex, overflow, bare LF and stray CR line ends,
//! trailers, cut short), interim answers (with their own framing headers), bodiless
//! statuses and `HEAD`, folded and malformed lines, bare LF line ends in heads, odd
//! versions and status lines. The seed is fixed: every run tries the same cases.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::Method;
use http_body::Body as _;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use proptest::prelude::*;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::client::{Connection, RequestHead};
use super::server::request;

/// What one side made of a response: refused (with its error), or its status and body.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Read {
    Refused(String),
    Accepted { status: u16, body: Vec<u8> },
}

/// Reads what a client sends through the end of its head (the requests here have no
/// body), or to its close.
async fn read_head<S: AsyncRead + Unpin>(stream: &mut S) {
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
        }
    }
}

/// The sidecar's HTTP/1 client as the pool drives it: `method /` sent on a loopback
/// connection whose other end answers `wire` and closes; the response read, and its
/// body read to the end.
async fn sidecar(method: &Method, wire: &'static [u8]) -> Read {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    let upstream = tokio::spawn(async move {
        let Ok((mut stream, _)) = listener.accept().await else {
            return;
        };
        read_head(&mut stream).await;
        let _ = stream.write_all(wire).await;
        let _ = stream.shutdown().await;
        // Open until the client is done with it, so that nothing it has not read yet
        // is reset.
        let mut sink = [0u8; 1024];
        while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
    });
    let stream = TcpStream::connect(address).await.expect("connect");
    let request = http::Request::builder()
        .method(method.clone())
        .uri("/")
        .header("host", "x")
        .body(crate::body::empty())
        .expect("a request");
    let (parts, body) = request.into_parts();
    let head = RequestHead::of(&parts);
    let authority = http::uri::Authority::from_static("x");
    let sent = Connection::new(stream)
        .send(&head, body, &authority, |body| body)
        .await;
    let read = match sent {
        Ok(response) => {
            let status = response.status().as_u16();
            match response.into_body().collect().await {
                Ok(collected) => Read::Accepted {
                    status,
                    body: collected.to_bytes().to_vec(),
                },
                Err(error) => Read::Refused(error.to_string()),
            }
        }
        Err(error) => Read::Refused(error.to_string()),
    };
    let _ = upstream.await;
    read
}

/// hyper's HTTP/1 client, sending `method /` over an in-memory connection whose other
/// end answers `wire` and closes.
async fn hyper_client(method: &Method, wire: &'static [u8]) -> Read {
    let (client, mut server) = tokio::io::duplex(1 << 20);
    let handshake = hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(client));
    let Ok((mut sender, connection)) = handshake.await else {
        return Read::Refused("handshake".into());
    };
    let driven = tokio::spawn(connection);
    let request = http::Request::builder()
        .method(method.clone())
        .uri("/")
        .header("host", "x")
        .body(Empty::new());
    let Ok(request) = request else {
        return Read::Refused("request".into());
    };
    let sent = tokio::spawn(async move { sender.send_request(request).await });
    // The answer goes once the request is in, as a server's would.
    read_head(&mut server).await;
    let _ = server.write_all(wire).await;
    let _ = server.shutdown().await;
    let read = match sent.await {
        Ok(Ok(response)) => {
            let status = response.status().as_u16();
            match response.into_body().collect().await {
                Ok(collected) => Read::Accepted {
                    status,
                    body: collected.to_bytes().to_vec(),
                },
                Err(error) => Read::Refused(format!("{error:?}")),
            }
        }
        Ok(Err(error)) => Read::Refused(format!("{error:?}")),
        Err(error) => Read::Refused(error.to_string()),
    };
    drop(server);
    driven.abort();
    read
}

/// One response head as httparse reads it (both sides read heads with httparse, with
/// its default settings).
struct Head {
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    version: u8,
    status: u16,
    /// Names lowercased, values as sent.
    fields: Vec<(String, Vec<u8>)>,
}

impl Head {
    fn values<'h>(&'h self, name: &'h str) -> impl Iterator<Item = &'h [u8]> + 'h {
        self.fields
            .iter()
            .filter(move |(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
    }
}

/// The heads at the start of `wire` (interim answers, then the final one, as far as
/// httparse reads them) and the bytes after the last one read.
fn heads(wire: &[u8]) -> (Vec<Head>, &[u8]) {
    let mut heads = Vec::new();
    let mut rest = wire;
    loop {
        let mut fields = [httparse::EMPTY_HEADER; 128];
        let mut response = httparse::Response::new(&mut fields);
        let Ok(httparse::Status::Complete(len)) = response.parse(rest) else {
            return (heads, rest);
        };
        let status = response.code.unwrap_or(0);
        heads.push(Head {
            version: response.version.unwrap_or(1),
            status,
            fields: response
                .headers
                .iter()
                .map(|f| (f.name.to_ascii_lowercase(), f.value.to_vec()))
                .collect(),
        });
        rest = &rest[len..];
        if !(100..200).contains(&status) || status == 101 {
            return (heads, rest);
        }
    }
}

/// The elements of a comma-separated field value, trimmed of spaces and tabs.
fn elements(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(|e| e.trim_ascii_start().trim_ascii_end())
}

/// The final head frames a body by chunks, as the sidecar reads it: a status and a
/// request that allow a body, and `chunked` last in the last `Transfer-Encoding` line
/// (empty list elements skipped, RFC 9110 §5.6.1).
fn chunked_by_sidecar(heads: &[Head], method: &Method) -> bool {
    let Some(last) = heads.last() else {
        return false;
    };
    let bodiless = *method == Method::HEAD || matches!(last.status, 100..=199 | 204 | 304);
    !bodiless
        && last.values("transfer-encoding").last().is_some_and(|v| {
            elements(v)
                .filter(|e| !e.is_empty())
                .last()
                .is_some_and(|e| e.eq_ignore_ascii_case(b"chunked"))
        })
}

/// What a walk over a chunked body, line by line, saw on the way.
#[derive(Default)]
struct Chunks {
    /// A chunk size of more than 15 hex digits.
    long_size: bool,
}

/// The next line of `bytes` (up to a LF, less one CR before it) and what follows.
fn next_line(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let at = memchr::memchr(b'\n', bytes)?;
    let line = &bytes[..at];
    Some((line.strip_suffix(b"\r").unwrap_or(line), &bytes[at + 1..]))
}

/// Walks the chunked `body` chunk by chunk, up to where it ends or its framing breaks.
fn walk_chunks(mut body: &[u8]) -> Chunks {
    let mut seen = Chunks::default();
    loop {
        let Some((line, rest)) = next_line(body) else {
            return seen;
        };
        body = rest;
        let token = line.split(|&b| b == b';').next().unwrap_or(line);
        let digits = token.trim_ascii();
        if digits.is_empty() || !digits.iter().all(u8::is_ascii_hexdigit) {
            return seen;
        }
        if digits.len() > 15 {
            seen.long_size = true;
            return seen;
        }
        let size = digits.iter().fold(0usize, |n, &d| {
            n * 16 + (d as char).to_digit(16).unwrap_or(0) as usize
        });
        if size == 0 || body.len() < size {
            return seen;
        }
        body = &body[size..];
        match next_line(body) {
            Some(([], rest)) => body = rest,
            _ => return seen,
        }
    }
}

/// Where the sidecar refuses, on purpose, a response hyper reads: the refusals that the
/// heads and body of the response justify, each for the reason written beside it. The
/// sidecar's refusal must be one of them: a refusal for any other reason is a
/// difference.
fn stricter_on_purpose(heads: &[Head], body: &[u8], method: &Method) -> Vec<&'static str> {
    let mut allowed = Vec::new();
    let codings = || heads.iter().flat_map(|h| h.values("transfer-encoding"));
    if codings()
        .flat_map(elements)
        .any(|coding| !coding.is_empty() && !coding.eq_ignore_ascii_case(b"chunked"))
    {
        // A transfer coding other than chunked, in any head: `Transfer-Encoding` is
        // hop-by-hop, so the client would get coded bytes with nothing saying so; the
        // exchange fails (502). hyper reads such a body to the close, or ignores the
        // coding where no body follows (interim answers, 204, 304, HEAD).
        allowed.push("unsupported transfer coding");
    }
    if codings().flat_map(elements).any(<[u8]>::is_empty) {
        // An empty element in a coding list (`chunked,`): RFC 9110 §5.6.1 skips it, hyper
        // reads it as a coding other than chunked; no reading of it is safe to relay, so
        // the exchange fails (502).
        allowed.push("empty transfer coding");
    }
    if heads
        .iter()
        .any(|h| h.version == 0 && h.values("transfer-encoding").next().is_some())
    {
        // A transfer coding in an HTTP/1.0 head is faulty framing (RFC 9112 §6.1): hyper
        // refuses it too where it frames a body, but ignores it where no body follows
        // (interim answers, 204, 304, HEAD); the sidecar refuses it whatever the status.
        allowed.push("transfer-encoding in an HTTP/1.0 response");
    }
    let bad_length = heads.iter().any(|h| {
        // Each element as the sidecar reads it: up to 19 digits, else invalid.
        let lengths: Vec<Option<u64>> = h
            .values("content-length")
            .flat_map(elements)
            .map(|n| {
                let digits = !n.is_empty() && n.len() <= 19 && n.iter().all(u8::is_ascii_digit);
                digits.then(|| std::str::from_utf8(n).ok()?.parse().ok())?
            })
            .collect();
        lengths.contains(&None) || lengths.windows(2).any(|pair| pair[0] != pair[1])
    });
    if bad_length {
        // An invalid or conflicting `Content-Length` is an unrecoverable error (RFC 9112
        // §6.3) in any head: hyper does not look at it where a coding frames the body,
        // where no body follows, or in an interim answer, and the sidecar refuses it
        // there too. Over 19 digits is invalid to the sidecar (it has no overflow to
        // check), even zeros before a small number that hyper reads.
        allowed.push("invalid content-length");
        allowed.push("conflicting content-length");
    }
    if heads.iter().any(|h| h.status == 101) {
        // A pooled connection never switches protocols: upgrades go through a tunnel
        // of their own, not the pooled client.
        allowed.push("protocol upgrades are not relayed");
    }
    if chunked_by_sidecar(heads, method) && walk_chunks(body).long_size {
        // A chunk size of more than 15 hex digits: the sidecar's decoder caps the size
        // there (so that it never overflows); hyper reads up to 16 significant digits
        // and any zeros before them. No real chunk is 2^60 bytes long; what the cap
        // refuses that hyper reads is a size padded with zeros.
        allowed.push("invalid chunk size");
    }
    allowed
}

/// Runs `future` on a paused current-thread runtime (nothing here waits on real time).
fn run<F: std::future::Future>(future: F) -> F::Output {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .expect("a runtime");
    runtime.block_on(future)
}

/// Both sides' reading of `wire` as the answer to `method`.
fn both(method: &Method, wire: &[u8]) -> (Read, Read) {
    let wire: &'static [u8] = wire.to_vec().leak();
    run(async {
        (
            sidecar(method, wire).await,
            hyper_client(method, wire).await,
        )
    })
}

/// The comparison of one response (see the module's doc); `Err` says how they differ.
fn compare_response(method: &Method, wire: &[u8]) -> Result<(), String> {
    let (ours, theirs) = both(method, wire);
    let shown = String::from_utf8_lossy(wire);
    let (heads, body) = heads(wire);
    if ours == theirs {
        return Ok(());
    }
    match (&ours, &theirs) {
        (Read::Refused(_), Read::Refused(_)) => Ok(()),
        (Read::Accepted { .. }, Read::Accepted { .. }) => Err(format!(
            "{method} answered {shown:?}: both read it, differently: sidecar {ours:?}, hyper \
             {theirs:?}"
        )),
        (Read::Accepted { .. }, Read::Refused(why)) => Err(format!(
            "{method} answered {shown:?}: the sidecar reads it ({ours:?}), hyper refuses it \
             ({why})"
        )),
        (Read::Refused(why), Read::Accepted { .. }) => {
            let allowed = stricter_on_purpose(&heads, body, method);
            if allowed.iter().any(|refusal| why.contains(refusal)) {
                Ok(())
            } else {
                Err(format!(
                    "{method} answered {shown:?}: the sidecar refuses it ({why}), hyper reads \
                     it ({theirs:?}); refusals on purpose here: {allowed:?}"
                ))
            }
        }
    }
}

/// Line ends: bit `i` of the mask ends line `i` with a bare LF, else with CRLF.
mod regressions;
mod requests;
mod responses;

use requests::{compare_request, request_head};
use responses::response;

proptest! {
    // Seeded: every run (CI's included) tries the same cases; found differences are
    // kept as named tests below.
    #![proptest_config(ProptestConfig {
        cases: 2048,
        rng_seed: proptest::test_runner::RngSeed::Fixed(0x4831_d1ff),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn responses_are_framed_as_hyper_frames_them((method, wire) in response()) {
        if let Err(difference) = compare_response(&method, &wire) {
            prop_assert!(false, "{}", difference);
        }
    }

    #[test]
    fn request_heads_the_own_server_takes_are_read_as_hyper_reads_them(head in request_head()) {
        if let Err(difference) = compare_request(&head) {
            prop_assert!(false, "{}", difference);
        }
    }
}

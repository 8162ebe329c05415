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
//! Disagreements this comparison found and the parser does not settle yet are listed in
//! [`open_disagreement`], each in its exact shape (which side reads what) and each held
//! by an ignored regression test below: they are bugs to fix, not rules.
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

/// What a walk over a chunked body, line by line as the sidecar's decoder splits it,
/// saw on the way.
#[derive(Default)]
struct Chunks {
    /// A framing line hyper's decoder refuses and the sidecar's reads: one ending in a
    /// bare LF, one with a CR inside it, a size with whitespace before it or with other
    /// whitespace than spaces and tabs after it.
    lenient: bool,
    /// A chunk size of more than 15 hex digits.
    long_size: bool,
}

/// The next line of `bytes` split as the sidecar's decoder splits it (up to a LF, less
/// one CR before it), whether it ends in CRLF and has no other CR, and what follows.
fn next_line(bytes: &[u8]) -> Option<(&[u8], bool, &[u8])> {
    let at = memchr::memchr(b'\n', bytes)?;
    let (line, crlf) = match bytes[..at].strip_suffix(b"\r") {
        Some(line) => (line, true),
        None => (&bytes[..at], false),
    };
    Some((line, crlf && !line.contains(&b'\r'), &bytes[at + 1..]))
}

/// Walks the chunked `body` as the sidecar's decoder reads it, up to where it ends or
/// would be refused.
fn walk_chunks(mut body: &[u8]) -> Chunks {
    let mut seen = Chunks::default();
    loop {
        let Some((line, strict, rest)) = next_line(body) else {
            return seen;
        };
        body = rest;
        let token = line.split(|&b| b == b';').next().unwrap_or(line);
        let digits = token.trim_ascii();
        let spaced = !token.starts_with(digits)
            || !token[digits.len()..]
                .iter()
                .all(|&b| b == b' ' || b == b'\t');
        seen.lenient |= !strict || spaced;
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
        if size == 0 {
            // The trailer section, up to its empty line.
            while let Some((line, strict, rest)) = next_line(body) {
                seen.lenient |= !strict;
                body = rest;
                if line.is_empty() {
                    break;
                }
            }
            return seen;
        }
        if body.len() < size {
            return seen;
        }
        body = &body[size..];
        let Some((line, strict, rest)) = next_line(body) else {
            return seen;
        };
        seen.lenient |= !strict;
        if !line.is_empty() {
            return seen;
        }
        body = rest;
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

/// A disagreement this comparison found that the sidecar's parser has not settled yet,
/// if the case is one, in the exact shape found: which side reads what. Each names the
/// ignored regression test that holds it; when the parser is fixed, the test is
/// un-ignored and its entry here removed (or, for a fix that makes the sidecar refuse,
/// moved to [`stricter_on_purpose`] with its reason).
fn open_disagreement(
    heads: &[Head],
    body: &[u8],
    method: &Method,
    ours: &Read,
    theirs: &Read,
) -> Option<&'static str> {
    let empty_last_coding = heads.last().is_some_and(|h| {
        h.values("transfer-encoding")
            .last()
            .is_some_and(|v| elements(v).last().is_some_and(<[u8]>::is_empty))
    });
    // The sidecar's refusals of a body that is not the chunks it expects.
    let refuses_chunks = |why: &str| {
        ["chunk", "trailer", "before the response ended"]
            .iter()
            .any(|r| why.contains(r))
    };
    let ours_reads_chunks = match ours {
        Read::Accepted { .. } => true,
        Read::Refused(why) => refuses_chunks(why),
    };
    if matches!(theirs, Read::Accepted { .. })
        && ours_reads_chunks
        && empty_last_coding
        && chunked_by_sidecar(heads, method)
    {
        // `Transfer-Encoding: chunked,`: the sidecar skips the empty element and reads
        // chunks; hyper takes the last element, empty, for a coding other than chunked
        // and reads to the close. They read different bodies, or the sidecar refuses
        // chunks that are not there.
        return Some("a_coding_list_ending_in_an_empty_element_is_not_read_two_ways");
    }
    // hyper refused the body, not the head: its chunked decoder, or its parse of the
    // trailer section that decoder gathered (a bare LF makes two lines of one there).
    let refused_by_hyper_decoder = matches!(
        theirs,
        Read::Refused(why) if why.starts_with("hyper::Error(Body")
    );
    if matches!(ours, Read::Accepted { .. })
        && refused_by_hyper_decoder
        && chunked_by_sidecar(heads, method)
        && walk_chunks(body).lenient
    {
        // Chunk framing lines that hyper refuses (RFC 9112 §7.1: each ends in CRLF; the
        // size is the line's first bytes) and the sidecar's decoder reads: a bare LF
        // line end, a stray CR, whitespace before the size or other than SP/HTAB after.
        return Some("chunk_lines_that_hyper_refuses_are_refused");
    }
    None
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
    if open_disagreement(&heads, body, method, &ours, &theirs).is_some() {
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
fn line_ends() -> impl Strategy<Value = u32> {
    prop_oneof![
        6 => Just(0u32),
        1 => Just(u32::MAX),
        2 => any::<u32>(),
    ]
}

/// `lines` joined, each ended as `ends` says (an empty line ends a head).
fn join(lines: &[&[u8]], ends: u32) -> Vec<u8> {
    let mut wire = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        wire.extend_from_slice(line);
        let lf = i < 32 && ends & (1 << i) != 0;
        wire.extend_from_slice(if lf { b"\n" } else { b"\r\n" });
    }
    wire
}

/// Interim answers, their heads without the empty line that ends them.
const INTERIM: &[&[u8]] = &[
    b"HTTP/1.1 100 Continue",
    b"HTTP/1.1 103 Early Hints\r\nLink: </a>",
    b"HTTP/1.1 102 Processing",
    b"HTTP/1.1 199 Odd",
    b"HTTP/1.0 100 Continue",
    b"HTTP/1.1 100 Continue\r\nContent-Length: 5",
    b"HTTP/1.1 100 Continue\r\nContent-Length: x",
    b"HTTP/1.1 100 Continue\r\nTransfer-Encoding: chunked",
    b"HTTP/1.1 100 Continue\r\nTransfer-Encoding: gzip",
    b"HTTP/1.0 100 Continue\r\nTransfer-Encoding: chunked",
];

/// Final status lines a reader may take.
const STATUS: &[&[u8]] = &[
    b"HTTP/1.1 200 OK",
    b"HTTP/1.1 200 OK",
    b"HTTP/1.1 200 OK",
    b"HTTP/1.1 200 OK",
    b"HTTP/1.0 200 OK",
    b"HTTP/1.1 204 No Content",
    b"HTTP/1.0 204 No Content",
    b"HTTP/1.1 304 Not Modified",
    b"HTTP/1.0 304 Not Modified",
    b"HTTP/1.1 404 Not Found",
    b"HTTP/1.1 600 Odd",
    b"HTTP/1.1 200",
    b"HTTP/1.1 200 ",
    b"HTTP/1.1 200 \xffOK",
];

/// Odd final status lines: an upgrade, bad versions, codes and characters.
const ODD_STATUS: &[&[u8]] = &[
    b"HTTP/1.1 101 Switching Protocols",
    b"HTTP/1.1 200\tOK",
    b"HTTP/1.1 200 O\x01K",
    b"HTTP/1.2 200 OK",
    b"HTTP/2 200 OK",
    b"HTTP/01.1 200 OK",
    b"http/1.1 200 OK",
    b" HTTP/1.1 200 OK",
    b"HTTP/1.1  200 OK",
    b"HTTP/1.1 2000 OK",
    b"HTTP/1.1 20x OK",
    b"HTTP/1.1 99 Low",
    b"HTTP/1.1 000 Zero",
];

/// The plain framing header lines, most often met.
const PLAIN_FRAMING: &[&[u8]] = &[b"Transfer-Encoding: chunked", b"Content-Length: 5"];

/// Header lines that frame a body.
const FRAMING: &[&[u8]] = &[
    b"Content-Length: 3",
    b"Content-Length: 0",
    b"Content-Length: 5, 5",
    b"Content-Length: 5,5",
    b"Content-Length: 5, 3",
    b"Content-Length: 5,",
    b"Content-Length: ,5",
    b"Content-Length: +5",
    b"Content-Length: -5",
    b"Content-Length: 0x5",
    b"Content-Length: 5.0",
    b"Content-Length: 5 5",
    b"Content-Length:5",
    b"Content-Length:  5  ",
    b"Content-Length:\t5",
    b"Content-Length: 005",
    b"Content-Length: 00000000000000000005",
    b"Content-Length: 18446744073709551615",
    b"Content-Length: 18446744073709551616",
    b"Content-Length: 99999999999999999999",
    b"Content-Length:",
    b"Content-Length : 5",
    b"content-length: 5",
    b"Transfer-Encoding: CHUNKED",
    b"transfer-encoding: chunked",
    b"Transfer-Encoding:  chunked  ",
    b"Transfer-Encoding:\tchunked",
    b"Transfer-Encoding: gzip, chunked",
    b"Transfer-Encoding: chunked, gzip",
    b"Transfer-Encoding: identity",
    b"Transfer-Encoding: chunked, chunked",
    b"Transfer-Encoding: chunked,",
    b"Transfer-Encoding: , chunked",
    b"Transfer-Encoding:",
    b"Transfer-Encoding: \"chunked\"",
    b"Transfer-Encoding: xchunked",
    b"Transfer-Encoding: chunked;q=1",
    b"Transfer-Encoding: chunked\xff",
    b"Transfer-Encoding : chunked",
    b"Transfer_Encoding: chunked",
];

/// Other header lines.
const OTHER: &[&[u8]] = &[
    b"Connection: close",
    b"Connection: keep-alive",
    b"X-A: b",
    b"Date: Thu, 01 Jan 1970 00:00:00 GMT",
    b"Retry-After: 1",
    b"Keep-Alive: timeout=5",
    b"Trailer: x-t",
    b"X-Empty:",
    b"X-Obs: a\xffb",
];

/// Malformed header lines: folded, bad names, control characters, no colon.
const MALFORMED: &[&[u8]] = &[
    b" folded",
    b"\tfolded",
    b"Bad Name: x",
    b"X-Ctl: a\x01b",
    b"X-Cr: a\rb",
    b"NoColon",
    b": empty-name",
];

/// Whole bodies, chunked or not.
const BODIES: &[&[u8]] = &[
    b"",
    b"hello",
    b"hel",
    b"hello world",
    b"5\r\nhello\r\n0\r\n\r\n",
    b"5\r\nhello\r\n0\r\n\r\nHTTP/1.1 200 OK\r\n\r\n",
    b"5\r\nhello\r\n",
    b"0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
];

/// A chunked body built chunk by chunk: each part mostly right, sometimes spelt another
/// way or wrong (sizes in every spelling, extensions, line ends, trailers).
fn chunked_body() -> impl Strategy<Value = Vec<u8>> {
    /// Mostly `right`, else one of `other`.
    fn mostly(right: &'static [u8], other: &[&'static [u8]]) -> BoxedStrategy<&'static [u8]> {
        prop_oneof![6 => Just(right), 1 => prop::sample::select(other.to_vec())].boxed()
    }
    let data = prop::sample::select(vec!["hello", "a", "0123456789abcdef"]);
    // How a chunk's size is written: 0 right, else a spelling of it or a wrong one.
    let size = prop_oneof![4 => Just(0u8), 1 => 1..14u8];
    let ext = || {
        mostly(
            b"",
            &[
                b";a",
                b";a=b",
                b";a=\"x;y\"",
                b" ;a",
                b";",
                b";a\x01",
                b";a\rb",
            ],
        )
    };
    let end = || mostly(b"\r\n", &[b"\n", b"\r\r\n"]);
    let data_end = mostly(b"\r\n", &[b"\n", b"", b"X\r\n"]);
    let last = mostly(b"0", &[b"00", b"0;a", b"000000000000000000", b"0 "]);
    let trailer = prop::sample::select(vec![
        &b"x-t: 1"[..],
        b"x-t:1",
        b"content-length: 5",
        b"bad line",
        b" folded",
        b"x-t: a\x01",
    ]);
    let chunk = (data, size, ext(), end(), data_end);
    (
        prop::collection::vec(chunk, 0..3),
        last,
        ext(),
        end(),
        prop_oneof![
            3 => Just(Vec::new()),
            1 => prop::collection::vec((trailer, end()), 1..3),
        ],
        mostly(b"\r\n", &[b"\n", b""]),
        mostly(b"", &[b"junk"]),
    )
        .prop_map(
            |(chunks, last, last_ext, last_end, trailers, final_end, after)| {
                let mut body = Vec::new();
                for (data, size, ext, end, data_end) in chunks {
                    let n = data.len();
                    let size = match size {
                        0 | 1 => format!("{n:x}"),
                        2 => format!("{n:X}"),
                        3 => format!("{n:06x}"),
                        4 => format!("{n:016x}"),
                        5 => format!("{:x}", n + 1),
                        6 => format!("{:x}", n - 1),
                        7 => format!("0x{n:x}"),
                        8 => format!("+{n:x}"),
                        9 => format!(" {n:x}"),
                        10 => format!("{n:x} \t"),
                        11 => format!("\x0c{n:x}"),
                        12 => String::new(),
                        _ => "fffffffffffffffff".to_owned(),
                    };
                    body.extend_from_slice(size.as_bytes());
                    body.extend_from_slice(ext);
                    body.extend_from_slice(end);
                    body.extend_from_slice(data.as_bytes());
                    body.extend_from_slice(data_end);
                }
                body.extend_from_slice(last);
                body.extend_from_slice(last_ext);
                body.extend_from_slice(last_end);
                for (line, end) in trailers {
                    body.extend_from_slice(line);
                    body.extend_from_slice(end);
                }
                body.extend_from_slice(final_end);
                body.extend_from_slice(after);
                body
            },
        )
}

/// A response: interim answers, a final head, a body, as the answer to a `GET` or a
/// `HEAD`.
fn response() -> impl Strategy<Value = (Method, Vec<u8>)> {
    let pick = |list: &[&'static [u8]]| prop::sample::select(list.to_vec());
    let body = prop_oneof![
        1 => pick(BODIES).prop_map(<[u8]>::to_vec),
        2 => chunked_body(),
    ];
    let status = prop_oneof![6 => pick(STATUS), 1 => pick(ODD_STATUS)];
    let other = prop_oneof![6 => pick(OTHER), 1 => pick(MALFORMED)];
    let framing = prop_oneof![2 => pick(PLAIN_FRAMING), 3 => pick(FRAMING)];
    (
        prop_oneof![4 => Just(Method::GET), 1 => Just(Method::HEAD)],
        prop_oneof![3 => Just(Vec::new()), 1 => prop::collection::vec(pick(INTERIM), 1..3)],
        status,
        prop::collection::vec(other, 0..2),
        prop::collection::vec(framing, 0..3),
        body,
        line_ends(),
    )
        .prop_map(|(method, interim, status, other, framing, body, ends)| {
            let mut lines: Vec<&[u8]> = Vec::new();
            for head in interim {
                lines.extend(head.split(|&b| b == b'\n').map(|l| l.trim_ascii_end()));
                lines.push(b"");
            }
            lines.push(status);
            lines.extend(other);
            lines.extend(framing);
            lines.push(b"");
            let mut wire = join(&lines, ends);
            wire.extend_from_slice(&body);
            (method, wire)
        })
}

/// What hyper's server makes of a request head.
struct Served {
    method: String,
    target: String,
    headers: Vec<(String, Vec<u8>)>,
    /// hyper's framing says the request has no body.
    bodiless: bool,
}

/// hyper's HTTP/1 server's reading of `head`, sent alone before the client's close; `None`
/// if it refused it.
async fn hyper_server(head: &'static [u8]) -> Option<Served> {
    let (mut client, server) = tokio::io::duplex(1 << 20);
    let seen = Arc::new(Mutex::new(None));
    let record = seen.clone();
    let service = hyper::service::service_fn(move |request: http::Request<Incoming>| {
        let headers = request
            .headers()
            .iter()
            .map(|(n, v)| (n.as_str().to_owned(), v.as_bytes().to_vec()))
            .collect();
        *record.lock().unwrap_or_else(|e| e.into_inner()) = Some(Served {
            method: request.method().to_string(),
            target: request.uri().to_string(),
            headers,
            bodiless: request.body().is_end_stream(),
        });
        async { Ok::<_, std::convert::Infallible>(http::Response::new(Empty::<Bytes>::new())) }
    });
    let served = tokio::spawn(
        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(server), service),
    );
    let _ = client.write_all(head).await;
    let _ = client.shutdown().await;
    let _ = served.await;
    seen.lock().unwrap_or_else(|e| e.into_inner()).take()
}

/// `headers` ordered by name, each name's values in their order, without
/// `Content-Length`: a taken request has no body, and its length lines are the
/// framing's (the client writes the framing's own, whatever the request carried).
fn by_name(mut headers: Vec<(String, Vec<u8>)>) -> Vec<(String, Vec<u8>)> {
    headers.retain(|(name, _)| name != "content-length");
    headers.sort_by(|a, b| a.0.cmp(&b.0));
    headers
}

/// Request lines.
const REQUEST_LINE: &[&[u8]] = &[
    b"GET / HTTP/1.1",
    b"GET / HTTP/1.1",
    b"GET /a?b=c HTTP/1.1",
    b"HEAD /x HTTP/1.1",
    b"DELETE /x HTTP/1.1",
    b"PATCH /x HTTP/1.1",
    b"get / HTTP/1.1",
    b"M-SEARCH * HTTP/1.1",
    b"OPTIONS * HTTP/1.1",
    b"GET * HTTP/1.1",
    b"GET http://a.example/x HTTP/1.1",
    b"GET http://u@a.example:8080/x?y HTTP/1.1",
    b"GET /x#frag HTTP/1.1",
    b"GET //x HTTP/1.1",
    b"GET /a%20b HTTP/1.1",
];

/// Request lines the own server never takes, or no reader should.
const ODD_REQUEST_LINE: &[&[u8]] = &[
    b"CONNECT a.example:443 HTTP/1.1",
    b"GET /\xff HTTP/1.1",
    b"GET  / HTTP/1.1",
    b"GET / HTTP/1.1 ",
    b"GET /\tHTTP/1.1",
    b"GET / HTTP/1.0",
    b"GET / HTTP/1.2",
    b"GET / http/1.1",
    b"G@T / HTTP/1.1",
    b"GET /a b HTTP/1.1",
];

/// Request header lines.
const REQUEST_HEADER: &[&[u8]] = &[
    b"Host: x",
    b"Host: x",
    b"Host: x:80",
    b"Host:",
    b"Host: x, y",
    b"Host : x",
    b"Content-Length: 0",
    b"Content-Length:  0 ",
    b"Content-Length: 00",
    b"Content-Length: 0, 0",
    b"Content-Length: +0",
    b"Content-Length: 5",
    b"Transfer-Encoding: chunked",
    b"Transfer-Encoding: identity",
    b"Connection: keep-alive",
    b"Connection: close",
    b"Connection: keep-alive, close",
    b"Connection: Upgrade",
    b"Expect: 100-continue",
    b"Upgrade: websocket",
    b"TE: trailers",
    b"X-A: b",
    b"X-A: c",
    b"X-A:  spaced  ",
    b"X-Tab: a\tb",
    b"X-Empty:",
    b"X-Obs: a\xffb",
];

/// A request head.
fn request_head() -> impl Strategy<Value = Vec<u8>> {
    let pick = |list: &[&'static [u8]]| prop::sample::select(list.to_vec());
    (
        prop_oneof![3 => pick(REQUEST_LINE), 1 => pick(ODD_REQUEST_LINE)],
        prop::collection::vec(
            prop_oneof![6 => pick(REQUEST_HEADER), 1 => pick(MALFORMED)],
            0..5,
        ),
        line_ends(),
    )
        .prop_map(|(line, headers, ends)| {
            let mut lines = vec![line];
            lines.extend(headers);
            lines.push(b"");
            join(&lines, ends)
        })
}

/// The comparison of one request head (see the module's doc).
fn compare_request(head: &[u8]) -> Result<(), String> {
    let bytes = Bytes::copy_from_slice(head);
    let Some(end) = request::head_end(&bytes) else {
        return Ok(()); // not a whole head: the own server waits, or hands it over
    };
    let Ok(parts) = request::parse(&bytes.slice(..end)) else {
        return Ok(()); // not taken: hyper answers it (or the own server refuses it)
    };
    let head: &'static [u8] = head.to_vec().leak();
    let shown = String::from_utf8_lossy(head);
    let Some(served) = run(hyper_server(head)) else {
        return Err(format!(
            "the own server takes {shown:?}, which hyper refuses"
        ));
    };
    let ours: Vec<(String, Vec<u8>)> = parts
        .headers
        .iter()
        .map(|(n, v)| (n.as_str().to_owned(), v.as_bytes().to_vec()))
        .collect();
    if parts.method.as_str() != served.method
        || parts.uri.to_string() != served.target
        || by_name(ours.clone()) != by_name(served.headers.clone())
    {
        return Err(format!(
            "{shown:?}: own server {} {} {ours:?}, hyper {} {} {:?}",
            parts.method, parts.uri, served.method, served.target, served.headers
        ));
    }
    if !served.bodiless {
        // The own server takes only bodiless requests: reading the next bytes as the
        // next request where hyper reads them as a body is smuggling.
        return Err(format!(
            "the own server takes {shown:?} as bodiless, hyper reads a body"
        ));
    }
    Ok(())
}

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

#[test]
fn the_comparison_reads_plain_framings_alike_and_catches_a_difference() {
    // Guards the harness: both sides read the framings that matter, to the same body.
    for (method, wire) in [
        (
            Method::GET,
            &b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"[..],
        ),
        (
            Method::GET,
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        ),
        (
            Method::GET,
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
        ),
        (Method::GET, b"HTTP/1.0 200 OK\r\n\r\nhello"),
        (Method::GET, b"HTTP/1.1 200 OK\nContent-Length: 5\n\nhello"),
        (
            Method::HEAD,
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",
        ),
    ] {
        let body = if method == Method::HEAD {
            &b""[..]
        } else {
            b"hello"
        };
        let expected = Read::Accepted {
            status: 200,
            body: body.to_vec(),
        };
        let shown = String::from_utf8_lossy(wire);
        assert_eq!(both(&method, wire), (expected.clone(), expected), "{shown}");
    }
    // A difference is reported: the same bytes read to different bodies.
    let (ours, _) = both(
        &Method::GET,
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
    );
    let (_, theirs) = both(
        &Method::GET,
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nhello",
    );
    assert_ne!(ours, theirs, "hyper reads three bytes there");
    // A refusal is only excused for its own reason: a bad chunk size is no coding.
    let wire = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n";
    let (heads, body) = heads(wire);
    assert!(stricter_on_purpose(&heads, body, &Method::GET).is_empty());
}

/// Found by the comparison (and fixed): an HTTP/1.0 response with a transfer coding
/// has faulty framing (RFC 9112 §6.1); the sidecar read it as chunked, hyper refuses it.
#[test]
fn an_http_1_0_response_with_a_transfer_coding_is_refused() {
    let wire = b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
    let (ours, theirs) = both(&Method::GET, wire);
    assert!(matches!(ours, Read::Refused(_)), "{ours:?}");
    assert!(matches!(theirs, Read::Refused(_)), "{theirs:?}");
}

/// Where a refusal is on purpose: hyper reads these, the sidecar refuses them for the
/// reason [`stricter_on_purpose`] gives.
#[test]
fn the_sidecar_refuses_on_purpose_what_hyper_reads_only_for_the_written_reasons() {
    for (method, wire, refusal) in [
        (
            Method::GET,
            &b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nhello"[..],
            "unsupported transfer coding",
        ),
        (
            Method::GET,
            b"HTTP/1.0 204 No Content\r\nTransfer-Encoding: chunked\r\n\r\n",
            "transfer-encoding in an HTTP/1.0 response",
        ),
        (
            Method::HEAD,
            b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
            "invalid content-length",
        ),
        (
            Method::GET,
            b"HTTP/1.1 200 OK\r\nContent-Length: 00000000000000000005\r\n\r\nhello",
            "invalid content-length",
        ),
        (
            Method::GET,
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
              0000000000000005\r\nhello\r\n0\r\n\r\n",
            "invalid chunk size",
        ),
    ] {
        let shown = String::from_utf8_lossy(wire);
        let (ours, theirs) = both(&method, wire);
        assert!(
            matches!(theirs, Read::Accepted { .. }),
            "{shown}: {theirs:?}"
        );
        assert!(
            matches!(&ours, Read::Refused(why) if why.contains(refusal)),
            "{shown}: {ours:?}"
        );
        assert!(compare_response(&method, wire).is_ok(), "{shown}");
    }
}

/// Found by the comparison, open: `Transfer-Encoding: chunked,` (an empty last list
/// element). The sidecar skips the empty element (RFC 9110 §5.6.1) and reads chunks,
/// body `hello`; hyper takes the last element, empty, for a coding other than chunked
/// and reads to the close, body `5\r\nhello\r\n0\r\n\r\n`. Two readings of one response:
/// a hop that reads it as hyper does is out of step with the sidecar on that
/// connection. Suggested fix: refuse a `Transfer-Encoding` with empty elements (502),
/// as other codings are refused, and move the entry of [`open_disagreement`] to
/// [`stricter_on_purpose`].
#[test]
#[ignore = "open: the sidecar reads `Transfer-Encoding: chunked,` as chunked, hyper to the close"]
fn a_coding_list_ending_in_an_empty_element_is_not_read_two_ways() {
    let wire = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked,\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
    let (ours, theirs) = both(&Method::GET, wire);
    assert_eq!(
        theirs,
        Read::Accepted {
            status: 200,
            body: b"5\r\nhello\r\n0\r\n\r\n".to_vec()
        }
    );
    assert!(
        ours == theirs || matches!(ours, Read::Refused(_)),
        "both read it, differently: sidecar {ours:?}"
    );
}

/// Found by the comparison, open: chunk framing lines that hyper's decoder refuses and
/// the sidecar's reads, body `hello` each time. The decoder splits lines at a LF and
/// drops one CR before it, and trims all ASCII whitespace around the size; RFC 9112
/// §7.1 ends each of these lines in CRLF and starts a chunk line with its size, and
/// hyper holds to that (it refuses a bare LF even inside an extension, "to save
/// implementations that do not check for the CR from themselves"). A hop in front of the
/// upstream that frames such a body otherwise would be out of step with the sidecar on
/// a pooled connection. Suggested fix (`framing::line` and `chunk_size`, used by the
/// client for responses): take a line only up to CRLF, refuse a bare LF or a CR inside
/// it, and accept only SP/HTAB after the size digits and nothing before them.
#[test]
#[ignore = "open: the sidecar reads chunk lines with bare LF, stray CR or leading whitespace"]
fn chunk_lines_that_hyper_refuses_are_refused() {
    let mut read = Vec::new();
    for wire in [
        // A bare LF after the size, after the data, after the last chunk, at the end.
        &b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n"[..],
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\n",
        // A bare LF ending an extension, or a trailer line.
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;a\nhello\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nx-t: 1\n\r\n",
        // A stray CR: before the CRLF, inside an extension.
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\r\nhello\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;a\rb\r\nhello\r\n0\r\n\r\n",
        // Whitespace before the size, a form feed after it.
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n 5\r\nhello\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\x0c5\r\nhello\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\x0c\r\nhello\r\n0\r\n\r\n",
    ] {
        let shown = String::from_utf8_lossy(wire);
        let (ours, theirs) = both(&Method::GET, wire);
        assert!(
            matches!(theirs, Read::Refused(_)),
            "{shown}: hyper {theirs:?}"
        );
        if matches!(ours, Read::Accepted { .. }) {
            read.push(format!("{shown:?}: {ours:?}"));
        }
    }
    assert!(read.is_empty(), "the sidecar reads:\n{}", read.join("\n"));
}

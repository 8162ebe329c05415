//! A response head kept as the upstream sent it, for a client connection that writes
//! its lines through.
//!
//! Relayed through hyper's server, every header of an upstream's response is parsed into
//! a `HeaderMap` (a name lookup, a value check and a hash insertion each) only for hyper
//! to write it back out from the map (see docs/BENCHMARKS.md for what it costs). The
//! sidecar's own HTTP/1 server (`h1::server`) writes the head's lines as
//! they came instead, less the hop-by-hop ones. The lines are still checked: a name of
//! token characters, a value without control characters, every line ending in CRLF.
//!
//! The map keeps only what the proxy itself reads from a response (`Retry-After`, for
//! the retry classifier); the relay's own headers are added to it and written after the
//! kept lines.

use bytes::BytesMut;
use http::header::RETRY_AFTER;
use http::{HeaderMap, HeaderValue};
use smallvec::SmallVec;

use super::Error;
use super::response::{self, Framed, RawHead, ResponseHead};

/// What the raw parse made of the start of a read buffer.
// Made once per response and matched at once: boxing the head would allocate for it.
#[allow(clippy::large_enum_variant)]
pub(super) enum Parsed {
    /// A whole head, split off the buffer.
    Head(ResponseHead),
    /// The buffer does not hold a whole head yet.
    Partial,
    /// The head needs the full parse instead: a line ending in a bare LF, a `Connection`
    /// header naming other headers to remove, a second `Retry-After` or `Content-Length`,
    /// a `Content-Length` not to relay, or more skipped runs than kept inline. Nothing
    /// was taken off the buffer.
    Full,
}

/// Parses the response head at the start of `buf` (httparse, see
/// `response::tokenize`), keeping its lines raw: each field's line runs from its name to
/// the next field's, and the runs of lines to relay are noted as they are met.
pub(super) fn parse(buf: &mut BytesMut, head_request: bool) -> Result<Parsed, Error> {
    let bytes = &buf[..];
    let mut slots = response::slots();
    let Some(tokens) = response::tokenize(bytes, &mut slots)? else {
        return Ok(Parsed::Partial);
    };
    let end = tokens.len;
    // The lines end where the empty line starts.
    let last = end - 2;
    let fields = tokens.headers;
    let start = |index: usize| {
        fields
            .get(index)
            .map_or(last, |field: &httparse::Header<'_>| {
                response::offset(bytes, field.name.as_bytes())
            })
    };
    // Relayed as they came, bare LF lines would reach the client so: every line must end
    // in CRLF (the byte before each next line's start), the head in CRLF CRLF.
    let crlf = |next: usize| next >= 2 && bytes[next - 2] == b'\r';
    if !(crlf(end) && crlf(last) && crlf(start(0))) {
        return Ok(Parsed::Full);
    }
    let (version, status) = (tokens.version, tokens.status);
    let mut facts = Framed::new(version);
    let mut retry_after = None;
    let mut kept = SmallVec::new();
    let mut dated = false;
    let mut run = start(0);
    for (index, field) in fields.iter().enumerate() {
        let at = start(index);
        let next = start(index + 1);
        if !crlf(next) {
            return Ok(Parsed::Full);
        }
        let name = field.name.as_bytes();
        let value = response::trim(field.value);
        let relayed = match Known::of(name) {
            Known::Other => true,
            Known::Date => {
                dated = true;
                true
            }
            Known::ContentLength => {
                if facts.declared_length().is_some() || value.contains(&b',') {
                    // A second one, or a list: the full parse relays one number.
                    return Ok(Parsed::Full);
                }
                facts.length(value)?;
                true
            }
            Known::TransferEncoding => {
                facts.transfer_encoding(value)?;
                false
            }
            Known::Connection => {
                if names_headers(value) {
                    return Ok(Parsed::Full);
                }
                facts.connection(value);
                false
            }
            Known::HopByHop => false,
            Known::RetryAfter => {
                if retry_after.is_some() {
                    return Ok(Parsed::Full);
                }
                let start = response::offset(bytes, value);
                retry_after = Some(start..start + value.len());
                false
            }
        };
        if !relayed {
            if !push_run(&mut kept, run, at) {
                return Ok(Parsed::Full);
            }
            run = next;
        }
    }
    if !push_run(&mut kept, run, last) {
        return Ok(Parsed::Full);
    }
    if facts.declared_length().is_some() && response::relayed_length(&facts, status).is_none() {
        // A length not to relay (beside a transfer coding, or on a 204): the full parse
        // leaves it out.
        return Ok(Parsed::Full);
    }
    let head = buf.split_to(end).freeze();
    let mut headers = HeaderMap::new();
    if let Some(range) = retry_after {
        let value = HeaderValue::from_maybe_shared(head.slice(range))
            .map_err(|_| Error::Malformed("invalid response header value"))?;
        headers.insert(RETRY_AFTER, value);
    }
    let length = facts.declared_length();
    let (framing, keep_alive) = facts.framing(status, head_request);
    Ok(Parsed::Head(ResponseHead {
        status,
        version,
        headers,
        framing,
        keep_alive,
        raw: Some(RawHead {
            head,
            kept,
            length,
            dated,
        }),
    }))
}

/// Adds the run of lines `start..end` if it is not empty; `false` if there is no room.
fn push_run(kept: &mut SmallVec<[(u32, u32); 4]>, start: usize, end: usize) -> bool {
    if start == end {
        return true;
    }
    if kept.len() == kept.inline_size() {
        return false;
    }
    match (u32::try_from(start), u32::try_from(end)) {
        (Ok(start), Ok(end)) => {
            kept.push((start, end));
            true
        }
        _ => false,
    }
}

/// The headers the raw parse treats apart, by name.
enum Known {
    ContentLength,
    TransferEncoding,
    Connection,
    /// Any other hop-by-hop header (see `palisade_http::headers`): not relayed.
    HopByHop,
    RetryAfter,
    /// Relayed, and noted: a head without one gets the proxy's.
    Date,
    Other,
}

impl Known {
    fn of(name: &[u8]) -> Self {
        let is = |known: &[u8]| name.eq_ignore_ascii_case(known);
        match name.len() {
            2 if is(b"te") => Known::HopByHop,
            4 if is(b"date") => Known::Date,
            7 if is(b"upgrade") => Known::HopByHop,
            10 if is(b"connection") => Known::Connection,
            10 if is(b"keep-alive") => Known::HopByHop,
            11 if is(b"retry-after") => Known::RetryAfter,
            14 if is(b"content-length") => Known::ContentLength,
            16 if is(b"proxy-connection") => Known::HopByHop,
            17 if is(b"transfer-encoding") => Known::TransferEncoding,
            18 if is(b"proxy-authenticate") => Known::HopByHop,
            19 if is(b"proxy-authorization") => Known::HopByHop,
            _ => Known::Other,
        }
    }
}

/// A `Connection` value naming headers beyond its `keep-alive` and `close` options.
fn names_headers(value: &[u8]) -> bool {
    value
        .split(|&b| b == b',')
        .map(response::trim)
        .any(|token| {
            !token.is_empty()
                && !token.eq_ignore_ascii_case(b"keep-alive")
                && !token.eq_ignore_ascii_case(b"close")
        })
}

#[cfg(test)]
mod tests {
    use bytes::BytesMut;
    use http::StatusCode;

    use super::super::head::parse_full;
    use super::super::parse_response;

    /// The raw parse of `head`, and the full one.
    fn both(head: &str, head_request: bool) -> (super::ResponseHead, super::ResponseHead) {
        let parse = |raw| {
            let mut buf = BytesMut::from(head.as_bytes());
            let parsed = super::super::parse(&mut buf, head_request, raw)
                .expect("valid")
                .expect("whole");
            assert!(buf.is_empty(), "the head is split off");
            parsed
        };
        (parse(true), parse(false))
    }

    /// The header lines a raw head relays, and its map's, as `name: value` lines.
    fn relayed(head: &super::ResponseHead) -> String {
        let mut out = Vec::new();
        if let Some(raw) = &head.raw {
            raw.write_to(&mut out);
        }
        for (name, value) in &head.headers {
            out.extend_from_slice(format!("{name}: ").as_bytes());
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        String::from_utf8(out).expect("text")
    }

    #[test]
    fn lines_are_kept_as_sent_less_hop_by_hop_ones_and_retry_after_goes_to_the_map() {
        let (raw, full) = both(
            "HTTP/1.1 503 Service Unavailable\r\nX-Custom:  Mixed Case \r\nConnection: keep-alive\r\n\
             Keep-Alive: timeout=5\r\nDate: Tue, 01 Dec 2026 00:00:00 GMT\r\nRetry-After: 7\r\n\
             Content-Length: 2\r\nX-Last: z\r\n\r\n",
            false,
        );
        assert_eq!(
            relayed(&raw),
            "X-Custom:  Mixed Case \r\nDate: Tue, 01 Dec 2026 00:00:00 GMT\r\n\
             Content-Length: 2\r\nX-Last: z\r\nretry-after: 7\r\n"
        );
        let kept = raw.raw.as_ref().expect("kept raw");
        assert_eq!(kept.length(), Some(2));
        assert!(kept.is_dated());
        assert_eq!(raw.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            (raw.framing, raw.keep_alive),
            (full.framing, full.keep_alive)
        );
        assert!(full.raw.is_none());
    }

    #[test]
    fn heads_the_raw_parse_cannot_keep_get_the_full_one() {
        for head in [
            // A bare LF ends a line.
            "HTTP/1.1 200 OK\nContent-Length: 0\n\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 0\n\r\n",
            // `Connection` names a header to remove.
            "HTTP/1.1 200 OK\r\nConnection: x-secret\r\nX-Secret: 1\r\nContent-Length: 0\r\n\r\n",
            // More skipped lines than runs kept inline.
            "HTTP/1.1 200 OK\r\nA: 1\r\nTE: x\r\nB: 1\r\nTE: x\r\nC: 1\r\nTE: x\r\nD: 1\r\nTE: x\r\nE: 1\r\n\r\n",
        ] {
            let (raw, _) = both(head, false);
            assert!(raw.raw.is_none(), "{head:?}");
        }
    }

    #[test]
    fn invalid_lines_are_refused_and_a_partial_head_waits() {
        for head in [
            "HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n",
            "HTTP/1.1 200 OK\r\nX: a\x00b\r\n\r\n",
            "HTTP/1.1 200 OK\r\nX: a\x7fb\r\n\r\n",
            "HTTP/1.1 200 OK\r\nX: abcdefgh\rijklmnop\r\n\r\n",
            "HTTP/1.1 200 OK\r\n: empty name\r\n\r\n",
        ] {
            let mut buf = BytesMut::from(head.as_bytes());
            assert!(parse_response(&mut buf, false).is_err(), "{head:?}");
        }
        let mut partial = BytesMut::from(&b"HTTP/1.1 200 OK\r\nX-A: 1\r\n"[..]);
        assert!(matches!(parse_response(&mut partial, false), Ok(None)));
        assert_eq!(partial.len(), 25, "nothing taken off a partial head");
    }

    #[test]
    fn a_control_character_anywhere_in_a_value_is_refused() {
        for len in 1..24 {
            for at in 0..len {
                let head = |byte: u8| {
                    let mut value = vec![b'a'; len];
                    value[at] = byte;
                    let mut wire = b"HTTP/1.1 200 OK\r\nx-v: ".to_vec();
                    wire.extend_from_slice(&value);
                    wire.extend_from_slice(b"\r\ncontent-length: 0\r\n\r\n");
                    parse_response(&mut BytesMut::from(&wire[..]), false)
                };
                for bad in [0u8, b'\r', 0x1f, 0x7f] {
                    assert!(head(bad).is_err(), "{bad:#x} at {at} of {len}");
                }
                for fine in [b'\t', 0xff] {
                    assert!(
                        matches!(head(fine), Ok(Some(_))),
                        "{fine:#x} at {at} of {len}"
                    );
                }
            }
        }
    }

    #[test]
    fn the_names_skipped_are_palisade_https_hop_by_hop_ones() {
        // `Known::of` matches by length for speed; `palisade_http::headers` holds the
        // list. A name added there and not here fails this test.
        for name in [
            "connection",
            "keep-alive",
            "proxy-connection",
            "proxy-authenticate",
            "proxy-authorization",
            "te",
            "trailer",
            "upgrade",
            "transfer-encoding",
            "content-length",
            "retry-after",
            "date",
            "x-other",
            "trailers",
            "upgrade-insecure-requests",
        ] {
            let hop = palisade_http::headers::is_hop_by_hop(&http::HeaderName::from_static(name));
            let skipped = matches!(
                super::Known::of(name.to_ascii_uppercase().as_bytes()),
                super::Known::HopByHop | super::Known::Connection | super::Known::TransferEncoding
            );
            assert_eq!(skipped, hop, "{name}");
        }
    }

    const LINES: [&str; 14] = [
        "Content-Length: 3",
        "content-length: 3",
        "Transfer-Encoding: chunked",
        "Transfer-Encoding: gzip",
        "Connection: close",
        "Connection: keep-alive",
        "Keep-Alive: timeout=5",
        "X-A: one",
        "x-a: two",
        "Retry-After: 3",
        "Date: Tue, 01 Dec 2026 00:00:00 GMT",
        "TE: trailers",
        "Proxy-Connection: keep-alive",
        "Server: test",
    ];

    proptest::proptest! {
        #[test]
        fn the_raw_parse_agrees_with_the_full_one(
            lines in proptest::collection::vec(0..LINES.len(), 0..8),
            status in proptest::sample::select(vec![200u16, 204, 304, 404, 503]),
            http10: bool,
            head_request: bool,
        ) {
            let mut head = format!("HTTP/1.{} {status} X\r\n", u8::from(!http10));
            for &line in &lines {
                head.push_str(LINES[line]);
                head.push_str("\r\n");
            }
            head.push_str("\r\n");
            let raw = parse_response(&mut BytesMut::from(head.as_bytes()), head_request);
            let full = parse_full(&mut BytesMut::from(head.as_bytes()), head_request);
            match (raw, full) {
                (Ok(Some(raw)), Ok(Some(full))) => {
                    proptest::prop_assert_eq!(raw.status, full.status);
                    proptest::prop_assert_eq!(raw.framing, full.framing);
                    proptest::prop_assert_eq!(raw.keep_alive, full.keep_alive);
                    // The same headers (a header map groups values by name: compared
                    // sorted).
                    let lower = |text: String| -> Vec<String> {
                        let mut lines: Vec<String> = text
                            .lines()
                            .map(|l| {
                                let (name, value) = l.split_once(':').unwrap_or((l, ""));
                                format!("{}:{}", name.to_ascii_lowercase(), value.trim())
                            })
                            .collect();
                        lines.sort();
                        lines
                    };
                    proptest::prop_assert_eq!(lower(relayed(&raw)), lower(relayed(&full)));
                }
                (Err(_), Err(_)) => {}
                (raw, full) => proptest::prop_assert!(false, "raw {:?} vs full {:?}", raw.map(|h| h.map(|h| h.status)), full.map(|h| h.map(|h| h.status))),
            }
        }
    }
}

//! What a response head says, whichever parse read it (`raw` keeps its lines, `head`
//! parses it into a map): its status, the facts of its framing and its connection, and
//! the limits both parses keep.

use std::mem::MaybeUninit;

use bytes::Bytes;
use http::{HeaderMap, StatusCode, Version};
use smallvec::SmallVec;

use super::Error;
use crate::h1::framing::Decoder;

/// An upstream response's header lines to relay as they are.
#[derive(Clone, Debug)]
pub(crate) struct RawHead {
    /// The whole head as received.
    pub(super) head: Bytes,
    /// The byte ranges of `head` to relay: runs of header lines (each with its CRLF),
    /// less hop-by-hop lines and those kept in the response's map.
    pub(super) kept: SmallVec<[(u32, u32); 4]>,
    /// The kept lines carry `Content-Length`, with this value.
    pub(super) length: Option<u64>,
    /// The kept lines carry `Date`.
    pub(super) dated: bool,
}

impl RawHead {
    /// Header lines made by the proxy itself: `lines` is whole lines, each ending in
    /// CRLF, without `Content-Length` or `Date`.
    pub(crate) fn lines(lines: Bytes) -> Self {
        let end = u32::try_from(lines.len()).unwrap_or(u32::MAX);
        let mut kept = SmallVec::new();
        kept.push((0, end));
        Self {
            head: lines,
            kept,
            length: None,
            dated: false,
        }
    }

    /// Appends the kept lines to `out`.
    pub(crate) fn write_to(&self, out: &mut Vec<u8>) {
        for &(start, end) in &self.kept {
            out.extend_from_slice(&self.head[start as usize..end as usize]);
        }
    }

    /// The `Content-Length` among the kept lines, if any.
    pub(crate) fn length(&self) -> Option<u64> {
        self.length
    }

    /// Whether the kept lines carry `Date`.
    pub(crate) fn is_dated(&self) -> bool {
        self.dated
    }
}

/// The longest response head accepted.
pub(super) const MAX_HEAD: usize = 256 * 1024;
/// The most response headers accepted.
pub(super) const MAX_HEADERS: usize = 100;

/// A parsed response head.
#[derive(Debug)]
pub(super) struct ResponseHead {
    pub(super) status: StatusCode,
    pub(super) version: Version,
    pub(super) headers: HeaderMap,
    pub(super) framing: Decoder,
    /// The connection may carry another request after this response.
    pub(super) keep_alive: bool,
    /// The header lines as received, when kept raw (see `raw`); `headers` then holds
    /// only what the proxy reads.
    pub(super) raw: Option<RawHead>,
}

/// The `Content-Length` to relay: the one declared (once, however many equal lines or
/// list items carried it), unless a transfer coding frames the message or the status
/// allows none (204, RFC 9110 §8.6).
pub(super) fn relayed_length(facts: &Framed, status: StatusCode) -> Option<u64> {
    if facts.has_transfer_encoding() || status == StatusCode::NO_CONTENT {
        return None;
    }
    facts.declared_length()
}

/// What a response's headers say of its framing and its connection.
pub(super) struct Framed {
    version: Version,
    close: bool,
    length: Option<u64>,
    /// `Transfer-Encoding` seen: whether `chunked` is its last coding.
    chunked: Option<bool>,
    /// A transfer coding other than `chunked` was named.
    other_coding: bool,
}

impl Framed {
    pub(super) fn new(version: Version) -> Self {
        Self {
            version,
            close: version == Version::HTTP_10,
            length: None,
            chunked: None,
            other_coding: false,
        }
    }

    /// A `Content-Length` value.
    pub(super) fn length(&mut self, value: &[u8]) -> Result<(), Error> {
        let n = parse_length(value)?;
        if self.length.is_some_and(|l| l != n) {
            return Err(Error::Malformed("conflicting content-length"));
        }
        self.length = Some(n);
        Ok(())
    }

    /// A `Transfer-Encoding` value. A coding other than `chunked` (gzip, say) is not
    /// relayed: `Transfer-Encoding` is hop-by-hop, so the client would get coded bytes
    /// with nothing saying so; such a response fails the exchange (502).
    pub(super) fn transfer_encoding(&mut self, value: &[u8]) -> Result<(), Error> {
        if self.version == Version::HTTP_10 {
            // RFC 9112 §6.1: an HTTP/1.0 message with a transfer coding has faulty framing.
            return Err(Error::Malformed(
                "transfer-encoding in an HTTP/1.0 response",
            ));
        }
        if tokens(value).any(<[u8]>::is_empty) {
            // `chunked,`: RFC 9110 §5.6.1 skips the empty element, hyper reads it as a
            // coding other than chunked; no reading of it is safe to relay.
            return Err(Error::Malformed("empty transfer coding"));
        }
        self.chunked = Some(last_token_is(value, b"chunked"));
        self.other_coding |=
            tokens(value).any(|t| !t.is_empty() && !t.eq_ignore_ascii_case(b"chunked"));
        if self.other_coding {
            return Err(Error::Malformed("unsupported transfer coding"));
        }
        Ok(())
    }

    /// Whether a `Transfer-Encoding` was given: then a `Content-Length` beside it is not
    /// relayed (RFC 9112 §6.1: the coding frames the message).
    pub(super) fn has_transfer_encoding(&self) -> bool {
        self.chunked.is_some()
    }

    /// A `Connection` value.
    pub(super) fn connection(&mut self, value: &[u8]) {
        if value.eq_ignore_ascii_case(b"keep-alive") {
            // Nearly every `Connection` header: one comparison, no token split.
            if self.version == Version::HTTP_10 {
                self.close = false;
            }
        } else if has_token(value, b"close") {
            self.close = true;
        } else if has_token(value, b"keep-alive") && self.version == Version::HTTP_10 {
            self.close = false;
        }
    }

    /// The `Content-Length` declared, if any.
    pub(super) fn declared_length(&self) -> Option<u64> {
        self.length
    }

    /// The body's framing, and whether the connection may carry another request.
    pub(super) fn framing(&self, status: StatusCode, head_request: bool) -> (Decoder, bool) {
        let no_body = head_request
            || status == StatusCode::NO_CONTENT
            || status == StatusCode::NOT_MODIFIED
            || status.is_informational();
        let framing = match (no_body, self.chunked, self.length) {
            (true, _, _) => Decoder::Length(0),
            (false, Some(true), _) => Decoder::chunked(),
            // A transfer coding other than chunked last: the body runs to the close.
            (false, Some(false), _) | (false, None, None) => Decoder::Eof,
            (false, None, Some(n)) => Decoder::Length(n),
        };
        // A message with both a transfer coding and a length must not reuse the
        // connection (RFC 9112 §6.3); neither may a body that ends with the connection.
        let ambiguous = self.chunked.is_some() && self.length.is_some() && !no_body;
        let keep_alive = !(self.close || ambiguous || framing == Decoder::Eof);
        (framing, keep_alive)
    }
}

/// A response head as httparse reads it at the start of a buffer.
pub(super) struct Tokens<'b, 'h> {
    /// The head's length, through its empty line.
    pub(super) len: usize,
    pub(super) version: Version,
    pub(super) status: StatusCode,
    /// Its header fields, names and values slices of the buffer, in order.
    pub(super) headers: &'h [httparse::Header<'b>],
}

/// Room for a response head's header fields (uninitialized: only those read are set).
pub(super) type Slots<'b> = [MaybeUninit<httparse::Header<'b>>; MAX_HEADERS];

/// An empty [`Slots`].
pub(super) fn slots<'b>() -> Slots<'b> {
    [MaybeUninit::uninit(); MAX_HEADERS]
}

/// Reads the response head at the start of `buf` with httparse — the one HTTP/1 parser of
/// both sides — or `None` if `buf` does not hold it whole yet. Refused: a head over
/// [`MAX_HEAD`] (whole or not), more than [`MAX_HEADERS`] fields, anything httparse
/// refuses (a status line that is not HTTP/1.0 or 1.1 with three digits, a folded line, a
/// name that is not a token, a value with control characters, a line without a colon).
pub(super) fn tokenize<'b, 'h>(
    buf: &'b [u8],
    slots: &'h mut Slots<'b>,
) -> Result<Option<Tokens<'b, 'h>>, Error> {
    let mut response = httparse::Response::new(&mut []);
    let parsed = httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut response,
        buf,
        slots,
    );
    let len = match parsed {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD => {
            return Err(Error::Malformed("response head too large"));
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(error) => return Err(Error::Malformed(refusal(error))),
    };
    if len > MAX_HEAD {
        // Arrived whole in one read: as large as one that did not.
        return Err(Error::Malformed("response head too large"));
    }
    let version = match response.version {
        Some(0) => Version::HTTP_10,
        Some(1) => Version::HTTP_11,
        _ => return Err(Error::Malformed("not an HTTP/1 status line")),
    };
    let status = response
        .code
        .and_then(|code| StatusCode::from_u16(code).ok())
        .ok_or(Error::Malformed("invalid status code"))?;
    Ok(Some(Tokens {
        len,
        version,
        status,
        headers: response.headers,
    }))
}

/// What httparse's refusal means, said as the client's errors say it.
fn refusal(error: httparse::Error) -> &'static str {
    match error {
        httparse::Error::TooManyHeaders => "too many response headers",
        httparse::Error::HeaderName => "invalid response header name",
        httparse::Error::HeaderValue => "invalid response header value",
        httparse::Error::Status => "invalid status code",
        httparse::Error::Version => "not an HTTP/1 status line",
        httparse::Error::NewLine | httparse::Error::Token => "malformed response head",
    }
}

/// The byte offset of `part` in `buf`, which holds it.
pub(super) fn offset(buf: &[u8], part: &[u8]) -> usize {
    (part.as_ptr() as usize).saturating_sub(buf.as_ptr() as usize)
}

pub(super) fn trim(mut value: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = value {
        value = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = value {
        value = rest;
    }
    value
}

/// A `Content-Length` value: digits, or a list of equal ones.
fn parse_length(value: &[u8]) -> Result<u64, Error> {
    let mut found = None;
    for part in value.split(|&b| b == b',') {
        let part = trim(part);
        if part.is_empty() || part.len() > 19 || !part.iter().all(u8::is_ascii_digit) {
            return Err(Error::Malformed("invalid content-length"));
        }
        let n = part.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
        if found.is_some_and(|f| f != n) {
            return Err(Error::Malformed("conflicting content-length"));
        }
        found = Some(n);
    }
    found.ok_or(Error::Malformed("invalid content-length"))
}

fn tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value.split(|&b| b == b',').map(trim)
}

fn has_token(value: &[u8], token: &[u8]) -> bool {
    tokens(value).any(|t| t.eq_ignore_ascii_case(token))
}

fn last_token_is(value: &[u8], token: &[u8]) -> bool {
    tokens(value)
        .filter(|t| !t.is_empty())
        .last()
        .is_some_and(|t| t.eq_ignore_ascii_case(token))
}

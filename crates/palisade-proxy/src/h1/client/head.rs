//! Message heads: the request head written to an endpoint, and the full parse of a
//! response head (every relayed header into the map) for the heads the raw parse leaves
//! to it.
//!
//! The request head is written straight from the request's parts into the connection's
//! reused buffer. The response head is found in the read buffer, split off and frozen
//! once, and every header value is a slice of that one buffer (no copy per header).

use bytes::{Bytes, BytesMut};
use http::header::{CONNECTION, CONTENT_LENGTH, HOST, TE, TRANSFER_ENCODING};
use http::uri::Authority;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Version};
use palisade_http::deadline::{GRPC_TIMEOUT, X_REQUEST_DEADLINE, X_REQUEST_TIMEOUT};

use super::Error;
use super::response::{self, Framed, ResponseHead, relayed_length, trim};
use crate::h1::framing::Framing;
use crate::h1::interim::EarlyHints;
use crate::h1::wire::{push_decimal, push_header};

/// What goes on the wire ahead of a request body: the client's request line and headers,
/// with the proxy's own headers in place of the client's.
#[derive(Debug)]
pub(crate) struct RequestHead<'a> {
    /// The method.
    pub(crate) method: &'a Method,
    /// Path and query (`/` when empty).
    pub(crate) path: &'a str,
    /// The client's headers. Hop-by-hop headers, `Content-Length` and the headers
    /// replaced below are skipped when written; a `Connection` header that names other
    /// headers must have been applied (see [`RequestHead::can_write`]).
    pub(crate) headers: &'a HeaderMap,
    /// The `Host` when the client sent none (else the endpoint's authority is used).
    pub(crate) host: Option<&'a str>,
    /// Replaces every `X-Forwarded-For`.
    pub(crate) forwarded_for: Option<&'a HeaderValue>,
    /// The budget passed on: replaces `X-Request-Timeout` (whole milliseconds) and drops
    /// `X-Request-Deadline`; with a gRPC value, replaces `grpc-timeout` too.
    pub(crate) timeout: Option<(u64, Option<HeaderValue>)>,
    /// Where an upstream's `103 Early Hints` go, when the client's connection relays
    /// them.
    pub(crate) early_hints: Option<&'a EarlyHints>,
}

impl<'a> RequestHead<'a> {
    /// The head of `parts` as it is: nothing replaced or added by the proxy.
    pub(crate) fn of(parts: &'a http::request::Parts) -> Self {
        RequestHead {
            method: &parts.method,
            path: parts.uri.path_and_query().map_or("/", |p| p.as_str()),
            headers: &parts.headers,
            host: None,
            forwarded_for: None,
            timeout: None,
            early_hints: None,
        }
    }

    /// The client's headers can be written as they are, skipping names: no `Connection`
    /// header names another header to remove.
    pub(crate) fn can_write(headers: &HeaderMap) -> bool {
        headers
            .get_all(CONNECTION)
            .iter()
            .all(|value| !palisade_http::headers::names_headers(value))
    }

    fn skips(&self, name: &HeaderName) -> bool {
        if *name == CONTENT_LENGTH || palisade_http::headers::is_hop_by_hop(name) {
            return true;
        }
        if self.forwarded_for.is_some() && *name == X_FORWARDED_FOR {
            return true;
        }
        match &self.timeout {
            Some((_, grpc)) => {
                *name == X_REQUEST_TIMEOUT
                    || *name == X_REQUEST_DEADLINE
                    || (grpc.is_some() && *name == GRPC_TIMEOUT)
            }
            None => false,
        }
    }
}

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// Writes the request line and headers into `out`. `Content-Length` and
/// `Transfer-Encoding` are the framing's, whatever the request carried; `Host` is the
/// endpoint's when neither the request nor `head.host` gives one; `TE: trailers` goes on
/// when the client's `TE` asks for trailers (the relay passes them on).
pub(super) fn encode_request(
    out: &mut Vec<u8>,
    head: &RequestHead<'_>,
    authority: &Authority,
    framing: Framing,
) {
    out.clear();
    out.reserve(256);
    out.extend_from_slice(head.method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(if head.path.is_empty() { "/" } else { head.path }.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let mut has_host = false;
    let mut trailers = false;
    for (name, value) in head.headers {
        if head.skips(name) {
            trailers |= name == TE && palisade_http::headers::accepts_trailers_value(value);
            continue;
        }
        has_host |= name == HOST;
        push_header(out, name.as_str().as_bytes(), value.as_bytes());
    }
    if !has_host {
        let host = head.host.unwrap_or(authority.as_str());
        push_header(out, b"host", host.as_bytes());
    }
    if let Some(value) = head.forwarded_for {
        push_header(out, b"x-forwarded-for", value.as_bytes());
    }
    if trailers {
        out.extend_from_slice(b"te: trailers\r\n");
    }
    if let Some((ms, grpc)) = &head.timeout {
        out.extend_from_slice(b"x-request-timeout: ");
        push_decimal(out, *ms);
        out.extend_from_slice(b"\r\n");
        if let Some(grpc) = grpc {
            push_header(out, b"grpc-timeout", grpc.as_bytes());
        }
    }
    framing.push_header(out);
    out.extend_from_slice(b"\r\n");
}

/// The response head at the start of `buf`, split off it, parsed into a map alone:
/// every header relayed is in the map (see `super::parse_response`).
pub(super) fn parse_full(
    buf: &mut BytesMut,
    head_request: bool,
) -> Result<Option<ResponseHead>, Error> {
    let mut slots = response::slots();
    let Some(tokens) = response::tokenize(buf, &mut slots)? else {
        return Ok(None);
    };
    let (len, version, status) = (tokens.len, tokens.version, tokens.status);
    // Where each field's name and value sit, so that the values can be slices of the
    // head once it is split off the buffer.
    let fields: Vec<(usize, usize, usize, usize)> = tokens
        .headers
        .iter()
        .map(|field| {
            let value = trim(field.value);
            (
                response::offset(buf, field.name.as_bytes()),
                field.name.len(),
                response::offset(buf, value),
                value.len(),
            )
        })
        .collect();
    let head = buf.split_to(len).freeze();
    parse_fields(&head, &fields, version, status, head_request).map(Some)
}

/// The status and length of the response head at the start of `buf`, if `buf` holds it
/// all; an error if it is not one. Consumes nothing: for a look at what an endpoint sent
/// while the request body is still going out.
pub(super) fn peek_status(buf: &[u8]) -> Result<Option<(StatusCode, usize)>, Error> {
    let mut slots = response::slots();
    Ok(response::tokenize(buf, &mut slots)?.map(|tokens| (tokens.status, tokens.len)))
}

/// The map of `head`'s fields (at the offsets `fields` gives) to relay, and the framing
/// they say.
fn parse_fields(
    head: &Bytes,
    fields: &[(usize, usize, usize, usize)],
    version: Version,
    status: StatusCode,
    head_request: bool,
) -> Result<ResponseHead, Error> {
    let mut headers = HeaderMap::with_capacity(fields.len());
    let mut facts = Framed::new(version);
    for &(name_at, name_len, value_at, value_len) in fields {
        let name = HeaderName::from_bytes(&head[name_at..name_at + name_len])
            .map_err(|_| Error::Malformed("invalid response header name"))?;
        let value = &head[value_at..value_at + value_len];
        if name == CONTENT_LENGTH {
            facts.length(value)?;
            // Relayed once, as one number, below: not as the lines received.
            continue;
        } else if name == TRANSFER_ENCODING {
            facts.transfer_encoding(value)?;
        } else if name == CONNECTION {
            facts.connection(value);
        }
        let value = HeaderValue::from_maybe_shared(head.slice(value_at..value_at + value_len))
            .map_err(|_| Error::Malformed("invalid response header value"))?;
        // Hop-by-hop headers are not relayed: dropped here, so that the relay has none
        // to strip. A `Connection` header naming others stays for the relay to apply.
        if palisade_http::headers::is_hop_by_hop(&name)
            && !(name == CONNECTION && palisade_http::headers::names_headers(&value))
        {
            continue;
        }
        headers.append(name, value);
    }
    if let Some(length) = relayed_length(&facts, status) {
        headers.insert(CONTENT_LENGTH, HeaderValue::from(length));
    }
    let (framing, keep_alive) = facts.framing(status, head_request);
    Ok(ResponseHead {
        status,
        version,
        headers,
        framing,
        keep_alive,
        raw: None,
    })
}

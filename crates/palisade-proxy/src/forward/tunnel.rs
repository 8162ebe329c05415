//! Protocol upgrades (WebSocket and the like): a tunnel from the client to an endpoint.
//!
//! An HTTP/1.1 request asking to switch protocols (`Connection: upgrade` and an
//! `Upgrade` header) is not a request the pooled client can carry: the connection it
//! opens becomes the new protocol's. So it goes to the endpoint the balancer picks on a
//! connection of its own, its head written with the upgrade headers kept. When the
//! endpoint agrees (`101 Switching Protocols`), that answer goes to the client, and once
//! the client's server hands over its connection the two are joined: bytes are copied
//! both ways until either side closes. Any other answer is relayed, head only (its body
//! is not read), and the endpoint's connection closed.
//!
//! What applies: the route, the deadline, faults, the breakers' refusal, the throttle and
//! the rate limit, as for any request (see `forward`); the endpoint's breaker admits the
//! attempt and records its answer (a 101 is a success); establishing the tunnel (connect,
//! head written, answer read) is bounded by the upstream's total timeout. What does not:
//! retries (the request is never sent twice), the bulkhead and the concurrency limits (a
//! tunnel lives as long as its users want; the listener's `max_connections` bounds them),
//! and the response body idle bound. HTTP/2 clients cannot ask for an upgrade.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::header::{CONNECTION, HOST, UPGRADE};
use http::request::Parts;
use http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode, Version};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use palisade::outcome::Outcome;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::body::empty;
use crate::h1::rewind::Rewind;
use crate::respond::{Reason, Reply};
use crate::route::Route;

/// The longest answer head read from an endpoint.
const MAX_HEAD: usize = 64 * 1024;
/// The most answer headers read.
const MAX_HEADERS: usize = 100;

/// Whether `head` asks to switch protocols (HTTP/1.1, `Connection: upgrade`, `Upgrade`).
pub(super) fn is_upgrade(head: &Parts) -> bool {
    head.version == Version::HTTP_11
        && head.headers.contains_key(UPGRADE)
        && head.headers.get_all(CONNECTION).iter().any(|value| {
            value
                .as_bytes()
                .split(|b| *b == b',')
                .any(|token| token.trim_ascii().eq_ignore_ascii_case(b"upgrade"))
        })
}

/// Why a tunnel could not be opened.
#[derive(Debug, thiserror::Error)]
pub(super) enum Failed {
    /// No endpoint would take it (its breakers refused, none is healthy).
    #[error("no endpoint took the upgrade")]
    Refused(Reason, Option<Duration>),
    /// The endpoint could not be reached or answered wrongly.
    #[error("upgrade failed: {0}")]
    Upstream(String),
    /// Establishing it took longer than the upstream's total timeout.
    #[error("upgrade timed out")]
    Timeout,
}

/// Opens a tunnel for the request `head` on `route`: the answer to relay, the joining
/// of both connections running on in its own task when the answer is a 101.
pub(super) async fn open(
    route: &Route,
    head: &Parts,
    client_upgrade: OnUpgrade,
    forwarded_for: Option<&HeaderValue>,
) -> Result<Reply, Failed> {
    let upstream = &route.upstream;
    let mut picked = upstream.balancer.pick(0).map_err(|error| {
        let (reason, after) = Reason::of(&error);
        Failed::Refused(reason, after)
    })?;
    let limit = upstream.pipeline.total().after();
    let established = tokio::time::timeout(limit, async {
        let mut stream = TcpStream::connect(picked.endpoint.address.as_str())
            .await
            .map_err(|e| Failed::Upstream(format!("connect: {e}")))?;
        let _ = stream.set_nodelay(true);
        let request = encode(head, picked.endpoint.address.as_str(), forwarded_for);
        stream
            .write_all(&request)
            .await
            .map_err(|e| Failed::Upstream(format!("write: {e}")))?;
        let (answer, rest) = read_head(&mut stream).await?;
        Ok::<_, Failed>((stream, answer, rest))
    })
    .await;
    let (stream, answer, rest) = match established {
        Ok(Ok(established)) => established,
        Ok(Err(failed)) => {
            record(&mut picked, Outcome::failure());
            return Err(failed);
        }
        Err(_) => {
            record(&mut picked, Outcome::failure());
            return Err(Failed::Timeout);
        }
    };
    let switching = answer.status() == StatusCode::SWITCHING_PROTOCOLS;
    record(
        &mut picked,
        if answer.status().is_server_error() {
            Outcome::failure()
        } else {
            Outcome::success()
        },
    );
    if switching {
        tokio::spawn(join(client_upgrade, Rewind::new(rest, stream)));
    }
    Ok(Reply::plain(answer))
}

/// The breaker's verdict on the endpoint's answer.
fn record(picked: &mut crate::upstream::Picked, outcome: Outcome) {
    if let Some(permit) = picked.permit.take() {
        permit.record(&outcome);
    }
}

/// Copies bytes both ways between the client, once its server hands its connection
/// over, and the endpoint, until either closes.
async fn join(client: OnUpgrade, mut endpoint: Rewind<TcpStream>) {
    let mut client = match client.await {
        Ok(upgraded) => TokioIo::new(upgraded),
        Err(error) => return tracing::debug!(%error, "the client's upgrade failed"),
    };
    match tokio::io::copy_bidirectional(&mut client, &mut endpoint).await {
        Ok((up, down)) => tracing::debug!(up, down, "tunnel closed"),
        Err(error) => tracing::debug!(%error, "tunnel failed"),
    }
}

/// The request head for the endpoint: the client's, its upgrade headers kept, `Host`
/// added when it had none, the client's address added to `X-Forwarded-For`.
fn encode(head: &Parts, address: &str, forwarded_for: Option<&HeaderValue>) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(head.method.as_str().as_bytes());
    out.push(b' ');
    let target = head.uri.path_and_query().map_or("/", |p| p.as_str());
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let x_forwarded_for = HeaderName::from_static("x-forwarded-for");
    let mut chain: Vec<u8> = Vec::new();
    for (name, value) in &head.headers {
        if forwarded_for.is_some() && *name == x_forwarded_for {
            if !chain.is_empty() {
                chain.extend_from_slice(b", ");
            }
            chain.extend_from_slice(value.as_bytes());
            continue;
        }
        crate::h1::wire::push_header(&mut out, name.as_str().as_bytes(), value.as_bytes());
    }
    if !head.headers.contains_key(HOST) {
        crate::h1::wire::push_header(&mut out, b"host", address.as_bytes());
    }
    if let Some(value) = forwarded_for {
        if !chain.is_empty() {
            chain.extend_from_slice(b", ");
        }
        chain.extend_from_slice(value.as_bytes());
        crate::h1::wire::push_header(&mut out, b"x-forwarded-for", &chain);
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// Reads the endpoint's answer head: the answer (its body, if any, is not relayed) and
/// the bytes after the head, which belong to the new protocol.
async fn read_head(
    stream: &mut TcpStream,
) -> Result<(Response<crate::body::ProxyBody>, Bytes), Failed> {
    let mut buf = BytesMut::with_capacity(4096);
    loop {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut parsed = httparse::Response::new(&mut headers);
        match parsed.parse(&buf) {
            Ok(httparse::Status::Complete(len)) => {
                let answer = answer(&parsed)?;
                let rest = buf.split_off(len).freeze();
                return Ok((answer, rest));
            }
            Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => {}
            Ok(httparse::Status::Partial) => {
                return Err(Failed::Upstream("answer head too large".into()));
            }
            Err(error) => return Err(Failed::Upstream(format!("malformed answer: {error}"))),
        }
        let read = stream
            .read_buf(&mut buf)
            .await
            .map_err(|e| Failed::Upstream(format!("read: {e}")))?;
        if read == 0 {
            return Err(Failed::Upstream("closed before answering".into()));
        }
    }
}

/// The answer to relay: the endpoint's status and headers. For a 101 the upgrade
/// headers stay (the client's server switches on them); for any other status the
/// connection's own headers and the body's framing go, as no body is relayed.
fn answer(parsed: &httparse::Response<'_, '_>) -> Result<Response<crate::body::ProxyBody>, Failed> {
    let status = parsed
        .code
        .and_then(|code| StatusCode::from_u16(code).ok())
        .ok_or_else(|| Failed::Upstream("no status".into()))?;
    let mut headers = HeaderMap::with_capacity(parsed.headers.len());
    for header in parsed.headers.iter() {
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(header.name.as_bytes()),
            HeaderValue::from_bytes(header.value),
        ) else {
            return Err(Failed::Upstream("invalid answer header".into()));
        };
        let framing =
            name == http::header::CONTENT_LENGTH || name == http::header::TRANSFER_ENCODING;
        if status != StatusCode::SWITCHING_PROTOCOLS
            && (framing || palisade_http::headers::is_hop_by_hop(&name))
        {
            continue;
        }
        headers.append(name, value);
    }
    let mut response = Response::new(empty());
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(headers: &[(&str, &str)]) -> Parts {
        let mut builder = http::Request::get("/chat").version(Version::HTTP_11);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(()).unwrap().into_parts().0
    }

    #[test]
    fn an_upgrade_needs_both_headers_and_http11() {
        assert!(is_upgrade(&parts(&[
            ("connection", "Upgrade"),
            ("upgrade", "websocket")
        ])));
        assert!(is_upgrade(&parts(&[
            ("connection", "keep-alive, upgrade"),
            ("upgrade", "h2c")
        ])));
        assert!(!is_upgrade(&parts(&[("upgrade", "websocket")])));
        assert!(!is_upgrade(&parts(&[("connection", "upgrade")])));
        let mut http10 = parts(&[("connection", "upgrade"), ("upgrade", "websocket")]);
        http10.version = Version::HTTP_10;
        assert!(!is_upgrade(&http10));
    }

    #[test]
    fn the_head_keeps_the_upgrade_headers_and_names_the_host() {
        let head = parts(&[
            ("connection", "Upgrade"),
            ("upgrade", "websocket"),
            ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ]);
        let wire = String::from_utf8(encode(&head, "127.0.0.1:9", None)).unwrap();
        assert!(wire.starts_with("GET /chat HTTP/1.1\r\n"), "{wire}");
        for line in [
            "connection: Upgrade",
            "upgrade: websocket",
            "sec-websocket-key:",
            "host: 127.0.0.1:9",
        ] {
            assert!(wire.contains(line), "{line} missing from {wire}");
        }
        assert!(wire.ends_with("\r\n\r\n"));
    }
}

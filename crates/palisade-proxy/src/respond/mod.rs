//! Responses the proxy makes itself: always explained.
//!
//! Every response the proxy makes (rather than relays) carries `x-palisade-reason` and,
//! where a wait would help, `Retry-After`. A route's fallback replaces them and carries
//! `x-palisade-fallback: 1`.

mod fallback;

pub use fallback::Fallback;

use std::sync::LazyLock;
use std::time::Duration;

use bytes::Bytes;

use http::header::{CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode};
use palisade::Error;
use palisade_http::classify::{TransportError, TransportErrorKind};

use crate::body::{ProxyBody, full};
use crate::h1::client::RawHead;

/// `x-palisade-reason`.
pub const REASON: HeaderName = HeaderName::from_static("x-palisade-reason");
/// `x-palisade-fallback`.
pub const FALLBACK: HeaderName = HeaderName::from_static("x-palisade-fallback");
/// `x-palisade-attempts`: how many attempts a relayed response took.
pub const ATTEMPTS: HeaderName = HeaderName::from_static("x-palisade-attempts");

/// Why the proxy answered itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Reason {
    /// No route matches the path (404).
    NoRoute,
    /// A deadline header could not be read (400).
    BadDeadline,
    /// The client's request is malformed: an ambiguous head, or a body that breaks its
    /// framing (400).
    BadRequest,
    /// The client stopped sending its request body for `listener.body_timeout` (408).
    BodyTimeout,
    /// The body is over `max_body_bytes` (413).
    BodyTooLarge,
    /// Rate limited (429).
    RateLimited,
    /// A breaker refused (503).
    CircuitOpen,
    /// The bulkhead is full (503).
    BulkheadFull,
    /// No endpoint can take the request (503).
    NoHealthyEndpoint,
    /// The route's per-try or total timeout ran out (504).
    Timeout,
    /// The caller's deadline passed (504).
    DeadlineExceeded,
    /// The upstream failed and retries gave up (502).
    RetriesExhausted,
    /// The upstream failed and the request could not be retried (502).
    UpstreamError,
    /// Fault injection (the configured status).
    FaultInjected,
    /// Client-side throttling rejected the request locally (503).
    Throttled,
    /// Load shedding dropped the request (503).
    Shed,
    /// The fleet's rate limit, counted in Redis, refused (429).
    FleetRateLimited,
    /// While Redis fails, this sidecar's share of the fleet's rate limit refused (429).
    LocalShareRateLimited,
    /// Redis fails and the fleet limit is `on_store_down = "closed"` (503).
    FleetStoreDown,
}

impl Reason {
    /// Every reason, in declaration order.
    pub const ALL: [Reason; 19] = [
        Reason::NoRoute,
        Reason::BadDeadline,
        Reason::BadRequest,
        Reason::BodyTimeout,
        Reason::BodyTooLarge,
        Reason::RateLimited,
        Reason::CircuitOpen,
        Reason::BulkheadFull,
        Reason::NoHealthyEndpoint,
        Reason::Timeout,
        Reason::DeadlineExceeded,
        Reason::RetriesExhausted,
        Reason::UpstreamError,
        Reason::FaultInjected,
        Reason::Throttled,
        Reason::Shed,
        Reason::FleetRateLimited,
        Reason::LocalShareRateLimited,
        Reason::FleetStoreDown,
    ];

    /// Its position in [`Reason::ALL`].
    pub const fn index(self) -> usize {
        self as usize
    }

    /// The header value.
    pub const fn as_str(self) -> &'static str {
        match self {
            Reason::NoRoute => "no-route",
            Reason::BadDeadline => "bad-deadline",
            Reason::BadRequest => "bad-request",
            Reason::BodyTimeout => "body-timeout",
            Reason::BodyTooLarge => "body-too-large",
            Reason::RateLimited => "rate-limited",
            Reason::CircuitOpen => "circuit-open",
            Reason::BulkheadFull => "bulkhead-full",
            Reason::NoHealthyEndpoint => "no-healthy-endpoint",
            Reason::Timeout => "timeout",
            Reason::DeadlineExceeded => "deadline-exceeded",
            Reason::RetriesExhausted => "retries-exhausted",
            Reason::UpstreamError => "upstream-error",
            Reason::FaultInjected => "fault-injected",
            Reason::Throttled => "throttled",
            Reason::Shed => "shed",
            Reason::FleetRateLimited => "fleet-rate-limited",
            Reason::LocalShareRateLimited => "fleet-local-share-rate-limited",
            Reason::FleetStoreDown => "fleet-store-down",
        }
    }

    /// Whether the client's own request is at fault: such an answer is never replaced
    /// by a route's fallback, which stands in for a failing upstream.
    pub const fn is_clients(self) -> bool {
        matches!(
            self,
            Reason::BadDeadline | Reason::BadRequest | Reason::BodyTimeout | Reason::BodyTooLarge
        )
    }

    /// The status that goes with it (fault injection uses its configured one).
    pub const fn status(self) -> StatusCode {
        match self {
            Reason::NoRoute => StatusCode::NOT_FOUND,
            Reason::BadDeadline | Reason::BadRequest => StatusCode::BAD_REQUEST,
            Reason::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            Reason::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Reason::RateLimited | Reason::FleetRateLimited | Reason::LocalShareRateLimited => {
                StatusCode::TOO_MANY_REQUESTS
            }
            Reason::CircuitOpen
            | Reason::BulkheadFull
            | Reason::NoHealthyEndpoint
            | Reason::FaultInjected
            | Reason::Throttled
            | Reason::Shed
            | Reason::FleetStoreDown => StatusCode::SERVICE_UNAVAILABLE,
            Reason::Timeout | Reason::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
            Reason::RetriesExhausted | Reason::UpstreamError => StatusCode::BAD_GATEWAY,
        }
    }

    /// The reason for a policy's error, and the wait to suggest.
    pub fn of(error: &Error<TransportError>) -> (Reason, Option<Duration>) {
        let reason = match error {
            Error::Inner(e) if e.kind == TransportErrorKind::NoHealthyEndpoint => {
                Reason::NoHealthyEndpoint
            }
            Error::Inner(_) => Reason::UpstreamError,
            Error::Timeout { .. } => Reason::Timeout,
            Error::CircuitOpen { .. } => Reason::CircuitOpen,
            Error::BulkheadFull { .. } => Reason::BulkheadFull,
            Error::Shed { .. } => Reason::Shed,
            Error::RateLimited { .. } => Reason::RateLimited,
            Error::DeadlineExceeded => Reason::DeadlineExceeded,
            Error::RetriesExhausted { last, .. } => match **last {
                Error::Timeout { .. } => Reason::Timeout,
                Error::DeadlineExceeded => Reason::DeadlineExceeded,
                _ => Reason::RetriesExhausted,
            },
            _ => Reason::UpstreamError,
        };
        (reason, error.retry_after())
    }
}

/// A response, and maybe header lines to write before its map's (see [`Reply::head`]).
pub struct Reply {
    /// The response; its map holds the headers not in `head`.
    pub response: Response<ProxyBody>,
    /// Header lines written as they are, before the map's: an upstream's, kept raw, or
    /// the proxy's own answer's, encoded once. The own HTTP/1.1 server writes them
    /// through; hyper's connections take them folded into the map
    /// ([`into_response`](Self::into_response)).
    pub(crate) head: Option<RawHead>,
}

impl Reply {
    /// `response`, its headers all in its map.
    pub fn plain(response: Response<ProxyBody>) -> Self {
        Self {
            response,
            head: None,
        }
    }

    /// The response with every header in its map: the lines of `head`, if any, parsed
    /// into it (a path no connection that takes raw lines uses).
    pub fn into_response(self) -> Response<ProxyBody> {
        let Some(head) = self.head else {
            return self.response;
        };
        let mut response = self.response;
        let mut lines = Vec::new();
        head.write_to(&mut lines);
        let mut headers = HeaderMap::new();
        for line in lines.split(|&b| b == b'\n') {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let Some(colon) = line.iter().position(|&b| b == b':') else {
                continue;
            };
            if let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(&line[..colon]),
                HeaderValue::from_bytes(line[colon + 1..].trim_ascii()),
            ) {
                headers.append(name, value);
            }
        }
        for (name, value) in response.headers() {
            headers.append(name.clone(), value.clone());
        }
        *response.headers_mut() = headers;
        response
    }
}

/// `headers` as header lines (`name: value` and CRLF each).
pub fn lines(headers: &HeaderMap) -> Bytes {
    let mut out = Vec::new();
    for (name, value) in headers {
        crate::h1::wire::push_header(&mut out, name.as_str().as_bytes(), value.as_bytes());
    }
    Bytes::from(out)
}

/// Each reason's body and headers, built once: an answer copies them (its map, or its
/// lines).
static EXPLAINED: LazyLock<Vec<(Bytes, HeaderMap, Bytes)>> = LazyLock::new(|| {
    Reason::ALL
        .iter()
        .map(|reason| {
            // Fourteen short strings for the life of the process: a static body is
            // copied without touching a reference count shared by the workers.
            let body = Bytes::from_static(format!("{}\n", reason.as_str()).leak().as_bytes());
            let mut headers = HeaderMap::with_capacity(3);
            headers.insert(REASON, HeaderValue::from_static(reason.as_str()));
            headers.insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            );
            let lines = lines(&headers);
            (body, headers, lines)
        })
        .collect()
});

/// [`explained`], as a [`Reply`]: its headers as lines encoded once.
pub fn explained_reply(reason: Reason, status: StatusCode, retry_after: Option<Duration>) -> Reply {
    let Some((body, _, lines)) = EXPLAINED.get(reason.index()) else {
        return Reply::plain(explained(reason, status, retry_after));
    };
    let mut response = Response::new(full(body.clone()));
    *response.status_mut() = status;
    if let Some(after) = retry_after {
        response
            .headers_mut()
            .insert(RETRY_AFTER, palisade_http::retry_after::value(after));
    }
    Reply {
        response,
        head: Some(RawHead::lines(lines.clone())),
    }
}

/// [`fallback`], as a [`Reply`]: its headers as lines encoded once.
pub fn fallback_reply(fallback: &Fallback, reason: Reason) -> Reply {
    let mut response = Response::new(full(fallback.body.clone()));
    *response.status_mut() = StatusCode::from_u16(fallback.status).unwrap_or(StatusCode::OK);
    Reply {
        response,
        head: Some(RawHead::lines(fallback.lines(reason))),
    }
}

/// A response explaining `reason`, with `Retry-After` when `retry_after` is known.
pub fn explained(
    reason: Reason,
    status: StatusCode,
    retry_after: Option<Duration>,
) -> Response<ProxyBody> {
    let mut response = match EXPLAINED.get(reason.index()) {
        Some((body, headers, _)) => {
            let mut response = Response::new(full(body.clone()));
            *response.headers_mut() = headers.clone();
            response
        }
        None => Response::new(full(format!("{}\n", reason.as_str()))),
    };
    *response.status_mut() = status;
    if let Some(after) = retry_after {
        response
            .headers_mut()
            .insert(RETRY_AFTER, palisade_http::retry_after::value(after));
    }
    response
}

/// The route's fallback, marked as such.
pub fn fallback(fallback: &Fallback, reason: Reason) -> Response<ProxyBody> {
    let mut response = Response::new(full(fallback.body.clone()));
    *response.status_mut() = StatusCode::from_u16(fallback.status).unwrap_or(StatusCode::OK);
    // Built when the config was loaded: a copy, no header parsed or hashed here.
    *response.headers_mut() = fallback.headers(reason);
    response
}

/// The value of `x-palisade-attempts`.
pub(crate) fn attempts_value(attempts: u32) -> HeaderValue {
    match attempts {
        1 => HeaderValue::from_static("1"),
        2 => HeaderValue::from_static("2"),
        3 => HeaderValue::from_static("3"),
        n => HeaderValue::from(n),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sorted(headers: &HeaderMap) -> Vec<(String, String)> {
        let mut all: Vec<_> = headers
            .iter()
            .map(|(n, v)| {
                (
                    n.to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        all.sort();
        all
    }

    #[test]
    fn an_answer_as_lines_carries_the_same_headers_as_its_map() {
        for reason in Reason::ALL {
            let after = Some(Duration::from_secs(3));
            let plain = explained(reason, reason.status(), after);
            let raw = explained_reply(reason, reason.status(), after);
            assert!(raw.head.is_some(), "{reason:?} encoded once");
            let status = raw.response.status();
            let merged = raw.into_response();
            assert_eq!(status, plain.status());
            assert_eq!(
                sorted(merged.headers()),
                sorted(plain.headers()),
                "{reason:?}"
            );
        }
    }

    #[test]
    fn a_fallback_as_lines_carries_the_same_headers_as_its_map() {
        let section: crate::config::FallbackSection = toml::from_str(
            r#"
status = 200
body = '{"degraded": true}'
content_type = "application/json"
"#,
        )
        .expect("a fallback section");
        let configured = Fallback::from(&section);
        for reason in Reason::ALL {
            let plain = fallback(&configured, reason);
            let raw = fallback_reply(&configured, reason);
            assert!(raw.head.is_some());
            assert_eq!(
                sorted(raw.into_response().headers()),
                sorted(plain.headers())
            );
        }
    }
}

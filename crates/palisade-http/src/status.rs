//! The HTTP answer to a policy's error: one mapping from [`palisade::Error`] to a status.
//!
//! | error | status | why |
//! |---|---|---|
//! | `RateLimited` | 429 Too Many Requests | the caller is over its quota; `Retry-After` says when it may come back |
//! | `CircuitOpen`, `BulkheadFull`, `Shed` | 503 Service Unavailable | the service protects itself or its dependency; `Retry-After` when the breaker knows |
//! | `Timeout`, `DeadlineExceeded` | 504 Gateway Timeout | no answer in the time there was |
//! | `RetriesExhausted` | 504 if the last attempt timed out, else 502 | what the last attempt ran into |
//! | `Inner` | 502 Bad Gateway | the dependency (or the handler) failed |
//!
//! The sidecar answers with the same statuses (its `respond::Reason`), and adds a body
//! and headers of its own. [`of`] gives the status alone; [`response`] builds a whole
//! answer with `Retry-After` and `x-palisade-reason` (the error's
//! [`reason`](palisade::Error::reason)), for an axum `HandleErrorLayer` or any tower
//! stack that must turn a policy's error into a response.

use http::{HeaderName, HeaderValue, Response, StatusCode};
use palisade::Error;

use crate::retry_after;

/// `x-palisade-reason`: why Palisade answered instead of the service.
pub const REASON: HeaderName = HeaderName::from_static("x-palisade-reason");

/// The status that answers `error`; see the [module docs](self).
pub fn of<E>(error: &Error<E>) -> StatusCode {
    match error {
        Error::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
        Error::CircuitOpen { .. } | Error::BulkheadFull { .. } | Error::Shed { .. } => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        Error::Timeout { .. } | Error::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Error::RetriesExhausted { last, .. } => match **last {
            Error::Timeout { .. } | Error::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
            _ => StatusCode::BAD_GATEWAY,
        },
        _ => StatusCode::BAD_GATEWAY,
    }
}

/// A response answering `error`: its [status](of), `Retry-After` when a policy knows
/// when to come back, `x-palisade-reason`, and an empty body.
///
/// ```
/// use std::time::Duration;
/// use palisade::Error;
///
/// let limited: Error<std::io::Error> = Error::RateLimited {
///     name: "api".into(),
///     retry_after: Duration::from_millis(1500),
/// };
/// let response: http::Response<String> = palisade_http::status::response(&limited);
/// assert_eq!(response.status(), 429);
/// assert_eq!(response.headers()["retry-after"], "2");
/// assert_eq!(response.headers()["x-palisade-reason"], "rate-limited");
/// ```
pub fn response<E, B: Default>(error: &Error<E>) -> Response<B> {
    let mut response = Response::new(B::default());
    *response.status_mut() = of(error);
    let headers = response.headers_mut();
    headers.insert(REASON, HeaderValue::from_static(error.reason()));
    if let Some(after) = error.retry_after() {
        headers.insert(http::header::RETRY_AFTER, retry_after::value(after));
    }
    response
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn every_error() -> Vec<(Error<&'static str>, u16)> {
        let after = Duration::from_secs(1);
        let exhausted = |last| Error::RetriesExhausted {
            attempts: 3,
            last: Box::new(last),
        };
        vec![
            (Error::Inner("down"), 502),
            (Error::Timeout { after }, 504),
            (
                Error::CircuitOpen {
                    name: "b".into(),
                    retry_after: None,
                },
                503,
            ),
            (
                Error::BulkheadFull {
                    name: "b".into(),
                    active: 1,
                    max: 1,
                },
                503,
            ),
            (
                Error::RateLimited {
                    name: "r".into(),
                    retry_after: after,
                },
                429,
            ),
            (Error::Shed { name: "s".into() }, 503),
            (Error::DeadlineExceeded, 504),
            (exhausted(Error::Inner("down")), 502),
            (exhausted(Error::Timeout { after }), 504),
            (exhausted(Error::DeadlineExceeded), 504),
        ]
    }

    #[test]
    fn every_error_has_its_status_and_reason() {
        for (error, status) in every_error() {
            let response: Response<()> = response(&error);
            assert_eq!(response.status(), status, "{error:?}");
            assert_eq!(response.headers()[REASON], error.reason());
            assert_eq!(
                response.headers().contains_key(http::header::RETRY_AFTER),
                error.retry_after().is_some()
            );
        }
    }
}

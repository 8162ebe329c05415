//! The HTTP answer to each of Palisade's refusals, in one place.
//!
//! | error | status |
//! |---|---|
//! | `Timeout`, `DeadlineExceeded` | 504 Gateway Timeout |
//! | `RateLimited` | 429 Too Many Requests, with `Retry-After` |
//! | `CircuitOpen`, `BulkheadFull`, `Shed` | 503 Service Unavailable (`Retry-After` when known) |
//! | `RetriesExhausted` | the status of the last attempt's error |
//! | `Inner` | 502 Bad Gateway: the dependency failed |
//!
//! ```
//! use http::StatusCode;
//! use palisade::Error;
//! use palisade_http::status::status_of;
//!
//! let limited: Error<()> = Error::RateLimited {
//!     name: "api".into(),
//!     retry_after: std::time::Duration::from_millis(1500),
//! };
//! assert_eq!(status_of(&limited), StatusCode::TOO_MANY_REQUESTS);
//! let answer = palisade_http::status::error_response::<_, String>(&limited);
//! assert_eq!(answer.headers()["retry-after"], "2", "whole seconds, rounded up");
//! assert_eq!(answer.headers()["x-palisade-reason"], "rate-limited");
//! ```

use http::header::RETRY_AFTER;
use http::{HeaderValue, Response, StatusCode};
use palisade::Error;

/// The status that answers `error`.
pub fn status_of<E>(error: &Error<E>) -> StatusCode {
    match error {
        Error::Timeout { .. } | Error::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Error::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
        Error::CircuitOpen { .. } | Error::BulkheadFull { .. } | Error::Shed { .. } => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        Error::RetriesExhausted { last, .. } => status_of(last),
        // `Inner`, and any kind of refusal added later: the dependency failed.
        _ => StatusCode::BAD_GATEWAY,
    }
}

/// An answer to `error`: its status, `Retry-After` (whole seconds, rounded up) when
/// Palisade knows when to come back, and `x-palisade-reason` with the error's reason.
pub fn error_response<E, B: Default>(error: &Error<E>) -> Response<B> {
    let mut response = Response::new(B::default());
    *response.status_mut() = status_of(error);
    let headers = response.headers_mut();
    if let Some(after) = error.retry_after() {
        let seconds = after.as_secs() + u64::from(after.subsec_nanos() > 0);
        headers.insert(RETRY_AFTER, HeaderValue::from(seconds.max(1)));
    }
    headers.insert(
        "x-palisade-reason",
        HeaderValue::from_static(error.reason()),
    );
    response
}

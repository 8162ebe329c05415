//! What an HTTP exchange says about the upstream, and whether to try again.
//!
//! | outcome | health | retried when |
//! |---|---|---|
//! | 2xx, 3xx | success | never |
//! | 429 | ignored (the upstream is fine, this client is over its quota) | `"429"` is listed, after `Retry-After` |
//! | other 4xx | ignored: a client error says nothing about the upstream | `"4xx"` code is listed |
//! | 5xx | failure | its code (or `"5xx"`) is listed and the request may be replayed, after `Retry-After` if given |
//! | connect failure | failure | `"connect-failure"` is listed — even for a POST: it never reached the upstream |
//! | reset, other transport errors | failure | `"reset"` is listed and the request may be replayed |
//! | per-try timeout | failure | `"timeout"` is listed and the request may be replayed |
//!
//! "May be replayed" is the request's own property ([`Replay`]): an idempotent method
//! or an `Idempotency-Key`, and a body small enough to have been buffered.
//!
//! [`HttpClassifier`] judges one proxied request's exchange (its transport errors
//! included). [`StatusClassifier`] judges responses alone, for any error type: a
//! server's handlers, such as an axum `Router`'s, answer every failure with a status.

use http::{Method, Response, StatusCode};
use palisade::Error;
use palisade::outcome::{Classify, Outcome, classify_rejection};

use crate::retry_after;

/// How a transport-level exchange failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{kind}: {message}")]
pub struct TransportError {
    /// What kind of failure.
    pub kind: TransportErrorKind,
    /// Detail for logs.
    pub message: String,
}

/// Kinds of transport failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TransportErrorKind {
    /// No connection could be made: the request was never sent.
    ConnectFailure,
    /// The connection broke during the exchange.
    Reset,
    /// Anything else (a malformed response, a body error).
    Other,
    /// No endpoint could take the request (all unhealthy or ejected): nothing was sent.
    NoHealthyEndpoint,
}

impl std::fmt::Display for TransportErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TransportErrorKind::ConnectFailure => "connect-failure",
            TransportErrorKind::Reset => "reset",
            TransportErrorKind::Other => "transport-error",
            TransportErrorKind::NoHealthyEndpoint => "no-healthy-endpoint",
        })
    }
}

/// The `on = [...]` list of a retry policy: which outcomes are retryable.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RetryOn {
    statuses: [u64; 2], // bit per status 400..=527
    any_5xx: bool,
    connect_failure: bool,
    reset: bool,
    timeout: bool,
}

/// An entry of a retry `on` list that is not understood.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a retry condition")]
pub struct UnknownCondition(pub String);

impl RetryOn {
    /// The allowed entries, for error messages.
    pub const ALLOWED: &'static str =
        "\"connect-failure\", \"reset\", \"timeout\", \"5xx\" or a status code from 400 to 527";

    /// Reads a list such as `["connect-failure", "reset", "timeout", "502", "503"]`.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<Self, UnknownCondition> {
        let mut on = RetryOn::default();
        for entry in entries {
            match entry.as_ref() {
                "connect-failure" => on.connect_failure = true,
                "reset" => on.reset = true,
                "timeout" => on.timeout = true,
                "5xx" => on.any_5xx = true,
                code => match code.parse::<u16>() {
                    Ok(status @ 400..=527) => {
                        let bit = usize::from(status - 400);
                        on.statuses[bit / 64] |= 1 << (bit % 64);
                    }
                    _ => return Err(UnknownCondition(code.to_owned())),
                },
            }
        }
        Ok(on)
    }

    fn status(&self, status: StatusCode) -> bool {
        let code = status.as_u16();
        if self.any_5xx && status.is_server_error() {
            return true;
        }
        match code.checked_sub(400) {
            Some(bit @ 0..=127) => self.statuses[usize::from(bit) / 64] & (1 << (bit % 64)) != 0,
            _ => false,
        }
    }
}

/// Whether a request may be sent again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Replay {
    /// Idempotent (or carries an `Idempotency-Key`) and its body is buffered.
    Safe,
    /// Must not be sent twice (only a connect failure, which sent nothing, is retried).
    Unsafe,
}

impl Replay {
    /// Whether a request with `method`, an `Idempotency-Key` or not, and a buffered body
    /// or not, may be replayed, given the methods a route lists as retryable.
    pub fn of(
        method: &Method,
        has_idempotency_key: bool,
        body_buffered: bool,
        methods: &[Method],
    ) -> Self {
        if body_buffered && (has_idempotency_key || methods.contains(method)) {
            Replay::Safe
        } else {
            Replay::Unsafe
        }
    }
}

/// Classifies HTTP exchanges for one request; see the [module docs](self).
#[derive(Clone, Debug)]
pub struct HttpClassifier {
    on: RetryOn,
    replay: Replay,
}

impl HttpClassifier {
    /// A classifier for a request that may (or may not) be replayed.
    pub fn new(on: RetryOn, replay: Replay) -> Self {
        Self { on, replay }
    }

    /// The outcome of an answer with `status` and `headers`, for a client whose responses
    /// are not `http::Response`s (reqwest's).
    pub fn classify_answer(&self, status: StatusCode, headers: &http::HeaderMap) -> Outcome {
        classify_status(&self.on, self.may_replay(), status, headers)
    }

    fn may_replay(&self) -> bool {
        self.replay == Replay::Safe
    }
}

/// A response's outcome, per the [module docs](self)' table.
fn classify_response<B>(on: &RetryOn, may_replay: bool, response: &Response<B>) -> Outcome {
    classify_status(on, may_replay, response.status(), response.headers())
}

/// The outcome of an answer with `status` and `headers`.
fn classify_status(
    on: &RetryOn,
    may_replay: bool,
    status: StatusCode,
    headers: &http::HeaderMap,
) -> Outcome {
    let base = if status.is_server_error() {
        Outcome::failure()
    } else if status.is_client_error() {
        Outcome::ignored()
    } else {
        return Outcome::success();
    };
    let retryable = on.status(status) && (may_replay || status == StatusCode::TOO_MANY_REQUESTS);
    match (retryable, retry_after::parse(headers)) {
        (false, _) => base,
        (true, Some(after)) => base.retry_after(after),
        (true, None) => base.retryable(),
    }
}

impl<B> Classify<Response<B>, TransportError> for HttpClassifier {
    fn classify_ok(&self, response: &Response<B>) -> Outcome {
        classify_response(&self.on, self.may_replay(), response)
    }

    fn classify_err(&self, error: &TransportError) -> Outcome {
        let retryable = match error.kind {
            TransportErrorKind::ConnectFailure => self.on.connect_failure,
            TransportErrorKind::Reset => self.on.reset && self.may_replay(),
            TransportErrorKind::Other => false,
            // Not the upstream's answer: say nothing of its health, and do not spin.
            TransportErrorKind::NoHealthyEndpoint => return Outcome::ignored(),
        };
        if retryable {
            Outcome::failure().retryable()
        } else {
            Outcome::failure()
        }
    }

    fn classify_rejection(&self, error: &Error<TransportError>) -> Outcome {
        match error {
            Error::Timeout { .. } if !(self.on.timeout && self.may_replay()) => Outcome::failure(),
            other => classify_rejection(other),
        }
    }
}

/// Classifies responses by their status alone, for any error type; see the
/// [module docs](self).
///
/// Every response may be retried when its status is listed: the request is taken to be
/// replayable, as a [`BufferedRetry`](crate::retry::BufferedRetry) makes it (a body over
/// its bound is sent once whatever the classifier says). A timeout is retried when
/// `"timeout"` is listed; the service's own errors are retryable failures.
///
/// ```
/// use palisade::outcome::Classify;
/// use palisade_http::classify::{RetryOn, StatusClassifier};
///
/// let classifier = StatusClassifier::new(RetryOn::parse(&["503"]).unwrap());
/// let busy = http::Response::builder().status(503).body(()).unwrap();
/// let outcome = <_ as Classify<_, std::convert::Infallible>>::classify_ok(&classifier, &busy);
/// assert!(outcome.is_failure() && outcome.is_retryable());
/// ```
#[derive(Clone, Debug)]
pub struct StatusClassifier {
    /// The statuses (and `"timeout"`) that are retried.
    on: RetryOn,
}

impl StatusClassifier {
    /// Retries what `on` lists.
    pub fn new(on: RetryOn) -> Self {
        Self { on }
    }
}

impl<B, E> Classify<Response<B>, E> for StatusClassifier {
    fn classify_ok(&self, response: &Response<B>) -> Outcome {
        classify_response(&self.on, true, response)
    }

    fn classify_rejection(&self, error: &Error<E>) -> Outcome {
        match error {
            Error::Timeout { .. } if !self.on.timeout => Outcome::failure(),
            other => classify_rejection(other),
        }
    }
}

/// A boxed response is classified as the response itself (a proxy boxes the responses
/// its policies pass along, so that each step moves a pointer).
impl<B> Classify<Box<Response<B>>, TransportError> for HttpClassifier {
    fn classify_ok(&self, response: &Box<Response<B>>) -> Outcome {
        <Self as Classify<Response<B>, TransportError>>::classify_ok(self, response)
    }

    fn classify_err(&self, error: &TransportError) -> Outcome {
        <Self as Classify<Response<B>, TransportError>>::classify_err(self, error)
    }

    fn classify_rejection(&self, error: &Error<TransportError>) -> Outcome {
        <Self as Classify<Response<B>, TransportError>>::classify_rejection(self, error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn classifier(on: &[&str], replay: Replay) -> HttpClassifier {
        HttpClassifier::new(RetryOn::parse(on).unwrap(), replay)
    }

    fn response(status: u16, retry_after: Option<&str>) -> Response<()> {
        let mut r = Response::builder().status(status);
        if let Some(v) = retry_after {
            r = r.header(http::header::RETRY_AFTER, v);
        }
        r.body(()).unwrap()
    }

    fn ok(c: &HttpClassifier, r: &Response<()>) -> Outcome {
        <HttpClassifier as Classify<Response<()>, TransportError>>::classify_ok(c, r)
    }

    #[test]
    fn statuses() {
        let c = classifier(&["502", "503", "504"], Replay::Safe);
        assert!(ok(&c, &response(200, None)).is_success());
        assert!(ok(&c, &response(404, None)).is_ignored());
        let o = ok(&c, &response(503, Some("2")));
        assert!(o.is_failure());
        assert_eq!(o.delay_hint(), Some(Duration::from_secs(2)));
        assert!(ok(&c, &response(502, None)).is_retryable());
        let o = ok(&c, &response(500, None));
        assert!(o.is_failure() && !o.is_retryable(), "500 not listed");
        let c = classifier(&["5xx"], Replay::Safe);
        assert!(ok(&c, &response(500, None)).is_retryable());
    }

    #[test]
    fn unsafe_requests_retry_only_what_never_reached_the_upstream() {
        let c = classifier(
            &["connect-failure", "reset", "timeout", "503"],
            Replay::Unsafe,
        );
        assert!(!ok(&c, &response(503, None)).is_retryable());
        let err = |kind| TransportError {
            kind,
            message: String::new(),
        };
        let classify =
            |e: &TransportError| <HttpClassifier as Classify<Response<()>, _>>::classify_err(&c, e);
        assert!(classify(&err(TransportErrorKind::ConnectFailure)).is_retryable());
        assert!(!classify(&err(TransportErrorKind::Reset)).is_retryable());
        let timeout = Error::Timeout {
            after: Duration::from_secs(1),
        };
        let o = <HttpClassifier as Classify<Response<()>, _>>::classify_rejection(&c, &timeout);
        assert!(o.is_failure() && !o.is_retryable());
    }

    #[test]
    fn a_status_classifier_judges_responses_for_any_error_type() {
        let c = StatusClassifier::new(RetryOn::parse(&["503"]).unwrap());
        let ok =
            |r: &Response<()>| <_ as Classify<_, std::convert::Infallible>>::classify_ok(&c, r);
        assert!(ok(&response(200, None)).is_success());
        assert!(ok(&response(404, None)).is_ignored());
        assert_eq!(
            ok(&response(503, Some("3"))).delay_hint(),
            Some(Duration::from_secs(3))
        );
        let o = ok(&response(500, None));
        assert!(o.is_failure() && !o.is_retryable(), "500 not listed");
        let timeout: Error<&str> = Error::Timeout {
            after: Duration::from_secs(1),
        };
        let o = <_ as Classify<Response<()>, _>>::classify_rejection(&c, &timeout);
        assert!(o.is_failure() && !o.is_retryable(), "timeout not listed");
    }

    #[test]
    fn unknown_conditions_are_refused() {
        assert_eq!(
            RetryOn::parse(&["sometimes"]).unwrap_err(),
            UnknownCondition("sometimes".into())
        );
        assert!(RetryOn::parse(&["200"]).is_err());
        assert!(RetryOn::parse(&["600"]).is_err());
    }

    #[test]
    fn replay_needs_a_buffered_body_and_an_idempotent_method_or_key() {
        let methods = [Method::GET, Method::PUT];
        assert_eq!(
            Replay::of(&Method::GET, false, true, &methods),
            Replay::Safe
        );
        assert_eq!(
            Replay::of(&Method::POST, false, true, &methods),
            Replay::Unsafe
        );
        assert_eq!(
            Replay::of(&Method::POST, true, true, &methods),
            Replay::Safe
        );
        assert_eq!(
            Replay::of(&Method::PUT, false, false, &methods),
            Replay::Unsafe
        );
    }
}

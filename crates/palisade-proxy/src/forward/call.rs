//! A request the proxy makes itself (a saga's step or compensation), sent to an upstream
//! through the same policies as a client's: the certain refusal, the admission steps, the
//! calls around each attempt and the attempts themselves (`Attempt::once`). Its body is
//! given whole; the answer is read whole, up to a bound.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, AtomicU64};

use bytes::Bytes;
use http::request::Parts;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Limited};
use palisade::outcome::classify_result;
use palisade_http::classify::{HttpClassifier, Replay, TransportError, TransportErrorKind};

use super::attempt::Attempt;
use super::{Client, IDEMPOTENCY_KEY, Outgoing};
use crate::saga::Unanswered;
use crate::upstream::{Admission, Held, Upstream};

/// Largest answer body read.
pub(crate) const MAX_ANSWER_BYTES: usize = 1024 * 1024;

/// Sends `request` to `upstream` through its policies; its answer's status and body.
/// The request counts as replayable if its method is, or it has an `Idempotency-Key`.
pub(crate) async fn call(
    upstream: &Upstream,
    client: &Client,
    request: Request<Bytes>,
) -> Result<(StatusCode, Bytes), Unanswered> {
    if let Some(refused) = upstream.refusal() {
        return Err(failure(refused));
    }
    let mut held = Held::default();
    for step in &upstream.pipeline.admission {
        if matches!(step, Admission::ReadBody) {
            continue;
        }
        if let Err(refused) = step.admit(&mut held).await {
            return Err(Unanswered::NotSent(format!(
                "refused by the proxy: {}",
                refused.reason.as_str()
            )));
        }
    }
    let (head, body): (Parts, Bytes) = request.into_parts();
    let keyed = head.headers.contains_key(IDEMPOTENCY_KEY);
    let replay = Replay::of(&head.method, keyed, true, &upstream.methods);
    let classifier = HttpClassifier::new(upstream.retry_on.clone(), replay);
    let attempt = Attempt {
        upstream,
        parts: &head,
        body: Outgoing::Buffered(body),
        client,
        first: Mutex::new(None),
        replayable: replay == Replay::Safe,
        tried: AtomicU64::new(0),
        attempts: AtomicU32::new(0),
        last_took: AtomicU64::new(0),
    };
    let result = upstream
        .pipeline
        .calls
        .execute(&classifier, || Box::pin(attempt.once(&classifier)))
        .await;
    let outcome = classify_result(&classifier, &result);
    held.settle(
        &upstream.pipeline,
        &classifier,
        &result,
        (&outcome, attempt.last_round_trip()),
    );
    let response = result.map_err(failure)?;
    let status = response.status();
    let body = Limited::new(response.into_body(), MAX_ANSWER_BYTES)
        .collect()
        .await
        .map_err(|e| Unanswered::Unknown(format!("reading the answer: {e}")))?
        .to_bytes();
    drop(held);
    Ok((status, body))
}

/// Whether a policy's error means nothing was sent.
fn failure(error: palisade::Error<TransportError>) -> Unanswered {
    use palisade::Error;
    match error {
        Error::Inner(e)
            if matches!(
                e.kind,
                TransportErrorKind::ConnectFailure | TransportErrorKind::NoHealthyEndpoint
            ) =>
        {
            Unanswered::NotSent(e.to_string())
        }
        Error::Inner(e) => Unanswered::Unknown(e.to_string()),
        // An earlier attempt may have been sent, whatever the last one met.
        error @ Error::RetriesExhausted { .. } => Unanswered::Unknown(error.to_string()),
        error @ (Error::Timeout { .. } | Error::DeadlineExceeded) => {
            Unanswered::Unknown(error.to_string())
        }
        other => Unanswered::NotSent(other.to_string()),
    }
}

//! One saga step as HTTP: the request (the saga's input as its JSON body, `X-Saga-Id`,
//! `Idempotency-Key`), sent through its upstream's policies, and its answer read as the
//! saga runner needs it:
//!
//! | answer | action | compensation |
//! |---|---|---|
//! | 2xx | done; its body (JSON, else text) is the step's output | done |
//! | 404, 410 | definitive failure | done (nothing to undo) |
//! | other 4xx | definitive failure: nothing happened | unknown: retried, then parked |
//! | 5xx, timeout, connection lost | unknown: it may have happened | unknown |
//! | refused before sending (breaker open, shed, no endpoint, connect failure) | definitive | unknown |
//!
//! A compensation's body is its step's output (`null` when the step's outcome was
//! unknown), with its own key (`{saga_id}/{step}/compensate`).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderValue, Method, Request, StatusCode};
use palisade_saga::{StepContext, StepError};
use serde_json::Value;

use crate::config::saga::SagaStep;

/// The header naming the saga on every step request and every answer of a saga route.
pub const SAGA_ID: &str = "x-saga-id";

/// Why a request got no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unanswered {
    /// Refused before anything was sent: an admission step, an open breaker, no endpoint
    /// or no connection.
    NotSent(String),
    /// It may have reached the upstream: a timeout, a connection lost mid-exchange, a
    /// body that could not be read.
    Unknown(String),
}

/// The answer to a request sent to an upstream (named first) through its policies.
pub type Answered = Pin<Box<dyn Future<Output = Result<(StatusCode, Bytes), Unanswered>> + Send>>;

/// Sends a request to the named upstream through its policies: how steps reach upstreams
/// (the server gives it, over the live runtime and the request path's `forward::call`).
pub type Sender = Arc<dyn Fn(&str, Request<Bytes>) -> Answered + Send + Sync>;

/// Sends one step's requests.
pub(super) struct Caller {
    upstream: String,
    action: (Method, String),
    compensation: Option<(Method, String)>,
    send: Sender,
}

// === impl Caller ===

impl Caller {
    pub(super) fn new(step: &SagaStep, send: Sender) -> Self {
        // Checked when the config was loaded.
        let method = |m: &str| Method::from_bytes(m.as_bytes()).unwrap_or(Method::POST);
        Self {
            upstream: step.upstream.clone(),
            action: (method(&step.method), step.path.clone()),
            compensation: step
                .compensate
                .as_ref()
                .map(|c| (method(&c.method), c.path.clone())),
            send,
        }
    }

    /// The step's action.
    pub(super) async fn act(&self, cx: &StepContext) -> Result<Value, StepError> {
        let (method, path) = &self.action;
        let body = serde_json::to_vec(&*cx.input).unwrap_or_default();
        match self.send(cx, method, path, body).await {
            Ok((status, body)) if status.is_success() => Ok(output(&body)),
            Ok((status, body)) if status.is_client_error() => Err(StepError::definitive(format!(
                "{} answered {status}: {}",
                self.upstream,
                text(&body)
            ))),
            Ok((status, body)) => Err(StepError::unknown(format!(
                "{} answered {status}: {}",
                self.upstream,
                text(&body)
            ))),
            Err(Unanswered::NotSent(why)) => Err(StepError::definitive(why)),
            Err(Unanswered::Unknown(why)) => Err(StepError::unknown(why)),
        }
    }

    /// The step's compensation.
    pub(super) async fn undo(&self, cx: &StepContext) -> Result<Value, StepError> {
        let Some((method, path)) = &self.compensation else {
            return Ok(Value::Null);
        };
        let body =
            serde_json::to_vec(cx.output.as_ref().unwrap_or(&Value::Null)).unwrap_or_default();
        match self.send(cx, method, path, body).await {
            Ok((status, body))
                if status.is_success()
                    || status == StatusCode::NOT_FOUND
                    || status == StatusCode::GONE =>
            {
                Ok(output(&body))
            }
            Ok((status, body)) => Err(StepError::unknown(format!(
                "{} answered {status}: {}",
                self.upstream,
                text(&body)
            ))),
            Err(Unanswered::NotSent(why) | Unanswered::Unknown(why)) => {
                Err(StepError::unknown(why))
            }
        }
    }

    async fn send(
        &self,
        cx: &StepContext,
        method: &Method,
        path: &str,
        body: Vec<u8>,
    ) -> Result<(StatusCode, Bytes), Unanswered> {
        let request = request(cx, method, path, body)
            .map_err(|e| Unanswered::NotSent(format!("the step's request: {e}")))?;
        (self.send)(&self.upstream, request).await
    }
}

/// The step's request: `path` with `{saga_id}` filled in, the saga's id and the step's key
/// in headers (saga ids are checked header-safe when a saga starts).
fn request(
    cx: &StepContext,
    method: &Method,
    path: &str,
    body: Vec<u8>,
) -> Result<Request<Bytes>, http::Error> {
    let path = path.replace("{saga_id}", &encode_segment(&cx.saga_id));
    Request::builder()
        .method(method.clone())
        .uri(path)
        .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
        .header(SAGA_ID, &*cx.saga_id)
        .header("idempotency-key", &cx.idempotency_key)
        .body(Bytes::from(body))
}

/// `id` as one path segment: unreserved characters kept, the rest percent-encoded.
fn encode_segment(id: &str) -> String {
    let mut out = String::with_capacity(id.len());
    for byte in id.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// An answer's body as a step's output: its JSON, else its text, else `null`.
fn output(body: &[u8]) -> Value {
    if body.is_empty() {
        return Value::Null;
    }
    serde_json::from_slice(body).unwrap_or_else(|_| Value::String(text(body)))
}

/// An answer's body as text, at most 512 bytes of it (for reasons).
fn text(body: &[u8]) -> String {
    let cut = &body[..body.len().min(512)];
    String::from_utf8_lossy(cut).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_saga_id_becomes_one_path_segment() {
        assert_eq!(encode_segment("order-7_a.b~"), "order-7_a.b~");
        assert_eq!(encode_segment("a b?c#d%"), "a%20b%3Fc%23d%25");
    }

    #[test]
    fn an_answer_body_is_json_else_text_else_null() {
        assert_eq!(output(b""), Value::Null);
        assert_eq!(output(br#"{"id":3}"#), serde_json::json!({"id": 3}));
        assert_eq!(output(b"ok"), Value::String("ok".into()));
    }
}

//! A saga route's answers. `POST {prefix}` starts a saga with the request's JSON body as
//! its input; the client's `Idempotency-Key`, when it sends one, is the saga's id, so a
//! retry answers the saga it started instead of starting another. The answer waits at most
//! the client's budget (the deadline headers), else the saga's deadline, else 30 s:
//!
//! | saga | status | `x-palisade-reason` |
//! |---|---|---|
//! | completed | 200, each step's output by name | |
//! | compensated | 409, the failure | `saga-compensated` |
//! | parked / aborted | 409, the reason | `saga-parked` / `saga-aborted` |
//! | still running or compensating | 202, `Location: {prefix}/{id}` | |
//!
//! `GET {prefix}/{id}` answers the same without waiting. Every answer carries
//! `x-palisade-saga-id`.

use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, LOCATION, RETRY_AFTER};
use http::request::Parts;
use http::{HeaderValue, Method, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use palisade_saga::{SagaError, SagaRow, SagaState, StartOptions};
use serde_json::{Map, Value, json};

use super::Sagas;
use crate::body::{ClientBody, IdleTimeout, full};
use crate::respond::{REASON, Reply};
use crate::route::RequestMetrics;

/// The header carrying the saga's id on a saga route's answers.
pub const SAGA_ID_HEADER: &str = "x-palisade-saga-id";
/// The longest a client waits without a budget of its own and a saga without a deadline.
const DEFAULT_WAIT: Duration = Duration::from_secs(30);

/// The `x-palisade-reason` values only a saga route answers with (it answers
/// `bad-request` and `bad-deadline` too, as every route does). docs/RUNBOOKS.md has a
/// section for each.
pub const SAGA_REASONS: [&str; 8] = [
    UNAVAILABLE,
    NOT_FOUND,
    FULL,
    ID_TAKEN,
    COMPENSATED,
    PARKED,
    ABORTED,
    STORE_UNAVAILABLE,
];
/// Sagas are not running (503).
const UNAVAILABLE: &str = "saga-unavailable";
/// `GET {prefix}/{id}` of an id this route's saga does not have (404).
const NOT_FOUND: &str = "saga-not-found";
/// As many sagas running as the runner allows (503).
const FULL: &str = "saga-full";
/// The client's `Idempotency-Key` names a saga of another definition (409).
const ID_TAKEN: &str = "saga-id-taken";
/// The saga failed and was compensated (409).
const COMPENSATED: &str = "saga-compensated";
/// The saga waits for an operator (409).
const PARKED: &str = "saga-parked";
/// An operator gave the saga up (409).
const ABORTED: &str = "saga-aborted";
/// The store failed (503).
const STORE_UNAVAILABLE: &str = "saga-store-unavailable";

/// A route with `saga = "…"`.
pub struct SagaRoute {
    /// Its position in the file.
    pub index: usize,
    /// Requests whose path starts with this come here.
    pub path_prefix: String,
    /// The saga it starts.
    pub saga: String,
    /// Its steps' names, in order (for answers).
    pub steps: Vec<String>,
    /// The saga's deadline, if it has one.
    pub deadline: Option<Duration>,
    /// Requests and their answers.
    pub requests: RequestMetrics,
}

/// What a saga route answers a request, and the request body's bounds.
pub struct Asked<'a> {
    /// The route it came on.
    pub route: &'a SagaRoute,
    /// Its head.
    pub head: Parts,
    /// Its body: the saga's input.
    pub body: ClientBody,
    /// The largest body read (the listener's `max_body_bytes`).
    pub max_body: u64,
    /// The longest wait for the next piece of the body (the listener's `body_timeout`).
    pub body_timeout: Duration,
}

/// Answers one request on a saga route.
pub async fn answer(sagas: Option<&Sagas>, asked: Asked<'_>) -> Reply {
    let route = asked.route;
    let started = tokio::time::Instant::now();
    let response = match sagas {
        None => refusal(
            StatusCode::SERVICE_UNAVAILABLE,
            UNAVAILABLE,
            "sagas are not running",
            None,
        ),
        Some(sagas) => respond(sagas, asked).await,
    };
    route
        .requests
        .record(response.status(), None, started.elapsed());
    Reply::plain(response)
}

async fn respond(sagas: &Sagas, asked: Asked<'_>) -> Response<crate::body::ProxyBody> {
    let route = asked.route;
    let rest = asked.head.uri.path()[route.path_prefix.len()..].trim_matches('/');
    match (&asked.head.method, rest) {
        (&Method::POST, "") => start(sagas, asked).await,
        (&Method::GET, id) if !id.is_empty() && !id.contains('/') => {
            match sagas.runner().get(id).await {
                Ok(Some(view)) if view.saga.definition == route.saga => settled(route, &view.saga),
                Ok(_) => refusal(
                    StatusCode::NOT_FOUND,
                    NOT_FOUND,
                    "no such saga on this route",
                    None,
                ),
                Err(error) => store_failed(&error),
            }
        }
        _ => {
            let mut r = refusal(
                StatusCode::METHOD_NOT_ALLOWED,
                "bad-request",
                "POST starts a saga; GET …/{id} reads one",
                None,
            );
            r.headers_mut()
                .insert(http::header::ALLOW, HeaderValue::from_static("POST, GET"));
            r
        }
    }
}

/// Starts the route's saga (or finds the one the client's key started) and waits for it
/// within the budget.
async fn start(sagas: &Sagas, asked: Asked<'_>) -> Response<crate::body::ProxyBody> {
    let route = asked.route;
    let budget = match palisade_http::deadline::inbound(&asked.head.headers) {
        Ok(budget) => budget.or(route.deadline).unwrap_or(DEFAULT_WAIT),
        Err(e) => {
            return refusal(
                StatusCode::BAD_REQUEST,
                "bad-deadline",
                &e.to_string(),
                None,
            );
        }
    };
    let id = match asked.head.headers.get("idempotency-key") {
        None => None,
        Some(key) => match key.to_str().ok().filter(|k| valid_id(k)) {
            Some(key) => Some(key.to_owned()),
            None => {
                return refusal(
                    StatusCode::BAD_REQUEST,
                    "bad-request",
                    "Idempotency-Key must be 1 to 200 visible ASCII characters without '/'",
                    None,
                );
            }
        },
    };
    let input = match read_input(asked.body, asked.max_body, asked.body_timeout).await {
        Ok(input) => input,
        Err(response) => return response,
    };
    let options = StartOptions { id, version: None };
    let id = match sagas.runner().start_saga(&route.saga, input, options).await {
        Ok(id) => id,
        Err(SagaError::Full(n)) => {
            return refusal(
                StatusCode::SERVICE_UNAVAILABLE,
                FULL,
                &format!("{n} sagas are running; try again"),
                Some(1),
            );
        }
        Err(error @ SagaError::IdTaken { .. }) => {
            return refusal(StatusCode::CONFLICT, ID_TAKEN, &error.to_string(), None);
        }
        Err(error @ SagaError::InvalidId(_)) => {
            return refusal(
                StatusCode::BAD_REQUEST,
                "bad-request",
                &error.to_string(),
                None,
            );
        }
        Err(error) => return store_failed(&error),
    };
    match sagas.runner().wait(&id, budget).await {
        Ok(row) => settled(route, &row),
        Err(SagaError::StillRunning(_)) => match sagas.runner().get(&id).await {
            Ok(Some(view)) => settled(route, &view.saga),
            Ok(None) => store_failed(&SagaError::NotFound(id)),
            Err(error) => store_failed(&error),
        },
        Err(error) => store_failed(&error),
    }
}

/// The request body as the saga's input: JSON, or `null` when empty.
async fn read_input(
    body: ClientBody,
    max_body: u64,
    idle: Duration,
) -> Result<Value, Response<crate::body::ProxyBody>> {
    let limited = Limited::new(
        IdleTimeout::new(body, idle),
        usize::try_from(max_body).unwrap_or(usize::MAX),
    );
    let bytes = match limited.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => {
            return Err(refusal(
                StatusCode::BAD_REQUEST,
                "bad-request",
                "the body could not be read whole (too large, too slow or broken)",
                None,
            ));
        }
    };
    if bytes.is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_slice(&bytes).map_err(|e| {
        refusal(
            StatusCode::BAD_REQUEST,
            "bad-request",
            &format!("the body is the saga's input and must be JSON: {e}"),
            None,
        )
    })
}

/// A saga id a client may give: 1–200 visible ASCII characters, no `/`.
fn valid_id(id: &str) -> bool {
    (1..=200).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_graphic() && b != b'/')
}

/// The answer for a saga as its row has it.
fn settled(route: &SagaRoute, row: &SagaRow) -> Response<crate::body::ProxyBody> {
    let step_name = |i: i64| {
        usize::try_from(i)
            .ok()
            .and_then(|i| route.steps.get(i))
            .cloned()
    };
    let (status, reason, body) = match row.state {
        SagaState::Completed => {
            let steps: Map<String, Value> = route
                .steps
                .iter()
                .cloned()
                .zip(row.outputs.iter().cloned())
                .collect();
            (
                StatusCode::OK,
                None,
                json!({"saga_id": row.id, "state": row.state, "steps": steps}),
            )
        }
        SagaState::Compensated => (
            StatusCode::CONFLICT,
            Some(COMPENSATED),
            json!({"saga_id": row.id, "state": row.state,
                   "failed_step": row.failed_step.and_then(step_name), "failure": row.failure}),
        ),
        SagaState::Parked | SagaState::Aborted => (
            StatusCode::CONFLICT,
            Some(if row.state == SagaState::Parked {
                PARKED
            } else {
                ABORTED
            }),
            json!({"saga_id": row.id, "state": row.state, "reason": row.reason,
                   "failure": row.failure}),
        ),
        SagaState::Running | SagaState::Compensating => (
            StatusCode::ACCEPTED,
            None,
            json!({"saga_id": row.id, "state": row.state}),
        ),
    };
    let mut response = json_response(status, &body);
    let headers = response.headers_mut();
    if let Ok(id) = HeaderValue::from_str(&row.id) {
        headers.insert(SAGA_ID_HEADER, id.clone());
    }
    if let Some(reason) = reason {
        headers.insert(REASON, HeaderValue::from_static(reason));
    }
    if status == StatusCode::ACCEPTED {
        let location = format!("{}/{}", route.path_prefix.trim_end_matches('/'), row.id);
        if let Ok(location) = HeaderValue::from_str(&location) {
            headers.insert(LOCATION, location);
        }
    }
    response
}

fn store_failed(error: &SagaError) -> Response<crate::body::ProxyBody> {
    tracing::warn!(%error, "saga store");
    refusal(
        StatusCode::SERVICE_UNAVAILABLE,
        STORE_UNAVAILABLE,
        &error.to_string(),
        Some(1),
    )
}

/// The proxy's own refusal on a saga route.
fn refusal(
    status: StatusCode,
    reason: &'static str,
    message: &str,
    retry_after: Option<u64>,
) -> Response<crate::body::ProxyBody> {
    let mut response = json_response(status, &json!({"error": message}));
    let headers = response.headers_mut();
    headers.insert(REASON, HeaderValue::from_static(reason));
    if let Some(seconds) = retry_after {
        headers.insert(RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}

fn json_response(status: StatusCode, body: &Value) -> Response<crate::body::ProxyBody> {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let mut response = Response::new(full(Bytes::from(bytes)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_keys_are_checked_before_they_become_saga_ids() {
        assert!(valid_id("order-7"));
        assert!(!valid_id(""));
        assert!(!valid_id("a/b"));
        assert!(!valid_id("a b"));
        assert!(!valid_id(&"x".repeat(201)));
    }
}

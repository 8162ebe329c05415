//! `/admin/sagas…` on the admin port (POSTs pass the admin token rule first):
//!
//! - `GET /admin/sagas?state=…&limit=…`: sagas, newest first (`limit` default 100, at most
//!   10,000), each with its id and state;
//! - `GET /admin/sagas/{id}`: one saga with its timeline of steps and attempts;
//! - `POST /admin/sagas/{id}/resume|retry|abort`: an operator's action on a parked saga
//!   (resume where it stopped, retry from the failed step, abort), answering its state.

use http::{Method, StatusCode};
use palisade_saga::{SagaError, SagaState};
use serde_json::{Value, json};

use super::Sagas;

/// An answer: its status and JSON body (the admin port writes it).
type Answer = (StatusCode, Value);

fn error(status: StatusCode, message: &str) -> Answer {
    (status, json!({ "error": message }))
}

/// Answers `method` on `/admin/sagas/{rest…}`.
pub async fn handle(
    sagas: Option<&Sagas>,
    method: &Method,
    rest: &[&str],
    query: Option<&str>,
) -> Answer {
    let Some(sagas) = sagas else {
        return error(StatusCode::NOT_FOUND, "no [[saga]] is configured");
    };
    let runner = sagas.runner();
    match (method, rest) {
        (&Method::GET, []) => {
            let (state, limit) = match list_query(query) {
                Ok(q) => q,
                Err(message) => return error(StatusCode::BAD_REQUEST, &message),
            };
            match runner.list(state, limit).await {
                Ok(rows) => {
                    let sagas: Vec<_> = rows
                        .iter()
                        .map(|r| {
                            json!({"id": r.id, "saga": r.definition, "state": r.state,
                                        "reason": r.reason})
                        })
                        .collect();
                    (StatusCode::OK, json!({ "sagas": sagas }))
                }
                Err(e) => failed(&e),
            }
        }
        (&Method::GET, [id]) => match runner.get(id).await {
            Ok(Some(view)) => (
                StatusCode::OK,
                serde_json::to_value(&view).unwrap_or_default(),
            ),
            Ok(None) => error(StatusCode::NOT_FOUND, "no such saga"),
            Err(e) => failed(&e),
        },
        (&Method::POST, [id, action]) => {
            let done = match *action {
                "resume" => runner.resume(id).await,
                "retry" => runner.retry(id).await,
                "abort" => runner.abort(id).await,
                _ => return error(StatusCode::NOT_FOUND, "actions: resume, retry, abort"),
            };
            match done {
                Ok(state) => (StatusCode::OK, json!({"id": id, "state": state})),
                Err(e) => failed(&e),
            }
        }
        (&Method::GET | &Method::POST, _) => error(StatusCode::NOT_FOUND, "no such saga endpoint"),
        _ => error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed"),
    }
}

/// `state=…&limit=…`.
fn list_query(query: Option<&str>) -> Result<(Option<SagaState>, usize), String> {
    let mut state = None;
    let mut limit = 100;
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("state", value)) => {
                state = Some(value.parse::<SagaState>().map_err(|_| {
                    format!("state {value:?}: allowed: running, compensating, completed, compensated, parked, aborted")
                })?);
            }
            Some(("limit", value)) => {
                limit = value
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=10_000).contains(n))
                    .ok_or_else(|| format!("limit {value:?}: allowed: 1 to 10000"))?;
            }
            _ => return Err(format!("{pair:?}: allowed: state=…, limit=…")),
        }
    }
    Ok((state, limit))
}

fn failed(e: &SagaError) -> Answer {
    let status = match e {
        SagaError::NotFound(_) => StatusCode::NOT_FOUND,
        SagaError::InvalidState { .. } | SagaError::InvalidId(_) => StatusCode::CONFLICT,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    };
    error(status, &e.to_string())
}

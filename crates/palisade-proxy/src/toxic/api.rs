//! The HTTP API, compatible with Toxiproxy's: the same paths, methods, JSON and status
//! codes, so Toxiproxy's client libraries drive a toxic server unchanged. Errors are
//! Toxiproxy's `{"error": ..., "status": ...}`.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::ApiError;
use super::proxy::ProxyRequest;
use super::registry::Registry;

type Shared = State<Arc<Registry>>;

/// The API's routes over `registry`.
pub fn router(registry: Arc<Registry>) -> Router {
    Router::new()
        .route("/version", get(version))
        .route("/reset", post(reset))
        .route("/populate", post(populate))
        .route("/proxies", get(list).post(create))
        .route(
            "/proxies/{proxy}",
            get(show).post(update).patch(update).delete(delete),
        )
        .route("/proxies/{proxy}/toxics", get(toxics).post(add_toxic))
        .route(
            "/proxies/{proxy}/toxics/{toxic}",
            get(toxic)
                .post(update_toxic)
                .patch(update_toxic)
                .delete(remove_toxic),
        )
        .fallback(|| async { ApiError::not_found("no such path in the toxic API".to_owned()) })
        .with_state(registry)
}

async fn version() -> &'static str {
    concat!("palisade ", env!("CARGO_PKG_VERSION"))
}

async fn reset(State(registry): Shared) -> Response {
    answer(
        registry
            .reset()
            .await
            .map(|()| (StatusCode::NO_CONTENT, Value::Null)),
    )
}

async fn list(State(registry): Shared) -> Response {
    json(StatusCode::OK, registry.list().await)
}

async fn create(State(registry): Shared, body: Bytes) -> Response {
    let request = match parse::<ProxyRequest>(&body) {
        Ok(request) => request,
        Err(error) => return error.into_response(),
    };
    answer(
        registry
            .create(request)
            .await
            .map(|p| (StatusCode::CREATED, p)),
    )
}

async fn populate(State(registry): Shared, body: Bytes) -> Response {
    let requests = match parse::<Value>(&body).and_then(proxy_list) {
        Ok(requests) => requests,
        Err(error) => return error.into_response(),
    };
    match registry.populate(requests).await {
        Ok(done) => json(StatusCode::CREATED, done),
        Err((error, mut done)) => {
            // Toxiproxy's shape: the error with the proxies populated before it.
            done["error"] = Value::String(error.message);
            done["status"] = Value::from(error.status.as_u16());
            json(error.status, done)
        }
    }
}

async fn show(State(registry): Shared, Path(proxy): Path<String>) -> Response {
    answer(registry.get(&proxy).await.map(ok))
}

async fn update(State(registry): Shared, Path(proxy): Path<String>, body: Bytes) -> Response {
    let request = match parse::<ProxyRequest>(&body) {
        Ok(request) => request,
        Err(error) => return error.into_response(),
    };
    answer(registry.update(&proxy, request).await.map(ok))
}

async fn delete(State(registry): Shared, Path(proxy): Path<String>) -> Response {
    answer(
        registry
            .delete(&proxy)
            .await
            .map(|()| (StatusCode::NO_CONTENT, Value::Null)),
    )
}

async fn toxics(State(registry): Shared, Path(proxy): Path<String>) -> Response {
    answer(registry.toxics(&proxy).await.map(ok))
}

async fn add_toxic(State(registry): Shared, Path(proxy): Path<String>, body: Bytes) -> Response {
    let request = match parse(&body) {
        Ok(request) => request,
        Err(error) => return error.into_response(),
    };
    answer(registry.add_toxic(&proxy, request).await.map(ok))
}

async fn toxic(State(registry): Shared, Path((proxy, toxic)): Path<(String, String)>) -> Response {
    answer(registry.toxic(&proxy, &toxic).await.map(ok))
}

async fn update_toxic(
    State(registry): Shared,
    Path((proxy, toxic)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let request = match parse(&body) {
        Ok(request) => request,
        Err(error) => return error.into_response(),
    };
    answer(registry.update_toxic(&proxy, &toxic, request).await.map(ok))
}

async fn remove_toxic(
    State(registry): Shared,
    Path((proxy, toxic)): Path<(String, String)>,
) -> Response {
    answer(
        registry
            .remove_toxic(&proxy, &toxic)
            .await
            .map(|()| (StatusCode::NO_CONTENT, Value::Null)),
    )
}

fn ok(value: Value) -> (StatusCode, Value) {
    (StatusCode::OK, value)
}

fn answer(result: Result<(StatusCode, Value), ApiError>) -> Response {
    match result {
        Ok((StatusCode::NO_CONTENT, _)) => StatusCode::NO_CONTENT.into_response(),
        Ok((status, value)) => json(status, value),
        Err(error) => error.into_response(),
    }
}

fn json(status: StatusCode, value: Value) -> Response {
    let body = serde_json::to_vec(&value).unwrap_or_default();
    (status, [("content-type", "application/json")], body).into_response()
}

/// A JSON body as `T`; an empty body is `{}` (Toxiproxy's clients post `/reset` empty).
fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let body = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}".as_slice()
    } else {
        body
    };
    serde_json::from_slice(body).map_err(|error| {
        ApiError::bad_request(format!("the body is not the JSON expected: {error}"))
    })
}

/// A populate body: a list of proxies, or `{"proxies": [...]}`.
pub(crate) fn proxy_list(value: Value) -> Result<Vec<ProxyRequest>, ApiError> {
    let list = match value {
        Value::Object(mut map) if map.contains_key("proxies") => {
            map.remove("proxies").unwrap_or_default()
        }
        other => other,
    };
    serde_json::from_value(list).map_err(|error| {
        ApiError::bad_request(format!("populate takes a list of proxies: {error}"))
    })
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        json(
            self.status,
            serde_json::json!({ "error": self.message, "status": self.status.as_u16() }),
        )
    }
}

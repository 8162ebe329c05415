//! `palisade saga list|show|resume|retry|abort --config FILE`: an operator's view of the
//! running proxy's sagas, through its admin API (the address and token from the file), so
//! the runner that owns the sagas acts on them.

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use http::header::AUTHORIZATION;
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// What the operator asks.
#[derive(Clone, Debug)]
pub enum Action {
    /// Sagas, newest first, in `state` if given.
    List {
        /// `running`, `compensating`, `completed`, `compensated`, `parked` or `aborted`.
        state: Option<String>,
    },
    /// One saga with its timeline.
    Show(String),
    /// Resumes a parked saga where it stopped.
    Resume(String),
    /// Retries a parked saga from the failed step.
    Retry(String),
    /// Gives a parked saga up.
    Abort(String),
}

/// Runs `action` against the proxy configured by `config`; prints the admin API's JSON.
/// `Err` with a message for the operator when it cannot be done.
pub async fn run(config: &Path, action: Action) -> Result<String, String> {
    let checked = crate::config::load(config).map_err(|p| p.to_string())?;
    let admin = &checked.config.admin;
    let (method, path) = match &action {
        Action::List { state: None } => (Method::GET, "/admin/sagas".to_owned()),
        Action::List { state: Some(s) } => (Method::GET, format!("/admin/sagas?state={s}")),
        Action::Show(id) => (Method::GET, format!("/admin/sagas/{id}")),
        Action::Resume(id) => (Method::POST, format!("/admin/sagas/{id}/resume")),
        Action::Retry(id) => (Method::POST, format!("/admin/sagas/{id}/retry")),
        Action::Abort(id) => (Method::POST, format!("/admin/sagas/{id}/abort")),
    };
    let mut request = Request::builder()
        .method(method)
        .uri(format!("http://{}{path}", admin.address));
    if let Some(token) = &admin.token {
        request = request.header(AUTHORIZATION, format!("Bearer {token}"));
    }
    let request = request
        .body(Full::new(Bytes::new()))
        .map_err(|e| format!("the request: {e}"))?;
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let answer = tokio::time::timeout(Duration::from_secs(10), async {
        let response = client.request(request).await.map_err(|e| e.to_string())?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok::<_, String>((status, body))
    })
    .await
    .map_err(|_| {
        format!(
            "the admin port {} did not answer within 10 s",
            admin.address
        )
    })?
    .map_err(|e| format!("cannot reach the admin port {}: {e}", admin.address))?;
    let (status, body) = answer;
    let text = String::from_utf8_lossy(&body).into_owned();
    if status.is_success() {
        Ok(text)
    } else {
        Err(format!("{status}: {text}"))
    }
}

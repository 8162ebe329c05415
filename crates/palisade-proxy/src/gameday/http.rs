//! The runner's HTTP client: the load's requests, the probes' scrapes and the sidecar
//! admin calls, each bounded by a timeout.

use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client as Legacy;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// The largest answer body read (a `/metrics` page, an admin answer).
const MAX_BODY: usize = 16 * 1024 * 1024;

/// A pooled HTTP/1.1 client.
#[derive(Clone)]
pub(crate) struct Client {
    inner: Legacy<HttpConnector, Full<Bytes>>,
}

impl Client {
    pub(crate) fn new() -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(2)));
        Self {
            inner: Legacy::builder(TokioExecutor::new())
                .pool_idle_timeout(Duration::from_secs(10))
                .build(connector),
        }
    }

    /// Sends `method url` with `body`; the status and the body, or why not, within `limit`.
    pub(crate) async fn send(
        &self,
        method: Method,
        url: &str,
        body: Option<String>,
        limit: Duration,
    ) -> Result<(StatusCode, Bytes), String> {
        let mut request = Request::builder().method(method).uri(url);
        if body.is_some() {
            request = request.header("content-type", "application/json");
        }
        let request = request
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| format!("{url}: {e}"))?;
        let call = async {
            let response = self
                .inner
                .request(request)
                .await
                .map_err(|e| e.to_string())?;
            let status = response.status();
            let body = Limited::new(response.into_body(), MAX_BODY)
                .collect()
                .await
                .map_err(|e| e.to_string())?
                .to_bytes();
            Ok((status, body))
        };
        match tokio::time::timeout(limit, call).await {
            Ok(answer) => answer,
            Err(_) => Err(format!("no answer within {limit:?}")),
        }
    }

    /// `GET url`.
    pub(crate) async fn get(
        &self,
        url: &str,
        limit: Duration,
    ) -> Result<(StatusCode, Bytes), String> {
        self.send(Method::GET, url, None, limit).await
    }
}

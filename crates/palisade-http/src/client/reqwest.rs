//! [`ResilientMiddleware`]: the client's policies as a `reqwest-middleware` middleware.
//!
//! ```no_run
//! use std::sync::Arc;
//! use palisade_http::client::{ClientConfig, Resilience, ResilientMiddleware};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let config: ClientConfig = toml::from_str(r#"
//!     [timeout]
//!     total = "2s"
//!     per_try = "500ms"
//!     [retry]
//!     max_attempts = 3
//! "#)?;
//! let payments = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
//!     .with(ResilientMiddleware::new(Arc::new(Resilience::new("payments", &config)?)))
//!     .build();
//! # let _ = payments; Ok(()) }
//! ```
//!
//! A request whose body cannot be cloned (a stream) is sent once, whatever its method.
//! Errors the policies end with (a timeout, an open breaker, a full bulkhead, retries
//! exhausted) come back as `reqwest_middleware::Error::Middleware` holding the
//! `palisade::Error`; a failed response after the last retry comes back as the response.
//! With a `fallback` configured, both come back as the fallback's answer instead.

use std::sync::Arc;

use http::Extensions;
use reqwest::{Request, Response};
use reqwest_middleware::{Middleware, Next};

use palisade::outcome::{Classify, Outcome};

use super::{Attempt, Attempted, Call, Resilience, budget_header};
use crate::classify::{HttpClassifier, TransportError, TransportErrorKind};

/// The client's policies around every request of a `reqwest_middleware` client.
#[derive(Clone, Debug)]
pub struct ResilientMiddleware {
    resilience: Arc<Resilience>,
}

impl ResilientMiddleware {
    /// The middleware over `resilience` (share one per dependency: its breaker and
    /// budget then see every call to it).
    pub fn new(resilience: Arc<Resilience>) -> Self {
        Self { resilience }
    }
}

#[async_trait::async_trait]
impl Middleware for ResilientMiddleware {
    async fn handle(
        &self,
        request: Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<Response> {
        let method = request.method().clone();
        let idempotency_key = request.headers().contains_key(super::IDEMPOTENCY_KEY);
        let authority = request.url().authority().to_owned();
        let call = Call {
            authority: &authority,
            method: &method,
            idempotency_key,
            body_replayable: request.body().is_none_or(|b| b.as_bytes().is_some()),
        };
        // Each attempt sends a copy; a request that cannot be copied (a streaming body)
        // goes out once, as it is (the classifier never retries it).
        let original = std::sync::Mutex::new(Some(request));
        let shared = extensions.clone();
        let attempt: &Attempt<'_, Response> = &|budget| {
            let next = next.clone();
            let mut extensions = shared.clone();
            let attempt = {
                let mut original = original.lock().unwrap_or_else(|e| e.into_inner());
                match original.as_ref().and_then(Request::try_clone) {
                    Some(copy) => Some(copy),
                    None => original.take(),
                }
            };
            let sent: Attempted<'_, Response> = Box::pin(async move {
                let Some(mut attempt) = attempt else {
                    return Err(TransportError {
                        kind: TransportErrorKind::Other,
                        message: "a streaming request body cannot be sent twice".into(),
                    });
                };
                if let Some(budget) = budget {
                    attempt.headers_mut().insert(budget_header(), budget);
                }
                next.run(attempt, &mut extensions)
                    .await
                    .map_err(|error| transport(&error))
            });
            sent
        };
        let outcome = self.resilience.execute(call, attempt).await;
        let fallback = self.resilience.fallback();
        match (outcome, fallback) {
            (Ok(response), Some(fallback)) if response.status().is_server_error() => {
                Ok(substitute(fallback))
            }
            (Ok(response), _) => Ok(response),
            (Err(_), Some(fallback)) => Ok(substitute(fallback)),
            (Err(error), None) => Err(reqwest_middleware::Error::middleware(error)),
        }
    }
}

/// reqwest's responses judged as the sidecar judges `http::Response`s (by status and
/// `Retry-After`), without converting them.
impl Classify<Response, TransportError> for HttpClassifier {
    fn classify_ok(&self, response: &Response) -> Outcome {
        self.classify_answer(response.status(), response.headers())
    }

    fn classify_err(&self, error: &TransportError) -> Outcome {
        <Self as Classify<http::Response<()>, TransportError>>::classify_err(self, error)
    }

    fn classify_rejection(&self, error: &palisade::Error<TransportError>) -> Outcome {
        <Self as Classify<http::Response<()>, TransportError>>::classify_rejection(self, error)
    }
}

/// The configured fallback as a response, marked `x-palisade-fallback: 1`.
fn substitute(fallback: &super::FallbackSection) -> Response {
    let mut response = http::Response::new(fallback.body.clone());
    *response.status_mut() =
        http::StatusCode::from_u16(fallback.status).unwrap_or(http::StatusCode::OK);
    if let Ok(content_type) = http::HeaderValue::from_str(&fallback.content_type) {
        response
            .headers_mut()
            .insert(http::header::CONTENT_TYPE, content_type);
    }
    response.headers_mut().insert(
        http::HeaderName::from_static("x-palisade-fallback"),
        http::HeaderValue::from_static("1"),
    );
    Response::from(response)
}

/// How a send failed, as the classifier reads it.
fn transport(error: &reqwest_middleware::Error) -> TransportError {
    let kind = match error {
        reqwest_middleware::Error::Reqwest(e) if e.is_connect() => {
            TransportErrorKind::ConnectFailure
        }
        reqwest_middleware::Error::Reqwest(e) if e.is_request() || e.is_body() => {
            TransportErrorKind::Reset
        }
        _ => TransportErrorKind::Other,
    };
    TransportError {
        kind,
        message: error.to_string(),
    }
}

//! The endpoints: a tower service answering `/health/live`, `/health/ready` and
//! `/health/deep` with a [`Report`](super::Report)'s JSON, 200 when it passes and 503
//! when not; mount it on an axum `Router` with `route_service` (or serve it with hyper).

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;

use super::{Class, Health};

/// The health endpoints over a [`Health`]. Other paths get 404, other methods than `GET`
/// and `HEAD` 405.
#[derive(Clone, Debug)]
pub struct HealthService {
    health: Arc<Health>,
}

impl HealthService {
    /// The endpoints of `health`.
    pub fn new(health: Arc<Health>) -> Self {
        Self { health }
    }
}

impl<B> tower_service::Service<Request<B>> for HealthService {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let class = match request.uri().path() {
            "/health/live" => Some(Class::Liveness),
            "/health/ready" => Some(Class::Readiness),
            "/health/deep" => Some(Class::Deep),
            _ => None,
        };
        let allowed = matches!(*request.method(), Method::GET | Method::HEAD);
        let health = Arc::clone(&self.health);
        Box::pin(async move {
            let Some(class) = class else {
                return Ok(plain(StatusCode::NOT_FOUND));
            };
            if !allowed {
                return Ok(plain(StatusCode::METHOD_NOT_ALLOWED));
            }
            let report = health.report(class).await;
            let status = if report.passes() {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            let mut response = Response::new(Full::new(Bytes::from(report.json())));
            *response.status_mut() = status;
            let headers = response.headers_mut();
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
            Ok(response)
        })
    }
}

fn plain(status: StatusCode) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = status;
    response
}

//! The dashboard's requests on the admin port: the page, its stream, its data and its
//! actions (each done by the admin API's own handler).

use http::header::{AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;

use super::{Admin, MAX_BODY, error, text};
use crate::body::{ProxyBody, boxed};
use crate::dashboard::{Action, Hangup};

/// The page may run its own inline script and style and talk to the admin port only;
/// it loads nothing from anywhere else and is never framed (its buttons act).
const PAGE_POLICY: &str = "default-src 'none'; script-src 'unsafe-inline'; \
    style-src 'unsafe-inline'; connect-src 'self'; img-src data:; frame-ancestors 'none'";

impl Admin {
    /// Answers `method` on `/dashboard/{rest…}`.
    pub(super) async fn dashboard(
        &self,
        request: Request<Incoming>,
        rest: &[String],
    ) -> Response<ProxyBody> {
        let rest: Vec<&str> = rest.iter().map(String::as_str).collect();
        match (request.method(), rest.as_slice()) {
            (&Method::GET, [] | [""]) => {
                let mut response = text(
                    StatusCode::OK,
                    self.dashboard.page(),
                    "text/html; charset=utf-8",
                );
                let headers = response.headers_mut();
                headers.insert(
                    "content-security-policy",
                    HeaderValue::from_static(PAGE_POLICY),
                );
                headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
                response
            }
            (&Method::GET, ["events"]) => {
                let hangup = request.extensions().get::<Hangup>().cloned();
                let mut response = Response::new(boxed(self.dashboard.watch(hangup)));
                let headers = response.headers_mut();
                headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
                headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
                response
            }
            (&Method::GET, ["data.json"]) => text(
                StatusCode::OK,
                self.dashboard.data().await,
                "application/json",
            ),
            (&Method::POST, ["action"]) => self.act(request).await,
            (_, [] | [""] | ["events"] | ["data.json"] | ["action"]) => {
                error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
            }
            _ => error(StatusCode::NOT_FOUND, "no such dashboard endpoint"),
        }
    }

    /// Does the action a page posted, once it passed the admin token rule and the
    /// action's own checks.
    async fn act(&self, request: Request<Incoming>) -> Response<ProxyBody> {
        let (parts, body) = request.into_parts();
        if let Some(token) = &self.token {
            if !super::bearer_matches(parts.headers.get(AUTHORIZATION), token) {
                return error(
                    StatusCode::UNAUTHORIZED,
                    "missing or wrong bearer token (admin.token)",
                );
            }
        }
        let Ok(body) = Limited::new(body, MAX_BODY).collect().await else {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "admin bodies are at most 64 KiB",
            );
        };
        let action = match Action::checked(&parts.headers, &body.to_bytes(), self.dashboard.csrf())
        {
            Ok(action) => action,
            Err(refusal) => return error(refusal.status, refusal.message),
        };
        tracing::info!(?action, "dashboard action");
        match action {
            Action::Breaker { upstream, state } => self.force_breakers(&upstream, &state),
            Action::Fault { route, fault } => {
                self.apply_fault(route, None, fault.unwrap_or_default())
            }
            Action::Saga { id, verb } => {
                let runtime = self.runtime.load();
                let (status, body) = crate::saga::admin(
                    runtime.sagas.get().map(|s| &**s),
                    &Method::POST,
                    &[id.as_str(), verb.as_str()],
                    None,
                )
                .await;
                super::json(status, &body)
            }
        }
    }
}

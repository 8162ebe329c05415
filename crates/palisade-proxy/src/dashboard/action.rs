//! An operator's action from the page, and the checks it passes first.
//!
//! `POST /dashboard/action` with a JSON body:
//!
//! | body | does what the admin API's … does |
//! |---|---|
//! | `{"action": "breaker", "upstream": "api", "state": "open" \| "closed" \| "auto"}` | `POST /admin/upstream/{name}/circuit` |
//! | `{"action": "fault", "route": 0, "fault": {…[route.fault]…} \| null}` | `POST /admin/route/{n}/fault` (`null`: no fault) |
//! | `{"action": "saga", "id": "…", "verb": "resume" \| "abort"}` | `POST /admin/sagas/{id}/resume\|abort` |
//!
//! The admin port applies its token rule first (with `admin.token` set, `Authorization:
//! Bearer <token>`, else 401 — and the token must be set off loopback). Then, here: the
//! page's CSRF token in `x-palisade-csrf` (else 403), a custom header no other site's
//! page can send without a CORS preflight, which the admin port never grants, and a
//! value it cannot read; a JSON body (else 415); a known action (else 400).

use http::header::CONTENT_TYPE;
use http::{HeaderMap, HeaderName, StatusCode};
use serde::Deserialize;
use subtle::ConstantTimeEq;

use crate::config::FaultSection;

/// The header carrying the page's CSRF token.
pub const CSRF_HEADER: HeaderName = HeaderName::from_static("x-palisade-csrf");

/// An action the page asks for.
#[derive(Debug, Deserialize, PartialEq)]
#[serde(tag = "action", rename_all = "snake_case", deny_unknown_fields)]
pub enum Action {
    /// Forces every breaker of an upstream.
    Breaker {
        /// The upstream.
        upstream: String,
        /// `open`, `closed` or `auto`.
        state: String,
    },
    /// Replaces a route's fault injection.
    Fault {
        /// The route's index.
        route: usize,
        /// The fault; `null` for none.
        fault: Option<FaultSection>,
    },
    /// Resumes or aborts a parked saga.
    Saga {
        /// The saga's id.
        id: String,
        /// `resume` or `abort`.
        verb: SagaVerb,
    },
}

/// What is done to a parked saga.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SagaVerb {
    /// Resume where it stopped.
    Resume,
    /// Abort it.
    Abort,
}

/// Why an action was refused: its status and message.
#[derive(Debug, PartialEq, Eq)]
pub struct Refusal {
    /// The answer's status.
    pub status: StatusCode,
    /// What to do instead.
    pub message: &'static str,
}

// === impl Action ===

impl Action {
    /// The action of a request with `headers` and `body`, if it passes the checks (see
    /// the module's doc; the admin token was checked before).
    ///
    /// # Errors
    /// The [`Refusal`] of the first check that fails.
    pub fn checked(headers: &HeaderMap, body: &[u8], csrf: &str) -> Result<Self, Refusal> {
        let given = headers.get(CSRF_HEADER).map(|v| v.as_bytes());
        if !given.is_some_and(|given| bool::from(given.ct_eq(csrf.as_bytes()))) {
            return Err(Refusal {
                status: StatusCode::FORBIDDEN,
                message: "missing or wrong CSRF token: act from the dashboard page, which sends x-palisade-csrf",
            });
        }
        let json = headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"));
        if !json {
            return Err(Refusal {
                status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
                message: "an action is a JSON body (Content-Type: application/json)",
            });
        }
        serde_json::from_slice(body).map_err(|_| Refusal {
            status: StatusCode::BAD_REQUEST,
            message: r#"expected {"action": "breaker" | "fault" | "saga", ...} (see docs/DASHBOARD.md)"#,
        })
    }
}

// === impl SagaVerb ===

impl SagaVerb {
    /// The admin API's path segment.
    pub fn as_str(self) -> &'static str {
        match self {
            SagaVerb::Resume => "resume",
            SagaVerb::Abort => "abort",
        }
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    const CSRF: &str = "0123456789abcdef";

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    const BREAKER: &[u8] = br#"{"action":"breaker","upstream":"api","state":"open"}"#;

    #[test]
    fn an_action_with_its_token_passes() {
        let h = headers(&[
            ("x-palisade-csrf", CSRF),
            ("content-type", "application/json"),
        ]);
        let action = Action::checked(&h, BREAKER, CSRF).unwrap();
        assert_eq!(
            action,
            Action::Breaker {
                upstream: "api".into(),
                state: "open".into()
            }
        );
    }

    #[test]
    fn without_the_csrf_token_an_action_is_forbidden() {
        for csrf in [None, Some("0123456789abcdeX"), Some("")] {
            let mut pairs = vec![("content-type", "application/json")];
            if let Some(c) = csrf {
                pairs.push(("x-palisade-csrf", c));
            }
            let refusal = Action::checked(&headers(&pairs), BREAKER, CSRF).unwrap_err();
            assert_eq!(refusal.status, StatusCode::FORBIDDEN, "{csrf:?}");
        }
    }

    proptest::proptest! {
        #[test]
        fn no_body_or_token_panics(body: Vec<u8>, csrf: String) {
            let mut h = headers(&[("content-type", "application/json")]);
            if let Ok(value) = HeaderValue::from_str(&csrf) {
                h.insert(CSRF_HEADER, value);
            }
            let _ = Action::checked(&h, &body, CSRF);
        }
    }

    #[test]
    fn a_form_post_or_bad_json_is_refused() {
        let form = headers(&[("x-palisade-csrf", CSRF), ("content-type", "text/plain")]);
        let refusal = Action::checked(&form, BREAKER, CSRF).unwrap_err();
        assert_eq!(refusal.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        let json = headers(&[
            ("x-palisade-csrf", CSRF),
            ("content-type", "application/json"),
        ]);
        for body in [
            &b"{"[..],
            br#"{"action":"reboot"}"#,
            br#"{"action":"breaker","upstream":"api"}"#,
            br#"{"action":"saga","id":"x","verb":"delete"}"#,
            br#"{"action":"fault","route":0,"fault":null,"extra":1}"#,
        ] {
            let refusal = Action::checked(&json, body, CSRF).unwrap_err();
            assert_eq!(refusal.status, StatusCode::BAD_REQUEST);
        }
        let off = Action::checked(&json, br#"{"action":"fault","route":2,"fault":null}"#, CSRF);
        assert_eq!(
            off.unwrap(),
            Action::Fault {
                route: 2,
                fault: None
            }
        );
    }
}

//! The client's config: the same sections and keys as the sidecar's `[upstream]` policy
//! sections (`timeout`, `retry`, `circuit_breaker`, `bulkhead`), with the same defaults,
//! so a service's settings move between the library and the sidecar unchanged.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Outcomes retried by default: a connection never made, one reset, a per-try timeout,
/// and the gateway statuses (the sidecar's `[upstream.retry] on` default too).
pub const DEFAULT_RETRY_ON: [&str; 6] =
    ["connect-failure", "reset", "timeout", "502", "503", "504"];

/// Methods replayed by default: the idempotent ones (a request with an
/// `Idempotency-Key` may be replayed whatever its method).
pub const DEFAULT_RETRY_METHODS: [&str; 5] = ["GET", "HEAD", "OPTIONS", "PUT", "DELETE"];

/// A resilient client's policies; every section optional.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    /// `timeout`: the whole call, each attempt, and the margin kept from the budget sent.
    #[serde(default)]
    pub timeout: TimeoutSection,
    /// `retry`: what is retried, and the library's retry keys (attempts, backoff, budget).
    #[serde(default)]
    pub retry: RetrySection,
    /// `circuit_breaker`: the library's breaker keys (default: a breaker with its defaults).
    #[serde(default)]
    pub circuit_breaker: BreakerSection,
    /// `bulkhead`: the library's bulkhead keys; absent: none.
    #[serde(default)]
    pub bulkhead: Option<palisade::policy::bulkhead::BulkheadConfig>,
    /// `hedge`: the library's hedge keys; absent: none. Only requests that may be sent
    /// twice are hedged, and hedges are charged to the retry budget.
    #[serde(default)]
    pub hedge: Option<palisade::policy::hedge::HedgeConfig>,
    /// `fallback`: the answer given instead of an error when the policies give up (as a
    /// sidecar route's `[route.fallback]`); absent: the error.
    #[serde(default)]
    pub fallback: Option<FallbackSection>,
}

/// `fallback`: a substitute answer, marked `x-palisade-fallback: 1`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FallbackSection {
    /// Its status, 200–599. Default 200.
    #[serde(default = "default_fallback_status")]
    pub status: u16,
    /// Its body.
    #[serde(default)]
    pub body: String,
    /// Its `Content-Type`. Default `text/plain; charset=utf-8`.
    #[serde(default = "default_content_type")]
    pub content_type: String,
}

fn default_fallback_status() -> u16 {
    200
}

fn default_content_type() -> String {
    "text/plain; charset=utf-8".to_owned()
}

/// `timeout`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeoutSection {
    /// The whole call: every attempt and every backoff. Default 15 s.
    #[serde(default = "default_total", with = "humantime_serde")]
    pub total: Duration,
    /// One attempt. Default 5 s.
    #[serde(default = "default_per_try", with = "humantime_serde")]
    pub per_try: Duration,
    /// Kept from the caller's remaining budget when it is sent on. Default 5 ms.
    #[serde(default = "default_margin", with = "humantime_serde")]
    pub margin: Duration,
}

impl Default for TimeoutSection {
    fn default() -> Self {
        Self {
            total: default_total(),
            per_try: default_per_try(),
            margin: default_margin(),
        }
    }
}

fn default_total() -> Duration {
    Duration::from_secs(15)
}

fn default_per_try() -> Duration {
    Duration::from_secs(5)
}

fn default_margin() -> Duration {
    Duration::from_millis(5)
}

/// `retry`: HTTP's rules, plus the library's `RetryConfig` keys.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RetrySection {
    /// Outcomes retried ([`DEFAULT_RETRY_ON`]).
    #[serde(default = "default_retry_on")]
    pub on: Vec<String>,
    /// Methods that may be replayed ([`DEFAULT_RETRY_METHODS`]).
    #[serde(default = "default_retry_methods")]
    pub methods: Vec<String>,
    /// Every other key: `palisade::policy::retry::RetryConfig`'s.
    #[serde(flatten)]
    pub policy: Map<String, Value>,
}

impl Default for RetrySection {
    fn default() -> Self {
        Self {
            on: default_retry_on(),
            methods: default_retry_methods(),
            policy: Map::new(),
        }
    }
}

fn default_retry_on() -> Vec<String> {
    DEFAULT_RETRY_ON.map(String::from).to_vec()
}

fn default_retry_methods() -> Vec<String> {
    DEFAULT_RETRY_METHODS.map(String::from).to_vec()
}

/// `circuit_breaker`: where breakers sit, and the library's `CircuitBreakerConfig` keys.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct BreakerSection {
    /// `"endpoint"` (the default, as the sidecar's): one breaker per host the client
    /// calls (its URL's authority), at most 1,024 remembered; `"upstream"`: one breaker
    /// for every call.
    #[serde(default)]
    pub scope: Option<String>,
    /// Every other key: `palisade::policy::circuit_breaker::CircuitBreakerConfig`'s.
    #[serde(flatten)]
    pub policy: Map<String, Value>,
}

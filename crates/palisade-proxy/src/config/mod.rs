//! The sidecar's configuration: one TOML file.
//!
//! The keys of the contract are public and stable; see `docs/CONFIG.md` for
//! every key, its default and why. Policy sections reuse the library's own config types
//! (`RetryConfig`, `CircuitBreakerConfig`, `BulkheadConfig`, `RateLimitConfig`), so a file
//! and a builder produce the same policy objects.
//!
//! [`load`] reads and validates a file and reports every problem as
//! `FILE:LINE: key: what is wrong; what is allowed`; a valid file comes with its
//! [`advice`], warnings on the mistakes every resilience guide lists.

pub mod advice;
pub mod fleet;
pub mod load;
pub mod saga;
pub(crate) mod spans;

pub use load::{Checked, Problem, Problems, UpstreamPolicies, load, parse};

use std::net::SocketAddr;
use std::time::Duration;

use palisade::policy::adaptive_timeout::AdaptiveTimeoutConfig;
use palisade::policy::bulkhead::BulkheadConfig;
use palisade::policy::hedge::HedgeConfig;
use palisade::policy::shed::ShedConfig;
use palisade::policy::throttle::ThrottleConfig;
use serde::{Deserialize, Serialize};

/// The statuses the proxy may answer with on its own (fallbacks, injected aborts): final
/// ones only. A 1xx written as the answer would leave the client waiting for the final
/// response, or taking the next exchange's as this one's.
pub const FINAL_STATUSES: std::ops::RangeInclusive<u16> = 200..=599;

/// The whole file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where clients connect.
    pub listener: Listener,
    /// The admin port: health, metrics, state and controls.
    #[serde(default)]
    pub admin: Admin,
    /// The dependencies, by name.
    #[serde(default)]
    pub upstream: Vec<Upstream>,
    /// Path prefixes and the upstream (or saga) each goes to.
    #[serde(default)]
    pub route: Vec<Route>,
    /// Where sagas are logged; absent with sagas defined: the default SQLite file.
    #[serde(default)]
    pub saga_store: Option<saga::SagaStore>,
    /// Sagas that routes start.
    #[serde(default)]
    pub saga: Vec<saga::Saga>,
    /// The Redis that fleet-scoped limits and budgets share; absent: none.
    #[serde(default)]
    pub fleet: Option<fleet::FleetSection>,
}

/// `[listener]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listener {
    /// Address to accept clients on.
    pub address: SocketAddr,
    /// Largest request body accepted (413 beyond). Default 10 MiB.
    #[serde(default = "defaults::max_body_bytes")]
    pub max_body_bytes: u64,
    /// Largest request head (request line and headers) accepted (431 beyond). Default 64 KiB.
    #[serde(default = "defaults::max_header_bytes")]
    pub max_header_bytes: usize,
    /// A client must send its request head within this time. Default 10 s.
    #[serde(default = "defaults::header_timeout", with = "humantime_serde")]
    pub header_timeout: Duration,
    /// How long shutdown waits for in-flight requests. Default 30 s.
    #[serde(default = "defaults::drain_timeout", with = "humantime_serde")]
    pub drain_timeout: Duration,
    /// Longest wait for the next piece of a client's request body (408 beyond): a
    /// client that stalls mid-upload holds nothing for longer. Default 10 s.
    #[serde(default = "defaults::body_timeout", with = "humantime_serde")]
    pub body_timeout: Duration,
    /// Most client connections open at once, over all workers (connections); one more
    /// is closed as soon as it is accepted. Default 10,000.
    #[serde(default = "defaults::max_connections")]
    pub max_connections: usize,
    /// Whether a client closing its side of the connection while its request is in
    /// flight cancels the request (HAProxy's `option abortonclose`, Envoy's and nginx's
    /// default). Default false: a client may half-close after sending its request and
    /// still gets its answer (HAProxy's default); a client that went away entirely is
    /// noticed when the answer is written.
    #[serde(default)]
    pub abort_on_close: bool,
}

/// `[admin]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Admin {
    /// Address of the admin port. Default 127.0.0.1:9901 (loopback only).
    #[serde(default = "defaults::admin_address")]
    pub address: SocketAddr,
    /// Bearer token required for POST endpoints; required when `address` is not loopback.
    #[serde(default)]
    pub token: Option<String>,
    /// A client must start each request within this time of its connection opening or
    /// of its previous response ending. Default 10 s.
    #[serde(default = "defaults::header_timeout", with = "humantime_serde")]
    pub header_timeout: Duration,
    /// Most admin connections open at once (connections); one more is closed as soon
    /// as it is accepted. Default 64.
    #[serde(default = "defaults::admin_max_connections")]
    pub max_connections: usize,
    /// How often the dashboard's viewers get a frame (`GET /dashboard`). Default 1 s;
    /// 100 ms (10 a second) to 10 s. The history keeps one point a second regardless.
    #[serde(default = "defaults::dashboard_interval", with = "humantime_serde")]
    pub dashboard_interval: Duration,
}

impl Default for Admin {
    fn default() -> Self {
        Self {
            address: defaults::admin_address(),
            token: None,
            header_timeout: defaults::header_timeout(),
            max_connections: defaults::admin_max_connections(),
            dashboard_interval: defaults::dashboard_interval(),
        }
    }
}

/// How requests are spread over endpoints.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Balance {
    /// Power of two choices by peak-EWMA latency × load.
    #[default]
    P2c,
    /// In turn.
    RoundRobin,
    /// At random.
    Random,
}

/// The protocol spoken to an upstream.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    /// HTTP/1.1 with keep-alive.
    #[default]
    Http1,
    /// HTTP/2 with prior knowledge (h2c).
    Http2,
}

/// `[[upstream]]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Upstream {
    /// Name routes refer to.
    pub name: String,
    /// Primary endpoints, `host:port`, used active-active.
    pub endpoints: Vec<String>,
    /// Backup endpoints, used only when no primary is available.
    #[serde(default)]
    pub backup: Vec<String>,
    /// Load balancing.
    #[serde(default)]
    pub balance: Balance,
    /// After an endpoint's breaker closes, its share of p2c's picks ramps up over this
    /// long (from a tenth), so a recovered endpoint is not handed a whole backlog at
    /// once. Default 0 (off).
    #[serde(default, with = "humantime_serde")]
    pub slow_start: Duration,
    /// Protocol to the endpoints.
    #[serde(default)]
    pub protocol: Protocol,
    /// Time limits.
    #[serde(default)]
    pub timeout: TimeoutSection,
    /// Retries; absent: the defaults (3 attempts on connect failures, resets, timeouts, 502–504).
    #[serde(default)]
    pub retry: RetrySection,
    /// Circuit breaking; absent: the defaults, per endpoint.
    #[serde(default)]
    pub circuit_breaker: BreakerSection,
    /// Concurrency limit; absent: none.
    pub bulkhead: Option<BulkheadConfig>,
    /// Rate limit, this sidecar's or the fleet's; absent: none.
    pub rate_limit: Option<fleet::RateLimitSection>,
    /// Active health checks; absent: none (breakers still eject failing endpoints).
    pub health_check: Option<HealthCheck>,
    /// An adaptive concurrency limit, for the upstream or per endpoint; absent: none.
    pub adaptive_concurrency: Option<AdaptiveSection>,
    /// Client-side adaptive throttling; absent: none.
    pub throttle: Option<ThrottleConfig>,
    /// Criticality-aware load shedding; absent: none.
    pub load_shedding: Option<ShedConfig>,
    /// Hedging of slow idempotent requests; absent: none.
    pub hedge: Option<HedgeConfig>,
}

/// `[upstream.timeout]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeoutSection {
    /// The whole request: every attempt and every backoff. Default 15 s.
    #[serde(default = "defaults::total", with = "humantime_serde")]
    pub total: Duration,
    /// One attempt. Default 5 s.
    #[serde(default = "defaults::per_try", with = "humantime_serde")]
    pub per_try: Duration,
    /// Subtracted from the remaining budget sent to the upstream. Default 5 ms.
    #[serde(default = "defaults::margin", with = "humantime_serde")]
    pub margin: Duration,
    /// Longest wait for the next piece of a relayed response body: an upstream that
    /// stalls mid-body is cut off (the client's response ends early, the connection is
    /// not reused). Default 60 s, above the keep-alive comments of event streams.
    #[serde(default = "defaults::body_idle", with = "humantime_serde")]
    pub body_idle: Duration,
    /// Per-try timeout learned from observed latency, replacing `per_try` once enough
    /// samples exist (`per_try` is its fallback until then).
    #[serde(default)]
    pub adaptive: Option<AdaptiveTimeoutConfig>,
}

impl Default for TimeoutSection {
    fn default() -> Self {
        Self {
            total: defaults::total(),
            per_try: defaults::per_try(),
            margin: defaults::margin(),
            body_idle: defaults::body_idle(),
            adaptive: None,
        }
    }
}

/// `[upstream.retry]`: the library's retry settings plus what only HTTP knows.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RetrySection {
    /// Outcomes that are retried.
    #[serde(default = "defaults::retry_on")]
    pub on: Vec<String>,
    /// Methods that may be replayed (any request with an `Idempotency-Key` may be too).
    #[serde(default = "defaults::retry_methods")]
    pub methods: Vec<String>,
    /// Largest request body kept for replay; larger bodies are streamed, not retried.
    #[serde(default = "defaults::replay_body_bytes")]
    pub replay_body_bytes: usize,
    /// Every other key: [`palisade::policy::retry::RetryConfig`]'s.
    #[serde(flatten)]
    pub policy: toml::Table,
}

impl Default for RetrySection {
    fn default() -> Self {
        Self {
            on: defaults::retry_on(),
            methods: defaults::retry_methods(),
            replay_body_bytes: defaults::replay_body_bytes(),
            policy: toml::Table::new(),
        }
    }
}

/// Where breakers sit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakerScope {
    /// One breaker per endpoint: a failing endpoint is ejected from balancing.
    #[default]
    Endpoint,
    /// One breaker for the whole upstream.
    Upstream,
}

/// Whose adaptive concurrency limit: the upstream's, or each endpoint's own.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitScope {
    /// One limit for the upstream, before the balancer.
    #[default]
    Upstream,
    /// A limit per endpoint, learnt from that endpoint's round trips; requests wait in
    /// `[upstream.load_shedding]`'s queue for a free place at some endpoint.
    Endpoint,
}

/// `[upstream.adaptive_concurrency]`: a scope plus the library's limiter settings.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AdaptiveSection {
    /// For the upstream (default) or per endpoint.
    #[serde(default)]
    pub scope: LimitScope,
    /// Every other key: [`palisade::policy::adaptive_concurrency::AdaptiveConcurrencyConfig`]'s.
    #[serde(flatten)]
    pub policy: toml::Table,
}

/// `[upstream.circuit_breaker]`: a scope plus the library's breaker settings.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct BreakerSection {
    /// Per endpoint or per upstream.
    #[serde(default)]
    pub scope: BreakerScope,
    /// Every other key: [`palisade::policy::circuit_breaker::CircuitBreakerConfig`]'s.
    #[serde(flatten)]
    pub policy: toml::Table,
}

/// `[upstream.health_check]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthCheck {
    /// Path requested with GET; a 2xx answer is healthy.
    #[serde(default = "defaults::health_path")]
    pub path: String,
    /// Time between checks. Default 2 s.
    #[serde(default = "defaults::health_interval", with = "humantime_serde")]
    pub interval: Duration,
    /// Time a check may take. Default 1 s.
    #[serde(default = "defaults::health_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Passing checks in a row that make an endpoint healthy. Default 2.
    #[serde(default = "defaults::healthy_after")]
    pub healthy_after: u32,
    /// Failing checks in a row that make an endpoint unhealthy. Default 3.
    #[serde(default = "defaults::unhealthy_after")]
    pub unhealthy_after: u32,
}

/// `[[route]]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// Requests whose path starts with this go here (the longest prefix wins).
    pub path_prefix: String,
    /// The upstream's name (empty for a saga route).
    #[serde(default)]
    pub upstream: String,
    /// Instead of an upstream: the saga a `POST` starts (see `crate::saga`).
    #[serde(default)]
    pub saga: Option<String>,
    /// Served instead of an error when resilience gives up.
    pub fallback: Option<FallbackSection>,
    /// Fault injection; absent: off.
    pub fault: Option<FaultSection>,
    /// Header carrying the request's criticality (`critical-plus`, `critical`,
    /// `sheddable-plus`, `sheddable`); absent or unreadable: `critical`.
    pub criticality_header: Option<String>,
}

/// `[route.fallback]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FallbackSection {
    /// Status of the fallback response, 200–599. Default 200.
    #[serde(default = "defaults::fallback_status")]
    pub status: u16,
    /// Its body.
    #[serde(default)]
    pub body: String,
    /// Its `Content-Type`. Default `text/plain; charset=utf-8`.
    #[serde(default = "defaults::content_type")]
    pub content_type: String,
}

/// `[route.fault]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultSection {
    /// Percent of requests answered with `abort_status` without calling the upstream, 0–100.
    #[serde(default)]
    pub abort_percent: f64,
    /// Status of injected aborts, 200–599. Default 503.
    #[serde(default = "defaults::abort_status")]
    pub abort_status: u16,
    /// Percent of requests delayed by `delay` first, 0–100.
    #[serde(default)]
    pub delay_percent: f64,
    /// The injected delay.
    #[serde(default, with = "humantime_serde")]
    pub delay: Duration,
    /// Percent of requests whose response body is degraded as `body` says, 0–100.
    #[serde(default)]
    pub body_percent: f64,
    /// What a body fault does: `slow` (released at `body_rate`) or `truncate` (cut after
    /// `truncate_after` bytes). Default `slow`.
    #[serde(default)]
    pub body: BodyFaultKind,
    /// A slowed body's rate, bytes per second, 1 to 1 GiB. Default 1024: a page of text
    /// a second, slow enough to show in any client's timing.
    #[serde(default = "defaults::body_rate")]
    pub body_rate: u64,
    /// Bytes of a truncated body let through before the cut. Default 0: the head only.
    #[serde(default)]
    pub truncate_after: u64,
    /// Injected faults in progress at once, 1 to 1,000,000; beyond it requests pass
    /// untouched. Read when the config loads. Default 1000.
    #[serde(default = "defaults::fault_max_concurrent")]
    pub max_concurrent: usize,
}

/// What a body fault does (`[route.fault] body`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BodyFaultKind {
    /// The body released at `body_rate` bytes per second.
    #[default]
    Slow,
    /// The body cut after `truncate_after` bytes, the response left incomplete.
    Truncate,
}

/// The range of `[route.fault] body_rate`, bytes per second.
pub const BODY_RATES: std::ops::RangeInclusive<u64> = 1..=1 << 30;

impl FaultSection {
    /// True when any rate is above zero.
    pub fn is_active(&self) -> bool {
        self.abort_percent > 0.0 || self.delay_percent > 0.0 || self.body_percent > 0.0
    }

    /// What a body fault does to a response body, by these keys.
    pub fn body_fault(&self) -> crate::body_fault::BodyFault {
        match self.body {
            BodyFaultKind::Slow => crate::body_fault::BodyFault::Slow {
                bytes_per_second: self.body_rate,
            },
            BodyFaultKind::Truncate => crate::body_fault::BodyFault::Truncate {
                after: self.truncate_after,
            },
        }
    }

    /// The library's fault injection settings these keys stand for (percentages as
    /// rates), named `name`.
    pub fn policy_config(&self, name: &str) -> palisade::policy::fault::FaultConfig {
        palisade::policy::fault::FaultConfig {
            name: name.to_owned(),
            enabled: self.is_active(),
            error_rate: self.abort_percent / 100.0,
            latency_rate: self.delay_percent / 100.0,
            latency: self.delay,
            degrade_rate: self.body_percent / 100.0,
            max_concurrent: self.max_concurrent,
            seed: None,
        }
    }
}

impl Default for FaultSection {
    fn default() -> Self {
        Self {
            abort_percent: 0.0,
            abort_status: defaults::abort_status(),
            delay_percent: 0.0,
            delay: Duration::ZERO,
            body_percent: 0.0,
            body: BodyFaultKind::default(),
            body_rate: defaults::body_rate(),
            truncate_after: 0,
            max_concurrent: defaults::fault_max_concurrent(),
        }
    }
}

/// Defaults, one function each so serde can use them.
pub(crate) mod defaults {
    use std::net::SocketAddr;
    use std::time::Duration;

    pub(crate) fn max_body_bytes() -> u64 {
        10 * 1024 * 1024
    }
    pub(crate) fn max_header_bytes() -> usize {
        64 * 1024
    }
    pub(crate) fn header_timeout() -> Duration {
        Duration::from_secs(10)
    }
    pub(crate) fn drain_timeout() -> Duration {
        Duration::from_secs(30)
    }
    pub(crate) fn fault_max_concurrent() -> usize {
        1000
    }
    pub(crate) fn body_timeout() -> Duration {
        Duration::from_secs(10)
    }
    pub(crate) fn body_idle() -> Duration {
        Duration::from_secs(60)
    }
    pub(crate) fn max_connections() -> usize {
        10_000
    }
    pub(crate) fn admin_max_connections() -> usize {
        64
    }
    pub(crate) fn dashboard_interval() -> Duration {
        Duration::from_secs(1)
    }
    pub(crate) fn admin_address() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 9901))
    }
    pub(crate) fn total() -> Duration {
        palisade_http::client::TimeoutSection::default().total
    }
    pub(crate) fn per_try() -> Duration {
        palisade_http::client::TimeoutSection::default().per_try
    }
    pub(crate) fn margin() -> Duration {
        palisade_http::client::TimeoutSection::default().margin
    }
    // The resilient client's defaults too: one list for both faces.
    pub(crate) fn retry_on() -> Vec<String> {
        palisade_http::client::DEFAULT_RETRY_ON
            .map(String::from)
            .to_vec()
    }
    pub(crate) fn retry_methods() -> Vec<String> {
        palisade_http::client::DEFAULT_RETRY_METHODS
            .map(String::from)
            .to_vec()
    }
    pub(crate) fn replay_body_bytes() -> usize {
        64 * 1024
    }
    pub(crate) fn health_path() -> String {
        "/health/ready".to_owned()
    }
    pub(crate) fn health_interval() -> Duration {
        Duration::from_secs(2)
    }
    pub(crate) fn health_timeout() -> Duration {
        Duration::from_secs(1)
    }
    pub(crate) fn healthy_after() -> u32 {
        2
    }
    pub(crate) fn unhealthy_after() -> u32 {
        3
    }
    pub(crate) fn fallback_status() -> u16 {
        200
    }
    pub(crate) fn content_type() -> String {
        "text/plain; charset=utf-8".to_owned()
    }
    pub(crate) fn abort_status() -> u16 {
        503
    }
    pub(crate) fn body_rate() -> u64 {
        1024
    }
}

//! One upstream endpoint: its address, its breaker, its health and its load.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use palisade::ConfigError;
use palisade::clock::{Clock, Nanos};
use palisade::policy::adaptive_concurrency::AdaptiveConcurrency;
use palisade::policy::circuit_breaker::{CircuitBreaker, CircuitState};
use serde::Serialize;

use super::pool::{Connections, Pool};

/// Whether an endpoint serves normally or only when every primary is unavailable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Used active-active.
    Primary,
    /// Used only when no primary is available.
    Backup,
}

/// The last active health check of an endpoint.
#[derive(Clone, Debug, Default, Serialize)]
pub struct CheckStatus {
    /// Checks made.
    pub checks: u64,
    /// The last check's answer: a status code or an error.
    pub last: Option<String>,
    /// Passing checks in a row.
    pub passing_in_a_row: u32,
    /// Failing checks in a row.
    pub failing_in_a_row: u32,
}

/// One `host:port` of an upstream.
pub struct Endpoint {
    /// `host:port`.
    pub address: String,
    /// The same, as the authority of upstream request URIs.
    pub authority: http::uri::Authority,
    /// Its connections.
    pub(crate) pool: Pool,
    /// Primary or backup.
    pub role: Role,
    /// Its own breaker, when the upstream's breakers are per endpoint.
    pub breaker: Option<CircuitBreaker>,
    /// Its own adaptive concurrency limit, when the upstream's limits are per endpoint.
    pub(crate) limit: Option<AdaptiveConcurrency>,
    healthy: AtomicBool,
    in_flight: AtomicUsize,
    latency: PeakEwma,
    pub(crate) check: Mutex<CheckStatus>,
    health_gauge: metrics::Gauge,
}

impl Endpoint {
    /// Fails when `address` is not a valid URI authority (`host:port`).
    pub(crate) fn new(
        upstream: &str,
        address: String,
        role: Role,
        breaker: Option<CircuitBreaker>,
        connections: Connections,
        clock: Clock,
    ) -> Result<Self, ConfigError> {
        let authority = http::uri::Authority::try_from(address.as_str()).map_err(|_| {
            ConfigError::new(
                "upstream.endpoints",
                format!("{address:?} is not a valid host:port"),
                "host:port, e.g. \"127.0.0.1:9001\"",
            )
        })?;
        let health_gauge = metrics::gauge!(
            "palisade_endpoint_healthy",
            "upstream" => upstream.to_owned(),
            "endpoint" => address.clone()
        );
        health_gauge.set(1.0);
        let pool = Pool::new(authority.clone(), connections, clock);
        Ok(Self {
            address,
            authority,
            pool,
            role,
            breaker,
            limit: None,
            healthy: AtomicBool::new(true),
            in_flight: AtomicUsize::new(0),
            latency: PeakEwma::new(LATENCY_DECAY),
            check: Mutex::new(CheckStatus::default()),
            health_gauge,
        })
    }

    /// Gives it its own adaptive concurrency limit (see [`has_room`](Self::has_room)).
    pub(crate) fn limited(mut self, limit: AdaptiveConcurrency) -> Self {
        self.limit = Some(limit);
        self
    }

    /// Its adaptive concurrency limit now, when it has one.
    pub fn concurrency_limit(&self) -> Option<usize> {
        self.limit.as_ref().map(AdaptiveConcurrency::limit)
    }

    /// Under its adaptive concurrency limit, or without one.
    pub(crate) fn has_room(&self) -> bool {
        self.limit
            .as_ref()
            .is_none_or(|limit| limit.in_flight() < limit.limit())
    }

    /// True unless active health checks found it unhealthy.
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    pub(crate) fn set_healthy(&self, healthy: bool) {
        if self.healthy.swap(healthy, Ordering::Relaxed) != healthy {
            tracing::info!(endpoint = %self.address, healthy, "endpoint health changed");
        }
        self.health_gauge.set(if healthy { 1.0 } else { 0.0 });
    }

    /// The breaker's state, or closed without a breaker.
    pub fn breaker_state(&self) -> CircuitState {
        self.breaker
            .as_ref()
            .map_or(CircuitState::Closed, CircuitBreaker::state)
    }

    /// Healthy and not held open: worth trying. (An open breaker whose time is up is
    /// worth trying too; its `try_acquire` decides.)
    pub fn is_candidate(&self) -> bool {
        self.is_healthy() && self.breaker_state() != CircuitState::ForcedOpen
    }

    /// Healthy and its breaker lets calls through now.
    pub fn is_available(&self) -> bool {
        self.is_healthy()
            && !matches!(
                self.breaker_state(),
                CircuitState::Open | CircuitState::ForcedOpen
            )
    }

    /// Idle keep-alive connections to it (HTTP/1.1).
    pub fn idle_connections(&self) -> usize {
        self.pool.idle()
    }

    /// Requests in flight.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// The balancer's cost: latency estimate × (load + 1). `typical`: the upstream's
    /// typical latency in nanoseconds, which an idle estimate drifts to (see [`PeakEwma`]).
    pub(crate) fn cost(&self, clock: &Clock, typical: f64) -> f64 {
        self.latency.estimate(clock, typical) * (self.in_flight() as f64 + 1.0)
    }

    /// An attempt starts (see [`Picked`](super::balance::Picked), which ends it).
    pub(crate) fn start(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
    }

    /// An attempt ended, answered or not, or was dropped unfinished.
    pub(crate) fn end(&self) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
    }

    /// An attempt got its answer at `now` (a reading of the balancer's clock), costing
    /// `nanos` (see `Balancer::finish`).
    pub(crate) fn observe(&self, now: Nanos, nanos: f64) {
        self.latency.observe(now, nanos);
    }

    /// Drops the latency estimate: the endpoint is estimated at the upstream's typical
    /// latency until its next answer (its breaker closed: it recovered).
    pub(crate) fn forget_latency(&self) {
        self.latency.forget();
    }

    /// The latency estimate in seconds, drifting to `typical` nanoseconds while idle.
    pub fn latency_estimate(&self, clock: &Clock, typical: f64) -> f64 {
        self.latency.estimate(clock, typical) / 1e9
    }
}

/// Peak-EWMA latency (as linkerd and Finagle): a slower observation replaces the
/// estimate at once; faster ones pull it down with an exponential decay of `decay`.
///
/// An endpoint never observed, or idle (ejected, or just not picked), is estimated at the
/// upstream's typical latency, towards which an idle estimate drifts: so a once-slow
/// endpoint is tried again, and an idle one never looks better than the endpoints
/// serving — which would draw every pick to it the moment it returns.
struct PeakEwma {
    decay_nanos: f64,
    /// f64 nanoseconds, as bits; [`UNOBSERVED`] before the first observation.
    estimate: AtomicU64,
    /// When the estimate was last updated, clock nanoseconds.
    updated: AtomicU64,
}

/// How fast an endpoint's latency estimate forgets a slow answer (see [`PeakEwma`]).
///
/// Shorter than linkerd's and Finagle's ten seconds: a per-try timeout (an endpoint that
/// hung) leaves an estimate that keeps the endpoint from being picked at all, so it must
/// fade by time alone before the endpoint is tried again; the decay bounds how long a
/// recovered endpoint stays idle.
const LATENCY_DECAY: Duration = Duration::from_secs(2);

/// The estimate's bits before any observation (a NaN no observation can give).
const UNOBSERVED: u64 = u64::MAX;

impl PeakEwma {
    fn new(decay: Duration) -> Self {
        Self {
            decay_nanos: decay.as_nanos() as f64,
            estimate: AtomicU64::new(UNOBSERVED),
            updated: AtomicU64::new(0),
        }
    }

    fn estimate(&self, clock: &Clock, typical: f64) -> f64 {
        let bits = self.estimate.load(Ordering::Relaxed);
        if bits == UNOBSERVED {
            return typical;
        }
        let estimate = f64::from_bits(bits);
        let idle = clock
            .now()
            .saturating_sub(self.updated.load(Ordering::Relaxed)) as f64;
        let weight = (-idle / self.decay_nanos).exp();
        estimate * weight + typical * (1.0 - weight)
    }

    fn forget(&self) {
        self.estimate.store(UNOBSERVED, Ordering::Relaxed);
    }

    fn observe(&self, now: Nanos, sample: f64) {
        let bits = self.estimate.load(Ordering::Relaxed);
        let elapsed = now.saturating_sub(self.updated.swap(now, Ordering::Relaxed)) as f64;
        let next = if bits == UNOBSERVED || sample > f64::from_bits(bits) {
            sample
        } else {
            let weight = (-elapsed / self.decay_nanos).exp();
            f64::from_bits(bits) * weight + sample * (1.0 - weight)
        };
        self.estimate.store(next.to_bits(), Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peak_ewma_jumps_up_and_decays_down() {
        let (clock, hand) = Clock::manual();
        let ewma = PeakEwma::new(Duration::from_secs(10));
        ewma.observe(clock.now(), 100e6);
        assert!(
            (ewma.estimate(&clock, 1e6) - 100e6).abs() < 1.0,
            "a slow sample replaces the estimate"
        );
        hand.advance(Duration::from_secs(10));
        ewma.observe(clock.now(), 10e6);
        let e = ewma.estimate(&clock, 1e6);
        assert!(
            e < 100e6 && e > 10e6,
            "a fast sample pulls it down gradually: {e}"
        );
    }

    #[test]
    fn an_unobserved_or_idle_estimate_is_the_upstream_s_typical_latency() {
        let (clock, hand) = Clock::manual();
        let ewma = PeakEwma::new(Duration::from_secs(10));
        assert_eq!(ewma.estimate(&clock, 20e6), 20e6, "never observed");
        hand.advance(Duration::from_secs(1));
        ewma.observe(clock.now(), 2e6);
        assert!((ewma.estimate(&clock, 20e6) - 2e6).abs() < 1.0);
        // Idle for a minute (ejected, say): back to what its neighbours take, not lower.
        hand.advance(Duration::from_secs(60));
        let idle = ewma.estimate(&clock, 20e6);
        assert!((19e6..=20e6).contains(&idle), "idle estimate {idle}");
    }
}

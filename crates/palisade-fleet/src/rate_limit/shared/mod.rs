//! The fleet rate limit as a policy: [`SharedRateLimit`], what the sidecar uses.
//!
//! One limit (`per_second`, `burst`) shared by every instance of a service, global or per
//! key, decided in Redis while Redis answers and by a chosen fallback while it does not.
//! Its one call, [`SharedRateLimit::acquire`], always decides: a store failure is never
//! an error to the caller.
//!
//! - **Exact mode** ([`Mode::Exact`]): each request is one evaluation of the fleet GCRA
//!   script (`gcra.lua`, the [`FleetRateLimiter`]'s): at most `per_second × t + burst`
//!   over any interval `t`, fleet-wide.
//! - **Lease mode** ([`Mode::Lease`]): each instance takes `lease size` tokens ahead
//!   (`lease.lua`) and decides locally while it holds some, refreshing in the background
//!   when it holds under half; at most `per_second × t + burst + Σ lease sizes`.
//! - **While Redis fails** (any error with [`FleetError::is_store_failure`]), each
//!   request is decided by [`OnStoreDown`]: this instance's share of the limit
//!   (`local_share`, palisade's local limiter at `per_second / live`), `open` or
//!   `closed`. [`SharedRateLimit::counting`] says which decides now.
//! - **Coming back**: for one refill window (`τ + T`) after the first answer following a
//!   failure, keys missing in Redis start *spent* (their burst counted as used by the
//!   local shares), so the return adds no second burst.
//!
//! The bounds, as formulas, are in `docs/FLEET.md`.
//!
//! ```no_run
//! use palisade_fleet::{
//!     Admit, Membership, MembershipConfig, OnStoreDown, RedisStore, SharedRateLimitBuilder,
//!     SharedRateLimitConfig, StoreConfig,
//! };
//!
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let store = RedisStore::start(&StoreConfig::new("redis://127.0.0.1:6379"))?;
//! let membership = Membership::start(store.clone(), "checkout", &MembershipConfig::default())?;
//! let config = SharedRateLimitConfig {
//!     on_store_down: OnStoreDown::LocalShare,
//!     ..SharedRateLimitConfig::new("checkout", 200.0, 20)
//! };
//! let limit = SharedRateLimitBuilder::from_config(config)
//!     .store(store)
//!     .membership(membership)
//!     .build()?;
//! match limit.acquire(Some("client-42")).await {
//!     Admit::Admitted { .. } => { /* serve it */ }
//!     Admit::Refused { retry_after, counting } => {
//!         // 429 with Retry-After; `counting` says who refused (shared, local_share, closed).
//!         let _ = (retry_after, counting);
//!     }
//! }
//! # Ok(()) }
//! ```

mod admit;
mod config;
mod lease;
mod local;
mod metrics;
#[cfg(test)]
mod tests;

pub use admit::{Admit, CLOSED_RETRY_AFTER, Counting};
pub use config::{Mode, OnStoreDown, SharedRateLimitBuilder, SharedRateLimitConfig};
pub use lease::MAX_LEASED_KEYS;
pub use local::LOCAL_MAX_KEYS;
pub use metrics::{FLEET_COUNTING, FLEET_LIVE_INSTANCES};

use std::borrow::Cow;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use palisade::ConfigError;
use palisade::clock::{Clock, Nanos};

use self::lease::{Lease, LeaseMap, lease_size};
use self::local::LocalShare;
use self::metrics::Metrics;
use super::{
    Check, Decision, FleetLimit, FleetRateLimitConfig, FleetRateLimiter, FleetRateLimiterBuilder,
    MAX_KEY_BYTES,
};
use crate::error::FleetError;
use crate::membership::Membership;
use crate::store::RedisStore;

/// The fleet rate limit policy; see the [module docs](self). Cheap to clone; clones share
/// every state (the store, the local shares, the leases, the metrics).
#[derive(Clone)]
pub struct SharedRateLimit {
    inner: Arc<Inner>,
}

struct Inner {
    config: SharedRateLimitConfig,
    /// The limit in the scripts' units (`T`, `τ` in µs).
    limit: FleetLimit,
    /// The scripts and the store.
    fleet: FleetRateLimiter,
    membership: Membership,
    clock: Clock,
    /// The global limit's Redis key, made once.
    global_key: [String; 1],
    /// What decides while the store fails.
    fallback: Counting,
    local: LocalShare,
    /// The last decision met a store failure (and none has answered since).
    failing: AtomicBool,
    /// Until then (clock nanoseconds; 0: none) missing keys start spent.
    return_until: AtomicU64,
    /// `τ + T`, nanoseconds: how long `return_until` lasts after an outage.
    return_window: Nanos,
    /// Lease mode, `acquire(None)`.
    global_lease: Arc<Lease>,
    /// Lease mode, `acquire(Some(key))`.
    leases: Mutex<LeaseMap>,
    metrics: Metrics,
}

// === impl SharedRateLimit ===

impl SharedRateLimit {
    /// A builder; see [`SharedRateLimitConfig`] for the defaults.
    pub fn builder() -> SharedRateLimitBuilder {
        SharedRateLimitBuilder::default()
    }

    pub(super) fn from_parts(
        config: SharedRateLimitConfig,
        limit: FleetLimit,
        store: RedisStore,
        membership: Membership,
        clock: Clock,
    ) -> Result<Self, ConfigError> {
        let fleet = FleetRateLimiterBuilder::from_config(FleetRateLimitConfig {
            name: config.name.clone(),
            scope: config.scope.clone(),
        })
        .store(store)
        .build()?;
        let live = membership.live_instances();
        let local = LocalShare::new(&config.name, limit.quota(), live, &clock)?;
        let metrics = Metrics::new(&config.name);
        metrics.live(live);
        let return_window = limit
            .tolerance_micros()
            .saturating_add(limit.interval_micros())
            .saturating_mul(1_000);
        Ok(Self {
            inner: Arc::new(Inner {
                global_key: [fleet.key_of(&Check::global(&limit))],
                fallback: config.on_store_down.into(),
                config,
                limit,
                fleet,
                membership,
                clock,
                local,
                failing: AtomicBool::new(false),
                return_until: AtomicU64::new(0),
                return_window,
                global_lease: Arc::new(Lease::new()),
                leases: Mutex::new(LeaseMap::default()),
                metrics,
            }),
        })
    }

    /// Decides one request: global (`key` `None`) or for `key` (a client, a tenant; any
    /// string, a key over 256 bytes is hashed). Never an error: while Redis fails, the
    /// configured [`OnStoreDown`] decides. Counted in
    /// `palisade_rate_limit_decisions_total{policy, decision, counting}`.
    pub async fn acquire(&self, key: Option<&str>) -> Admit {
        let inner = &*self.inner;
        inner.follow_membership();
        let key = key.map(key_part);
        let key = key.as_deref();
        let admit = match self.decide_here(key) {
            Some(admit) => admit,
            // Boxed: the path to Redis is a large future, and a decision from a held
            // lease should not carry (and move) it.
            None => Box::pin(self.decide_remotely(key)).await,
        };
        inner
            .metrics
            .decision(admit.is_admitted(), admit.counting());
        admit
    }

    /// Lease mode, without waiting: a held token admits; a starved lease refuses until
    /// its next fetch may go. `None`: Redis must be asked (or exact mode).
    #[inline]
    fn decide_here(&self, key: Option<&str>) -> Option<Admit> {
        let inner = &*self.inner;
        if inner.config.mode != Mode::Lease {
            return None;
        }
        let now = inner.clock.now();
        match key {
            None => self.lease_here(&inner.global_lease, None, now),
            Some(k) => {
                let lease = inner.keyed_lease(k, now)?;
                self.lease_here(&lease, key, now)
            }
        }
    }

    async fn decide_remotely(&self, key: Option<&str>) -> Admit {
        match self.inner.config.mode {
            Mode::Exact => self.inner.exact(key).await,
            Mode::Lease => self.lease(key).await,
        }
    }

    /// What a request now would be decided by: [`Counting::Shared`] while the store
    /// answers, the [`OnStoreDown`]'s counting while it fails (from the last decision's
    /// result, or lease fetch's).
    pub fn counting(&self) -> Counting {
        self.inner.counting()
    }

    /// The fleet's live instances as the [`Membership`] last counted them.
    pub fn live_instances(&self) -> u32 {
        self.inner.membership.live_instances()
    }

    /// The config it was built from.
    pub fn config(&self) -> &SharedRateLimitConfig {
        &self.inner.config
    }

    /// Lease mode: the tokens one instance leases now,
    /// `max(1, ⌊lease_fraction × per_second / live⌋)`, at most `burst`.
    pub fn lease_size(&self) -> u64 {
        self.inner.lease_size()
    }

    /// Lease mode: the keys holding a lease on this instance (at most
    /// [`MAX_LEASED_KEYS`]).
    pub fn leased_keys(&self) -> usize {
        self.inner
            .leases
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }

    /// Lease mode: decides from the lease of `key`, fetching when it holds no token.
    async fn lease(&self, key: Option<&str>) -> Admit {
        let inner = &*self.inner;
        let now = inner.clock.now();
        match key {
            None => self.decide_by_lease(&inner.global_lease, None, now).await,
            Some(k) => match inner.keyed_lease(k, now) {
                Some(lease) => self.decide_by_lease(&lease, key, now).await,
                // No room for another leased key: this one is decided exactly.
                None => inner.exact(key).await,
            },
        }
    }

    /// A held token, or a refusal while the lease is starved; `None` to fetch.
    #[inline]
    fn lease_here(&self, lease: &Arc<Lease>, key: Option<&str>, now: Nanos) -> Option<Admit> {
        if let Some(left) = lease.take(now) {
            self.refresh_if_low(lease, key, left, now);
            return Some(Admit::Admitted {
                counting: Counting::Shared,
            });
        }
        if self.inner.is_failing() {
            return None;
        }
        // The server cannot grant half a lease before then: refused here, no round trip.
        lease.fetch_in(now).map(|retry_after| Admit::Refused {
            retry_after,
            counting: Counting::Shared,
        })
    }

    async fn decide_by_lease(&self, lease: &Arc<Lease>, key: Option<&str>, now: Nanos) -> Admit {
        let inner = &*self.inner;
        if let Some(admit) = self.lease_here(lease, key, now) {
            return admit;
        }
        // No token: wait for the fetch in flight, or fetch, then decide.
        let seen = lease.generation();
        let fetching = lease.refresh.lock().await;
        if lease.generation() != seen {
            drop(fetching);
            return self.after_fetch(lease, key);
        }
        let fetched = inner.fetch(lease, key).await;
        drop(fetching);
        match fetched {
            Ok(()) => self.after_fetch(lease, key),
            Err(e) => inner.fallback(key, Some(&e)),
        }
    }

    /// Decides after a fetch finished: a token, or the server's wait, or (the fetch
    /// failed) the fallback.
    fn after_fetch(&self, lease: &Arc<Lease>, key: Option<&str>) -> Admit {
        let inner = &*self.inner;
        let now = inner.clock.now();
        if let Some(left) = lease.take(now) {
            self.refresh_if_low(lease, key, left, now);
            return Admit::Admitted {
                counting: Counting::Shared,
            };
        }
        if inner.is_failing() {
            return inner.fallback(key, None);
        }
        let interval = Duration::from_micros(inner.limit.interval_micros());
        Admit::Refused {
            retry_after: lease.fetch_in(now).unwrap_or(interval),
            counting: Counting::Shared,
        }
    }

    /// Starts a background fetch when the lease holds under half its size, none is in
    /// flight, the server could grant some by now (and a tokio runtime is there to run
    /// it).
    #[inline]
    fn refresh_if_low(&self, lease: &Arc<Lease>, key: Option<&str>, left: u64, now: Nanos) {
        if left.saturating_mul(2) >= self.inner.lease_size() {
            return;
        }
        self.refresh(lease, key, now);
    }

    #[cold]
    fn refresh(&self, lease: &Arc<Lease>, key: Option<&str>, now: Nanos) {
        // Cheap probes first: every decision under half a lease comes here while the
        // fetch is in flight.
        if lease.fetch_in(now).is_some() || lease.refresh.try_lock().is_err() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let Ok(fetching) = lease.refresh.clone().try_lock_owned() else {
            return;
        };
        let (this, lease, key) = (self.clone(), lease.clone(), key.map(str::to_owned));
        runtime.spawn(async move {
            let _ = this.inner.fetch(&lease, key.as_deref()).await;
            drop(fetching);
        });
    }
}

impl fmt::Debug for SharedRateLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedRateLimit")
            .field("name", &self.inner.config.name)
            .field("mode", &self.inner.config.mode)
            .field("counting", &self.counting())
            .field("live_instances", &self.live_instances())
            .finish_non_exhaustive()
    }
}

// === impl Inner ===

impl Inner {
    /// Re-cuts the local shares when the live count changed.
    #[inline]
    fn follow_membership(&self) {
        let live = self.membership.live_instances();
        if self.local.follow(live) {
            self.metrics.live(live);
        }
    }

    fn lease_size(&self) -> u64 {
        lease_size(
            self.config.lease_fraction,
            self.config.per_second,
            self.config.burst,
            self.membership.live_instances(),
        )
    }

    #[inline]
    fn is_failing(&self) -> bool {
        self.failing.load(Ordering::Relaxed)
    }

    fn counting(&self) -> Counting {
        if self.is_failing() {
            self.fallback
        } else {
            Counting::Shared
        }
    }

    /// The lease of `key`, made if there is room (`None`: decide it exactly).
    fn keyed_lease(&self, key: &str, now: Nanos) -> Option<Arc<Lease>> {
        self.leases
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert(key, now)
    }

    /// The Redis key of `key`'s limit.
    fn keyed_key(&self, key: &str) -> [String; 1] {
        [self.fleet.key_of(&Check::keyed(&self.limit, key))]
    }

    /// Exact mode: one script call.
    async fn exact(&self, key: Option<&str>) -> Admit {
        let args = [
            self.limit.interval_micros(),
            self.limit.tolerance_micros(),
            u64::from(self.spent_now()),
        ];
        let answer = match key {
            None => self.fleet.decide(&self.global_key, &args).await,
            Some(key) => self.fleet.decide(&self.keyed_key(key), &args).await,
        };
        match answer {
            Ok(Decision::Admitted) => {
                self.store_answered();
                Admit::Admitted {
                    counting: Counting::Shared,
                }
            }
            Ok(Decision::Refused { retry_after, .. }) => {
                self.store_answered();
                Admit::Refused {
                    retry_after,
                    counting: Counting::Shared,
                }
            }
            Err(e) => self.fallback(key, Some(&e)),
        }
    }

    /// Lease mode: asks Redis for `size − held` tokens and adds them to `lease`. The
    /// caller holds the lease's `refresh` lock.
    async fn fetch(&self, lease: &Lease, key: Option<&str>) -> Result<(), FleetError> {
        let size = self.lease_size();
        let want = size.saturating_sub(lease.held(self.clock.now()));
        if want == 0 {
            lease.finished();
            return Ok(());
        }
        let spent = self.spent_now();
        let answer = match key {
            None => {
                self.fleet
                    .lease(&self.global_key, &self.limit, want, spent)
                    .await
            }
            Some(key) => {
                self.fleet
                    .lease(&self.keyed_key(key), &self.limit, want, spent)
                    .await
            }
        };
        match answer {
            Ok(grant) => {
                let interval = Duration::from_micros(self.limit.interval_micros());
                let half = size.div_ceil(2);
                lease.grant(
                    grant,
                    self.clock.now(),
                    self.config.lease_ttl,
                    half,
                    interval,
                );
                self.store_answered();
                Ok(())
            }
            Err(e) => {
                lease.finished();
                if e.is_store_failure() {
                    self.store_failed(&e);
                }
                Err(e)
            }
        }
    }

    /// Decides by [`OnStoreDown`]; `error` is the store's (none when a caller found the
    /// fetch it waited for had failed).
    fn fallback(&self, key: Option<&str>, error: Option<&FleetError>) -> Admit {
        if let Some(e) = error {
            if e.is_store_failure() {
                self.store_failed(e);
            } else {
                // Not the store's failure but this crate's own mistake (a check the
                // store refused to send): decided like an outage, and loud.
                tracing::error!(policy = %self.config.name, error = %e, "fleet rate limit: invalid call");
            }
        }
        match self.config.on_store_down {
            OnStoreDown::LocalShare => match self.local.check(key) {
                Ok(()) => Admit::Admitted {
                    counting: Counting::LocalShare,
                },
                Err(retry_after) => Admit::Refused {
                    retry_after,
                    counting: Counting::LocalShare,
                },
            },
            OnStoreDown::Open => Admit::Admitted {
                counting: Counting::Open,
            },
            OnStoreDown::Closed => Admit::Refused {
                retry_after: error.and_then(retry_after_of).unwrap_or(CLOSED_RETRY_AFTER),
                counting: Counting::Closed,
            },
        }
    }

    /// True when missing keys must start spent: while failing (the first answer is
    /// the return) and for the return window after.
    #[inline]
    fn spent_now(&self) -> bool {
        if self.is_failing() {
            return true;
        }
        let until = self.return_until.load(Ordering::Relaxed);
        if until == 0 {
            return false;
        }
        if self.clock.now() < until {
            return true;
        }
        let _ = self
            .return_until
            .compare_exchange(until, 0, Ordering::Relaxed, Ordering::Relaxed);
        false
    }

    #[inline]
    fn store_answered(&self) {
        if self.is_failing() {
            self.recovered();
        }
    }

    #[cold]
    fn recovered(&self) {
        if self.failing.swap(false, Ordering::AcqRel) {
            let until = self.clock.now().saturating_add(self.return_window);
            self.return_until.store(until, Ordering::Relaxed);
            self.metrics.counting_now(Counting::Shared);
            tracing::info!(
                policy = %self.config.name,
                "fleet rate limit: redis answers again; counting shared"
            );
        }
    }

    #[inline]
    fn store_failed(&self, error: &FleetError) {
        if !self.is_failing() {
            self.began_failing(error);
        }
    }

    #[cold]
    fn began_failing(&self, error: &FleetError) {
        if !self.failing.swap(true, Ordering::AcqRel) {
            self.metrics.counting_now(self.fallback);
            tracing::warn!(
                policy = %self.config.name,
                error = %error,
                counting = self.fallback.as_str(),
                "fleet rate limit: redis failing; deciding without it"
            );
        }
    }
}

/// The wait a store error carries, if any: the store's breaker says when it lets a call
/// probe Redis again.
fn retry_after_of(error: &FleetError) -> Option<Duration> {
    // Exhaustive on purpose: a new error variant must decide here whether it says when
    // to come back.
    match error {
        FleetError::CircuitOpen { retry_after } => Some(*retry_after),
        FleetError::Timeout { .. }
        | FleetError::Unavailable { .. }
        | FleetError::Malformed { .. }
        | FleetError::Config(_)
        | FleetError::InvalidCheck { .. } => None,
    }
}

/// A key as it goes into Redis: as given up to [`MAX_KEY_BYTES`], else `#` and 16 hex
/// digits of its 64-bit FNV-1a hash (stable across processes and builds, so every
/// instance names the same key alike; two long keys that collide share a limit).
fn key_part(key: &str) -> Cow<'_, str> {
    if key.len() <= MAX_KEY_BYTES {
        Cow::Borrowed(key)
    } else {
        Cow::Owned(format!("#{:016x}", fnv1a(key.as_bytes())))
    }
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, b| {
        (hash ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

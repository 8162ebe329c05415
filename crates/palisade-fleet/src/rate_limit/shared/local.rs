//! The local share: palisade's own rate limiters, holding this instance's share of the
//! fleet's limit, for while Redis is down.
//!
//! The share is `per_second / live` with a burst of `max(1, burst / live)` (whole
//! tokens, rounded down), `live` being the instances the [`Membership`] last counted;
//! over the fleet the shares add up to at most the limit. The limiters are built once
//! and follow the count: when it changes (rare) their quotas are replaced in place,
//! under a mutex, keeping what they have admitted; every decision reads one atomic to
//! see that it has not, and then decides lock-free (palisade's GCRA on one atomic word;
//! a keyed decision takes its shard's read lock in palisade's keyed limiter).
//!
//! [`Membership`]: crate::Membership

use std::hash::{BuildHasher, RandomState};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use palisade::ConfigError;
use palisade::clock::Clock;
use palisade::policy::rate_limit::{KeyedRateLimiter, Quota, RateLimiter};

/// The most keys the local share remembers at once (palisade's keyed limiter bounds its
/// memory by this; keys beyond share one overflow state there).
pub const LOCAL_MAX_KEYS: usize = 10_000;

/// The slowest rate a palisade quota takes: one call a year.
const SLOWEST_PER_SECOND: f64 = 1.0 / 31_536_000.0;

/// This instance's share of the limit, ready for when Redis fails.
pub(super) struct LocalShare {
    /// The fleet-wide quota the shares are cut from.
    fleet: Quota,
    /// The limit for `acquire(None)`.
    global: RateLimiter,
    /// The limits for `acquire(Some(key))`, by a hash of the key (no allocation per
    /// decision; two keys whose hashes collide share a limit: under-admission only).
    keyed: KeyedRateLimiter<u64>,
    hasher: RandomState,
    /// The live count the quotas are cut for.
    applied: AtomicU32,
    /// Held while the quotas are replaced.
    applying: Mutex<()>,
}

impl LocalShare {
    /// Both limiters, cut for `live` instances; named `<name>.local_share` in palisade's
    /// own metrics.
    pub(super) fn new(
        name: &str,
        fleet: Quota,
        live: u32,
        clock: &Clock,
    ) -> Result<Self, ConfigError> {
        let local = format!("{name}.local_share");
        let quota = share(fleet, live);
        let global = RateLimiter::builder()
            .name(local.as_str())
            .quota(quota)
            .clock(clock.clone())
            .build()?;
        let keyed = KeyedRateLimiter::builder()
            .name(local)
            .quota(quota)
            .max_keys(LOCAL_MAX_KEYS)
            .clock(clock.clone())
            .build()?;
        Ok(Self {
            fleet,
            global,
            keyed,
            hasher: RandomState::new(),
            applied: AtomicU32::new(live.max(1)),
            applying: Mutex::new(()),
        })
    }

    /// Cuts the shares for `live` instances if that is not the count they are cut for;
    /// true when it changed them.
    #[inline]
    pub(super) fn follow(&self, live: u32) -> bool {
        if self.applied.load(Ordering::Relaxed) == live.max(1) {
            return false;
        }
        self.apply(live.max(1))
    }

    #[cold]
    fn apply(&self, live: u32) -> bool {
        let _applying = self.applying.lock().unwrap_or_else(|e| e.into_inner());
        if self.applied.load(Ordering::Relaxed) == live {
            return false;
        }
        let quota = share(self.fleet, live);
        // A share is always a valid quota (`share` keeps it in range); should palisade
        // refuse it anyway, the old share stays, which is logged.
        if let Err(e) = self
            .global
            .set_quota(quota)
            .and_then(|()| self.keyed.set_default_quota(quota))
        {
            tracing::warn!(error = %e, live, "fleet rate limit: local share not re-cut");
        }
        self.applied.store(live, Ordering::Relaxed);
        true
    }

    /// Decides one request locally: admitted, or refused with the wait.
    #[inline]
    pub(super) fn check(&self, key: Option<&str>) -> Result<(), Duration> {
        match key {
            None => self.global.check(),
            Some(key) => self.keyed.check(&self.hasher.hash_one(key)),
        }
    }

    /// The share's quota now.
    #[cfg(test)]
    pub(super) fn quota(&self) -> Quota {
        self.global.quota()
    }
}

/// One instance's share of `fleet` among `live` instances: `per_second / live` (at
/// least one call a year), burst `max(1, ⌊burst / live⌋)`.
pub(super) fn share(fleet: Quota, live: u32) -> Quota {
    let live = live.max(1);
    Quota::new(
        (fleet.per_second / f64::from(live)).max(SLOWEST_PER_SECOND),
        (fleet.burst / live).max(1),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_share_is_the_limit_divided_by_the_live_instances() {
        let fleet = Quota::new(300.0, 30);
        assert_eq!(share(fleet, 1), Quota::new(300.0, 30));
        assert_eq!(share(fleet, 3), Quota::new(100.0, 10));
        assert_eq!(share(fleet, 4), Quota::new(75.0, 7)); // burst rounded down
        assert_eq!(share(fleet, 0), share(fleet, 1)); // never divided by zero
        assert_eq!(share(fleet, 100).burst, 1); // at least one
        let slow = share(Quota::new(1e-7, 1), 100_000);
        slow.validate().unwrap();
        for live in [1, 2, 3, 7, 1000, 100_000] {
            share(Quota::new(1e6, 1_000_000), live).validate().unwrap();
        }
    }

    #[test]
    fn the_shares_follow_the_count() {
        let (clock, _hand) = Clock::manual();
        let local = LocalShare::new("api", Quota::new(100.0, 10), 2, &clock).unwrap();
        assert_eq!(local.quota(), Quota::new(50.0, 5));
        assert!(!local.follow(2));
        assert!(local.follow(5));
        assert_eq!(local.quota(), Quota::new(20.0, 2));
        assert!(!local.follow(5));
        // Two of the burst at once, then refused until the next 50 ms.
        assert!(local.check(None).is_ok());
        assert!(local.check(None).is_ok());
        assert_eq!(local.check(None), Err(Duration::from_millis(50)));
        assert!(local.check(Some("alice")).is_ok());
        assert!(local.check(Some("alice")).is_ok());
        assert!(local.check(Some("alice")).is_err());
        assert!(local.check(Some("bob")).is_ok());
    }
}

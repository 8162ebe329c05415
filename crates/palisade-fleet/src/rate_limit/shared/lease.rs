//! Lease mode's local state: tokens taken ahead from Redis, spent without a round trip.
//!
//! A [`Lease`] is one limit's (or one key's) tokens on this instance: a count and the
//! time they expire, two atomics. Taking a token is a compare-and-swap on the count;
//! nothing on that path waits or locks. Tokens come from `lease.lua` (a batch of GCRA
//! admissions on the server's clock), one fetch at a time per lease (`refresh`, an
//! async mutex: the fetcher holds it, callers without a token wait for it).
//!
//! **Holdings never exceed the lease size.** A fetch asks for `size − held` tokens and is
//! the only one in flight, so what an instance holds of one limit is at most its lease
//! size: over the fleet, at most `Σ sizes` tokens are outstanding, the whole excess lease
//! mode can admit over the exact bound.
//!
//! **A starved lease waits for half a lease.** When a grant leaves the lease holding
//! under half its size (the fleet's bucket is empty: every instance wants more than the
//! rate), the instance fetches again only once the server could grant it the rest of
//! half a lease (`wait + (half − held − 1)·T`, from the server's answer), and refuses
//! locally until then. Without that, an overloaded fleet fetches as often as a token
//! refills, one token (or none) per round trip; with it, each fetch brings about half a
//! lease, and an instance that carries all the load alone still gets the whole rate.
//!
//! **Tokens expire** `lease_ttl` after the last grant received (each grant renews the
//! lease's tokens; a grant to an expired lease replaces them). An expired token is never
//! spent: tokens are lost (under-admission), never admitted late. Every race between a
//! grant and a take can only lose tokens, never make one.
//!
//! **Keyed leases** live in a [`LeaseMap`] of at most [`MAX_LEASED_KEYS`] keys behind one
//! mutex (held for a lookup or an insert, never across an await): simple, and cheap next
//! to the hash map work it guards. When it is full, leases that hold no live tokens and
//! no fetch in flight are evicted (at most once per [`SWEEP_EVERY`]); a key that still
//! finds no room is decided exactly, one script call.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use palisade::clock::{Nanos, duration_to_nanos};

use crate::rate_limit::script::Grant;

/// The most keys that hold a lease at once on one instance.
pub const MAX_LEASED_KEYS: usize = 1_024;

/// Least time between two evictions of a full [`LeaseMap`].
pub(super) const SWEEP_EVERY: Duration = Duration::from_millis(10);

/// Lease size per instance: `max(1, ⌊fraction × per_second / live⌋)`, and at most
/// `burst` (no grant is larger: a fresh limit's TAT has room for `burst` admissions).
pub(super) fn lease_size(fraction: f64, per_second: f64, burst: u32, live: u32) -> u64 {
    let share = fraction * per_second / f64::from(live.max(1));
    // A float to integer cast saturates (NaN to 0); the clamp makes it 1 at least.
    (share.floor() as u64).clamp(1, u64::from(burst.max(1)))
}

/// One lease's tokens on this instance; see the [module docs](self).
#[derive(Debug)]
pub(super) struct Lease {
    /// Tokens held (valid only before `expires_at`).
    tokens: AtomicU64,
    /// When the tokens expire, clock nanoseconds (0: never granted).
    expires_at: AtomicU64,
    /// No fetch before this (clock nanoseconds; 0: none): the server could not grant
    /// half a lease sooner.
    fetch_after: AtomicU64,
    /// Fetches completed (granted, empty or failed): a caller that waited for a fetch
    /// tells by it that one finished meanwhile.
    generation: AtomicU64,
    /// Held by the one fetch in flight.
    pub(super) refresh: Arc<tokio::sync::Mutex<()>>,
}

impl Lease {
    pub(super) fn new() -> Self {
        Self {
            tokens: AtomicU64::new(0),
            expires_at: AtomicU64::new(0),
            fetch_after: AtomicU64::new(0),
            generation: AtomicU64::new(0),
            refresh: Arc::new(tokio::sync::Mutex::new(())),
        }
    }

    /// Takes one token if one is held and unexpired; returns how many are left.
    #[inline]
    pub(super) fn take(&self, now: Nanos) -> Option<u64> {
        if now >= self.expires_at.load(Ordering::Acquire) {
            return None;
        }
        self.tokens
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |t| t.checked_sub(1))
            .ok()
            .map(|before| before - 1)
    }

    /// Tokens held and unexpired.
    pub(super) fn held(&self, now: Nanos) -> u64 {
        if now >= self.expires_at.load(Ordering::Acquire) {
            0
        } else {
            self.tokens.load(Ordering::Acquire)
        }
    }

    /// How long until the next fetch may go, from `now`; `None` when it may now.
    #[inline]
    pub(super) fn fetch_in(&self, now: Nanos) -> Option<Duration> {
        let until = self.fetch_after.load(Ordering::Acquire);
        (now < until).then(|| Duration::from_nanos(until - now))
    }

    /// The fetch count, to tell whether one finished.
    pub(super) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Adds a grant received at `now`; the tokens live until `now + ttl`. When the lease
    /// then holds under `half` tokens, the next fetch waits until the server could grant
    /// the rest of `half` (a token per `interval` after the grant's `wait`).
    pub(super) fn grant(
        &self,
        grant: Grant,
        now: Nanos,
        ttl: Duration,
        half: u64,
        interval: Duration,
    ) {
        if grant.tokens > 0 {
            if now >= self.expires_at.load(Ordering::Acquire) {
                // The old tokens expired: they are replaced, never revived.
                self.tokens.store(grant.tokens, Ordering::Release);
            } else {
                self.tokens.fetch_add(grant.tokens, Ordering::AcqRel);
            }
            self.expires_at.store(
                now.saturating_add(duration_to_nanos(ttl)),
                Ordering::Release,
            );
        }
        let held = self.held(now);
        let fetch_after = if held < half {
            let rest = half - held - 1;
            now.saturating_add(duration_to_nanos(grant.wait))
                .saturating_add(duration_to_nanos(interval).saturating_mul(rest))
        } else {
            0
        };
        self.fetch_after.store(fetch_after, Ordering::Release);
        self.finished();
    }

    /// Marks one fetch finished (also a failed one).
    pub(super) fn finished(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// True when dropping it loses nothing: no unexpired token held.
    fn is_idle(&self, now: Nanos) -> bool {
        self.held(now) == 0
    }
}

/// The keyed leases of one instance: at most [`MAX_LEASED_KEYS`].
#[derive(Debug, Default)]
pub(super) struct LeaseMap {
    leases: HashMap<String, Arc<Lease>>,
    /// No eviction before this (clock nanoseconds).
    sweep_after: Nanos,
}

impl LeaseMap {
    /// The lease of `key`, made if there is room; `None` when the map is full of live
    /// leases (the caller decides exactly).
    pub(super) fn get_or_insert(&mut self, key: &str, now: Nanos) -> Option<Arc<Lease>> {
        if let Some(lease) = self.leases.get(key) {
            return Some(lease.clone());
        }
        if self.leases.len() >= MAX_LEASED_KEYS {
            if now < self.sweep_after {
                return None;
            }
            self.sweep_after = now.saturating_add(duration_to_nanos(SWEEP_EVERY));
            // A lease in use by a caller or a fetch (another `Arc`) stays.
            self.leases
                .retain(|_, lease| Arc::strong_count(lease) > 1 || !lease.is_idle(now));
            if self.leases.len() >= MAX_LEASED_KEYS {
                return None;
            }
        }
        let lease = Arc::new(Lease::new());
        self.leases.insert(key.to_owned(), lease.clone());
        Some(lease)
    }

    /// Keys holding a lease now.
    pub(super) fn len(&self) -> usize {
        self.leases.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Nanos = 1_000_000;

    fn grant(tokens: u64, wait_ms: u64) -> Grant {
        Grant {
            tokens,
            wait: Duration::from_millis(wait_ms),
        }
    }

    const T: Duration = Duration::from_millis(10);

    #[test]
    fn the_lease_size_is_a_share_of_the_fraction_at_least_one_at_most_the_burst() {
        // 2% of 1000/s among 4 instances: 5 tokens each.
        assert_eq!(lease_size(0.02, 1000.0, 100, 4), 5);
        assert_eq!(lease_size(0.02, 1000.0, 100, 1), 20);
        // Rounded down, and never 0.
        assert_eq!(lease_size(0.02, 1000.0, 100, 3), 6);
        assert_eq!(lease_size(0.02, 200.0, 20, 4), 1);
        assert_eq!(lease_size(0.02, 10.0, 5, 50), 1);
        // At most the burst.
        assert_eq!(lease_size(1.0, 1000.0, 10, 1), 10);
        // A count of 0 is read as 1.
        assert_eq!(lease_size(0.5, 100.0, 100, 0), 50);
        // Σ sizes ≤ fraction × per_second whenever that is at least the live count.
        for live in 1..=40u32 {
            let sum = lease_size(0.02, 2000.0, 1000, live) * u64::from(live);
            assert!(sum <= 40, "{live}: {sum}");
        }
        // Extremes stay in range.
        assert_eq!(lease_size(1.0, 1e6, 1_000_000, 1), 1_000_000);
        assert_eq!(lease_size(1e-9, 1e-6, 1, 100_000), 1);
    }

    #[test]
    fn tokens_are_taken_until_none_is_left() {
        let lease = Lease::new();
        assert_eq!(lease.take(0), None); // never granted
        lease.grant(grant(3, 0), 0, Duration::from_secs(1), 1, T);
        assert_eq!(lease.held(0), 3);
        assert_eq!(lease.take(1), Some(2));
        assert_eq!(lease.take(2), Some(1));
        assert_eq!(lease.take(3), Some(0));
        assert_eq!(lease.take(4), None);
        assert_eq!(lease.generation(), 1);
    }

    #[test]
    fn tokens_expire_and_are_never_revived() {
        let lease = Lease::new();
        let ttl = Duration::from_millis(100);
        lease.grant(grant(5, 0), 0, ttl, 1, T);
        assert_eq!(lease.take(99 * MS), Some(4));
        assert_eq!(lease.take(100 * MS), None);
        assert_eq!(lease.held(100 * MS), 0);
        // A grant to an expired lease replaces its tokens: 2, not 4 + 2.
        lease.grant(grant(2, 0), 150 * MS, ttl, 1, T);
        assert_eq!(lease.held(150 * MS), 2);
        // A grant to a live lease adds and renews.
        lease.grant(grant(1, 0), 200 * MS, ttl, 1, T);
        assert_eq!(lease.held(299 * MS), 3);
        assert_eq!(lease.held(300 * MS), 0);
    }

    #[test]
    fn an_empty_grant_says_when_to_come_back() {
        let lease = Lease::new();
        // Nothing granted, the next token in 40 ms; a half lease of 1: fetch in 40 ms.
        lease.grant(grant(0, 40), 10 * MS, Duration::from_secs(1), 1, T);
        assert_eq!(lease.fetch_in(10 * MS), Some(Duration::from_millis(40)));
        assert_eq!(lease.fetch_in(30 * MS), Some(Duration::from_millis(20)));
        assert_eq!(lease.fetch_in(50 * MS), None);
        lease.grant(grant(1, 0), 60 * MS, Duration::from_secs(1), 1, T);
        assert_eq!(lease.fetch_in(60 * MS), None);
    }

    #[test]
    fn a_starved_lease_waits_for_half_a_lease() {
        let lease = Lease::new();
        // Half a lease is 5; 2 granted, the next token in 4 ms: 3 more are 4 + 2 × 10 ms
        // away.
        lease.grant(grant(2, 4), 0, Duration::from_secs(1), 5, T);
        assert_eq!(lease.fetch_in(0), Some(Duration::from_millis(24)));
        // Nothing granted: all 5 are 4 + 4 × 10 ms away.
        let lease = Lease::new();
        lease.grant(grant(0, 4), 0, Duration::from_secs(1), 5, T);
        assert_eq!(lease.fetch_in(0), Some(Duration::from_millis(44)));
        // Half a lease or more held: no wait.
        let lease = Lease::new();
        lease.grant(grant(5, 4), 0, Duration::from_secs(1), 5, T);
        assert_eq!(lease.fetch_in(0), None);
    }

    #[test]
    fn the_map_is_bounded_and_evicts_idle_leases_only() {
        let mut map = LeaseMap::default();
        let ttl = Duration::from_millis(100);
        for i in 0..MAX_LEASED_KEYS {
            let lease = map.get_or_insert(&format!("k{i}"), 0).unwrap();
            lease.grant(grant(1, 0), 0, ttl, 1, T);
        }
        assert_eq!(map.len(), MAX_LEASED_KEYS);
        // Full of live leases: a new key is decided exactly.
        assert!(map.get_or_insert("new", MS).is_none());
        // A known key still finds its lease.
        assert!(map.get_or_insert("k7", MS).is_some());
        // Once they expire, one sweep makes room.
        assert!(map.get_or_insert("new", 100 * MS).is_some());
        assert_eq!(map.len(), 1);
        // A lease held by a caller is not evicted, even idle.
        let mut map = LeaseMap::default();
        let held: Vec<_> = (0..MAX_LEASED_KEYS)
            .map(|i| map.get_or_insert(&format!("k{i}"), 0).unwrap())
            .collect();
        assert!(map.get_or_insert("new", 0).is_none());
        // Sweeps are rationed: not again before SWEEP_EVERY.
        drop(held);
        assert!(map.get_or_insert("new", MS).is_none());
        assert!(map.get_or_insert("new", 11 * MS).is_some());
    }
}

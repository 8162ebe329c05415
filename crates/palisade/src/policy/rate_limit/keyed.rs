//! One GCRA bucket per key, with overrides and a hard bound on remembered keys.
//!
//! Keys live in 16 shards, each a `RwLock<HashMap>`; a known key is checked under its
//! shard's read lock with the same compare-and-swap as the direct limiter (the hot path
//! touches no shared counter). A new key takes its shard's write lock once.
//!
//! **`max_keys` bounds the whole limiter.** One atomic count of remembered keys, shared by
//! all shards, is reserved before a key is inserted and released after one is removed: at
//! no moment are more than `max_keys` keys remembered, and below `max_keys` no key is
//! forgotten.
//!
//! **Forgetting a key never hands it a fresh burst.** Only *idle* keys are forgotten: a
//! key whose theoretical arrival time has passed (its bucket is full again) behaves
//! exactly like a key never seen, so dropping it changes no decision. When the limiter is
//! full, a new key sweeps every shard for idle keys. A sweep visits every key, so sweeps
//! are rationed: one runs only once some key can have gone idle (the earliest arrival time
//! the last sweep left, lowered by each insert), and at most once per `max_keys × 100 ns`
//! (10 ms at 100,000 keys), which keeps sweeping a small share of the work however fast
//! keys churn. Between two sweeps a full limiter treats new keys as below.
//!
//! **When every remembered key is still live**, no live key is dropped and the new key is
//! not given a state of its own (that would be a fresh burst for a key that may just have
//! been limited). Every key the limiter cannot remember is checked, with its own quota,
//! against one shared *overflow* state: together they get what one key gets, as requests
//! matching no descriptor share the default bucket of Envoy's local rate limit. So a new
//! client is not locked out because others fill the table (refusing unremembered keys
//! until a slot frees would refuse even a client's first call), the limiter admits at most
//! about one quota more than its remembered keys do, and memory stays bounded. A key
//! remembered later starts from the overflow state's arrival time, never fresher, so what
//! it was admitted through the overflow still counts: every key is admitted at most
//! `burst + rate × elapsed` in any interval, however keys come and go (the price: a key
//! first remembered just after the overflow was busy starts with less than its burst).
//! [`KeyedRateLimiter::overflowed`] counts the calls decided by the overflow state; a
//! steady count means `max_keys` is too small for the clients that are active at once.

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasher, Hash};
use std::sync::atomic::{self as std_atomic, AtomicUsize};
use std::sync::{Arc, Mutex, RwLock, TryLockError};
use std::time::Duration;

use super::gcra::{self, Cell, Decision};
use super::{CellSlot, DecisionCounters, Quota};
use crate::clock::{Clock, Nanos, duration_to_nanos};
use crate::config::{ConfigError, ONE_DAY, in_range};
use crate::events::{Emitter, Event, Listener};
use crate::sync::{AtomicU64, Ordering};
use crate::{Error, Name};

const SHARDS: usize = 16;
/// Sweeps (which visit every key, some nanoseconds each) are at least this many
/// nanoseconds per `max_keys` apart.
const SWEEP_NANOS_PER_KEY: u64 = 100;

type Hasher = foldhash::fast::RandomState;

/// Rate limits per key; clones share every bucket. See the [module docs](self).
///
/// ```
/// use palisade::policy::rate_limit::{KeyedRateLimiter, Quota};
/// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
/// let limiter = KeyedRateLimiter::<String>::builder()
///     .quota(Quota::new(1.0, 1))
///     .max_keys(10_000)
///     .build()
///     .unwrap();
/// limiter.set_quota_for("vip".to_string(), Quota::new(100.0, 10)).unwrap();
/// assert!(limiter.check(&"alice".to_string()).is_ok());
/// assert!(limiter.check(&"alice".to_string()).is_err());
/// assert!(limiter.check(&"vip".to_string()).is_ok());
/// assert!(limiter.check(&"vip".to_string()).is_ok());
/// # }
/// ```
pub struct KeyedRateLimiter<K> {
    shared: Arc<Shared<K>>,
}

struct Shared<K> {
    /// Labels errors, events and metrics.
    name: Name,
    /// The time source.
    clock: Clock,
    /// Picks a key's shard.
    hasher: Hasher,
    /// The default quota's cell, for keys without an override.
    default: CellSlot,
    /// The default quota as set.
    default_quota: Mutex<Quota>,
    /// Quotas of single keys, remembered or not; at most `max_keys`.
    overrides: RwLock<HashMap<K, Quota, Hasher>>,
    /// The remembered keys, by hash.
    shards: Box<[RwLock<HashMap<K, Entry, Hasher>>]>,
    /// Keys remembered, plus slots reserved by inserts under way; at most `max_keys`.
    len: AtomicUsize,
    /// The most keys remembered at once.
    max_keys: usize,
    /// Arrival time (ns) shared by every key that could not be remembered.
    overflow: AtomicU64,
    /// No remembered key goes idle before this (ns): a lower bound, lowered on insert.
    idle_at: std_atomic::AtomicU64,
    /// No sweep starts before this (ns).
    sweep_after: std_atomic::AtomicU64,
    /// Least time between two sweeps (ns).
    sweep_every: Nanos,
    /// Held by the one thread sweeping.
    sweeping: Mutex<()>,
    /// Longest wait for a slot (ns).
    max_wait: Nanos,
    /// Calls decided against the overflow state.
    overflowed: std_atomic::AtomicU64,
    /// Receives rejections.
    emitter: Emitter,
    /// Decision metrics.
    counters: DecisionCounters,
}

/// One remembered key's bucket.
struct Entry {
    /// Theoretical arrival time (ns); it only grows.
    tat: AtomicU64,
    /// The key's own quota, or `None` for the default.
    own: Option<CellSlot>,
}

/// Builds a [`KeyedRateLimiter`].
pub struct KeyedRateLimiterBuilder<K> {
    name: String,
    quota: Quota,
    max_keys: usize,
    max_wait: Duration,
    clock: Option<Clock>,
    listener: Option<Listener>,
    _key: std::marker::PhantomData<fn(K)>,
}

impl<K> Default for KeyedRateLimiterBuilder<K> {
    fn default() -> Self {
        Self {
            name: crate::config::DEFAULT_NAME.to_owned(),
            quota: Quota::default(),
            max_keys: 100_000,
            max_wait: Duration::ZERO,
            clock: None,
            listener: None,
            _key: std::marker::PhantomData,
        }
    }
}

impl<K> KeyedRateLimiterBuilder<K>
where
    K: Hash + Eq + Clone,
{
    /// Sets the name.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Sets the default quota for every key.
    pub fn quota(mut self, quota: Quota) -> Self {
        self.quota = quota;
        self
    }

    /// Sets the most keys remembered at once, over all shards (default 100,000; 1 to
    /// 10,000,000).
    pub fn max_keys(mut self, max_keys: usize) -> Self {
        self.max_keys = max_keys;
        self
    }

    /// Lets calls wait up to `max_wait` for their turn.
    pub fn max_wait(mut self, max_wait: Duration) -> Self {
        self.max_wait = max_wait;
        self
    }

    /// Uses `clock` instead of tokio's.
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Receives an [`Event::RateLimited`] on every rejection.
    pub fn on_event(mut self, listener: impl Fn(&Event) + Send + Sync + 'static) -> Self {
        self.listener = Some(Arc::new(listener));
        self
    }

    /// Validates and builds.
    pub fn build(self) -> Result<KeyedRateLimiter<K>, ConfigError> {
        self.quota.validate()?;
        in_range("max_keys", self.max_keys, 1, 10_000_000)?;
        if self.max_wait > ONE_DAY {
            return Err(ConfigError::new(
                "max_wait",
                format!("{:?} is out of range", self.max_wait),
                "0 to 1 day",
            ));
        }
        let name: Name = self.name.as_str().into();
        let hasher = Hasher::default();
        Ok(KeyedRateLimiter {
            shared: Arc::new(Shared {
                counters: DecisionCounters::new(&name),
                name,
                clock: self.clock.unwrap_or_default(),
                default: CellSlot::new(self.quota.cell()),
                default_quota: Mutex::new(self.quota),
                overrides: RwLock::new(HashMap::with_hasher(hasher.clone())),
                shards: (0..SHARDS)
                    .map(|_| RwLock::new(HashMap::with_hasher(hasher.clone())))
                    .collect(),
                hasher,
                len: AtomicUsize::new(0),
                max_keys: self.max_keys,
                overflow: AtomicU64::new(0),
                idle_at: std_atomic::AtomicU64::new(Nanos::MAX),
                sweep_after: std_atomic::AtomicU64::new(0),
                sweep_every: (self.max_keys as u64).saturating_mul(SWEEP_NANOS_PER_KEY),
                sweeping: Mutex::new(()),
                max_wait: duration_to_nanos(self.max_wait),
                overflowed: std_atomic::AtomicU64::new(0),
                emitter: Emitter::new(self.listener),
            }),
        })
    }
}

// === impl KeyedRateLimiter ===

impl<K> Clone for KeyedRateLimiter<K> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl<K> KeyedRateLimiter<K>
where
    K: Hash + Eq + Clone,
{
    /// A builder: default quota 1000/s burst 100, at most 100,000 keys.
    pub fn builder() -> KeyedRateLimiterBuilder<K> {
        KeyedRateLimiterBuilder::default()
    }

    /// Admits one call for `key` now, or says after how long it would be.
    #[inline]
    pub fn check(&self, key: &K) -> Result<(), Duration> {
        match self.decide(key, 0) {
            Decision::Allowed | Decision::AllowedAfter(_) => Ok(()),
            Decision::Limited(after) => Err(after),
        }
    }

    /// Admits one call for `key`, sleeping up to the configured `max_wait`.
    pub async fn acquire<E>(&self, key: &K) -> Result<(), Error<E>> {
        match self.decide(key, self.shared.max_wait) {
            Decision::Allowed => Ok(()),
            Decision::AllowedAfter(wait) => {
                tokio::time::sleep(wait).await;
                Ok(())
            }
            Decision::Limited(after) => Err(Error::RateLimited {
                name: self.shared.name.clone(),
                retry_after: after,
            }),
        }
    }

    /// Runs `operation` if `key` is within its limit.
    pub async fn call<T, E, F, Fut>(&self, key: &K, operation: F) -> Result<T, Error<E>>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<T, E>>,
    {
        self.acquire(key).await?;
        operation().await.map_err(Error::Inner)
    }

    /// Sets a quota for `key` alone, now and for when it is next seen.
    pub fn set_quota_for(&self, key: K, quota: Quota) -> Result<(), ConfigError> {
        quota.validate()?;
        {
            let mut overrides = self
                .shared
                .overrides
                .write()
                .unwrap_or_else(|e| e.into_inner());
            if !overrides.contains_key(&key) && overrides.len() >= self.shared.max_keys {
                return Err(ConfigError::new(
                    "overrides",
                    format!("already {} overrides", overrides.len()),
                    format!("at most max_keys ({})", self.shared.max_keys),
                ));
            }
            overrides.insert(key.clone(), quota);
        }
        let shard = self.shard(&key);
        let mut map = shard.write().unwrap_or_else(|e| e.into_inner());
        if let Some(entry) = map.get_mut(&key) {
            match &entry.own {
                Some(slot) => slot.store(quota.cell()),
                None => entry.own = Some(CellSlot::new(quota.cell())),
            }
        }
        Ok(())
    }

    /// Removes `key`'s own quota; it follows the default again.
    pub fn clear_quota_for(&self, key: &K) {
        self.shared
            .overrides
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
        if let Some(entry) = self
            .shard(key)
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .get_mut(key)
        {
            entry.own = None;
        }
    }

    /// Replaces the default quota for every key without an override.
    pub fn set_default_quota(&self, quota: Quota) -> Result<(), ConfigError> {
        quota.validate()?;
        self.shared.default.store(quota.cell());
        *self
            .shared
            .default_quota
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = quota;
        Ok(())
    }

    /// The default quota.
    pub fn default_quota(&self) -> Quota {
        *self
            .shared
            .default_quota
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Keys remembered now (never more than `max_keys`).
    pub fn len(&self) -> usize {
        self.shared
            .shards
            .iter()
            .map(|s| s.read().unwrap_or_else(|e| e.into_inner()).len())
            .sum()
    }

    /// True if no key is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Calls decided against the shared overflow state, because `max_keys` keys were
    /// remembered and none was idle (see the [module docs](self)).
    pub fn overflowed(&self) -> u64 {
        self.shared.overflowed.load(std_atomic::Ordering::Relaxed)
    }

    /// Drops every key whose bucket has refilled (they carry no state).
    pub fn forget_idle(&self) {
        let _sweeping = self
            .shared
            .sweeping
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        self.sweep(self.shared.clock.now());
    }

    fn shard(&self, key: &K) -> &RwLock<HashMap<K, Entry, Hasher>> {
        let hash = self.shared.hasher.hash_one(key) as usize;
        &self.shared.shards[hash % SHARDS]
    }

    fn decide(&self, key: &K, max_wait: Nanos) -> Decision {
        let now = self.shared.clock.now();
        let shard = self.shard(key);
        let decision = {
            let map = shard.read().unwrap_or_else(|e| e.into_inner());
            map.get(key)
                .map(|entry| self.check_entry(entry, now, max_wait))
        };
        let decision = match decision {
            Some(decision) => decision,
            None => self.remember_and_check(shard, key, now, max_wait),
        };
        match decision {
            Decision::Allowed => self.shared.counters.allowed.increment(1),
            Decision::AllowedAfter(_) => self.shared.counters.waited.increment(1),
            Decision::Limited(after) => {
                self.shared.counters.limited.increment(1);
                if self.shared.emitter.is_listening() {
                    self.shared.emitter.emit(Event::RateLimited {
                        name: self.shared.name.clone(),
                        retry_after: after,
                    });
                }
            }
        }
        decision
    }

    #[inline]
    fn check_entry(&self, entry: &Entry, now: Nanos, max_wait: Nanos) -> Decision {
        let cell: Cell = match &entry.own {
            Some(own) => own.load(),
            None => self.shared.default.load(),
        };
        self.check_tat(&entry.tat, cell, now, max_wait)
    }

    #[inline]
    fn check_tat(&self, tat: &AtomicU64, cell: Cell, now: Nanos, max_wait: Nanos) -> Decision {
        match gcra::check(tat, cell, now, max_wait) {
            // A stale "now" (the thread was preempted) must not refuse the call: look again.
            Decision::Limited(_) => gcra::check(tat, cell, self.shared.clock.now(), max_wait),
            admitted => admitted,
        }
    }

    /// Remembers `key` if there is room (or room can be made by forgetting idle keys) and
    /// checks it; otherwise checks it against the overflow state.
    #[cold]
    fn remember_and_check(
        &self,
        shard: &RwLock<HashMap<K, Entry, Hasher>>,
        key: &K,
        now: Nanos,
        max_wait: Nanos,
    ) -> Decision {
        let shared = &self.shared;
        let own = shared
            .overrides
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            .map(Quota::cell);
        if !(self.reserve() || (self.make_room(now) && self.reserve())) {
            return self.check_overflow(shard, key, own, now, max_wait);
        }
        let mut map = shard.write().unwrap_or_else(|e| e.into_inner());
        if let Some(entry) = map.get(key) {
            // Another thread remembered it meanwhile.
            self.release(1);
            return self.check_entry(entry, now, max_wait);
        }
        // What the key was admitted through the overflow state (read under this shard's
        // write lock, so none of it is missed) still counts: start from that state.
        let entry = Entry {
            tat: AtomicU64::new(shared.overflow.load(Ordering::Acquire)),
            own: own.map(CellSlot::new),
        };
        let decision = self.check_entry(&entry, now, max_wait);
        // Under the shard's lock, so a sweep under way either sees the key or this bound.
        shared.idle_at.fetch_min(
            entry.tat.load(Ordering::Relaxed),
            std_atomic::Ordering::AcqRel,
        );
        map.insert(key.clone(), entry);
        decision
    }

    /// Checks a key that could not be remembered against the shared overflow state.
    #[cold]
    fn check_overflow(
        &self,
        shard: &RwLock<HashMap<K, Entry, Hasher>>,
        key: &K,
        own: Option<Cell>,
        now: Nanos,
        max_wait: Nanos,
    ) -> Decision {
        // The read lock orders this check with the key's insertion, which reads the
        // overflow state under the write lock.
        let map = shard.read().unwrap_or_else(|e| e.into_inner());
        if let Some(entry) = map.get(key) {
            return self.check_entry(entry, now, max_wait);
        }
        self.shared
            .overflowed
            .fetch_add(1, std_atomic::Ordering::Relaxed);
        let cell = own.unwrap_or_else(|| self.shared.default.load());
        self.check_tat(&self.shared.overflow, cell, now, max_wait)
    }

    /// Takes one of the `max_keys` slots, if one is free.
    fn reserve(&self) -> bool {
        let max = self.shared.max_keys;
        self.shared
            .len
            .fetch_update(
                std_atomic::Ordering::AcqRel,
                std_atomic::Ordering::Acquire,
                |n| (n < max).then_some(n + 1),
            )
            .is_ok()
    }

    /// Gives back `n` slots, after their keys were removed.
    fn release(&self, n: usize) {
        if n > 0 {
            self.shared.len.fetch_sub(n, std_atomic::Ordering::AcqRel);
        }
    }

    /// Sweeps if a key can have gone idle and no sweep ran too recently; true if that
    /// freed a slot.
    fn make_room(&self, now: Nanos) -> bool {
        let shared = &self.shared;
        let due = || {
            now >= shared.idle_at.load(std_atomic::Ordering::Acquire)
                && now >= shared.sweep_after.load(std_atomic::Ordering::Acquire)
        };
        if !due() {
            return false;
        }
        let _sweeping = match shared.sweeping.try_lock() {
            Ok(guard) => guard,
            Err(TryLockError::Poisoned(e)) => e.into_inner(),
            // Another thread is making room; this call is decided as if it found none.
            Err(TryLockError::WouldBlock) => return false,
        };
        // A sweep may have finished between the check and the lock.
        due() && self.sweep(now) > 0
    }

    /// Drops every idle key and schedules the next sweep; the caller holds `sweeping`.
    /// Returns how many keys were dropped.
    fn sweep(&self, now: Nanos) -> usize {
        let shared = &self.shared;
        // Inserts from here on lower the bound themselves; keys already in a shard are
        // seen below.
        shared
            .idle_at
            .store(Nanos::MAX, std_atomic::Ordering::Release);
        let mut removed = 0;
        let mut earliest = Nanos::MAX;
        for shard in shared.shards.iter() {
            let mut map = shard.write().unwrap_or_else(|e| e.into_inner());
            let before = map.len();
            // Under the write lock no check is under way: each TAT read here is final.
            map.retain(|_, entry| {
                let tat = entry.tat.load(Ordering::Acquire);
                let live = !gcra::is_idle(tat, now);
                if live {
                    earliest = earliest.min(tat);
                }
                live
            });
            removed += before - map.len();
            // A shard that once held far more than its share gives the memory back.
            let share = shared.max_keys.div_ceil(SHARDS).max(map.len());
            if map.capacity() > 2 * share {
                map.shrink_to(share);
            }
        }
        self.release(removed);
        shared
            .idle_at
            .fetch_min(earliest, std_atomic::Ordering::AcqRel);
        shared.sweep_after.store(
            now.saturating_add(shared.sweep_every),
            std_atomic::Ordering::Release,
        );
        removed
    }
}

impl<K> fmt::Debug for KeyedRateLimiter<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedRateLimiter")
            .field("name", &self.shared.name)
            .field("max_keys", &self.shared.max_keys)
            .finish()
    }
}

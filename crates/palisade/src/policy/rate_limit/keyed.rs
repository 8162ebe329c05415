//! One GCRA bucket per key, with overrides and a hard bound on remembered keys.
//!
//! Keys live in 16 shards, each a `RwLock<HashMap>`; a known key is checked under its
//! shard's read lock with the same compare-and-swap as the direct limiter. A new key takes
//! the write lock once. Each shard holds at most `max_keys / 16` keys (rounded up): when
//! it is full, keys whose bucket has refilled — which behave exactly like unknown keys —
//! are dropped; if none has, the key closest to refilled among a sample of 32 is dropped.
//! Memory is therefore bounded however many distinct keys arrive.

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasher, Hash};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use super::gcra::{self, Cell, Decision};
use super::{CellSlot, DecisionCounters, Quota};
use crate::clock::{Clock, Nanos, duration_to_nanos};
use crate::config::{ConfigError, ONE_DAY, in_range};
use crate::events::{Emitter, Event, Listener};
use crate::sync::{AtomicU64, Ordering};
use crate::{Error, Name};

const SHARDS: usize = 16;
const EVICTION_SAMPLE: usize = 32;

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
    name: Name,
    clock: Clock,
    hasher: Hasher,
    default: CellSlot,
    default_quota: std::sync::Mutex<Quota>,
    overrides: RwLock<HashMap<K, Quota, Hasher>>,
    shards: Box<[RwLock<HashMap<K, Entry, Hasher>>]>,
    per_shard: usize,
    max_keys: usize,
    max_wait: Nanos,
    evicted: std::sync::atomic::AtomicU64,
    emitter: Emitter,
    counters: DecisionCounters,
}

/// One key's bucket; an `interval` of 0 means "use the default quota".
struct Entry {
    tat: AtomicU64,
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

    /// Sets the most keys remembered at once (default 100,000; 16 to 10,000,000).
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
        in_range("max_keys", self.max_keys, SHARDS, 10_000_000)?;
        if self.max_wait > ONE_DAY {
            return Err(ConfigError::new(
                "max_wait",
                format!("{:?} is out of range", self.max_wait),
                "0 to 1 day",
            ));
        }
        let name: Name = self.name.as_str().into();
        let per_shard = self.max_keys.div_ceil(SHARDS);
        let hasher = Hasher::default();
        Ok(KeyedRateLimiter {
            shared: Arc::new(Shared {
                counters: DecisionCounters::new(&name),
                name,
                clock: self.clock.unwrap_or_default(),
                default: CellSlot::new(self.quota.cell()),
                default_quota: std::sync::Mutex::new(self.quota),
                overrides: RwLock::new(HashMap::with_hasher(hasher.clone())),
                shards: (0..SHARDS)
                    .map(|_| RwLock::new(HashMap::with_hasher(hasher.clone())))
                    .collect(),
                hasher,
                per_shard,
                max_keys: self.max_keys,
                max_wait: duration_to_nanos(self.max_wait),
                evicted: std::sync::atomic::AtomicU64::new(0),
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

    /// Keys remembered now (never more than `max_keys` rounded up to a multiple of 16).
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

    /// Keys dropped to stay within `max_keys` while their bucket was not yet full.
    pub fn evictions(&self) -> u64 {
        self.shared
            .evicted
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Drops every key whose bucket has refilled (they carry no state).
    pub fn forget_idle(&self) {
        let now = self.shared.clock.now();
        for shard in self.shared.shards.iter() {
            shard
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .retain(|_, e| !gcra::is_idle(e.tat.load(Ordering::Relaxed), now));
        }
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
            None => self.insert_and_check(shard, key, now, max_wait),
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
        match gcra::check(&entry.tat, cell, now, max_wait) {
            // A stale "now" (the thread was preempted) must not refuse the call: look again.
            Decision::Limited(_) => {
                gcra::check(&entry.tat, cell, self.shared.clock.now(), max_wait)
            }
            admitted => admitted,
        }
    }

    #[cold]
    fn insert_and_check(
        &self,
        shard: &RwLock<HashMap<K, Entry, Hasher>>,
        key: &K,
        now: Nanos,
        max_wait: Nanos,
    ) -> Decision {
        let own = self
            .shared
            .overrides
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            .map(|q| CellSlot::new(q.cell()));
        let mut map = shard.write().unwrap_or_else(|e| e.into_inner());
        if !map.contains_key(key) {
            if map.len() >= self.shared.per_shard {
                self.make_room(&mut map, now);
            }
            map.insert(
                key.clone(),
                Entry {
                    tat: AtomicU64::new(0),
                    own,
                },
            );
        }
        match map.get(key) {
            Some(entry) => self.check_entry(entry, now, max_wait),
            None => Decision::Allowed,
        }
    }

    fn make_room(&self, map: &mut HashMap<K, Entry, Hasher>, now: Nanos) {
        map.retain(|_, e| !gcra::is_idle(e.tat.load(Ordering::Relaxed), now));
        if map.len() < self.shared.per_shard {
            return;
        }
        let victim = map
            .iter()
            .take(EVICTION_SAMPLE)
            .min_by_key(|(_, e)| e.tat.load(Ordering::Relaxed))
            .map(|(k, _)| k.clone());
        if let Some(key) = victim {
            map.remove(&key);
            self.shared
                .evicted
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
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

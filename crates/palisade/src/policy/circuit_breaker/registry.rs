//! Breakers per key (per endpoint, per tenant), with a bound on how many are kept.

use std::collections::HashMap;
use std::fmt::Display;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use super::{CircuitBreaker, CircuitBreakerBuilder, CircuitBreakerSnapshot, CircuitState};
use crate::config::{ConfigError, in_range};

type Map<K> = HashMap<K, CircuitBreaker, foldhash::fast::RandomState>;

/// One [`CircuitBreaker`] per key, all built from one template, at most `max_keys` kept.
///
/// When the registry is full, a new key evicts a *closed* breaker (which holds only
/// recent statistics) rather than an open one (which holds a verdict); only if every
/// breaker is open does an open one go. Evictions are counted.
///
/// ```
/// use palisade::policy::circuit_breaker::{CircuitBreaker, CircuitBreakerRegistry};
/// let registry = CircuitBreakerRegistry::new(CircuitBreaker::builder().name("upstream"), 1000).unwrap();
/// let a = registry.get(&"10.0.0.1:80");
/// assert_eq!(a.name().as_ref(), "upstream/10.0.0.1:80");
/// assert_eq!(registry.len(), 1);
/// ```
pub struct CircuitBreakerRegistry<K> {
    inner: Arc<Inner<K>>,
}

struct Inner<K> {
    template: CircuitBreakerBuilder,
    max_keys: usize,
    breakers: RwLock<Map<K>>,
    evicted: AtomicU64,
}

impl<K> Clone for CircuitBreakerRegistry<K> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<K> CircuitBreakerRegistry<K>
where
    K: Hash + Eq + Clone + Display,
{
    /// A registry building breakers from `template` (validated now), keeping at most
    /// `max_keys` (1 to 1,000,000).
    pub fn new(template: CircuitBreakerBuilder, max_keys: usize) -> Result<Self, ConfigError> {
        template.config.validate()?;
        in_range("max_keys", max_keys, 1, 1_000_000)?;
        Ok(Self {
            inner: Arc::new(Inner {
                template,
                max_keys,
                breakers: RwLock::new(Map::default()),
                evicted: AtomicU64::new(0),
            }),
        })
    }

    /// The breaker for `key`, created on first use.
    pub fn get(&self, key: &K) -> CircuitBreaker {
        if let Some(breaker) = self.read().get(key) {
            return breaker.clone();
        }
        let mut breakers = self
            .inner
            .breakers
            .write()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(breaker) = breakers.get(key) {
            return breaker.clone();
        }
        if breakers.len() >= self.inner.max_keys {
            self.evict_one(&mut breakers);
        }
        let breaker = self.build(key);
        breakers.insert(key.clone(), breaker.clone());
        breaker
    }

    /// The breaker for `key` if one exists.
    pub fn find(&self, key: &K) -> Option<CircuitBreaker> {
        self.read().get(key).cloned()
    }

    /// Forgets `key`'s breaker.
    pub fn remove(&self, key: &K) -> Option<CircuitBreaker> {
        self.inner
            .breakers
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key)
    }

    /// Breakers kept now.
    pub fn len(&self) -> usize {
        self.read().len()
    }

    /// True if no breaker is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Breakers evicted to stay within `max_keys`.
    pub fn evictions(&self) -> u64 {
        self.inner.evicted.load(Ordering::Relaxed)
    }

    /// Every breaker's snapshot.
    pub fn snapshot(&self) -> Vec<(K, CircuitBreakerSnapshot)> {
        self.read()
            .iter()
            .map(|(k, b)| (k.clone(), b.snapshot()))
            .collect()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Map<K>> {
        self.inner
            .breakers
            .read()
            .unwrap_or_else(|e| e.into_inner())
    }

    fn build(&self, key: &K) -> CircuitBreaker {
        let mut builder = self.inner.template.clone();
        builder.config.name = format!("{}/{key}", builder.config.name);
        CircuitBreaker::from_builder(builder)
    }

    fn evict_one(&self, breakers: &mut Map<K>) {
        let victim = breakers
            .iter()
            .find(|(_, b)| b.state() == CircuitState::Closed)
            .or_else(|| breakers.iter().next())
            .map(|(k, _)| k.clone());
        if let Some(key) = victim {
            breakers.remove(&key);
            self.inner.evicted.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl<K> std::fmt::Debug for CircuitBreakerRegistry<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CircuitBreakerRegistry")
            .field("max_keys", &self.inner.max_keys)
            .finish()
    }
}

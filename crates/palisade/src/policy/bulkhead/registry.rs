//! Bulkheads by name, with a snapshot of all of them.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use super::{Bulkhead, BulkheadConfig, BulkheadSnapshot};
use crate::config::{ConfigError, in_range};

/// A set of named bulkheads — one per dependency — and their snapshots in one call.
///
/// Holds at most `max_entries` bulkheads; registering past that is a [`ConfigError`].
///
/// ```
/// use palisade::policy::bulkhead::{BulkheadConfig, BulkheadRegistry};
/// let registry = BulkheadRegistry::new(16).unwrap();
/// registry.register(BulkheadConfig { name: "db".into(), ..Default::default() }).unwrap();
/// registry.register(BulkheadConfig { name: "search".into(), ..Default::default() }).unwrap();
/// let names: Vec<_> = registry.snapshot().into_iter().map(|s| s.name).collect();
/// assert_eq!(names, ["db", "search"]);
/// ```
#[derive(Clone, Debug)]
pub struct BulkheadRegistry {
    max_entries: usize,
    bulkheads: Arc<RwLock<BTreeMap<String, Bulkhead>>>,
}

impl BulkheadRegistry {
    /// An empty registry holding at most `max_entries` (1 to 100,000) bulkheads.
    pub fn new(max_entries: usize) -> Result<Self, ConfigError> {
        in_range("max_entries", max_entries, 1, 100_000)?;
        Ok(Self {
            max_entries,
            bulkheads: Arc::default(),
        })
    }

    /// Builds and registers a bulkhead; a name already taken returns the existing one.
    pub fn register(&self, config: BulkheadConfig) -> Result<Bulkhead, ConfigError> {
        let mut map = self.bulkheads.write().unwrap_or_else(|e| e.into_inner());
        if let Some(existing) = map.get(&config.name) {
            return Ok(existing.clone());
        }
        if map.len() >= self.max_entries {
            return Err(ConfigError::new(
                "name",
                format!("registry is full ({} bulkheads)", self.max_entries),
                "a registry with a larger max_entries",
            ));
        }
        let bulkhead = config.build()?;
        map.insert(config.name, bulkhead.clone());
        Ok(bulkhead)
    }

    /// The bulkhead called `name`.
    pub fn get(&self, name: &str) -> Option<Bulkhead> {
        self.bulkheads
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
    }

    /// Every bulkhead's counters, by name.
    pub fn snapshot(&self) -> Vec<BulkheadSnapshot> {
        self.bulkheads
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .map(Bulkhead::snapshot)
            .collect()
    }
}

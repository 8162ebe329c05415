//! Which instances of a fleet are alive, counted from heartbeats kept in Redis.
//!
//! A fleet limit's fallback needs one number when Redis fails: how many instances share
//! the limit, so that each enforces its share (`limit ÷ live instances`) and the fleet
//! as a whole stays near the limit. [`Membership`] keeps that number: every instance
//! beats into one sorted set per scope (`{palisade:<scope>}:members`, scored by the
//! *server's* time), members silent for longer than `expire_after` are dropped on every
//! beat, and the count is cached in an atomic that a request reads without waiting.
//!
//! When Redis cannot be reached the count keeps its last value: an outage of a stable
//! fleet keeps the shares right. An instance that stops cleanly leaves the set at once
//! (best effort, when its last handle drops inside a runtime); one that dies is dropped
//! by the others after `expire_after`.
//!
//! The set is bounded by the instances alive within `expire_after`, and expires when
//! none is.

mod config;

pub use config::MembershipConfig;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use palisade::ConfigError;
use redis::{Script, Value};

use crate::error::FleetError;
use crate::rate_limit::check_name;
use crate::store::RedisStore;

/// The heartbeat script: beat (or leave) and count the live members.
const SCRIPT: &str = include_str!("heartbeat.lua");

/// The most instances a count reports: a bound on what a share divides by.
pub const MAX_INSTANCES: u32 = 100_000;

/// The live instances of one scope; see the [module docs](self). Cheap to clone; clones
/// share the count and the heartbeat task, which stops when the last clone drops.
#[derive(Clone, Debug)]
pub struct Membership {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    id: u64,
    key: String,
    expire_after_ms: u64,
    live: AtomicU32,
    store: RedisStore,
    script: Script,
}

// === impl Membership ===

impl Membership {
    /// Joins `scope` (1 to 64 visible ASCII characters, no `{` or `}`) and beats every
    /// `config.interval` in the background until the last clone drops. The count is 1
    /// until the first beat answers. Needs a tokio runtime.
    ///
    /// # Errors
    /// A [`ConfigError`] for a bad scope or config.
    pub fn start(
        store: RedisStore,
        scope: &str,
        config: &MembershipConfig,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        check_name("scope", scope, &['{', '}'])?;
        let membership = Self {
            shared: Arc::new(Shared {
                id: instance_id(),
                key: format!("{{palisade:{scope}}}:members"),
                expire_after_ms: duration_ms(config.expire_after),
                live: AtomicU32::new(1),
                store,
                script: Script::new(SCRIPT),
            }),
        };
        let weak = Arc::downgrade(&membership.shared);
        let interval = config.interval;
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                let Some(shared) = weak.upgrade() else { return };
                if let Err(e) = shared.beat().await {
                    tracing::debug!(error = %e, "fleet membership: heartbeat failed; keeping the last count");
                }
            }
        });
        Ok(membership)
    }

    /// The instances alive at the last heartbeat that answered (this one included), at
    /// least 1 and at most [`MAX_INSTANCES`]. Never waits.
    #[inline]
    pub fn live_instances(&self) -> u32 {
        self.shared.live.load(Ordering::Relaxed)
    }

    /// This instance's id in the set (random per [`Membership::start`]).
    pub fn id(&self) -> u64 {
        self.shared.id
    }

    /// Beats now and returns the live count (the background task does this by itself;
    /// for tests and for a first count before serving).
    ///
    /// # Errors
    /// The store's, when Redis gives no count; the cached count is kept.
    pub async fn beat(&self) -> Result<u32, FleetError> {
        self.shared.beat().await
    }
}

// === impl Shared ===

impl Shared {
    async fn beat(&self) -> Result<u32, FleetError> {
        let live = self.heartbeat().send(false).await?;
        self.live.store(live, Ordering::Relaxed);
        Ok(live)
    }

    fn heartbeat(&self) -> Heartbeat {
        Heartbeat {
            store: self.store.clone(),
            script: self.script.clone(),
            key: self.key.clone(),
            id: self.id,
            expire_after_ms: self.expire_after_ms,
        }
    }
}

impl Drop for Shared {
    /// Leaves the set at once, when a runtime is there to send it (best effort: the
    /// others drop a silent member after `expire_after` anyway).
    fn drop(&mut self) {
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let heartbeat = self.heartbeat();
            runtime.spawn(async move {
                let _ = heartbeat.send(true).await;
            });
        }
    }
}

/// One heartbeat call's parts, owned (a leave is sent after its instance dropped).
struct Heartbeat {
    store: RedisStore,
    script: Script,
    key: String,
    id: u64,
    expire_after_ms: u64,
}

impl Heartbeat {
    /// Beats (or leaves) and returns the live count.
    async fn send(self, leave: bool) -> Result<u32, FleetError> {
        let args = [self.id, self.expire_after_ms, u64::from(leave)];
        let value = self.store.eval(&self.script, &[self.key], &args).await?;
        parse_count(&value)
    }
}

/// Reads the script's count: an integer, at least 1 when beating; clamped to
/// [`MAX_INSTANCES`].
fn parse_count(value: &Value) -> Result<u32, FleetError> {
    match value {
        Value::Int(n) if *n >= 0 => {
            let n = u32::try_from(*n).unwrap_or(MAX_INSTANCES);
            Ok(n.clamp(1, MAX_INSTANCES))
        }
        Value::Int(n) => Err(FleetError::malformed(format!("negative member count {n}"))),
        _ => Err(FleetError::malformed(
            "expected the member count, an integer",
        )),
    }
}

/// A random id (the process id, should the OS have no randomness to give).
fn instance_id() -> u64 {
    use rand::{RngCore, SeedableRng};
    rand::rngs::StdRng::try_from_os_rng()
        .map(|mut rng| rng.next_u64())
        .unwrap_or_else(|_| u64::from(std::process::id()))
}

fn duration_ms(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_read_defensively() {
        assert_eq!(parse_count(&Value::Int(3)).unwrap(), 3);
        assert_eq!(parse_count(&Value::Int(0)).unwrap(), 1);
        assert_eq!(parse_count(&Value::Int(i64::MAX)).unwrap(), MAX_INSTANCES);
        assert!(parse_count(&Value::Int(-1)).is_err());
        assert!(parse_count(&Value::Nil).is_err());
        assert!(parse_count(&Value::SimpleString("3".into())).is_err());
    }

    #[test]
    fn the_script_takes_time_from_the_server_only() {
        assert_eq!(SCRIPT.matches("redis.call('TIME')").count(), 1);
    }
}

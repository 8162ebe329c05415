//! The fleet-wide rate limit, exact mode: every decision made by Redis.
//!
//! A [`FleetRateLimiter`] asks Redis once per request, in one script evaluation, whether
//! every limit the request meets admits it (say its route's, its client's and the
//! global one). The script runs GCRA — the same algorithm as the local
//! [`RateLimiter`](palisade::policy::rate_limit::RateLimiter) — on the *server's* clock
//! (`TIME` inside the script), and admits only if every limit admits, moving every
//! limit's state or none. Redis runs a script alone, so decisions from every instance
//! are serialised: over any interval of length `t`, each limit admits at most
//! `per_second × t + burst` requests, fleet-wide, with no over-admission beyond that.
//!
//! **Keys** are `{palisade:<scope>}:rl:<limit>` (global) and
//! `{palisade:<scope>}:rl:<limit>:<key>` (keyed). The braces are a Redis Cluster hash
//! tag: every key of one scope hashes to one slot, which is what lets one script touch
//! several limits in a cluster. One scope's decisions are therefore served by one node.
//! Each key expires when its state returns to "fresh" (its theoretical arrival time
//! reaches the server's now), so Redis holds only keys used within their last burst's
//! refill time.
//!
//! **Time**: the decision never reads this process's clock; a client clock that is
//! skewed or jumps changes nothing. Retry-After waits are the server's arithmetic.
//!
//! **Failures**: every call runs under the store's timeout (5 ms by default). A timeout,
//! an unreachable server or an answer that is not a decision is an error
//! ([`FleetError`]), never an admission; the caller chooses the fallback.
//!
//! ```no_run
//! # use palisade::policy::rate_limit::Quota;
//! # use palisade_fleet::*;
//! # async fn example(store: RedisStore) -> Result<(), Box<dyn std::error::Error>> {
//! let limiter = FleetRateLimiter::builder().name("search").store(store).build()?;
//! let per_client = FleetLimit::new("client", Quota::new(5.0, 10))?;
//! let decision = limiter.check(&[Check::keyed(&per_client, "203.0.113.9")]).await?;
//! if let Decision::Refused { retry_after, .. } = decision {
//!     println!("429, Retry-After {}", retry_after.as_secs_f64().ceil());
//! }
//! # Ok(()) }
//! ```

mod config;
mod limit;
mod script;
pub mod shared;

pub use config::{FleetRateLimitConfig, FleetRateLimiterBuilder};
pub(crate) use limit::check_name;
pub use limit::{Check, FleetLimit, MAX_CHECKS, MAX_KEY_BYTES, MAX_PER_SECOND};
pub use shared::{
    Admit, Counting, Mode, OnStoreDown, SharedRateLimit, SharedRateLimitBuilder,
    SharedRateLimitConfig,
};

use std::sync::Arc;
use std::time::Duration;

use metrics::Counter;
use palisade::events::names;
use redis::Script;

use crate::error::FleetError;
use crate::store::RedisStore;

/// What the fleet decided for one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Every limit admitted it; each has counted it.
    Admitted,
    /// At least one limit refused it; none has counted it.
    Refused {
        /// How long until every limit would admit it (for `Retry-After`), by the
        /// server's clock, if no one else comes first.
        retry_after: Duration,
        /// The index, in the checks given, of the limit that admits again last.
        limit: usize,
    },
}

impl Decision {
    /// True when admitted.
    pub fn is_admitted(&self) -> bool {
        matches!(self, Decision::Admitted)
    }
}

/// The fleet-wide GCRA rate limit, exact mode; see the [module docs](self).
///
/// Cheap to clone; clones share the store and the metric handles.
#[derive(Clone, Debug)]
pub struct FleetRateLimiter {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    name: String,
    /// `{palisade:<scope>}:rl:`, the start of every key.
    prefix: String,
    store: RedisStore,
    script: Script,
    lease_script: Script,
    admitted: Counter,
    refused: Counter,
    failed: Counter,
}

// === impl FleetRateLimiter ===

impl FleetRateLimiter {
    /// A builder; see [`FleetRateLimitConfig`] for the defaults.
    pub fn builder() -> FleetRateLimiterBuilder {
        FleetRateLimiterBuilder::default()
    }

    fn from_parts(config: FleetRateLimitConfig, store: RedisStore) -> Self {
        let prefix = format!("{{palisade:{}}}:rl:", config.scope());
        let decisions = |decision: &'static str| {
            metrics::counter!(
                names::RATE_LIMIT_DECISIONS_TOTAL,
                "policy" => config.name.clone(),
                "decision" => decision
            )
        };
        Self {
            shared: Arc::new(Shared {
                admitted: decisions("allowed"),
                refused: decisions("limited"),
                failed: decisions("store-failed"),
                prefix,
                name: config.name,
                store,
                script: Script::new(script::SOURCE),
                lease_script: Script::new(script::LEASE_SOURCE),
            }),
        }
    }

    /// The name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// Decides one request against every limit in `checks` (1 to [`MAX_CHECKS`]), in one
    /// script evaluation: admitted only if all admit, counted by all or by none.
    ///
    /// # Errors
    /// [`FleetError::Timeout`], [`FleetError::Unavailable`], [`FleetError::Malformed`]
    /// when Redis gives no decision; [`FleetError::InvalidCheck`] (nothing sent) for no
    /// checks, too many, the same limit and key twice, or a key over [`MAX_KEY_BYTES`].
    pub async fn check(&self, checks: &[Check<'_>]) -> Result<Decision, FleetError> {
        limit::validate_checks(checks)?;
        let keys: Vec<String> = checks.iter().map(|c| self.key_of(c)).collect();
        if has_duplicates(&keys) {
            return Err(FleetError::InvalidCheck {
                reason: "a decision names the same limit and key twice",
            });
        }
        let mut args = Vec::with_capacity(2 * checks.len());
        for c in checks {
            args.push(c.limit.interval_micros());
            args.push(c.limit.tolerance_micros());
        }
        let shared = &self.shared;
        let answer = self.decide(&keys, &args).await;
        match &answer {
            Ok(Decision::Admitted) => shared.admitted.increment(1),
            Ok(Decision::Refused { .. }) => shared.refused.increment(1),
            Err(e) => {
                shared.failed.increment(1);
                tracing::debug!(policy = %shared.name, error = %e, "fleet rate limit: no decision");
            }
        }
        answer
    }

    /// One evaluation of `gcra.lua` with `keys` (already checked) and `args` (`T, τ` per
    /// key, and the optional "fresh keys start spent" flag), read; no metrics (the
    /// caller counts). The one way a decision is asked of Redis.
    pub(crate) async fn decide(
        &self,
        keys: &[String],
        args: &[u64],
    ) -> Result<Decision, FleetError> {
        let shared = &self.shared;
        let value = shared.store.eval(&shared.script, keys, args).await?;
        script::parse_reply(&value, keys.len())
    }

    /// One evaluation of `lease.lua` for `limit` at `key` (a full Redis key): up to
    /// `want` (≥ 1) admissions at once; `spent` as in [`decide`](Self::decide).
    pub(crate) async fn lease(
        &self,
        key: &[String; 1],
        limit: &FleetLimit,
        want: u64,
        spent: bool,
    ) -> Result<script::Grant, FleetError> {
        let shared = &self.shared;
        let want = want.max(1);
        let args = [
            limit.interval_micros(),
            limit.tolerance_micros(),
            want,
            u64::from(spent),
        ];
        let value = shared.store.eval(&shared.lease_script, key, &args).await?;
        script::parse_lease_reply(&value, want)
    }

    /// The Redis key that holds `check`'s state:
    /// `{palisade:<scope>}:rl:<limit>[:<key>]`.
    pub fn key_of(&self, check: &Check<'_>) -> String {
        let prefix = &self.shared.prefix;
        let name = check.limit.name();
        match check.key {
            None => format!("{prefix}{name}"),
            Some(key) => format!("{prefix}{name}:{key}"),
        }
    }
}

fn has_duplicates(keys: &[String]) -> bool {
    keys.iter()
        .enumerate()
        .any(|(i, k)| keys[i + 1..].contains(k))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_are_found() {
        let k = |s: &str| s.to_owned();
        assert!(!has_duplicates(&[k("a"), k("b"), k("c")]));
        assert!(has_duplicates(&[k("a"), k("b"), k("a")]));
    }

    #[test]
    fn the_script_takes_time_from_the_server_only() {
        // The decision's one source of time is the server's TIME; no client time is an
        // argument (the arguments are intervals and tolerances).
        for source in [script::SOURCE, script::LEASE_SOURCE] {
            assert_eq!(source.matches("redis.call('TIME')").count(), 1);
        }
    }
}

//! One retry budget for a whole fleet: retries to an upstream, from every instance,
//! stay under `ratio × the fleet's calls + ONE floor`.
//!
//! A local [`RetryBudget`] per instance gives each its own floor (`min_per_second ×
//! window`), so twenty instances of a quiet service may retry twenty times as much as
//! one. A [`FleetRetryBudget`] keeps the counts in Redis instead, one hash per scope, and
//! puts them behind an ordinary [`RetryBudget`] ([`FleetRetryBudget::budget`]), so that
//! a [`Retry`](palisade::policy::retry::Retry) and a
//! [`Hedge`](palisade::policy::hedge::Hedge) are charged to it unchanged.
//!
//! A retry never waits for Redis:
//!
//! - every call is counted in an atomic, and a background task sends the count every
//!   `flush_every` (and with every other exchange);
//! - a retry spends a *grant* of tokens the instance took ahead (an atomic decrement;
//!   none left = refused); the task tops the grant up to `grant` tokens at every
//!   exchange, and at once when a withdrawal empties it;
//! - the server (one Lua script, `budget.lua`, on its own clock) adds the calls to the
//!   current second, forgets the seconds older than `window`, and grants tokens from
//!   `ratio × calls + min_per_second × window − withdrawals`, counting them as withdrawn
//!   when granted.
//!
//! **Bound.** Over any `window` of whole seconds of the server's clock, the fleet's
//! retries and hedges are at most
//!
//! ```text
//! ratio × the fleet's calls in it (± one flush_every of calls)
//!   + min_per_second × window + live instances × grant
//! ```
//!
//! The last term is the tokens held ahead: granted in an earlier window, spent in this
//! one.
//!
//! **When Redis fails** (any [`FleetError`](crate::FleetError), e.g. a timeout, a lost
//! connection, an odd answer), the instance counts on a local [`RetryBudget`] with the
//! same ratio and its share of the floor, `min_per_second ÷ live instances` (from the
//! [`Membership`]; rounded down, at least 1), and [`FleetRetryBudget::counting`] says
//! `"local_share"`. Calls made meanwhile count in the local budget only (they are not
//! sent to Redis later). The first exchange that succeeds (the task keeps trying every
//! `flush_every`) returns it to `"shared"`.
//!
//! ```no_run
//! use palisade::Policy;
//! use palisade::policy::retry::Retry;
//! use palisade_fleet::{FleetRetryBudget, FleetRetryBudgetConfig, Membership, MembershipConfig, RedisStore, StoreConfig};
//!
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let store = RedisStore::start(&StoreConfig::new("redis://127.0.0.1:6379"))?;
//! let members = Membership::start(store.clone(), "payments", &MembershipConfig::default())?;
//! let fleet = FleetRetryBudget::start(store, members, "payments", &FleetRetryBudgetConfig::default())?;
//! let retry = Retry::builder().max_attempts(3).budget(fleet.budget()).build()?;
//! let answer = retry.call(|| async { Ok::<_, std::io::Error>("paid") }).await;
//! # let _ = answer; Ok(()) }
//! ```

mod config;
mod ledger;
mod script;

pub use config::FleetRetryBudgetConfig;

use std::sync::{Arc, Weak};

use palisade::ConfigError;
use palisade::policy::retry::RetryBudget;
use redis::Script;
use tokio::sync::Notify;
use tokio::time::MissedTickBehavior;

use crate::membership::Membership;
use crate::rate_limit::check_name;
use crate::store::RedisStore;
use ledger::Ledger;

/// [`FleetRetryBudget::counting`] while the fleet's budget in Redis answers.
pub const SHARED: &str = "shared";
/// [`FleetRetryBudget::counting`] while Redis fails and this instance counts on its share.
pub const LOCAL_SHARE: &str = "local_share";

/// Gauge `palisade_retry_budget_counting{policy, counting}`: 1 for the way the budget
/// counts now (`shared` or `local_share`), 0 for the other.
pub const COUNTING: &str = "palisade_retry_budget_counting";
/// Counter `palisade_retry_budget_grants_total{policy}`: tokens the fleet's budget
/// granted to this instance.
pub const GRANTS_TOTAL: &str = "palisade_retry_budget_grants_total";

/// A retry budget shared by every instance of a scope; see the [module docs](self).
/// Cheap to clone; the clones, and the [`RetryBudget`]s from [`budget`](Self::budget),
/// share one ledger and one background task, which stops when the last of them drops.
#[derive(Clone)]
pub struct FleetRetryBudget {
    ledger: Arc<Ledger>,
}

// === impl FleetRetryBudget ===

impl FleetRetryBudget {
    /// Starts counting for `scope` (1 to 64 visible ASCII characters, no `{` or `}`; the
    /// Redis key is `{palisade:<scope>}:rb`), exchanging with Redis every
    /// `config.flush_every` in the background. Starts `"shared"` with an empty grant: the
    /// first retries are refused until the first answer (a few milliseconds). The
    /// first exchange waits for the store's first connect attempt
    /// ([`RedisStore::first_attempt`], at most its `connect_timeout`); if Redis does not
    /// answer, this instance switches to its local share. Needs a tokio runtime.
    ///
    /// `membership` gives the number of live instances the floor is shared by when
    /// Redis fails; start it for the same scope.
    ///
    /// # Errors
    /// A [`ConfigError`] for a bad scope or config.
    pub fn start(
        store: RedisStore,
        membership: Membership,
        scope: &str,
        config: &FleetRetryBudgetConfig,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        check_name("scope", scope, &['{', '}'])?;
        let ledger = Arc::new(Ledger::new(
            store,
            membership,
            scope,
            config,
            Script::new(script::SOURCE),
        ));
        tokio::spawn(run(
            Arc::downgrade(&ledger),
            Arc::clone(&ledger.wake),
            config.flush_every,
        ));
        Ok(Self { ledger })
    }

    /// The fleet's budget as a [`RetryBudget`], for
    /// [`RetryBuilder::budget`](palisade::policy::retry::RetryBuilder::budget) and
    /// [`HedgeBuilder::budget`](palisade::policy::hedge::HedgeBuilder::budget).
    pub fn budget(&self) -> RetryBudget {
        RetryBudget::from_ledger(Arc::clone(&self.ledger) as _)
    }

    /// How retries are counted now: [`SHARED`] (`"shared"`, by the fleet in Redis) or
    /// [`LOCAL_SHARE`] (`"local_share"`, Redis failed: by this instance's share).
    pub fn counting(&self) -> &'static str {
        self.ledger.counting()
    }

    /// The Redis key of the fleet's ledger, `{palisade:<scope>}:rb`.
    pub fn key(&self) -> &str {
        self.ledger.key()
    }
}

impl std::fmt::Debug for FleetRetryBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FleetRetryBudget")
            .field("key", &self.key())
            .field("counting", &self.counting())
            .finish_non_exhaustive()
    }
}

/// The background task: an exchange every `flush_every`, and one at once when a
/// withdrawal empties the grant while the fleet has tokens left. Ends when the ledger
/// is gone.
async fn run(ledger: Weak<Ledger>, wake: Arc<Notify>, flush_every: std::time::Duration) {
    let mut ticks = tokio::time::interval(flush_every);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    // Until Redis is first tried no grant is held, so a retry is refused: better than
    // counting on a local share the fleet's ledger never hears of.
    let store = match ledger.upgrade() {
        Some(ledger) => ledger.store().clone(),
        None => return,
    };
    store.first_attempt().await;
    drop(store);
    // The first tick is now.
    ticks.tick().await;
    loop {
        let eager = {
            let Some(ledger) = ledger.upgrade() else {
                return;
            };
            ledger.exchange().await
        };
        if eager {
            tokio::select! {
                _ = ticks.tick() => {}
                () = wake.notified() => {}
            }
        } else {
            ticks.tick().await;
        }
    }
}

//! One instance's side of the fleet's ledger: what a retry reads without waiting.
//!
//! Calls are counted in an atomic until the next exchange sends them; retries spend a
//! grant of tokens the server counted as withdrawn when it gave them. While Redis
//! fails, both go to a local [`RetryBudget`] holding this instance's share of the
//! fleet's floor instead.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use metrics::{Counter, Gauge};
use palisade::policy::retry::{BudgetLedger, RetryBudget};
use redis::Script;
use tokio::sync::Notify;

use super::config::FleetRetryBudgetConfig;
use super::script::parse_reply;
use super::{COUNTING, GRANTS_TOTAL, LOCAL_SHARE, SHARED};
use crate::error::FleetError;
use crate::membership::Membership;
use crate::store::RedisStore;

/// The state a retry reads, shared by the handles and the background task.
pub(super) struct Ledger {
    scope: String,
    key: String,
    config: FleetRetryBudgetConfig,
    store: RedisStore,
    script: Script,
    membership: Membership,
    /// Calls counted since the last exchange took them.
    pending: AtomicU64,
    /// Tokens granted and not yet spent.
    held: AtomicU64,
    /// The fleet's balance at the last answer, whole tokens.
    balance: AtomicU64,
    /// True while Redis fails: this instance counts on its local share.
    local_share: AtomicBool,
    /// The local share, built at the first failure and kept (rebuilt only when the
    /// number of instances changed), so that an outage after a short recovery does not
    /// get a fresh floor.
    local: RwLock<Option<Local>>,
    /// Wakes the background task: a withdrawal emptied the grant, or the last handle
    /// dropped.
    pub(super) wake: Arc<Notify>,
    grants: Counter,
    counting_shared: Gauge,
    counting_local: Gauge,
}

/// A local budget and the floor it was built with.
struct Local {
    min_per_second: u32,
    budget: RetryBudget,
}

// === impl Ledger ===

impl Ledger {
    pub(super) fn new(
        store: RedisStore,
        membership: Membership,
        scope: &str,
        config: &FleetRetryBudgetConfig,
        script: Script,
    ) -> Self {
        let gauge = |counting: &'static str| metrics::gauge!(COUNTING, "policy" => scope.to_owned(), "counting" => counting);
        let ledger = Self {
            scope: scope.to_owned(),
            key: format!("{{palisade:{scope}}}:rb"),
            config: config.clone(),
            store,
            script,
            membership,
            pending: AtomicU64::new(0),
            held: AtomicU64::new(0),
            balance: AtomicU64::new(0),
            local_share: AtomicBool::new(false),
            local: RwLock::new(None),
            wake: Arc::new(Notify::new()),
            grants: metrics::counter!(GRANTS_TOTAL, "policy" => scope.to_owned()),
            counting_shared: gauge(SHARED),
            counting_local: gauge(LOCAL_SHARE),
        };
        ledger.counting_shared.set(1.0);
        ledger.counting_local.set(0.0);
        ledger
    }

    /// The store the exchanges go to.
    pub(super) fn store(&self) -> &RedisStore {
        &self.store
    }

    /// The Redis key of the fleet's ledger.
    pub(super) fn key(&self) -> &str {
        &self.key
    }

    /// `"shared"` or `"local_share"`.
    pub(super) fn counting(&self) -> &'static str {
        if self.local_share.load(Ordering::Acquire) {
            LOCAL_SHARE
        } else {
            SHARED
        }
    }

    /// One exchange with the server: sends the calls counted, tops the grant up to
    /// `grant`, and switches between shared and local counting on the outcome. Returns
    /// true when a withdrawal emptying the grant should bring the next exchange forward
    /// (the fleet had tokens left).
    pub(super) async fn exchange(&self) -> bool {
        let deposits = self.pending.swap(0, Ordering::AcqRel);
        let want = u64::from(self.config.grant).saturating_sub(self.held.load(Ordering::Acquire));
        let args = [
            deposits,
            want,
            self.config.ratio_milli(),
            u64::from(self.config.min_per_second),
            self.config.window.as_secs(),
        ];
        let answer = self
            .store
            .eval(&self.script, std::slice::from_ref(&self.key), &args)
            .await
            .and_then(|value| parse_reply(&value, want));
        match answer {
            Ok(reply) => {
                // Only this task adds, so `held` stays at most `grant`.
                self.held.fetch_add(reply.granted, Ordering::AcqRel);
                self.balance.store(reply.balance, Ordering::Release);
                self.grants.increment(reply.granted);
                self.to_shared();
                reply.balance > 0
            }
            Err(error) => {
                // The deposits sent may or may not have reached the server (a timeout):
                // they are not sent again, so that none is counted twice.
                self.to_local_share(&error);
                false
            }
        }
    }

    fn to_shared(&self) {
        if self.local_share.swap(false, Ordering::AcqRel) {
            tracing::info!(scope = %self.scope, "fleet retry budget: redis answers again; counting on the fleet's budget");
            self.counting_shared.set(1.0);
            self.counting_local.set(0.0);
        }
    }

    /// Counts on this instance's share of the floor from now on. Any error counts as the
    /// store being down (a caller's mistake cannot happen here: the call is ours).
    fn to_local_share(&self, error: &FleetError) {
        let min_per_second = share(self.config.min_per_second, self.membership.live_instances());
        let stale = |local: &Option<Local>| {
            local
                .as_ref()
                .is_none_or(|l| l.min_per_second != min_per_second)
        };
        // Read first: during an outage this runs every `flush_every`, and the write lock
        // would stall the calls counting on the share.
        if stale(&self.local.read().unwrap_or_else(PoisonError::into_inner)) {
            let mut local = self.local.write().unwrap_or_else(PoisonError::into_inner);
            if stale(&local) {
                match RetryBudget::new(&self.config.local_config(min_per_second)) {
                    Ok(budget) => {
                        *local = Some(Local {
                            min_per_second,
                            budget,
                        });
                    }
                    // Cannot happen (the fields were validated, the share is smaller);
                    // without a local budget every retry is refused.
                    Err(e) => tracing::error!(error = %e, "fleet retry budget: no local share"),
                }
            }
        }
        if !self.local_share.swap(true, Ordering::AcqRel) {
            tracing::warn!(
                scope = %self.scope,
                error = %error,
                min_per_second,
                "fleet retry budget: redis failed; counting on this instance's share of the floor"
            );
            self.counting_shared.set(0.0);
            self.counting_local.set(1.0);
        } else {
            tracing::debug!(scope = %self.scope, error = %error, "fleet retry budget: redis still failing");
        }
    }

    /// Runs `f` on the local share, if there is one.
    fn with_local<T>(&self, f: impl FnOnce(&RetryBudget) -> T) -> Option<T> {
        let local = self.local.read().unwrap_or_else(PoisonError::into_inner);
        local.as_ref().map(|l| f(&l.budget))
    }
}

impl BudgetLedger for Ledger {
    #[inline]
    fn deposit(&self) {
        if self.local_share.load(Ordering::Acquire) {
            // During an outage the call counts here only: it is not sent later.
            self.with_local(RetryBudget::deposit);
        } else {
            self.pending.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn try_withdraw(&self) -> bool {
        if self.local_share.load(Ordering::Acquire) {
            return self.with_local(RetryBudget::try_withdraw).unwrap_or(false);
        }
        let taken = self
            .held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
        if matches!(taken, Ok(1) | Err(_)) {
            // The grant is empty now: refill it at once, off this path.
            self.wake.notify_one();
        }
        taken.is_ok()
    }

    /// Shared: the grant held plus the fleet's balance at the last answer (at most
    /// `flush_every` old; another instance may take it first). Local: the share's.
    fn available(&self) -> u64 {
        if self.local_share.load(Ordering::Acquire) {
            return self.with_local(RetryBudget::available).unwrap_or(0);
        }
        self.held
            .load(Ordering::Acquire)
            .saturating_add(self.balance.load(Ordering::Acquire))
    }
}

impl Drop for Ledger {
    /// Stops the background task at once if it waits for a wake-up (else at its next
    /// tick).
    fn drop(&mut self) {
        self.wake.notify_one();
    }
}

/// This instance's share of the fleet's floor while Redis is down: `min_per_second ÷
/// live`, rounded down, but at least 1 when the floor is not 0 — so a quiet instance of
/// a large fleet can still retry, and the fleet's floor during an outage is at most
/// `max(min_per_second, live)` per second.
pub(super) fn share(min_per_second: u32, live: u32) -> u32 {
    if min_per_second == 0 {
        return 0;
    }
    (min_per_second / live.max(1)).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_share_is_rounded_down_and_at_least_one() {
        assert_eq!(share(10, 5), 2);
        assert_eq!(share(10, 3), 3);
        assert_eq!(share(10, 1), 10);
        assert_eq!(share(10, 0), 10);
        assert_eq!(share(10, 20), 1);
        assert_eq!(share(0, 5), 0);
        assert_eq!(share(1_000_000, 100_000), 10);
    }
}

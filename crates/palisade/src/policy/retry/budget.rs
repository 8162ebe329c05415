//! A retry budget shared across calls: retries may add at most a fixed share of load.
//!
//! Like Finagle's and linkerd's: every call *deposits* `ratio` of a token, every retry
//! *withdraws* one, and a reserve of `min_per_second × window` tokens lets a quiet
//! service still retry. Deposits and withdrawals expire after `window`. Within any
//! window, retries therefore stay below `ratio × calls + min_per_second × window`, so a
//! fleet whose dependency is down sends at most `1 + ratio` times its normal load instead
//! of `max_attempts` times.
//!
//! Counts live in a lock-free [bucket ring](crate::window) of 10 buckets. Concurrent
//! withdrawals that race for the last token may both succeed; the overshoot is bounded
//! by the number of threads racing at that instant.
//!
//! A budget may instead be kept elsewhere — by every instance of a fleet together, say
//! (`palisade_fleet::FleetRetryBudget`): [`RetryBudget::from_ledger`] puts any
//! [`BudgetLedger`] behind a `RetryBudget`, so that the policies charged to a budget
//! ([`Retry`](super::Retry), and [`Hedge`](crate::policy::hedge::Hedge) through its
//! builder's `budget`) use it unchanged.
//!
//! ```
//! use std::time::Duration;
//! use palisade::policy::retry::{RetryBudget, RetryBudgetConfig};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
//! let budget = RetryBudget::new(&RetryBudgetConfig { ratio: 0.1, min_per_second: 0, window: Duration::from_secs(10) }).unwrap();
//! for _ in 0..20 { budget.deposit(); }
//! assert!(budget.try_withdraw());
//! assert!(budget.try_withdraw());
//! assert!(!budget.try_withdraw(), "20 calls × 0.1 = 2 retries");
//! # }
//! ```

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::clock::Clock;
use crate::config::{ConfigError, in_range};
use crate::window::BucketRing;

const BUCKETS: u32 = 10;
const MILLI: u64 = 1000;

/// Settings of a [`RetryBudget`] (defaults as linkerd's).
///
/// | field | default | why |
/// |---|---|---|
/// | `ratio` | `0.2` | retries add at most 20% load |
/// | `min_per_second` | `10` | a low-traffic service can still retry |
/// | `window` | `10s` | long enough to smooth bursts, short enough to recover quickly |
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetryBudgetConfig {
    /// Retries allowed per call, 0 to 10.
    pub ratio: f64,
    /// Retries per second allowed regardless of traffic, 0 to 1,000,000.
    pub min_per_second: u32,
    /// How long deposits and withdrawals count, 1 s to 10 min.
    #[serde(with = "humantime_serde")]
    pub window: Duration,
}

impl Default for RetryBudgetConfig {
    fn default() -> Self {
        Self {
            ratio: 0.2,
            min_per_second: 10,
            window: Duration::from_secs(10),
        }
    }
}

impl RetryBudgetConfig {
    /// Checks every field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        in_range("ratio", self.ratio, 0.0, 10.0)?;
        in_range("min_per_second", self.min_per_second, 0, 1_000_000)?;
        if self.window < Duration::from_secs(1) || self.window > Duration::from_secs(600) {
            return Err(ConfigError::new(
                "window",
                format!("{:?} is out of range", self.window),
                "1s to 10min",
            ));
        }
        Ok(())
    }
}

/// Where a [`RetryBudget`]'s counts are kept when not in this process: the hook for a
/// budget shared by a fleet.
///
/// The methods are synchronous on purpose. A retry (or a hedge) is decided on the
/// request's path, and that decision must never wait for a network call: a ledger kept
/// in a store answers from what it holds locally — a grant of tokens taken ahead, the
/// calls counted since its last exchange — and talks to its store in the background.
/// Each method is called on the hot path, so it should cost a few atomic operations.
///
/// ```
/// use std::sync::Arc;
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use palisade::policy::retry::{BudgetLedger, RetryBudget};
///
/// /// Ten retries, ever; calls are not counted.
/// struct Ten(AtomicU64);
///
/// impl BudgetLedger for Ten {
///     fn deposit(&self) {}
///     fn try_withdraw(&self) -> bool {
///         self.0.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1)).is_ok()
///     }
///     fn available(&self) -> u64 {
///         self.0.load(Ordering::Acquire)
///     }
/// }
///
/// let budget = RetryBudget::from_ledger(Arc::new(Ten(AtomicU64::new(10))));
/// assert_eq!((0..20).filter(|_| budget.try_withdraw()).count(), 10);
/// ```
pub trait BudgetLedger: Send + Sync + 'static {
    /// Counts one call (which earns the budget its ratio of a retry).
    fn deposit(&self);
    /// Takes one retry if the ledger has one at hand; never waits.
    fn try_withdraw(&self) -> bool;
    /// Whole retries available now, as far as this ledger knows without waiting.
    fn available(&self) -> u64;
}

/// A retry budget; clones share it, and one budget may serve many retry policies.
///
/// Kept in this process ([`RetryBudget::new`]) or by a [`BudgetLedger`]
/// ([`RetryBudget::from_ledger`]).
#[derive(Clone)]
pub struct RetryBudget {
    inner: Inner,
}

/// Where the counts are: here (the default, and the fast path), or in a ledger.
#[derive(Clone)]
enum Inner {
    Local(Arc<Shared>),
    Ledger(Arc<dyn BudgetLedger>),
}

struct Shared {
    /// `a` = deposits (calls), `b` = withdrawals (retries).
    ring: BucketRing,
    ratio_milli: u64,
    reserve_milli: u64,
    clock: Clock,
}

// === impl RetryBudget ===

impl RetryBudget {
    /// A budget on tokio's clock.
    pub fn new(config: &RetryBudgetConfig) -> Result<Self, ConfigError> {
        Self::with_clock(config, Clock::tokio())
    }

    /// A budget on `clock`.
    pub fn with_clock(config: &RetryBudgetConfig, clock: Clock) -> Result<Self, ConfigError> {
        config.validate()?;
        let window_secs = config.window.as_secs_f64();
        Ok(Self {
            inner: Inner::Local(Arc::new(Shared {
                ring: BucketRing::new(BUCKETS as usize, config.window / BUCKETS),
                ratio_milli: (config.ratio * MILLI as f64).round() as u64,
                reserve_milli: (f64::from(config.min_per_second) * window_secs * MILLI as f64)
                    as u64,
                clock,
            })),
        })
    }

    /// A budget kept by `ledger`: every deposit, withdrawal and question goes to it.
    pub fn from_ledger(ledger: Arc<dyn BudgetLedger>) -> Self {
        Self {
            inner: Inner::Ledger(ledger),
        }
    }

    /// Counts one call.
    #[inline]
    pub fn deposit(&self) {
        match &self.inner {
            Inner::Local(shared) => shared.ring.add(shared.clock.now(), 1, 0),
            Inner::Ledger(ledger) => ledger.deposit(),
        }
    }

    /// Takes one retry from the budget if it has one.
    pub fn try_withdraw(&self) -> bool {
        match &self.inner {
            Inner::Local(shared) => shared.try_withdraw(),
            Inner::Ledger(ledger) => ledger.try_withdraw(),
        }
    }

    /// Whole retries available now.
    pub fn available(&self) -> u64 {
        match &self.inner {
            Inner::Local(shared) => shared.balance_milli(shared.clock.now()) / MILLI,
            Inner::Ledger(ledger) => ledger.available(),
        }
    }

    /// True when a [`BudgetLedger`] keeps this budget.
    pub fn is_ledger(&self) -> bool {
        matches!(self.inner, Inner::Ledger(_))
    }
}

// === impl Shared ===

impl Shared {
    fn try_withdraw(&self) -> bool {
        let now = self.clock.now();
        if self.balance_milli(now) < MILLI {
            return false;
        }
        self.ring.add(now, 0, 1);
        true
    }

    fn balance_milli(&self, now: u64) -> u64 {
        let (deposits, withdrawals) = self.ring.sum(now);
        let earned = self.reserve_milli + deposits.saturating_mul(self.ratio_milli);
        earned.saturating_sub(withdrawals.saturating_mul(MILLI))
    }
}

impl std::fmt::Debug for RetryBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RetryBudget")
            .field("available", &self.available())
            .field("ledger", &self.is_ledger())
            .finish()
    }
}

#[cfg(all(test, not(palisade_loom)))]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;
    use crate::policy::Policy;
    use crate::policy::hedge::Hedge;
    use crate::policy::retry::Retry;

    proptest::proptest! {
        /// At every accepted retry at time t: retries in (t − window + bucket, t] ≤
        /// ratio × calls in [t − window, t] + min_per_second × window.
        #[test]
        fn retries_never_exceed_ratio_plus_floor(
            ratio in 0.0f64..1.0,
            min_per_second in 0u32..5,
            steps in proptest::collection::vec((0u64..300, proptest::bool::ANY), 1..400),
        ) {
            let config = RetryBudgetConfig { ratio, min_per_second, window: Duration::from_secs(1) };
            let (clock, hand) = Clock::manual();
            let budget = RetryBudget::with_clock(&config, clock).unwrap();
            let mut now_ms = 0u64;
            let mut calls = Vec::new();
            let mut retries = Vec::new();
            for (gap, is_call) in steps {
                hand.advance(Duration::from_millis(gap));
                now_ms += gap;
                if is_call {
                    budget.deposit();
                    calls.push(now_ms);
                } else if budget.try_withdraw() {
                    retries.push(now_ms);
                    let window = 1000;
                    let bucket = 100;
                    let recent_retries = retries.iter().filter(|&&r| r + window - bucket > now_ms).count() as f64;
                    let recent_calls = calls.iter().filter(|&&c| c + window >= now_ms).count() as f64;
                    // The budget counts the ratio in thousandths.
                    let effective_ratio = (ratio * 1000.0).round() / 1000.0;
                    let allowed = effective_ratio * recent_calls + f64::from(min_per_second) + 1e-9;
                    proptest::prop_assert!(recent_retries <= allowed,
                        "{recent_retries} retries > {ratio} × {recent_calls} + {min_per_second}");
                }
            }
        }
    }

    /// A ledger that counts what it is asked, and grants what `tokens` holds.
    #[derive(Default)]
    struct FakeLedger {
        deposits: AtomicU64,
        asked: AtomicU64,
        tokens: AtomicU64,
    }

    impl BudgetLedger for FakeLedger {
        fn deposit(&self) {
            self.deposits.fetch_add(1, Ordering::SeqCst);
        }
        fn try_withdraw(&self) -> bool {
            self.asked.fetch_add(1, Ordering::SeqCst);
            self.tokens
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
        }
        fn available(&self) -> u64 {
            self.tokens.load(Ordering::SeqCst)
        }
    }

    fn ledger(tokens: u64) -> (Arc<FakeLedger>, RetryBudget) {
        let ledger = Arc::new(FakeLedger {
            tokens: AtomicU64::new(tokens),
            ..FakeLedger::default()
        });
        let budget = RetryBudget::from_ledger(ledger.clone());
        (ledger, budget)
    }

    #[test]
    fn a_ledger_answers_for_the_budget() {
        let (ledger, budget) = ledger(2);
        assert!(budget.is_ledger());
        assert!(
            !RetryBudget::new(&RetryBudgetConfig::default())
                .unwrap()
                .is_ledger()
        );
        budget.deposit();
        budget.clone().deposit();
        assert_eq!(ledger.deposits.load(Ordering::SeqCst), 2);
        assert_eq!(budget.available(), 2);
        assert!(budget.try_withdraw());
        assert!(budget.try_withdraw());
        assert!(!budget.try_withdraw());
        assert_eq!(budget.available(), 0);
        assert_eq!(ledger.asked.load(Ordering::SeqCst), 3);
        assert!(format!("{budget:?}").contains("ledger: true"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_retry_refuses_when_the_ledger_says_no() {
        let (ledger, budget) = ledger(1);
        let retry = Retry::builder()
            .max_attempts(5)
            .seed(1)
            .budget(budget)
            .build()
            .unwrap();
        let attempts = AtomicU64::new(0);
        let answer = retry
            .call(|| {
                attempts.fetch_add(1, Ordering::SeqCst);
                std::future::ready(Err::<(), _>("down"))
            })
            .await;
        assert!(matches!(
            answer,
            Err(crate::Error::RetriesExhausted { attempts: 2, .. })
        ));
        // One call deposited; the first retry was granted, the second refused.
        assert_eq!(attempts.load(Ordering::SeqCst), 2);
        assert_eq!(ledger.deposits.load(Ordering::SeqCst), 1);
        assert_eq!(ledger.asked.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_hedge_is_charged_to_the_ledger() {
        let (ledger, budget) = ledger(1);
        let hedge = Hedge::builder()
            .delay(Duration::from_millis(20))
            .learn(false)
            .max_extra_load(1.0)
            .budget(budget)
            .build()
            .unwrap();
        let slow_then_fast = || {
            let sent = AtomicU64::new(0);
            move || {
                let n = sent.fetch_add(1, Ordering::SeqCst);
                async move {
                    let wait = if n == 0 { 1000 } else { 5 };
                    tokio::time::sleep(Duration::from_millis(wait)).await;
                    Ok::<_, std::io::Error>(n)
                }
            }
        };
        assert_eq!(hedge.call_idempotent(slow_then_fast()).await.unwrap(), 1);
        assert_eq!(ledger.available(), 0, "the hedge took the ledger's token");
        assert_eq!(
            hedge.call_idempotent(slow_then_fast()).await.unwrap(),
            0,
            "no token, no hedge"
        );
        assert_eq!(ledger.asked.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn a_quiet_service_still_gets_its_floor() {
        let (clock, hand) = Clock::manual();
        let config = RetryBudgetConfig {
            ratio: 0.2,
            min_per_second: 2,
            window: Duration::from_secs(10),
        };
        let budget = RetryBudget::with_clock(&config, clock).unwrap();
        let granted = (0..100).filter(|_| budget.try_withdraw()).count();
        assert_eq!(granted, 20, "2/s over a 10 s window");
        hand.advance(Duration::from_secs(11));
        assert_eq!(budget.available(), 20, "withdrawals expire with the window");
    }
}

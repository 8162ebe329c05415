//! The generic cell rate algorithm on one atomic word.
//!
//! A quota of `rate` per second with `burst` is an *emission interval* `T = 1/rate` and a
//! *tolerance* `τ = (burst − 1)·T`. The state is one number, the theoretical arrival time
//! (TAT) of the next call. A call at time `t` is admitted when `max(TAT, t) − t ≤ τ`, and
//! then moves TAT to `max(TAT, t) + T`. Hence, over any interval of length `L`, at most
//! `burst + L/T` calls are admitted — a token bucket of `burst` tokens refilled at `rate`,
//! kept in one `u64` updated with compare-and-swap.
//!
//! A key whose TAT is in the past holds no information (it would behave exactly like a
//! fresh key), which is what makes idle keys safe to evict.

use std::time::Duration;

use crate::clock::Nanos;
use crate::sync::{AtomicU64, Ordering};

/// The quota as the algorithm uses it, in nanoseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Cell {
    /// `T`: time between calls at the sustained rate.
    pub(crate) interval: u64,
    /// `τ`: how far ahead of schedule calls may run (the burst).
    pub(crate) tolerance: u64,
}

/// What the algorithm decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Admitted now.
    Allowed,
    /// Admitted, but must wait this long before running (reservation mode).
    AllowedAfter(Duration),
    /// Refused; would be admitted after this long.
    Limited(Duration),
}

/// Checks one call against `tat`, admitting it if it fits within `max_wait`.
///
/// With `max_wait` zero this is a plain check; otherwise the call reserves the next slot
/// within `max_wait` and is told how long to sleep.
#[inline]
pub(crate) fn check(tat: &AtomicU64, cell: Cell, now: Nanos, max_wait: Nanos) -> Decision {
    let mut current = tat.load(Ordering::Acquire);
    loop {
        let start = current.max(now);
        let ahead = start - now;
        let allowed_ahead = cell.tolerance.saturating_add(max_wait);
        if ahead > allowed_ahead {
            return Decision::Limited(Duration::from_nanos(ahead - cell.tolerance));
        }
        let next = start.saturating_add(cell.interval);
        match tat.compare_exchange_weak(current, next, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => {
                return if ahead > cell.tolerance {
                    Decision::AllowedAfter(Duration::from_nanos(ahead - cell.tolerance))
                } else {
                    Decision::Allowed
                };
            }
            Err(seen) => current = seen,
        }
    }
}

/// True when a key at `tat` behaves like a fresh one at `now` (safe to forget).
pub(crate) fn is_idle(tat: Nanos, now: Nanos) -> bool {
    tat <= now
}

#[cfg(all(test, not(palisade_loom)))]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    fn cell(per_second: u64, burst: u64) -> Cell {
        let interval = 1_000_000_000 / per_second;
        Cell {
            interval,
            tolerance: interval * (burst - 1),
        }
    }

    #[test]
    fn burst_then_rate() {
        let tat = AtomicU64::new(0);
        let c = cell(10, 3); // one per 100 ms, burst 3
        for _ in 0..3 {
            assert_eq!(check(&tat, c, 0, 0), Decision::Allowed);
        }
        assert_eq!(
            check(&tat, c, 0, 0),
            Decision::Limited(Duration::from_millis(100))
        );
        assert_eq!(check(&tat, c, 100 * MS, 0), Decision::Allowed);
        assert!(matches!(check(&tat, c, 100 * MS, 0), Decision::Limited(_)));
    }

    #[test]
    fn waiting_reserves_the_next_slot() {
        let tat = AtomicU64::new(0);
        let c = cell(10, 1);
        assert_eq!(check(&tat, c, 0, 0), Decision::Allowed);
        assert_eq!(
            check(&tat, c, 0, 250 * MS),
            Decision::AllowedAfter(Duration::from_millis(100))
        );
        assert_eq!(
            check(&tat, c, 0, 250 * MS),
            Decision::AllowedAfter(Duration::from_millis(200))
        );
        assert!(matches!(check(&tat, c, 0, 250 * MS), Decision::Limited(_)));
    }

    proptest::proptest! {
        /// In every interval [a, b], admitted calls ≤ burst + (b − a)/T.
        #[test]
        fn never_admits_more_than_rate_times_t_plus_burst(
            per_second in 1u64..1000,
            burst in 1u64..20,
            gaps in proptest::collection::vec(0u64..20 * MS, 1..300),
        ) {
            let c = cell(per_second, burst);
            let tat = AtomicU64::new(0);
            let mut now = 0;
            let mut admitted = Vec::new();
            for gap in gaps {
                now += gap;
                if check(&tat, c, now, 0) == Decision::Allowed {
                    admitted.push(now);
                }
            }
            for (i, &a) in admitted.iter().enumerate() {
                for (j, &b) in admitted.iter().enumerate().skip(i) {
                    let count = (j - i + 1) as u64;
                    let bound = burst + (b - a) / c.interval;
                    proptest::prop_assert!(count <= bound, "{count} calls in [{a}, {b}] > {bound}");
                }
            }
        }
    }
}

//! The breaker's view of recent calls: count, time or consecutive.

use std::time::Duration;

use super::config::{CircuitBreakerConfig, WindowKind};
use crate::clock::{Clock, Nanos};
use crate::sync::{AtomicU32, Ordering};
use crate::window::{BucketRing, Counts, OutcomeRing};

/// The thresholds a window is judged against.
#[derive(Clone, Copy, Debug)]
pub(super) struct Thresholds {
    pub(super) failure_rate: f64,
    pub(super) slow_call_rate: f64,
    pub(super) minimum_calls: u32,
    pub(super) consecutive: u32,
}

pub(super) enum FailureWindow {
    Count(OutcomeRing),
    Time {
        /// `a` = calls, `b` = failures.
        calls: BucketRing,
        /// `a` = slow calls.
        slow: BucketRing,
    },
    Consecutive(AtomicU32),
}

impl FailureWindow {
    pub(super) fn new(config: &CircuitBreakerConfig) -> Self {
        match config.window {
            WindowKind::Count => FailureWindow::Count(OutcomeRing::new(config.size)),
            WindowKind::Time => {
                let buckets = config.buckets.max(1);
                let width = Duration::from_secs(u64::from(config.size)) / buckets;
                FailureWindow::Time {
                    calls: BucketRing::new(buckets as usize, width),
                    slow: BucketRing::new(buckets as usize, width),
                }
            }
            WindowKind::Consecutive => FailureWindow::Consecutive(AtomicU32::new(0)),
        }
    }

    /// Whether recording needs the time of the call.
    pub(super) fn needs_time(&self) -> bool {
        matches!(self, FailureWindow::Time { .. })
    }

    /// Records a call that counted; returns true if the thresholds are now crossed.
    ///
    /// Rate windows are judged after every call once they hold `minimum_calls`, as
    /// resilience4j does, not only when a failure enters: five failures then five
    /// successes cross a 50% threshold with a minimum of ten at the tenth call.
    #[inline]
    pub(super) fn record(
        &self,
        failed: bool,
        slow: bool,
        clock: &Clock,
        limits: &Thresholds,
    ) -> bool {
        match self {
            FailureWindow::Count(ring) => {
                ring.record(failed, slow) && crossed(ring.counts(), limits)
            }
            FailureWindow::Time {
                calls,
                slow: slow_ring,
            } => {
                let now = clock.now();
                calls.add(now, 1, u64::from(failed));
                if slow {
                    slow_ring.add(now, 1, 0);
                }
                crossed(self.time_counts(now), limits)
            }
            FailureWindow::Consecutive(run) => {
                if failed || slow {
                    run.fetch_add(1, Ordering::Relaxed).saturating_add(1) >= limits.consecutive
                } else {
                    if run.load(Ordering::Relaxed) != 0 {
                        run.store(0, Ordering::Relaxed);
                    }
                    false
                }
            }
        }
    }

    fn time_counts(&self, now: Nanos) -> Counts {
        match self {
            FailureWindow::Time { calls, slow } => {
                let (calls, failures) = calls.sum(now);
                let (slow, _) = slow.sum(now);
                Counts {
                    calls: clamp(calls),
                    failures: clamp(failures),
                    slow: clamp(slow),
                }
            }
            _ => Counts::default(),
        }
    }

    /// Totals for snapshots; a consecutive window reports its run as failures.
    pub(super) fn counts(&self, clock: &Clock) -> Counts {
        match self {
            FailureWindow::Count(ring) => ring.counts(),
            FailureWindow::Time { .. } => self.time_counts(clock.now()),
            FailureWindow::Consecutive(run) => {
                let run = run.load(Ordering::Relaxed);
                Counts {
                    calls: run,
                    failures: run,
                    slow: 0,
                }
            }
        }
    }

    pub(super) fn clear(&self) {
        match self {
            FailureWindow::Count(ring) => ring.clear(),
            FailureWindow::Time { calls, slow } => {
                calls.clear();
                slow.clear();
            }
            FailureWindow::Consecutive(run) => run.store(0, Ordering::Relaxed),
        }
    }
}

fn clamp(value: u64) -> u32 {
    u32::try_from(value).unwrap_or(u32::MAX)
}

fn crossed(counts: Counts, limits: &Thresholds) -> bool {
    if counts.calls < limits.minimum_calls || counts.calls == 0 {
        return false;
    }
    let calls = f64::from(counts.calls);
    f64::from(counts.failures) / calls >= limits.failure_rate
        || f64::from(counts.slow) / calls >= limits.slow_call_rate
}

//! How the limit moves: AIMD, Vegas and Gradient2, after Netflix's concurrency-limits,
//! with fixes for their known pitfalls.
//!
//! Each algorithm sees one [`Sample`] per finished call (its round-trip time, the calls
//! in flight when it started, whether it was *dropped* — a failure that signals
//! overload) and returns the next limit.
//!
//! | algorithm | signal | pitfall in the original | fix here |
//! |---|---|---|---|
//! | AIMD | drops (and, optionally, RTT above a threshold) | steps per *sample*: at thousands of samples a second it doubles every round trip and collapses on a burst of drops; also grows when the caller does not use the limit | steps per *round trip* (+1/limit per sample; at most one back-off per limit's worth of samples), and grows only when at least half the limit is in use |
//! | Vegas | queueing estimated from RTT ÷ no-load RTT | the no-load RTT is re-probed from a *loaded* sample and inflates, so the limit creeps up; steps per sample; above β it shrinks by log(limit) per round trip, so a limit that ramped past capacity takes tens of round trips to come back, with a queue at the dependency all along; one call's RTT read against the least of single calls makes the dependency's jitter look like a queue of about limit × jitter, so a large limit settles where the jitter puts it, far under the capacity | the no-load RTT is a windowed minimum (it falls at once and rises only when a whole window saw nothing lower) of *means* of at least max(4 × limit, 32) served calls (a fast failure is no baseline), and each decision reads a round trip's mean RTT (one decision per limit's worth of served calls): jitter averages out on both sides; above β the limit moves to the capacity the RTT shows (limit × no-load ÷ RTT) plus α's queue in one round trip |
//! | Gradient2 | short-term RTT against a long-term average | a standing queue becomes the new "normal" and the limit creeps upward; it also grows while app-limited; smoothing per sample oscillates at high rates | the long-term RTT may not exceed `baseline_cap` × the windowed minimum RTT, the limit grows only while at least half of it is in use, and smoothing is per round trip |

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// One finished call, as an algorithm sees it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sample {
    /// Its round-trip time.
    pub rtt: Duration,
    /// Calls in flight when it started (itself included).
    pub in_flight: usize,
    /// True if it failed in a way that signals overload.
    pub dropped: bool,
}

/// Which algorithm, with its settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum AlgorithmConfig {
    /// Additive increase (+1 per sample), multiplicative decrease on drops.
    Aimd {
        /// Factor applied to the limit on a drop, in (0, 1). Default 0.9.
        #[serde(default = "defaults::backoff_ratio")]
        backoff_ratio: f64,
        /// An RTT above this counts as a drop. Default: none (only failures).
        #[serde(default, with = "humantime_serde")]
        latency_threshold: Option<Duration>,
    },
    /// Keeps an estimated queue between `alpha` and `beta` × log10(limit).
    Vegas {
        /// Lower queue bound factor. Default 3.
        #[serde(default = "defaults::alpha")]
        alpha: f64,
        /// Upper queue bound factor. Default 6.
        #[serde(default = "defaults::beta")]
        beta: f64,
        /// Time over which the no-load RTT is the minimum. Default 30 s.
        #[serde(default = "defaults::baseline_window", with = "humantime_serde")]
        baseline_window: Duration,
    },
    /// Limit × clamp(tolerance × long RTT ÷ short RTT, 0.5, 1) + queue.
    Gradient2 {
        /// RTT growth tolerated before shrinking. Default 1.5.
        #[serde(default = "defaults::tolerance")]
        tolerance: f64,
        /// Samples in the long-term RTT average. Default 600.
        #[serde(default = "defaults::long_window")]
        long_window: u32,
        /// Head-room added each sample. Default 4.
        #[serde(default = "defaults::queue_size")]
        queue_size: f64,
        /// Weight of each new limit, in (0, 1]. Default 0.2.
        #[serde(default = "defaults::smoothing")]
        smoothing: f64,
        /// The long-term RTT may not exceed this × the windowed minimum RTT. Default 2.
        #[serde(default = "defaults::baseline_cap")]
        baseline_cap: f64,
        /// Time over which the minimum RTT is taken. Default 30 s.
        #[serde(default = "defaults::baseline_window", with = "humantime_serde")]
        baseline_window: Duration,
    },
}

/// Vegas: it keeps the queue it lets build at the dependency small and bounded
/// (`alpha`..`beta` × log10(limit) calls), so under overload the waiting happens before
/// the limit, where shedding by criticality acts, rather than in the dependency's queue.
/// Gradient2 tolerates latency growing by `tolerance` over a long-term average allowed to
/// reach twice the minimum, and AIMD grows until something fails: both let a standing queue
/// of several round trips form at the dependency (see the sidecar's overload simulation).
impl Default for AlgorithmConfig {
    fn default() -> Self {
        AlgorithmConfig::Vegas {
            alpha: defaults::alpha(),
            beta: defaults::beta(),
            baseline_window: defaults::baseline_window(),
        }
    }
}

pub(super) mod defaults {
    pub(crate) fn backoff_ratio() -> f64 {
        0.9
    }
    pub(crate) fn alpha() -> f64 {
        3.0
    }
    pub(crate) fn beta() -> f64 {
        6.0
    }
    pub(crate) fn baseline_window() -> std::time::Duration {
        std::time::Duration::from_secs(30)
    }
    pub(crate) fn tolerance() -> f64 {
        1.5
    }
    pub(crate) fn long_window() -> u32 {
        600
    }
    pub(crate) fn queue_size() -> f64 {
        4.0
    }
    pub(crate) fn smoothing() -> f64 {
        0.2
    }
    pub(crate) fn baseline_cap() -> f64 {
        2.0
    }
}

/// The minimum over the last one to two half-windows of *time*: a baseline that falls
/// at once and rises only after a whole half-window saw nothing lower. (Counted in
/// samples, the window would shrink to milliseconds under load — exactly when a loaded
/// sample must not become the baseline.)
#[derive(Clone, Debug)]
pub(super) struct WindowedMin {
    half: u64,
    started: u64,
    current: f64,
    previous: f64,
}

impl WindowedMin {
    pub(super) fn new(window: Duration) -> Self {
        Self {
            half: crate::clock::duration_to_nanos(window / 2).max(1),
            started: 0,
            current: f64::INFINITY,
            previous: f64::INFINITY,
        }
    }

    pub(super) fn observe(&mut self, value: f64, now: u64) -> f64 {
        if now.saturating_sub(self.started) >= self.half {
            self.previous = self.current;
            self.current = f64::INFINITY;
            self.started = now;
        }
        self.current = self.current.min(value);
        self.get()
    }

    pub(super) fn get(&self) -> f64 {
        self.current.min(self.previous)
    }
}

/// The fewest served calls whose mean RTT Vegas's no-load RTT learns from: a mean of 32
/// has a sixth of one call's jitter.
const BASELINE_CALLS: f64 = 32.0;

/// Vegas's no-load RTT learns from means of this many round trips' calls (when more than
/// [`BASELINE_CALLS`]): the least of many means is below their typical value by a few
/// times their jitter, which reads as a queue of limit × that; averaging over more calls
/// as the limit grows keeps it under a call or two.
const BASELINE_ROUNDS: f64 = 4.0;

/// Served calls' round trips, summed until a round is complete.
#[derive(Clone, Debug, Default)]
pub(super) struct Round {
    sum: f64,
    calls: f64,
}

impl Round {
    /// Adds one call's `rtt`; when that makes `calls` of them, their mean (and the next
    /// round starts empty).
    fn add(&mut self, rtt: f64, calls: f64) -> Option<f64> {
        self.sum += rtt;
        self.calls += 1.0;
        if self.calls < calls.max(1.0) {
            return None;
        }
        let mean = self.sum / self.calls;
        *self = Self::default();
        Some(mean)
    }
}

/// A running algorithm.
#[derive(Clone, Debug)]
pub(super) enum Algorithm {
    Aimd {
        backoff_ratio: f64,
        latency_threshold: Option<f64>,
        /// Samples to go before another back-off (one round trip's worth).
        cooldown: f64,
    },
    Vegas {
        alpha: f64,
        beta: f64,
        /// The least mean RTT of a no-load round (see [`BASELINE_CALLS`]).
        no_load: WindowedMin,
        /// The served calls since the no-load RTT last learnt a mean.
        baseline: Round,
        /// The served calls since the last decision (a limit's worth make one).
        round: Round,
        /// The least round-trip mean before the no-load RTT learnt its first mean.
        first_rounds: f64,
    },
    Gradient2 {
        tolerance: f64,
        long_window: f64,
        queue_size: f64,
        smoothing: f64,
        baseline_cap: f64,
        long_rtt: f64,
        min_rtt: WindowedMin,
    },
}

impl Algorithm {
    pub(super) fn new(config: &AlgorithmConfig) -> Self {
        match *config {
            AlgorithmConfig::Aimd {
                backoff_ratio,
                latency_threshold,
            } => Algorithm::Aimd {
                backoff_ratio,
                latency_threshold: latency_threshold.map(|d| d.as_secs_f64()),
                cooldown: 0.0,
            },
            AlgorithmConfig::Vegas {
                alpha,
                beta,
                baseline_window,
            } => Algorithm::Vegas {
                alpha,
                beta,
                no_load: WindowedMin::new(baseline_window),
                baseline: Round::default(),
                round: Round::default(),
                first_rounds: f64::INFINITY,
            },
            AlgorithmConfig::Gradient2 {
                tolerance,
                long_window,
                queue_size,
                smoothing,
                baseline_cap,
                baseline_window,
            } => Algorithm::Gradient2 {
                tolerance,
                long_window: f64::from(long_window.max(1)),
                queue_size,
                smoothing,
                baseline_cap,
                long_rtt: 0.0,
                min_rtt: WindowedMin::new(baseline_window),
            },
        }
    }

    /// The next limit after `sample`, taken at `now` (clock nanoseconds), unclamped.
    pub(super) fn update(&mut self, limit: f64, sample: &Sample, now: u64) -> f64 {
        let rtt = sample.rtt.as_secs_f64().max(1e-9);
        let in_use = sample.in_flight as f64 * 2.0 >= limit;
        match self {
            Algorithm::Aimd {
                backoff_ratio,
                latency_threshold,
                cooldown,
            } => {
                let dropped = sample.dropped || latency_threshold.is_some_and(|t| rtt > t);
                *cooldown = (*cooldown - 1.0).max(0.0);
                if dropped && *cooldown == 0.0 {
                    *cooldown = limit;
                    limit * *backoff_ratio
                } else if !dropped && in_use {
                    limit + 1.0 / limit.max(1.0)
                } else {
                    limit
                }
            }
            Algorithm::Vegas {
                alpha,
                beta,
                no_load,
                baseline,
                round,
                first_rounds,
            } => {
                let log = limit.max(1.0).log10().max(1.0);
                if sample.dropped {
                    // Steps are per round trip: a limit's worth of drops make one.
                    return limit - log / limit.max(1.0);
                }
                // Only served calls say what a round trip costs without load: a fast
                // failure (an instant 503) would make every served call look queued.
                // Both sides are means, so that jitter is not read as a queue.
                let baseline_calls = (BASELINE_ROUNDS * limit).max(BASELINE_CALLS);
                if let Some(mean) = baseline.add(rtt, baseline_calls) {
                    no_load.observe(mean, now);
                }
                let Some(rtt) = round.add(rtt, limit) else {
                    return limit;
                };
                let base = match no_load.get() {
                    // Until a mean long enough is in, the least round trip's stands in.
                    f64::INFINITY => {
                        *first_rounds = first_rounds.min(rtt);
                        *first_rounds
                    }
                    base => base.min(rtt),
                };
                if !in_use {
                    return limit;
                }
                let queue = (limit * (1.0 - base / rtt)).ceil();
                let step = if queue <= log {
                    *beta * log
                } else if queue < *alpha * log {
                    log
                } else if queue > *beta * log {
                    // Back to the capacity the RTT shows plus alpha's queue, within a
                    // round trip or two: -log per round trip would take tens of them to
                    // undo a limit that ramped past capacity, with the queue at the
                    // dependency all that time.
                    let target = limit * base / rtt + *alpha * log;
                    target - limit
                } else {
                    0.0
                };
                limit + step
            }
            Algorithm::Gradient2 {
                tolerance,
                long_window,
                queue_size,
                smoothing,
                baseline_cap,
                long_rtt,
                min_rtt,
            } => {
                if sample.dropped {
                    return limit * 0.5_f64.max(1.0 - *smoothing);
                }
                // Only served calls feed the RTTs: a fast failure is no baseline.
                let floor = min_rtt.observe(rtt, now);
                *long_rtt = if *long_rtt == 0.0 {
                    rtt
                } else {
                    *long_rtt + (rtt - *long_rtt) / *long_window
                };
                // A standing queue may not become the baseline.
                *long_rtt = long_rtt.min(floor * *baseline_cap);
                // After a spike, let the baseline come back down quickly.
                if *long_rtt / rtt > 2.0 {
                    *long_rtt *= 0.95;
                }
                if !in_use {
                    return limit;
                }
                let gradient = (*tolerance * *long_rtt / rtt).clamp(0.5, 1.0);
                let next = limit * gradient + *queue_size;
                // `smoothing` per round trip: a limit's worth of samples makes one step.
                let weight = *smoothing / limit.max(1.0);
                limit * (1.0 - weight) + next * weight
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(ms: u64, in_flight: usize, dropped: bool) -> Sample {
        Sample {
            rtt: Duration::from_millis(ms),
            in_flight,
            dropped,
        }
    }

    #[test]
    fn aimd_adds_one_per_round_trip_and_backs_off_once_per_round_trip() {
        let mut a = Algorithm::new(&AlgorithmConfig::Aimd {
            backoff_ratio: 0.5,
            latency_threshold: Some(Duration::from_millis(50)),
        });
        assert!(
            (a.update(10.0, &sample(10, 10, false), 0) - 10.1).abs() < 1e-9,
            "+1 per 10 samples"
        );
        assert_eq!(
            a.update(10.0, &sample(10, 2, false), 0),
            10.0,
            "app-limited: no growth"
        );
        assert_eq!(a.update(10.0, &sample(10, 10, true), 0), 5.0);
        assert_eq!(
            a.update(5.0, &sample(60, 10, false), 0),
            5.0,
            "one back-off per round trip"
        );
        for _ in 0..10 {
            a.update(5.0, &sample(10, 5, false), 0);
        }
        assert_eq!(
            a.update(5.2, &sample(60, 10, false), 0),
            2.6,
            "a round trip later, slow counts as a drop"
        );
    }

    /// One round trip: `limit` (rounded up) calls of `ms` each, all in flight together.
    fn round_trip(v: &mut Algorithm, limit: f64, ms: u64, now: &mut u64) -> f64 {
        let calls = limit.ceil() as usize;
        let mut next = limit;
        for _ in 0..calls {
            next = v.update(limit, &sample(ms, calls, false), *now);
            *now += 1;
        }
        next
    }

    #[test]
    fn vegas_decides_once_per_round_trip_growing_without_queueing_and_shrinking_with_it() {
        let mut v = Algorithm::new(&AlgorithmConfig::Vegas {
            alpha: 3.0,
            beta: 6.0,
            baseline_window: Duration::from_secs(10),
        });
        let mut now = 0;
        for _ in 0..99 {
            let unchanged = v.update(100.0, &sample(10, 100, false), now);
            assert_eq!(unchanged, 100.0, "a round trip's calls decide together");
            now += 1;
        }
        let grown = v.update(100.0, &sample(10, 100, false), now);
        assert!(
            (grown - 112.0).abs() < 1e-9,
            "+beta·log after a round trip: {grown}"
        );
        // Three times slower: a queue of two thirds of the limit, far above beta·log;
        // back to the capacity the RTT shows (a third) plus alpha's queue at once.
        let shrunk = round_trip(&mut v, grown, 30, &mut now);
        let expected = grown * 10.0 / 30.0 + 3.0 * grown.log10();
        assert!((shrunk - expected).abs() < 1.0, "{shrunk}, not {expected}");
    }

    /// A dependency whose calls take 20 ms ± 20% with no queue at all: one call's
    /// jitter against the least single call would read as a queue of about a sixth of
    /// the limit (160 of 1,000, far above beta·log). Means on both sides see none, and
    /// the limit keeps growing while in use.
    #[test]
    fn jitter_is_not_read_as_a_queue() {
        let mut v = Algorithm::new(&AlgorithmConfig::default());
        let mut limit: f64 = 1000.0;
        let mut now = 0;
        let mut jitter = 0_u64;
        for _ in 0..50 {
            let calls = limit.ceil() as usize;
            for _ in 0..calls {
                jitter = jitter
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                let ms = 16 + (jitter >> 33) % 9;
                limit = v.update(limit, &sample(ms, calls, false), now);
                now += 1;
            }
        }
        assert!(limit >= 1000.0, "the limit fell to {limit} with no queue");
    }

    /// A dependency that fails some calls at once (a gray endpoint's instant 503s): those
    /// fast failures are not taken as the no-load RTT, so served calls at their usual RTT do
    /// not look queued and the limit holds.
    #[test]
    fn fast_failures_are_not_the_no_load_rtt() {
        let mut vegas = Algorithm::new(&AlgorithmConfig::default());
        let mut limit: f64 = 20.0;
        for i in 0..2_000 {
            let s = if i % 4 == 0 {
                sample(1, 20, true)
            } else {
                sample(40, 20, false)
            };
            limit = vegas.update(limit, &s, i);
        }
        assert!(limit >= 20.0, "the limit fell to {limit}");
    }

    /// A dependency serving 12 calls at once in 40 ms each, queueing the rest: from a
    /// limit that ramped to three times that, Vegas is back near 12 plus its small queue
    /// within a few round trips.
    #[test]
    fn vegas_returns_to_the_dependencys_capacity_within_a_few_round_trips() {
        let mut v = Algorithm::new(&AlgorithmConfig::default());
        let rtt_at = |in_flight: f64| 40.0 * (in_flight / 12.0).max(1.0);
        // The no-load RTT is known from lighter load.
        let mut now = 0;
        for _ in 0..4 {
            round_trip(&mut v, 12.0, 40, &mut now);
        }
        let mut limit: f64 = 36.0;
        for _round_trip in 0..4 {
            let samples = limit.ceil() as usize;
            for _ in 0..samples {
                let rtt = rtt_at(limit).round() as u64;
                limit = v.update(limit, &sample(rtt, limit.ceil() as usize, false), now);
                now += 1;
            }
        }
        let log = limit.log10().max(1.0);
        assert!(
            (12.0..=12.0 + 6.0 * log).contains(&limit),
            "after four round trips the limit is {limit}"
        );
    }

    #[test]
    fn gradient2_shrinks_on_rising_rtt_and_does_not_creep_when_app_limited() {
        let mut g = Algorithm::new(&AlgorithmConfig::Gradient2 {
            tolerance: defaults::tolerance(),
            long_window: defaults::long_window(),
            queue_size: defaults::queue_size(),
            smoothing: defaults::smoothing(),
            baseline_cap: defaults::baseline_cap(),
            baseline_window: defaults::baseline_window(),
        });
        let mut limit = 50.0;
        for i in 0..100 {
            limit = g.update(limit, &sample(10, 5, false), i);
        }
        assert_eq!(limit, 50.0, "app-limited: unchanged");
        for i in 0..1000 {
            limit = g.update(limit, &sample(40, 50, false), 100 + i);
        }
        assert!(limit < 50.0, "rtt ×4: {limit}");
    }

    #[test]
    fn windowed_minimum_forgets_old_half_windows() {
        let mut m = WindowedMin::new(Duration::from_nanos(20));
        for (v, t) in [(5.0, 0), (6.0, 5), (7.0, 9)] {
            m.observe(v, t);
        }
        assert_eq!(m.get(), 5.0);
        m.observe(9.0, 10);
        assert_eq!(
            m.get(),
            5.0,
            "one half-window later the old minimum still counts"
        );
        m.observe(9.0, 20);
        assert_eq!(m.get(), 9.0, "two half-windows later it is gone");
    }
}

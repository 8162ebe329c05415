//! Delays between attempts: the backoff curve and the jitter spread over it.
//!
//! For the `n`-th retry (`n = 1` after the first failure), before the cap `max_delay`:
//!
//! | kind | delay |
//! |---|---|
//! | constant | `base` |
//! | linear | `base · n` |
//! | fibonacci | `base · F(n + 1)`: `base` × 1, 2, 3, 5, 8, 13 … (as resilience4j and Polly-contrib) |
//! | exponential | `base · multiplier^(n−1)` |
//! | decorrelated | `U(base, 3 · previous)`, previous starting at `base` (AWS's "decorrelated jitter") |
//! | decorrelated-jitter-v2 | Polly's v2 curve around a median first delay of `base`: smooth, spread, no clustering |
//!
//! Then jitter, with `d = min(curve, max_delay)`: none `d`; full `U(0, d)` (AWS's
//! `random(0, min(cap, base · 2^n))`); equal `d/2 + U(0, d/2)`; proportional
//! `c · U(1 − f, 1 + f)` with `c = min(d, max_delay / (1 + f))`. The decorrelated kinds are
//! already random; use them with jitter `none`.
//!
//! **Invariant: no delay exceeds `max_delay`, whatever the kind, jitter, attempt or seed.**
//! The jitter is drawn *within* the cap, never added on top of it. Full and equal jitter
//! already stay within `[0, d]`. Proportional jitter would reach `d · (1 + f)`, so near
//! the cap its centre moves down to `max_delay / (1 + f)`: the band keeps its shape
//! (uniform, ±f around its centre) instead of being clipped, which would pile half the
//! waits exactly on the cap and bring a herd back in step. (A `Retry-After` hint may
//! still raise a wait up to `max_retry_after`; that is applied outside the backoff.)

use std::time::Duration;

use rand::Rng;
use serde::{Deserialize, Serialize};

/// The shape of the delay curve.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BackoffKind {
    /// Always `base`.
    Constant,
    /// `base · n`.
    Linear,
    /// `base · F(n + 1)`: `base` × 1, 2, 3, 5, 8 ….
    Fibonacci,
    /// `base · multiplier^(n−1)`.
    Exponential,
    /// `U(base, 3 · previous)`.
    Decorrelated,
    /// Polly's decorrelated jitter v2.
    DecorrelatedJitterV2,
}

/// How the delay is spread.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Jitter {
    /// Exactly the curve.
    None,
    /// `U(0, d)`: the widest spread (AWS's recommendation against thundering herds).
    Full,
    /// `d/2 + U(0, d/2)`: at least half the delay.
    Equal,
    /// `c · U(1 − f, 1 + f)`, centre `c = min(d, max_delay / (1 + f))` so it never
    /// exceeds `max_delay`.
    Proportional,
}

/// A backoff curve with its jitter; see the [module docs](self).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Backoff {
    /// The curve.
    pub kind: BackoffKind,
    /// First delay (median first delay for decorrelated-jitter-v2).
    pub base: Duration,
    /// Growth factor for exponential.
    pub multiplier: f64,
    /// Cap on every delay, jitter included.
    pub max_delay: Duration,
    /// The spread.
    pub jitter: Jitter,
    /// `f` for proportional jitter, in (0, 1].
    pub jitter_factor: f64,
}

/// What a curve remembers between retries of one call.
#[derive(Clone, Copy, Debug, Default)]
pub struct BackoffState {
    previous: f64,
}

/// Polly's constants for decorrelated jitter v2.
const V2_P_FACTOR: f64 = 4.0;
const V2_RP_SCALING: f64 = 1.0 / 1.4;

impl Backoff {
    /// The delay before retry `n` (1-based), advancing `state`.
    pub fn delay<R: Rng + ?Sized>(
        &self,
        n: u32,
        state: &mut BackoffState,
        rng: &mut R,
    ) -> Duration {
        let cap = self.max_delay.as_secs_f64();
        let curve = self.curve(n.max(1), state, rng).clamp(0.0, cap);
        let jittered = self.spread(curve, cap, rng).clamp(0.0, cap);
        // The float round trip may land a nanosecond off; the cap holds exactly.
        Duration::try_from_secs_f64(jittered)
            .unwrap_or(self.max_delay)
            .min(self.max_delay)
    }

    fn curve<R: Rng + ?Sized>(&self, n: u32, state: &mut BackoffState, rng: &mut R) -> f64 {
        let base = self.base.as_secs_f64();
        let cap = self.max_delay.as_secs_f64();
        match self.kind {
            BackoffKind::Constant => base,
            BackoffKind::Linear => base * f64::from(n),
            BackoffKind::Fibonacci => base * fibonacci(n.saturating_add(1)),
            BackoffKind::Exponential => {
                base * self
                    .multiplier
                    .powi(i32::try_from(n - 1).unwrap_or(i32::MAX))
            }
            BackoffKind::Decorrelated => {
                let previous = if state.previous > 0.0 {
                    state.previous
                } else {
                    base
                };
                let high = (previous * 3.0).min(cap).max(base);
                let next = if high > base {
                    rng.random_range(base..=high)
                } else {
                    base
                };
                state.previous = next;
                next
            }
            BackoffKind::DecorrelatedJitterV2 => {
                let t = f64::from(n - 1) + rng.random::<f64>();
                let next = t.exp2() * (V2_P_FACTOR * t).sqrt().tanh();
                let step = next - state.previous;
                state.previous = next;
                step * V2_RP_SCALING * base
            }
        }
    }

    /// Spreads `d` (already at most `cap`) so that the result stays within `[0, cap]`.
    fn spread<R: Rng + ?Sized>(&self, d: f64, cap: f64, rng: &mut R) -> f64 {
        if d <= 0.0 {
            return 0.0;
        }
        match self.jitter {
            Jitter::None => d,
            Jitter::Full => rng.random_range(0.0..=d),
            Jitter::Equal => d / 2.0 + rng.random_range(0.0..=d / 2.0),
            Jitter::Proportional => {
                let f = if self.jitter_factor.is_nan() {
                    0.0
                } else {
                    self.jitter_factor.clamp(0.0, 1.0)
                };
                // The band's top, centre · (1 + f), must not pass the cap.
                let centre = d.min(cap / (1.0 + f));
                centre * rng.random_range((1.0 - f)..=(1.0 + f))
            }
        }
    }
}

/// F(n) with F(1) = F(2) = 1 (so F(n + 1) = 1, 2, 3, 5, 8 … for n = 1, 2, …), saturating
/// in f64.
fn fibonacci(n: u32) -> f64 {
    let (mut a, mut b) = (0.0f64, 1.0f64);
    for _ in 1..n.min(1500) {
        (a, b) = (b, a + b);
    }
    b
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::SmallRng;

    fn backoff(kind: BackoffKind, jitter: Jitter) -> Backoff {
        Backoff {
            kind,
            base: Duration::from_millis(100),
            multiplier: 2.0,
            max_delay: Duration::from_secs(10),
            jitter,
            jitter_factor: 0.2,
        }
    }

    fn curve(kind: BackoffKind) -> Vec<u128> {
        let b = backoff(kind, Jitter::None);
        let mut state = BackoffState::default();
        let mut rng = SmallRng::seed_from_u64(1);
        (1..=6)
            .map(|n| b.delay(n, &mut state, &mut rng).as_millis())
            .collect()
    }

    #[test]
    fn deterministic_curves() {
        assert_eq!(curve(BackoffKind::Constant), [100, 100, 100, 100, 100, 100]);
        assert_eq!(curve(BackoffKind::Linear), [100, 200, 300, 400, 500, 600]);
        assert_eq!(
            curve(BackoffKind::Exponential),
            [100, 200, 400, 800, 1600, 3200]
        );
    }

    #[test]
    fn exponential_is_capped() {
        let b = backoff(BackoffKind::Exponential, Jitter::None);
        let mut rng = SmallRng::seed_from_u64(1);
        let d = b.delay(40, &mut BackoffState::default(), &mut rng);
        assert_eq!(d, Duration::from_secs(10));
        let d = b.delay(u32::MAX, &mut BackoffState::default(), &mut rng);
        assert_eq!(d, Duration::from_secs(10));
    }

    #[test]
    fn decorrelated_stays_between_base_and_three_times_previous() {
        let b = backoff(BackoffKind::Decorrelated, Jitter::None);
        let mut rng = SmallRng::seed_from_u64(7);
        let mut state = BackoffState::default();
        let mut previous = 0.1f64;
        for n in 1..200 {
            let d = b.delay(n, &mut state, &mut rng).as_secs_f64();
            assert!(
                d >= 0.1 - 1e-9 && d <= (3.0 * previous).min(10.0) + 1e-9,
                "{d} after {previous}"
            );
            previous = d;
        }
    }

    #[test]
    fn decorrelated_v2_median_first_delay_is_near_base() {
        let b = backoff(BackoffKind::DecorrelatedJitterV2, Jitter::None);
        let mut rng = SmallRng::seed_from_u64(11);
        let mut firsts: Vec<f64> = (0..2001)
            .map(|_| {
                b.delay(1, &mut BackoffState::default(), &mut rng)
                    .as_secs_f64()
            })
            .collect();
        firsts.sort_by(f64::total_cmp);
        let median = firsts[1000];
        assert!(
            (0.07..=0.13).contains(&median),
            "median first delay {median}"
        );
        // And the curve keeps growing on average.
        let mut state = BackoffState::default();
        let total: f64 = (1..=5)
            .map(|n| b.delay(n, &mut state, &mut rng).as_secs_f64())
            .sum();
        assert!(total > 0.5, "five v2 delays sum to {total}");
    }

    /// Each jitter mode: every delay within its bounds, mean within 3% of theory.
    #[test]
    fn jitter_bounds_and_means_match_theory() {
        let d = 1.0; // exponential n=4 → 800 ms; use constant 1 s for clarity
        let cases = [
            (Jitter::None, 1.0, 1.0, 1.0),
            (Jitter::Full, 0.0, 1.0, 0.5),
            (Jitter::Equal, 0.5, 1.0, 0.75),
            (Jitter::Proportional, 0.8, 1.2, 1.0),
        ];
        for (jitter, low, high, mean) in cases {
            let b = Backoff {
                base: Duration::from_secs_f64(d),
                ..backoff(BackoffKind::Constant, jitter)
            };
            let mut rng = SmallRng::seed_from_u64(42);
            let samples: Vec<f64> = (0..20_000)
                .map(|_| {
                    b.delay(1, &mut BackoffState::default(), &mut rng)
                        .as_secs_f64()
                })
                .collect();
            for s in &samples {
                assert!(
                    *s >= low - 1e-9 && *s <= high + 1e-9,
                    "{jitter:?}: {s} outside [{low}, {high}]"
                );
            }
            let observed = samples.iter().sum::<f64>() / samples.len() as f64;
            assert!(
                (observed - mean).abs() <= 0.03 * mean,
                "{jitter:?}: mean {observed}, theory {mean}"
            );
        }
    }

    /// Fibonacci waits `base` × 1, 2, 3, 5, 8, 13 … (F(n + 1)), as the seeds,
    /// resilience4j and Polly-contrib do: the first retry waits `base`, the second twice it.
    #[test]
    fn fibonacci_is_base_times_one_two_three_five_eight() {
        assert_eq!(
            curve(BackoffKind::Fibonacci),
            [100, 200, 300, 500, 800, 1300]
        );
    }

    /// The reported case: exponential at its 1 s cap with proportional jitter ±20% once
    /// waited 1.197 s. At the cap the whole ±f band is moved under it: every wait is in
    /// `[cap · (1 − f)/(1 + f), cap]`, spread (never piled on the cap), mean `cap/(1 + f)`.
    #[test]
    fn proportional_jitter_at_the_cap_stays_under_it_and_spread() {
        let b = Backoff {
            max_delay: Duration::from_secs(1),
            ..backoff(BackoffKind::Exponential, Jitter::Proportional)
        };
        let mut rng = SmallRng::seed_from_u64(3);
        let samples: Vec<f64> = (0..20_000)
            .map(|_| {
                b.delay(30, &mut BackoffState::default(), &mut rng)
                    .as_secs_f64()
            })
            .collect();
        let (low, high) = (0.8 / 1.2, 1.0);
        for s in &samples {
            assert!(
                *s >= low - 1e-9 && *s <= high,
                "{s} outside [{low}, {high}]"
            );
        }
        let at_cap = samples.iter().filter(|s| **s >= 1.0).count();
        assert!(at_cap < 10, "{at_cap} waits piled on the cap");
        let mean = samples.iter().sum::<f64>() / samples.len() as f64;
        assert!((mean - 1.0 / 1.2).abs() <= 0.01, "mean {mean}");
    }

    proptest::proptest! {
        /// Whatever the curve, the jitter, the attempt and the seed: no wait exceeds
        /// `max_delay` (a `Retry-After` hint is the only thing that may, up to
        /// `max_retry_after`, and it is applied outside the backoff).
        #[test]
        fn no_kind_or_jitter_ever_waits_longer_than_max_delay(
            kind in proptest::sample::select(vec![BackoffKind::Constant, BackoffKind::Linear, BackoffKind::Fibonacci, BackoffKind::Exponential, BackoffKind::Decorrelated, BackoffKind::DecorrelatedJitterV2]),
            jitter in proptest::sample::select(vec![Jitter::None, Jitter::Full, Jitter::Equal, Jitter::Proportional]),
            base_ns in 1u64..2_000_000_000,
            cap_ns in 1u64..20_000_000_000,
            multiplier in 1.0f64..100.0,
            jitter_factor in 0.001f64..=1.0,
            seed: u64,
            n in 1u32..64,
        ) {
            let b = Backoff {
                kind,
                base: Duration::from_nanos(base_ns),
                multiplier,
                max_delay: Duration::from_nanos(cap_ns),
                jitter,
                jitter_factor,
            };
            let mut rng = SmallRng::seed_from_u64(seed);
            let mut state = BackoffState::default();
            for i in 1..=n {
                let d = b.delay(i, &mut state, &mut rng);
                proptest::prop_assert!(d <= b.max_delay, "retry {i}: {d:?} > {:?}", b.max_delay);
            }
        }
    }
}

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
//! Then jitter, with `d` the capped delay: none `d`; full `U(0, d)`; equal
//! `d/2 + U(0, d/2)`; proportional `d · U(1 − f, 1 + f)`. The decorrelated kinds are
//! already random; use them with jitter `none`.

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
    /// `d · U(1 − f, 1 + f)`.
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
    /// Cap on the curve, before jitter.
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
        let jittered = self.spread(curve, rng);
        Duration::try_from_secs_f64(jittered.max(0.0)).unwrap_or(self.max_delay)
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

    fn spread<R: Rng + ?Sized>(&self, d: f64, rng: &mut R) -> f64 {
        if d <= 0.0 {
            return 0.0;
        }
        match self.jitter {
            Jitter::None => d,
            Jitter::Full => rng.random_range(0.0..=d),
            Jitter::Equal => d / 2.0 + rng.random_range(0.0..=d / 2.0),
            Jitter::Proportional => {
                let f = self.jitter_factor.clamp(0.0, 1.0);
                d * rng.random_range((1.0 - f)..=(1.0 + f))
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

    proptest::proptest! {
        #[test]
        fn delays_never_exceed_cap_without_proportional_jitter(
            kind in proptest::sample::select(vec![BackoffKind::Constant, BackoffKind::Linear, BackoffKind::Fibonacci, BackoffKind::Exponential, BackoffKind::Decorrelated, BackoffKind::DecorrelatedJitterV2]),
            jitter in proptest::sample::select(vec![Jitter::None, Jitter::Full, Jitter::Equal]),
            base_ms in 1u64..1000, cap_ms in 1000u64..20_000, seed in 0u64..1000, n in 1u32..64,
        ) {
            let b = Backoff { kind, base: Duration::from_millis(base_ms), multiplier: 3.0, max_delay: Duration::from_millis(cap_ms), jitter, jitter_factor: 0.5 };
            let mut rng = SmallRng::seed_from_u64(seed);
            let mut state = BackoffState::default();
            for i in 1..=n {
                let d = b.delay(i, &mut state, &mut rng);
                proptest::prop_assert!(d <= b.max_delay);
            }
        }
    }
}

//! A lock-free source of uniform draws for per-call decisions.
//!
//! Fault injection and client throttling roll a die on every call. A shared
//! `Mutex<Rng>` would put a lock on that path; instead each draw advances one atomic
//! counter by the golden-ratio increment and mixes it with SplitMix64, so draws from many
//! threads never wait for each other. Seeded, the sequence is reproducible (in the order
//! the calls happen), which is what tests need.

use std::sync::atomic::{AtomicU64, Ordering};

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// Uniform draws in `[0, 1)` from a seed.
#[derive(Debug)]
pub(crate) struct Dice {
    state: AtomicU64,
}

impl Dice {
    /// Seeded from `seed`, or from the operating system when absent.
    pub(crate) fn new(seed: Option<u64>) -> Self {
        let seed = seed.unwrap_or_else(|| {
            use rand::{Rng, SeedableRng};
            rand::rngs::SmallRng::from_os_rng().random()
        });
        Self {
            state: AtomicU64::new(seed),
        }
    }

    /// The next draw in `[0, 1)`.
    #[inline]
    pub(crate) fn roll(&self) -> f64 {
        let x = self
            .state
            .fetch_add(GOLDEN, Ordering::Relaxed)
            .wrapping_add(GOLDEN);
        (mix(x) >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

/// SplitMix64's finaliser.
pub(crate) fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_are_uniform_and_reproducible() {
        let a = Dice::new(Some(7));
        let b = Dice::new(Some(7));
        let draws: Vec<f64> = (0..100_000).map(|_| a.roll()).collect();
        assert!(draws.iter().all(|d| (0.0..1.0).contains(d)));
        assert_eq!(b.roll(), draws[0]);
        let mean = draws.iter().sum::<f64>() / draws.len() as f64;
        assert!((mean - 0.5).abs() < 0.005, "mean {mean}");
        let below_tenth = draws.iter().filter(|d| **d < 0.1).count() as f64 / draws.len() as f64;
        assert!((below_tenth - 0.1).abs() < 0.003, "{below_tenth}");
    }
}

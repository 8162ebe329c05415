//! A ring of time buckets, each a packed atomic `u64`: `epoch:20 | a:22 | b:22`.

use std::time::Duration;

use crate::clock::{Nanos, duration_to_nanos};
use crate::sync::{AtomicU64, Ordering};

const COUNT_BITS: u32 = 22;
const COUNT_MAX: u64 = (1 << COUNT_BITS) - 1;
const EPOCH_BITS: u32 = 64 - 2 * COUNT_BITS;
const EPOCH_MASK: u64 = (1 << EPOCH_BITS) - 1;

/// Counts of two quantities (`a`, `b`) over the last `buckets × width` of time.
///
/// Each counter saturates at 4,194,303 per bucket. A bucket is recognised as current by
/// a 20-bit tag of its tick number; a bucket left untouched for exactly a multiple of
/// 2^20 ticks would be mistaken for current, which needs a quiet spell of 12 days at 1 s
/// buckets and costs one stale bucket.
pub(crate) struct BucketRing {
    buckets: Box<[AtomicU64]>,
    width: Nanos,
}

impl BucketRing {
    /// `buckets` buckets of `width` each. Both are clamped to at least 1.
    pub(crate) fn new(buckets: usize, width: Duration) -> Self {
        let buckets = (0..buckets.max(1)).map(|_| AtomicU64::new(0)).collect();
        Self {
            buckets,
            width: duration_to_nanos(width).max(1),
        }
    }

    fn tick(&self, now: Nanos) -> u64 {
        now / self.width
    }

    fn len(&self) -> u64 {
        self.buckets.len() as u64
    }

    /// Adds `a` and `b` to the bucket of `now`, renewing it if it held an older tick.
    pub(crate) fn add(&self, now: Nanos, a: u64, b: u64) {
        let tick = self.tick(now);
        let bucket = &self.buckets[(tick % self.len()) as usize];
        let tag = tick & EPOCH_MASK;
        let mut current = bucket.load(Ordering::Relaxed);
        loop {
            let (old_tag, old_a, old_b) = unpack(current);
            let next = if old_tag == tag {
                pack(tag, old_a.saturating_add(a), old_b.saturating_add(b))
            } else {
                pack(tag, a, b)
            };
            match bucket.compare_exchange_weak(current, next, Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => return,
                Err(seen) => current = seen,
            }
        }
    }

    /// Sums `a` and `b` over the buckets that belong to the window ending at `now`.
    pub(crate) fn sum(&self, now: Nanos) -> (u64, u64) {
        let tick = self.tick(now);
        let n = self.len();
        let mut total = (0u64, 0u64);
        for (index, bucket) in self.buckets.iter().enumerate() {
            // The latest tick at or before `tick` that maps to this bucket.
            let index = index as u64;
            let Some(bucket_tick) = tick.checked_sub((tick + n - index % n) % n) else {
                continue;
            };
            let (tag, a, b) = unpack(bucket.load(Ordering::Acquire));
            if tag == bucket_tick & EPOCH_MASK && (a, b) != (0, 0) {
                total.0 += a;
                total.1 += b;
            }
        }
        total
    }

    /// Empties every bucket.
    pub(crate) fn clear(&self) {
        for bucket in self.buckets.iter() {
            bucket.store(0, Ordering::Release);
        }
    }
}

fn pack(tag: u64, a: u64, b: u64) -> u64 {
    (tag << (2 * COUNT_BITS)) | (a.min(COUNT_MAX) << COUNT_BITS) | b.min(COUNT_MAX)
}

fn unpack(word: u64) -> (u64, u64, u64) {
    (
        word >> (2 * COUNT_BITS),
        (word >> COUNT_BITS) & COUNT_MAX,
        word & COUNT_MAX,
    )
}

#[cfg(all(test, not(palisade_loom)))]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    #[test]
    fn counts_within_the_window_only() {
        let ring = BucketRing::new(10, Duration::from_secs(1));
        ring.add(0, 1, 0);
        ring.add(5 * S, 2, 1);
        assert_eq!(ring.sum(9 * S), (3, 1));
        // At t = 10 s the bucket of t = 0 has left the window.
        assert_eq!(ring.sum(10 * S), (2, 1));
        assert_eq!(ring.sum(15 * S), (0, 0));
    }

    #[test]
    fn a_bucket_is_renewed_when_its_slot_comes_round() {
        let ring = BucketRing::new(3, Duration::from_secs(1));
        ring.add(0, 5, 5);
        ring.add(3 * S, 1, 0); // same slot, next round
        assert_eq!(ring.sum(3 * S), (1, 0));
    }

    #[test]
    fn counters_saturate_instead_of_overflowing_into_the_tag() {
        let ring = BucketRing::new(1, Duration::from_secs(1));
        ring.add(0, COUNT_MAX, 0);
        ring.add(0, 10, 3);
        assert_eq!(ring.sum(0), (COUNT_MAX, 3));
    }

    proptest::proptest! {
        #[test]
        fn sum_matches_a_naive_log(events in proptest::collection::vec((0u64..50, 0u64..3, 0u64..3), 1..200)) {
            let width = 100u64;
            let ring = BucketRing::new(5, Duration::from_nanos(width));
            let mut now = 0;
            let mut log = Vec::new();
            for (step, a, b) in events {
                now += step;
                ring.add(now, a, b);
                log.push((now / width, a, b));
                let tick = now / width;
                let expected = log.iter()
                    .filter(|(t, _, _)| *t + 5 > tick)
                    .fold((0, 0), |acc, (_, a, b)| (acc.0 + a, acc.1 + b));
                proptest::prop_assert_eq!(ring.sum(now), expected);
            }
        }
    }
}

//! The last N calls as bitsets, for count-based failure and slow-call rates.

use crate::sync::{AtomicU32, AtomicU64, Ordering};

/// Totals over the window.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    /// Calls in the window (at most its size).
    pub(crate) calls: u32,
    /// Of those, failures.
    pub(crate) failures: u32,
    /// Of those, slow calls.
    pub(crate) slow: u32,
}

/// A ring of the last `size` outcomes.
///
/// The slot a call lands in is claimed with one atomic add on a wrapping counter, reduced
/// modulo `size` without a division (Lemire's fastmod); its bits are
/// then flipped with `fetch_or`/`fetch_and`, whose returned previous value says whether a
/// counter must change. The counters therefore always equal the number of set bits, even
/// when two calls race; only the rare case of two calls landing in one slot after the
/// ring wrapped under them can lose one of the two outcomes.
pub(crate) struct OutcomeRing {
    head: AtomicU32,
    filled: AtomicU32,
    size: u32,
    /// `u64::MAX / size + 1` (wrapping: 0 for a size of 1), for [`fastmod`].
    magic: u64,
    failures: AtomicU32,
    slow: AtomicU32,
    failure_bits: Box<[AtomicU64]>,
    slow_bits: Box<[AtomicU64]>,
}

impl OutcomeRing {
    /// A ring of `size` slots (at least 1).
    pub(crate) fn new(size: u32) -> Self {
        let size = size.max(1);
        let words = size.div_ceil(64) as usize;
        Self {
            head: AtomicU32::new(0),
            filled: AtomicU32::new(0),
            size,
            magic: (u64::MAX / u64::from(size)).wrapping_add(1),
            failures: AtomicU32::new(0),
            slow: AtomicU32::new(0),
            failure_bits: (0..words).map(|_| AtomicU64::new(0)).collect(),
            slow_bits: (0..words).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// The slot of the next call. The counter wraps at 2^32, where the sequence of slots
    /// skips once unless `size` divides 2^32: harmless for a rate estimate.
    #[inline]
    fn claim_slot(&self) -> u32 {
        let ticket = self.head.fetch_add(1, Ordering::Relaxed);
        fastmod(ticket, self.magic, self.size)
    }

    /// Records one call; returns true if the window now holds a failure or a slow call,
    /// i.e. when a rate threshold may be crossed and the caller must judge it. A success
    /// can cross one too (it may bring the window to its minimum number of calls), so
    /// the answer does not depend on what was recorded.
    ///
    /// A success arriving while the window is full of successes changes nothing (every
    /// slot it could evict holds a success too), so it writes nothing: in the healthy
    /// steady state, threads sharing a breaker only read its window, and its cache lines
    /// are not bounced between cores. Once a failure or slow call is in the window, every
    /// call advances the ring again, so that outcome leaves after exactly `size` calls.
    #[inline]
    pub(crate) fn record(&self, failed: bool, slow: bool) -> bool {
        if !failed && !slow && self.is_full_of_successes() {
            return false;
        }
        let slot = self.claim_slot();
        if self.filled.load(Ordering::Relaxed) < self.size {
            self.filled.fetch_add(1, Ordering::Relaxed);
        }
        let word = (slot / 64) as usize;
        let mask = 1u64 << (slot % 64);
        set_bit(&self.failure_bits[word], mask, failed, &self.failures);
        set_bit(&self.slow_bits[word], mask, slow, &self.slow);
        self.failures.load(Ordering::Relaxed) != 0 || self.slow.load(Ordering::Relaxed) != 0
    }

    #[inline]
    fn is_full_of_successes(&self) -> bool {
        self.failures.load(Ordering::Relaxed) == 0
            && self.slow.load(Ordering::Relaxed) == 0
            && self.filled.load(Ordering::Relaxed) >= self.size
    }

    /// The totals now.
    pub(crate) fn counts(&self) -> Counts {
        Counts {
            calls: self.filled.load(Ordering::Relaxed).min(self.size),
            failures: self.failures.load(Ordering::Relaxed),
            slow: self.slow.load(Ordering::Relaxed),
        }
    }

    /// Forgets every call.
    pub(crate) fn clear(&self) {
        for word in self.failure_bits.iter().chain(self.slow_bits.iter()) {
            word.store(0, Ordering::Relaxed);
        }
        self.failures.store(0, Ordering::Relaxed);
        self.slow.store(0, Ordering::Relaxed);
        self.filled.store(0, Ordering::Relaxed);
        self.head.store(0, Ordering::Relaxed);
    }
}

/// `a % d` for a 32-bit `d`, given `magic = u64::MAX / d + 1` (Lemire, Kaser, Kurz 2019).
#[inline]
fn fastmod(a: u32, magic: u64, d: u32) -> u32 {
    let low = magic.wrapping_mul(u64::from(a));
    ((u128::from(low) * u128::from(d)) >> 64) as u32
}

/// Sets or clears `mask` in `word`, keeping `count` equal to the set bits.
#[inline]
fn set_bit(word: &AtomicU64, mask: u64, value: bool, count: &AtomicU32) {
    if value {
        let previous = word.fetch_or(mask, Ordering::Relaxed);
        if previous & mask == 0 {
            count.fetch_add(1, Ordering::Relaxed);
        }
    } else if word.load(Ordering::Relaxed) & mask != 0 {
        let previous = word.fetch_and(!mask, Ordering::Relaxed);
        if previous & mask != 0 {
            count.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

#[cfg(all(test, not(palisade_loom)))]
mod tests {
    use super::*;

    #[test]
    fn fastmod_is_modulo() {
        for d in [1u32, 2, 3, 7, 10, 100, 1000, 65_537, 100_000] {
            let magic = (u64::MAX / u64::from(d)).wrapping_add(1);
            for a in [0u32, 1, 2, 99, 12_345, u32::MAX / 3, u32::MAX - 1, u32::MAX] {
                assert_eq!(fastmod(a, magic, d), a % d, "{a} % {d}");
            }
        }
    }

    #[test]
    fn counts_follow_the_last_n_calls() {
        let ring = OutcomeRing::new(3);
        assert!(ring.record(true, false));
        assert!(
            ring.record(false, false),
            "the failure is still in the window"
        );
        assert!(ring.record(false, true));
        assert_eq!(
            ring.counts(),
            Counts {
                calls: 3,
                failures: 1,
                slow: 1
            }
        );
        // The fourth call overwrites the first (a failure).
        ring.record(false, false);
        assert_eq!(
            ring.counts(),
            Counts {
                calls: 3,
                failures: 0,
                slow: 1
            }
        );
        ring.clear();
        assert_eq!(ring.counts(), Counts::default());
    }

    #[test]
    fn successes_in_a_clean_full_window_write_nothing() {
        let ring = OutcomeRing::new(4);
        for _ in 0..4 {
            ring.record(false, false);
        }
        let head = ring.head.load(Ordering::Relaxed);
        for _ in 0..10 {
            assert!(!ring.record(false, false));
        }
        assert_eq!(
            ring.head.load(Ordering::Relaxed),
            head,
            "the ring did not move"
        );
        assert!(ring.record(true, false));
        for _ in 0..3 {
            ring.record(false, false);
        }
        assert_eq!(ring.counts().failures, 1, "the failure stays for 4 calls");
        ring.record(false, false);
        assert_eq!(
            ring.counts().failures,
            0,
            "and leaves with the 4th after it"
        );
    }

    proptest::proptest! {
        #[test]
        fn counts_equal_a_naive_window(size in 1u32..130, calls in proptest::collection::vec((proptest::bool::ANY, proptest::bool::ANY), 0..400)) {
            let ring = OutcomeRing::new(size);
            let mut naive = std::collections::VecDeque::new();
            for (failed, slow) in calls {
                ring.record(failed, slow);
                naive.push_back((failed, slow));
                if naive.len() > size as usize { naive.pop_front(); }
                let expected = Counts {
                    calls: naive.len() as u32,
                    failures: naive.iter().filter(|c| c.0).count() as u32,
                    slow: naive.iter().filter(|c| c.1).count() as u32,
                };
                proptest::prop_assert_eq!(ring.counts(), expected);
            }
        }
    }
}

//! A latency histogram over a sliding window of time: log-linear buckets, atomics only,
//! memory fixed at construction.
//!
//! Why: an adaptive timeout and a hedge learn "how long does this dependency usually
//! take?" from a high percentile of recent latencies. Keeping every sample (or a sorted
//! reservoir) costs memory that grows with traffic and a lock to sort; a histogram with
//! buckets of bounded *relative* width answers any percentile within a known error from
//! a fixed array of counters that concurrent calls bump with one compare-and-swap.
//!
//! # Buckets and accuracy
//!
//! Latencies are counted in nanoseconds. Each power of two from 2^10 ns (1.024 µs) to
//! 2^37 ns (≈ 137 s) is split into 16 equal buckets, 432 buckets in all. A bucket
//! starting at `lo` is at most `lo / 16` wide, and a percentile is reported as the
//! midpoint of the bucket holding the sample of rank ⌈p·n⌉ (the nearest-rank
//! percentile), so the reported value is within [`RELATIVE_ERROR`] (1/32 ≈ 3.1 %) of
//! that sample. Latencies below 1.024 µs are counted as 1.024 µs, and latencies of
//! 137 s or more as just under 137 s: outside that range the error is not bounded.
//!
//! # Window
//!
//! The window is `sub_windows` sub-windows of `window / sub_windows` each, in a ring.
//! Every counter is a packed `u64` — `tag:24 | count:40` — whose tag is the number (mod
//! 2^24) of the sub-window it counts for, exactly as in the [bucket ring](super::BucketRing):
//! a counter left from an older round of the ring is renewed and counted in one
//! compare-and-swap, so no sample is lost at a sub-window boundary and readers skip
//! stale counters without anyone clearing them. A counter untouched for exactly a
//! multiple of 2^24 sub-windows would be mistaken for current (with 5 s sub-windows,
//! after a quiet spell of 2.6 years). Reading sees the samples of the current
//! sub-window and of the `sub_windows − 1` before it: between `(n − 1)/n` of the window
//! and all of it.
//!
//! Memory: `sub_windows × 433 × 8` bytes (≈ 20 KiB for 6 sub-windows). Recording is two
//! compare-and-swaps (the bucket and the sub-window's total); a percentile reads every
//! counter, so callers cache it: see [`PercentileTracker`].

use std::time::Duration;

use crate::clock::{Nanos, duration_to_nanos};
use crate::sync::{AtomicU64, Ordering};

/// log2 of the buckets per power of two.
const SUB_BITS: u32 = 4;
/// Buckets per power of two.
const SUBS: usize = 1 << SUB_BITS;
/// The smallest latency told apart: 2^10 ns.
const MIN_EXP: u32 = 10;
/// Latencies from 2^37 ns (≈ 137 s) up fall in the last bucket.
const MAX_EXP: u32 = 37;
/// Buckets per sub-window.
const BUCKETS: usize = (MAX_EXP - MIN_EXP) as usize * SUBS;
/// Counters per sub-window: its buckets, then its total.
const CELLS: usize = BUCKETS + 1;

const COUNT_BITS: u32 = 40;
const COUNT_MAX: u64 = (1 << COUNT_BITS) - 1;
const TAG_MASK: u64 = (1 << (64 - COUNT_BITS)) - 1;

/// A percentile is within this fraction (1/32) of the exact nearest-rank percentile,
/// for latencies from 2^10 ns to 2^37 ns.
#[cfg(all(test, not(palisade_loom)))]
pub(crate) const RELATIVE_ERROR: f64 = 1.0 / (2 * SUBS) as f64;

/// Latencies over the last `window` of time; see the [module documentation](self).
pub(crate) struct LatencyWindow {
    /// `sub_windows × CELLS` counters: each sub-window's buckets, then its total.
    cells: Box<[AtomicU64]>,
    sub_windows: u64,
    /// Nanoseconds per sub-window.
    width: Nanos,
}

impl LatencyWindow {
    /// A window of `window`, made of `sub_windows` sub-windows (both at least 1).
    pub(crate) fn new(window: Duration, sub_windows: usize) -> Self {
        let sub_windows = sub_windows.max(1);
        let cells = (0..sub_windows * CELLS)
            .map(|_| AtomicU64::new(0))
            .collect();
        let width = (duration_to_nanos(window) / sub_windows as u64).max(1);
        Self {
            cells,
            sub_windows: sub_windows as u64,
            width,
        }
    }

    /// Counts one call that took `latency`, finished at `now`.
    pub(crate) fn record(&self, now: Nanos, latency: Duration) {
        let tick = now / self.width;
        let base = self.base(tick % self.sub_windows);
        let tag = tick & TAG_MASK;
        increment(&self.cells[base + bucket_of(latency)], tag);
        increment(&self.cells[base + BUCKETS], tag);
    }

    /// Samples in the window ending at `now`.
    pub(crate) fn count(&self, now: Nanos) -> u64 {
        self.current_sub_windows(now)
            .map(|(base, tag)| current(&self.cells[base + BUCKETS], tag))
            .sum()
    }

    /// The nearest-rank `p` percentile (`0 < p < 1`) of the samples in the window ending
    /// at `now`, within [`RELATIVE_ERROR`]; `None` if the window is empty.
    pub(crate) fn percentile(&self, now: Nanos, p: f64) -> Option<Duration> {
        let mut merged = [0u64; BUCKETS];
        let mut total = 0u64;
        for (base, tag) in self.current_sub_windows(now) {
            // A stale total means nothing was recorded in this round of the ring.
            if current(&self.cells[base + BUCKETS], tag) == 0 {
                continue;
            }
            for (sum, cell) in merged.iter_mut().zip(&self.cells[base..base + BUCKETS]) {
                let count = current(cell, tag);
                *sum += count;
                total += count;
            }
        }
        if total == 0 {
            return None;
        }
        let rank = rank(p, total);
        let mut seen = 0u64;
        for (bucket, count) in merged.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return Some(Duration::from_nanos(midpoint(bucket)));
            }
        }
        None
    }

    fn base(&self, slot: u64) -> usize {
        slot as usize * CELLS
    }

    /// `(first counter, expected tag)` of each sub-window belonging to the window that
    /// ends at `now`.
    fn current_sub_windows(&self, now: Nanos) -> impl Iterator<Item = (usize, u64)> + '_ {
        let tick = now / self.width;
        let n = self.sub_windows;
        (0..n).filter_map(move |slot| {
            // The latest tick at or before `tick` that maps to this slot.
            let slot_tick = tick.checked_sub((tick + n - slot) % n)?;
            Some((self.base(slot), slot_tick & TAG_MASK))
        })
    }
}

/// The rank (1-based) of the nearest-rank `p` percentile among `n` samples.
pub(crate) fn rank(p: f64, n: u64) -> u64 {
    ((p * n as f64).ceil() as u64).clamp(1, n.max(1))
}

/// The bucket counting `latency`.
fn bucket_of(latency: Duration) -> usize {
    let nanos = duration_to_nanos(latency).clamp(1 << MIN_EXP, (1 << MAX_EXP) - 1);
    let exp = 63 - nanos.leading_zeros();
    let sub = (nanos >> (exp - SUB_BITS)) as usize & (SUBS - 1);
    (exp - MIN_EXP) as usize * SUBS + sub
}

/// The middle of `bucket`, in nanoseconds.
fn midpoint(bucket: usize) -> u64 {
    let exp = MIN_EXP + (bucket / SUBS) as u32;
    let width = 1u64 << (exp - SUB_BITS);
    let low = (1u64 << exp) + (bucket % SUBS) as u64 * width;
    low + width / 2
}

/// Adds one to `cell` for the sub-window tagged `tag`, renewing it if it held another.
fn increment(cell: &AtomicU64, tag: u64) {
    let mut seen = cell.load(Ordering::Relaxed);
    loop {
        let next = if seen >> COUNT_BITS == tag {
            (tag << COUNT_BITS) | ((seen & COUNT_MAX) + 1).min(COUNT_MAX)
        } else {
            (tag << COUNT_BITS) | 1
        };
        match cell.compare_exchange_weak(seen, next, Ordering::AcqRel, Ordering::Relaxed) {
            Ok(_) => return,
            Err(actual) => seen = actual,
        }
    }
}

/// The count in `cell` if it belongs to the sub-window tagged `tag`, else zero.
fn current(cell: &AtomicU64, tag: u64) -> u64 {
    let word = cell.load(Ordering::Acquire);
    if word >> COUNT_BITS == tag {
        word & COUNT_MAX
    } else {
        0
    }
}

/// A percentile of a [`LatencyWindow`], recomputed at most once per `refresh` and
/// reported only once the window holds `min_samples` samples.
///
/// Reading it is two atomic loads; the call that finds the cached value due recomputes
/// it (claiming the refresh with a compare-and-swap, so only one call does).
pub(crate) struct PercentileTracker {
    window: LatencyWindow,
    percentile: f64,
    min_samples: u64,
    refresh: Nanos,
    next_refresh: AtomicU64,
    /// The last percentile in nanoseconds, or [`UNKNOWN`].
    cached: AtomicU64,
}

/// The cached percentile while the window has too few samples.
const UNKNOWN: u64 = u64::MAX;

impl PercentileTracker {
    /// Tracks the `percentile` of latencies over `window` (in `sub_windows`
    /// sub-windows), known once `min_samples` exist, recomputed every `window / 100`.
    pub(crate) fn new(
        window: Duration,
        sub_windows: usize,
        percentile: f64,
        min_samples: u64,
    ) -> Self {
        Self {
            window: LatencyWindow::new(window, sub_windows),
            percentile,
            min_samples,
            refresh: (duration_to_nanos(window) / 100).max(1),
            next_refresh: AtomicU64::new(0),
            cached: AtomicU64::new(UNKNOWN),
        }
    }

    /// Counts one sample.
    pub(crate) fn record(&self, now: Nanos, latency: Duration) {
        self.window.record(now, latency);
    }

    /// The percentile, or `None` while the window holds fewer than `min_samples`.
    pub(crate) fn get(&self, now: Nanos) -> Option<Duration> {
        let due = self.next_refresh.load(Ordering::Relaxed);
        if now >= due
            && self
                .next_refresh
                .compare_exchange(
                    due,
                    now.saturating_add(self.refresh),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok()
        {
            let fresh = if self.window.count(now) >= self.min_samples {
                self.window
                    .percentile(now, self.percentile)
                    .map_or(UNKNOWN, duration_to_nanos)
            } else {
                UNKNOWN
            };
            self.cached.store(fresh, Ordering::Relaxed);
            return decode(fresh);
        }
        decode(self.cached.load(Ordering::Relaxed))
    }

    /// Samples in the window now.
    pub(crate) fn samples(&self, now: Nanos) -> u64 {
        self.window.count(now)
    }
}

fn decode(nanos: u64) -> Option<Duration> {
    (nanos != UNKNOWN).then(|| Duration::from_nanos(nanos))
}

#[cfg(all(test, not(palisade_loom)))]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    fn exact(log: &[(u64, Duration)], since_tick: u64, width: u64, p: f64) -> Option<Duration> {
        let mut window: Vec<Duration> = log
            .iter()
            .filter(|(at, _)| at / width >= since_tick)
            .map(|(_, d)| *d)
            .collect();
        if window.is_empty() {
            return None;
        }
        window.sort();
        Some(window[rank(p, window.len() as u64) as usize - 1])
    }

    #[test]
    fn buckets_cover_the_range_in_order_with_bounded_width() {
        let mut last = 0;
        for bucket in 0..BUCKETS {
            let mid = midpoint(bucket);
            assert!(mid > last, "midpoints increase");
            assert_eq!(bucket_of(Duration::from_nanos(mid)), bucket);
            last = mid;
        }
        assert_eq!(bucket_of(Duration::ZERO), 0);
        assert_eq!(bucket_of(Duration::from_nanos(1 << MIN_EXP)), 0);
        assert_eq!(
            bucket_of(Duration::from_nanos((1 << MAX_EXP) - 1)),
            BUCKETS - 1
        );
        assert_eq!(bucket_of(Duration::from_secs(3600)), BUCKETS - 1);
    }

    #[test]
    fn percentiles_of_a_simple_window() {
        let w = LatencyWindow::new(Duration::from_secs(10), 5);
        assert_eq!(w.percentile(0, 0.99), None);
        for i in 1..=100u64 {
            w.record(0, Duration::from_millis(i));
        }
        assert_eq!(w.count(0), 100);
        let p50 = w.percentile(0, 0.5).unwrap().as_secs_f64();
        let p99 = w.percentile(0, 0.99).unwrap().as_secs_f64();
        assert!((p50 / 0.050 - 1.0).abs() <= RELATIVE_ERROR, "{p50}");
        assert!((p99 / 0.099 - 1.0).abs() <= RELATIVE_ERROR, "{p99}");
    }

    #[test]
    fn old_sub_windows_leave_the_window() {
        let w = LatencyWindow::new(Duration::from_secs(10), 5);
        w.record(0, Duration::from_millis(100));
        w.record(5_000 * MS, Duration::from_millis(10));
        assert_eq!(w.count(9_999 * MS), 2);
        // At 10 s the sub-window of t = 0 (0–2 s) has left; the one of 5 s stays.
        assert_eq!(w.count(10_000 * MS), 1);
        let p = w.percentile(10_000 * MS, 0.99).unwrap();
        assert!((p.as_secs_f64() / 0.010 - 1.0).abs() <= RELATIVE_ERROR);
        assert_eq!(w.count(20_000 * MS), 0);
        assert_eq!(w.percentile(20_000 * MS, 0.99), None);
        // The slot of t = 0 is renewed, not added to, a round later.
        w.record(20_000 * MS, Duration::from_millis(1));
        assert_eq!(w.count(20_000 * MS), 1);
    }

    #[test]
    fn the_tracker_waits_for_min_samples_and_caches_between_refreshes() {
        let t = PercentileTracker::new(Duration::from_secs(1), 4, 0.5, 3);
        t.record(0, Duration::from_millis(5));
        t.record(0, Duration::from_millis(5));
        assert_eq!(t.get(0), None, "two samples of three");
        t.record(0, Duration::from_millis(5));
        assert_eq!(
            t.get(MS),
            None,
            "not recomputed within 10 ms of the last time"
        );
        let p = t.get(10 * MS).unwrap();
        assert!((p.as_secs_f64() / 0.005 - 1.0).abs() <= RELATIVE_ERROR);
        assert_eq!(t.samples(10 * MS), 3);
    }

    #[test]
    fn concurrent_recording_loses_nothing() {
        let w = std::sync::Arc::new(LatencyWindow::new(Duration::from_secs(1), 4));
        let threads: Vec<_> = (0..4u64)
            .map(|i| {
                let w = w.clone();
                std::thread::spawn(move || {
                    for j in 0..10_000u64 {
                        // Cross sub-window boundaries while racing.
                        w.record(j * 100_000, Duration::from_micros(10 * (i + 1)));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        // Sub-windows of 250 ms; at 0.9999 s the window holds all four, so every sample.
        assert_eq!(w.count(9_999 * 100_000), 40_000);
    }

    proptest::proptest! {
        /// At every step the percentile is within the documented error of the exact
        /// nearest-rank percentile over a naive log of the samples in the window.
        #[test]
        fn percentile_matches_a_naive_log_within_the_error(
            sub_windows in 1usize..8,
            p in 0.01f64..0.999,
            steps in proptest::collection::vec((0u64..400, 10.0f64..37.0), 1..300),
        ) {
            let window_ms = 1000u64;
            let w = LatencyWindow::new(Duration::from_millis(window_ms), sub_windows);
            let width = window_ms * MS / sub_windows as u64;
            let mut now = 0u64;
            let mut log = Vec::new();
            for (gap_ms, log2_nanos) in steps {
                now += gap_ms * MS;
                // Log-uniform latencies over the measured range.
                let latency = Duration::from_nanos(2f64.powf(log2_nanos) as u64);
                w.record(now, latency);
                log.push((now, latency));
                let tick = now / width;
                let since = tick.saturating_sub(sub_windows as u64 - 1);
                let expected = exact(&log, since, width, p);
                let got = w.percentile(now, p);
                let in_window = log.iter().filter(|(at, _)| at / width >= since).count() as u64;
                proptest::prop_assert_eq!(w.count(now), in_window);
                match (expected, got) {
                    (Some(e), Some(g)) => {
                        let error = (g.as_secs_f64() / e.as_secs_f64() - 1.0).abs();
                        proptest::prop_assert!(error <= RELATIVE_ERROR + 1e-9,
                            "p{p}: {g:?} vs exact {e:?}, error {error}");
                    }
                    (e, g) => proptest::prop_assert_eq!(e, g),
                }
            }
        }
    }
}

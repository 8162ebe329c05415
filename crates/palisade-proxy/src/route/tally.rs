//! A route's answers as the dashboard reads them: counts by reason, server errors, sheds
//! by criticality and a latency histogram, in atomics.
//!
//! Prometheus keeps cumulative series for scrapers; the dashboard needs each second's
//! own figures (its rate, success share and percentiles), so the route counts them a
//! second time here. A relayed answer costs one relaxed increment (its latency bucket,
//! whose sum is the number of answers); the proxy's own answers and 5xx ones one more
//! each. One reader, the
//! dashboard's sampler, [`take`](Tally::take)s them — reading and zeroing each cell —
//! so a sample holds exactly the answers since the last one.
//!
//! Latency is bucketed log-linearly: four buckets per power of two of microseconds, so
//! a percentile read from a bucket's middle is within 12% of the true value, from 1 µs
//! to about a day (longer ones share the last bucket).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use http::StatusCode;
use palisade::criticality::Criticality;

use crate::respond::Reason;

/// Buckets per power of two.
const SUB_BUCKETS: usize = 4;
/// Powers of two of microseconds covered: 2^37 µs is about 38 hours.
const OCTAVES: usize = 37;
/// Latency buckets.
pub const BUCKETS: usize = OCTAVES * SUB_BUCKETS;
/// The proxy's own answers, by [`Reason::index`].
const REASONS: usize = Reason::ALL.len();

/// The live counters of one route.
pub struct Tally {
    by_reason: [AtomicU64; REASONS],
    server_errors: AtomicU64,
    shed: [AtomicU64; Criticality::ALL.len()],
    latency: [AtomicU64; BUCKETS],
}

/// What a [`Tally`] counted between two takes; sums with [`Counts::add`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Counts {
    /// The proxy's own answers, by [`Reason::index`].
    pub by_reason: [u64; REASONS],
    /// Answers with a 5xx status.
    pub server_errors: u64,
    /// Requests shed, by [`Criticality::rank`].
    pub shed: [u64; Criticality::ALL.len()],
    /// Latencies (see the module's doc).
    pub latency: [u64; BUCKETS],
}

// === impl Tally ===

impl Default for Tally {
    fn default() -> Self {
        Self {
            by_reason: std::array::from_fn(|_| AtomicU64::new(0)),
            server_errors: AtomicU64::new(0),
            shed: std::array::from_fn(|_| AtomicU64::new(0)),
            latency: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

impl Tally {
    /// Counts one answer.
    #[inline]
    pub fn record(&self, status: StatusCode, reason: Option<Reason>, took: Duration) {
        if let Some(reason) = reason {
            self.by_reason[reason.index()].fetch_add(1, Ordering::Relaxed);
        }
        if status.is_server_error() {
            self.server_errors.fetch_add(1, Ordering::Relaxed);
        }
        self.latency[bucket_of(took)].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a request shed in `class`.
    pub fn shed(&self, class: Criticality) {
        self.shed[class.rank()].fetch_add(1, Ordering::Relaxed);
    }

    /// What was counted since the last take; the counters start again from zero.
    pub fn take(&self) -> Counts {
        let take = |cell: &AtomicU64| cell.swap(0, Ordering::Relaxed);
        Counts {
            by_reason: std::array::from_fn(|i| take(&self.by_reason[i])),
            server_errors: take(&self.server_errors),
            shed: std::array::from_fn(|i| take(&self.shed[i])),
            latency: std::array::from_fn(|i| take(&self.latency[i])),
        }
    }
}

// === impl Counts ===

impl Default for Counts {
    fn default() -> Self {
        Self {
            by_reason: [0; REASONS],
            server_errors: 0,
            shed: [0; Criticality::ALL.len()],
            latency: [0; BUCKETS],
        }
    }
}

impl Counts {
    /// Adds `other`'s counts to these.
    pub fn add(&mut self, other: &Counts) {
        let sum = |a: &mut [u64], b: &[u64]| a.iter_mut().zip(b).for_each(|(a, b)| *a += b);
        sum(&mut self.by_reason, &other.by_reason);
        sum(&mut self.shed, &other.shed);
        sum(&mut self.latency, &other.latency);
        self.server_errors += other.server_errors;
    }

    /// Every answer (each has its latency counted once).
    pub fn answers(&self) -> u64 {
        self.latency.iter().sum()
    }

    /// Answers the proxy gave for `reason`.
    pub fn of(&self, reason: Reason) -> u64 {
        self.by_reason[reason.index()]
    }

    /// The latency under which a share `q` (0 to 1) of the answers fell, from the middle
    /// of its bucket; `None` without answers.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        let total: u64 = self.latency.iter().sum();
        if total == 0 {
            return None;
        }
        // The rank of the answer sought, 1-based: at least the first, at most the last.
        #[allow(
            clippy::cast_precision_loss,
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss
        )]
        let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).clamp(1, total);
        let mut seen = 0;
        for (bucket, n) in self.latency.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Some(middle_of(bucket));
            }
        }
        None
    }
}

/// The bucket of a latency: `4 × octave + the two bits below its highest`, where the
/// octave is the position of the highest bit of its microseconds (0 µs and 1 µs: 0).
fn bucket_of(took: Duration) -> usize {
    // In u64 (`as_micros` divides in u128, a library call on the request path).
    let micros = took
        .as_secs()
        .saturating_mul(1_000_000)
        .saturating_add(u64::from(took.subsec_micros()));
    if micros < SUB_BUCKETS as u64 {
        return usize::try_from(micros).unwrap_or(0);
    }
    let octave = 63 - micros.leading_zeros() as usize;
    let sub = usize::try_from((micros >> (octave - 2)) & 3).unwrap_or(0);
    ((octave - 1) * SUB_BUCKETS + sub).min(BUCKETS - 1)
}

/// The middle of a bucket's range.
fn middle_of(bucket: usize) -> Duration {
    if bucket < SUB_BUCKETS {
        return Duration::from_micros(bucket as u64);
    }
    let octave = bucket / SUB_BUCKETS + 1;
    let sub = (bucket % SUB_BUCKETS) as u64;
    let width = 1u64 << (octave - 2);
    let low = (1u64 << octave) + sub * width;
    Duration::from_micros(low + width / 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn us(n: u64) -> Duration {
        Duration::from_micros(n)
    }

    #[test]
    fn a_bucket_holds_the_latencies_its_middle_stands_for() {
        for micros in [
            0, 1, 3, 4, 5, 7, 8, 100, 999, 1_000, 65_535, 1_000_000, 90_000_000,
        ] {
            let middle = middle_of(bucket_of(us(micros))).as_micros() as f64;
            let error = (middle - micros as f64).abs() / (micros as f64).max(1.0);
            assert!(error <= 0.125, "{micros} µs read as {middle} µs");
        }
    }

    #[test]
    fn buckets_grow_with_latency_and_stay_in_range() {
        let mut last = 0;
        for micros in (0..40).map(|p| 1u64 << p) {
            let bucket = bucket_of(us(micros));
            assert!(bucket >= last && bucket < BUCKETS, "{micros}: {bucket}");
            last = bucket;
        }
        assert_eq!(bucket_of(Duration::MAX), BUCKETS - 1);
    }

    #[test]
    fn a_take_returns_what_was_counted_and_starts_again() {
        let tally = Tally::default();
        for ms in 1..=100 {
            tally.record(StatusCode::OK, None, Duration::from_millis(ms));
        }
        tally.record(
            StatusCode::SERVICE_UNAVAILABLE,
            Some(Reason::CircuitOpen),
            us(10),
        );
        tally.shed(Criticality::Sheddable);
        let counts = tally.take();
        assert_eq!(counts.answers(), 101);
        assert_eq!(counts.server_errors, 1);
        assert_eq!(counts.of(Reason::CircuitOpen), 1);
        assert_eq!(counts.shed[Criticality::Sheddable.rank()], 1);
        let p50 = counts.quantile(0.5).unwrap().as_secs_f64();
        let p99 = counts.quantile(0.99).unwrap().as_secs_f64();
        assert!((0.044..=0.056).contains(&p50), "p50 {p50}");
        assert!((0.087..=0.112).contains(&p99), "p99 {p99}");
        assert_eq!(
            tally.take(),
            Counts::default(),
            "a take zeroes the counters"
        );
        assert_eq!(Counts::default().quantile(0.5), None);
    }

    #[test]
    fn counts_add_up() {
        let (a, b) = (Tally::default(), Tally::default());
        a.record(StatusCode::OK, None, us(10));
        b.record(StatusCode::BAD_GATEWAY, None, us(20));
        let mut sum = a.take();
        sum.add(&b.take());
        assert_eq!((sum.answers(), sum.server_errors), (2, 1));
    }
}

//! The one time source every policy reads.
//!
//! Policies never call `std::time::Instant::now` (clippy's `disallowed-methods` bans it):
//! they hold a [`Clock`] and read *nanoseconds since the clock's epoch* as a plain `u64`,
//! which fits in an atomic and so keeps time-stamped state lock-free.
//!
//! * [`Clock::tokio`] (the default) reads `tokio::time::Instant`, so a test that runs on
//!   tokio's paused clock (`#[tokio::test(start_paused = true)]`) controls every timer,
//!   every window and every open-state wait of every policy.
//! * [`Clock::manual`] is advanced by hand through its [`ManualClock`] handle; it needs
//!   no runtime at all, which suits property tests and loom models of the synchronous
//!   state machines.
//! * [`Clock::fast`] reads the CPU's time-stamp counter (through `quanta`, as governor
//!   does): a few nanoseconds instead of a `clock_gettime` call (about 30 ns on some
//!   virtual machines). It does **not** follow tokio's paused clock, so use it in
//!   production for hot rate limiters and keep the default in tests.
//!
//! ```
//! use std::time::Duration;
//! use palisade::clock::Clock;
//!
//! let (clock, hand) = Clock::manual();
//! let start = clock.now();
//! hand.advance(Duration::from_millis(250));
//! assert_eq!(clock.elapsed_since(start), Duration::from_millis(250));
//! ```

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::sync::{AtomicU64, Ordering};

/// Nanoseconds since a [`Clock`]'s epoch.
pub type Nanos = u64;

/// A cheap, cloneable time source; see the [module documentation](self).
#[derive(Clone)]
pub struct Clock {
    source: Source,
}

#[derive(Clone)]
enum Source {
    Tokio {
        epoch: tokio::time::Instant,
    },
    /// Its own `quanta::Clock` (read directly, not through quanta's global clock and its
    /// thread-local override check) and the raw counter at its epoch.
    Fast {
        clock: quanta::Clock,
        epoch: u64,
    },
    Manual(Arc<AtomicU64>),
}

/// The hand of a manual [`Clock`]: moves it forward.
#[derive(Clone)]
pub struct ManualClock {
    nanos: Arc<AtomicU64>,
}

/// A year: how far ahead "never" is placed when a deadline would overflow `Instant`.
const FAR_FUTURE: Duration = Duration::from_secs(365 * 86_400);

/// `at + by`, or a year after `at` if that would overflow `Instant`.
pub fn instant_after(at: tokio::time::Instant, by: Duration) -> tokio::time::Instant {
    at.checked_add(by).unwrap_or_else(|| at + FAR_FUTURE)
}

/// Converts a duration to whole nanoseconds, saturating at `u64::MAX` (about 584 years).
pub fn duration_to_nanos(duration: Duration) -> Nanos {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

// === impl Clock ===

impl Clock {
    /// A clock that reads tokio's time, honouring a paused test clock. Its epoch is now.
    pub fn tokio() -> Self {
        Self {
            source: Source::Tokio {
                epoch: tokio::time::Instant::now(),
            },
        }
    }

    /// A clock reading the CPU's time-stamp counter; see the [module docs](self). It
    /// ignores tokio's paused clock. Its epoch is now.
    #[allow(clippy::disallowed_methods)] // the one reader of quanta's clock
    pub fn fast() -> Self {
        let clock = quanta::Clock::new();
        let epoch = clock.raw();
        Self {
            source: Source::Fast { clock, epoch },
        }
    }

    /// A clock that only moves when its [`ManualClock`] says so. It starts at zero.
    pub fn manual() -> (Self, ManualClock) {
        let nanos = Arc::new(AtomicU64::new(0));
        let clock = Self {
            source: Source::Manual(nanos.clone()),
        };
        (clock, ManualClock { nanos })
    }

    /// Nanoseconds since this clock's epoch.
    #[inline]
    #[allow(clippy::disallowed_methods)] // the one reader of quanta's clock
    pub fn now(&self) -> Nanos {
        match &self.source {
            Source::Tokio { epoch } => duration_to_nanos(epoch.elapsed()),
            Source::Fast { clock, epoch } => clock.delta_as_nanos(*epoch, clock.raw()),
            Source::Manual(nanos) => nanos.load(Ordering::Acquire),
        }
    }

    /// Time passed since `start`, an earlier reading of this clock (zero if none passed).
    #[inline]
    pub fn elapsed_since(&self, start: Nanos) -> Duration {
        Duration::from_nanos(self.now().saturating_sub(start))
    }

    /// The tokio instant corresponding to the reading `at`, for `tokio::time::sleep_until`.
    ///
    /// For a manual clock this is "now plus the distance to `at`", which is what a timer
    /// needs; manual clocks are not meant to drive tokio timers.
    pub fn to_tokio_instant(&self, at: Nanos) -> tokio::time::Instant {
        match &self.source {
            Source::Tokio { epoch } => instant_after(*epoch, Duration::from_nanos(at)),
            Source::Fast { .. } | Source::Manual(_) => {
                let ahead = at.saturating_sub(self.now());
                instant_after(tokio::time::Instant::now(), Duration::from_nanos(ahead))
            }
        }
    }

    /// The reading of this clock at the tokio instant `at` (zero if `at` precedes the epoch).
    pub fn from_tokio_instant(&self, at: tokio::time::Instant) -> Nanos {
        match &self.source {
            Source::Tokio { epoch } => duration_to_nanos(at.saturating_duration_since(*epoch)),
            Source::Fast { .. } | Source::Manual(_) => {
                let ahead = at.saturating_duration_since(tokio::time::Instant::now());
                self.now().saturating_add(duration_to_nanos(ahead))
            }
        }
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::tokio()
    }
}

impl fmt::Debug for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.source {
            Source::Tokio { .. } => f.write_str("Clock::Tokio"),
            Source::Fast { .. } => f.write_str("Clock::Fast"),
            Source::Manual(n) => write!(f, "Clock::Manual({}ns)", n.load(Ordering::Relaxed)),
        }
    }
}

// === impl ManualClock ===

impl ManualClock {
    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        self.nanos
            .fetch_add(duration_to_nanos(by), Ordering::AcqRel);
    }

    /// Sets the clock to `nanos` since its epoch; it never moves backwards.
    pub fn set(&self, nanos: Nanos) {
        self.nanos.fetch_max(nanos, Ordering::AcqRel);
    }
}

#[cfg(all(test, not(palisade_loom)))]
mod tests {
    use super::*;

    #[test]
    fn the_fast_clock_is_monotonic_and_tracks_real_time() {
        let fast = Clock::fast();
        let mut last = fast.now();
        for _ in 0..10_000 {
            let now = fast.now();
            assert!(now >= last);
            last = now;
        }
        let before = fast.now();
        std::thread::yield_now();
        let spin_until = before + 2_000_000;
        while fast.now() < spin_until {}
        assert!(fast.elapsed_since(before) >= Duration::from_millis(2));
    }
}

impl fmt::Debug for ManualClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ManualClock({}ns)", self.nanos.load(Ordering::Relaxed))
    }
}

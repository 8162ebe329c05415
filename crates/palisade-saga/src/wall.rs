//! Wall-clock milliseconds for the timestamps the store persists (deadlines, leases,
//! retention), advanced by tokio's clock.
//!
//! **Why not read the wall clock each time.** Leases and deadlines must follow tokio's
//! paused clock in tests, so that a test can pass an hour of compensation backoff or a
//! lease in microseconds. A [`WallClock`] reads `SystemTime` once, at creation, and adds
//! tokio's elapsed time since. Runners that share a store in one process should share one
//! `WallClock` (clones share the anchor); runners on different machines rely on their
//! clocks being synchronised to well under a lease.

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use tokio::time::Instant;

/// Milliseconds since the Unix epoch, advanced by tokio's clock; see the module docs.
#[derive(Clone, Debug)]
pub struct WallClock {
    anchor: Arc<(i64, Instant)>,
}

impl WallClock {
    /// Anchors at the system's current time. Needs a tokio runtime (for its clock).
    pub fn new() -> Self {
        Self {
            anchor: Arc::new((system_now_ms(), Instant::now())),
        }
    }

    /// Now, in milliseconds since the Unix epoch.
    pub fn now_ms(&self) -> i64 {
        let (base, at) = *self.anchor;
        base.saturating_add(millis(at.elapsed()))
    }
}

impl Default for WallClock {
    fn default() -> Self {
        Self::new()
    }
}

/// A duration in whole milliseconds, saturating.
pub(crate) fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// The one read of the system clock in this crate: the anchor of a [`WallClock`].
#[allow(clippy::disallowed_methods)] // reason: persisted timestamps need wall time; read once per WallClock, then advanced by tokio's clock
fn system_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(millis)
        .unwrap_or(0)
}

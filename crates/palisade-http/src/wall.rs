//! The wall clock, for the HTTP features that speak in calendar time.
//!
//! `Retry-After` may be an HTTP date, `X-Request-Deadline` is Unix milliseconds, and a
//! server dates its responses (`Date`); all need "now" as a calendar time. This is the one place in Palisade that reads it; policy
//! code reads only the monotonic [`palisade::clock::Clock`].

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Now, as a calendar time.
#[allow(clippy::disallowed_methods)] // the documented single reader of the wall clock
pub fn now() -> SystemTime {
    SystemTime::now()
}

/// Now, in milliseconds since the Unix epoch.
pub fn unix_millis() -> u64 {
    now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_millis()
        .try_into()
        .unwrap_or(u64::MAX)
}

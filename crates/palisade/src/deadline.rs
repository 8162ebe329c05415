//! Deadlines carried by a call.
//!
//! A deadline is the instant by which the caller needs an answer. It travels with the
//! future it scopes (like a task-local: set for each poll of that future), so every
//! policy inside [`scope`] sees it without it being threaded through every signature:
//!
//! * a [`Timeout`](crate::policy::timeout::Timeout) fires at the earlier of its own
//!   duration and the deadline, and reports `DeadlineExceeded` when the deadline was the
//!   one that ran out;
//! * a [`Retry`](crate::policy::retry::Retry) does not start a retry whose backoff alone
//!   would outlive the deadline;
//! * a `Timeout` itself opens a deadline scope for what it wraps, so a total budget
//!   outside a retry shortens every per-attempt timeout inside it.
//!
//! Nested scopes keep the earlier deadline: an inner scope can only shorten the budget.
//!
//! ```
//! use std::time::Duration;
//! use palisade::deadline;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let at = tokio::time::Instant::now() + Duration::from_millis(200);
//! deadline::scope(at, async {
//!     let left = deadline::remaining().unwrap();
//!     assert!(left <= Duration::from_millis(200));
//! }).await;
//! assert!(deadline::current().is_none());
//! # }
//! ```

use std::cell::Cell;
use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

use crate::context;

std::thread_local! {
    /// The deadline of the future being polled on this thread, if any.
    static DEADLINE: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// A future running with a deadline; see [`scoped`].
pub type Scoped<F> = context::Scoped<F, Instant>;

/// Wraps `future` so that it runs with `deadline` (or the current one, if earlier).
///
/// The nameable form of [`scope`], for hand-written futures such as tower services.
#[inline]
pub fn scoped<F: Future>(deadline: Instant, future: F) -> Scoped<F> {
    let deadline = match current() {
        Some(outer) if outer <= deadline => outer,
        _ => deadline,
    };
    context::Scoped::new(&DEADLINE, deadline, future)
}

/// Runs `future` with `deadline` as its deadline (or the deadline in effect where `scope`
/// is called, if earlier).
///
/// The same as [`scoped`]: a plain function returning the wrapping future rather than an
/// `async fn`, which would keep its argument and the future it awaits side by side and so
/// double the size of everything it wraps.
#[inline]
pub fn scope<F: Future>(deadline: Instant, future: F) -> Scoped<F> {
    scoped(deadline, future)
}

/// Runs `future` with a deadline `budget` from now (or the current one, if earlier).
#[inline]
pub fn scope_for<F: Future>(budget: Duration, future: F) -> Scoped<F> {
    scope(crate::clock::instant_after(Instant::now(), budget), future)
}

/// The deadline of the current task, if one is set.
#[inline]
pub fn current() -> Option<Instant> {
    context::get(&DEADLINE)
}

/// Time left until the current deadline: `None` without one, zero once it passed.
#[inline]
pub fn remaining() -> Option<Duration> {
    current().map(|d| d.saturating_duration_since(Instant::now()))
}

/// True if the current task has a deadline and it has passed.
pub fn is_exceeded() -> bool {
    remaining().is_some_and(|left| left.is_zero())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn nested_scopes_keep_the_earlier_deadline() {
        let now = Instant::now();
        scope(now + Duration::from_millis(100), async {
            scope(now + Duration::from_secs(10), async {
                assert_eq!(current(), Some(now + Duration::from_millis(100)));
            })
            .await;
            scope(now + Duration::from_millis(10), async {
                assert_eq!(current(), Some(now + Duration::from_millis(10)));
            })
            .await;
        })
        .await;
    }

    #[tokio::test(start_paused = true)]
    async fn remaining_shrinks_with_time_and_stops_at_zero() {
        scope_for(Duration::from_millis(100), async {
            tokio::time::advance(Duration::from_millis(60)).await;
            assert_eq!(remaining(), Some(Duration::from_millis(40)));
            tokio::time::advance(Duration::from_millis(60)).await;
            assert_eq!(remaining(), Some(Duration::ZERO));
            assert!(is_exceeded());
        })
        .await;
        assert_eq!(remaining(), None);
    }
}

//! Deadlines carried by a call.
//!
//! A deadline is the instant by which the caller needs an answer. It travels with the
//! future it scopes (like a task-local: set for each poll of that future), so every
//! policy inside [`scope`] sees it without it being threaded through every signature:
//!
//! * a [`Timeout`](crate::policy::timeout::Timeout) fires at the earlier of its own
//!   duration and the deadline, and reports `DeadlineExceeded` when the deadline was the
//!   one that ran out;
//! * a deadline belongs to whoever set it: a `Timeout`'s scope carries its own time, and
//!   when that runs out the `Timeout` reports its own `Timeout` error, even if a timeout
//!   inside it, for which it was a deadline, noticed first (see
//!   [which error](crate::policy::timeout#which-error));
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
//!
//! # Budgets whose clock has not started
//!
//! Reading the clock costs 20–30 ns on a virtual machine, more than the rest of a
//! timeout. A [`Timeout`](crate::policy::timeout::Timeout) therefore does not read it
//! when a call starts: until what it wraps first waits, its scope carries a *budget*
//! ("within 300 ms") rather than an instant, and readers that need an instant read the
//! clock themselves. When the wrapped future first returns `Pending`, the timeout reads
//! the clock once, arms its timer and fixes its scope to that instant; timeouts around
//! it that fix theirs in the same poll take that reading too, so a budget that an inner
//! timeout took as its deadline is fixed to the same instant by both. A call that
//! finishes on its first poll never reads the clock. The price: time the operation
//! spends computing synchronously before it first waits is not counted against the
//! timeout (it could not have been interrupted anyway). On tokio's paused clock, which
//! does not move during a poll, the two are the same.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use tokio::time::Instant;

use crate::clock::instant_after;
use crate::context;

std::thread_local! {
    /// The deadline of the future being polled on this thread, if any.
    static DEADLINE: Cell<Option<Deadline>> = const { Cell::new(None) };
}

/// The deadline a scope carries: an instant, or a budget whose clock has not started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Deadline(Bound);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Bound {
    /// By this instant.
    At(Instant),
    /// Within this long from now: the scope is in its first poll and has not waited
    /// yet, so nobody has read the clock for it. Never outlives that poll: the scope
    /// fixes it to an instant when the poll returns `Pending`.
    Within(Duration),
}

/// A future running with a deadline; see [`scoped`].
pub type Scoped<F> = context::Scoped<F, Deadline>;

// === impl Deadline ===

impl Deadline {
    /// A deadline at `instant`.
    pub fn at(instant: Instant) -> Self {
        Deadline(Bound::At(instant))
    }

    /// A budget of `budget` from now, the clock not read until it must be.
    pub(crate) fn within(budget: Duration) -> Self {
        Deadline(Bound::Within(budget))
    }

    /// The instant; reads the clock for a budget not yet fixed.
    #[inline]
    pub fn instant(self) -> Instant {
        match self.0 {
            Bound::At(at) => at,
            Bound::Within(budget) => from_now(budget),
        }
    }

    /// Time left, zero once passed; no clock read for a budget not yet fixed.
    #[inline]
    pub fn remaining(self) -> Duration {
        match self.0 {
            Bound::At(at) => at.saturating_duration_since(Instant::now()),
            Bound::Within(budget) => budget,
        }
    }

    /// True if it is an instant, not a budget.
    #[inline]
    pub(crate) fn is_fixed(self) -> bool {
        matches!(self.0, Bound::At(_))
    }

    /// This deadline as an instant, a budget counted from `now`.
    #[inline]
    pub(crate) fn fixed_at(self, now: Instant) -> Self {
        match self.0 {
            Bound::At(_) => self,
            Bound::Within(budget) => Deadline(Bound::At(instant_after(now, budget))),
        }
    }

    /// True if `self` ends no later than `other`. Two budgets compare without the
    /// clock; a budget and an instant read it once.
    #[inline(always)]
    pub(crate) fn no_later_than(self, other: Deadline) -> bool {
        match (self.0, other.0) {
            (Bound::Within(a), Bound::Within(b)) => a <= b,
            (Bound::At(a), Bound::At(b)) => a <= b,
            _ => self.instant() <= other.instant(),
        }
    }

    /// True if no time is left.
    #[inline]
    pub(crate) fn is_spent(self) -> bool {
        match self.0 {
            Bound::At(at) => at <= Instant::now(),
            Bound::Within(budget) => budget.is_zero(),
        }
    }

    /// The earlier of the two.
    #[inline(always)]
    fn earlier(self, other: Deadline) -> Deadline {
        if self.no_later_than(other) {
            self
        } else {
            other
        }
    }
}

/// `budget` from now: the one clock read of a budget, kept out of line.
#[inline(never)]
fn from_now(budget: Duration) -> Instant {
    instant_after(Instant::now(), budget)
}

/// Wraps `future` so that it runs with `deadline` (or the current one, if earlier).
///
/// The nameable form of [`scope`], for hand-written futures such as tower services.
#[inline]
pub fn scoped<F: Future>(deadline: Instant, future: F) -> Scoped<F> {
    scoped_by(Deadline::at(deadline), future)
}

/// [`scoped`] for a [`Deadline`], which may be a budget not yet fixed.
#[inline(always)]
pub(crate) fn scoped_by<F: Future>(deadline: Deadline, future: F) -> Scoped<F> {
    let deadline = match current_deadline() {
        Some(outer) => outer.earlier(deadline),
        None => deadline,
    };
    context::Scoped::new(&DEADLINE, deadline, future)
}

/// A scope whose deadline is given by [`set`] before its first poll: for a future made
/// before it runs (a tower response future), whose deadline is the one in effect where it
/// is first polled.
#[inline(always)]
pub(crate) fn scoped_later<F: Future>(future: F) -> Scoped<F> {
    // Replaced before it is read: a spent budget, were it ever read.
    context::Scoped::new(&DEADLINE, Deadline::within(Duration::ZERO), future)
}

/// Sets the deadline of a scope made by [`scoped_later`], on its first poll: `deadline`
/// must be no later than the one in effect there (a scope only shortens the budget).
#[inline]
pub(crate) fn set<F>(scope: Pin<&mut Scoped<F>>, deadline: Deadline) {
    scope.set_value(deadline);
}

/// Fixes a scope's budget to an instant, once its future has waited.
#[inline]
pub(crate) fn fix<F>(scope: Pin<&mut Scoped<F>>, deadline: Instant) {
    scope.set_value(Deadline::at(deadline));
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
    scope(instant_after(Instant::now(), budget), future)
}

/// The deadline of the current task, if one is set, as it is carried.
#[inline]
pub fn current_deadline() -> Option<Deadline> {
    context::get(&DEADLINE)
}

/// The deadline of the current task, if one is set. Reads the clock if the deadline is
/// still a budget (see the [module docs](self)).
#[inline]
pub fn current() -> Option<Instant> {
    current_deadline().map(Deadline::instant)
}

/// Time left until the current deadline: `None` without one, zero once it passed.
#[inline]
pub fn remaining() -> Option<Duration> {
    current_deadline().map(Deadline::remaining)
}

/// True if the current task has a deadline and it has passed.
pub fn is_exceeded() -> bool {
    current_deadline().is_some_and(Deadline::is_spent)
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

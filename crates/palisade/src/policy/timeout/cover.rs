//! Covered timeouts: a timeout whose operation is already bounded, within the same task,
//! by a nearer timer armed inside it — a per-try timeout inside a total one — arms no
//! timer of its own.
//!
//! A timer costs an insertion into tokio's timer wheel when it is first polled and a
//! removal when it is dropped, under the driver's lock: for a proxied request with a
//! total and a per-try timeout, about 600 instructions each. While an attempt runs, its
//! per-try timer, which ends no later than the total one, wakes the task first anyway.
//!
//! Each pending poll of a timeout reports, in a thread-local, the earliest instant at
//! which a timer inside it (its own, or one that covers it) will wake the task. The
//! enclosing timeout reads what its operation reported during that poll: a report no
//! later than its own limit covers it, and it arms its timer only on a poll that finds
//! none (between attempts, in a retry's backoff, or after the inner timeout ended). A
//! reporting timeout dropped while pending (a `select!` that took another branch)
//! withdraws the reports: the enclosing timeout then arms its own timer.
//!
//! The same report carries the clock reading at which the timeouts of this poll fixed
//! their budgets (see [`deadline`](crate::deadline#budgets-whose-clock-has-not-started)):
//! the first to wait reads the clock, and every timeout around it fixes its budget from
//! that reading rather than its own. A budget that an inner timeout inherited as its
//! deadline and the outer timeout that set it are then fixed to the same instant,
//! whatever time the rest of the poll took: when the inner timeout reports the deadline
//! exceeded, the outer one finds its own time spent, to the nanosecond, and reports its
//! own timeout (see `Timeout::settle`).

use std::cell::Cell;

use tokio::time::Instant;

/// What the timeouts polled so far in the current poll reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Cover {
    /// No timer.
    None,
    /// A timer wakes the task at this instant at the latest.
    At(Instant),
    /// A timer reported may be gone: nothing covers.
    Withdrawn,
}

impl Cover {
    fn earliest(self, other: Cover) -> Cover {
        match (self, other) {
            (Cover::Withdrawn, _) | (_, Cover::Withdrawn) => Cover::Withdrawn,
            (Cover::None, cover) | (cover, Cover::None) => cover,
            (Cover::At(a), Cover::At(b)) => Cover::At(a.min(b)),
        }
    }

    /// Whether a timer reported here wakes the task no later than `at`.
    pub(super) fn covers(self, at: Instant) -> bool {
        #[cfg(test)]
        if DISABLED.get() {
            return false;
        }
        matches!(self, Cover::At(reported) if reported <= at)
    }
}

/// What the timeouts polled so far in the current poll reported: their timers, and the
/// clock reading they fixed their budgets at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Report {
    /// The earliest timer.
    pub(super) timer: Cover,
    /// The clock as the first of them to fix a budget read it, if one did.
    pub(super) now: Option<Instant>,
}

impl Report {
    const NONE: Report = Report {
        timer: Cover::None,
        now: None,
    };
}

/// The earlier of two clock readings of the same poll.
fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

thread_local! {
    static REPORTED: Cell<Report> = const { Cell::new(Report::NONE) };
}

/// Starts polling an operation: its reports are collected apart. Returns the reports
/// made before, for [`end`].
pub(super) fn begin() -> Report {
    REPORTED.replace(Report::NONE)
}

/// What the operation reported since [`begin`].
pub(super) fn reported() -> Report {
    REPORTED.get()
}

/// Ends the poll: the reports made before, with `own` (the timeout's timer, or what
/// covers it; [`Cover::None`] when it is done) and `now` (the clock reading its budget
/// was fixed at in this poll, or the one its operation reported).
pub(super) fn end(before: Report, own: Cover, now: Option<Instant>) {
    REPORTED.set(Report {
        timer: before.timer.earliest(own),
        now: earliest(before.now, now),
    });
}

/// A timeout that reported is dropped while pending: what it reported may be gone (the
/// clock reading stays true for this poll).
pub(super) fn withdraw() {
    REPORTED.set(Report {
        timer: Cover::Withdrawn,
        now: REPORTED.get().now,
    });
}

#[cfg(test)]
thread_local! {
    static DISABLED: Cell<bool> = const { Cell::new(false) };
}

/// Every timeout on this thread arms its own timer (for tests comparing both ways).
#[cfg(test)]
pub(super) fn disable(disabled: bool) {
    DISABLED.set(disabled);
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use proptest::prelude::*;
    use tokio::time::sleep;

    use super::super::Timeout;
    use crate::{DefaultClassifier, Error, Policy};

    type Outcome = Result<(), Error<()>>;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// `operation` under a timeout of `after`, guarded so that a timer never armed
    /// shows as `None` rather than a hang: what it returned and when.
    async fn timed<F, Fut>(after: Duration, operation: F) -> Option<(Outcome, Duration)>
    where
        F: Fn() -> Fut + Send + Sync,
        Fut: std::future::Future<Output = Outcome> + Send,
    {
        let start = tokio::time::Instant::now();
        let timeout = Timeout::new(after);
        let run = timeout.execute(&DefaultClassifier, operation);
        let outcome = tokio::time::timeout(Duration::from_secs(3600), run)
            .await
            .ok()?;
        Some((outcome, start.elapsed()))
    }

    #[tokio::test(start_paused = true)]
    async fn a_covered_timeout_arms_its_timer_once_the_inner_one_has_ended() {
        let inner = Timeout::new(ms(100));
        let result = timed(ms(1000), || async {
            let _ = inner
                .execute(&DefaultClassifier, || async {
                    sleep(ms(50)).await;
                    Ok::<_, Error<()>>(())
                })
                .await;
            std::future::pending::<()>().await;
            Ok(())
        })
        .await;
        let (outcome, took) = result.expect("the outer timeout fired");
        assert!(matches!(outcome, Err(Error::Timeout { after }) if after == ms(1000)));
        assert_eq!(took, ms(1000));
    }

    #[tokio::test(start_paused = true)]
    async fn a_timeout_dropped_mid_poll_withdraws_its_cover() {
        let inner = Timeout::new(ms(100));
        let result = timed(ms(1000), || async {
            // The inner timeout is polled (pending, so it reports its timer), then
            // dropped in the same poll when the other branch is ready.
            tokio::select! {
                biased;
                _ = inner.execute(&DefaultClassifier, std::future::pending::<Outcome>) => {}
                () = std::future::ready(()) => {}
            }
            std::future::pending::<()>().await;
            Ok(())
        })
        .await;
        let (outcome, took) = result.expect("the outer timeout fired");
        assert!(matches!(outcome, Err(Error::Timeout { .. })));
        assert_eq!(took, ms(1000));
    }

    /// One step of an operation under the outer timeout.
    #[derive(Clone, Debug)]
    enum Step {
        /// An inner timeout of `.0` ms around a sleep of `.1` ms.
        Inner(u64, u64),
        /// A plain sleep.
        Sleep(u64),
        /// An inner timeout of `.0` ms around a never-ending operation, raced against a
        /// sleep of `.1` ms.
        Race(u64, u64),
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            (1..300u64, 0..300u64).prop_map(|(d, s)| Step::Inner(d, s)),
            (0..300u64).prop_map(Step::Sleep),
            (1..300u64, 0..300u64).prop_map(|(d, s)| Step::Race(d, s)),
        ]
    }

    async fn run(outer: u64, steps: Vec<Step>, hang: bool) -> Option<(Outcome, Duration)> {
        timed(ms(outer), || {
            let steps = steps.clone();
            async move {
                for step in steps {
                    match step {
                        Step::Inner(d, s) => {
                            Timeout::new(ms(d))
                                .execute(&DefaultClassifier, || async move {
                                    sleep(ms(s)).await;
                                    Ok::<_, Error<()>>(())
                                })
                                .await?;
                        }
                        Step::Sleep(s) => sleep(ms(s)).await,
                        Step::Race(d, s) => {
                            let inner = Timeout::new(ms(d));
                            // Biased: on a tie (both fire at the same instant) the same
                            // branch wins in both runs, so the runs compare.
                            tokio::select! {
                                biased;
                                r = inner.execute(&DefaultClassifier, std::future::pending::<Outcome>) => r?,
                                () = sleep(ms(s)) => {}
                            }
                        }
                    }
                }
                if hang {
                    std::future::pending::<()>().await;
                }
                Ok(())
            }
        })
        .await
    }

    proptest! {
        #[test]
        fn covering_changes_no_outcome_and_no_timing(
            outer in 1..1000u64,
            steps in proptest::collection::vec(step(), 0..5),
            hang: bool,
        ) {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .start_paused(true)
                .build()
                .expect("runtime");
            let covered = runtime.block_on(run(outer, steps.clone(), hang));
            super::disable(true);
            let armed = runtime.block_on(run(outer, steps, hang));
            super::disable(false);
            let show = |r: &Option<(Outcome, Duration)>| format!("{r:?}");
            prop_assert!(covered.is_some(), "a timer was never armed: {}", show(&covered));
            prop_assert_eq!(show(&covered), show(&armed));
        }
    }
}

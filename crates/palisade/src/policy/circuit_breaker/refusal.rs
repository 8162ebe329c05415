//! Refusing before asking: whether the breaker would refuse a call now, found without
//! admitting one.
//!
//! A caller with work to do before a call (take a rate-limit token, a bulkhead slot,
//! read a request body) can ask first and spend nothing on a call the breaker would
//! refuse anyway; `resilience4j` orders its decorators the same way, the breaker outside
//! the rate limiter and the bulkhead. Only certain refusals are answered early (held
//! open, or open with its open time not over): a breaker that may admit (closed,
//! half-open, open with its time up) is left to [`CircuitBreaker::try_acquire`], which
//! decides, so asking first never takes a half-open probe's place.

use super::{CircuitBreaker, Rejected};

impl CircuitBreaker {
    /// The refusal [`try_acquire`](Self::try_acquire) would give now for certain, without
    /// asking to make a call: the breaker is held open, or open and its open time is not
    /// over. Counted as `try_acquire`'s refusals are (`rejected` in the metrics, a
    /// `CircuitRejected` event). `None` does not promise admission: ask `try_acquire`.
    /// Never admits a call or changes the state.
    pub fn refuse_early(&self) -> Option<Rejected> {
        self.shared.refusal(true)
    }

    /// As [`refuse_early`](Self::refuse_early), without counting the refusal: for a caller
    /// that asks several breakers and refuses only if all of them would.
    pub fn would_refuse(&self) -> Option<Rejected> {
        self.shared.refusal(false)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::Duration;

    use tokio::time::advance;

    use super::*;
    use crate::events::Event;
    use crate::outcome::Outcome;
    use crate::policy::circuit_breaker::{BreakerMode, CircuitBreakerBuilder, CircuitState};

    /// Count window of 4, all 4 failing trips it; open 1 s, no jitter; rejections counted
    /// in `rejections`.
    fn breaker(mode: BreakerMode) -> (CircuitBreaker, Arc<AtomicU32>) {
        let rejections = Arc::new(AtomicU32::new(0));
        let sink = rejections.clone();
        let breaker = CircuitBreakerBuilder::default()
            .name("early")
            .mode(mode)
            .count_window(4)
            .minimum_calls(4)
            .failure_rate(1.0)
            .open_for(Duration::from_secs(1), Duration::from_secs(8), 2.0, 0.0)
            .half_open(1, 1, 1)
            .on_event(move |event| {
                if matches!(event, Event::CircuitRejected { .. }) {
                    sink.fetch_add(1, Ordering::Relaxed);
                }
            })
            .build()
            .expect("valid breaker");
        (breaker, rejections)
    }

    fn trip(breaker: &CircuitBreaker) {
        for _ in 0..4 {
            if let Ok(permit) = breaker.try_acquire() {
                permit.record(&Outcome::failure());
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn closed_never_refuses_early() {
        let (breaker, rejections) = breaker(BreakerMode::Normal);
        assert_eq!(breaker.refuse_early(), None);
        assert_eq!(breaker.would_refuse(), None);
        assert_eq!(rejections.load(Ordering::Relaxed), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn open_refuses_early_with_the_time_left_until_its_open_time_is_over() {
        let (breaker, rejections) = breaker(BreakerMode::Normal);
        trip(&breaker);
        advance(Duration::from_millis(300)).await;
        let refused = breaker.refuse_early().expect("open refuses");
        assert_eq!(refused.state, CircuitState::Open);
        assert_eq!(refused.retry_after, Some(Duration::from_millis(700)));
        assert_eq!(rejections.load(Ordering::Relaxed), 1, "counted");
        assert_eq!(breaker.would_refuse(), Some(refused));
        assert_eq!(
            rejections.load(Ordering::Relaxed),
            1,
            "asking does not count"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn open_with_its_time_up_is_left_to_try_acquire_whose_probe_it_keeps() {
        let (breaker, rejections) = breaker(BreakerMode::Normal);
        trip(&breaker);
        advance(Duration::from_secs(1)).await;
        assert_eq!(breaker.refuse_early(), None);
        assert_eq!(breaker.state(), CircuitState::Open, "asking moved nothing");
        let probe = breaker.try_acquire().expect("the one probe is still there");
        assert!(probe.is_probe());
        // Half-open with its probe out: a refusal, but not one that is certain before
        // asking (the probe may answer), so left to `try_acquire` too.
        assert_eq!(breaker.refuse_early(), None);
        assert!(breaker.try_acquire().is_err());
        assert_eq!(rejections.load(Ordering::Relaxed), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn held_open_refuses_early_without_a_time() {
        let (breaker, _) = breaker(BreakerMode::Normal);
        breaker.force_open();
        let refused = breaker.refuse_early().expect("held open refuses");
        assert_eq!(refused.state, CircuitState::ForcedOpen);
        assert_eq!(refused.retry_after, None);
        breaker.reset();
        assert_eq!(breaker.refuse_early(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn metrics_only_never_refuses_early() {
        let (breaker, _) = breaker(BreakerMode::MetricsOnly);
        trip(&breaker);
        assert_eq!(breaker.state(), CircuitState::Open);
        assert_eq!(breaker.refuse_early(), None);
        assert!(breaker.try_acquire().is_ok(), "metrics-only admits");
    }
}

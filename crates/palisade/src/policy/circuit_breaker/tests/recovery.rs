//! When a breaker judges its window, and how it recovers under sparse traffic.

use std::time::Duration;

use tokio::time::advance;

use super::{breaker, fail, succeed};
use crate::Policy;
use crate::outcome::Outcome;
use crate::policy::circuit_breaker::{CircuitBreaker, CircuitBreakerBuilder, CircuitState};

/// Trips `b` with failures; it has not seen any call before.
fn trip_with_failures(b: &CircuitBreaker) {
    for _ in 0..1000 {
        if b.state() == CircuitState::Open {
            return;
        }
        let _ = fail(b);
    }
    panic!("the breaker never tripped");
}

#[tokio::test(start_paused = true)]
async fn sparse_successful_probes_close_a_breaker_with_default_settings() {
    // 3 probes, 30 s max_half_open, 5 s open time: one call every 20 s.
    let b = CircuitBreaker::builder()
        .name("sparse")
        .seed(7)
        .build()
        .unwrap();
    trip_with_failures(&b);
    let mut closed_after = None;
    for call in 0..30 {
        advance(Duration::from_secs(20)).await;
        let answer = b.call(|| async { Ok::<_, std::io::Error>("fine") }).await;
        if b.state() == CircuitState::Closed {
            assert!(answer.is_ok());
            closed_after = Some(call);
            break;
        }
    }
    assert_eq!(
        closed_after,
        Some(2),
        "the first call after the open time and the two after it are the 3 probes"
    );
}

#[tokio::test(start_paused = true)]
async fn answered_probes_never_count_as_unanswered() {
    let b = breaker(); // 2 probes, 1 at a time, 5 s max_half_open
    super::trip(&b);
    advance(Duration::from_secs(1)).await;
    succeed(&b).unwrap();
    assert_eq!(b.state(), CircuitState::HalfOpen);
    advance(Duration::from_secs(60)).await;
    assert_eq!(b.state(), CircuitState::HalfOpen, "no probe is outstanding");
    succeed(&b).unwrap();
    assert_eq!(b.state(), CircuitState::Closed);
}

#[tokio::test(start_paused = true)]
async fn the_unanswered_wait_counts_from_the_last_answer() {
    let b = CircuitBreaker::builder()
        .consecutive_failures(1)
        .open_for(Duration::from_secs(1), Duration::from_secs(1), 1.0, 0.0)
        .half_open(3, 2, 3)
        .max_half_open(Duration::from_secs(5))
        .build()
        .unwrap();
    fail(&b).unwrap();
    advance(Duration::from_secs(1)).await;
    let first = b.try_acquire().unwrap();
    advance(Duration::from_secs(4)).await;
    let second = b.try_acquire().unwrap();
    first.record(&Outcome::success());
    advance(Duration::from_secs(4)).await;
    assert!(
        b.try_acquire().is_ok(),
        "an answer 4 s ago: the second probe has not waited 5 s yet"
    );
    advance(Duration::from_secs(1)).await;
    let refused = b.try_acquire().unwrap_err();
    assert_eq!(
        refused.state,
        CircuitState::Open,
        "nothing answered for 5 s"
    );
    drop(second);
}

/// Five failures then five successes, with a minimum of ten calls and a 50% threshold:
/// closed after nine calls, open after the tenth (a success).
fn judged_at_the_tenth_call(b: &CircuitBreaker) {
    for _ in 0..5 {
        fail(b).unwrap();
    }
    for _ in 0..4 {
        succeed(b).unwrap();
    }
    assert_eq!(b.state(), CircuitState::Closed, "9 calls < minimum of 10");
    succeed(b).unwrap();
    assert_eq!(
        b.state(),
        CircuitState::Open,
        "5 failures in 10 calls is 50%, judged after the tenth call"
    );
}

#[tokio::test(start_paused = true)]
async fn a_success_that_brings_the_window_to_its_minimum_can_trip_it() {
    let count = CircuitBreaker::builder().count_window(100);
    let time = CircuitBreaker::builder().time_window(10, 10);
    for builder in [count, time] {
        let b = builder.minimum_calls(10).failure_rate(0.5).build().unwrap();
        judged_at_the_tenth_call(&b);
    }
}

#[tokio::test(start_paused = true)]
async fn a_window_below_the_threshold_stays_closed_through_successes() {
    let b = CircuitBreakerBuilder::default()
        .count_window(10)
        .minimum_calls(10)
        .failure_rate(0.5)
        .build()
        .unwrap();
    for _ in 0..4 {
        fail(&b).unwrap();
    }
    for _ in 0..20 {
        succeed(&b).unwrap();
    }
    assert_eq!(b.state(), CircuitState::Closed, "4 in 10 is below 50%");
}

#[tokio::test(start_paused = true)]
async fn time_in_state_restarts_at_each_transition() {
    let b = breaker();
    advance(Duration::from_secs(3)).await;
    assert_eq!(
        b.time_in_state(),
        Duration::from_secs(3),
        "closed since built"
    );
    super::trip(&b);
    assert_eq!(b.time_in_state(), Duration::ZERO);
    advance(Duration::from_millis(400)).await;
    assert_eq!(b.snapshot().in_state_for, Duration::from_millis(400));
}

/// An outside sign of recovery (a health check passing again) ends the open time: the
/// next call is a probe; a failed one opens it again, and other states are untouched.
#[tokio::test(start_paused = true)]
async fn probe_now_ends_the_open_time_and_the_probes_decide() {
    let b = breaker();
    trip_with_failures(&b);
    assert!(fail(&b).is_err(), "open: refused");
    b.probe_now();
    assert!(
        succeed(&b).is_ok(),
        "the next call is let through as a probe"
    );
    assert_eq!(b.state(), CircuitState::HalfOpen);
    assert!(fail(&b).is_ok(), "the second probe fails");
    assert_eq!(
        b.state(),
        CircuitState::Open,
        "a failed probe opens it again"
    );
    assert!(fail(&b).unwrap_err().retry_after.is_some());

    let closed = breaker();
    closed.probe_now();
    assert_eq!(
        closed.state(),
        CircuitState::Closed,
        "a closed breaker is left as it is"
    );
    closed.force_open();
    closed.probe_now();
    assert_eq!(
        closed.state(),
        CircuitState::ForcedOpen,
        "a forced state is the operator's"
    );
}

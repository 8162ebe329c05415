//! Composition: the builder's order is the nesting order, and policies see each other's
//! outcomes the way the architecture promises.

#![cfg(not(palisade_loom))]

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use palisade::policy::circuit_breaker::{CircuitBreaker, CircuitState};
use palisade::policy::fallback::Fallback;
use palisade::policy::retry::{BackoffKind, Jitter, Retry};
use palisade::policy::timeout::Timeout;
use palisade::{Error, Pipeline, Policy};
use tokio::time::Instant;

fn retry(attempts: u32) -> Retry {
    Retry::builder()
        .max_attempts(attempts)
        .backoff(
            BackoffKind::Constant,
            Duration::from_millis(10),
            Duration::from_secs(1),
        )
        .jitter(Jitter::None)
        .build()
        .unwrap()
}

fn breaker(failures: u32) -> CircuitBreaker {
    CircuitBreaker::builder()
        .consecutive_failures(failures)
        .build()
        .unwrap()
}

async fn always_fails() -> Result<(), &'static str> {
    Err("down")
}

#[tokio::test(start_paused = true)]
async fn breaker_inside_retry_sees_every_attempt() {
    let b = breaker(3);
    let pipeline = Pipeline::builder().push(retry(3)).push(b.clone()).build();
    let r = pipeline.call(always_fails).await;
    assert!(matches!(
        r,
        Err(Error::RetriesExhausted { attempts: 3, .. })
    ));
    assert_eq!(
        b.state(),
        CircuitState::Open,
        "three attempts, three failures"
    );
}

#[tokio::test(start_paused = true)]
async fn breaker_outside_retry_sees_one_outcome_per_call() {
    let b = breaker(3);
    let pipeline = Pipeline::builder().push(b.clone()).push(retry(3)).build();
    let _ = pipeline.call(always_fails).await;
    assert_eq!(b.state(), CircuitState::Closed, "one call, one failure");
    assert_eq!(b.snapshot().failures, 1);
}

#[tokio::test(start_paused = true)]
async fn an_open_breaker_stops_the_retries_around_it() {
    let b = breaker(1);
    let attempts = AtomicU32::new(0);
    let pipeline = Pipeline::builder().push(retry(5)).push(b.clone()).build();
    let r = pipeline
        .call(|| {
            attempts.fetch_add(1, Ordering::SeqCst);
            always_fails()
        })
        .await;
    assert!(matches!(r, Err(Error::CircuitOpen { .. })), "{r:?}");
    assert_eq!(
        attempts.load(Ordering::SeqCst),
        1,
        "the second attempt was refused by the breaker"
    );
}

#[tokio::test(start_paused = true)]
async fn total_budget_outside_and_per_try_timeout_inside_compose() {
    let attempts = AtomicU32::new(0);
    let pipeline = Pipeline::builder()
        .push(Timeout::new(Duration::from_millis(250)))
        .push(retry(10))
        .push(Timeout::new(Duration::from_millis(100)))
        .build();
    let start = Instant::now();
    let r = pipeline
        .call(|| {
            attempts.fetch_add(1, Ordering::SeqCst);
            async {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                Ok::<(), &str>(())
            }
        })
        .await;
    // Attempts at 0 (times out at 100), 110 (at 210), 220 (cut short by the 250 ms budget,
    // which is the total timeout's own: its timeout, not a deadline, is reported).
    assert_eq!(attempts.load(Ordering::SeqCst), 3);
    assert_eq!(start.elapsed(), Duration::from_millis(250));
    assert!(
        matches!(r, Err(Error::Timeout { after }) if after == Duration::from_millis(250)),
        "{r:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn fallback_outermost_answers_for_everything_inside() {
    let b = breaker(1);
    b.force_open();
    let pipeline = Pipeline::builder()
        .push(
            Fallback::<&str, &str>::builder()
                .value("cached")
                .build()
                .unwrap(),
        )
        .push(retry(3))
        .push(b)
        .build();
    assert_eq!(
        pipeline.call(|| async { Ok("fresh") }).await.unwrap(),
        "cached"
    );
}

/// "404" says nothing about the dependency: ignored, so neither retried nor counted.
fn not_found_is_fine() -> impl palisade::Classify<(), &'static str> + Clone + 'static {
    palisade::outcome::errors(|e: &&str| {
        if *e == "404" {
            palisade::Outcome::ignored()
        } else {
            palisade::Outcome::failure().retryable()
        }
    })
}

#[tokio::test(start_paused = true)]
async fn call_classifies_with_the_pipeline_classifier() {
    let b = breaker(1);
    let attempts = AtomicU32::new(0);
    let pipeline = Pipeline::builder()
        .push(retry(3))
        .push(b.clone())
        .classifier(not_found_is_fine())
        .build();
    let r = pipeline
        .call(|| {
            attempts.fetch_add(1, Ordering::SeqCst);
            async { Err::<(), _>("404") }
        })
        .await;
    assert!(matches!(r, Err(Error::Inner("404"))), "{r:?}");
    assert_eq!(
        attempts.load(Ordering::SeqCst),
        1,
        "ignored is not retryable"
    );
    assert_eq!(b.state(), CircuitState::Closed, "ignored does not count");
    let window = b.snapshot();
    assert_eq!(
        (window.calls, window.failures),
        (0, 0),
        "the window holds no outcome"
    );
}

#[tokio::test(start_paused = true)]
async fn call_with_and_an_outer_pipeline_classify_with_their_own() {
    let b = breaker(10);
    let inner = Pipeline::builder()
        .push(retry(3))
        .push(b.clone())
        .classifier(not_found_is_fine())
        .build();
    let attempts = AtomicU32::new(0);
    let not_found = || {
        attempts.fetch_add(1, Ordering::SeqCst);
        async { Err::<(), _>("404") }
    };
    // An explicit classifier is the one used.
    let r = inner
        .call_with(&palisade::DefaultClassifier, not_found)
        .await;
    assert!(
        matches!(r, Err(Error::RetriesExhausted { attempts: 3, .. })),
        "{r:?}"
    );
    assert_eq!(b.snapshot().failures, 3);
    // Nested in another pipeline, the outer pipeline's classifier is the one used.
    let outer = Pipeline::builder().push(inner).build();
    let r = outer.call(not_found).await;
    assert!(
        matches!(r, Err(Error::RetriesExhausted { attempts: 3, .. })),
        "{r:?}"
    );
    assert_eq!(attempts.load(Ordering::SeqCst), 6);
    assert_eq!(b.snapshot().failures, 6);
}

#[tokio::test(start_paused = true)]
async fn the_same_pipeline_as_a_tower_layer_shares_state() {
    use tower::{Layer, ServiceExt, service_fn};
    let b = breaker(2);
    let pipeline = Pipeline::builder().push(retry(2)).push(b.clone()).build();
    let hits = Arc::new(AtomicU32::new(0));
    let counter = hits.clone();
    let svc = pipeline.layer().layer(service_fn(move |_: ()| {
        counter.fetch_add(1, Ordering::SeqCst);
        async { Err::<(), _>(std::io::Error::other("down")) }
    }));
    let r = svc.clone().oneshot(()).await;
    assert!(
        matches!(r, Err(Error::RetriesExhausted { attempts: 2, .. })),
        "{r:?}"
    );
    assert_eq!(b.state(), CircuitState::Open);
    // The call API sees the same, open breaker.
    let r = pipeline
        .call(|| async { Ok::<_, std::io::Error>(()) })
        .await;
    assert!(matches!(r, Err(Error::CircuitOpen { .. })));
    assert_eq!(hits.load(Ordering::SeqCst), 2);
}

/// Installs the debugging recorder for this test binary. Policies register their
/// handles when built, and retries label by attempt when they happen, so the recorder
/// must be the global one. Names are unique to this test, as other tests run alongside.
#[tokio::test(start_paused = true)]
async fn metrics_report_calls_breaker_state_and_retries() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder
        .install()
        .expect("no other test installs a recorder");
    let b = CircuitBreaker::builder()
        .name("metrics-b")
        .consecutive_failures(2)
        .build()
        .unwrap();
    let r = Retry::builder()
        .name("metrics-r")
        .max_attempts(2)
        .backoff(
            BackoffKind::Constant,
            Duration::from_millis(10),
            Duration::from_secs(1),
        )
        .build()
        .unwrap();
    let pipeline = Pipeline::builder()
        .push(r)
        .push(b.clone())
        .metrics("metrics-p")
        .build();
    let _ = pipeline.call(|| async { Ok::<_, &str>(()) }).await;
    let _ = pipeline.call(always_fails).await;
    assert_eq!(b.state(), CircuitState::Open);

    let snapshot = snapshotter.snapshot().into_vec();
    let find = |name: &str, labels: &[(&str, &str)]| {
        snapshot
            .iter()
            .find(|(key, _, _, _)| {
                key.key().name() == name
                    && labels
                        .iter()
                        .all(|(k, v)| key.key().labels().any(|l| l.key() == *k && l.value() == *v))
            })
            .map(|(_, _, _, value)| value)
    };
    let p = ("policy", "metrics-p");
    assert_eq!(
        find("palisade_calls_total", &[p, ("outcome", "success")]),
        Some(&DebugValue::Counter(1))
    );
    assert_eq!(
        find("palisade_calls_total", &[p, ("outcome", "failure")]),
        Some(&DebugValue::Counter(1))
    );
    assert_eq!(
        find("palisade_circuit_state", &[("policy", "metrics-b")]),
        Some(&DebugValue::Gauge(1.0.into())),
        "open"
    );
    assert_eq!(
        find(
            "palisade_circuit_transitions_total",
            &[("policy", "metrics-b"), ("to", "open")]
        ),
        Some(&DebugValue::Counter(1))
    );
    assert_eq!(
        find(
            "palisade_retry_attempts_total",
            &[("policy", "metrics-r"), ("attempt", "1")]
        ),
        Some(&DebugValue::Counter(1))
    );
    assert!(
        matches!(find("palisade_call_duration_seconds", &[p]), Some(DebugValue::Histogram(h)) if h.len() == 2)
    );
}

#[tokio::test(start_paused = true)]
async fn an_absent_policy_runs_the_operation_as_it_is_and_a_present_one_applies() {
    let calls = AtomicU32::new(0);
    let count = || {
        calls.fetch_add(1, Ordering::Relaxed);
        always_fails()
    };
    let absent: Option<Retry> = None;
    assert!(absent.call(count).await.is_err());
    assert_eq!(calls.load(Ordering::Relaxed), 1, "no retry ran");
    let present = Some(retry(3));
    assert!(present.call(count).await.is_err());
    assert_eq!(
        calls.load(Ordering::Relaxed),
        4,
        "the retry made 3 attempts"
    );
    // In a pipeline, an absent policy keeps the pipeline's shape.
    let pipeline = Pipeline::builder()
        .push(None::<Timeout>)
        .push(Some(retry(2)))
        .build();
    assert!(pipeline.call(count).await.is_err());
    assert_eq!(calls.load(Ordering::Relaxed), 6);
}

#[test]
fn settings_give_every_policy_one_name_and_clock() {
    use palisade::clock::Clock;
    use palisade::policy::circuit_breaker::{CircuitBreakerBuilder, CircuitBreakerConfig};
    use palisade::policy::throttle::{AdaptiveThrottleBuilder, ThrottleConfig};
    use palisade::settings::Settings;

    let (clock, hand) = Clock::manual();
    let settings = Settings::named("payments").clock(clock);
    let breaker = CircuitBreakerBuilder::from_config(CircuitBreakerConfig::default())
        .settings(&settings.part("breaker"))
        .build()
        .unwrap();
    assert_eq!(breaker.name().as_ref(), "payments/breaker");
    let throttle = AdaptiveThrottleBuilder::from_config(ThrottleConfig::default())
        .settings(&settings)
        .build()
        .unwrap();
    assert_eq!(throttle.name().as_ref(), "payments");
    // The breaker reads the manual clock: its time in state follows the hand, not tokio.
    let before = breaker.time_in_state();
    hand.advance(Duration::from_secs(7));
    assert_eq!(breaker.time_in_state() - before, Duration::from_secs(7));
}

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::{Instant, sleep};

use super::*;
use crate::outcome::{Outcome, errors};

fn retry(attempts: u32) -> RetryBuilder {
    Retry::builder()
        .max_attempts(attempts)
        .backoff(
            BackoffKind::Constant,
            Duration::from_millis(100),
            Duration::from_secs(10),
        )
        .jitter(Jitter::None)
        .seed(1)
}

/// An operation failing `failures` times, then succeeding; counts its calls.
fn flaky(
    failures: u32,
    calls: &AtomicU32,
) -> impl Fn() -> std::future::Ready<Result<u32, &'static str>> + '_ {
    move || {
        let n = calls.fetch_add(1, Ordering::SeqCst);
        std::future::ready(if n < failures { Err("flaky") } else { Ok(n) })
    }
}

#[tokio::test(start_paused = true)]
async fn retries_until_success_with_the_backoff_between() {
    let r = retry(3).build().unwrap();
    let calls = AtomicU32::new(0);
    let start = Instant::now();
    assert_eq!(r.call(flaky(2, &calls)).await.unwrap(), 2);
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    assert_eq!(start.elapsed(), Duration::from_millis(200));
}

#[tokio::test(start_paused = true)]
async fn gives_up_after_max_attempts_with_the_last_error() {
    let r = retry(3).build().unwrap();
    let calls = AtomicU32::new(0);
    match r.call(flaky(10, &calls)).await {
        Err(Error::RetriesExhausted { attempts, last }) => {
            assert_eq!(attempts, 3);
            assert!(matches!(*last, Error::Inner("flaky")));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[tokio::test(start_paused = true)]
async fn non_retryable_errors_return_at_once_unchanged() {
    let r = retry(5).build().unwrap();
    let calls = AtomicU32::new(0);
    let permanent = errors(|_: &&str| Outcome::failure());
    let result = r.call_with(&permanent, flaky(10, &calls)).await;
    assert!(matches!(result, Err(Error::Inner("flaky"))));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn palisade_rejections_are_not_retried() {
    let r = retry(5).build().unwrap();
    let calls = AtomicU32::new(0);
    let result: Result<(), Error<()>> = r
        .execute(&crate::DefaultClassifier, || {
            calls.fetch_add(1, Ordering::SeqCst);
            async {
                Err(Error::BulkheadFull {
                    name: "b".into(),
                    active: 1,
                    max: 1,
                })
            }
        })
        .await;
    assert!(matches!(result, Err(Error::BulkheadFull { .. })));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn a_retryable_value_is_retried_and_returned_as_the_value_at_the_end() {
    let r = retry(3).build().unwrap();
    let unavailable = crate::outcome::results(
        |status: &u16| {
            if *status == 503 {
                Outcome::failure().retryable()
            } else {
                Outcome::success()
            }
        },
        |_: &()| Outcome::failure(),
    );
    let calls = AtomicU32::new(0);
    let status = r
        .call_with(&unavailable, || {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Ok::<u16, ()>(503) }
        })
        .await;
    assert_eq!(status.unwrap(), 503);
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[tokio::test(start_paused = true)]
async fn retry_after_hints_are_honoured_up_to_the_cap() {
    let r = retry(3)
        .max_retry_after(Duration::from_secs(2))
        .build()
        .unwrap();
    let asks = |secs: u64| {
        errors(move |_: &&str| Outcome::failure().retry_after(Duration::from_secs(secs)))
    };
    let calls = AtomicU32::new(0);
    let start = Instant::now();
    let _ = r.call_with(&asks(1), flaky(1, &calls)).await;
    assert_eq!(
        start.elapsed(),
        Duration::from_secs(1),
        "hint above the 100 ms backoff is followed"
    );
    let calls = AtomicU32::new(0);
    let start = Instant::now();
    let _ = r.call_with(&asks(60), flaky(1, &calls)).await;
    assert_eq!(
        start.elapsed(),
        Duration::from_secs(2),
        "hint capped at max_retry_after"
    );
}

#[tokio::test(start_paused = true)]
async fn a_deadline_stops_retries_that_could_not_start_in_time() {
    let r = retry(10).build().unwrap();
    let calls = AtomicU32::new(0);
    let start = Instant::now();
    let result =
        crate::deadline::scope_for(Duration::from_millis(250), r.call(flaky(100, &calls))).await;
    assert!(matches!(
        result,
        Err(Error::RetriesExhausted { attempts: 3, .. })
    ));
    assert_eq!(
        calls.load(Ordering::SeqCst),
        3,
        "attempts at 0, 100, 200 ms; 300 ms would pass the deadline"
    );
    assert_eq!(start.elapsed(), Duration::from_millis(200));
}

#[tokio::test(start_paused = true)]
async fn max_elapsed_bounds_the_whole_call() {
    let r = retry(10)
        .max_elapsed(Duration::from_millis(350))
        .build()
        .unwrap();
    let calls = AtomicU32::new(0);
    let _ = r.call(flaky(100, &calls)).await;
    assert_eq!(calls.load(Ordering::SeqCst), 4, "0, 100, 200, 300 ms");
}

#[tokio::test(start_paused = true)]
async fn a_total_timeout_outside_shortens_retries_inside() {
    use crate::policy::timeout::Timeout;
    let total = Timeout::new(Duration::from_millis(250));
    let r = retry(10).build().unwrap();
    let calls = AtomicU32::new(0);
    let result = total
        .execute(&crate::DefaultClassifier, || r.call(flaky(100, &calls)))
        .await;
    assert!(
        matches!(result, Err(Error::RetriesExhausted { attempts: 3, .. })),
        "{result:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_shared_budget_caps_retries_across_calls() {
    let budget = RetryBudget::new(&RetryBudgetConfig {
        ratio: 0.1,
        min_per_second: 0,
        window: Duration::from_secs(10),
    })
    .unwrap();
    let r = retry(3).budget(budget.clone()).build().unwrap();
    let attempts = AtomicU32::new(0);
    for _ in 0..100 {
        let _ = r
            .call(|| {
                attempts.fetch_add(1, Ordering::SeqCst);
                async { Err::<(), _>("down") }
            })
            .await;
    }
    let retries = attempts.load(Ordering::SeqCst) - 100;
    assert!(
        retries <= 10,
        "100 calls × 0.1 = at most 10 retries, got {retries}"
    );
    assert!(retries >= 9, "the budget is used, got {retries}");
}

#[tokio::test(start_paused = true)]
async fn every_retry_is_reported() {
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = events.clone();
    let r = retry(3)
        .name("api")
        .on_event(move |e| sink.lock().unwrap().push(e.clone()))
        .build()
        .unwrap();
    let calls = AtomicU32::new(0);
    let _ = r.call(flaky(5, &calls)).await;
    let events = events.lock().unwrap();
    assert_eq!(events.len(), 3, "{events:?}");
    assert!(
        matches!(&events[0], crate::events::Event::Retry { attempt: 1, delay, error, .. }
        if *delay == Duration::from_millis(100) && error.contains("flaky"))
    );
    assert!(matches!(
        &events[1],
        crate::events::Event::Retry { attempt: 2, .. }
    ));
    assert!(matches!(
        &events[2],
        crate::events::Event::RetriesExhausted { attempts: 3, .. }
    ));
}

#[tokio::test(start_paused = true)]
async fn seeded_jitter_is_reproducible() {
    async fn delays(seed: u64) -> Vec<Duration> {
        let r = Retry::builder().max_attempts(5).seed(seed).build().unwrap();
        let calls = AtomicU32::new(0);
        let mut stamps = Vec::new();
        let start = Instant::now();
        let stamps_ref = Mutex::new(&mut stamps);
        let _ = r
            .call(|| {
                calls.fetch_add(1, Ordering::SeqCst);
                stamps_ref.lock().unwrap().push(start.elapsed());
                async { Err::<(), _>("x") }
            })
            .await;
        stamps
    }
    assert_eq!(delays(9).await, delays(9).await);
    assert_ne!(delays(9).await, delays(10).await);
}

/// 1000 callers fail at the same instant. With full jitter their first retries spread
/// evenly over the backoff; without jitter they all come back together.
#[tokio::test(start_paused = true)]
async fn full_jitter_spreads_a_thundering_herd() {
    async fn first_retry_offsets(jitter: Jitter) -> Vec<Duration> {
        let r = Retry::builder()
            .max_attempts(2)
            .backoff(
                BackoffKind::Constant,
                Duration::from_millis(1000),
                Duration::from_secs(10),
            )
            .jitter(jitter)
            .seed(2024)
            .build()
            .unwrap();
        let start = Instant::now();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for _ in 0..1000 {
            let (r, seen) = (r.clone(), seen.clone());
            tasks.push(tokio::spawn(async move {
                let calls = AtomicU32::new(0);
                let _ = r
                    .call(|| {
                        if calls.fetch_add(1, Ordering::SeqCst) == 1 {
                            seen.lock().unwrap().push(start.elapsed());
                        }
                        async { Err::<(), _>("overloaded") }
                    })
                    .await;
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        Arc::try_unwrap(seen).unwrap().into_inner().unwrap()
    }
    fn buckets(offsets: &[Duration]) -> Vec<usize> {
        let mut counts = vec![0usize; 101];
        for o in offsets {
            counts[(o.as_millis() / 10).min(100) as usize] += 1;
        }
        counts
    }
    let spread = buckets(&first_retry_offsets(Jitter::Full).await);
    let used = spread.iter().filter(|&&c| c > 0).count();
    let mean = 1000.0 / 100.0;
    let largest = *spread.iter().max().unwrap() as f64;
    assert!(
        largest < 3.0 * mean,
        "largest 10 ms bucket {largest} ≥ 3 × mean {mean}"
    );
    assert!(used >= 95, "only {used} of 100 buckets used");

    let herd = buckets(&first_retry_offsets(Jitter::None).await);
    assert_eq!(
        *herd.iter().max().unwrap(),
        1000,
        "without jitter every retry lands in one bucket"
    );
}

#[tokio::test(start_paused = true)]
async fn tower_layer_replays_the_request() {
    use tower::{Layer, ServiceExt, service_fn};
    let r = retry(3).build().unwrap();
    let calls = Arc::new(AtomicU32::new(0));
    let counter = calls.clone();
    let svc = r.layer().layer(service_fn(move |body: String| {
        let n = counter.fetch_add(1, Ordering::SeqCst);
        async move {
            sleep(Duration::from_millis(1)).await;
            if n < 2 {
                Err(std::io::Error::other("reset"))
            } else {
                Ok(body.len())
            }
        }
    }));
    assert_eq!(svc.oneshot("hello".to_owned()).await.unwrap(), 5);
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

/// A service that must be driven ready before every call: a clone starts not ready, and
/// answers `Pending` (waking itself) to its first `poll_ready`. It fails its first
/// `failures` calls.
#[derive(Clone)]
struct Gated {
    ready: bool,
    failures: u32,
    calls: Arc<AtomicU32>,
}

impl tower::Service<u32> for Gated {
    type Response = u32;
    type Error = std::io::Error;
    type Future = std::future::Ready<Result<u32, std::io::Error>>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        if self.ready {
            return std::task::Poll::Ready(Ok(()));
        }
        self.ready = true;
        cx.waker().wake_by_ref();
        std::task::Poll::Pending
    }

    fn call(&mut self, request: u32) -> Self::Future {
        assert!(self.ready, "called without being driven ready");
        self.ready = false;
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        std::future::ready(if n < self.failures {
            Err(std::io::Error::other("reset"))
        } else {
            Ok(request + n)
        })
    }
}

#[tokio::test(start_paused = true)]
async fn tower_retries_drive_their_service_ready_before_calling_it() {
    use tower::{Layer, ServiceExt};
    let calls = Arc::new(AtomicU32::new(0));
    let gated = Gated {
        ready: false,
        failures: 2,
        calls: calls.clone(),
    };
    let svc = retry(3).build().unwrap().layer().layer(gated);
    // Two calls through clones of one service: each retries twice, every attempt on an
    // instance that was driven ready.
    assert_eq!(svc.clone().oneshot(10).await.unwrap(), 12);
    calls.store(0, Ordering::SeqCst);
    assert_eq!(svc.oneshot(20).await.unwrap(), 22);
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[test]
fn invalid_configs_name_the_field() {
    let cases: Vec<(RetryConfig, &str)> = vec![
        (
            RetryConfig {
                max_attempts: 0,
                ..Default::default()
            },
            "max_attempts",
        ),
        (
            RetryConfig {
                base: Duration::ZERO,
                ..Default::default()
            },
            "base",
        ),
        (
            RetryConfig {
                base: Duration::from_secs(10),
                max_delay: Duration::from_secs(1),
                ..Default::default()
            },
            "base",
        ),
        (
            RetryConfig {
                multiplier: 0.5,
                ..Default::default()
            },
            "multiplier",
        ),
        (
            RetryConfig {
                jitter_factor: 1.5,
                ..Default::default()
            },
            "jitter_factor",
        ),
        (
            RetryConfig {
                budget: Some(RetryBudgetConfig {
                    ratio: -1.0,
                    ..Default::default()
                }),
                ..Default::default()
            },
            "budget.ratio",
        ),
    ];
    for (config, field) in cases {
        assert_eq!(config.build().unwrap_err().field, field);
    }
}

#[test]
fn config_reads_from_toml() {
    let config: RetryConfig = toml::from_str(
        r#"
        max_attempts = 4
        backoff = "decorrelated-jitter-v2"
        base = "25ms"
        max_delay = "250ms"
        jitter = "none"
        budget = { ratio = 0.2, min_per_second = 10 }
        "#,
    )
    .unwrap();
    assert_eq!(config.backoff, BackoffKind::DecorrelatedJitterV2);
    assert_eq!(
        config.budget.as_ref().unwrap().window,
        Duration::from_secs(10)
    );
    config.build().unwrap();
}

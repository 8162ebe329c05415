use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio::time::{Instant, sleep};

use super::*;
use crate::outcome::{DefaultClassifier, Outcome, errors};
use crate::{ConfigError, deadline};

const WINDOW: Duration = Duration::from_secs(10);
/// The percentile is recomputed at most once per hundredth of the window.
const REFRESH: Duration = Duration::from_millis(100);

fn ms(millis: f64) -> Duration {
    Duration::from_secs_f64(millis / 1000.0)
}

/// p99, ×1.5, between 1 ms and 2 s, over 10 s, after 100 samples.
fn builder() -> AdaptiveTimeoutBuilder {
    AdaptiveTimeout::builder()
        .name("adaptive")
        .bounds(Duration::from_millis(1), Duration::from_secs(2))
        .window(WINDOW)
        .min_samples(100)
}

/// A call answering after `latency`.
async fn call(t: &AdaptiveTimeout, latency: Duration) -> Result<Duration, Error<&'static str>> {
    t.execute(&DefaultClassifier, || async move {
        sleep(latency).await;
        Ok(latency)
    })
    .await
}

/// Asserts `actual` is within `tolerance` (relative) of `expected`.
fn assert_near(actual: Duration, expected: Duration, tolerance: f64) {
    let error = (actual.as_secs_f64() / expected.as_secs_f64() - 1.0).abs();
    assert!(
        error <= tolerance,
        "{actual:?} is not within {tolerance} of {expected:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn uses_the_fallback_until_min_samples_exist() {
    let t = builder()
        .min_samples(10)
        .fallback(Duration::from_millis(50))
        .build()
        .unwrap();
    assert_eq!(t.current(), Duration::from_millis(50));
    for _ in 0..9 {
        call(&t, Duration::from_millis(10)).await.unwrap();
    }
    tokio::time::advance(REFRESH).await;
    assert_eq!(t.samples(), 9);
    assert_eq!(t.observed(), None);
    assert_eq!(t.current(), Duration::from_millis(50), "9 samples of 10");
    call(&t, Duration::from_millis(10)).await.unwrap();
    tokio::time::advance(REFRESH).await;
    assert_near(t.observed().unwrap(), Duration::from_millis(10), 1.0 / 32.0);
    assert_near(t.current(), Duration::from_millis(15), 1.0 / 32.0);
}

#[tokio::test(start_paused = true)]
async fn a_slow_call_is_cut_at_the_fallback_and_counts_as_a_lower_bound() {
    let t = builder()
        .fallback(Duration::from_millis(50))
        .build()
        .unwrap();
    let start = Instant::now();
    let r = call(&t, Duration::from_secs(1)).await;
    assert!(matches!(r, Err(Error::Timeout { after }) if after == Duration::from_millis(50)));
    assert_eq!(start.elapsed(), Duration::from_millis(50));
    assert_eq!(t.samples(), 1, "the cut-off call ran at least 50 ms");
}

/// `callers` callers, each calling back to back until `until`, answering in `lo..hi`
/// ms; returns when each call that failed ended.
async fn load(
    t: &AdaptiveTimeout,
    rng: &Arc<Mutex<SmallRng>>,
    callers: usize,
    (lo, hi): (f64, f64),
    until: Instant,
) -> Vec<Instant> {
    let tasks: Vec<_> = (0..callers)
        .map(|_| {
            let (t, rng) = (t.clone(), rng.clone());
            tokio::spawn(async move {
                let mut failed = Vec::new();
                while Instant::now() < until {
                    let latency = ms(rng.lock().unwrap().random_range(lo..hi));
                    if call(&t, latency).await.is_err() {
                        failed.push(Instant::now());
                    }
                }
                failed
            })
        })
        .collect();
    let mut failed = Vec::new();
    for task in tasks {
        failed.extend(task.await.unwrap());
    }
    failed
}

#[tokio::test(start_paused = true)]
async fn follows_a_shift_in_latency_within_one_window() {
    let t = builder().build().unwrap();
    let rng = Arc::new(Mutex::new(SmallRng::seed_from_u64(7)));

    // One window of answers between 9 and 11 ms (p99 = 10.98 ms) from 10 callers.
    let failed = load(&t, &rng, 10, (9.0, 11.0), Instant::now() + WINDOW).await;
    assert!(failed.is_empty());
    assert_near(t.current(), ms(1.5 * 10.98), 0.05);

    // The dependency slows down to 90–110 ms (p99 = 109.8 ms). Calls first time out at
    // ~16 ms; the cut-off calls raise the percentile, and the timeout climbs.
    let shift = Instant::now();
    let failed = load(&t, &rng, 10, (90.0, 110.0), shift + WINDOW + REFRESH).await;
    assert!(!failed.is_empty(), "the first slow calls time out");
    // Each ×1.5 step needs 1% of the window cut off at the current value: 16 → 25 → 37
    // → 56 → 83 → 125 ms takes a couple of seconds here.
    let caught_up = failed.iter().max().unwrap().duration_since(shift);
    assert!(caught_up < WINDOW / 2, "caught up after {caught_up:?}");
    assert_near(t.current(), ms(1.5 * 109.8), 0.05);

    // And back to 9–11 ms, once the slow answers have left the window.
    let shift = Instant::now();
    let failed = load(&t, &rng, 10, (9.0, 11.0), shift + WINDOW + REFRESH).await;
    assert!(failed.is_empty());
    assert_near(t.current(), ms(1.5 * 10.98), 0.05);
}

#[tokio::test(start_paused = true)]
async fn the_timeout_is_clamped_to_min_and_max() {
    let fast = builder()
        .bounds(Duration::from_millis(20), Duration::from_secs(2))
        .min_samples(10)
        .build()
        .unwrap();
    for _ in 0..10 {
        call(&fast, Duration::from_millis(1)).await.unwrap();
    }
    tokio::time::advance(REFRESH).await;
    assert_eq!(
        fast.current(),
        Duration::from_millis(20),
        "1.5 ms raised to min"
    );

    let slow = builder()
        .window(Duration::from_secs(60))
        .min_samples(10)
        .build()
        .unwrap();
    for _ in 0..10 {
        call(&slow, Duration::from_millis(1900)).await.unwrap();
    }
    assert_eq!(slow.current(), Duration::from_secs(2), "2.85 s cut to max");
}

#[tokio::test(start_paused = true)]
async fn failures_and_ignored_outcomes_are_not_measured() {
    let t = builder().build().unwrap();
    let classifier = errors(|e: &&str| {
        if *e == "not found" {
            Outcome::ignored()
        } else {
            Outcome::failure()
        }
    });
    for error in ["refused", "not found"] {
        let r = t
            .call_with(&classifier, || async move {
                sleep(Duration::from_millis(1)).await;
                Err::<(), _>(error)
            })
            .await;
        assert!(matches!(r, Err(Error::Inner(_))));
    }
    assert_eq!(t.samples(), 0);
}

#[tokio::test(start_paused = true)]
async fn an_earlier_deadline_wins_and_is_not_measured() {
    let t = builder().build().unwrap();
    let start = Instant::now();
    let r = deadline::scope_for(Duration::from_millis(30), call(&t, Duration::from_secs(1))).await;
    assert!(matches!(r, Err(Error::DeadlineExceeded)));
    assert_eq!(start.elapsed(), Duration::from_millis(30));
    assert_eq!(
        t.samples(),
        0,
        "the caller's deadline says nothing of the dependency"
    );

    let started = std::sync::atomic::AtomicBool::new(false);
    let r = deadline::scope(Instant::now(), async {
        t.execute(&DefaultClassifier, || {
            started.store(true, std::sync::atomic::Ordering::SeqCst);
            async { Ok::<_, Error<()>>(()) }
        })
        .await
    })
    .await;
    assert!(matches!(r, Err(Error::DeadlineExceeded)));
    assert!(!started.load(std::sync::atomic::Ordering::SeqCst));
}

#[tokio::test(start_paused = true)]
async fn the_operation_runs_under_a_deadline_of_the_current_timeout() {
    let t = builder()
        .fallback(Duration::from_millis(250))
        .build()
        .unwrap();
    let seen = t
        .execute(&DefaultClassifier, || async {
            Ok::<_, Error<()>>(deadline::remaining())
        })
        .await
        .unwrap();
    assert_eq!(seen, Some(Duration::from_millis(250)));
}

#[tokio::test(start_paused = true)]
async fn listener_hears_the_timeout_with_the_duration_used() {
    let heard = Arc::new(Mutex::new(Vec::new()));
    let sink = heard.clone();
    let t = builder()
        .fallback(Duration::from_millis(40))
        .on_event(move |e| sink.lock().unwrap().push(e.clone()))
        .build()
        .unwrap();
    let _ = call(&t, Duration::from_secs(1)).await;
    assert_eq!(
        *heard.lock().unwrap(),
        vec![crate::events::Event::TimedOut {
            name: "adaptive".into(),
            after: Duration::from_millis(40),
        }]
    );
}

#[tokio::test(start_paused = true)]
async fn a_call_cut_through_a_timeout_inside_is_its_own_timeout_and_measured() {
    use crate::policy::timeout::Timeout;
    let t = builder()
        .fallback(Duration::from_millis(40))
        .build()
        .unwrap();
    // The per-try timeout inside sees the adaptive timeout's time as its deadline and
    // notices first; the time that ran out is still the adaptive timeout's.
    let per_try = Timeout::new(Duration::from_secs(1));
    let r = t
        .execute(&DefaultClassifier, || {
            per_try.execute(&DefaultClassifier, || async {
                sleep(Duration::from_secs(5)).await;
                Ok::<_, Error<()>>(())
            })
        })
        .await;
    assert!(
        matches!(r, Err(Error::Timeout { after }) if after == Duration::from_millis(40)),
        "{r:?}"
    );
    assert_eq!(
        t.samples(),
        1,
        "a cut-off call is a lower bound of the latency"
    );
}

/// Spoils one field of a config.
type Spoil = fn(&mut AdaptiveTimeoutConfig);

#[test]
fn invalid_configs_name_the_field() {
    let cases: [(&str, Spoil); 11] = [
        ("percentile", |c| c.percentile = 0.0),
        ("percentile", |c| c.percentile = 1.0),
        ("percentile", |c| c.percentile = f64::NAN),
        ("factor", |c| c.factor = 0.9),
        ("factor", |c| c.factor = f64::INFINITY),
        ("min", |c| c.min = Duration::ZERO),
        ("min", |c| c.min = Duration::from_secs(3)),
        ("max", |c| c.max = Duration::from_secs(2 * 86_400)),
        ("window", |c| c.window = Duration::from_millis(999)),
        ("min_samples", |c| c.min_samples = 0),
        ("fallback", |c| c.fallback = Some(Duration::ZERO)),
    ];
    for (field, spoil) in cases {
        let mut config = AdaptiveTimeoutConfig::default();
        spoil(&mut config);
        let err: ConfigError = config.build().unwrap_err();
        assert_eq!(err.field, field, "{err}");
    }
    assert!(AdaptiveTimeoutConfig::default().build().is_ok());
}

#[test]
fn config_reads_from_toml_with_human_durations() {
    let config: AdaptiveTimeoutConfig = toml::from_str(
        r#"
        name = "db"
        percentile = 0.95
        factor = 2.0
        min = "5ms"
        max = "1s"
        window = "1m"
        min_samples = 50
        "#,
    )
    .unwrap();
    assert_eq!(config.min, Duration::from_millis(5));
    assert_eq!(config.window, Duration::from_secs(60));
    assert_eq!(config.fallback(), Duration::from_secs(1), "max when absent");
    let t = config.build().unwrap();
    assert_eq!(t.name().as_ref(), "db");
    let unknown = toml::from_str::<AdaptiveTimeoutConfig>("percentil = 0.9");
    assert!(unknown.is_err());
}

#[tokio::test(start_paused = true)]
async fn tower_service_times_out_measures_and_keeps_errors_flat() {
    use tower::{Layer as _, ServiceExt, service_fn};
    let t = builder()
        .fallback(Duration::from_millis(50))
        .build()
        .unwrap();
    let svc = t.layer().layer(service_fn(|d: u64| async move {
        sleep(Duration::from_millis(d)).await;
        Ok::<_, std::io::Error>(d)
    }));
    assert_eq!(svc.clone().oneshot(10).await.unwrap(), 10);
    let err = svc.oneshot(500).await.unwrap_err();
    assert!(matches!(err, Error::Timeout { after } if after == Duration::from_millis(50)));
    assert_eq!(t.samples(), 2, "one answer, one cut-off call");
}

#[tokio::test(start_paused = true)]
async fn pipelines_take_it_as_a_policy_and_as_a_layer() {
    use tower::{Layer as _, ServiceExt, service_fn};
    let t = builder().build().unwrap();
    let pipeline = crate::Pipeline::builder().push(t.clone()).build();
    let answer = pipeline.call(|| async { Ok::<_, std::io::Error>(7) }).await;
    assert_eq!(answer.unwrap(), 7);
    let svc = pipeline.layer().layer(service_fn(
        |x: u32| async move { Ok::<_, std::io::Error>(x) },
    ));
    assert_eq!(svc.oneshot(3).await.unwrap(), 3);
    assert_eq!(t.samples(), 2);
}

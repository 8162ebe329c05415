use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::advance;

use super::*;
use crate::events::Event;
use crate::outcome::Outcome;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A breaker on a count window of 10, min 4 calls, 50%, open 1 s doubling to 8 s, no jitter.
fn breaker() -> CircuitBreaker {
    CircuitBreaker::builder()
        .name("t")
        .count_window(10)
        .minimum_calls(4)
        .failure_rate(0.5)
        .open_for(Duration::from_secs(1), Duration::from_secs(8), 2.0, 0.0)
        .half_open(2, 1, 2)
        .max_half_open(Duration::from_secs(5))
        .build()
        .unwrap()
}

fn succeed(b: &CircuitBreaker) -> Result<(), Rejected> {
    b.try_acquire().map(|p| p.record(&Outcome::success()))
}

fn fail(b: &CircuitBreaker) -> Result<(), Rejected> {
    b.try_acquire().map(|p| p.record(&Outcome::failure()))
}

fn trip(b: &CircuitBreaker) {
    for _ in 0..4 {
        let _ = fail(b);
    }
    assert_eq!(b.state(), CircuitState::Open);
}

type Transitions = Arc<Mutex<Vec<(CircuitState, CircuitState)>>>;

fn recorder(builder: CircuitBreakerBuilder) -> (CircuitBreaker, Transitions) {
    let log = Arc::new(Mutex::new(Vec::new()));
    let sink = log.clone();
    let b = builder
        .on_event(move |e| {
            if let Event::CircuitStateChanged { from, to, .. } = e {
                sink.lock().unwrap().push((*from, *to));
            }
        })
        .build()
        .unwrap();
    (b, log)
}

#[tokio::test(start_paused = true)]
async fn count_window_trips_at_the_failure_rate_once_minimum_calls_are_in() {
    let b = breaker();
    fail(&b).unwrap();
    succeed(&b).unwrap();
    fail(&b).unwrap();
    assert_eq!(b.state(), CircuitState::Closed, "3 calls < minimum of 4");
    succeed(&b).unwrap();
    assert_eq!(b.state(), CircuitState::Open, "2 failures in 4 calls ≥ 50%");
}

#[tokio::test(start_paused = true)]
async fn count_window_forgets_calls_that_slid_out() {
    let b = breaker();
    for _ in 0..5 {
        fail(&b).unwrap();
        succeed(&b).unwrap();
        succeed(&b).unwrap();
        succeed(&b).unwrap();
    }
    // Any 10 consecutive calls hold at most 3 failures: 30% < 50%.
    assert_eq!(b.state(), CircuitState::Closed);
    assert!(b.snapshot().failure_rate < 0.5);
}

#[tokio::test(start_paused = true)]
async fn ignored_outcomes_do_not_count() {
    let b = breaker();
    for _ in 0..20 {
        b.try_acquire().unwrap().record(&Outcome::ignored());
    }
    assert_eq!(b.snapshot().calls, 0);
    assert_eq!(b.state(), CircuitState::Closed);
}

#[tokio::test(start_paused = true)]
async fn time_window_counts_only_recent_failures() {
    let b = CircuitBreaker::builder()
        .time_window(10, 10)
        .minimum_calls(4)
        .failure_rate(0.5)
        .build()
        .unwrap();
    for _ in 0..3 {
        fail(&b).unwrap();
    }
    advance(Duration::from_secs(11)).await;
    fail(&b).unwrap();
    assert_eq!(
        b.state(),
        CircuitState::Closed,
        "the first three failures expired"
    );
    assert_eq!(b.snapshot().calls, 1);
    for _ in 0..3 {
        advance(Duration::from_secs(1)).await;
        fail(&b).unwrap();
    }
    assert_eq!(b.state(), CircuitState::Open);
}

#[tokio::test(start_paused = true)]
async fn consecutive_window_resets_on_success() {
    let b = CircuitBreaker::builder()
        .consecutive_failures(3)
        .build()
        .unwrap();
    fail(&b).unwrap();
    fail(&b).unwrap();
    succeed(&b).unwrap();
    fail(&b).unwrap();
    fail(&b).unwrap();
    assert_eq!(b.state(), CircuitState::Closed);
    fail(&b).unwrap();
    assert_eq!(b.state(), CircuitState::Open);
}

#[tokio::test(start_paused = true)]
async fn slow_call_rate_trips_even_when_calls_succeed() {
    let b = CircuitBreaker::builder()
        .count_window(10)
        .minimum_calls(4)
        .slow_calls(ms(100), 0.75)
        .build()
        .unwrap();
    for i in 0..4 {
        let permit = b.try_acquire().unwrap();
        advance(if i == 0 { ms(10) } else { ms(150) }).await;
        permit.record(&Outcome::success());
    }
    assert_eq!(b.state(), CircuitState::Open, "3 of 4 slow ≥ 75%");
    assert_eq!(b.snapshot().slow_calls, 3);
    assert_eq!(b.snapshot().failures, 0);
}

#[tokio::test(start_paused = true)]
async fn open_rejects_without_running_and_tells_when_to_come_back() {
    let b = breaker();
    trip(&b);
    let ran = AtomicU32::new(0);
    let r = b
        .call(|| async {
            ran.fetch_add(1, Ordering::SeqCst);
            Ok::<_, ()>(())
        })
        .await;
    match r {
        Err(Error::CircuitOpen { name, retry_after }) => {
            assert_eq!(&*name, "t");
            assert_eq!(retry_after, Some(Duration::from_secs(1)));
        }
        other => panic!("expected CircuitOpen, got {other:?}"),
    }
    assert_eq!(ran.load(Ordering::SeqCst), 0);
    advance(ms(400)).await;
    assert_eq!(fail(&b).unwrap_err().retry_after, Some(ms(600)));
}

#[tokio::test(start_paused = true)]
async fn half_open_on_the_next_call_after_the_wait_then_closes_after_successes() {
    let (b, log) = recorder(
        CircuitBreakerBuilder::default()
            .count_window(10)
            .minimum_calls(4)
            .open_for(Duration::from_secs(1), Duration::from_secs(8), 2.0, 0.0)
            .half_open(2, 1, 2),
    );
    trip(&b);
    advance(Duration::from_secs(1)).await;
    assert_eq!(
        b.state(),
        CircuitState::Open,
        "no call yet, no timer: still reports open"
    );
    succeed(&b).unwrap();
    assert_eq!(b.state(), CircuitState::HalfOpen);
    succeed(&b).unwrap();
    assert_eq!(b.state(), CircuitState::Closed);
    assert_eq!(
        *log.lock().unwrap(),
        vec![
            (CircuitState::Closed, CircuitState::Open),
            (CircuitState::Open, CircuitState::HalfOpen),
            (CircuitState::HalfOpen, CircuitState::Closed),
        ]
    );
    assert_eq!(b.snapshot().calls, 0, "the window starts afresh");
}

#[tokio::test(start_paused = true)]
async fn half_open_caps_probes_in_flight_and_in_total() {
    let b = CircuitBreaker::builder()
        .count_window(10)
        .minimum_calls(4)
        .open_for(Duration::from_secs(1), Duration::from_secs(8), 2.0, 0.0)
        .half_open(3, 2, 3)
        .build()
        .unwrap();
    trip(&b);
    advance(Duration::from_secs(1)).await;
    let p1 = b.try_acquire().unwrap();
    let p2 = b.try_acquire().unwrap();
    assert!(p1.is_probe() && p2.is_probe());
    let refused = b.try_acquire().unwrap_err();
    assert_eq!(
        refused.state,
        CircuitState::HalfOpen,
        "concurrency cap of 2"
    );
    p1.record(&Outcome::success());
    let p3 = b.try_acquire().unwrap();
    assert!(b.try_acquire().is_err(), "total cap of 3 reached");
    p2.record(&Outcome::success());
    assert!(
        b.try_acquire().is_err(),
        "still: 3 probes admitted this period"
    );
    p3.record(&Outcome::success());
    assert_eq!(b.state(), CircuitState::Closed);
}

#[tokio::test(start_paused = true)]
async fn any_probe_failure_reopens_with_a_longer_wait_that_resets_on_close() {
    let b = breaker();
    trip(&b);
    let mut waits = Vec::new();
    for _ in 0..5 {
        waits.push(b.snapshot().retry_after.unwrap());
        advance(b.snapshot().retry_after.unwrap()).await;
        fail(&b).unwrap(); // the probe fails
        assert_eq!(b.state(), CircuitState::Open);
    }
    waits.push(b.snapshot().retry_after.unwrap());
    let secs: Vec<u64> = waits.iter().map(Duration::as_secs).collect();
    assert_eq!(
        secs,
        [1, 1, 2, 2, 4, 4],
        "doubling once per two probes failed in a row (a period admits two)"
    );
    assert_eq!(b.snapshot().consecutive_trips, 6);
    advance(Duration::from_secs(4)).await;
    succeed(&b).unwrap();
    succeed(&b).unwrap();
    assert_eq!(b.state(), CircuitState::Closed);
    trip(&b);
    assert_eq!(
        b.snapshot().retry_after,
        Some(Duration::from_secs(1)),
        "backoff reset on close"
    );
}

#[tokio::test(start_paused = true)]
async fn the_open_time_grows_only_while_probes_keep_failing() {
    let b = breaker(); // a half-open period admits two probes
    trip(&b);
    // Probes failing in a row: the open time doubles once per two of them.
    let mut waits = Vec::new();
    for _ in 0..6 {
        advance(b.snapshot().retry_after.unwrap()).await;
        fail(&b).unwrap();
        waits.push(b.snapshot().retry_after.unwrap().as_secs());
    }
    assert_eq!(waits, [1, 2, 2, 4, 4, 8]);
    // The dependency serves again, in part: a probe succeeds before one fails.
    advance(Duration::from_secs(8)).await;
    succeed(&b).unwrap();
    fail(&b).unwrap();
    assert_eq!(b.state(), CircuitState::Open);
    assert_eq!(b.snapshot().retry_after, Some(Duration::from_secs(1)));
    // From then on until it closes, failed probes do not lengthen the open time: the
    // dependency has served since it opened.
    for _ in 0..4 {
        advance(Duration::from_secs(1)).await;
        fail(&b).unwrap();
        assert_eq!(
            b.snapshot().retry_after,
            Some(Duration::from_secs(1)),
            "a probe succeeded since the last close: the open time stays the first"
        );
    }
    // Once closed, a new failure episode grows again.
    advance(Duration::from_secs(1)).await;
    succeed(&b).unwrap();
    succeed(&b).unwrap();
    assert_eq!(b.state(), CircuitState::Closed);
    trip(&b);
    for _ in 0..2 {
        advance(b.snapshot().retry_after.unwrap()).await;
        fail(&b).unwrap();
    }
    assert_eq!(b.snapshot().retry_after, Some(Duration::from_secs(2)));
}

#[tokio::test(start_paused = true)]
async fn open_time_jitter_stays_within_its_spread() {
    for seed in 0..20 {
        let b = CircuitBreaker::builder()
            .consecutive_failures(1)
            .open_for(Duration::from_secs(10), Duration::from_secs(60), 2.0, 0.2)
            .seed(seed)
            .build()
            .unwrap();
        fail(&b).unwrap();
        let wait = b.snapshot().retry_after.unwrap().as_secs_f64();
        assert!((8.0..=12.0).contains(&wait), "seed {seed}: {wait}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_probe_that_never_answers_cannot_wedge_half_open() {
    let b = breaker();
    trip(&b);
    advance(Duration::from_secs(1)).await;
    let hung = b.try_acquire().unwrap();
    assert!(
        b.try_acquire().is_err(),
        "the hung probe holds the only slot"
    );
    advance(Duration::from_secs(5)).await;
    let refused = b.try_acquire().unwrap_err();
    assert_eq!(
        refused.state,
        CircuitState::Open,
        "max_half_open passed: reopened"
    );
    assert_eq!(b.state(), CircuitState::Open);
    // The hung probe finishing late changes nothing.
    hung.record(&Outcome::success());
    assert_eq!(b.state(), CircuitState::Open);
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_probe_gives_its_slot_back() {
    let b = breaker();
    trip(&b);
    advance(Duration::from_secs(1)).await;
    let probe = b.try_acquire().unwrap();
    drop(probe);
    assert!(b.try_acquire().is_ok(), "slot returned on drop");
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_call_future_gives_its_probe_slot_back() {
    let b = breaker();
    trip(&b);
    advance(Duration::from_secs(1)).await;
    let slow = b.call(|| async {
        tokio::time::sleep(Duration::from_secs(60)).await;
        Ok::<_, ()>(())
    });
    let timed_out = tokio::time::timeout(ms(10), slow).await;
    assert!(timed_out.is_err());
    assert!(b.try_acquire().unwrap().is_probe());
}

#[tokio::test(start_paused = true)]
async fn late_outcomes_from_an_older_generation_are_ignored() {
    let b = breaker();
    let old = b.try_acquire().unwrap();
    trip(&b);
    advance(Duration::from_secs(1)).await;
    succeed(&b).unwrap();
    succeed(&b).unwrap();
    assert_eq!(b.state(), CircuitState::Closed);
    old.record(&Outcome::failure());
    assert_eq!(
        b.snapshot().calls,
        0,
        "a call admitted before the trip is not counted"
    );
}

#[tokio::test(start_paused = true)]
async fn forced_states_and_reset() {
    let (b, log) = recorder(CircuitBreakerBuilder::default().consecutive_failures(1));
    b.force_open();
    assert_eq!(succeed(&b).unwrap_err().state, CircuitState::ForcedOpen);
    advance(Duration::from_secs(3600)).await;
    assert!(succeed(&b).is_err(), "forced open never half-opens");
    b.force_closed();
    for _ in 0..10 {
        fail(&b).unwrap();
    }
    assert_eq!(
        b.state(),
        CircuitState::ForcedClosed,
        "nothing trips when forced closed"
    );
    b.reset();
    assert_eq!(b.state(), CircuitState::Closed);
    fail(&b).unwrap();
    assert_eq!(b.state(), CircuitState::Open);
    assert_eq!(log.lock().unwrap().len(), 4);
}

#[tokio::test(start_paused = true)]
async fn disabled_admits_everything_and_records_nothing() {
    let b = CircuitBreaker::builder()
        .mode(BreakerMode::Disabled)
        .consecutive_failures(1)
        .build()
        .unwrap();
    for _ in 0..10 {
        fail(&b).unwrap();
    }
    assert_eq!(b.state(), CircuitState::Disabled);
}

#[tokio::test(start_paused = true)]
async fn metrics_only_runs_the_machine_but_never_rejects() {
    let rejections = Arc::new(AtomicU32::new(0));
    let seen = rejections.clone();
    let b = CircuitBreaker::builder()
        .mode(BreakerMode::MetricsOnly)
        .consecutive_failures(2)
        .on_event(move |e| {
            if matches!(e, Event::CircuitRejected { .. }) {
                seen.fetch_add(1, Ordering::SeqCst);
            }
        })
        .build()
        .unwrap();
    fail(&b).unwrap();
    fail(&b).unwrap();
    assert_eq!(b.state(), CircuitState::Open);
    for _ in 0..5 {
        succeed(&b).unwrap();
    }
    assert_eq!(
        rejections.load(Ordering::SeqCst),
        5,
        "would-be rejections are reported"
    );
}

#[tokio::test(start_paused = true)]
async fn the_timer_moves_an_idle_breaker_on_time() {
    let (b, log) = recorder(
        CircuitBreakerBuilder::default()
            .consecutive_failures(1)
            .open_for(Duration::from_secs(2), Duration::from_secs(8), 2.0, 0.0)
            .max_half_open(Duration::from_secs(3)),
    );
    let timer = b.spawn_timer();
    fail(&b).unwrap();
    tokio::time::sleep(ms(1999)).await;
    assert_eq!(b.state(), CircuitState::Open);
    tokio::time::sleep(ms(2)).await;
    assert_eq!(b.state(), CircuitState::HalfOpen, "moved without any call");
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(
        b.state(),
        CircuitState::HalfOpen,
        "with no probe outstanding, half-open waits for traffic"
    );
    let hung = b.try_acquire().unwrap();
    tokio::time::sleep(ms(2999)).await;
    assert_eq!(b.state(), CircuitState::HalfOpen);
    tokio::time::sleep(ms(2)).await;
    assert_eq!(
        b.state(),
        CircuitState::Open,
        "an unanswered probe reopens it on time"
    );
    drop(hung);
    assert_eq!(log.lock().unwrap().len(), 3);
    drop(b);
    tokio::time::sleep(Duration::from_secs(120)).await;
    assert!(timer.is_finished(), "the timer ends with the breaker");
}

#[test]
fn invalid_configs_name_the_field() {
    let cases: Vec<(CircuitBreakerConfig, &str)> = vec![
        (
            CircuitBreakerConfig {
                size: 0,
                ..Default::default()
            },
            "size",
        ),
        (
            CircuitBreakerConfig {
                failure_rate: 0.0,
                ..Default::default()
            },
            "failure_rate",
        ),
        (
            CircuitBreakerConfig {
                failure_rate: f64::NAN,
                ..Default::default()
            },
            "failure_rate",
        ),
        (
            CircuitBreakerConfig {
                minimum_calls: 101,
                ..Default::default()
            },
            "minimum_calls",
        ),
        (
            CircuitBreakerConfig {
                max_open_for: Duration::from_secs(1),
                ..Default::default()
            },
            "max_open_for",
        ),
        (
            CircuitBreakerConfig {
                open_for: Duration::ZERO,
                ..Default::default()
            },
            "open_for",
        ),
        (
            CircuitBreakerConfig {
                half_open_successes: Some(9),
                ..Default::default()
            },
            "half_open_successes",
        ),
        (
            CircuitBreakerConfig {
                half_open_concurrency: 0,
                ..Default::default()
            },
            "half_open_concurrency",
        ),
        (
            CircuitBreakerConfig {
                window: WindowKind::Time,
                size: 1,
                buckets: 1000,
                ..Default::default()
            },
            "buckets",
        ),
        (
            CircuitBreakerConfig {
                slow_call_duration: Some(Duration::ZERO),
                ..Default::default()
            },
            "slow_call_duration",
        ),
    ];
    for (config, field) in cases {
        let err = config.build().unwrap_err();
        assert_eq!(err.field, field, "{err}");
    }
}

#[test]
fn config_reads_from_toml_with_humane_durations() {
    let config: CircuitBreakerConfig = toml::from_str(
        r#"
        name = "inventory"
        window = "time"
        size = 30
        failure_rate = 0.25
        minimum_calls = 10
        slow_call_duration = "1s"
        open_for = "5s"
        max_open_for = "2m"
        "#,
    )
    .unwrap();
    assert_eq!(config.window, WindowKind::Time);
    assert_eq!(config.slow_call_duration, Some(Duration::from_secs(1)));
    assert_eq!(config.max_open_for, Duration::from_secs(120));
    config.build().unwrap();
    let unknown = toml::from_str::<CircuitBreakerConfig>("failure_ratio = 0.5");
    assert!(unknown.unwrap_err().to_string().contains("unknown field"));
}

#[tokio::test(start_paused = true)]
async fn registry_is_bounded_and_evicts_closed_breakers_first() {
    let registry =
        CircuitBreakerRegistry::new(CircuitBreaker::builder().consecutive_failures(1), 2).unwrap();
    let a = registry.get(&"a");
    fail(&a).unwrap(); // a is open
    let _b = registry.get(&"b");
    let _c = registry.get(&"c"); // full: evicts b (closed), keeps a (open)
    assert_eq!(registry.len(), 2);
    assert_eq!(registry.evictions(), 1);
    assert!(registry.find(&"a").is_some());
    assert!(registry.find(&"b").is_none());
    assert_eq!(
        registry.get(&"a").state(),
        CircuitState::Open,
        "same breaker, same state"
    );
}

#[tokio::test(start_paused = true)]
async fn tower_layer_counts_failures_and_rejects_when_open() {
    use tower::{Layer, ServiceExt, service_fn};
    let b = CircuitBreaker::builder()
        .consecutive_failures(2)
        .build()
        .unwrap();
    let hits = Arc::new(AtomicU32::new(0));
    let counter = hits.clone();
    let svc = b.layer().layer(service_fn(move |ok: bool| {
        counter.fetch_add(1, Ordering::SeqCst);
        async move {
            if ok {
                Ok(())
            } else {
                Err(std::io::Error::other("down"))
            }
        }
    }));
    assert!(svc.clone().oneshot(true).await.is_ok());
    assert!(matches!(
        svc.clone().oneshot(false).await,
        Err(Error::Inner(_))
    ));
    assert!(matches!(
        svc.clone().oneshot(false).await,
        Err(Error::Inner(_))
    ));
    assert!(matches!(
        svc.clone().oneshot(true).await,
        Err(Error::CircuitOpen { .. })
    ));
    assert_eq!(
        hits.load(Ordering::SeqCst),
        3,
        "the rejected call never reached the service"
    );
}

#[tokio::test(start_paused = true)]
async fn classifier_decides_what_counts() {
    let b = CircuitBreaker::builder()
        .consecutive_failures(1)
        .build()
        .unwrap();
    let not_found_is_fine = crate::outcome::errors(|e: &&str| {
        if *e == "404" {
            Outcome::ignored()
        } else {
            Outcome::failure()
        }
    });
    for _ in 0..5 {
        let _ = b
            .call_with(&not_found_is_fine, || async { Err::<(), _>("404") })
            .await;
    }
    assert_eq!(b.state(), CircuitState::Closed);
    let _ = b
        .call_with(&not_found_is_fine, || async { Err::<(), _>("500") })
        .await;
    assert_eq!(b.state(), CircuitState::Open);
}

mod recovery;

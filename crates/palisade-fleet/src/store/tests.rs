//! The breaker's wiring, on tokio's paused clock with no socket: calls are closures that
//! answer what a test says, counted so that a test sees which ones ran.

use std::io;
use std::sync::atomic::{AtomicU32, Ordering};

use palisade::policy::circuit_breaker::CircuitState;
use redis::ErrorKind;
use tokio::time::advance;

use super::*;

const OPEN_FOR: Duration = Duration::from_millis(250);

/// A store with the default settings, never connected (no background connect either).
fn store() -> RedisStore {
    RedisStore::unconnected(&StoreConfig::new("redis://127.0.0.1:1/"))
        .expect("valid")
        .0
}

fn refused() -> RedisError {
    RedisError::from(io::Error::from(io::ErrorKind::ConnectionRefused))
}

/// What a call answers.
#[derive(Clone, Copy)]
enum Answer {
    Ok,
    Refused,
    Hangs,
    Malformed,
}

/// Makes one call through the breaker that answers `answer`, counting it in `ran` if it
/// ran at all.
async fn call(store: &RedisStore, ran: &AtomicU32, answer: Answer) -> Result<Value, FleetError> {
    store
        .guarded(store.timed(|| async move {
            ran.fetch_add(1, Ordering::Relaxed);
            match answer {
                Answer::Ok => Ok(Value::Okay),
                Answer::Refused => Err(refused()),
                Answer::Hangs => {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                    Ok(Value::Okay)
                }
                Answer::Malformed => Err(RedisError::from((ErrorKind::ResponseError, "odd"))),
            }
        }))
        .await
}

#[tokio::test(start_paused = true)]
async fn three_failures_in_a_row_open_it_and_then_nothing_runs() {
    let (store, ran) = (store(), AtomicU32::new(0));
    for _ in 0..3 {
        assert!(store.is_available());
        let answer = call(&store, &ran, Answer::Refused).await;
        assert!(
            matches!(answer, Err(FleetError::Unavailable { .. })),
            "{answer:?}"
        );
    }
    assert_eq!(store.breaker().state(), CircuitState::Open);
    assert!(!store.is_available());
    for _ in 0..100 {
        let answer = call(&store, &ran, Answer::Ok).await;
        assert_eq!(
            answer,
            Err(FleetError::CircuitOpen {
                retry_after: OPEN_FOR
            })
        );
    }
    assert_eq!(ran.load(Ordering::Relaxed), 3, "no call ran while open");
    let e = call(&store, &ran, Answer::Ok).await.unwrap_err();
    assert_eq!(e.reason(), "fleet-breaker-open");
    assert!(e.is_store_failure());
}

#[tokio::test(start_paused = true)]
async fn after_its_open_time_one_probe_decides() {
    let (store, ran) = (store(), AtomicU32::new(0));
    for _ in 0..3 {
        let _ = call(&store, &ran, Answer::Refused).await;
    }
    advance(Duration::from_millis(100)).await;
    assert_eq!(
        call(&store, &ran, Answer::Ok).await,
        Err(FleetError::CircuitOpen {
            retry_after: Duration::from_millis(150)
        })
    );
    advance(Duration::from_millis(150)).await;
    assert!(store.is_available(), "the next call is the probe");
    // A failed probe: open again, for the same 250 ms (no growth), however often.
    for _ in 0..5 {
        let before = ran.load(Ordering::Relaxed);
        assert!(call(&store, &ran, Answer::Refused).await.is_err());
        assert_eq!(ran.load(Ordering::Relaxed), before + 1, "the probe ran");
        assert_eq!(
            call(&store, &ran, Answer::Ok).await,
            Err(FleetError::CircuitOpen {
                retry_after: OPEN_FOR
            })
        );
        advance(OPEN_FOR).await;
    }
    // A successful probe closes it.
    assert_eq!(call(&store, &ran, Answer::Ok).await, Ok(Value::Okay));
    assert_eq!(store.breaker().state(), CircuitState::Closed);
    assert_eq!(call(&store, &ran, Answer::Ok).await, Ok(Value::Okay));
}

#[tokio::test(start_paused = true)]
async fn while_the_probe_is_out_other_calls_are_refused() {
    let store = store();
    let ran = Arc::new(AtomicU32::new(0));
    for _ in 0..3 {
        let _ = call(&store, &ran, Answer::Refused).await;
    }
    advance(OPEN_FOR).await;
    let probe = tokio::spawn({
        let (store, ran) = (store.clone(), ran.clone());
        async move { call(&store, &ran, Answer::Hangs).await }
    });
    tokio::task::yield_now().await;
    assert_eq!(store.breaker().state(), CircuitState::HalfOpen);
    assert!(matches!(
        call(&store, &ran, Answer::Ok).await,
        Err(FleetError::CircuitOpen { .. })
    ));
    // The probe times out (5 ms): a failure, so the breaker opens again.
    assert!(matches!(
        probe.await.expect("probe"),
        Err(FleetError::Timeout { .. })
    ));
    assert_eq!(store.breaker().state(), CircuitState::Open);
}

#[tokio::test(start_paused = true)]
async fn timeouts_count_as_failures() {
    let (store, ran) = (store(), AtomicU32::new(0));
    for _ in 0..3 {
        let answer = call(&store, &ran, Answer::Hangs).await;
        assert_eq!(
            answer,
            Err(FleetError::Timeout {
                after: DEFAULT_TIMEOUT
            })
        );
    }
    assert!(matches!(
        call(&store, &ran, Answer::Ok).await,
        Err(FleetError::CircuitOpen { .. })
    ));
}

#[tokio::test(start_paused = true)]
async fn malformed_answers_do_not_count_redis_answered() {
    let (store, ran) = (store(), AtomicU32::new(0));
    for _ in 0..20 {
        let answer = call(&store, &ran, Answer::Malformed).await;
        assert!(
            matches!(answer, Err(FleetError::Malformed { .. })),
            "{answer:?}"
        );
    }
    assert_eq!(store.breaker().state(), CircuitState::Closed);
    // And one in a run of failures breaks the run.
    for answer in [
        Answer::Refused,
        Answer::Refused,
        Answer::Malformed,
        Answer::Refused,
    ] {
        let _ = call(&store, &ran, answer).await;
    }
    assert_eq!(store.breaker().state(), CircuitState::Closed);
}

#[tokio::test(start_paused = true)]
async fn a_success_breaks_a_run_of_failures() {
    let (store, ran) = (store(), AtomicU32::new(0));
    for answer in [
        Answer::Refused,
        Answer::Refused,
        Answer::Ok,
        Answer::Refused,
        Answer::Refused,
    ] {
        let _ = call(&store, &ran, answer).await;
    }
    assert_eq!(store.breaker().state(), CircuitState::Closed);
    let _ = call(&store, &ran, Answer::Refused).await;
    assert_eq!(store.breaker().state(), CircuitState::Open);
}

#[tokio::test(start_paused = true)]
async fn the_callers_own_deadline_does_not_count() {
    let (store, ran) = (store(), AtomicU32::new(0));
    let spent = tokio::time::Instant::now();
    for _ in 0..10 {
        let answer = palisade::deadline::scope(spent, call(&store, &ran, Answer::Ok)).await;
        assert!(
            matches!(answer, Err(FleetError::Timeout { .. })),
            "{answer:?}"
        );
    }
    assert_eq!(store.breaker().state(), CircuitState::Closed);
}

#[tokio::test(start_paused = true)]
async fn a_store_not_connected_yet_counts_as_unavailable() {
    let store = store();
    let mut get = redis::cmd("GET");
    get.arg("k");
    for _ in 0..3 {
        assert!(matches!(
            store.command(&get).await,
            Err(FleetError::Unavailable { .. })
        ));
    }
    assert!(matches!(
        store.command(&get).await,
        Err(FleetError::CircuitOpen { .. })
    ));
    // Clones share the breaker.
    assert!(!store.clone().is_available());
}

#[tokio::test(start_paused = true)]
async fn the_breaker_follows_its_config() {
    let config = StoreConfig::new("redis://127.0.0.1:1/").breaker(StoreBreakerConfig {
        failures: 5,
        open_for: Duration::from_secs(2),
    });
    let (store, _) = RedisStore::unconnected(&config).expect("valid");
    assert_eq!(store.breaker().name().to_string(), "fleet.redis");
    let ran = AtomicU32::new(0);
    for _ in 0..4 {
        let _ = call(&store, &ran, Answer::Refused).await;
    }
    assert!(store.is_available());
    let _ = call(&store, &ran, Answer::Refused).await;
    assert_eq!(
        call(&store, &ran, Answer::Ok).await,
        Err(FleetError::CircuitOpen {
            retry_after: Duration::from_secs(2)
        })
    );
    // Held open by an operator: refused, with the open time as the wait.
    store.breaker().reset();
    store.breaker().force_open();
    assert_eq!(
        call(&store, &ran, Answer::Ok).await,
        Err(FleetError::CircuitOpen {
            retry_after: Duration::from_secs(2)
        })
    );
    assert!(!store.is_available());
}

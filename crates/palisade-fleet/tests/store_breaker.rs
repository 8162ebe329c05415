//! The store's breaker against a real `redis-server` of the test's own (skipped loudly
//! without one, a failure when `CI` is set): Redis killed trips it, an open breaker asks
//! nothing, Redis back is used again within a second.
//!
//! Real time here (real sockets): the waits are polls with deadlines, never sleeps that
//! guess how long something takes.

mod support;

use std::time::Duration;

use palisade::policy::circuit_breaker::CircuitState;
use palisade::policy::rate_limit::Quota;
use palisade_fleet::store::StoreBreakerConfig;
use palisade_fleet::{
    Check, Decision, FleetError, FleetLimit, FleetRateLimiter, RedisStore, StoreConfig,
};
use palisade_testkit::redis::OwnRedis;
use tokio::time::Instant;

use support::*;

/// Patient enough for a busy shared machine: these tests are about the breaker, and a
/// call to a killed server fails at once with a refused connection anyway.
const PATIENT: Duration = Duration::from_millis(500);

fn limiter(store: &RedisStore) -> FleetRateLimiter {
    FleetRateLimiter::builder()
        .name("breaker")
        .store(store.clone())
        .build()
        .unwrap()
}

fn limit() -> FleetLimit {
    FleetLimit::new("l", Quota::new(100_000.0, 100_000)).unwrap()
}

#[tokio::test]
async fn a_killed_server_trips_the_breaker_after_three_failed_calls() {
    let Some(redis) = OwnRedis::start() else {
        return;
    };
    let store = RedisStore::connect(&StoreConfig::new(redis.url()).timeout(PATIENT))
        .await
        .unwrap();
    let limiter = limiter(&store);
    let limit = limit();
    let check = [Check::global(&limit)];
    assert!(limiter.check(&check).await.unwrap().is_admitted());
    assert!(store.is_available());
    redis.stop();
    for call in 1..=3 {
        match limiter.check(&check).await {
            Err(FleetError::Unavailable { .. } | FleetError::Timeout { .. }) => {}
            other => panic!("call {call}: {other:?}"),
        }
    }
    assert_eq!(store.breaker().state(), CircuitState::Open);
    assert!(!store.is_available());
    // Open: every call answers CircuitOpen (not a timeout, not a refused connection, so
    // none of them tried the network).
    for _ in 0..1000 {
        match limiter.check(&check).await {
            Err(e @ FleetError::CircuitOpen { retry_after }) => {
                assert!(retry_after <= Duration::from_millis(250), "{retry_after:?}");
                assert_eq!(e.reason(), "fleet-breaker-open");
                assert!(e.is_store_failure());
            }
            other => panic!("{other:?}"),
        }
    }
}

#[tokio::test]
async fn an_open_breaker_sends_nothing_to_redis() {
    let Some(redis) = OwnRedis::start() else {
        return;
    };
    // Open for 10 s: the test runs inside one open time, whatever the machine's speed.
    let config = StoreConfig::new(redis.url())
        .timeout(PATIENT)
        .breaker(StoreBreakerConfig {
            failures: 3,
            open_for: Duration::from_secs(10),
        });
    let store = RedisStore::connect(&config).await.unwrap();
    let limiter = limiter(&store);
    let limit = limit();
    let check = [Check::global(&limit)];
    assert!(limiter.check(&check).await.unwrap().is_admitted());
    redis.stop();
    for _ in 0..3 {
        assert!(limiter.check(&check).await.is_err());
    }
    assert!(!store.is_available());
    // Redis is back (a fresh server, no command run yet) while the breaker is open.
    redis.start_again();
    for _ in 0..100 {
        assert!(matches!(
            limiter.check(&check).await,
            Err(FleetError::CircuitOpen { .. })
        ));
    }
    // A second store (its own breaker) looks: not one script call reached the server.
    let observer = RedisStore::connect(&StoreConfig::new(redis.url()).timeout(PATIENT))
        .await
        .unwrap();
    assert_eq!(calls_of(&observer, "evalsha").await, 0);
    assert_eq!(calls_of(&observer, "eval").await, 0);
    // An operator (or a health check) ends the open time: the next call probes, Redis
    // answers (the connection reopened, the script loaded again), the breaker closes.
    store.breaker().probe_now();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match limiter.check(&check).await {
            Ok(decision) => {
                assert_eq!(decision, Decision::Admitted);
                break;
            }
            Err(e) => assert!(
                Instant::now() < deadline,
                "no decision after probe_now: {e}"
            ),
        }
        // The probe may fail while the connection reopens; probe again.
        store.breaker().probe_now();
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(store.breaker().state(), CircuitState::Closed);
    assert!(calls_of(&observer, "evalsha").await >= 1);
}

#[tokio::test]
async fn a_server_back_is_used_again_within_a_second() {
    let Some(redis) = OwnRedis::start() else {
        return;
    };
    // The default breaker: 3 failures, open 250 ms.
    let store = RedisStore::connect(&StoreConfig::new(redis.url()).timeout(PATIENT))
        .await
        .unwrap();
    let limiter = limiter(&store);
    let limit = limit();
    let check = [Check::global(&limit)];
    assert!(limiter.check(&check).await.unwrap().is_admitted());
    redis.stop();
    let mut failed = 0;
    while !matches!(
        limiter.check(&check).await,
        Err(FleetError::CircuitOpen { .. })
    ) {
        failed += 1;
        assert!(
            failed <= 3,
            "still asking redis after {failed} failed calls"
        );
    }
    assert_eq!(failed, 3);
    // Down for a while: several open times pass, every probe fails.
    let down_until = Instant::now() + Duration::from_millis(800);
    while Instant::now() < down_until {
        assert!(limiter.check(&check).await.is_err());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    redis.start_again();
    let back = Instant::now();
    let deadline = back + Duration::from_secs(1);
    loop {
        if let Ok(decision) = limiter.check(&check).await {
            assert!(decision.is_admitted());
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no decision within 1 s of redis coming back (breaker {:?})",
            store.breaker().state()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    eprintln!("decisions again {:?} after redis came back", back.elapsed());
    assert!(store.is_available());
    assert_eq!(store.breaker().state(), CircuitState::Closed);
}

#[tokio::test]
async fn a_store_started_while_redis_is_down_is_used_within_a_second_of_it_coming_up() {
    let Some(redis) = OwnRedis::start() else {
        return;
    };
    redis.stop();
    let config = StoreConfig::new(redis.url())
        .timeout(PATIENT)
        .connect_timeout(Duration::from_millis(200));
    let store = RedisStore::start(&config).unwrap();
    let limiter = limiter(&store);
    let limit = limit();
    let check = [Check::global(&limit)];
    for _ in 0..3 {
        assert!(matches!(
            limiter.check(&check).await,
            Err(FleetError::Unavailable { .. })
        ));
    }
    assert!(matches!(
        limiter.check(&check).await,
        Err(FleetError::CircuitOpen { .. })
    ));
    redis.start_again();
    let back = Instant::now();
    // The background connect waits up to 2 s between attempts, so the connection itself
    // may take that long; once it is there, the breaker lets calls through within one
    // open time and a probe.
    let deadline = back + Duration::from_secs(5);
    while !store.is_connected() {
        assert!(Instant::now() < deadline, "not connected within 5 s");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let connected = Instant::now();
    loop {
        if limiter.check(&check).await.is_ok() {
            break;
        }
        assert!(
            connected.elapsed() < Duration::from_secs(1),
            "no decision within 1 s of the connection"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

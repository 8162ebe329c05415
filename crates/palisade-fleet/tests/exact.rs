//! The fleet rate limit in exact mode against a real `redis-server` of the test's own
//! (skipped loudly without one, a failure when `CI` is set).

mod support;

use std::sync::Arc;
use std::time::Duration;

use palisade::policy::rate_limit::Quota;
use palisade_fleet::{
    Check, Decision, FleetError, FleetLimit, FleetRateLimiter, RedisStore, StoreConfig,
};
use palisade_testkit::redis::OwnRedis;
use redis::Value;
use tokio::time::Instant;

use support::*;

/// A generous timeout for tests about counting (the machine is shared and busy); the
/// timeout test uses the default.
const PATIENT: Duration = Duration::from_millis(500);

async fn store(redis: &OwnRedis, timeout: Duration) -> RedisStore {
    RedisStore::connect(&StoreConfig::new(redis.url()).timeout(timeout))
        .await
        .unwrap()
}

fn limiter(store: &RedisStore, scope: &str) -> FleetRateLimiter {
    FleetRateLimiter::builder()
        .name(scope)
        .store(store.clone())
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_instances_at_ten_times_the_limit_admit_exactly_the_quota() {
    let Some(redis) = OwnRedis::start() else {
        return;
    };
    const PER_SECOND: f64 = 500.0;
    const BURST: u32 = 25;
    const INSTANCES: usize = 4;
    const CALLERS: usize = 64;
    const RUN: Duration = Duration::from_secs(3);
    let limit = Arc::new(FleetLimit::new("global", Quota::new(PER_SECOND, BURST)).unwrap());
    // Each instance its own connection, as separate processes would have.
    let mut instances = Vec::new();
    for _ in 0..INSTANCES {
        instances.push(limiter(&store(&redis, PATIENT).await, "hammer"));
    }
    let clock = store(&redis, PATIENT).await;
    // 10× the limit in all: each caller sends one request every CALLERS·INSTANCES/(10·rate).
    let period = Duration::from_secs_f64((CALLERS * INSTANCES) as f64 / (10.0 * PER_SECOND));
    let start_server = server_micros(&clock).await;
    let tally = paced(&instances, CALLERS, period, RUN, move |limiter| {
        exact_call(limiter, limit.clone())
    })
    .await;
    let elapsed = (server_micros(&clock).await - start_server) as f64 / 1e6;
    let (admitted, refused) = (tally.admitted as f64, tally.refused as f64);
    let bound = PER_SECOND * elapsed + f64::from(BURST);
    eprintln!(
        "admitted {admitted}, refused {refused}, errors {}, server time {elapsed:.3} s, \
         bound {bound:.1}",
        tally.failed
    );
    assert_eq!(tally.failed, 0);
    assert!(
        refused > 5.0 * admitted,
        "the load was not 10× the limit: {refused} refused"
    );
    // Exact: never above rate × t + burst over the server's own time.
    assert!(admitted <= bound, "admitted {admitted} > bound {bound}");
    // And the limit is not starved: the time outside the load (before the first request
    // and after the last, under 150 ms) is all it may miss.
    assert!(
        admitted >= bound - PER_SECOND * 0.15 - 5.0,
        "admitted {admitted}, expected about {bound}"
    );
}

#[tokio::test]
async fn every_limit_admits_or_none_counts() {
    let Some(redis) = OwnRedis::start() else {
        return;
    };
    let store = store(&redis, PATIENT).await;
    let limiter = limiter(&store, "all-or-none");
    // Slow refills, so the test sees bursts only.
    let global = FleetLimit::new("global", Quota::new(0.01, 5)).unwrap();
    let client = FleetLimit::new("client", Quota::new(0.01, 3)).unwrap();
    let both = [Check::global(&global), Check::keyed(&client, "alice")];
    for _ in 0..3 {
        assert_eq!(limiter.check(&both).await.unwrap(), Decision::Admitted);
    }
    let global_key = limiter.key_of(&both[0]);
    let before = query(&store, &["GET", &global_key]).await;
    // alice's limit is spent: refused, by limit 1, and the global limit not charged.
    match limiter.check(&both).await.unwrap() {
        Decision::Refused { limit, retry_after } => {
            assert_eq!(limit, 1);
            assert!(retry_after > Duration::from_secs(90), "{retry_after:?}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(query(&store, &["GET", &global_key]).await, before);
    // The global limit still has its 2 of 5 left: bob takes them, then it refuses.
    let bob = [Check::global(&global), Check::keyed(&client, "bob")];
    assert!(limiter.check(&bob).await.unwrap().is_admitted());
    assert!(limiter.check(&bob).await.unwrap().is_admitted());
    let carol = [Check::global(&global), Check::keyed(&client, "carol")];
    match limiter.check(&carol).await.unwrap() {
        Decision::Refused { limit, .. } => assert_eq!(limit, 0),
        other => panic!("{other:?}"),
    }
    // carol's own limit was not charged by the refusal.
    let carol_key = limiter.key_of(&carol[1]);
    assert_eq!(int(&query(&store, &["EXISTS", &carol_key]).await), 0);
}

#[tokio::test]
async fn keys_live_until_their_state_is_fresh_again() {
    let Some(redis) = OwnRedis::start() else {
        return;
    };
    let store = store(&redis, PATIENT).await;
    let limiter = limiter(&store, "ttl");
    let limit = FleetLimit::new("l", Quota::new(10.0, 5)).unwrap(); // T = 100 ms
    let check = [Check::keyed(&limit, "k")];
    let key = limiter.key_of(&check[0]);
    assert_eq!(key, "{ttl}:rl:l:k".replace("{ttl}", "{palisade:ttl}"));
    limiter.check(&check).await.unwrap();
    let one = int(&query(&store, &["PTTL", &key]).await);
    assert!((1..=100).contains(&one), "PTTL after one: {one}");
    for _ in 0..4 {
        assert!(limiter.check(&check).await.unwrap().is_admitted());
    }
    // Five admitted in a burst: the state is fresh again after 5 × T.
    let five = int(&query(&store, &["PTTL", &key]).await);
    assert!((400..=500).contains(&five), "PTTL after five: {five}");
    // A refusal writes nothing and leaves the TTL as it was.
    assert!(!limiter.check(&check).await.unwrap().is_admitted());
    assert!(int(&query(&store, &["PTTL", &key]).await) <= five);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(int(&query(&store, &["EXISTS", &key]).await), 0);
    // Many keys touched once: each gone after its one interval.
    for i in 0..200 {
        let k = format!("client-{i}");
        limiter.check(&[Check::keyed(&limit, &k)]).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(int(&query(&store, &["DBSIZE"]).await), 0);
}

#[tokio::test]
async fn a_refusal_says_when_to_come_back() {
    let Some(redis) = OwnRedis::start() else {
        return;
    };
    let store = store(&redis, PATIENT).await;
    let limiter = limiter(&store, "wait");
    let limit = FleetLimit::new("l", Quota::new(10.0, 1)).unwrap();
    let check = [Check::global(&limit)];
    assert!(limiter.check(&check).await.unwrap().is_admitted());
    let Decision::Refused { retry_after, limit } = limiter.check(&check).await.unwrap() else {
        panic!("admitted twice at once")
    };
    assert_eq!(limit, 0);
    assert!(
        retry_after > Duration::from_millis(50) && retry_after <= Duration::from_millis(100),
        "{retry_after:?}"
    );
    tokio::time::sleep(retry_after + Duration::from_millis(2)).await;
    assert!(limiter.check(&check).await.unwrap().is_admitted());
}

#[tokio::test]
async fn a_flushed_script_is_loaded_again() {
    let Some(redis) = OwnRedis::start() else {
        return;
    };
    let store = store(&redis, PATIENT).await;
    let limiter = limiter(&store, "noscript");
    let limit = FleetLimit::new("l", Quota::new(100.0, 10)).unwrap();
    assert!(
        limiter
            .check(&[Check::global(&limit)])
            .await
            .unwrap()
            .is_admitted()
    );
    query(&store, &["SCRIPT", "FLUSH"]).await;
    assert!(
        limiter
            .check(&[Check::global(&limit)])
            .await
            .unwrap()
            .is_admitted()
    );
}

#[tokio::test]
async fn state_that_is_not_ours_is_never_an_admission() {
    let Some(redis) = OwnRedis::start() else {
        return;
    };
    let store = store(&redis, PATIENT).await;
    let limiter = limiter(&store, "foreign");
    let limit = FleetLimit::new("l", Quota::new(1.0, 1)).unwrap();
    let check = [Check::keyed(&limit, "k")];
    let key = limiter.key_of(&check[0]);
    // A key of another type: the script fails, and that is an error, not an admission.
    query(&store, &["HSET", &key, "f", "v"]).await;
    match limiter.check(&check).await {
        Err(FleetError::Malformed { .. }) => {}
        other => panic!("{other:?}"),
    }
    // A string that is no number is a fresh limit: it admits once, then counts.
    query(&store, &["DEL", &key]).await;
    query(&store, &["SET", &key, "garbage"]).await;
    assert!(limiter.check(&check).await.unwrap().is_admitted());
    assert!(!limiter.check(&check).await.unwrap().is_admitted());
}

#[tokio::test]
async fn bad_checks_are_refused_before_anything_is_sent() {
    let Some(redis) = OwnRedis::start() else {
        return;
    };
    let store = store(&redis, PATIENT).await;
    let limiter = limiter(&store, "bad");
    let limit = FleetLimit::new("l", Quota::new(1.0, 1)).unwrap();
    let twice = [Check::keyed(&limit, "a"), Check::keyed(&limit, "a")];
    for checks in [&[][..], &twice[..], &[Check::global(&limit); 9][..]] {
        match limiter.check(checks).await {
            Err(e @ FleetError::InvalidCheck { .. }) => assert!(!e.is_store_failure()),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(int(&query(&store, &["DBSIZE"]).await), 0);
}

#[tokio::test]
async fn a_stopped_server_is_a_timeout_within_the_limit() {
    let Some(redis) = OwnRedis::start() else {
        return;
    };
    let store = store(&redis, palisade_fleet::store::DEFAULT_TIMEOUT).await;
    let limiter = limiter(&store, "stopped");
    let limit = FleetLimit::new("l", Quota::new(1000.0, 1000)).unwrap();
    let check = [Check::global(&limit)];
    // Warm: the script loaded, the connection up (slow first tries may open the
    // store's breaker for 250 ms; the pauses wait it out).
    let mut warm = false;
    for _ in 0..100 {
        if limiter.check(&check).await.is_ok() {
            warm = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(warm, "no decision within 100 tries at a 5 ms timeout");
    assert!(store.is_available());
    let info = query(&store, &["INFO", "server"]).await;
    let Value::BulkString(info) = info else {
        panic!("{info:?}")
    };
    let info = String::from_utf8(info).unwrap();
    let pid = info
        .lines()
        .find_map(|l| l.strip_prefix("process_id:"))
        .unwrap()
        .trim()
        .to_owned();
    let signal = |s: &str| {
        let ok = std::process::Command::new("kill")
            .args([s, &pid])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {s} {pid}");
    };
    signal("-STOP");
    let mut worst = Duration::ZERO;
    for call in 0..20 {
        let start = Instant::now();
        let answer = limiter.check(&check).await;
        worst = worst.max(start.elapsed());
        // Three timeouts in a row open the store's breaker: the rest answer at once.
        if call < 3 {
            assert_eq!(
                answer,
                Err(FleetError::Timeout {
                    after: Duration::from_millis(5)
                })
            );
        } else {
            assert!(
                matches!(answer, Err(FleetError::CircuitOpen { .. })),
                "{answer:?}"
            );
        }
    }
    signal("-CONT");
    eprintln!("slowest timeout: {worst:?}");
    assert!(worst < Duration::from_millis(5 + 45), "{worst:?}");
    // Back: decisions again once the queued commands are answered.
    let mut back = false;
    for _ in 0..100 {
        if limiter.check(&check).await.is_ok() {
            back = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(back, "no decision after SIGCONT");
}

#[tokio::test]
async fn a_lost_server_is_unavailable_and_comes_back() {
    let Some(redis) = OwnRedis::start() else {
        return;
    };
    let store = store(&redis, PATIENT).await;
    let limiter = limiter(&store, "lost");
    let limit = FleetLimit::new("l", Quota::new(1000.0, 1000)).unwrap();
    let check = [Check::global(&limit)];
    assert!(limiter.check(&check).await.unwrap().is_admitted());
    redis.stop();
    for _ in 0..5 {
        match limiter.check(&check).await {
            Err(
                FleetError::Unavailable { .. }
                | FleetError::Timeout { .. }
                | FleetError::CircuitOpen { .. },
            ) => {}
            other => panic!("{other:?}"),
        }
    }
    redis.start_again();
    let mut back = false;
    for _ in 0..200 {
        if let Ok(d) = limiter.check(&check).await {
            assert!(d.is_admitted());
            back = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(back, "no decision after the server came back");
}

#[tokio::test]
async fn nobody_listening_is_an_error_at_connect() {
    let port = palisade_testkit::free_port();
    let config = StoreConfig::new(format!("redis://127.0.0.1:{port}/"))
        .connect_timeout(Duration::from_millis(300));
    match RedisStore::connect(&config).await {
        Err(FleetError::Unavailable { .. } | FleetError::Timeout { .. }) => {}
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_bad_url_is_a_config_error_not_an_outage() {
    match RedisStore::connect(&StoreConfig::new("http://127.0.0.1:1/")).await {
        Err(e @ FleetError::Config(_)) => {
            assert!(!e.is_store_failure());
            assert_eq!(e.reason(), "fleet-config");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_store_started_while_redis_is_down_connects_when_it_is_up() {
    let Some(redis) = OwnRedis::start() else {
        return;
    };
    redis.stop();
    let config = StoreConfig::new(redis.url())
        .timeout(PATIENT)
        .connect_timeout(Duration::from_millis(200));
    let store = RedisStore::start(&config).unwrap();
    let limiter = limiter(&store, "late");
    let limit = FleetLimit::new("l", Quota::new(1000.0, 1000)).unwrap();
    let check = [Check::global(&limit)];
    let t = Instant::now();
    match limiter.check(&check).await {
        Err(FleetError::Unavailable { .. }) => {}
        other => panic!("{other:?}"),
    }
    assert!(t.elapsed() < Duration::from_millis(50), "{:?}", t.elapsed());
    assert!(!store.is_connected());
    redis.start_again();
    let mut decided = false;
    for _ in 0..500 {
        if limiter.check(&check).await.is_ok() {
            decided = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(decided, "no decision within 5 s of redis coming up");
    assert!(store.is_connected());
}

//! Lease mode of the fleet rate limit against real `redis-server`s of the tests' own
//! (skipped loudly without one, a failure when `CI` is set). Redis calls are counted by
//! the server (`INFO commandstats`).

mod support;

use std::time::Duration;

use palisade_fleet::{
    Admit, Counting, Membership, MembershipConfig, Mode, OnStoreDown, RedisStore, SharedRateLimit,
    SharedRateLimitBuilder, SharedRateLimitConfig, StoreConfig,
};
use palisade_testkit::redis::OwnRedis;
use tokio::time::Instant;

use support::*;

const PATIENT: Duration = Duration::from_millis(500);

fn quick() -> MembershipConfig {
    MembershipConfig {
        interval: Duration::from_millis(100),
        expire_after: Duration::from_millis(300),
    }
}

async fn store(redis: &OwnRedis) -> RedisStore {
    RedisStore::connect(&StoreConfig::new(redis.url()).timeout(PATIENT))
        .await
        .unwrap()
}

fn lease_config(name: &str, per_second: f64, burst: u32, fraction: f64) -> SharedRateLimitConfig {
    SharedRateLimitConfig {
        mode: Mode::Lease,
        lease_fraction: fraction,
        ..SharedRateLimitConfig::new(name, per_second, burst)
    }
}

/// One instance: its own store and membership (the membership on `beats`, so that a
/// test can count the limit's own calls on `redis`).
async fn instance(
    redis: &OwnRedis,
    beats: &OwnRedis,
    config: &SharedRateLimitConfig,
) -> SharedRateLimit {
    let membership = Membership::start(store(beats).await, config.scope(), &quick()).unwrap();
    SharedRateLimitBuilder::from_config(config.clone())
        .store(store(redis).await)
        .membership(membership)
        .build()
        .unwrap()
}

/// Script calls the server has run (EVALSHA and EVAL, failed ones included).
async fn script_calls(store: &RedisStore) -> u64 {
    calls_of(store, "evalsha").await + calls_of(store, "eval").await
}

async fn until_live(instances: &[SharedRateLimit], n: u32) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while instances.iter().any(|i| i.live_instances() != n) {
        assert!(Instant::now() < deadline, "the instances never counted {n}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_instances_at_ten_times_the_limit_stay_within_the_lease_bound() {
    let Some(redis) = OwnRedis::start() else {
        return;
    };
    let Some(beats) = OwnRedis::start() else {
        return;
    };
    const PER_SECOND: f64 = 500.0;
    const BURST: u32 = 50;
    const INSTANCES: usize = 4;
    const CALLERS: usize = 64;
    const RUN: Duration = Duration::from_secs(3);
    // 20% of a second's quota among 4: 25 tokens per lease.
    let config = lease_config("hot", PER_SECOND, BURST, 0.2);
    let mut instances = Vec::new();
    for _ in 0..INSTANCES {
        instances.push(instance(&redis, &beats, &config).await);
    }
    until_live(&instances, INSTANCES as u32).await;
    let lease = instances[0].lease_size();
    assert_eq!(lease, 25);
    let clock = store(&redis).await;
    let calls_before = script_calls(&clock).await;
    let period = Duration::from_secs_f64((CALLERS * INSTANCES) as f64 / (10.0 * PER_SECOND));
    let start_server = server_micros(&clock).await;
    let (admitted, refused, not_shared) = load(&instances, CALLERS, period, RUN).await;
    let elapsed = (server_micros(&clock).await - start_server) as f64 / 1e6;
    let calls = script_calls(&clock).await - calls_before;
    let bound = PER_SECOND * elapsed + f64::from(BURST) + (INSTANCES as u64 * lease) as f64;
    let floor = 0.9 * PER_SECOND * elapsed;
    eprintln!(
        "lease mode: admitted {admitted}, refused {refused} in {elapsed:.3} s of server time; \
         bound {bound:.1} (rate·t + burst + 4 × {lease}), floor {floor:.1}; {calls} script \
         calls for {} decisions ({:.1} decisions per call)",
        admitted + refused,
        (admitted + refused) / calls as f64
    );
    assert_eq!(not_shared, 0, "decided without Redis");
    assert!(refused > 5.0 * admitted, "the load was not 10×: {refused}");
    assert!(admitted <= bound, "admitted {admitted} > bound {bound}");
    assert!(
        admitted >= floor,
        "admitted {admitted} < 90% of {}",
        PER_SECOND * elapsed
    );
    // Far fewer round trips than decisions.
    assert!((calls as f64) < (admitted + refused) / 5.0, "{calls} calls");
}

/// `callers` tasks on each instance, each sending one request per `period`, for `run`:
/// (admitted, refused, decided other than shared).
async fn load(
    instances: &[SharedRateLimit],
    callers: usize,
    period: Duration,
    run: Duration,
) -> (f64, f64, u64) {
    let tally = paced(instances, callers, period, run, shared_call).await;
    (
        tally.admitted as f64,
        tally.refused as f64,
        tally.not_shared,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_busy_instance_among_four_still_gets_the_whole_rate() {
    let Some(redis) = OwnRedis::start() else {
        return;
    };
    let Some(beats) = OwnRedis::start() else {
        return;
    };
    const PER_SECOND: f64 = 500.0;
    // Four live, one loaded: its leases are a quarter's (25), but it fetches as often as
    // the fleet's bucket refills half of one, so the rate is not capped at its share.
    let config = lease_config("lone", PER_SECOND, 50, 0.2);
    let mut instances = Vec::new();
    for _ in 0..4 {
        instances.push(instance(&redis, &beats, &config).await);
    }
    until_live(&instances, 4).await;
    let clock = store(&redis).await;
    let start_server = server_micros(&clock).await;
    let period = Duration::from_secs_f64(64.0 / (10.0 * PER_SECOND));
    let (admitted, refused, _) = load(&instances[..1], 64, period, Duration::from_secs(2)).await;
    let elapsed = (server_micros(&clock).await - start_server) as f64 / 1e6;
    let bound = PER_SECOND * elapsed + 50.0 + 4.0 * 25.0;
    eprintln!(
        "one busy instance of 4: admitted {admitted}, refused {refused} in {elapsed:.3} s \
         (rate × t = {:.0}, bound {bound:.0})",
        PER_SECOND * elapsed
    );
    assert!(admitted <= bound);
    assert!(
        admitted >= 0.9 * PER_SECOND * elapsed,
        "{admitted}: capped at its share"
    );
}

#[tokio::test]
async fn no_round_trip_while_tokens_are_held() {
    let Some(redis) = OwnRedis::start() else {
        return;
    };
    let Some(beats) = OwnRedis::start() else {
        return;
    };
    // One instance, 50% of 100/s: a lease of 50 tokens.
    let limit = instance(&redis, &beats, &lease_config("held", 100.0, 100, 0.5)).await;
    assert_eq!(limit.lease_size(), 50);
    let probe = store(&redis).await;
    let before = script_calls(&probe).await;
    // The first decision fetches (a script call; a second when the script is loaded).
    assert!(limit.acquire(None).await.is_admitted());
    let after_fetch = script_calls(&probe).await;
    assert!(
        (1..=2).contains(&(after_fetch - before)),
        "{}",
        after_fetch - before
    );
    // 24 more: 25 left, not under half; not one call.
    for _ in 0..24 {
        assert_eq!(
            limit.acquire(None).await,
            Admit::Admitted {
                counting: Counting::Shared
            }
        );
    }
    assert_eq!(
        script_calls(&probe).await,
        after_fetch,
        "a round trip while tokens were held"
    );
    // One more: 24 left, under half: one background refresh, and the decision did not
    // wait for it.
    let t = Instant::now();
    assert!(limit.acquire(None).await.is_admitted());
    assert!(t.elapsed() < Duration::from_millis(5), "{:?}", t.elapsed());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(script_calls(&probe).await, after_fetch + 1);
}

#[tokio::test]
async fn unused_tokens_expire_and_are_never_spent_late() {
    let Some(redis) = OwnRedis::start() else {
        return;
    };
    let Some(beats) = OwnRedis::start() else {
        return;
    };
    let config = SharedRateLimitConfig {
        lease_ttl: Duration::from_millis(100),
        ..lease_config("ttl", 100.0, 100, 0.5)
    };
    let limit = instance(&redis, &beats, &config).await;
    let probe = store(&redis).await;
    assert!(limit.acquire(None).await.is_admitted());
    let calls = script_calls(&probe).await;
    tokio::time::sleep(Duration::from_millis(150)).await;
    // 49 tokens held, but expired: this decision fetches again.
    assert!(limit.acquire(None).await.is_admitted());
    assert_eq!(script_calls(&probe).await, calls + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyed_leases_are_bounded_and_the_rest_decided_exactly() {
    let Some(redis) = OwnRedis::start() else {
        return;
    };
    let Some(beats) = OwnRedis::start() else {
        return;
    };
    // 1/s with a burst of 5: no refill to speak of while the test runs; leases of 1
    // token, kept for 10 s.
    let config = SharedRateLimitConfig {
        lease_ttl: Duration::from_secs(10),
        ..lease_config("keys", 1.0, 5, 0.5)
    };
    let limit = instance(&redis, &beats, &config).await;
    let max = palisade_fleet::rate_limit::shared::MAX_LEASED_KEYS;
    let keys = max + 100;
    for i in 0..keys {
        let key = format!("client-{i}");
        assert_eq!(
            limit.acquire(Some(&key)).await,
            Admit::Admitted {
                counting: Counting::Shared
            },
            "{key}"
        );
    }
    // Every leased key still holds a live lease: none evicted, the bound held.
    assert_eq!(limit.leased_keys(), max);
    // A key past the bound is decided exactly, and counts in Redis: the rest of its
    // burst of 5, then refused.
    let last = format!("client-{}", keys - 1);
    let mut admitted = 1;
    while limit.acquire(Some(&last)).await.is_admitted() {
        admitted += 1;
    }
    assert_eq!(admitted, 5);
    assert_eq!(limit.leased_keys(), max);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_mode_falls_back_while_redis_is_stopped_and_returns() {
    let Some(redis) = OwnRedis::start() else {
        return;
    };
    let Some(beats) = OwnRedis::start() else {
        return;
    };
    let config = SharedRateLimitConfig {
        on_store_down: OnStoreDown::LocalShare,
        ..lease_config("fall", 2.0, 4, 1.0)
    };
    let quick_store =
        RedisStore::connect(&StoreConfig::new(redis.url()).timeout(Duration::from_millis(50)))
            .await
            .unwrap();
    let membership = Membership::start(store(&beats).await, config.scope(), &quick()).unwrap();
    let limit = SharedRateLimitBuilder::from_config(config)
        .store(quick_store)
        .membership(membership)
        .build()
        .unwrap();
    // A lease of 2 (all of 2/s): 1 taken, 1 held.
    assert_eq!(limit.lease_size(), 2);
    assert!(limit.acquire(None).await.is_admitted());
    redis.stop();
    // The held token is still the fleet's: decided as shared (the background refresh
    // it starts fails).
    assert_eq!(
        limit.acquire(None).await,
        Admit::Admitted {
            counting: Counting::Shared
        }
    );
    // Then the local share (2/s, burst 4, alone): its burst, then refused.
    let mut local = 0;
    loop {
        match limit.acquire(None).await {
            Admit::Admitted {
                counting: Counting::LocalShare,
            } => local += 1,
            Admit::Refused {
                counting: Counting::LocalShare,
                ..
            } => break,
            other => panic!("{other:?}"),
        }
        assert!(local <= 5, "the local share admitted more than its burst");
    }
    assert!(local >= 4, "{local}");
    assert_eq!(limit.counting(), Counting::LocalShare);
    redis.start_again();
    let back = Instant::now();
    while limit.acquire(None).await.counting() != Counting::Shared {
        assert!(back.elapsed() < Duration::from_secs(2), "not shared again");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!("lease mode back to shared after {:?}", back.elapsed());
    assert_eq!(limit.counting(), Counting::Shared);
}

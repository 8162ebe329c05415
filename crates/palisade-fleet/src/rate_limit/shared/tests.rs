//! The policy's parts: keys, counting, the fallbacks with no Redis at all, and the two
//! scripts' arguments against a real `redis-server` (skipped loudly without one).

use std::time::Duration;

use palisade::policy::rate_limit::Quota;
use palisade_testkit::redis::OwnRedis;

use super::*;
use crate::membership::MembershipConfig;
use crate::rate_limit::script::Grant;
use crate::store::StoreConfig;

#[test]
fn long_keys_are_hashed_stably() {
    assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
    assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    assert_eq!(key_part("alice"), "alice");
    let edge = "k".repeat(MAX_KEY_BYTES);
    assert_eq!(key_part(&edge), edge.as_str());
    let long = "k".repeat(MAX_KEY_BYTES + 1);
    let hashed = key_part(&long);
    assert_eq!(hashed.len(), 17);
    assert!(hashed.starts_with('#'));
    assert_eq!(hashed, key_part(&long));
    assert_ne!(hashed, key_part(&"j".repeat(MAX_KEY_BYTES + 1)));
}

#[test]
fn counting_names_and_fallbacks() {
    let names: Vec<_> = Counting::ALL.iter().map(Counting::as_str).collect();
    assert_eq!(names, ["shared", "local_share", "open", "closed"]);
    assert_eq!(
        Counting::from(OnStoreDown::LocalShare),
        Counting::LocalShare
    );
    assert_eq!(Counting::from(OnStoreDown::Open), Counting::Open);
    assert_eq!(Counting::from(OnStoreDown::Closed), Counting::Closed);
    for (i, c) in Counting::ALL.iter().enumerate() {
        assert_eq!(c.index(), i);
    }
    assert_eq!(
        Admit::Refused {
            retry_after: Duration::ZERO,
            counting: Counting::Closed
        }
        .counting(),
        Counting::Closed
    );
}

#[test]
fn only_the_breaker_says_when_to_come_back() {
    let open = FleetError::CircuitOpen {
        retry_after: Duration::from_millis(180),
    };
    assert_eq!(retry_after_of(&open), Some(Duration::from_millis(180)));
    let timeout = FleetError::Timeout {
        after: Duration::from_millis(5),
    };
    assert_eq!(retry_after_of(&timeout), None);
}

/// A policy on a store that never connects (nothing listens on its port).
fn down(mode: Mode, on_store_down: OnStoreDown, quota: Quota) -> SharedRateLimit {
    let port = palisade_testkit::free_port();
    let store = RedisStore::start(
        &StoreConfig::new(format!("redis://127.0.0.1:{port}/"))
            .connect_timeout(Duration::from_millis(100)),
    )
    .unwrap();
    let membership =
        Membership::start(store.clone(), "down", &MembershipConfig::default()).unwrap();
    SharedRateLimit::builder()
        .name("down")
        .quota(quota)
        .mode(mode)
        .on_store_down(on_store_down)
        .store(store)
        .membership(membership)
        .build()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn with_the_store_down_each_fallback_decides() {
    let quota = Quota::new(10.0, 3);
    for mode in [Mode::Exact, Mode::Lease] {
        let limit = down(mode, OnStoreDown::LocalShare, quota);
        assert_eq!(limit.counting(), Counting::Shared);
        assert_eq!(limit.live_instances(), 1);
        for _ in 0..3 {
            assert_eq!(
                limit.acquire(None).await,
                Admit::Admitted {
                    counting: Counting::LocalShare
                },
                "{mode:?}"
            );
        }
        match limit.acquire(None).await {
            Admit::Refused {
                retry_after,
                counting: Counting::LocalShare,
            } => assert_eq!(retry_after, Duration::from_millis(100)),
            other => panic!("{mode:?}: {other:?}"),
        }
        assert_eq!(limit.counting(), Counting::LocalShare);
        // Keys have their own shares.
        assert!(limit.acquire(Some("alice")).await.is_admitted());

        let open = down(mode, OnStoreDown::Open, quota);
        for _ in 0..10 {
            assert_eq!(
                open.acquire(Some("k")).await,
                Admit::Admitted {
                    counting: Counting::Open
                }
            );
        }
        assert_eq!(open.counting(), Counting::Open);

        let closed = down(mode, OnStoreDown::Closed, quota);
        assert_eq!(
            closed.acquire(None).await,
            Admit::Refused {
                retry_after: CLOSED_RETRY_AFTER,
                counting: Counting::Closed
            }
        );
        assert_eq!(closed.counting(), Counting::Closed);
    }
}

/// The scripts called directly, as the policy calls them.
async fn fleet(redis: &OwnRedis) -> FleetRateLimiter {
    let store =
        RedisStore::connect(&StoreConfig::new(redis.url()).timeout(Duration::from_millis(500)))
            .await
            .unwrap();
    FleetRateLimiter::builder()
        .name("scripts")
        .store(store)
        .build()
        .unwrap()
}

fn args(limit: &FleetLimit, spent: Option<bool>) -> Vec<u64> {
    let mut args = vec![limit.interval_micros(), limit.tolerance_micros()];
    args.extend(spent.map(u64::from));
    args
}

#[tokio::test]
async fn a_missing_key_starts_spent_only_when_asked() {
    let Some(redis) = OwnRedis::start() else {
        return;
    };
    let fleet = fleet(&redis).await;
    // Slow refill: only the burst is seen.
    let limit = FleetLimit::new("l", Quota::new(0.01, 5)).unwrap();
    let count = |key: &'static str, spent: Option<bool>| {
        let (fleet, limit) = (&fleet, &limit);
        async move {
            let keys = [fleet.key_of(&Check::keyed(limit, key))];
            let mut admitted = 0;
            while fleet
                .decide(&keys, &args(limit, spent))
                .await
                .unwrap()
                .is_admitted()
            {
                admitted += 1;
            }
            admitted
        }
    };
    // Absent or 0: today's behaviour, the whole burst.
    assert_eq!(count("absent", None).await, 5);
    assert_eq!(count("zero", Some(false)).await, 5);
    // 1: the burst counts as spent: one admission (the "+1" of the bound), then the rate.
    assert_eq!(count("spent", Some(true)).await, 1);
    // An existing key is read as it is, flag or not.
    assert_eq!(count("absent", Some(true)).await, 0);
}

#[tokio::test]
async fn a_lease_is_a_batch_of_gcra_admissions() {
    let Some(redis) = OwnRedis::start() else {
        return;
    };
    let fleet = fleet(&redis).await;
    // T = 10 ms, τ = 90 ms: 10 fit from fresh.
    let limit = FleetLimit::new("l", Quota::new(100.0, 10)).unwrap();
    let key = [fleet.key_of(&Check::keyed(&limit, "a"))];
    let grant = fleet.lease(&key, &limit, 4, false).await.unwrap();
    assert_eq!(
        grant,
        Grant {
            tokens: 4,
            wait: Duration::ZERO
        }
    );
    // Asking for more than fits: the 6 left, and the wait for the next one (≈ T).
    let grant = fleet.lease(&key, &limit, 100, false).await.unwrap();
    assert_eq!(grant.tokens, 6);
    assert!(
        grant.wait > Duration::from_millis(5) && grant.wait <= Duration::from_millis(10),
        "{grant:?}"
    );
    // Nothing fits now: nothing granted, and when.
    let grant = fleet.lease(&key, &limit, 1, false).await.unwrap();
    assert_eq!(grant.tokens, 0);
    assert!(grant.wait > Duration::ZERO && grant.wait <= Duration::from_millis(10));
    // The exact script sees the same state: refused too.
    let refused = fleet.decide(&key, &args(&limit, None)).await.unwrap();
    assert!(!refused.is_admitted());
    // The key lives until its TAT is now again (10 tokens: 100 ms).
    let Ok(redis::Value::Int(pttl)) = fleet
        .shared
        .store
        .command(redis::cmd("PTTL").arg(&key[0]))
        .await
    else {
        panic!("PTTL")
    };
    assert!((1..=100).contains(&pttl), "{pttl}");
    // A spent start grants one, as gcra.lua would admit one.
    let spent = [fleet.key_of(&Check::keyed(&limit, "b"))];
    let grant = fleet.lease(&spent, &limit, 10, true).await.unwrap();
    assert_eq!(grant.tokens, 1);
}

#[tokio::test]
async fn a_lease_of_another_type_is_malformed_not_a_grant() {
    let Some(redis) = OwnRedis::start() else {
        return;
    };
    let fleet = fleet(&redis).await;
    let limit = FleetLimit::new("l", Quota::new(100.0, 10)).unwrap();
    let key = [fleet.key_of(&Check::keyed(&limit, "h"))];
    fleet
        .shared
        .store
        .command(redis::cmd("HSET").arg(&key[0]).arg("f").arg("v"))
        .await
        .unwrap();
    match fleet.lease(&key, &limit, 5, false).await {
        Err(FleetError::Malformed { .. }) => {}
        other => panic!("{other:?}"),
    }
}

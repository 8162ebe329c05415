//! Membership from heartbeats against a real `redis-server` of the test's own (skipped
//! loudly without one, a failure when `CI` is set).

use std::time::Duration;

use palisade_fleet::{Membership, MembershipConfig, RedisStore, StoreConfig};
use palisade_testkit::redis::OwnRedis;
use tokio::time::Instant;

fn quick() -> MembershipConfig {
    MembershipConfig {
        interval: Duration::from_millis(100),
        expire_after: Duration::from_millis(300),
    }
}

async fn store(redis: &OwnRedis) -> RedisStore {
    let config = StoreConfig::new(redis.url()).timeout(Duration::from_millis(500));
    RedisStore::connect(&config).await.unwrap()
}

/// Waits (real time: a real server's heartbeats) until `member` counts `want`.
async fn until_count(member: &Membership, want: u32) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while member.live_instances() != want {
        assert!(
            Instant::now() < deadline,
            "the count stayed {} instead of {want}",
            member.live_instances()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_count_each_other_and_leave_cleanly() {
    let Some(redis) = OwnRedis::start() else {
        return;
    };
    let mut members = Vec::new();
    for _ in 0..3 {
        // Each instance its own connection, as separate processes would have.
        members.push(Membership::start(store(&redis).await, "api", &quick()).unwrap());
    }
    for m in &members {
        until_count(m, 3).await;
    }
    let ids: std::collections::HashSet<u64> = members.iter().map(Membership::id).collect();
    assert_eq!(ids.len(), 3, "ids are distinct");

    // A clean stop leaves at once; the others see it at their next beat.
    members.pop();
    until_count(&members[0], 2).await;
    until_count(&members[1], 2).await;

    // Another scope is another set.
    let other = Membership::start(store(&redis).await, "search", &quick()).unwrap();
    until_count(&other, 1).await;
    assert_eq!(other.beat().await.unwrap(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_instance_is_dropped_after_expire_after() {
    let Some(redis) = OwnRedis::start() else {
        return;
    };
    let url = redis.url();
    let alive = Membership::start(store(&redis).await, "api", &quick()).unwrap();
    // The dying instance runs on its own runtime, which is shut down without a clean
    // leave (its handle drops outside any runtime, as a killed process sends nothing).
    let dying = std::thread::spawn(move || {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let member = runtime.block_on(async {
            let store = RedisStore::connect(&StoreConfig::new(url)).await.unwrap();
            let member = Membership::start(store, "api", &quick()).unwrap();
            member.beat().await.unwrap();
            member
        });
        drop(runtime);
        drop(member);
    });
    until_count(&alive, 2).await;
    dying.join().unwrap();
    let gone_from = Instant::now();
    until_count(&alive, 1).await;
    // No leave was sent: only the expiry of its last beat drops it, within
    // expire_after and one beat of the live instance.
    assert!(gone_from.elapsed() < Duration::from_secs(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_count_survives_a_redis_outage() {
    let Some(redis) = OwnRedis::start() else {
        return;
    };
    let a = Membership::start(store(&redis).await, "api", &quick()).unwrap();
    let b = Membership::start(store(&redis).await, "api", &quick()).unwrap();
    until_count(&a, 2).await;
    until_count(&b, 2).await;
    redis.stop();
    assert!(a.beat().await.is_err(), "no Redis, no count");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!((a.live_instances(), b.live_instances()), (2, 2));
    redis.start_again();
    // Back: both beat again into the empty set and count each other.
    until_count(&a, 2).await;
    tokio::time::timeout(Duration::from_secs(5), async {
        while a.beat().await.is_err() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .unwrap();
    until_count(&b, 2).await;
}

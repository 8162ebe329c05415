use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use tokio::time::{Instant, advance};

use super::*;

fn limiter(per_second: f64, burst: u32) -> RateLimiter {
    RateLimiter::builder()
        .name("api")
        .quota(Quota::new(per_second, burst))
        .build()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn burst_then_steady_rate() {
    let l = limiter(10.0, 3);
    for _ in 0..3 {
        l.check().unwrap();
    }
    assert_eq!(l.check(), Err(Duration::from_millis(100)));
    advance(Duration::from_millis(100)).await;
    l.check().unwrap();
    assert!(l.check().is_err());
    advance(Duration::from_secs(10)).await;
    for _ in 0..3 {
        l.check().unwrap();
    }
    assert!(
        l.check().is_err(),
        "idle time never accumulates beyond the burst"
    );
}

#[tokio::test(start_paused = true)]
async fn rejection_carries_retry_after_and_skips_the_operation() {
    let l = limiter(1.0, 1);
    let ran = AtomicU32::new(0);
    let op = || {
        ran.fetch_add(1, Ordering::SeqCst);
        async { Ok::<_, ()>(()) }
    };
    l.call(op).await.unwrap();
    match l.call(op).await {
        Err(Error::RateLimited { name, retry_after }) => {
            assert_eq!(&*name, "api");
            assert_eq!(retry_after, Duration::from_secs(1));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(ran.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn waiting_mode_sleeps_for_its_slot_up_to_max_wait() {
    let l = RateLimiter::builder()
        .quota(Quota::new(10.0, 1))
        .max_wait(Duration::from_millis(250))
        .build()
        .unwrap();
    let start = Instant::now();
    for _ in 0..3 {
        l.acquire::<()>().await.unwrap();
    }
    assert_eq!(start.elapsed(), Duration::from_millis(200));
    // Three more at once: two fit within 250 ms of waiting, the third does not.
    let (a, b, c) = tokio::join!(l.acquire::<()>(), l.acquire::<()>(), l.acquire::<()>());
    assert!(a.is_ok() && b.is_ok());
    assert!(matches!(c, Err(Error::RateLimited { .. })));
}

#[tokio::test(start_paused = true)]
async fn quota_changes_at_run_time() {
    let l = limiter(1.0, 1);
    l.check().unwrap();
    assert!(l.check().is_err());
    l.set_quota(Quota::new(1000.0, 10)).unwrap();
    advance(Duration::from_secs(1)).await;
    for _ in 0..10 {
        l.check().unwrap();
    }
    assert_eq!(l.quota(), Quota::new(1000.0, 10));
    assert!(l.set_quota(Quota::new(0.0, 1)).is_err());
}

#[tokio::test(start_paused = true)]
async fn clones_share_one_bucket() {
    let l = limiter(1.0, 2);
    let other = l.clone();
    l.check().unwrap();
    other.check().unwrap();
    assert!(l.check().is_err() && other.check().is_err());
}

#[tokio::test(start_paused = true)]
async fn tower_layer_limits_and_clones_share() {
    use tower::{Layer, ServiceExt, service_fn};
    let l = limiter(1.0, 2);
    let svc = l
        .layer()
        .layer(service_fn(|()| async { Ok::<_, std::io::Error>(()) }));
    assert!(svc.clone().oneshot(()).await.is_ok());
    assert!(svc.clone().oneshot(()).await.is_ok());
    assert!(matches!(
        svc.clone().oneshot(()).await,
        Err(Error::RateLimited { .. })
    ));
}

#[test]
fn invalid_quotas_name_the_field() {
    for (per_second, burst, field) in [
        (0.0, 1, "per_second"),
        (-5.0, 1, "per_second"),
        (f64::NAN, 1, "per_second"),
        (f64::INFINITY, 1, "per_second"),
        (1e-12, 1, "per_second"),
        (10.0, 0, "burst"),
    ] {
        let e = RateLimitConfig {
            per_second,
            burst,
            ..Default::default()
        }
        .build()
        .unwrap_err();
        assert_eq!(e.field, field);
    }
}

// --- keyed ---

fn keyed(max_keys: usize) -> KeyedRateLimiter<u64> {
    KeyedRateLimiter::builder()
        .quota(Quota::new(1.0, 2))
        .max_keys(max_keys)
        .build()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn keys_are_limited_independently() {
    let l = keyed(100);
    for key in 0..10 {
        l.check(&key).unwrap();
        l.check(&key).unwrap();
        assert!(l.check(&key).is_err());
    }
}

#[tokio::test(start_paused = true)]
async fn per_key_overrides_and_default_changes() {
    let l = keyed(100);
    l.set_quota_for(7, Quota::new(100.0, 5)).unwrap();
    for _ in 0..5 {
        l.check(&7).unwrap();
    }
    assert!(l.check(&7).is_err());
    // An override set before the key is first seen applies when it arrives.
    l.set_quota_for(8, Quota::new(1.0, 1)).unwrap();
    l.check(&8).unwrap();
    assert!(l.check(&8).is_err());
    // A new default applies to keys without an override, immediately.
    l.set_default_quota(Quota::new(1.0, 4)).unwrap();
    for _ in 0..4 {
        l.check(&1).unwrap();
    }
    assert!(l.check(&1).is_err());
    l.clear_quota_for(&7);
    advance(Duration::from_secs(10)).await;
    for _ in 0..4 {
        l.check(&7).unwrap();
    }
    assert!(l.check(&7).is_err(), "back on the default of 4");
}

#[tokio::test(start_paused = true)]
async fn key_memory_is_bounded_and_idle_keys_go_first() {
    let l = keyed(160); // 10 per shard
    for key in 0..10_000u64 {
        let _ = l.check(&key);
        assert!(l.len() <= 160);
    }
    assert!(
        l.evictions() > 0,
        "no key was idle, so active ones had to go"
    );
    advance(Duration::from_secs(10)).await;
    // All buckets refilled: every key is idle and is dropped before any eviction. (Ten
    // new keys can never overfill a shard of ten, however they hash.)
    let before = l.evictions();
    for key in 10_000..10_010u64 {
        let _ = l.check(&key);
    }
    assert_eq!(l.evictions(), before, "idle keys made room");
    l.forget_idle();
    advance(Duration::from_secs(10)).await;
    l.forget_idle();
    assert!(l.is_empty());
}

#[tokio::test(start_paused = true)]
async fn evicting_idle_keys_changes_no_decision() {
    // A key's bucket that refilled behaves exactly like a fresh one.
    let l = keyed(16); // one per shard: constant churn
    let reference = keyed(100_000);
    for round in 0..50u64 {
        for key in 0..40u64 {
            let a = l.check(&key).is_ok();
            let b = reference.check(&key).is_ok();
            if round % 5 == 0 {
                // After a long pause every key is idle, so both agree exactly.
                assert_eq!(a, b, "round {round} key {key}");
            }
        }
        advance(Duration::from_millis(if round % 5 == 4 {
            5000
        } else {
            10
        }))
        .await;
    }
}

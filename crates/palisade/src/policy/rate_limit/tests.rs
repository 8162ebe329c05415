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
    let l = keyed(160);
    for key in 0..10_000u64 {
        let _ = l.check(&key);
        assert!(l.len() <= 160);
    }
    assert_eq!(l.len(), 160, "no live key was forgotten");
    assert!(
        l.overflowed() > 0,
        "no key was idle, so the rest shared the overflow state"
    );
    advance(Duration::from_secs(10)).await;
    // All buckets refilled: every key is idle, so new keys are remembered again, each
    // with its own burst.
    let before = l.overflowed();
    for key in 10_000..10_160u64 {
        l.check(&key).unwrap();
        l.check(&key).unwrap();
        assert!(l.check(&key).is_err());
    }
    assert_eq!(l.overflowed(), before, "idle keys made room");
    assert_eq!(l.len(), 160);
    l.forget_idle();
    assert_eq!(l.len(), 160, "all still live");
    advance(Duration::from_secs(10)).await;
    l.forget_idle();
    assert!(l.is_empty());
}

#[tokio::test(start_paused = true)]
async fn evicting_idle_keys_changes_no_decision() {
    // A key's bucket that refilled behaves exactly like a fresh one: a limiter of 16 keys
    // cycling through 40 agrees with one that remembers every key, as long as at most 16
    // are live at once.
    let l = keyed(16);
    let reference = keyed(100_000);
    for round in 0..50u64 {
        for i in 0..16u64 {
            let key = (round * 7 + i) % 40;
            for _ in 0..3 {
                assert_eq!(
                    l.check(&key).is_ok(),
                    reference.check(&key).is_ok(),
                    "round {round} key {key}"
                );
            }
            advance(Duration::from_millis(10)).await;
        }
        // Long enough for every bucket (1/s, burst 2) to refill, so all 16 go idle.
        advance(Duration::from_millis(2000 + 500 * (round % 3))).await;
    }
    assert_eq!(l.overflowed(), 0);
}

// --- keyed: `max_keys` bounds the whole limiter, and no key ever gets a fresh burst ---

/// Admission times per key, and the GCRA bound: in every interval `[a, b]` a key is
/// admitted at most `burst + (b − a)/T` times.
#[derive(Default)]
struct Ledger {
    /// Admission times (ns since the clock's epoch) per key.
    admitted: std::collections::HashMap<u64, Vec<u64>>,
}

impl Ledger {
    fn record(&mut self, key: u64, at: u64) {
        self.admitted.entry(key).or_default().push(at);
    }

    /// The first interval in which `key` was admitted more than `quota` allows, if any.
    fn excess(&self, key: u64, quota: Quota) -> Option<String> {
        let interval = quota.cell().interval;
        let times = self.admitted.get(&key)?;
        for (i, &a) in times.iter().enumerate() {
            for (j, &b) in times.iter().enumerate().skip(i) {
                let count = (j - i + 1) as u64;
                let bound = u64::from(quota.burst) + (b - a) / interval;
                if count > bound {
                    return Some(format!(
                        "key {key}: {count} admissions in [{a}, {b}] ns, at most {bound}"
                    ));
                }
            }
        }
        None
    }
}

fn nanos_since(start: Instant) -> u64 {
    start.elapsed().as_nanos() as u64
}

/// Below `max_keys` no key is forgotten: every key spends its burst, and between the
/// arrivals of new keys every earlier one is tried again and must stay refused. (With
/// the bound applied per shard, 159 keys over 16 shards of 10 overflowed some shard and
/// its oldest key came back with a fresh burst.)
#[tokio::test(start_paused = true)]
async fn below_max_keys_no_key_is_forgotten() {
    let quota = Quota::new(1.0, 3);
    let l = KeyedRateLimiter::builder()
        .quota(quota)
        .max_keys(160)
        .build()
        .unwrap();
    let start = Instant::now();
    let mut ledger = Ledger::default();
    for key in 0..159u64 {
        while l.check(&key).is_ok() {
            ledger.record(key, nanos_since(start));
        }
        for earlier in 0..key {
            if l.check(&earlier).is_ok() {
                ledger.record(earlier, nanos_since(start));
            }
            assert_eq!(ledger.excess(earlier, quota), None);
        }
        assert_eq!(l.len(), key as usize + 1, "a live key was forgotten");
        advance(Duration::from_millis(1)).await;
    }
}

/// With more live keys than `max_keys`, at most `max_keys` are remembered, and neither a
/// remembered key nor one that could not be remembered is ever given a fresh burst.
#[tokio::test(start_paused = true)]
async fn above_max_keys_no_key_gets_a_fresh_burst() {
    let quota = Quota::new(1.0, 3);
    let l = KeyedRateLimiter::builder()
        .quota(quota)
        .max_keys(32)
        .build()
        .unwrap();
    let start = Instant::now();
    let mut ledger = Ledger::default();
    for round in 0..3 {
        for key in 0..100u64 {
            for k in [key, key / 2, 0] {
                while l.check(&k).is_ok() {
                    ledger.record(k, nanos_since(start));
                }
                assert_eq!(ledger.excess(k, quota), None, "round {round}");
            }
            assert!(l.len() <= 32, "{} keys remembered", l.len());
            advance(Duration::from_millis(5)).await;
        }
    }
    for key in 0..100 {
        assert_eq!(ledger.excess(key, quota), None);
    }
    // Once every key has refilled, new keys are remembered again, each with its burst.
    advance(Duration::from_secs(5)).await;
    for key in 1000..1032u64 {
        for _ in 0..3 {
            l.check(&key).unwrap();
        }
        assert!(l.check(&key).is_err());
    }
    assert_eq!(l.len(), 32);
}

/// Keys the limiter cannot remember share one overflow state, and a key remembered later
/// starts from it: what it was admitted through the overflow still counts.
#[tokio::test(start_paused = true)]
async fn unremembered_keys_share_the_overflow_and_it_follows_them() {
    let l = KeyedRateLimiter::builder()
        .quota(Quota::new(1.0, 2))
        .max_keys(1)
        .build()
        .unwrap();
    l.check(&0).unwrap(); // remembered, live for 1 s
    l.check(&1).unwrap(); // no room: the overflow state's burst of 2
    l.check(&1).unwrap();
    assert_eq!(l.check(&1), Err(Duration::from_secs(1)));
    assert_eq!(l.check(&2), Err(Duration::from_secs(1)), "shared");
    assert_eq!((l.len(), l.overflowed()), (1, 4));
    advance(Duration::from_secs(1)).await;
    // Key 0 is idle and gives way; key 1 is remembered with the overflow state's
    // arrival time, not a fresh burst: 3 calls in its first second, as 1/s burst 2 allows.
    l.check(&1).unwrap();
    assert!(l.check(&1).is_err(), "a fresh burst for key 1");
    assert_eq!((l.len(), l.overflowed()), (1, 4));
}

/// Threads racing to remember keys never take more than `max_keys` slots, and no key is
/// admitted more than its burst while time stands still.
#[test]
fn racing_inserts_respect_max_keys_and_bursts() {
    let (clock, _hand) = crate::clock::Clock::manual();
    let l = KeyedRateLimiter::builder()
        .quota(Quota::new(1.0, 2))
        .max_keys(64)
        .clock(clock)
        .build()
        .unwrap();
    let admitted: Vec<AtomicU32> = (0..200).map(|_| AtomicU32::new(0)).collect();
    std::thread::scope(|s| {
        for t in 0..4u64 {
            let (l, admitted) = (&l, &admitted);
            s.spawn(move || {
                for round in 0..3u64 {
                    for i in 0..200u64 {
                        let key = (i * (2 * t + 1) + round) % 200;
                        if l.check(&key).is_ok() {
                            admitted[key as usize].fetch_add(1, Ordering::Relaxed);
                        }
                        assert!(l.len() <= 64);
                    }
                }
            });
        }
    });
    assert_eq!(l.len(), 64);
    let total: u32 = admitted.iter().map(|a| a.load(Ordering::Relaxed)).sum();
    assert!(admitted.iter().all(|a| a.load(Ordering::Relaxed) <= 2));
    assert!(
        total <= 64 * 2 + 2,
        "{total}: 64 remembered keys and the overflow"
    );
}

/// One step of the property test: a call for `key` after `advance_ms`.
fn step() -> impl proptest::strategy::Strategy<Value = (u64, u64)> {
    use proptest::prelude::*;
    (
        0u64..48,
        prop_oneof![4 => 0u64..5, 3 => 5u64..200, 1 => 1000u64..4000],
    )
}

proptest::proptest! {
    /// Over any sequence of calls and pauses, with keys fewer or more than `max_keys`,
    /// some with their own quota: no key is admitted more than `burst + rate × elapsed`
    /// in any interval, and no more than `max_keys` keys are remembered.
    #[test]
    fn keyed_admissions_and_memory_stay_bounded(
        max_keys in 16usize..40,
        per_second in proptest::sample::select(vec![1.0, 10.0, 50.0]),
        burst in 1u32..5,
        steps in proptest::collection::vec(step(), 1..250),
    ) {
        let (clock, hand) = crate::clock::Clock::manual();
        let quota = Quota::new(per_second, burst);
        let vip = Quota::new(per_second * 2.0, burst + 2);
        let l = KeyedRateLimiter::builder()
            .quota(quota)
            .max_keys(max_keys)
            .clock(clock.clone())
            .build()
            .unwrap();
        let quota_of = |key: u64| if key % 7 == 0 { vip } else { quota };
        for key in (0..48).filter(|k| k % 7 == 0) {
            l.set_quota_for(key, vip).unwrap();
        }
        let mut ledger = Ledger::default();
        for (key, advance_ms) in steps {
            hand.advance(Duration::from_millis(advance_ms));
            if l.check(&key).is_ok() {
                ledger.record(key, clock.now());
            }
            proptest::prop_assert!(l.len() <= max_keys, "{} keys remembered", l.len());
            if let Some(excess) = ledger.excess(key, quota_of(key)) {
                proptest::prop_assert!(false, "{}", excess);
            }
        }
    }
}

use std::time::Duration;

use super::*;
use crate::clock::Clock;

fn throttle(k: f64, seed: u64) -> (AdaptiveThrottle, crate::clock::ManualClock) {
    let (clock, hand) = Clock::manual();
    let config = ThrottleConfig {
        k,
        max_rejection: 0.99,
        seed: Some(seed),
        ..Default::default()
    };
    (
        AdaptiveThrottleBuilder::from_config(config)
            .clock(clock)
            .build()
            .unwrap(),
        hand,
    )
}

#[test]
fn the_formula() {
    assert_eq!(probability(0, 0, 2.0, 1.0), 0.0);
    assert_eq!(probability(100, 50, 2.0, 1.0), 0.0);
    assert!((probability(100, 25, 2.0, 1.0) - 50.0 / 101.0).abs() < 1e-12);
    assert_eq!(probability(1000, 0, 2.0, 0.9), 0.9, "capped");
}

#[test]
fn a_healthy_backend_is_never_throttled() {
    let (t, hand) = throttle(2.0, 1);
    for _ in 0..10_000 {
        assert!(t.admit());
        t.accepted();
        hand.advance(Duration::from_millis(10));
    }
}

/// A backend that accepts 50% of the calls it receives. Every local decision must follow
/// the formula applied to the window's counts at that moment: the observed rejections
/// match the sum of the probabilities within binomial bounds.
#[test]
fn at_a_backend_accepting_half_the_rejection_rate_matches_the_formula() {
    for (k, seed) in [(1.5, 11), (2.0, 12), (3.0, 13)] {
        let (t, hand) = throttle(k, seed);
        let backend = crate::random::Dice::new(Some(seed + 100));
        let (mut expected, mut variance, mut rejected) = (0.0, 0.0, 0u32);
        let n = 20_000;
        for _ in 0..n {
            let p = t.rejection_probability();
            expected += p;
            variance += p * (1.0 - p);
            if t.admit() {
                if backend.roll() < 0.5 {
                    t.accepted();
                }
            } else {
                rejected += 1;
            }
            hand.advance(Duration::from_millis(20));
        }
        let sd = variance.sqrt().max(1.0);
        assert!(
            (f64::from(rejected) - expected).abs() <= 4.0 * sd,
            "K = {k}: rejected {rejected}, formula expects {expected:.0} ± {sd:.0}"
        );
        // K·a < 1 throttles towards the cap; K·a > 1 hardly throttles; K·a = 1 is neutral
        // (the formula's fixed point is any p, so it wanders).
        let rate = f64::from(rejected) / f64::from(n);
        if k * 0.5 < 1.0 {
            assert!(rate > 0.5, "K = {k}: {rate}");
        } else if k * 0.5 > 1.0 {
            assert!(rate < 0.1, "K = {k}: {rate}");
        }
    }
}

#[tokio::test(start_paused = true)]
async fn the_policy_rejects_locally_with_shed_and_recovers() {
    let t = AdaptiveThrottle::new(ThrottleConfig {
        seed: Some(3),
        window: Duration::from_secs(10),
        buckets: 10,
        ..Default::default()
    })
    .unwrap();
    let mut shed = 0;
    for _ in 0..500 {
        if let Err(Error::Shed { .. }) = t.call(|| async { Err::<(), _>("503") }).await {
            shed += 1;
        }
        tokio::time::advance(Duration::from_millis(10)).await;
    }
    assert!(shed > 300, "{shed}");
    // The backend recovers. Locally rejected calls still count as requests, so the
    // probability falls window by window (p → 2p − 1 at K = 2), not at once.
    let mut admitted_late = 0;
    for i in 0..600 {
        let ok = t.call(|| async { Ok::<_, &str>(()) }).await.is_ok();
        if i >= 500 && ok {
            admitted_late += 1;
        }
        tokio::time::advance(Duration::from_millis(100)).await;
    }
    assert!(
        admitted_late > 95,
        "recovered within six windows: {admitted_late} of the last 100"
    );
    assert_eq!(
        t.rejection_probability(),
        0.0,
        "the window forgot the failures"
    );
}

#[test]
fn invalid_configs_name_the_field() {
    let e = AdaptiveThrottle::new(ThrottleConfig {
        k: 0.5,
        ..Default::default()
    })
    .unwrap_err();
    assert_eq!(e.field, "k");
    let e = AdaptiveThrottle::new(ThrottleConfig {
        max_rejection: 2.0,
        ..Default::default()
    })
    .unwrap_err();
    assert_eq!(e.field, "max_rejection");
}

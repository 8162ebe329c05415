use std::time::Duration;

use super::*;
use crate::clock::Clock;

fn limiter(config: AdaptiveConcurrencyConfig) -> (AdaptiveConcurrency, crate::clock::ManualClock) {
    let (clock, hand) = Clock::manual();
    (
        AdaptiveConcurrencyBuilder::from_config(config)
            .clock(clock)
            .build()
            .unwrap(),
        hand,
    )
}

fn aimd(initial: u32) -> AdaptiveConcurrencyConfig {
    AdaptiveConcurrencyConfig {
        algorithm: AlgorithmConfig::Aimd {
            backoff_ratio: 0.5,
            latency_threshold: None,
        },
        initial_limit: initial,
        max_limit: 100,
        ..Default::default()
    }
}

#[test]
fn the_limit_is_enforced_and_moves_with_samples() {
    let (l, hand) = limiter(aimd(2));
    let a = l.try_acquire().unwrap();
    let b = l.try_acquire().unwrap();
    assert!(l.try_acquire().is_none(), "limit of 2");
    hand.advance(Duration::from_millis(10));
    a.record(&Outcome::success());
    assert_eq!(
        l.limit(),
        3,
        "in use and successful: +1/limit (2.5 rounds to 3)"
    );
    b.record(&Outcome::failure());
    assert_eq!(l.limit(), 1, "a drop halves it (2.5 × 0.5 rounds to 1)");
}

#[test]
fn clones_share_one_limit() {
    let (l, _hand) = limiter(aimd(1));
    let other = l.clone();
    let _held = l.try_acquire().unwrap();
    assert!(
        other.try_acquire().is_none(),
        "a clone must not admit past the shared limit"
    );
}

#[test]
fn the_limit_stays_within_its_bounds() {
    let (l, _hand) = limiter(AdaptiveConcurrencyConfig {
        min_limit: 2,
        ..aimd(4)
    });
    for _ in 0..20 {
        l.try_acquire().unwrap().record(&Outcome::failure());
    }
    assert_eq!(l.limit(), 2);
}

#[test]
fn ignored_outcomes_give_no_sample() {
    let (l, _hand) = limiter(aimd(2));
    let a = l.try_acquire().unwrap();
    let _b = l.try_acquire().unwrap();
    a.record(&Outcome::ignored());
    assert_eq!(l.limit(), 2);
}

#[tokio::test]
async fn partitions_keep_a_reservation_for_each_class() {
    let (l, _hand) = limiter(AdaptiveConcurrencyConfig {
        partitions: vec![
            PartitionConfig {
                criticality: Criticality::Critical,
                share: 0.5,
            },
            PartitionConfig {
                criticality: Criticality::Sheddable,
                share: 0.2,
            },
        ],
        ..aimd(10)
    });
    let take = |c| crate::criticality::scope(c, async { l.try_acquire() });
    let mut held = Vec::new();
    for _ in 0..5 {
        held.push(
            take(Criticality::Sheddable)
                .await
                .expect("its 2 reserved and the 3 unreserved"),
        );
    }
    assert!(
        take(Criticality::Sheddable).await.is_none(),
        "critical's 5 reserved slots are held back"
    );
    assert!(
        take(Criticality::CriticalPlus).await.is_none(),
        "a class without a partition may not take them either"
    );
    for _ in 0..5 {
        held.push(
            take(Criticality::Critical)
                .await
                .expect("critical's reservation"),
        );
    }
    assert!(
        take(Criticality::Critical).await.is_none(),
        "the limit of 10 is reached"
    );
    drop(held);
    assert!(take(Criticality::CriticalPlus).await.is_some());
}

#[test]
fn invalid_configs_name_the_field() {
    let e = AdaptiveConcurrency::new(AdaptiveConcurrencyConfig {
        min_limit: 0,
        ..Default::default()
    })
    .unwrap_err();
    assert_eq!(e.field, "min_limit");
    let e = AdaptiveConcurrency::new(AdaptiveConcurrencyConfig {
        initial_limit: 5000,
        ..Default::default()
    })
    .unwrap_err();
    assert_eq!(e.field, "initial_limit");
    let e = AdaptiveConcurrency::new(AdaptiveConcurrencyConfig {
        algorithm: AlgorithmConfig::Vegas {
            alpha: 6.0,
            beta: 3.0,
            baseline_window: Duration::from_secs(10),
        },
        ..Default::default()
    })
    .unwrap_err();
    assert_eq!(e.field, "algorithm.beta");
    let e = AdaptiveConcurrency::new(AdaptiveConcurrencyConfig {
        partitions: vec![
            PartitionConfig {
                criticality: Criticality::Critical,
                share: 0.7,
            },
            PartitionConfig {
                criticality: Criticality::Sheddable,
                share: 0.7,
            },
        ],
        ..Default::default()
    })
    .unwrap_err();
    assert_eq!(e.field, "partitions");
}

#[test]
fn an_owned_permit_holds_a_place_and_teaches_the_limit() {
    let (l, hand) = limiter(aimd(2));
    let a = l.try_acquire_owned().unwrap();
    let b = l.try_acquire_owned().unwrap();
    assert_eq!(l.in_flight(), 2);
    assert!(l.try_acquire_owned().is_none(), "limit of 2");
    assert!(
        l.try_acquire().is_none(),
        "the borrowed kind counts the same places"
    );
    hand.advance(Duration::from_millis(10));
    a.record_round_trip(&Outcome::success(), Duration::from_millis(10));
    assert_eq!(
        l.limit(),
        3,
        "in use and successful: +1/limit (2.5 rounds to 3)"
    );
    assert_eq!(l.in_flight(), 1, "recording gave its place back");
    drop(b);
    assert_eq!(
        l.in_flight(),
        0,
        "dropped unrecorded: its place back, no sample"
    );
    assert_eq!(l.limit(), 3);
    let c = l.try_acquire_owned().unwrap();
    c.record_round_trip(&Outcome::failure(), Duration::from_millis(10));
    assert_eq!(l.limit(), 1, "a drop halves it (2.5 × 0.5 rounds to 1)");
}

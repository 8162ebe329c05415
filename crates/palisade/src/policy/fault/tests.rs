use std::sync::atomic::AtomicU32;
use std::time::Duration;

use tokio::time::Instant;

use super::*;

fn chaos(config: FaultConfig) -> FaultInjection<u32, &'static str> {
    FaultInjection::builder(config)
        .inject(|| Err(Error::Inner("injected")))
        .build()
        .unwrap()
}

/// Within 4 standard deviations of a binomial(n, p).
fn within_bounds(count: usize, n: usize, p: f64) -> bool {
    let mean = n as f64 * p;
    let sd = (n as f64 * p * (1.0 - p)).sqrt();
    (count as f64 - mean).abs() <= 4.0 * sd
}

#[tokio::test(start_paused = true)]
async fn off_by_default_and_switchable() {
    let c = chaos(FaultConfig {
        error_rate: 1.0,
        seed: Some(1),
        ..Default::default()
    });
    assert!(c.call(|| async { Ok(1) }).await.is_ok());
    c.enable();
    assert!(c.call(|| async { Ok(1) }).await.is_err());
    c.disable();
    assert!(c.call(|| async { Ok(1) }).await.is_ok());
}

#[tokio::test(start_paused = true)]
async fn error_rate_is_honoured_within_statistical_bounds() {
    for (rate, seed) in [(0.01, 1), (0.1, 2), (0.5, 3)] {
        let c = chaos(FaultConfig {
            enabled: true,
            error_rate: rate,
            seed: Some(seed),
            ..Default::default()
        });
        let ran = AtomicU32::new(0);
        let n = 20_000;
        let mut injected = 0;
        for _ in 0..n {
            let r = c
                .call(|| {
                    ran.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    async { Ok(1) }
                })
                .await;
            injected += usize::from(r.is_err());
        }
        assert!(
            within_bounds(injected, n, rate),
            "rate {rate}: {injected} of {n}"
        );
        assert_eq!(
            ran.load(std::sync::atomic::Ordering::Relaxed) as usize,
            n - injected,
            "an injected fault skips the call"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn latency_rate_is_honoured_and_delays_by_the_configured_amount() {
    let c = chaos(FaultConfig {
        enabled: true,
        latency_rate: 0.2,
        latency: Duration::from_millis(100),
        seed: Some(4),
        ..Default::default()
    });
    let n = 5_000;
    let mut delayed = 0;
    for _ in 0..n {
        let start = Instant::now();
        c.call(|| async { Ok(1) }).await.unwrap();
        match start.elapsed() {
            d if d == Duration::from_millis(100) => delayed += 1,
            d => assert_eq!(d, Duration::ZERO),
        }
    }
    assert!(within_bounds(delayed, n, 0.2), "{delayed} of {n}");
}

#[tokio::test(start_paused = true)]
async fn concurrent_faults_are_capped() {
    let c = chaos(FaultConfig {
        enabled: true,
        latency_rate: 1.0,
        latency: Duration::from_secs(1),
        max_concurrent: 3,
        seed: Some(5),
        ..Default::default()
    });
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            let started = Instant::now();
            c.call(|| async { Ok(1) }).await.unwrap();
            started.elapsed()
        }));
    }
    let mut slow = 0;
    for t in tasks {
        if t.await.unwrap() >= Duration::from_secs(1) {
            slow += 1;
        }
    }
    assert_eq!(slow, 3, "only three delays at once");
    assert_eq!(start.elapsed(), Duration::from_secs(1));
}

#[tokio::test(start_paused = true)]
async fn injected_values_and_runtime_rate_changes() {
    let c = FaultInjection::<u32, ()>::builder(FaultConfig {
        enabled: true,
        seed: Some(6),
        ..Default::default()
    })
    .inject(|| Ok(42))
    .build()
    .unwrap();
    assert_eq!(
        c.call(|| async { Ok(1) }).await.unwrap(),
        1,
        "rates start at 0"
    );
    c.set_rates(1.0, 0.0, Duration::ZERO).unwrap();
    assert_eq!(c.call(|| async { Ok(1) }).await.unwrap(), 42);
    assert_eq!(
        c.set_rates(1.5, 0.0, Duration::ZERO).unwrap_err().field,
        "error_rate"
    );
}

#[test]
fn an_error_rate_without_an_injection_is_refused() {
    let e = FaultInjection::<u32, ()>::builder(FaultConfig {
        error_rate: 0.5,
        ..Default::default()
    })
    .build()
    .unwrap_err();
    assert_eq!(e.field, "error_rate");
    let e = FaultInjection::<u32, ()>::builder(FaultConfig {
        latency_rate: -0.1,
        ..Default::default()
    })
    .build()
    .unwrap_err();
    assert_eq!(e.field, "latency_rate");
}

#[test]
fn roll_decides_as_call_does_and_its_slots_count_until_dropped() {
    let chaos = chaos(FaultConfig {
        enabled: true,
        latency_rate: 1.0,
        latency: Duration::from_millis(40),
        max_concurrent: 2,
        seed: Some(3),
        ..FaultConfig::default()
    });
    let first = chaos.roll();
    let second = chaos.roll();
    assert!(
        matches!(&first, Injected::Latency { delay, .. } if *delay == Duration::from_millis(40)),
        "{first:?}"
    );
    assert!(matches!(second, Injected::Latency { .. }));
    assert!(
        matches!(chaos.roll(), Injected::None),
        "two faults in progress: the cap holds"
    );
    drop(first);
    assert!(
        matches!(chaos.roll(), Injected::Latency { .. }),
        "a dropped slot is free again"
    );
    chaos.disable();
    assert!(matches!(chaos.roll(), Injected::None));
}

#[test]
fn roll_injects_outcomes_only_with_something_to_inject() {
    let chaos = chaos(FaultConfig {
        enabled: true,
        error_rate: 1.0,
        seed: Some(5),
        ..FaultConfig::default()
    });
    assert!(matches!(chaos.roll(), Injected::Outcome(_)));
}

/// Fault injection whose degradation adds 100 to a value.
fn degrading(config: FaultConfig) -> FaultInjection<u32, &'static str> {
    FaultInjection::builder(config)
        .inject(|| Err(Error::Inner("injected")))
        .degrade(|value| Ok(value + 100))
        .build()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn degrade_rate_is_honoured_and_every_degraded_call_runs() {
    for (rate, seed) in [(0.05, 11), (0.3, 12), (1.0, 13)] {
        let c = degrading(FaultConfig {
            enabled: true,
            degrade_rate: rate,
            seed: Some(seed),
            ..Default::default()
        });
        let ran = AtomicU32::new(0);
        let n = 20_000;
        let mut degraded = 0;
        for _ in 0..n {
            let value = c
                .call(|| {
                    ran.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    async { Ok(1) }
                })
                .await
                .unwrap();
            match value {
                101 => degraded += 1,
                other => assert_eq!(other, 1),
            }
        }
        assert!(
            within_bounds(degraded, n, rate),
            "rate {rate}: {degraded} of {n}"
        );
        assert_eq!(
            ran.load(std::sync::atomic::Ordering::Relaxed) as usize,
            n,
            "a degraded call runs"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_failed_call_is_not_degraded_and_its_slot_is_given_back() {
    let c = FaultInjection::<u32, &'static str>::builder(FaultConfig {
        enabled: true,
        degrade_rate: 1.0,
        max_concurrent: 1,
        seed: Some(14),
        ..Default::default()
    })
    .degrade(|_| Err(Error::Inner("degraded")))
    .build()
    .unwrap();
    let failed = c.call(|| async { Err("own") }).await;
    assert!(matches!(failed, Err(Error::Inner("own"))), "{failed:?}");
    let degraded = c.call(|| async { Ok(1) }).await;
    assert!(
        matches!(degraded, Err(Error::Inner("degraded"))),
        "the one slot was given back: {degraded:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_degradation_holds_its_slot_while_the_call_runs() {
    let c = degrading(FaultConfig {
        enabled: true,
        degrade_rate: 1.0,
        max_concurrent: 2,
        seed: Some(15),
        ..Default::default()
    });
    let mut tasks = Vec::new();
    for _ in 0..5 {
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            c.call(|| async {
                tokio::time::sleep(Duration::from_secs(1)).await;
                Ok(1)
            })
            .await
            .unwrap()
        }));
    }
    let mut degraded = 0;
    for t in tasks {
        degraded += usize::from(t.await.unwrap() == 101);
    }
    assert_eq!(degraded, 2, "two degradations in progress at once");
    assert_eq!(c.call(|| async { Ok(1) }).await.unwrap(), 101, "slots free");
}

#[tokio::test(start_paused = true)]
async fn a_call_gets_one_fault_at_most_outcome_first_then_latency() {
    let c = degrading(FaultConfig {
        enabled: true,
        error_rate: 1.0,
        degrade_rate: 1.0,
        seed: Some(16),
        ..Default::default()
    });
    for _ in 0..100 {
        assert!(matches!(c.roll(), Injected::Outcome(_)));
    }
    let c = degrading(FaultConfig {
        enabled: true,
        latency_rate: 1.0,
        latency: Duration::from_millis(10),
        degrade_rate: 1.0,
        seed: Some(17),
        ..Default::default()
    });
    let start = Instant::now();
    assert_eq!(
        c.call(|| async { Ok(1) }).await.unwrap(),
        1,
        "delayed, not also degraded"
    );
    assert_eq!(start.elapsed(), Duration::from_millis(10));
}

#[test]
fn a_degrade_rate_without_a_degradation_or_out_of_range_is_refused() {
    let e = FaultInjection::<u32, ()>::builder(FaultConfig {
        degrade_rate: 0.5,
        ..Default::default()
    })
    .build()
    .unwrap_err();
    assert_eq!(e.field, "degrade_rate");
    let no_hook = chaos(FaultConfig::default());
    assert_eq!(
        no_hook.set_degrade_rate(0.5).unwrap_err().field,
        "degrade_rate"
    );
    no_hook.set_degrade_rate(0.0).unwrap();
    let c = degrading(FaultConfig::default());
    for bad in [-0.1, 1.01, f64::NAN] {
        assert_eq!(
            c.set_degrade_rate(bad).unwrap_err().field,
            "degrade_rate",
            "{bad}"
        );
    }
    c.set_degrade_rate(1.0).unwrap();
    c.enable();
    assert!(matches!(c.roll(), Injected::Degrade(_)));
    c.set_degrade_rate(0.0).unwrap();
    assert!(matches!(c.roll(), Injected::None));
}

/// Switched off, a roll is one relaxed load: it rolls no dice (the seeded sequence is
/// where it was) and takes no slot, whatever the rates.
#[test]
fn switched_off_a_roll_rolls_no_dice() {
    let config = FaultConfig {
        error_rate: 0.3,
        latency_rate: 0.3,
        degrade_rate: 0.3,
        max_concurrent: 1_000_000,
        seed: Some(18),
        ..Default::default()
    };
    let rolled_off = degrading(config.clone());
    let fresh = degrading(config);
    for _ in 0..1000 {
        assert!(matches!(rolled_off.roll(), Injected::None));
    }
    rolled_off.enable();
    fresh.enable();
    let kind = |i: &Injected| std::mem::discriminant(i);
    let held: Vec<_> = (0..1000)
        .map(|_| (rolled_off.roll(), fresh.roll()))
        .collect();
    for (a, b) in &held {
        assert_eq!(kind(a), kind(b), "the dice moved while off");
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(24))]

    /// Whatever the rates and the seed: each kind's share is its rate among the calls
    /// the kinds before it left (within 5 standard deviations), and a call gets one
    /// fault at most.
    #[test]
    fn each_kind_takes_its_share_of_what_the_kinds_before_it_left(
        error_rate in 0.0f64..=1.0,
        latency_rate in 0.0f64..=1.0,
        degrade_rate in 0.0f64..=1.0,
        seed in proptest::num::u64::ANY,
    ) {
        let c = degrading(FaultConfig {
            enabled: true,
            error_rate,
            latency_rate,
            degrade_rate,
            max_concurrent: 1_000_000,
            seed: Some(seed),
            ..Default::default()
        });
        let n = 4_000;
        let (mut outcomes, mut delays, mut degraded) = (0, 0, 0);
        for _ in 0..n {
            match c.roll() {
                Injected::Outcome(_) => outcomes += 1,
                Injected::Latency { .. } => delays += 1,
                Injected::Degrade(_) => degraded += 1,
                Injected::None => {}
            }
        }
        let close = |count: usize, p: f64| {
            let sd = (n as f64 * p * (1.0 - p)).sqrt();
            (count as f64 - n as f64 * p).abs() <= 5.0 * sd + 1.0
        };
        let left = 1.0 - error_rate;
        proptest::prop_assert!(close(outcomes, error_rate), "outcomes {outcomes}");
        proptest::prop_assert!(close(delays, left * latency_rate), "delays {delays}");
        proptest::prop_assert!(
            close(degraded, left * (1.0 - latency_rate) * degrade_rate),
            "degraded {degraded}"
        );
    }

    /// Whatever the kinds drawn and the order slots are given back in: no more than
    /// `max_concurrent` faults are ever in progress, and a fault is refused only when
    /// that many are.
    #[test]
    fn faults_in_progress_never_exceed_the_cap(
        max_concurrent in 1usize..8,
        kind in 0u8..3,
        steps in proptest::collection::vec(proptest::option::of(0usize..8), 1..200),
        seed in proptest::num::u64::ANY,
    ) {
        let c = degrading(FaultConfig {
            enabled: true,
            error_rate: f64::from(u8::from(kind == 0)),
            latency_rate: f64::from(u8::from(kind == 1)),
            degrade_rate: 1.0,
            max_concurrent,
            seed: Some(seed),
            ..Default::default()
        });
        let mut held = Vec::new();
        for step in steps {
            match step {
                // Give back one of the slots held, if any.
                Some(which) if !held.is_empty() => {
                    held.remove(which % held.len());
                }
                _ => {
                    let had = held.len();
                    match c.roll() {
                        Injected::None => proptest::prop_assert_eq!(had, max_concurrent),
                        Injected::Outcome(slot)
                        | Injected::Latency { slot, .. }
                        | Injected::Degrade(slot) => held.push(slot),
                    }
                }
            }
            proptest::prop_assert!(held.len() <= max_concurrent);
        }
    }
}

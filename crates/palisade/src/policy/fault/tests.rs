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

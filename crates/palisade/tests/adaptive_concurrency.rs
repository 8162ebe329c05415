//! Simulation: each adaptive limiter finds the concurrency that maximises a server's
//! goodput, and finds it again when the server's capacity halves and doubles.
//!
//! The simulated server has `C` workers and a 10 ms service time. With `n` calls in it,
//! a call takes `10 ms × max(1, n/C) × (1 + 0.5 · max(0, n − C)/C)`: beyond `C` calls
//! share the workers and the server also thrashes, so goodput `n / latency` peaks at
//! exactly `n = C`. Clients offer three times the capacity. All on tokio's paused clock.

#![cfg(not(palisade_loom))]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use palisade::Policy;
use palisade::policy::adaptive_concurrency::{
    AdaptiveConcurrency, AdaptiveConcurrencyConfig, AlgorithmConfig,
};
use tokio::time::{Instant, sleep};

const SERVICE: Duration = Duration::from_millis(10);

struct Server {
    capacity: AtomicUsize,
    in_flight: AtomicUsize,
}

impl Server {
    async fn call(&self) -> Result<(), ()> {
        let n = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        let c = self.capacity.load(Ordering::SeqCst) as f64;
        let n = n as f64;
        let stretch = (n / c).max(1.0) * (1.0 + 0.5 * ((n - c) / c).max(0.0));
        sleep(SERVICE.mul_f64(stretch)).await;
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        Ok(())
    }
}

/// Mean limit over `length`, sampled every 50 ms.
async fn mean_limit(limiter: &AdaptiveConcurrency, length: Duration) -> f64 {
    let end = Instant::now() + length;
    let (mut sum, mut samples) = (0.0, 0.0);
    while Instant::now() < end {
        sleep(Duration::from_millis(50)).await;
        sum += limiter.limit() as f64;
        samples += 1.0;
    }
    sum / samples
}

async fn converges(name: &str, algorithm: AlgorithmConfig) {
    let capacity = 100;
    let server = Arc::new(Server {
        capacity: AtomicUsize::new(capacity),
        in_flight: AtomicUsize::new(0),
    });
    let limiter = AdaptiveConcurrency::new(AdaptiveConcurrencyConfig {
        name: name.to_owned(),
        algorithm,
        initial_limit: 20,
        max_limit: 1000,
        max_queue: 1000,
        queue_timeout: Duration::from_secs(60),
        ..Default::default()
    })
    .unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut clients = Vec::new();
    for _ in 0..3 * capacity * 2 {
        let (limiter, server, stop) = (limiter.clone(), server.clone(), stop.clone());
        clients.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let _ = limiter.call(|| server.call()).await;
            }
        }));
    }
    let mut report = Vec::new();

    for (phase, c) in [("C", capacity), ("C/2", capacity / 2), ("2C", capacity * 2)] {
        server.capacity.store(c, Ordering::SeqCst);
        sleep(Duration::from_secs(4)).await; // settle
        let mean = mean_limit(&limiter, Duration::from_secs(3)).await;
        let error = (mean - c as f64).abs() / c as f64;
        report.push(format!(
            "{phase}: capacity {c}, mean limit {mean:.1} ({:+.0}%)",
            100.0 * (mean - c as f64) / c as f64
        ));
        assert!(error <= 0.2, "{name}: {}", report.join("; "));
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        let _ = c.await;
    }
    println!("{name}: {}", report.join("; "));
}

#[tokio::test(start_paused = true)]
async fn aimd_finds_the_capacity() {
    converges(
        "aimd",
        AlgorithmConfig::Aimd {
            backoff_ratio: 0.9,
            latency_threshold: Some(SERVICE.mul_f64(1.3)),
        },
    )
    .await;
}

#[tokio::test(start_paused = true)]
async fn vegas_finds_the_capacity() {
    converges(
        "vegas",
        AlgorithmConfig::Vegas {
            alpha: 3.0,
            beta: 6.0,
            baseline_window: Duration::from_secs(30),
        },
    )
    .await;
}

#[tokio::test(start_paused = true)]
async fn gradient2_finds_the_capacity() {
    converges(
        "gradient2",
        AlgorithmConfig::Gradient2 {
            tolerance: 1.2,
            long_window: 600,
            queue_size: 4.0,
            smoothing: 0.2,
            baseline_cap: 1.0,
            baseline_window: Duration::from_secs(30),
        },
    )
    .await;
}

//! A tour of every policy against a simulated flaky dependency.
//!
//! `cargo run -p palisade --example tour`
//!
//! The dependency is healthy, then degrades (slow and failing), then goes down (every call
//! hangs), then recovers. Each section runs the same traffic straight at it and through a
//! policy, and prints what the policy did. Time is tokio's paused clock, so a minute of
//! simulated traffic takes a fraction of a second and every run prints the same numbers.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use palisade::events::Event;
use palisade::policy::bulkhead::Bulkhead;
use palisade::policy::circuit_breaker::CircuitBreaker;
use palisade::policy::fallback::Fallback;
use palisade::policy::rate_limit::{Quota, RateLimiter};
use palisade::policy::retry::{BackoffKind, Jitter, Retry};
use palisade::policy::timeout::Timeout;
use palisade::{Error, Pipeline, Policy};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio::time::{Instant, sleep};

/// What the dependency does at a given moment.
#[derive(Clone, Copy, Debug)]
enum Phase {
    Healthy,
    Degraded,
    Down,
}

/// A dependency whose behaviour follows a schedule: healthy for 20 s, degraded for 10 s,
/// down for 10 s, healthy again.
#[derive(Clone)]
struct Dependency {
    start: Instant,
    rng: Arc<std::sync::Mutex<SmallRng>>,
    calls: Arc<AtomicU64>,
}

#[derive(Debug)]
struct DependencyError(&'static str);

impl std::fmt::Display for DependencyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl Dependency {
    fn new(seed: u64) -> Self {
        Self {
            start: Instant::now(),
            rng: Arc::new(std::sync::Mutex::new(SmallRng::seed_from_u64(seed))),
            calls: Arc::default(),
        }
    }

    fn phase(&self) -> Phase {
        match self.start.elapsed().as_secs() {
            0..20 => Phase::Healthy,
            20..30 => Phase::Degraded,
            30..40 => Phase::Down,
            _ => Phase::Healthy,
        }
    }

    async fn call(&self) -> Result<&'static str, DependencyError> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let roll: f64 = self.rng.lock().unwrap().random();
        match self.phase() {
            Phase::Healthy => {
                sleep(Duration::from_millis(if roll < 0.02 { 400 } else { 20 })).await;
                if roll > 0.97 {
                    Err(DependencyError("blip"))
                } else {
                    Ok("row")
                }
            }
            Phase::Degraded => {
                sleep(Duration::from_millis(150)).await;
                if roll < 0.4 {
                    Err(DependencyError("overloaded"))
                } else {
                    Ok("row")
                }
            }
            Phase::Down => {
                sleep(Duration::from_secs(3600)).await; // hangs
                Err(DependencyError("unreachable"))
            }
        }
    }
}

/// Successes, failures and latencies of one run.
#[derive(Default)]
struct Tally {
    sent: u64,
    ok: u64,
    failed: u64,
    latencies: Vec<Duration>,
    reasons: std::collections::BTreeMap<&'static str, u64>,
}

impl Tally {
    fn add<T, E>(&mut self, result: &Result<T, Error<E>>, took: Duration) {
        self.latencies.push(took);
        match result {
            Ok(_) => self.ok += 1,
            Err(e) => {
                self.failed += 1;
                *self.reasons.entry(e.reason()).or_default() += 1;
            }
        }
    }

    fn percentile(&self, p: f64) -> Duration {
        let mut sorted = self.latencies.clone();
        sorted.sort();
        sorted
            .get(((sorted.len() as f64 - 1.0) * p).round() as usize)
            .copied()
            .unwrap_or_default()
    }

    fn line(&self, label: &str) {
        let total = self.sent.max(1);
        let hung = self.sent - self.ok - self.failed;
        println!(
            "  {label:<24} {:>5} calls  {:>5.1}% ok  {hung:>3} still hanging  p50 {:>7.1?}  p99 {:>7.1?}  errors {:?}",
            total,
            100.0 * self.ok as f64 / total as f64,
            self.percentile(0.5),
            self.percentile(0.99),
            self.reasons
        );
    }
}

/// Sends one call every `every` for `length`, each in its own task, through `policy`.
async fn traffic<P>(policy: &P, dependency: &Dependency, length: Duration, every: Duration) -> Tally
where
    P: Policy<&'static str, DependencyError>,
{
    let tally = Arc::new(std::sync::Mutex::new(Tally::default()));
    let end = Instant::now() + length;
    while Instant::now() < end {
        let (policy, dependency, tally) = (policy.clone(), dependency.clone(), tally.clone());
        tally.lock().unwrap().sent += 1;
        tokio::spawn(async move {
            let started = Instant::now();
            let result = policy.call(|| dependency.call()).await;
            tally.lock().unwrap().add(&result, started.elapsed());
        });
        sleep(every).await;
    }
    sleep(Duration::from_secs(5)).await; // let in-flight calls finish (or stay hung)
    Arc::try_unwrap(tally)
        .map(|m| m.into_inner().unwrap())
        .unwrap_or_else(|shared| {
            let mut t = shared.lock().unwrap();
            std::mem::take(&mut *t)
        })
}

fn printer(prefix: &'static str) -> impl Fn(&Event) + Send + Sync + 'static {
    let start = Instant::now();
    move |event| {
        if let Event::CircuitStateChanged { from, to, .. } = event {
            println!("    [{:>6.2?}] {prefix}: {from} → {to}", start.elapsed());
        }
    }
}

#[tokio::main(flavor = "current_thread", start_paused = true)]
async fn main() {
    println!(
        "Palisade tour — a simulated dependency: healthy 0–20 s, degraded 20–30 s (slow, 40% errors),"
    );
    println!(
        "down 30–40 s (every call hangs), healthy again after. Paused clock: same output every run.\n"
    );
    let every = Duration::from_millis(50);
    let minute = Duration::from_secs(60);

    println!("1. Timeout — cancel what runs too long");
    traffic(
        &Pipeline::builder().build(),
        &Dependency::new(1),
        minute,
        every,
    )
    .await
    .line("direct");
    let timeout = Timeout::new(Duration::from_millis(250));
    traffic(&timeout, &Dependency::new(1), minute, every)
        .await
        .line("timeout 250ms");
    println!(
        "   Direct calls made during the outage are still hanging; with a timeout none waits past 250 ms.\n"
    );

    println!("2. Retry — exponential backoff with full jitter, only retryable errors");
    let retry = Retry::builder()
        .max_attempts(3)
        .backoff(
            BackoffKind::Exponential,
            Duration::from_millis(25),
            Duration::from_millis(250),
        )
        .jitter(Jitter::Full)
        .seed(7)
        .build()
        .unwrap();
    let healthy = Duration::from_secs(20);
    traffic(
        &Pipeline::builder().build(),
        &Dependency::new(2),
        healthy,
        every,
    )
    .await
    .line("direct (healthy phase)");
    traffic(&retry, &Dependency::new(2), healthy, every)
        .await
        .line("retry ×3");
    println!("   The 3% blips of the healthy phase disappear behind retries.\n");

    println!("3. Circuit breaker — stop calling what keeps failing, probe it back");
    let breaker = CircuitBreaker::builder()
        .name("db")
        .count_window(20)
        .minimum_calls(10)
        .failure_rate(0.5)
        .open_for(Duration::from_secs(2), Duration::from_secs(8), 2.0, 0.1)
        .seed(3)
        .on_event(printer("breaker"))
        .build()
        .unwrap();
    let guarded = Pipeline::builder()
        .push(breaker.clone())
        .push(Timeout::new(Duration::from_millis(250)))
        .build();
    let dependency = Dependency::new(3);
    let tally = traffic(&guarded, &dependency, minute, every).await;
    tally.line("breaker + timeout");
    println!(
        "   The dependency saw {} of {} calls; rejected calls failed in 0 ms instead of waiting.\n",
        dependency.calls.load(Ordering::Relaxed),
        tally.ok + tally.failed
    );

    println!("4. Bulkhead — at most 8 calls in flight, 8 queued for up to 50 ms");
    let bulkhead = Bulkhead::builder()
        .name("db")
        .max_concurrent(8)
        .queue(8, Duration::from_millis(50))
        .build()
        .unwrap();
    let burst = traffic(
        &bulkhead,
        &Dependency::new(4),
        Duration::from_secs(25),
        Duration::from_millis(5),
    )
    .await;
    burst.line("bulkhead, 200 calls/s");
    let s = bulkhead.snapshot();
    println!(
        "   peak {} active; {} admitted, {} rejected at once or after their queue wait.\n",
        s.peak, s.accepted, s.rejected
    );

    println!("5. Rate limiter — GCRA, 40 calls/s with bursts of 10");
    let limiter = RateLimiter::builder()
        .name("api")
        .quota(Quota::new(40.0, 10))
        .build()
        .unwrap();
    traffic(
        &limiter,
        &Dependency::new(5),
        Duration::from_secs(10),
        Duration::from_millis(10),
    )
    .await
    .line("100 calls/s offered");
    println!(
        "   About 40 of every 100 calls per second get through; the rest are told when to come back.\n"
    );

    println!("6. Fallback — a cached answer when everything else gave up");
    let fallback = Fallback::<&'static str, DependencyError>::builder()
        .value("cached row")
        .build()
        .unwrap();
    let pipeline = Pipeline::builder()
        .push(fallback)
        .push(Timeout::new(Duration::from_millis(250)))
        .build();
    traffic(&pipeline, &Dependency::new(6), minute, every)
        .await
        .line("fallback + timeout");
    println!("   Every call gets an answer; the ones during trouble get the cached one.\n");

    println!("7. Everything together — the recommended order");
    let breaker = CircuitBreaker::builder()
        .name("db")
        .count_window(20)
        .minimum_calls(10)
        .open_for(Duration::from_secs(2), Duration::from_secs(8), 2.0, 0.1)
        .seed(9)
        .build()
        .unwrap();
    let fallbacks = Arc::new(AtomicU64::new(0));
    let counter = fallbacks.clone();
    let fallback = Fallback::<&'static str, DependencyError>::builder()
        .value("cached row")
        .on_event(move |e| {
            if matches!(e, Event::FallbackUsed { .. }) {
                counter.fetch_add(1, Ordering::Relaxed);
            }
        })
        .build()
        .unwrap();
    let everything = Pipeline::builder()
        .push(fallback)
        .push(Timeout::new(Duration::from_millis(800)))
        .push(retry.clone())
        .push(breaker)
        .push(
            Bulkhead::builder()
                .name("db")
                .max_concurrent(16)
                .queue(16, Duration::from_millis(100))
                .build()
                .unwrap(),
        )
        .push(Timeout::new(Duration::from_millis(250)))
        .build();
    let direct_dep = Dependency::new(10);
    let direct = traffic(&Pipeline::builder().build(), &direct_dep, minute, every).await;
    let guarded_dep = Dependency::new(10);
    let guarded = traffic(&everything, &guarded_dep, minute, every).await;
    direct.line("direct");
    guarded.line("through palisade");
    println!(
        "   Every caller answered ({} from the fallback), none left hanging; dependency load: {} calls direct, {} through palisade.",
        fallbacks.load(Ordering::Relaxed),
        direct_dep.calls.load(Ordering::Relaxed),
        guarded_dep.calls.load(Ordering::Relaxed)
    );
}

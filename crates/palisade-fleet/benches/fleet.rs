//! The fleet rate limit's cost, beside a plain Redis round trip in the same run.
//!
//! A scripted run (criterion times one closure; this needs percentiles of single calls
//! and a throughput under concurrency), against a `redis-server` of its own on a free
//! loopback port:
//!
//! - **latency**: one caller, decisions and `PING`s and `GET`s interleaved (so the three
//!   see the same machine), `LATENCY_CALLS` of each; p50, p99 and p99.9, and the
//!   decision's added latency over `PING` at p50 and p99.
//! - **throughput**: `CONCURRENCY` callers on one runtime thread sharing one
//!   multiplexed connection (their calls pipelined), for `SECONDS`; decisions/s, and the
//!   same for `PING` as the floor.
//! - **breaker open**: a store pointed at a port nobody listens on, its breaker tripped
//!   by three failed calls; `LATENCY_CALLS` decisions (and `PING`s) that answer
//!   `CircuitOpen` at once, p50/p99/p99.9 and the mean (target: ≤ 10 µs).
//!
//! `cargo bench -p palisade-fleet --bench fleet` (env: `LATENCY_CALLS`, default 20000;
//! `SECONDS`, default 3; `CONCURRENCY`, default 256).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use palisade::policy::rate_limit::Quota;
use palisade_fleet::store::StoreBreakerConfig;
use palisade_fleet::{Check, FleetError, FleetLimit, FleetRateLimiter, RedisStore, StoreConfig};
use palisade_testkit::redis::OwnRedis;
use tokio::time::Instant;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn main() {
    // `cargo bench` passes `--bench`; a filter or `--list` from the harness is ignored.
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let Some(redis) = OwnRedis::start() else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(run(&redis));
}

async fn run(redis: &OwnRedis) {
    let calls = env("LATENCY_CALLS", 20_000) as usize;
    let seconds = env("SECONDS", 3);
    let concurrency = env("CONCURRENCY", 256) as usize;
    // A patient timeout: the benchmark measures the cost, not the failure path.
    let config = StoreConfig::new(redis.url()).timeout(Duration::from_secs(1));
    let store = RedisStore::connect(&config).await.expect("connected");
    let limiter = FleetRateLimiter::builder()
        .name("bench")
        .store(store.clone())
        .build()
        .expect("a limiter");
    // Admits nearly every decision (the refusal costs the same script run minus the
    // writes); three limits is the sidecar's route + client + global.
    let global = FleetLimit::new("global", Quota::new(1_000_000.0, 1_000_000)).expect("limit");
    let route = FleetLimit::new("route", Quota::new(1_000_000.0, 1_000_000)).expect("limit");
    let client = FleetLimit::new("client", Quota::new(1_000_000.0, 1_000_000)).expect("limit");
    let ping = redis::cmd("PING");
    let mut get = redis::cmd("GET");
    get.arg("{palisade:bench}:plain");

    // Warm up: the script loaded, the connection's buffers grown.
    for _ in 0..2_000 {
        limiter
            .check(&[Check::global(&global)])
            .await
            .expect("decided");
        store.command(&ping).await.expect("pong");
    }

    let mut one = Vec::with_capacity(calls);
    let mut three = Vec::with_capacity(calls);
    let mut pings = Vec::with_capacity(calls);
    let mut gets = Vec::with_capacity(calls);
    for i in 0..calls {
        let key = format!("c{}", i % 1024);
        let t = Instant::now();
        store.command(&ping).await.expect("pong");
        pings.push(t.elapsed());
        let t = Instant::now();
        limiter
            .check(&[Check::global(&global)])
            .await
            .expect("decided");
        one.push(t.elapsed());
        let t = Instant::now();
        store.command(&get).await.expect("got");
        gets.push(t.elapsed());
        let t = Instant::now();
        limiter
            .check(&[
                Check::global(&route),
                Check::keyed(&client, &key),
                Check::global(&global),
            ])
            .await
            .expect("decided");
        three.push(t.elapsed());
    }
    for v in [&mut one, &mut three, &mut pings, &mut gets] {
        v.sort();
    }
    println!("\n## latency of one call, one caller ({calls} calls each, µs)\n");
    println!("| call | p50 | p99 | p99.9 |");
    println!("|---|---:|---:|---:|");
    for (name, v) in [
        ("PING (floor)", &pings),
        ("GET", &gets),
        ("decision, 1 limit", &one),
        ("decision, 3 limits", &three),
    ] {
        println!(
            "| {name} | {:.1} | {:.1} | {:.1} |",
            micros(percentile(v, 0.5)),
            micros(percentile(v, 0.99)),
            micros(percentile(v, 0.999))
        );
    }
    for (name, v) in [("1 limit", &one), ("3 limits", &three)] {
        println!(
            "ADDED {name}: p50 {:.1} µs, p99 {:.1} µs over PING (targets: p50 ≤ 100, p99 ≤ 500)",
            micros(percentile(v, 0.5)) - micros(percentile(&pings, 0.5)),
            micros(percentile(v, 0.99)) - micros(percentile(&pings, 0.99)),
        );
    }

    println!("\n## throughput, {concurrency} callers pipelined on one connection, {seconds} s\n");
    println!("| call | per second |");
    println!("|---|---:|");
    let run = Duration::from_secs(seconds);
    let floor = throughput(concurrency, run, {
        let store = store.clone();
        move |_| {
            let store = store.clone();
            async move {
                store.command(&redis::cmd("PING")).await.expect("pong");
            }
        }
    })
    .await;
    println!("| PING (floor) | {floor:.0} |");
    let limits = Arc::new([global, route, client]);
    let decided = throughput(concurrency, run, {
        let (limiter, limits) = (limiter.clone(), limits.clone());
        move |_| {
            let (limiter, limits) = (limiter.clone(), limits.clone());
            async move {
                limiter
                    .check(&[Check::global(&limits[0])])
                    .await
                    .expect("decided");
            }
        }
    })
    .await;
    println!("| decision, 1 limit | {decided:.0} |");
    let decided3 = throughput(concurrency, run, {
        let (limiter, limits) = (limiter.clone(), limits.clone());
        move |i| {
            let (limiter, limits) = (limiter.clone(), limits.clone());
            async move {
                let key = format!("c{}", i % 1024);
                limiter
                    .check(&[
                        Check::global(&limits[1]),
                        Check::keyed(&limits[2], &key),
                        Check::global(&limits[0]),
                    ])
                    .await
                    .expect("decided");
            }
        }
    })
    .await;
    println!("| decision, 3 limits | {decided3:.0} |");
    println!("THROUGHPUT 1 limit: {decided:.0} decisions/s (target ≥ 50000)");

    breaker_open(calls).await;
}

/// The cost of a call that the store's open breaker answers: no socket, no timer.
async fn breaker_open(calls: usize) {
    let port = palisade_testkit::free_port();
    // Open for 10 s, so that no probe falls inside the measurement.
    let config =
        StoreConfig::new(format!("redis://127.0.0.1:{port}/")).breaker(StoreBreakerConfig {
            failures: 3,
            open_for: Duration::from_secs(10),
        });
    let store = RedisStore::start(&config).expect("a store");
    let limiter = FleetRateLimiter::builder()
        .name("bench-open")
        .store(store.clone())
        .build()
        .expect("a limiter");
    let global = FleetLimit::new("global", Quota::new(1000.0, 100)).expect("limit");
    let check = [Check::global(&global)];
    while store.is_available() {
        let _ = limiter.check(&check).await;
    }
    let ping = redis::cmd("PING");
    let mut decisions = Vec::with_capacity(calls);
    let mut pings = Vec::with_capacity(calls);
    let total = Instant::now();
    for _ in 0..calls {
        let t = Instant::now();
        let answer = limiter.check(&check).await;
        decisions.push(t.elapsed());
        assert!(
            matches!(answer, Err(FleetError::CircuitOpen { .. })),
            "{answer:?}"
        );
        let t = Instant::now();
        let answer = store.command(&ping).await;
        pings.push(t.elapsed());
        assert!(
            matches!(answer, Err(FleetError::CircuitOpen { .. })),
            "{answer:?}"
        );
    }
    let total = total.elapsed();
    for v in [&mut decisions, &mut pings] {
        v.sort();
    }
    println!("\n## breaker open: a call answered without Redis ({calls} calls each, µs)\n");
    println!("| call | p50 | p99 | p99.9 | mean |");
    println!("|---|---:|---:|---:|---:|");
    for (name, v) in [("decision, 1 limit", &decisions), ("PING", &pings)] {
        let mean = v.iter().sum::<Duration>() / v.len().max(1) as u32;
        println!(
            "| {name} | {:.2} | {:.2} | {:.2} | {:.2} |",
            micros(percentile(v, 0.5)),
            micros(percentile(v, 0.99)),
            micros(percentile(v, 0.999)),
            micros(mean)
        );
    }
    println!(
        "OPEN decision: p50 {:.2} µs, p99 {:.2} µs (target ≤ 10 µs); {:.0} calls/s on one thread",
        micros(percentile(&decisions, 0.5)),
        micros(percentile(&decisions, 0.99)),
        (2 * calls) as f64 / total.as_secs_f64()
    );
}

/// Calls per second of `call`, from `concurrency` callers for `run`.
async fn throughput<F, Fut>(concurrency: usize, run: Duration, call: F) -> f64
where
    F: Fn(u64) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    let start = Instant::now();
    for _ in 0..concurrency {
        let (done, stop, call) = (done.clone(), stop.clone(), call.clone());
        tasks.push(tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                call(i).await;
                i += 1;
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    tokio::time::sleep(run).await;
    stop.store(true, Ordering::Relaxed);
    let elapsed = start.elapsed();
    let count = done.load(Ordering::Relaxed);
    for t in tasks {
        t.await.expect("caller");
    }
    count as f64 / elapsed.as_secs_f64()
}

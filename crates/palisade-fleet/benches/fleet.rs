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
//! - **lease** (the `SharedRateLimit` in lease mode): a decision from a held lease,
//!   global and keyed, beside palisade's local `RateLimiter::check` and
//!   `KeyedRateLimiter::check` in the same run (target: within 2×).
//! - **store_down**: a `SharedRateLimit` decision while the store is down (a
//!   `RedisStore::start` pointed at a port nothing listens on), `local_share`, exact and
//!   lease mode (target: ≤ 10 µs).
//!
//! `cargo bench -p palisade-fleet --bench fleet [-- exact|lease|store_down]` (`exact`:
//! latency, throughput and breaker open; env:
//! `LATENCY_CALLS`, default 20000; `SECONDS`, default 3; `CONCURRENCY`, default 256;
//! `LOCAL_CALLS`, default 1000000).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use palisade::policy::rate_limit::{KeyedRateLimiter, Quota, RateLimiter};
use palisade_fleet::store::StoreBreakerConfig;
use palisade_fleet::{
    Check, FleetError, FleetLimit, FleetRateLimiter, Membership, MembershipConfig, Mode,
    OnStoreDown, RedisStore, SharedRateLimitBuilder, SharedRateLimitConfig, StoreConfig,
};
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
    // `cargo bench` passes `--bench`; `--list` from the harness is ignored; the first
    // other argument picks the sections whose name contains it.
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let wanted = |section: &str| filter.as_deref().is_none_or(|f| section.contains(f));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    if wanted("store_down") {
        runtime.block_on(store_down());
    }
    if !(wanted("exact") || wanted("lease")) {
        return;
    }
    let Some(redis) = OwnRedis::start() else {
        return;
    };
    if wanted("lease") {
        runtime.block_on(lease(&redis));
    }
    if wanted("exact") {
        runtime.block_on(run(&redis));
    }
}

/// The mean time (ns) of one call of `$body` over `$batch` calls (`$i` the call's
/// index), and how many it admitted: a batch's mean keeps the clock's own cost out of
/// calls of tens of nanoseconds. Inline (a macro), so that no call pays for a box or a
/// dynamic call the others do not.
macro_rules! timed_batch {
    ($batch:expr, $i:ident, $body:expr) => {{
        let t = Instant::now();
        let mut admitted = 0usize;
        for $i in 0..$batch {
            admitted += usize::from($body);
        }
        (t.elapsed().as_secs_f64() * 1e9 / $batch as f64, admitted)
    }};
}

fn ns_row(name: &str, means: &mut [f64]) -> f64 {
    means.sort_by(f64::total_cmp);
    let at = |p: f64| means[((means.len() as f64 - 1.0) * p).round() as usize];
    println!(
        "| {name} | {:.1} | {:.1} | {:.1} |",
        at(0.5),
        at(0.9),
        at(0.99)
    );
    at(0.5)
}

/// A lease-mode decision while tokens are held, beside palisade's local limiter.
async fn lease(redis: &OwnRedis) {
    let calls = env("LOCAL_CALLS", 1_000_000) as usize;
    let (batch, batches) = (1_000, (calls / 1_000).max(1));
    let store = RedisStore::connect(&StoreConfig::new(redis.url()).timeout(Duration::from_secs(1)))
        .await
        .expect("connected");
    let membership = Membership::start(store.clone(), "bench-lease", &MembershipConfig::default())
        .expect("membership");
    // Leases of 1,000,000 tokens (a whole burst) kept for 60 s: after the first fetch
    // the decisions are local, a background refresh at every half.
    let config = SharedRateLimitConfig {
        mode: Mode::Lease,
        lease_fraction: 1.0,
        lease_ttl: Duration::from_secs(60),
        ..SharedRateLimitConfig::new("bench-lease", 1_000_000.0, 1_000_000)
    };
    let limit = SharedRateLimitBuilder::from_config(config)
        .store(store)
        .membership(membership)
        .build()
        .expect("a limit");
    let local = RateLimiter::builder()
        .name("bench-local")
        .quota(Quota::new(1e9, 1_000_000))
        .build()
        .expect("a limiter");
    let keyed = KeyedRateLimiter::<String>::builder()
        .name("bench-keyed")
        .quota(Quota::new(1e9, 1_000_000))
        .max_keys(1_024)
        .build()
        .expect("a limiter");
    let keys: Vec<String> = (0..64).map(|i| format!("client-{i}")).collect();
    // Warm: the first fetch of each lease, the script loaded.
    for key in &keys {
        assert!(limit.acquire(Some(key)).await.is_admitted());
    }
    assert!(limit.acquire(None).await.is_admitted());
    let _ = local.check();

    println!(
        "\n## a decision from a held lease vs the local limiter ({batches} batches of {batch} each, interleaved, ns per call)\n"
    );
    println!("| call | p50 | p90 | p99 |");
    println!("|---|---:|---:|---:|");
    // The four calls' batches interleaved, so that all see the same machine; the
    // runtime runs its other tasks (a lease's background refresh) between rounds, as a
    // server would.
    let mut means: Vec<Vec<f64>> = (0..4).map(|_| Vec::with_capacity(batches)).collect();
    let mut admitted = [0usize; 4];
    for _ in 0..batches {
        let rounds = [
            timed_batch!(batch, _i, local.check().is_ok()),
            timed_batch!(batch, _i, limit.acquire(None).await.is_admitted()),
            timed_batch!(batch, i, keyed.check(&keys[i % keys.len()]).is_ok()),
            timed_batch!(
                batch,
                i,
                limit
                    .acquire(Some(keys[i % keys.len()].as_str()))
                    .await
                    .is_admitted()
            ),
        ];
        for (c, (mean, n)) in rounds.into_iter().enumerate() {
            means[c].push(mean);
            admitted[c] += n;
        }
        tokio::task::yield_now().await;
    }
    assert!(
        admitted.iter().all(|n| *n > 0),
        "nothing admitted: not the path meant"
    );
    let l = ns_row("palisade RateLimiter::check", &mut means[0]);
    let g = ns_row("lease mode, acquire(None)", &mut means[1]);
    let kl = ns_row("palisade KeyedRateLimiter::check (64 keys)", &mut means[2]);
    let k = ns_row("lease mode, acquire(Some(key)) (64 keys)", &mut means[3]);
    println!(
        "LEASE global: {:.2}× RateLimiter::check; keyed: {:.2}× KeyedRateLimiter::check (target ≤ 2×)",
        g / l,
        k / kl
    );
}

/// A decision while the store is down, `local_share`.
async fn store_down() {
    let calls = env("LOCAL_CALLS", 1_000_000) as usize / 10;
    let port = palisade_testkit::free_port();
    let store = RedisStore::start(&StoreConfig::new(format!("redis://127.0.0.1:{port}/")))
        .expect("a store");
    let membership = Membership::start(store.clone(), "bench-down", &MembershipConfig::default())
        .expect("membership");
    let build = |mode: Mode| {
        let config = SharedRateLimitConfig {
            mode,
            on_store_down: OnStoreDown::LocalShare,
            ..SharedRateLimitConfig::new("bench-down", 1_000_000.0, 1_000_000)
        };
        SharedRateLimitBuilder::from_config(config)
            .store(store.clone())
            .membership(membership.clone())
            .build()
            .expect("a limit")
    };
    println!("\n## a decision with the store down, local_share ({calls} single calls each, µs)\n");
    println!("| call | mean | p50 | p99 | p99.9 |");
    println!("|---|---:|---:|---:|---:|");
    let mut worst_p99 = 0.0f64;
    for (name, mode, keyed) in [
        ("exact, acquire(None)", Mode::Exact, false),
        ("exact, acquire(Some(key))", Mode::Exact, true),
        ("lease, acquire(None)", Mode::Lease, false),
        ("lease, acquire(Some(key))", Mode::Lease, true),
    ] {
        let limit = build(mode);
        let keys: Vec<String> = (0..64).map(|i| format!("client-{i}")).collect();
        let mut times = Vec::with_capacity(calls);
        let total = Instant::now();
        for i in 0..calls {
            let key = keyed.then(|| keys[i % keys.len()].as_str());
            let t = Instant::now();
            let admit = limit.acquire(key).await;
            times.push(t.elapsed());
            assert_eq!(admit.counting(), palisade_fleet::Counting::LocalShare);
        }
        let mean = micros(total.elapsed()) / calls as f64;
        times.sort();
        let p99 = micros(percentile(&times, 0.99));
        worst_p99 = worst_p99.max(p99);
        println!(
            "| {name} | {mean:.2} | {:.2} | {p99:.2} | {:.2} |",
            micros(percentile(&times, 0.5)),
            micros(percentile(&times, 0.999))
        );
    }
    println!("STORE DOWN: worst p99 {worst_p99:.2} µs (target ≤ 10)");
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

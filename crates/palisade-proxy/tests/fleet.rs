//! Fleet-scoped limits, black-box: real sidecars sharing a real `redis-server` of the
//! test's own (skipped loudly without one, a failure when `CI` is set), reached directly
//! or through `palisade toxic` when the test makes Redis slow.
//!
//! - Three sidecars, their clocks skewed by −5 s, 0 and +5 s (faketime), share one rate
//!   limit: exact while Redis answers; while it is slow no request waits longer than
//!   the Redis timeout; while it is down each enforces its share and the fleet stays
//!   ≤ 1.05 × the limit, with no request failing because of Redis; back on shared
//!   counting within 1 s of Redis answering again.
//! - Five sidecars share one retry budget: against an upstream failing every request,
//!   the fleet's retries stay under one floor, not five.
//! - Two sidecars share one limit through a 3-node Redis Cluster (`redis = [nodes]`).

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use palisade_testkit::redis::{OwnRedis, OwnRedisCluster};
use serde_json::{Value, json};
use tokio::sync::Mutex;
use tokio::time::{Instant, sleep};

use support::*;

/// Debian's libfaketime (package `faketime`), preloaded to skew a sidecar's clock.
const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1";

/// The fleet limit every sidecar of the first test shares.
const PER_SECOND: f64 = 40.0;
const BURST: f64 = 4.0;

/// The Redis timeout of the tests: above a debug build's round trip on a busy two-core
/// machine (the default 5 ms is for release builds), far below the 200 ms of slowness
/// injected.
const REDIS_TIMEOUT_MS: u64 = 25;

/// `[fleet]` through `redis` (a `host:port`), with quick heartbeats.
fn fleet_section(redis: &str) -> String {
    format!(
        r#"
[fleet]
redis = "redis://{redis}/"
timeout = "{REDIS_TIMEOUT_MS}ms"
heartbeat = "200ms"
heartbeat_expiry = "600ms"
"#
    )
}

fn limited_config(redis: &str, up: &Upstream) -> String {
    format!(
        r#"{fleet}
[[upstream]]
name = "api"
endpoints = [{endpoints}]
[upstream.rate_limit]
scope = "fleet"
per_second = {PER_SECOND}
burst = {BURST}

[[route]]
path_prefix = "/api"
upstream = "api"
"#,
        fleet = fleet_section(redis),
        endpoints = list(&[up])
    )
}

/// What a phase of load saw.
#[derive(Default)]
struct Seen {
    /// Answers by status and `x-palisade-reason`.
    answers: std::collections::BTreeMap<(u16, String), usize>,
    /// Every answer's time.
    elapsed: Vec<Duration>,
}

impl Seen {
    fn statuses_other_than(&self, allowed: &[(u16, &str)]) -> Vec<String> {
        self.answers
            .iter()
            .filter(|((status, reason), _)| !allowed.contains(&(*status, reason.as_str())))
            .map(|((status, reason), n)| format!("{n} × {status} {reason}"))
            .collect()
    }

    fn percentile(&mut self, p: f64) -> Duration {
        self.elapsed.sort();
        let i = ((self.elapsed.len() as f64 - 1.0) * p).round() as usize;
        self.elapsed.get(i).copied().unwrap_or_default()
    }
}

/// Load on every proxy from `callers` callers each, one request per `every`, until
/// `stop` is set; what they saw goes to `seen`.
fn load(
    proxies: &[Arc<Proxy>],
    callers: usize,
    every: Duration,
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Seen>>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = Vec::new();
    for proxy in proxies {
        for _ in 0..callers {
            let (proxy, stop, seen) = (proxy.clone(), stop.clone(), seen.clone());
            tasks.push(tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let r = proxy.get("/api/x").await;
                    let mut seen = seen.lock().await;
                    let reason = r.reason().unwrap_or("").to_owned();
                    *seen.answers.entry((r.status, reason)).or_default() += 1;
                    seen.elapsed.push(r.elapsed);
                    drop(seen);
                    sleep(every).await;
                }
            }));
        }
    }
    tasks
}

/// Runs the load for `length`; the upstream's requests in that time, the time, and what
/// the callers saw.
async fn phase(proxies: &[Arc<Proxy>], up: &Upstream, length: Duration) -> (usize, f64, Seen) {
    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(Seen::default()));
    let before = up.count();
    let start = Instant::now();
    let tasks = load(proxies, 6, ms(25), stop.clone(), seen.clone());
    sleep(length).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.expect("a caller");
    }
    let took = start.elapsed().as_secs_f64();
    let admitted = up.count() - before;
    let seen = std::mem::take(&mut *seen.lock().await);
    (admitted, took, seen)
}

/// The fleet part of `/admin/state` for upstream `api`.
async fn fleet_state(proxy: &Proxy) -> Value {
    let state = proxy.state().await;
    state["upstreams"]
        .as_array()
        .and_then(|u| u.iter().find(|u| u["name"] == "api"))
        .map(|u| u["fleet"].clone())
        .unwrap_or(Value::Null)
}

async fn countings(proxies: &[Arc<Proxy>]) -> Vec<String> {
    let mut out = Vec::new();
    for p in proxies {
        let state = fleet_state(p).await;
        out.push(
            state["rate_limit"]["counting"]
                .as_str()
                .unwrap_or("?")
                .to_owned(),
        );
    }
    out
}

/// Three sidecars sharing the `api` limit through Redis at `redis` (`host:port`), the
/// first and last with their clocks skewed by −5 s and +5 s when libfaketime is there;
/// warmed up.
async fn three_sidecars(redis: &str, up: &Upstream) -> Vec<Arc<Proxy>> {
    let skewed = installed("faketime", "faketime") && std::path::Path::new(LIBFAKETIME).exists();
    let mut proxies = Vec::new();
    for skew in ["-5s", "", "+5s"] {
        let env = if skewed && !skew.is_empty() {
            vec![
                ("LD_PRELOAD".to_owned(), LIBFAKETIME.to_owned()),
                ("FAKETIME".to_owned(), skew.to_owned()),
            ]
        } else {
            Vec::new()
        };
        let sections = Sections {
            env,
            ..Sections::default()
        };
        let config = limited_config(redis, up);
        proxies.push(Arc::new(Proxy::start_with(&sections, &config).await));
    }
    eventually("three live sidecars counted", secs(5), async || {
        let state = fleet_state(&proxies[0]).await;
        (state["rate_limit"]["live_instances"] == 3).then_some(())
    })
    .await;
    // Warm up (connections, the script loaded), then wait for the burst to refill.
    let _ = phase(&proxies, up, ms(500)).await;
    sleep(secs(1)).await;
    proxies
}

/// Four seconds of load while every sidecar counts on Redis: the fleet admits what one
/// limit does (`rate × t + burst`, exactly), without starving, every refusal
/// `fleet-rate-limited`, every sidecar counting `shared`.
async fn shared_phase(proxies: &[Arc<Proxy>], up: &Upstream, label: &str) {
    let (admitted, t, seen) = phase(proxies, up, secs(4)).await;
    let bound = PER_SECOND * t + BURST;
    println!(
        "{label}: {admitted} admitted in {t:.2}s; bound {bound:.0}; {:?}",
        seen.answers
    );
    assert!(
        admitted as f64 <= bound + 1.0,
        "{label}: {admitted} > {bound:.0} (exact)"
    );
    assert!(
        admitted as f64 >= 0.85 * PER_SECOND * t,
        "{admitted} admitted: the limit was not shared but starved"
    );
    let odd = seen.statuses_other_than(&[(200, ""), (429, "fleet-rate-limited")]);
    assert!(odd.is_empty(), "answers other than 200 or 429: {odd:?}");
    assert!(
        countings(proxies).await.iter().all(|c| c == "shared"),
        "{:?}",
        countings(proxies).await
    );
}

/// `host:port` of `redis`.
fn address(redis: &OwnRedis) -> String {
    redis
        .url()
        .trim_start_matches("redis://")
        .trim_end_matches('/')
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_skewed_sidecars_share_one_limit_and_outlive_its_outage() {
    let Some(redis) = OwnRedis::start() else {
        return;
    };
    let up = Upstream::start("api", Behaviour::Ok).await;
    let proxies = three_sidecars(&address(&redis), &up).await;

    // Shared: the fleet admits what one limit does, over every sidecar, whatever their
    // clocks say.
    shared_phase(&proxies, &up, "shared").await;

    // Down: each sidecar enforces its third; nothing fails because of Redis.
    redis.stop();
    let (admitted, t, seen) = phase(&proxies, &up, secs(4)).await;
    println!(
        "redis down: {admitted} admitted in {t:.2}s; {:?}",
        seen.answers
    );
    let odd = seen.statuses_other_than(&[
        (200, ""),
        (429, "fleet-rate-limited"),
        (429, "fleet-local-share-rate-limited"),
    ]);
    assert!(odd.is_empty(), "requests failed because Redis did: {odd:?}");
    assert!(
        admitted as f64 <= 1.05 * PER_SECOND * t + 3.0,
        "{admitted} admitted in {t:.2}s while Redis was down: over 1.05 × the limit"
    );
    assert!(
        admitted as f64 >= 0.8 * PER_SECOND * t,
        "{admitted} admitted in {t:.2}s: the shares starved the fleet"
    );
    assert_eq!(countings(&proxies).await, ["local_share"; 3]);
    // The mode in use, in the metrics too.
    let m = proxies[1].metrics().await;
    let using = |counting| {
        sum(
            &m,
            "palisade_fleet_counting",
            &[("policy", "api"), ("counting", counting)],
        )
    };
    assert_eq!((using("local_share"), using("shared")), (1.0, 0.0));
    assert!(
        sum(
            &m,
            "palisade_rate_limit_decisions_total",
            &[("policy", "api"), ("counting", "local_share")]
        ) > 0.0
    );

    // Back: shared counting again within 1 s of Redis answering.
    shared_again_within_a_second(&proxies, async || redis.start_again()).await;
}

/// Under a light load, runs `mend` (Redis answers promptly again) and asserts that every
/// sidecar counts shared again within 1 s of it, polled every 20 ms.
async fn shared_again_within_a_second(proxies: &[Arc<Proxy>], mend: impl AsyncFnOnce()) {
    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(Seen::default()));
    let tasks = load(proxies, 6, ms(25), stop.clone(), seen.clone());
    mend().await;
    let answering = Instant::now();
    let mut shared_after = None;
    while answering.elapsed() < secs(3) {
        if countings(proxies).await == ["shared"; 3] {
            shared_after = Some(answering.elapsed());
            break;
        }
        sleep(ms(20)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.expect("a caller");
    }
    println!("shared again after {shared_after:?}");
    let shared_after = shared_after.expect("shared counting within 3 s of Redis answering");
    assert!(
        shared_after <= Duration::from_millis(1000),
        "shared again only after {shared_after:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_redis_never_holds_a_request_longer_than_its_timeout() {
    let Some(redis) = OwnRedis::start() else {
        return;
    };
    let toxic = Toxic::start().await;
    let front = toxic
        .proxy("redis", address(&redis).parse().expect("an address"))
        .await;
    let up = Upstream::start("api", Behaviour::Ok).await;
    let proxies = three_sidecars(&front.to_string(), &up).await;

    // Slow: every Redis call takes 200 ms; a request waits at most the Redis timeout
    // (then its sidecar's share decides it).
    toxic
        .toxic(
            "redis",
            json!({"type": "latency", "name": "slow", "attributes": {"latency": 200}}),
        )
        .await;
    let (admitted, t, mut seen) = phase(&proxies, &up, secs(3)).await;
    let (p50, p99, max) = (
        seen.percentile(0.5),
        seen.percentile(0.99),
        seen.percentile(1.0),
    );
    println!("slow redis: {admitted} admitted in {t:.2}s; p50 {p50:?} p99 {p99:?} max {max:?}");
    assert!(
        max < ms(100),
        "a request waited {max:?} with Redis 200 ms slow: more than the Redis timeout allows"
    );
    let odd = seen.statuses_other_than(&[
        (200, ""),
        (429, "fleet-rate-limited"),
        (429, "fleet-local-share-rate-limited"),
    ]);
    assert!(odd.is_empty(), "answers other than 200 or 429: {odd:?}");
    assert!(
        admitted as f64 <= 1.05 * PER_SECOND * t + 3.0 * BURST,
        "{admitted} admitted in {t:.2}s with Redis slow"
    );
    shared_again_within_a_second(&proxies, async || {
        toxic
            .call("DELETE", "/proxies/redis/toxics/slow", Value::Null)
            .await;
    })
    .await;
}

/// `[upstream.retry]` with a fleet budget of one floor of `floor` retries per second.
fn retrying_config(redis: &str, up: &Upstream, floor: u32) -> String {
    format!(
        r#"{fleet}
[[upstream]]
name = "api"
endpoints = [{endpoints}]
[upstream.retry]
max_attempts = 3
base = "1ms"
max_delay = "2ms"
on = ["503"]
budget = {{ ratio = 0.1, min_per_second = {floor}, window = "10s", scope = "fleet" }}
[upstream.circuit_breaker]
scope = "upstream"
window = "consecutive"
size = 100000

[[route]]
path_prefix = "/api"
upstream = "api"
"#,
        fleet = fleet_section(redis),
        endpoints = list(&[up])
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_sidecars_share_one_retry_budget() {
    let Some(redis) = OwnRedis::start() else {
        return;
    };
    let redis_addr = address(&redis);
    let up = Upstream::start("api", Behaviour::Status(503)).await;
    let floor = 3;
    let mut proxies = Vec::new();
    for _ in 0..5 {
        let config = retrying_config(&redis_addr, &up, floor);
        proxies.push(Arc::new(Proxy::start(&config).await));
    }
    // Low traffic: 2 requests per second per sidecar, each wanting two retries, for
    // less than the budget's window (so its reserve counts once).
    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(Seen::default()));
    let start = Instant::now();
    let tasks = load(&proxies, 1, ms(500), stop.clone(), seen.clone());
    sleep(secs(9)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.expect("a caller");
    }
    let t = start.elapsed().as_secs_f64();
    let requests: usize = seen.lock().await.answers.values().sum();
    let retries = up.count() - requests;
    // One floor for the fleet: the reserve of a window (min_per_second × window, here
    // the whole run) plus the ratio of the requests, plus one grant held per sidecar.
    let bound = f64::from(floor) * 10.0 + 0.1 * requests as f64;
    let five_floors = 5.0 * f64::from(floor) * 10.0;
    println!(
        "{requests} requests, {retries} retries in {t:.1}s; fleet bound {bound:.0}, five instance budgets would allow {five_floors:.0}"
    );
    assert!(
        retries as f64 <= bound * 1.05 + 5.0,
        "{retries} retries > {bound:.0} + 5%: the floor was counted per sidecar"
    );
    assert!(
        retries as f64 >= 0.5 * bound,
        "{retries} retries: the budget was not spent"
    );
    let state = fleet_state(&proxies[0]).await;
    assert_eq!(state["retry_budget"]["counting"], "shared", "{state}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sidecar_starts_while_redis_is_unreachable_and_serves_on_its_share() {
    let up = Upstream::start("api", Behaviour::Ok).await;
    let config = limited_config(&dead_addr().to_string(), &up);
    // Starting is not refused: the sidecar is live, says why it counts alone, and
    // decides by its share (alone: the whole limit).
    let proxy = Proxy::start(&config).await;
    let r = proxy.get("/api/x").await;
    assert_eq!(r.status, 200, "{r:?}");
    eventually("local_share counting", secs(5), async || {
        let state = fleet_state(&proxy).await;
        (state["rate_limit"]["counting"] == "local_share").then_some(())
    })
    .await;
    let mut limited = None;
    for _ in 0..20 {
        let r = proxy.get("/api/x").await;
        if r.status == 429 {
            limited = Some(r);
            break;
        }
    }
    let limited = limited.expect("the share limits: 40/s with a burst of 4");
    assert_eq!(limited.reason(), Some("fleet-local-share-rate-limited"));
    assert!(limited.header("retry-after").is_some(), "{limited:?}");
    let log = proxy.log();
    assert!(
        log.contains("WARN") && log.contains("redis"),
        "no warning about Redis in the log:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_sidecars_share_one_limit_through_a_redis_cluster() {
    let Some(cluster) = OwnRedisCluster::start() else {
        return;
    };
    let up = Upstream::start("api", Behaviour::Ok).await;
    let nodes: Vec<String> = cluster.urls().iter().map(|u| format!("{u:?}")).collect();
    // The single-server config, its `redis` a list of the cluster's nodes.
    let one_server = limited_config("127.0.0.1:1", &up);
    let config = one_server.replace(
        r#"redis = "redis://127.0.0.1:1/""#,
        &format!("redis = [{}]", nodes.join(", ")),
    );
    assert_ne!(config, one_server, "the config names the cluster's nodes");
    let mut proxies = Vec::new();
    for _ in 0..2 {
        proxies.push(Arc::new(Proxy::start(&config).await));
    }
    eventually("two live sidecars counted", secs(5), async || {
        let state = fleet_state(&proxies[0]).await;
        (state["rate_limit"]["live_instances"] == 2).then_some(())
    })
    .await;
    let _ = phase(&proxies, &up, ms(500)).await;
    sleep(secs(1)).await;

    shared_phase(&proxies, &up, "cluster").await;
    // The limit's keys live on the cluster's nodes (one slot: hash-tagged).
    let keys: usize = cluster
        .ports()
        .iter()
        .map(|p| {
            cluster
                .cli(*p, &["DBSIZE"])
                .trim()
                .parse::<usize>()
                .unwrap_or(0)
        })
        .sum();
    assert!(keys > 0, "no key on any node of the cluster");
}

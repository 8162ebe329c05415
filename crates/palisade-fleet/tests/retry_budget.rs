//! The fleet retry budget against a real `redis-server` of the test's own (skipped
//! loudly without one, a failure when `CI` is set): five instances — each its own
//! connection, membership and budget, as processes would have — retrying an upstream
//! that always fails stay under one fleet floor; a hedge spends the same budget; an
//! outage falls back to local shares of the floor and comes back.
//!
//! Real time throughout (a real server's clock decides); figures are printed, run with
//! `--nocapture` to see them.

mod support;

use std::future::ready;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use palisade::Policy;
use palisade::policy::hedge::Hedge;
use palisade::policy::retry::{BackoffKind, Jitter, Retry};
use palisade_fleet::retry_budget::{LOCAL_SHARE, SHARED};
use palisade_fleet::{
    FleetRetryBudget, FleetRetryBudgetConfig, Membership, MembershipConfig, RedisStore, StoreConfig,
};
use palisade_testkit::redis::OwnRedis;
use redis::Value;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use support::*;

/// The default settings: ratio 0.2, ONE floor of 10/s over a 10 s window, a grant of 1,
/// a flush every 100 ms.
fn defaults() -> FleetRetryBudgetConfig {
    FleetRetryBudgetConfig::default()
}

/// A generous per-call timeout (the machine is shared and busy).
const PATIENT: Duration = Duration::from_millis(200);

async fn store(redis: &OwnRedis) -> RedisStore {
    RedisStore::connect(&StoreConfig::new(redis.url()).timeout(PATIENT))
        .await
        .unwrap()
}

/// One instance of the service: its own connection, membership and budget.
struct Instance {
    store: RedisStore,
    membership: Membership,
    fleet: FleetRetryBudget,
}

async fn instance(redis: &OwnRedis, scope: &str, config: &FleetRetryBudgetConfig) -> Instance {
    let store = store(redis).await;
    let quick = MembershipConfig {
        interval: Duration::from_millis(100),
        expire_after: Duration::from_millis(300),
    };
    let membership = Membership::start(store.clone(), scope, &quick).unwrap();
    let fleet = FleetRetryBudget::start(store.clone(), membership.clone(), scope, config).unwrap();
    Instance {
        store,
        membership,
        fleet,
    }
}

async fn fleet_of(n: usize, redis: &OwnRedis, scope: &str) -> Vec<Instance> {
    let mut fleet = Vec::new();
    for _ in 0..n {
        fleet.push(instance(redis, scope, &defaults()).await);
    }
    let count = u32::try_from(n).unwrap();
    until(
        "every instance counts the fleet",
        Duration::from_secs(5),
        || fleet.iter().all(|i| i.membership.live_instances() == count),
    )
    .await;
    until(
        "every instance holds its grant",
        Duration::from_secs(5),
        || fleet.iter().all(|i| i.fleet.budget().available() > 0),
    )
    .await;
    fleet
}

/// Waits (real time) until `done`, at most `limit`; returns how long it took.
async fn until(what: &str, limit: Duration, done: impl Fn() -> bool) -> Duration {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    start.elapsed()
}

/// A retry policy as a service would use: 3 attempts, a 10 ms backoff, the fleet's budget.
fn retry(fleet: &FleetRetryBudget) -> Retry {
    Retry::builder()
        .max_attempts(3)
        .backoff(
            BackoffKind::Constant,
            Duration::from_millis(10),
            Duration::from_millis(10),
        )
        .jitter(Jitter::None)
        .budget(fleet.budget())
        .build()
        .unwrap()
}

/// Calls made and retries sent, fleet-wide.
#[derive(Default)]
struct Tally {
    calls: AtomicU64,
    retries: AtomicU64,
}

impl Tally {
    fn read(&self) -> (u64, u64) {
        (
            self.calls.load(Ordering::SeqCst),
            self.retries.load(Ordering::SeqCst),
        )
    }
}

/// Calls an upstream that always fails through `retry`, `per_second` times a second
/// after `offset`, until `stop`; waits for the calls in flight before returning.
fn drive(
    retry: Retry,
    tally: Arc<Tally>,
    per_second: u32,
    offset: Duration,
    stop: Arc<AtomicBool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let period = Duration::from_secs(1) / per_second;
        let mut ticks = tokio::time::interval_at(Instant::now() + offset, period);
        let mut calls = tokio::task::JoinSet::new();
        loop {
            ticks.tick().await;
            if stop.load(Ordering::SeqCst) {
                break;
            }
            let (retry, tally) = (retry.clone(), tally.clone());
            calls.spawn(async move {
                tally.calls.fetch_add(1, Ordering::SeqCst);
                let attempt = AtomicU32::new(0);
                let answer = retry
                    .call(|| {
                        if attempt.fetch_add(1, Ordering::SeqCst) > 0 {
                            tally.retries.fetch_add(1, Ordering::SeqCst);
                        }
                        ready(Err::<(), _>("upstream down"))
                    })
                    .await;
                assert!(answer.is_err());
            });
        }
        while calls.join_next().await.is_some() {}
    })
}

/// Starts every instance's traffic, phases spread over one period.
fn drive_all(
    fleet: &[Instance],
    tally: &Arc<Tally>,
    per_second: u32,
    stop: &Arc<AtomicBool>,
) -> Vec<JoinHandle<()>> {
    let period = Duration::from_secs(1) / per_second;
    fleet
        .iter()
        .enumerate()
        .map(|(i, instance)| {
            let offset = period * u32::try_from(i).unwrap() / u32::try_from(fleet.len()).unwrap();
            drive(
                retry(&instance.fleet),
                tally.clone(),
                per_second,
                offset,
                stop.clone(),
            )
        })
        .collect()
}

async fn stop_all(stop: &AtomicBool, drivers: Vec<JoinHandle<()>>) {
    stop.store(true, Ordering::SeqCst);
    for d in drivers {
        d.await.unwrap();
    }
}

/// The ledger's fields, as (name, count).
async fn fields(store: &RedisStore, key: &str) -> Vec<(String, i64)> {
    let Value::Array(flat) = query(store, &["HGETALL", key]).await else {
        panic!("HGETALL")
    };
    let text = |v: &Value| match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).unwrap(),
        other => panic!("{other:?}"),
    };
    flat.chunks(2)
        .map(|pair| (text(&pair[0]), text(&pair[1]).parse().unwrap()))
        .collect()
}

/// The bound of docs/FLEET.md over one window, with 5% for the rounding of a real run:
/// `(ratio × calls + min_per_second × window) × 1.05 + live × grant`.
fn bound(config: &FleetRetryBudgetConfig, calls: u64, live: u64) -> f64 {
    let floor = f64::from(config.min_per_second) * config.window.as_secs_f64();
    (config.ratio * calls as f64 + floor) * 1.05 + (live * u64::from(config.grant)) as f64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_instances_retry_under_one_fleet_floor() {
    let Some(redis) = OwnRedis::start() else {
        return;
    };
    let config = defaults();
    let fleet = fleet_of(5, &redis, "upstream-a").await;
    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    // 4 calls/s per instance for 9 s: the run fits in one window of the server's whole
    // seconds (10), so the bound is one window's.
    let started = Instant::now();
    let drivers = drive_all(&fleet, &tally, 4, &stop);
    tokio::time::sleep(Duration::from_secs(9)).await;
    stop_all(&stop, drivers).await;
    let t = started.elapsed().as_secs_f64();
    let (calls, retries) = tally.read();

    let bound = bound(&config, calls, 5);
    let floor = f64::from(config.min_per_second) * config.window.as_secs_f64();
    // Five local budgets would each have had the floor: every retry wanted (2 a call)
    // up to 5 × floor + ratio × calls.
    let wanted = 2 * calls;
    let local_allowance = (wanted as f64).min(5.0 * floor + config.ratio * calls as f64);
    let ledger = fields(&fleet[0].store, fleet[0].fleet.key()).await;
    let sum = |kind: &str| -> i64 {
        ledger
            .iter()
            .filter(|(f, _)| f.starts_with(kind))
            .map(|(_, n)| n)
            .sum()
    };
    eprintln!(
        "five instances, {t:.2} s: {calls} calls, {retries} retries of {wanted} wanted; \
         bound {bound:.1}; five local budgets would allow {local_allowance:.0}; \
         the ledger now holds {} fields, deposits {}, withdrawals {}",
        ledger.len(),
        sum("d:"),
        sum("w:"),
    );
    assert!((170..=190).contains(&calls), "{calls} calls in {t:.2} s");
    assert!(
        retries as f64 <= bound,
        "{retries} retries > bound {bound:.1}"
    );
    // The budget is usable, not just refusing: the fleet got at least its floor.
    assert!(
        retries as f64 >= 0.9 * floor,
        "{retries} retries: the floor of {floor} was not reachable"
    );
    // And one floor, not five: well below what five local budgets let through.
    assert!(
        (retries as f64) < 0.5 * local_allowance,
        "{retries} retries, five local budgets: {local_allowance}"
    );
    assert!(ledger.len() <= 20, "at most 2 × window fields");
    for i in &fleet {
        assert_eq!(i.fleet.counting(), SHARED);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hedge_spends_the_fleet_budget() {
    let Some(redis) = OwnRedis::start() else {
        return;
    };
    // No ratio: the fleet has its floor only, 1/s × 10 s = 10 tokens.
    let config = FleetRetryBudgetConfig {
        ratio: 0.0,
        min_per_second: 1,
        ..defaults()
    };
    let a = instance(&redis, "upstream-h", &config).await;
    let b = instance(&redis, "upstream-h", &config).await;
    until("both hold a grant", Duration::from_secs(5), || {
        a.fleet.budget().available() > 0 && b.fleet.budget().available() > 0
    })
    .await;

    // Instance a hedges every call: the first attempt hangs 200 ms, the hedge answers.
    let hedge = Hedge::builder()
        .delay(Duration::from_millis(20))
        .learn(false)
        .max_extra_load(1.0)
        .budget(a.fleet.budget())
        .build()
        .unwrap();
    let mut hedges = 0;
    for _ in 0..20 {
        let sent = AtomicU32::new(0);
        let answer = hedge
            .call_idempotent(|| {
                let n = sent.fetch_add(1, Ordering::SeqCst);
                async move {
                    if n == 0 {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                    Ok::<_, std::io::Error>(n)
                }
            })
            .await;
        assert!(answer.is_ok());
        hedges += sent.load(Ordering::SeqCst) - 1;
        // Time for a refill to arrive, as traffic would leave.
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    // Instance b's retries find the fleet's budget spent by a's hedges.
    let retry = retry(&b.fleet);
    let mut retries = 0;
    for _ in 0..10 {
        let attempts = AtomicU32::new(0);
        let answer = retry
            .call(|| {
                attempts.fetch_add(1, Ordering::SeqCst);
                ready(Err::<(), _>("upstream down"))
            })
            .await;
        assert!(answer.is_err());
        retries += attempts.load(Ordering::SeqCst) - 1;
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    eprintln!(
        "hedges by a: {hedges}; retries by b after them: {retries} (fleet floor 10, grant 1 each)"
    );
    let spent = f64::from(hedges + retries);
    assert!(spent <= 10.0 + 2.0, "{hedges} hedges + {retries} retries");
    assert!(hedges >= 8, "the hedges took the fleet's budget: {hedges}");
    assert!(
        retries <= 2,
        "b retried {retries} times from a spent budget"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_falls_back_to_local_shares_and_comes_back() {
    let Some(redis) = OwnRedis::start() else {
        return;
    };
    let config = defaults();
    let fleet = fleet_of(5, &redis, "upstream-o").await;
    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let drivers = drive_all(&fleet, &tally, 4, &stop);
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Redis dies: every instance counts on its share (10 ÷ 5 = 2/s) within a flush and a
    // timeout.
    redis.stop();
    let (calls_before, retries_before) = tally.read();
    let switched = until(
        "every instance on its local share",
        Duration::from_secs(2),
        || fleet.iter().all(|i| i.fleet.counting() == LOCAL_SHARE),
    )
    .await;
    // 5 s of outage: within one window.
    tokio::time::sleep(Duration::from_secs(5) - switched).await;
    let (calls_after, retries_after) = tally.read();
    let (calls, retries) = (calls_after - calls_before, retries_after - retries_before);
    let bound = bound(&config, calls, 5);
    let floor = f64::from(config.min_per_second) * config.window.as_secs_f64();
    eprintln!(
        "outage: switched in {switched:?}; 5 s: {calls} calls, {retries} retries of {} wanted; \
         bound {bound:.1}; five full floors would allow {:.0}",
        2 * calls,
        5.0 * floor + config.ratio * calls as f64,
    );
    assert!(
        switched <= Duration::from_secs(1),
        "switched in {switched:?}"
    );
    assert!(
        retries as f64 <= bound,
        "{retries} retries in the outage > bound {bound:.1}"
    );
    assert!(
        retries as f64 >= 0.5 * floor,
        "{retries} retries: the local shares did not let the floor through"
    );

    // Redis answers again (empty: it keeps nothing on disk): back to shared within 1 s.
    redis.start_again();
    let back = until(
        "every instance shared again",
        Duration::from_secs(5),
        || fleet.iter().all(|i| i.fleet.counting() == SHARED),
    )
    .await;
    eprintln!("back to shared in {back:?}");
    assert!(back <= Duration::from_secs(1), "back in {back:?}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop_all(&stop, drivers).await;
    for i in &fleet {
        assert_eq!(i.fleet.counting(), SHARED);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ledger_is_one_small_hash_that_expires_when_no_one_counts() {
    let Some(redis) = OwnRedis::start() else {
        return;
    };
    let config = FleetRetryBudgetConfig {
        window: Duration::from_secs(2),
        min_per_second: 5,
        ratio: 0.5,
        ..defaults()
    };
    let one = instance(&redis, "small", &config).await;
    let key = one.fleet.key().to_owned();
    assert_eq!(key, "{palisade:small}:rb");
    let budget = one.fleet.budget();
    let observer = store(&redis).await;
    // A field that is not ours is dropped at the next exchange.
    query(&observer, &["HSET", &key, "junk", "x"]).await;
    let deadline = Instant::now() + Duration::from_secs(4);
    let mut most = 0;
    while Instant::now() < deadline {
        for _ in 0..10 {
            budget.deposit();
        }
        budget.try_withdraw();
        tokio::time::sleep(Duration::from_millis(100)).await;
        most = most.max(fields(&observer, &key).await.len());
        let ttl = int(&query(&observer, &["PTTL", &key]).await);
        assert!((0..=3_000).contains(&ttl), "PTTL {ttl}");
    }
    eprintln!("at most {most} fields over 4 s of a 2 s window");
    assert!(most <= 4, "{most} fields: more than 2 × window");
    assert_eq!(
        int(&query(&observer, &["HEXISTS", &key, "junk"]).await),
        0,
        "a foreign field is dropped"
    );

    // The last handle gone, the task stops refreshing the key: it expires.
    drop((one, budget));
    let start = Instant::now();
    while int(&query(&observer, &["EXISTS", &key]).await) == 1 {
        assert!(
            start.elapsed() < Duration::from_secs(4),
            "the key is still refreshed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "expired {:?} after the last handle dropped",
        start.elapsed()
    );
    assert!(
        start.elapsed() >= Duration::from_secs(2),
        "expired before window + 1 s"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_of_another_type_is_malformed_and_never_a_grant() {
    let Some(redis) = OwnRedis::start() else {
        return;
    };
    let observer = store(&redis).await;
    query(&observer, &["SET", "{palisade:odd}:rb", "not a hash"]).await;
    let config = FleetRetryBudgetConfig {
        min_per_second: 0,
        ratio: 0.0,
        ..defaults()
    };
    let odd = instance(&redis, "odd", &config).await;
    until("the instance falls back", Duration::from_secs(2), || {
        odd.fleet.counting() == LOCAL_SHARE
    })
    .await;
    // No grant came from the odd answer, and the local share of a 0 floor has nothing.
    let budget = odd.fleet.budget();
    assert_eq!(budget.available(), 0);
    assert!(!budget.try_withdraw());
    // Fixed by an operator: shared again.
    query(&observer, &["DEL", "{palisade:odd}:rb"]).await;
    until(
        "the instance is shared again",
        Duration::from_secs(2),
        || odd.fleet.counting() == SHARED,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_budget_runs_on_a_redis_cluster() {
    let Some(cluster) = palisade_testkit::redis::OwnRedisCluster::start() else {
        return;
    };
    let config = StoreConfig::cluster(cluster.urls()).timeout(PATIENT);
    let mut fleet = Vec::new();
    for _ in 0..2 {
        let store = RedisStore::connect(&config).await.unwrap();
        let membership =
            Membership::start(store.clone(), "on-cluster", &MembershipConfig::default()).unwrap();
        let floor_of_three = FleetRetryBudgetConfig {
            ratio: 0.0,
            min_per_second: 1,
            window: Duration::from_secs(3),
            ..defaults()
        };
        fleet.push(
            FleetRetryBudget::start(store, membership, "on-cluster", &floor_of_three).unwrap(),
        );
    }
    until("both hold a grant", Duration::from_secs(5), || {
        fleet.iter().all(|f| f.budget().available() > 0)
    })
    .await;
    // The one key is in its hash tag's slot: the script ran there. Two instances share a
    // floor of 3 tokens: they spend 3 between them (plus nothing: the grants are part of
    // the 3), and stay shared.
    let mut spent = 0;
    for _ in 0..20 {
        for f in &fleet {
            spent += u32::from(f.budget().try_withdraw());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!("on a cluster: {spent} tokens of a floor of 3");
    assert_eq!(spent, 3);
    for f in &fleet {
        assert_eq!(f.counting(), SHARED);
    }
}

//! The fleet rate limit on a Redis Cluster of the test's own: three `redis-server`s in
//! cluster mode (skipped loudly without `redis-server` and `redis-cli`, a failure when
//! `CI` is set). Scopes spread over the nodes, one scope's limits are decided together
//! on its node, and the exactness bound holds as on one server.

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use palisade::policy::circuit_breaker::CircuitState;
use palisade::policy::rate_limit::Quota;
use palisade_fleet::{
    Check, Decision, FleetError, FleetLimit, FleetRateLimiter, RedisStore, StoreConfig,
};
use palisade_testkit::redis::OwnRedisCluster;
use tokio::time::Instant;

use support::*;

/// A generous timeout: the machine is shared and busy, and these tests are about
/// counting.
const PATIENT: Duration = Duration::from_millis(500);

async fn cluster_store(cluster: &OwnRedisCluster) -> RedisStore {
    RedisStore::connect(&StoreConfig::cluster(cluster.urls()).timeout(PATIENT))
        .await
        .unwrap()
}

/// A plain (not cluster) connection to one node, to look at what that node holds.
async fn node_store(url: &str) -> RedisStore {
    RedisStore::connect(&StoreConfig::new(url).timeout(PATIENT))
        .await
        .unwrap()
}

fn limiter(store: &RedisStore, scope: &str) -> FleetRateLimiter {
    FleetRateLimiter::builder()
        .name(scope)
        .store(store.clone())
        .build()
        .unwrap()
}

/// The node (`host:port`) serving each slot range, from `CLUSTER NODES`.
fn slot_owners(nodes: &str) -> Vec<(u16, u16, String)> {
    let mut owners = Vec::new();
    for line in nodes.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() < 9 || !fields[2].contains("master") {
            continue;
        }
        let address = fields[1].split('@').next().unwrap().to_owned();
        for range in &fields[8..] {
            let (from, to) = range.split_once('-').unwrap_or((range, range));
            owners.push((from.parse().unwrap(), to.parse().unwrap(), address.clone()));
        }
    }
    owners
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scopes_spread_over_every_node_and_each_decides_on_its_own() {
    let Some(cluster) = OwnRedisCluster::start() else {
        return;
    };
    let store = cluster_store(&cluster).await;
    // Slow refill: every key lives 10 s after its one admission.
    let limit = FleetLimit::new("client", Quota::new(0.1, 2)).unwrap();
    const SCOPES: usize = 24;
    let mut keys = Vec::new();
    for i in 0..SCOPES {
        let limiter = limiter(&store, &format!("scope-{i}"));
        let check = [Check::keyed(&limit, "alice")];
        assert_eq!(limiter.check(&check).await.unwrap(), Decision::Admitted);
        assert_eq!(limiter.check(&check).await.unwrap(), Decision::Admitted);
        assert!(!limiter.check(&check).await.unwrap().is_admitted());
        keys.push(limiter.key_of(&check[0]));
    }
    // Where the cluster says each key lives.
    let owners = slot_owners(&text(&query(&store, &["CLUSTER", "NODES"]).await));
    let mut expected: BTreeMap<String, i64> = BTreeMap::new();
    for key in &keys {
        let slot = int(&query(&store, &["CLUSTER", "KEYSLOT", key]).await) as u16;
        let (_, _, node) = owners
            .iter()
            .find(|(from, to, _)| (*from..=*to).contains(&slot))
            .unwrap_or_else(|| panic!("no node serves slot {slot}"));
        *expected.entry(node.clone()).or_default() += 1;
    }
    eprintln!("keys per node: {expected:?}");
    assert_eq!(expected.len(), OwnRedisCluster::NODES, "{expected:?}");
    // And each node holds exactly the keys the cluster says it serves.
    for (port, url) in cluster.ports().iter().zip(cluster.urls()) {
        let node = node_store(&url).await;
        let held = int(&query(&node, &["DBSIZE"]).await);
        assert!(held > 0, "node {port} holds no key");
        assert_eq!(Some(&held), expected.get(&format!("127.0.0.1:{port}")));
    }
    assert_eq!(expected.values().sum::<i64>(), SCOPES as i64);
}

#[tokio::test]
async fn every_limit_of_a_scope_admits_or_none_counts_on_the_cluster() {
    let Some(cluster) = OwnRedisCluster::start() else {
        return;
    };
    let store = cluster_store(&cluster).await;
    let limiter = limiter(&store, "all-or-none");
    let global = FleetLimit::new("global", Quota::new(0.01, 5)).unwrap();
    let client = FleetLimit::new("client", Quota::new(0.01, 3)).unwrap();
    let both = [Check::global(&global), Check::keyed(&client, "alice")];
    for _ in 0..3 {
        assert_eq!(limiter.check(&both).await.unwrap(), Decision::Admitted);
    }
    let global_key = limiter.key_of(&both[0]);
    let before = query(&store, &["GET", &global_key]).await;
    match limiter.check(&both).await.unwrap() {
        Decision::Refused { limit, .. } => assert_eq!(limit, 1),
        other => panic!("{other:?}"),
    }
    assert_eq!(query(&store, &["GET", &global_key]).await, before);
    let bob = [Check::global(&global), Check::keyed(&client, "bob")];
    assert!(limiter.check(&bob).await.unwrap().is_admitted());
    assert!(limiter.check(&bob).await.unwrap().is_admitted());
    let carol = [Check::global(&global), Check::keyed(&client, "carol")];
    match limiter.check(&carol).await.unwrap() {
        Decision::Refused { limit, .. } => assert_eq!(limit, 0),
        other => panic!("{other:?}"),
    }
    let carol_key = limiter.key_of(&carol[1]);
    assert_eq!(int(&query(&store, &["EXISTS", &carol_key]).await), 0);

    // The script flushed from every node: EVALSHA answers NOSCRIPT, the script is
    // loaded again (on every node) and the decision made.
    let loads_before = script_loads(&cluster).await;
    query(&store, &["SCRIPT", "FLUSH"]).await;
    let dave = [Check::keyed(&client, "dave")];
    assert!(limiter.check(&dave).await.unwrap().is_admitted());
    assert!(
        script_loads(&cluster).await > loads_before,
        "the script was not loaded again"
    );
}

/// `SCRIPT LOAD`s run, summed over the nodes.
async fn script_loads(cluster: &OwnRedisCluster) -> u64 {
    let mut loads = 0;
    for url in cluster.urls() {
        let node = node_store(&url).await;
        let stats = text(&query(&node, &["INFO", "commandstats"]).await);
        loads += stats
            .lines()
            .find_map(|l| l.strip_prefix("cmdstat_script|load:calls="))
            .map_or(0, |rest| rest.split(',').next().unwrap().parse().unwrap());
    }
    loads
}

#[tokio::test]
async fn keys_in_two_slots_are_the_callers_mistake_not_an_outage() {
    let Some(cluster) = OwnRedisCluster::start() else {
        return;
    };
    let store = cluster_store(&cluster).await;
    let mut eval = redis::cmd("EVAL");
    eval.arg("return 1").arg(2).arg("{a}:x").arg("{b}:y");
    for _ in 0..5 {
        match store.command(&eval).await {
            Err(FleetError::Malformed { reason }) => {
                assert!(reason.contains("different cluster slots"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(store.breaker().state(), CircuitState::Closed);
}

#[tokio::test]
async fn a_cluster_store_started_in_the_background_connects() {
    let Some(cluster) = OwnRedisCluster::start() else {
        return;
    };
    let store = RedisStore::start(&StoreConfig::cluster(cluster.urls()).timeout(PATIENT)).unwrap();
    let limiter = limiter(&store, "late");
    let limit = FleetLimit::new("l", Quota::new(1000.0, 1000)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match limiter.check(&[Check::global(&limit)]).await {
            Ok(decision) => {
                assert!(decision.is_admitted());
                break;
            }
            Err(e) => assert!(Instant::now() < deadline, "no decision within 5 s: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(store.is_connected());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_at_ten_times_the_limit_admit_exactly_the_quota_on_the_cluster() {
    let Some(cluster) = OwnRedisCluster::start() else {
        return;
    };
    const PER_SECOND: f64 = 500.0;
    const BURST: u32 = 25;
    const INSTANCES: usize = 2;
    const CALLERS: usize = 32;
    const RUN: Duration = Duration::from_secs(2);
    let limit = Arc::new(FleetLimit::new("global", Quota::new(PER_SECOND, BURST)).unwrap());
    // Each instance its own cluster connection, as separate processes would have.
    let mut instances = Vec::new();
    for _ in 0..INSTANCES {
        instances.push(limiter(&cluster_store(&cluster).await, "hammer"));
    }
    let clock = cluster_store(&cluster).await;
    let period = Duration::from_secs_f64((CALLERS * INSTANCES) as f64 / (10.0 * PER_SECOND));
    let start_server = server_micros(&clock).await;
    let tally = paced(&instances, CALLERS, period, RUN, move |limiter| {
        exact_call(limiter, limit.clone())
    })
    .await;
    let elapsed = (server_micros(&clock).await - start_server) as f64 / 1e6;
    let (admitted, refused) = (tally.admitted as f64, tally.refused as f64);
    let bound = PER_SECOND * elapsed + f64::from(BURST);
    eprintln!(
        "cluster: admitted {admitted}, refused {refused}, errors {}, server time {elapsed:.3} s, \
         bound {bound:.1}",
        tally.failed
    );
    assert_eq!(tally.failed, 0);
    assert!(
        refused > 5.0 * admitted,
        "the load was not 10× the limit: {refused} refused"
    );
    assert!(admitted <= bound, "admitted {admitted} > bound {bound}");
    assert!(
        admitted >= bound - PER_SECOND * 0.15 - 5.0,
        "admitted {admitted}, expected about {bound}"
    );
}

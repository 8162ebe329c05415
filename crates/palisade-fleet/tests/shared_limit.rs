//! The fleet rate limit policy ([`SharedRateLimit`]) when Redis fails and comes back,
//! against real `redis-server`s of the tests' own (skipped loudly without one, a failure
//! when `CI` is set). Real time: these are real servers and real outages.
//!
//! Every instance has its own `RedisStore` and `Membership`, as separate processes would.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use palisade_fleet::{
    Admit, Counting, Membership, MembershipConfig, OnStoreDown, RedisStore, SharedRateLimit,
    SharedRateLimitBuilder, SharedRateLimitConfig, StoreConfig,
};
use palisade_testkit::redis::OwnRedis;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// The store's per-call timeout: a dead Redis fails calls by their connection error or
/// this until the store's breaker opens (then at once), and a busy shared machine seldom
/// hits it.
const TIMEOUT: Duration = Duration::from_millis(50);

fn quick() -> MembershipConfig {
    MembershipConfig {
        interval: Duration::from_millis(100),
        expire_after: Duration::from_millis(300),
    }
}

async fn instance(redis: &OwnRedis, config: &SharedRateLimitConfig) -> SharedRateLimit {
    let store = RedisStore::connect(&StoreConfig::new(redis.url()).timeout(TIMEOUT))
        .await
        .unwrap();
    let membership = Membership::start(store.clone(), config.scope(), &quick()).unwrap();
    SharedRateLimitBuilder::from_config(config.clone())
        .store(store)
        .membership(membership)
        .build()
        .unwrap()
}

/// `n` instances of `config`, once each counts `n` live.
async fn fleet(redis: &OwnRedis, config: &SharedRateLimitConfig, n: u32) -> Vec<SharedRateLimit> {
    let mut instances = Vec::new();
    for _ in 0..n {
        instances.push(instance(redis, config).await);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while instances.iter().any(|i| i.live_instances() != n) {
        assert!(Instant::now() < deadline, "the instances never counted {n}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    instances
}

/// Every decision of a load, by instance and by what decided it.
#[derive(Default)]
struct Tally {
    /// `[instance][counting]`.
    admitted: Mutex<Vec<[u64; 4]>>,
    refused: AtomicU64,
    /// Admissions with their time, when asked for.
    log: Mutex<Vec<(Instant, Counting)>>,
    logging: AtomicBool,
}

fn index(c: Counting) -> usize {
    Counting::ALL.iter().position(|x| *x == c).unwrap()
}

impl Tally {
    fn new(instances: usize) -> Arc<Self> {
        Arc::new(Self {
            admitted: Mutex::new(vec![[0; 4]; instances]),
            ..Self::default()
        })
    }

    fn record(&self, instance: usize, admit: Admit) {
        match admit {
            Admit::Admitted { counting } => {
                self.admitted.lock().unwrap()[instance][index(counting)] += 1;
                if self.logging.load(Ordering::Relaxed) {
                    self.log.lock().unwrap().push((Instant::now(), counting));
                }
            }
            Admit::Refused { retry_after, .. } => {
                assert!(retry_after > Duration::ZERO, "a refusal without a wait");
                self.refused.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn admitted_by(&self, instance: usize) -> u64 {
        self.admitted.lock().unwrap()[instance].iter().sum()
    }

    fn admitted(&self) -> u64 {
        self.admitted.lock().unwrap().iter().flatten().sum()
    }

    fn admitted_counting(&self, counting: Counting) -> u64 {
        self.admitted
            .lock()
            .unwrap()
            .iter()
            .map(|a| a[index(counting)])
            .sum()
    }
}

/// `callers` tasks per instance sending `rate` requests per second in all, until `stop`.
fn drive(
    instances: &[SharedRateLimit],
    callers: usize,
    rate: f64,
    tally: &Arc<Tally>,
    stop: &Arc<AtomicBool>,
) -> Vec<JoinHandle<()>> {
    let period = Duration::from_secs_f64((callers * instances.len()) as f64 / rate);
    let mut tasks = Vec::new();
    for (i, limit) in instances.iter().enumerate() {
        for caller in 0..callers {
            let (limit, tally, stop) = (limit.clone(), tally.clone(), stop.clone());
            tasks.push(tokio::spawn(async move {
                let offset = period.mul_f64(caller as f64 / callers as f64);
                let mut ticks = tokio::time::interval_at(Instant::now() + offset, period);
                ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    ticks.tick().await;
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    tally.record(i, limit.acquire(None).await);
                }
            }));
        }
    }
    tasks
}

async fn stop_all(stop: &AtomicBool, tasks: Vec<JoinHandle<()>>) {
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
}

/// Waits until the instances decide without Redis (the first failed call marks it).
async fn until_counting(instances: &[SharedRateLimit], want: Counting) -> Duration {
    let start = Instant::now();
    while instances.iter().any(|i| i.counting() != want) {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "counting stayed {:?}, want {want:?}",
            instances.iter().map(|i| i.counting()).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    start.elapsed()
}

fn config(name: &str, per_second: f64, burst: u32, down: OnStoreDown) -> SharedRateLimitConfig {
    SharedRateLimitConfig {
        on_store_down: down,
        ..SharedRateLimitConfig::new(name, per_second, burst)
    }
}

/// Two instances, Redis stopped, 2 s at 10× the limit: what each fallback admits.
async fn under_a_stopped_redis(
    down: OnStoreDown,
) -> Option<(Arc<Tally>, f64, Vec<SharedRateLimit>)> {
    let redis = OwnRedis::start()?;
    const PER_SECOND: f64 = 100.0;
    let instances = fleet(&redis, &config("down", PER_SECOND, 10, down), 2).await;
    // Shared while Redis answers.
    for i in &instances {
        assert_eq!(i.acquire(None).await.counting(), Counting::Shared);
        assert_eq!(i.counting(), Counting::Shared);
    }
    redis.stop();
    let tally = Tally::new(instances.len());
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let tasks = drive(&instances, 16, 10.0 * PER_SECOND, &tally, &stop);
    until_counting(&instances, down.into()).await;
    tokio::time::sleep(Duration::from_secs(2).saturating_sub(start.elapsed())).await;
    stop_all(&stop, tasks).await;
    let elapsed = start.elapsed().as_secs_f64();
    // The count is the one from before the outage.
    assert!(instances.iter().all(|i| i.live_instances() == 2));
    Some((tally, elapsed, instances))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_share_admits_each_instance_its_share_while_redis_is_stopped() {
    let Some((tally, elapsed, instances)) = under_a_stopped_redis(OnStoreDown::LocalShare).await
    else {
        return;
    };
    // Each instance: 50/s with a burst of 5, locally.
    let share = 50.0 * elapsed + 5.0;
    for i in 0..instances.len() {
        let admitted = tally.admitted_by(i) as f64;
        eprintln!("instance {i}: admitted {admitted} in {elapsed:.2} s (its share: {share:.1})");
        assert!(admitted <= share + 1.0, "{admitted} > {share}");
        assert!(admitted >= 0.85 * share, "{admitted} < 85% of {share}");
    }
    assert_eq!(
        tally.admitted(),
        tally.admitted_counting(Counting::LocalShare),
        "every admission was the local share's"
    );
    assert!(
        instances
            .iter()
            .all(|i| i.counting() == Counting::LocalShare)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_admits_everything_while_redis_is_stopped() {
    let Some((tally, elapsed, instances)) = under_a_stopped_redis(OnStoreDown::Open).await else {
        return;
    };
    let admitted = tally.admitted();
    eprintln!(
        "open: admitted {admitted} in {elapsed:.2} s, refused {}",
        tally.refused.load(Ordering::Relaxed)
    );
    assert_eq!(tally.refused.load(Ordering::Relaxed), 0);
    assert_eq!(admitted, tally.admitted_counting(Counting::Open));
    assert!(
        admitted as f64 > 3.0 * 100.0 * elapsed,
        "not 10× load: {admitted}"
    );
    assert!(instances.iter().all(|i| i.counting() == Counting::Open));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_refuses_everything_while_redis_is_stopped() {
    let Some((tally, elapsed, instances)) = under_a_stopped_redis(OnStoreDown::Closed).await else {
        return;
    };
    let refused = tally.refused.load(Ordering::Relaxed);
    eprintln!("closed: refused {refused} in {elapsed:.2} s");
    assert_eq!(tally.admitted(), 0);
    assert!(
        refused as f64 > 3.0 * 100.0 * elapsed,
        "not 10× load: {refused}"
    );
    // The wait is the store breaker's (open for 250 ms by default) while it is open, 1 s
    // when a call reached the dead server (the breaker's probe).
    for i in &instances {
        assert_eq!(i.counting(), Counting::Closed);
        let mut from_breaker = false;
        for _ in 0..5 {
            match i.acquire(Some("k")).await {
                Admit::Refused {
                    retry_after,
                    counting: Counting::Closed,
                } => {
                    assert!(
                        retry_after > Duration::ZERO && retry_after <= Duration::from_secs(1),
                        "{retry_after:?}"
                    );
                    from_breaker |= retry_after <= Duration::from_millis(250);
                }
                other => panic!("{other:?}"),
            }
        }
        assert!(from_breaker, "no wait from the open breaker");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_under_a_dead_redis_keep_the_fleet_near_the_limit() {
    let Some(redis) = OwnRedis::start() else {
        return;
    };
    const PER_SECOND: f64 = 150.0;
    const BURST: u32 = 15;
    let instances = fleet(
        &redis,
        &config("dead", PER_SECOND, BURST, OnStoreDown::LocalShare),
        3,
    )
    .await;
    redis.stop();
    let tally = Tally::new(instances.len());
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let tasks = drive(&instances, 24, 10.0 * PER_SECOND, &tally, &stop);
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop_all(&stop, tasks).await;
    let elapsed = start.elapsed().as_secs_f64();
    let admitted = tally.admitted() as f64;
    let limit = PER_SECOND * elapsed + f64::from(BURST);
    eprintln!(
        "3 instances, redis dead: admitted {admitted} in {elapsed:.2} s; the limit {limit:.1} \
         ({:.3} of it); refused {}",
        admitted / limit,
        tally.refused.load(Ordering::Relaxed)
    );
    assert!(admitted <= 1.05 * limit, "{admitted} > 1.05 × {limit}");
    assert!(
        admitted >= 0.85 * PER_SECOND * elapsed,
        "{admitted}: starved"
    );
    assert_eq!(tally.admitted_counting(Counting::Shared), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_return_after_an_outage_adds_no_second_burst() {
    let Some(redis) = OwnRedis::start() else {
        return;
    };
    // A burst large next to the rate, so a second one would show: 100/s, burst 50.
    const PER_SECOND: f64 = 100.0;
    const BURST: u32 = 50;
    let instances = fleet(
        &redis,
        &config("return", PER_SECOND, BURST, OnStoreDown::LocalShare),
        3,
    )
    .await;
    let tally = Tally::new(instances.len());
    let stop = Arc::new(AtomicBool::new(false));
    let tasks = drive(&instances, 16, 10.0 * PER_SECOND, &tally, &stop);
    // Shared, then Redis dies (and its state with it) for 1.5 s: the local shares decide.
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(instances.iter().all(|i| i.counting() == Counting::Shared));
    redis.stop();
    let to_local = until_counting(&instances, Counting::LocalShare).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // Redis again, empty: every key is missing.
    tally.logging.store(true, Ordering::Relaxed);
    redis.start_again();
    let back = Instant::now();
    let to_shared = until_counting(&instances, Counting::Shared).await;
    tokio::time::sleep(Duration::from_millis(1200).saturating_sub(back.elapsed())).await;
    stop_all(&stop, tasks).await;

    let log = tally.log.lock().unwrap().clone();
    let in_window = |c: Counting| {
        log.iter()
            .filter(|(t, counting)| {
                *counting == c && *t >= back && t.duration_since(back) < Duration::from_secs(1)
            })
            .count() as f64
    };
    let shared = in_window(Counting::Shared);
    let local = in_window(Counting::LocalShare);
    // The fleet's count from its first admission back to the end of the second: at most
    // per_second × span + 1 (missing keys start spent), where a second burst would add
    // `burst`. Slack: 3 for the span measured here, not on the server's clock.
    let first = log
        .iter()
        .filter(|(t, c)| *c == Counting::Shared && *t >= back)
        .map(|(t, _)| *t)
        .min()
        .unwrap();
    let span = 1.0 - first.duration_since(back).as_secs_f64();
    let shared_bound = PER_SECOND * span + 1.0 + 3.0;
    // The whole fleet in the first second back: that, plus what the local shares
    // admitted before their instance saw Redis again.
    let bound = PER_SECOND * 1.0 + 1.0 + local + 3.0;
    eprintln!(
        "to local share {to_local:?}; back to shared {to_shared:?} after redis answered; \
         first second back: {shared} shared (bound {shared_bound:.1} over {span:.3} s; a \
         second burst would allow {:.1}) + {local} local share = {} (bound {bound})",
        shared_bound + f64::from(BURST),
        shared + local,
    );
    assert!(
        to_shared <= Duration::from_secs(1),
        "counting back to shared took {to_shared:?}"
    );
    assert!(
        shared <= shared_bound,
        "{shared} > {shared_bound}: a second burst"
    );
    assert!(shared + local <= bound, "{shared} + {local} > {bound}");
    assert!(shared >= 0.8 * PER_SECOND * span, "{shared}: starved");
}

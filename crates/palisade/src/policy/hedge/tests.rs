use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio::time::{Instant, sleep};

use super::*;
use crate::ConfigError;
use crate::outcome::DefaultClassifier;
use crate::policy::retry::{Retry, RetryBudgetConfig};

const MS: Duration = Duration::from_millis(1);

/// A simulated server: counts the calls it receives, those it answers, and those whose
/// future was dropped before answering (cancelled by the caller).
#[derive(Clone, Default)]
struct Server {
    received: Arc<AtomicU32>,
    answered: Arc<AtomicU32>,
    cancelled: Arc<AtomicU32>,
}

/// Counts a cancellation when dropped before the answer.
struct DropGuard {
    server: Server,
    answered: bool,
}

impl Drop for DropGuard {
    fn drop(&mut self) {
        if !self.answered {
            self.server.cancelled.fetch_add(1, Ordering::SeqCst);
        }
    }
}

impl Server {
    /// Receives a call now; answers `answer` after `latency`.
    fn respond<T: Send>(
        &self,
        latency: Duration,
        answer: Result<T, &'static str>,
    ) -> impl Future<Output = Result<T, Error<&'static str>>> + Send + use<T> {
        self.received.fetch_add(1, Ordering::SeqCst);
        let mut guard = DropGuard {
            server: self.clone(),
            answered: false,
        };
        async move {
            sleep(latency).await;
            guard.answered = true;
            guard.server.answered.fetch_add(1, Ordering::SeqCst);
            answer.map_err(Error::Inner)
        }
    }

    fn received(&self) -> u32 {
        self.received.load(Ordering::SeqCst)
    }

    fn cancelled(&self) -> u32 {
        self.cancelled.load(Ordering::SeqCst)
    }
}

/// A fixed 10 ms delay, hedging every marked call (cap: one hedge per call).
fn fixed() -> HedgeBuilder {
    Hedge::builder()
        .name("h")
        .delay(10 * MS)
        .learn(false)
        .max_extra_load(1.0)
}

/// Runs one marked call whose `n`th attempt (from 0) answers `answers[n]` after
/// `latencies[n]`; returns the answer and how long the call took.
async fn race(
    hedge: &Hedge,
    server: &Server,
    plan: &[(Duration, Result<u32, &'static str>)],
) -> (Result<u32, Error<&'static str>>, Duration) {
    let attempt = AtomicU32::new(0);
    let start = Instant::now();
    let answer = idempotent(hedge.execute(&DefaultClassifier, || {
        let (latency, answer) = plan[attempt.fetch_add(1, Ordering::SeqCst) as usize];
        server.respond(latency, answer)
    }))
    .await;
    (answer, start.elapsed())
}

/// The nearest-rank `p` percentile of `values`.
fn percentile(values: &mut [Duration], p: f64) -> Duration {
    values.sort();
    values[((p * values.len() as f64).ceil() as usize).max(1) - 1]
}

/// 4000 calls in a row to a server where 5% of attempts take 1 s and the rest 10 ms;
/// returns the calls' latencies and the server.
async fn tail_workload(seed: u64, hedge: Option<&Hedge>) -> (Vec<Duration>, Server) {
    let rng = Mutex::new(SmallRng::seed_from_u64(seed));
    // Each attempt draws its own latency, as a hedge sent elsewhere would.
    let draw = || {
        if rng.lock().unwrap().random_bool(0.05) {
            Duration::from_secs(1)
        } else {
            10 * MS
        }
    };
    let server = Server::default();
    let mut latencies = Vec::with_capacity(TAIL_CALLS);
    for _ in 0..TAIL_CALLS {
        let start = Instant::now();
        match hedge {
            Some(hedge) => hedge
                .call_idempotent(|| server.respond(draw(), Ok::<_, &str>(())))
                .await
                .unwrap(),
            None => server.respond(draw(), Ok(())).await.unwrap(),
        }
        latencies.push(start.elapsed());
    }
    (latencies, server)
}

const TAIL_CALLS: usize = 4000;

#[tokio::test(start_paused = true)]
async fn hedging_at_a_learned_p95_cuts_the_tail_within_the_cap() {
    for seed in [42, 7, 99] {
        // Without hedging: the p99 is the slow 5%.
        let (mut direct, _) = tail_workload(seed, None).await;
        assert_eq!(percentile(&mut direct, 0.99), Duration::from_secs(1));

        // Hedged at the learned p95 of first attempts, with the default settings (p95
        // after 100 samples over 30 s, 100 ms until then, at most 10% extra load).
        let hedge = Hedge::builder().name("tail").build().unwrap();
        let (mut hedged, server) = tail_workload(seed, Some(&hedge)).await;
        // Here p95 sits on the edge of a plateau (exactly 5% are slow), so the learned
        // delay is either just above the fast answers or stays at the 100 ms it had when
        // learning began (while a window happens to hold over 5% slow calls); it never
        // creeps above that. Either way the tail is a hedge delay plus a fast answer.
        let p99 = percentile(&mut hedged, 0.99);
        assert!(p99 <= 110 * MS, "seed {seed}: p99 {p99:?}");
        let learned = hedge.delay();
        assert!(
            learned >= 10 * MS && learned <= 100 * MS,
            "seed {seed}: delay {learned:?}"
        );

        let extra = server.received() as usize - TAIL_CALLS;
        assert!(extra > TAIL_CALLS / 40, "seed {seed}: only {extra} hedges");
        assert!(
            extra <= TAIL_CALLS / 10,
            "seed {seed}: {extra} hedges over the cap"
        );
        assert_eq!(
            server.answered.load(Ordering::SeqCst) + server.cancelled(),
            server.received(),
            "every attempt either answered or was dropped"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn the_loser_is_cancelled() {
    // The first attempt hangs; the hedge answers. The first is dropped.
    let server = Server::default();
    let hedge = fixed().build().unwrap();
    let plan = [(Duration::from_secs(1), Ok(0)), (10 * MS, Ok(1))];
    let (answer, took) = race(&hedge, &server, &plan).await;
    assert_eq!(answer.unwrap(), 1);
    assert_eq!(took, 20 * MS);
    assert_eq!((server.received(), server.cancelled()), (2, 1));

    // The first answers after the hedge started; the hedge is dropped.
    let server = Server::default();
    let plan = [(15 * MS, Ok(0)), (Duration::from_secs(1), Ok(1))];
    let (answer, took) = race(&hedge, &server, &plan).await;
    assert_eq!(answer.unwrap(), 0);
    assert_eq!(took, 15 * MS);
    assert_eq!((server.received(), server.cancelled()), (2, 1));
}

#[tokio::test(start_paused = true)]
async fn a_fast_answer_is_never_hedged() {
    let server = Server::default();
    let hedge = fixed().build().unwrap();
    let (answer, took) = race(&hedge, &server, &[(9 * MS, Ok(0))]).await;
    assert_eq!(answer.unwrap(), 0);
    assert_eq!(took, 9 * MS);
    // A failure before the delay is the answer: retrying is not the hedge's job.
    let (answer, took) = race(&hedge, &server, &[(5 * MS, Err("down"))]).await;
    assert!(matches!(answer, Err(Error::Inner("down"))));
    assert_eq!(took, 5 * MS);
    assert_eq!(server.received(), 2);
}

#[tokio::test(start_paused = true)]
async fn the_first_good_answer_wins_and_two_failures_return_the_last() {
    let hedge = fixed().build().unwrap();
    let server = Server::default();
    // The first fails while the hedge runs: wait for the hedge.
    let plan = [(20 * MS, Err("first")), (30 * MS, Ok(1))];
    let (answer, took) = race(&hedge, &server, &plan).await;
    assert_eq!(answer.unwrap(), 1);
    assert_eq!(took, 40 * MS);
    // The hedge fails while the first runs: wait for the first.
    let plan = [(50 * MS, Ok(0)), (5 * MS, Err("second"))];
    let (answer, took) = race(&hedge, &server, &plan).await;
    assert_eq!(answer.unwrap(), 0);
    assert_eq!(took, 50 * MS);
    // Both fail: the last to fail is the answer.
    let plan = [(20 * MS, Err("first")), (30 * MS, Err("second"))];
    let (answer, _) = race(&hedge, &server, &plan).await;
    assert!(matches!(answer, Err(Error::Inner("second"))));
    let plan = [(50 * MS, Err("first")), (5 * MS, Err("second"))];
    let (answer, _) = race(&hedge, &server, &plan).await;
    assert!(matches!(answer, Err(Error::Inner("first"))));
    assert_eq!(
        server.cancelled(),
        0,
        "no attempt was overtaken by a good answer"
    );
}

#[tokio::test(start_paused = true)]
async fn calls_not_marked_idempotent_are_never_hedged() {
    let server = Server::default();
    let hedge = fixed().build().unwrap();
    let start = Instant::now();
    let answer = hedge
        .execute(&DefaultClassifier, || {
            server.respond(Duration::from_secs(1), Ok(0))
        })
        .await;
    assert_eq!(answer.unwrap(), 0);
    assert_eq!(start.elapsed(), Duration::from_secs(1));
    assert_eq!(server.received(), 1);
    // The same call, marked.
    let (_, took) = race(
        &hedge,
        &server,
        &[(Duration::from_secs(1), Ok(0)), (MS, Ok(1))],
    )
    .await;
    assert_eq!(took, 11 * MS);
    // Without idempotent_only every call may be hedged.
    let hedge = fixed().idempotent_only(false).build().unwrap();
    let server = Server::default();
    let attempt = AtomicU32::new(0);
    let answer = hedge
        .execute(&DefaultClassifier, || {
            let n = attempt.fetch_add(1, Ordering::SeqCst);
            server.respond(Duration::from_secs(1 - u64::from(n)), Ok(n))
        })
        .await;
    assert_eq!(answer.unwrap(), 1);
}

#[tokio::test(start_paused = true)]
async fn no_hedge_when_the_shared_budget_is_empty() {
    let empty = RetryBudget::new(&RetryBudgetConfig {
        ratio: 0.0,
        min_per_second: 0,
        window: Duration::from_secs(10),
    })
    .unwrap();
    let hedge = fixed().budget(empty).build().unwrap();
    let server = Server::default();
    let (_, took) = race(
        &hedge,
        &server,
        &[(Duration::from_secs(1), Ok(0)), (MS, Ok(1))],
    )
    .await;
    assert_eq!(took, Duration::from_secs(1));
    assert_eq!(server.received(), 1);

    // A budget with room is charged one token per hedge.
    let budget = RetryBudget::new(&RetryBudgetConfig {
        ratio: 0.0,
        min_per_second: 1,
        window: Duration::from_secs(1),
    })
    .unwrap();
    let hedge = fixed().budget(budget.clone()).build().unwrap();
    let plan = [(Duration::from_secs(1), Ok(0)), (MS, Ok(1))];
    let (answer, _) = race(&hedge, &server, &plan).await;
    assert_eq!(answer.unwrap(), 1);
    assert_eq!(budget.available(), 0);
    let (answer, _) = race(&hedge, &server, &plan).await;
    assert_eq!(answer.unwrap(), 0, "the budget is spent");
}

#[tokio::test(start_paused = true)]
async fn the_own_cap_bounds_extra_load_when_every_call_is_slow() {
    let server = Server::default();
    let hedge = fixed().max_extra_load(0.1).build().unwrap();
    let mut calls = tokio::task::JoinSet::new();
    for _ in 0..100 {
        let (hedge, server) = (hedge.clone(), server.clone());
        calls.spawn(async move {
            hedge
                .call_idempotent(|| server.respond(Duration::from_secs(1), Ok::<_, &str>(())))
                .await
        });
    }
    while let Some(answer) = calls.join_next().await {
        answer.unwrap().unwrap();
    }
    assert_eq!(server.received(), 110, "100 calls deposit 10 hedges");

    let never = fixed().max_extra_load(0.0).build().unwrap();
    let server = Server::default();
    let (_, took) = race(
        &never,
        &server,
        &[(Duration::from_secs(1), Ok(0)), (MS, Ok(1))],
    )
    .await;
    assert_eq!(took, Duration::from_secs(1));
}

#[tokio::test(start_paused = true)]
async fn no_hedge_once_the_deadline_has_passed() {
    let server = Server::default();
    let hedge = fixed().build().unwrap();
    let plan = [(Duration::from_secs(1), Ok(0)), (MS, Ok(1))];
    let (answer, _) = crate::deadline::scope_for(5 * MS, race(&hedge, &server, &plan)).await;
    assert_eq!(answer.unwrap(), 0);
    assert_eq!(server.received(), 1);
}

#[tokio::test(start_paused = true)]
async fn the_delay_is_learned_from_first_attempts() {
    let hedge = Hedge::builder()
        .delay(200 * MS)
        .percentile(0.5)
        .min_samples(10)
        .window(Duration::from_secs(10))
        .build()
        .unwrap();
    let server = Server::default();
    assert_eq!(hedge.delay(), 200 * MS);
    for _ in 0..10 {
        race(&hedge, &server, &[(30 * MS, Ok(0))]).await.0.unwrap();
    }
    assert_eq!(hedge.samples(), 10);
    tokio::time::advance(100 * MS).await; // the percentile is refreshed each window/100
    let learned = hedge.delay().as_secs_f64();
    assert!((learned / 0.030 - 1.0).abs() <= 1.0 / 32.0, "{learned}");
    // Calls that may not be hedged are not measured.
    hedge
        .execute(&DefaultClassifier, || server.respond(MS, Ok(0)))
        .await
        .unwrap();
    assert_eq!(hedge.samples(), 10);
}

#[tokio::test(start_paused = true)]
async fn each_hedge_is_an_event_and_a_metric() {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let heard = Arc::new(Mutex::new(Vec::new()));
    let sink = heard.clone();
    let hedge = metrics::with_local_recorder(&recorder, || {
        fixed()
            .name("observed")
            .on_event(move |e| sink.lock().unwrap().push(e.clone()))
            .build()
            .unwrap()
    });
    let server = Server::default();
    let (answer, _) = race(
        &hedge,
        &server,
        &[(Duration::from_secs(1), Ok(0)), (MS, Ok(1))],
    )
    .await;
    assert_eq!(answer.unwrap(), 1);
    assert_eq!(
        *heard.lock().unwrap(),
        vec![Event::Hedged {
            name: "observed".into(),
            after: 10 * MS
        }]
    );
    let hedges = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .find(|(key, ..)| key.key().name() == names::HEDGES_TOTAL)
        .map(|(.., value)| value);
    assert_eq!(hedges, Some(DebugValue::Counter(1)));
}

#[test]
fn invalid_configs_name_the_field() {
    let spoilt = |spoil: fn(&mut HedgeConfig)| {
        let mut config = HedgeConfig::default();
        spoil(&mut config);
        let err: ConfigError = config.build().unwrap_err();
        err.field
    };
    assert_eq!(spoilt(|c| c.delay = Duration::from_secs(86_401)), "delay");
    assert_eq!(spoilt(|c| c.percentile = 1.0), "percentile");
    assert_eq!(spoilt(|c| c.percentile = f64::NAN), "percentile");
    assert_eq!(spoilt(|c| c.min_samples = 0), "min_samples");
    assert_eq!(spoilt(|c| c.window = Duration::from_secs(601)), "window");
    assert_eq!(spoilt(|c| c.max_extra_load = 1.5), "max_extra_load");
    assert_eq!(spoilt(|c| c.max_extra_load = -0.1), "max_extra_load");
    assert!(HedgeConfig::default().build().is_ok());
    let config: HedgeConfig =
        toml::from_str("delay = \"0ms\"\nlearn = false\nidempotent_only = false").unwrap();
    assert_eq!(config.delay, Duration::ZERO);
    assert!(config.build().is_ok(), "0 sends both attempts at once");
}

/// A request to the simulated tower service: which attempt answers slowly.
#[derive(Clone, Debug)]
struct Request {
    safe: bool,
}

#[tokio::test(start_paused = true)]
async fn tower_service_hedges_marked_requests_and_cancels_the_loser() {
    use tower::{Layer as _, ServiceExt, service_fn};
    let server = Server::default();
    let attempt = Arc::new(AtomicU32::new(0));
    let svc = {
        let (server, attempt) = (server.clone(), attempt.clone());
        service_fn(move |_: Request| {
            let n = attempt.fetch_add(1, Ordering::SeqCst);
            server.respond(
                if n % 2 == 0 {
                    Duration::from_secs(1)
                } else {
                    MS
                },
                Ok(n),
            )
        })
    };
    let hedged = fixed().build().unwrap().layer().layer(svc.clone());
    // Not marked: one attempt, the slow one.
    let answer = hedged.clone().oneshot(Request { safe: true }).await;
    assert_eq!(answer.unwrap(), 0);
    assert_eq!(server.received(), 1);
    // Marked: the hedge answers and the first attempt is dropped.
    attempt.store(0, Ordering::SeqCst);
    let start = Instant::now();
    let answer = idempotent(hedged.oneshot(Request { safe: true })).await;
    assert_eq!(answer.unwrap(), 1);
    assert_eq!(start.elapsed(), 11 * MS);
    assert_eq!((server.received(), server.cancelled()), (3, 1));

    // Judged per request instead.
    let by_request = fixed()
        .build()
        .unwrap()
        .layer()
        .idempotent_when(|r: &Request| r.safe)
        .layer(svc);
    attempt.store(0, Ordering::SeqCst);
    let answer = by_request.clone().oneshot(Request { safe: true }).await;
    assert_eq!(answer.unwrap(), 1);
    attempt.store(0, Ordering::SeqCst);
    let answer = by_request.oneshot(Request { safe: false }).await;
    assert_eq!(answer.unwrap(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_pipeline_shares_a_budget_between_retry_and_hedge() {
    use tower::{Layer as _, ServiceExt, service_fn};
    let budget = RetryBudget::new(&RetryBudgetConfig::default()).unwrap();
    let retry = Retry::builder().budget(budget.clone()).build().unwrap();
    let hedge = fixed().budget(budget).build().unwrap();
    let pipeline = crate::Pipeline::builder().push(retry).push(hedge).build();
    let server = Server::default();
    let attempt = AtomicU32::new(0);
    let answer = idempotent(pipeline.execute(&DefaultClassifier, || {
        let n = attempt.fetch_add(1, Ordering::SeqCst);
        server.respond(if n == 0 { Duration::from_secs(1) } else { MS }, Ok(n))
    }))
    .await;
    assert_eq!(answer.unwrap(), 1);
    let svc = pipeline.layer().layer(service_fn(
        |x: u32| async move { Ok::<_, std::io::Error>(x) },
    ));
    assert_eq!(idempotent(svc.oneshot(4)).await.unwrap(), 4);
}

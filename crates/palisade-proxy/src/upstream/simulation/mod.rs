//! A simulation of an upstream through gray failure, outage and overload, on tokio's
//! paused clock: the sidecar's real policies and balancer, built from a config as the
//! sidecar builds them, in front of [model endpoints](model) with a capacity and a queue.
//!
//! A request here takes the sidecar's request path with the HTTP exchange replaced by the
//! model: the breakers' certain refusal, the upstream's admission steps in their declared
//! order (`Admission::admit`), the calls around each attempt (`Calls::execute`), and in
//! each attempt the balancer's pick, the per-try timeout and `Balancer::finish`. Load is
//! open-loop (a request every `1 / rate`, whether or not the others are answered), each
//! request drawn critical or sheddable from a seeded generator, each waited for by a
//! client with its own timeout. Every request and attempt is tallied with its time, so a
//! scenario asserts figures over windows (see [`Tally`]).
//!
//! Every random choice is seeded, and the paused clock's runtime runs one task at a time
//! in a fixed order: a scenario runs the same every time. Its assertions still keep
//! margins, so a change of seed or of an unrelated detail does not fail them, while a
//! broken policy misses them by far.

mod model;
mod scenarios;
mod tally;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use palisade::Policy;
use palisade::criticality::{self, Criticality};
use palisade::outcome::classify_result;
use palisade_http::classify::{HttpClassifier, Replay};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::{Held, Upstream};
use crate::config::load::parse;
use crate::respond::Reason;
use model::{Answer, Model};
use tally::{Ending, Tally};

/// An upstream and its model endpoints.
struct Simulation {
    upstream: Upstream,
    /// In the balancer's order (primaries, then backups).
    endpoints: Vec<Arc<Model>>,
    classifier: HttpClassifier,
    client_timeout: Duration,
    tally: Tally,
}

// === impl Simulation ===

impl Simulation {
    /// The upstream `sim` of `config` (a sidecar config; its endpoints' addresses are
    /// names only), each endpoint modelled with `capacity` and `service`. Every random
    /// choice (the balancer's, the retries' jitter, the models') is seeded: a scenario
    /// runs the same every time.
    fn new(config: &str, capacity: usize, service: Duration) -> Arc<Self> {
        Self::with_capacities(config, &[capacity; 3], service)
    }

    /// Like [`new`](Self::new), endpoint `i` serving `capacities[i]` requests at once.
    fn with_capacities(config: &str, capacities: &[usize], service: Duration) -> Arc<Self> {
        let checked = parse("simulation.toml", config).expect("a valid config");
        let (config, policies) = checked
            .config
            .upstream
            .iter()
            .zip(&checked.upstreams)
            .find(|(u, _)| u.name == "sim")
            .expect("an upstream named sim");
        let mut policies = policies.clone();
        policies.retry.seed = Some(1);
        policies.breaker.seed = Some(2);
        let clock = palisade::clock::Clock::tokio();
        let mut upstream =
            Upstream::build(config, &policies, &clock, 1, None).expect("the upstream builds");
        upstream.balancer.seed(3);
        let endpoints = (0..upstream.endpoints().count())
            .map(|i| Arc::new(Model::new(capacities[i], service, 1000 + i as u64)))
            .collect();
        let classifier = HttpClassifier::new(upstream.retry_on.clone(), Replay::Safe);
        Arc::new(Self {
            upstream,
            endpoints,
            classifier,
            client_timeout: Duration::from_secs(2),
            tally: Tally::default(),
        })
    }

    /// Endpoint `index`'s model.
    fn endpoint(&self, index: usize) -> &Model {
        &self.endpoints[index]
    }

    /// What is left of endpoint `index`'s open time (zero unless its breaker is open).
    fn open_time_left(&self, index: usize) -> Duration {
        self.upstream
            .endpoints()
            .nth(index)
            .and_then(|e| e.breaker.as_ref())
            .and_then(|b| b.snapshot().retry_after)
            .unwrap_or_default()
    }

    /// What happened so far.
    fn tally(&self) -> &Tally {
        &self.tally
    }

    /// Offers `rate` requests a second for `period`, a `critical` share of them critical
    /// (the rest sheddable), drawn from `seed`; returns when the last was sent.
    async fn offer(self: &Arc<Self>, rate: f64, critical: f64, period: Duration, seed: u64) {
        let mut rng = SmallRng::seed_from_u64(seed);
        let gap = Duration::from_secs_f64(1.0 / rate);
        let count = (period.as_secs_f64() * rate).round() as u64;
        let mut next = tokio::time::Instant::now();
        for _ in 0..count {
            let class = if rng.random::<f64>() < critical {
                Criticality::Critical
            } else {
                Criticality::Sheddable
            };
            let sim = self.clone();
            tokio::spawn(async move { sim.request(class).await });
            next += gap;
            tokio::time::sleep_until(next).await;
        }
    }

    /// Waits until every request sent has had its answer or its client's timeout.
    async fn drain(&self) {
        tokio::time::sleep(self.client_timeout + Duration::from_millis(10)).await;
    }

    /// One request, as its client sees it.
    async fn request(self: Arc<Self>, class: Criticality) {
        let sent = tokio::time::Instant::now();
        let answer = tokio::time::timeout(
            self.client_timeout,
            criticality::scope(class, self.forward()),
        )
        .await;
        let ending = match answer {
            Err(_) => Ending::ClientTimeout,
            Ok(Handled::Refused(reason)) => Ending::Refused(reason),
            Ok(Handled::Answered(Ok(response))) if response.status().is_success() => Ending::Served,
            Ok(Handled::Answered(_)) => Ending::Failed,
        };
        self.tally.request(sent, class, ending, sent.elapsed());
    }

    /// The sidecar's request path with the model in place of the HTTP exchange.
    async fn forward(&self) -> Handled {
        let upstream = &self.upstream;
        if let Some(refused) = upstream.refusal() {
            return Handled::Answered(Err(refused));
        }
        let pipeline = &upstream.pipeline;
        let mut held = Held::default();
        for step in &pipeline.admission {
            if let Err(refused) = step.admit(&mut held).await {
                return Handled::Refused(refused.reason);
            }
        }
        let tried = AtomicU64::new(0);
        let last_took = AtomicU64::new(0);
        let result = pipeline
            .calls
            .execute(&self.classifier, || {
                Box::pin(self.attempt(&tried, &last_took))
            })
            .await;
        let outcome = classify_result(&self.classifier, &result);
        let last = Duration::from_nanos(last_took.load(Ordering::Relaxed));
        held.settle(pipeline, &self.classifier, &result, (&outcome, Some(last)));
        Handled::Answered(result)
    }

    /// One attempt, as `forward::Attempt::once` makes it.
    async fn attempt(&self, tried: &AtomicU64, last_took: &AtomicU64) -> Answer {
        let balancer = &self.upstream.balancer;
        let mut picked = balancer.pick(tried.load(Ordering::Relaxed))?;
        if picked.index < 64 {
            tried.fetch_or(1 << picked.index, Ordering::Relaxed);
        }
        self.tally.attempt(picked.index);
        let model = self.endpoints[picked.index].clone();
        let started = balancer.clock().now();
        let result = self
            .upstream
            .pipeline
            .per_try
            .execute(&self.classifier, || model.serve())
            .await;
        let finished = balancer.clock().now();
        let took = Duration::from_nanos(finished.saturating_sub(started));
        last_took.store(took.as_nanos() as u64, Ordering::Relaxed);
        let outcome = classify_result(&self.classifier, &result);
        balancer.finish(&mut picked, finished, took, &outcome);
        result
    }
}

/// What the sidecar did with a request.
enum Handled {
    /// An admission step refused it (shed, over the limit): a 503 from the proxy.
    Refused(Reason),
    /// The upstream's answer, or the error the policies ended with.
    Answered(Answer),
}

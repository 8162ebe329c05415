//! What a simulation's clients saw and its endpoints were sent, by time, and the
//! figures scenarios assert over windows of it.

use std::sync::Mutex;
use std::time::Duration;

use palisade::criticality::Criticality;
use tokio::time::Instant;

use crate::respond::Reason;

/// How a request ended for its client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Ending {
    /// A 2xx.
    Served,
    /// An error answer from the upstream or the policies (after any retries).
    Failed,
    /// Refused by an admission step before any attempt (shed, over the limit).
    Refused(Reason),
    /// Its client gave up waiting.
    ClientTimeout,
}

/// One request as its client saw it.
#[derive(Clone, Copy, Debug)]
struct Request {
    /// Since the simulation began.
    sent: Duration,
    class: Criticality,
    ending: Ending,
    took: Duration,
}

/// Every request and attempt so far.
pub(super) struct Tally {
    began: Instant,
    requests: Mutex<Vec<Request>>,
    /// When each attempt was sent, and to which endpoint.
    attempts: Mutex<Vec<(Duration, usize)>>,
}

impl Default for Tally {
    fn default() -> Self {
        Self {
            began: Instant::now(),
            requests: Mutex::default(),
            attempts: Mutex::default(),
        }
    }
}

// === impl Tally ===

impl Tally {
    pub(super) fn request(
        &self,
        sent: Instant,
        class: Criticality,
        ending: Ending,
        took: Duration,
    ) {
        let request = Request {
            sent: sent.duration_since(self.began),
            class,
            ending,
            took,
        };
        lock(&self.requests).push(request);
    }

    pub(super) fn attempt(&self, endpoint: usize) {
        let at = self.began.elapsed();
        lock(&self.attempts).push((at, endpoint));
    }

    /// The requests sent, and attempts made, from `from` to `to` (since the start).
    pub(super) fn window(&self, from: Duration, to: Duration) -> Window {
        let within = |at: Duration| at >= from && at < to;
        Window {
            requests: lock(&self.requests)
                .iter()
                .filter(|r| within(r.sent))
                .copied()
                .collect(),
            attempts: lock(&self.attempts)
                .iter()
                .filter(|(at, _)| within(*at))
                .map(|(_, endpoint)| *endpoint)
                .collect(),
        }
    }
}

/// A window's requests and attempts.
pub(super) struct Window {
    requests: Vec<Request>,
    attempts: Vec<usize>,
}

// === impl Window ===

impl Window {
    /// Requests sent in the window.
    pub(super) fn requests(&self) -> usize {
        self.requests.len()
    }

    /// The share of requests served, of `class` if given.
    pub(super) fn served(&self, class: Option<Criticality>) -> f64 {
        let of_class: Vec<&Request> = self
            .requests
            .iter()
            .filter(|r| class.is_none_or(|c| r.class == c))
            .collect();
        let served = of_class
            .iter()
            .filter(|r| r.ending == Ending::Served)
            .count();
        served as f64 / of_class.len().max(1) as f64
    }

    /// Requests that ended as `ending`.
    pub(super) fn ended(&self, ending: Ending) -> usize {
        self.requests.iter().filter(|r| r.ending == ending).count()
    }

    /// Requests of `class` refused, by reason.
    pub(super) fn refused(&self, class: Criticality) -> Vec<(&'static str, usize)> {
        let mut by_reason: Vec<(&'static str, usize)> = Vec::new();
        for request in self.requests.iter().filter(|r| r.class == class) {
            if let Ending::Refused(reason) = request.ending {
                match by_reason.iter_mut().find(|(r, _)| *r == reason.as_str()) {
                    Some((_, n)) => *n += 1,
                    None => by_reason.push((reason.as_str(), 1)),
                }
            }
        }
        by_reason
    }

    /// The `q` quantile of served requests' latencies.
    pub(super) fn latency(&self, q: f64) -> Duration {
        let mut took: Vec<Duration> = self
            .requests
            .iter()
            .filter(|r| r.ending == Ending::Served)
            .map(|r| r.took)
            .collect();
        took.sort();
        if took.is_empty() {
            return Duration::ZERO;
        }
        let at = ((took.len() - 1) as f64 * q).round() as usize;
        took[at]
    }

    /// Attempts sent to each of `endpoints` endpoints.
    pub(super) fn attempts_per_endpoint(&self, endpoints: usize) -> Vec<usize> {
        let mut counts = vec![0; endpoints];
        for &endpoint in &self.attempts {
            if let Some(count) = counts.get_mut(endpoint) {
                *count += 1;
            }
        }
        counts
    }

    /// Attempts per request sent: retries' and hedges' amplification of the load.
    pub(super) fn amplification(&self) -> f64 {
        self.attempts.len() as f64 / self.requests.len().max(1) as f64
    }

    /// The figures, for a failing assertion's message.
    pub(super) fn summary(&self) -> String {
        format!(
            "{} requests: {:.1}% served (critical {:.1}%), {} failed, refused {:?} (critical \
             {:?}), {} client timeouts; p50 {:?}, p99 {:?}; amplification {:.3}",
            self.requests(),
            100.0 * self.served(None),
            100.0 * self.served(Some(Criticality::Critical)),
            self.ended(Ending::Failed),
            self.refused(Criticality::Sheddable),
            self.refused(Criticality::Critical),
            self.ended(Ending::ClientTimeout),
            self.latency(0.5),
            self.latency(0.99),
            self.amplification(),
        )
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

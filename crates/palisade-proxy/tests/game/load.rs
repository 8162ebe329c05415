//! The outage game's load: an open-loop generator (requests leave on schedule whatever
//! the answers do), a share of them marked critical, each bounded by a client timeout;
//! and the tally of what came back, by phase and by class.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::task::JoinSet;
use tokio::time::{Instant, MissedTickBehavior, interval, timeout};

/// How long a client waits for an answer before it gives up.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(2);

/// One phase of the load: its rate and the share of it marked critical.
#[derive(Clone, Copy, Debug)]
pub struct Load {
    pub per_second: f64,
    pub critical_share: f64,
}

/// What one request got.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Outcome {
    /// A 2xx.
    Served,
    /// Any other status (the proxy's refusals and relayed failures).
    Failed(u16),
    /// No answer within the client timeout.
    TimedOut,
    /// The connection failed.
    Transport,
}

#[derive(Clone, Debug)]
pub struct Record {
    pub phase: usize,
    pub critical: bool,
    pub outcome: Outcome,
    /// `x-palisade-reason` of a failed answer (palisade's own refusals), or `upstream`.
    pub why: String,
    /// When it was sent, from the phase's start.
    pub sent: Duration,
    pub latency: Duration,
}

/// Every request's record.
#[derive(Clone, Default)]
pub struct Tally(Arc<Mutex<Vec<Record>>>);

/// Sends `load` to `url` for `length`, recording each request under `phase`; returns once
/// every request sent has its answer (at most the client timeout after the last).
pub async fn offer(url: &str, load: Load, length: Duration, phase: usize, tally: &Tally) {
    let client: Client<HttpConnector, Full<Bytes>> = Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(5))
        .build_http();
    let mut ticks = interval(Duration::from_secs_f64(1.0 / load.per_second));
    ticks.set_missed_tick_behavior(MissedTickBehavior::Burst);
    let begun = Instant::now();
    let end = begun + length;
    let mut sent = JoinSet::new();
    // Every n-th request is critical, spread evenly.
    let mut n = 0u64;
    while Instant::now() < end {
        ticks.tick().await;
        let critical = ((n + 1) as f64 * load.critical_share).floor()
            > (n as f64 * load.critical_share).floor();
        n += 1;
        let client = client.clone();
        let url = url.to_owned();
        let tally = tally.clone();
        sent.spawn(async move {
            let start = Instant::now();
            let offset = start - begun;
            let (outcome, why) = send(&client, &url, critical).await;
            tally.0.lock().unwrap().push(Record {
                phase,
                critical,
                outcome,
                why,
                sent: offset,
                latency: start.elapsed(),
            });
        });
    }
    while sent.join_next().await.is_some() {}
}

async fn send(
    client: &Client<HttpConnector, Full<Bytes>>,
    url: &str,
    critical: bool,
) -> (Outcome, String) {
    let class = if critical { "critical" } else { "sheddable" };
    let req = Request::get(url)
        .header("x-criticality", class)
        .body(Full::new(Bytes::new()))
        .expect("request");
    let call = async {
        let resp = client.request(req).await.map_err(|_| Outcome::Transport)?;
        let status = resp.status();
        let why = resp
            .headers()
            .get("x-palisade-reason")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("upstream")
            .to_owned();
        resp.into_body()
            .collect()
            .await
            .map_err(|_| Outcome::Transport)?;
        Ok(if status.is_success() {
            (Outcome::Served, String::new())
        } else {
            (Outcome::Failed(status.as_u16()), why)
        })
    };
    match timeout(CLIENT_TIMEOUT, call).await {
        Ok(Ok(answer)) => answer,
        Ok(Err(o)) => (o, "transport".to_owned()),
        Err(_) => (Outcome::TimedOut, "client timeout".to_owned()),
    }
}

// === impl Tally ===

/// Figures over a set of records.
#[derive(Clone, Copy, Debug, Default)]
pub struct Figures {
    pub sent: usize,
    pub served: usize,
    pub timed_out: usize,
    /// Of served requests.
    pub p50: Duration,
    pub p99: Duration,
}

impl Figures {
    pub fn served_share(&self) -> f64 {
        self.served as f64 / self.sent.max(1) as f64
    }
}

impl Tally {
    /// Requests of `phase` served, by the second of the phase they were sent in.
    pub fn served_by_second(&self, phase: usize) -> Vec<usize> {
        let mut by = Vec::new();
        for r in self.0.lock().unwrap().iter() {
            if r.phase == phase && r.outcome == Outcome::Served {
                let second = r.sent.as_secs() as usize;
                if by.len() <= second {
                    by.resize(second + 1, 0);
                }
                by[second] += 1;
            }
        }
        by
    }

    /// Requests not served in `phase`, by status and reason.
    pub fn failures(&self, phase: usize) -> BTreeMap<String, usize> {
        let mut by = BTreeMap::new();
        for r in self.0.lock().unwrap().iter() {
            if r.phase != phase || r.outcome == Outcome::Served {
                continue;
            }
            let status = match r.outcome {
                Outcome::Failed(s) => s.to_string(),
                _ => String::new(),
            };
            *by.entry(format!("{status} {}", r.why).trim().to_owned())
                .or_insert(0) += 1;
        }
        by
    }

    /// Figures of the records `keep` selects.
    pub fn figures(&self, keep: impl Fn(&Record) -> bool) -> Figures {
        let records = self.0.lock().unwrap();
        let kept: Vec<&Record> = records.iter().filter(|r| keep(r)).collect();
        let mut served: Vec<Duration> = kept
            .iter()
            .filter(|r| r.outcome == Outcome::Served)
            .map(|r| r.latency)
            .collect();
        served.sort();
        let at = |q: f64| {
            if served.is_empty() {
                Duration::ZERO
            } else {
                served[((served.len() - 1) as f64 * q).round() as usize]
            }
        };
        Figures {
            sent: kept.len(),
            served: served.len(),
            timed_out: kept
                .iter()
                .filter(|r| r.outcome == Outcome::TimedOut)
                .count(),
            p50: at(0.5),
            p99: at(0.99),
        }
    }
}

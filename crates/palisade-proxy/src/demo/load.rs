//! The demo's load generator and its tallies: the same requests, straight to each
//! upstream and through the proxy.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::time::Instant;

/// The most latencies kept per tally: memory stays bounded however long the demo runs.
const MAX_SAMPLES: usize = 200_000;

/// Straight to the upstream, or through Palisade.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Path {
    Direct,
    Palisade,
}

/// What happened to the requests of one upstream on one path.
#[derive(Clone, Debug, Default)]
pub(crate) struct Tally {
    pub(crate) sent: u64,
    pub(crate) ok: u64,
    pub(crate) fallback: u64,
    pub(crate) failed: u64,
    pub(crate) rejected: u64,
    pub(crate) retries: u64,
    pub(crate) latencies: Vec<Duration>,
}

impl Tally {
    pub(crate) fn finished(&self) -> u64 {
        self.ok + self.fallback + self.failed
    }

    pub(crate) fn waiting(&self) -> u64 {
        self.sent - self.finished()
    }

    /// Answered (2xx or fallback) ÷ `out_of`.
    pub(crate) fn answered_share(&self, out_of: u64) -> f64 {
        if out_of == 0 {
            0.0
        } else {
            (self.ok + self.fallback) as f64 / out_of as f64
        }
    }

    pub(crate) fn percentile(&self, p: f64) -> Option<Duration> {
        let mut sorted = self.latencies.clone();
        sorted.sort_unstable();
        let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
        sorted.get(index).copied()
    }
}

/// Tallies by (upstream, path).
pub(crate) type ByPath = BTreeMap<(&'static str, Path), Tally>;

/// Tallies for the last second and since the start.
#[derive(Clone, Default)]
pub(crate) struct Tallies {
    inner: Arc<Mutex<(ByPath, ByPath)>>,
}

/// How one request ended.
pub(crate) struct Ending {
    pub(crate) status: Option<u16>,
    pub(crate) fallback: bool,
    pub(crate) rejected: bool,
    pub(crate) attempts: u64,
}

impl Tallies {
    fn sent(&self, key: (&'static str, Path)) {
        let mut both = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        both.0.entry(key).or_default().sent += 1;
        both.1.entry(key).or_default().sent += 1;
    }

    fn ended(&self, key: (&'static str, Path), ending: &Ending, took: Duration) {
        let mut both = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let (second, total) = &mut *both;
        for map in [second, total] {
            let t = map.entry(key).or_default();
            match (ending.status, ending.fallback) {
                (_, true) => t.fallback += 1,
                (Some(status), false) if (200..300).contains(&status) => t.ok += 1,
                _ => t.failed += 1,
            }
            t.rejected += u64::from(ending.rejected);
            t.retries += ending.attempts.saturating_sub(1);
            if t.latencies.len() < MAX_SAMPLES {
                t.latencies.push(took);
            }
        }
    }

    /// The last second's tallies (then starts a new second; requests still waiting are
    /// carried over as sent).
    pub(crate) fn take_second(&self) -> ByPath {
        let mut both = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let second = std::mem::take(&mut both.0);
        for (key, t) in &second {
            both.0.entry(*key).or_default().sent += t.waiting();
        }
        second
    }

    /// The tallies since the start.
    pub(crate) fn total(&self) -> ByPath {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .1
            .clone()
    }
}

/// Sends one GET to `uri` every `every`, in its own task, recording how it ended.
pub(crate) async fn drive(
    tallies: Tallies,
    key: (&'static str, Path),
    uri: http::Uri,
    every: Duration,
    until: Instant,
) {
    let client: Client<HttpConnector, Empty<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let mut tick = tokio::time::interval(every);
    while Instant::now() < until {
        tick.tick().await;
        tallies.sent(key);
        let (client, tallies, uri) = (client.clone(), tallies.clone(), uri.clone());
        tokio::spawn(async move {
            let started = Instant::now();
            let ending = match client.get(uri).await {
                Ok(response) => {
                    let header = |name: &str| {
                        response
                            .headers()
                            .get(name)
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_owned)
                    };
                    let reason = header(crate::respond::REASON.as_str());
                    let ending = Ending {
                        status: Some(response.status().as_u16()),
                        fallback: header(crate::respond::FALLBACK.as_str()).is_some(),
                        rejected: matches!(
                            reason.as_deref(),
                            Some("circuit-open" | "bulkhead-full" | "rate-limited")
                        ),
                        attempts: header(crate::respond::ATTEMPTS.as_str())
                            .and_then(|v| v.parse().ok())
                            .unwrap_or(1),
                    };
                    let _ = response.into_body().collect().await;
                    ending
                }
                Err(_) => Ending {
                    status: None,
                    fallback: false,
                    rejected: false,
                    attempts: 1,
                },
            };
            tallies.ended(key, &ending, started.elapsed());
        });
    }
}

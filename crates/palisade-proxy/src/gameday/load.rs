//! The open-loop load: requests sent on a seeded schedule (exponential gaps, a Poisson
//! stream at the rate asked) whatever the answers, as real clients keep coming during an
//! incident; each answer recorded with when it was sent.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio::sync::Semaphore;
use tokio::time::Instant;

use super::experiment::LoadSpec;
use super::http::Client;
use super::journal::Second;

/// Requests waiting for their answer at once; one more counts as failed unsent, so a
/// dependency that hangs cannot pile up unbounded tasks.
const MAX_IN_FLIGHT: usize = 10_000;

/// One request's fate.
#[derive(Clone, Copy, Debug)]
pub(super) struct Record {
    /// When it was sent, milliseconds since the start.
    pub(super) sent_ms: u64,
    /// How long its answer took, milliseconds.
    pub(super) took_ms: f64,
    /// Answered 2xx or 3xx in time.
    pub(super) ok: bool,
}

/// Every answer so far, in the order they came. Bounded by the experiment's checks
/// (rate × duration).
#[derive(Default)]
pub(super) struct Tally {
    records: Mutex<Vec<Record>>,
}

// === impl Tally ===

impl Tally {
    fn push(&self, record: Record) {
        self.records
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(record);
    }

    /// The records sent within [`from_ms`, `to_ms`).
    pub(super) fn sent_between(&self, from_ms: u64, to_ms: u64) -> Vec<Record> {
        self.records
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|r| r.sent_ms >= from_ms && r.sent_ms < to_ms)
            .copied()
            .collect()
    }

    /// The share of the answers that came in the last `window_ms` before `now_ms` that
    /// were successful; none without answers.
    pub(super) fn recent_success(&self, now_ms: u64, window_ms: u64) -> Option<f64> {
        let records = self.records.lock().unwrap_or_else(|e| e.into_inner());
        let since = now_ms.saturating_sub(window_ms) as f64;
        let recent = records
            .iter()
            .rev()
            .take_while(|r| r.sent_ms as f64 + r.took_ms >= since);
        let (ok, all) = recent.fold((0u64, 0u64), |(ok, all), r| (ok + u64::from(r.ok), all + 1));
        (all > 0).then(|| ok as f64 / all as f64)
    }

    /// The load second by second, for `seconds` seconds, in one pass over the records.
    pub(super) fn seconds(&self, seconds: u64) -> Vec<Second> {
        let mut buckets = vec![(0u64, Vec::new()); seconds as usize];
        for record in self
            .records
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            if let Some((sent, latencies)) = buckets.get_mut((record.sent_ms / 1000) as usize) {
                *sent += 1;
                if record.ok {
                    latencies.push(record.took_ms);
                }
            }
        }
        (0..seconds)
            .zip(buckets)
            .map(|(t, (sent, mut latencies))| summary(t, sent, &mut latencies))
            .collect()
    }

    /// Second `t` of the load alone (the progress line's).
    pub(super) fn second(&self, t: u64) -> Second {
        let records = self.sent_between(t * 1000, (t + 1) * 1000);
        let mut latencies: Vec<f64> = records.iter().filter(|r| r.ok).map(|r| r.took_ms).collect();
        summary(t, records.len() as u64, &mut latencies)
    }
}

/// Second `t`: `sent` requests, the successful ones' `latencies`.
fn summary(t: u64, sent: u64, latencies: &mut [f64]) -> Second {
    let ok = latencies.len() as u64;
    Second {
        t,
        sent,
        ok,
        failed: sent - ok,
        p50_ms: percentile(latencies, 50.0),
        p99_ms: percentile(latencies, 99.0),
    }
}

/// The `p`th percentile (0–100) of `values`; none when empty.
pub(super) fn percentile(values: &mut [f64], p: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * values.len() as f64).ceil() as usize;
    values.get(rank.clamp(1, values.len()) - 1).copied()
}

/// The two groups' tallies: the experiment's, and the control group's if it has one.
#[derive(Clone, Default)]
pub(super) struct Tallies {
    pub(super) experiment: Arc<Tally>,
    pub(super) control: Arc<Tally>,
}

/// Sends `spec`'s load from `start` for `duration`, recording into `tallies` (a share of
/// the arrivals to the control group's URL, if any); returns when the last request was
/// sent (answers still on their way keep being recorded until their timeout).
pub(super) async fn offer(
    spec: LoadSpec,
    seed: u64,
    start: Instant,
    duration: Duration,
    client: Client,
    tallies: Tallies,
) {
    let mut rng = SmallRng::seed_from_u64(seed);
    // Checked before the run (`checks.rs`).
    let method = http::Method::from_bytes(spec.method.as_bytes()).unwrap_or(http::Method::GET);
    let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let mut next = start;
    let end = start + duration;
    loop {
        let gap = -(1.0 - rng.random::<f64>()).ln() / spec.rate;
        next += Duration::from_secs_f64(gap);
        if next >= end {
            return;
        }
        tokio::time::sleep_until(next).await;
        let sent_ms = start.elapsed().as_millis() as u64;
        let (url, tally) = match &spec.control {
            Some(control) if rng.random::<f64>() < control.share => {
                (control.url.clone(), tallies.control.clone())
            }
            _ => (spec.url.clone(), tallies.experiment.clone()),
        };
        let Ok(permit) = in_flight.clone().try_acquire_owned() else {
            tally.push(Record {
                sent_ms,
                took_ms: 0.0,
                ok: false,
            });
            continue;
        };
        let (client, limit, method) = (client.clone(), spec.timeout, method.clone());
        tokio::spawn(async move {
            let sent = Instant::now();
            let answer = client.send(method, &url, None, limit).await;
            let ok = matches!(&answer, Ok((status, _)) if status.is_success() || status.is_redirection());
            tally.push(Record {
                sent_ms,
                took_ms: sent.elapsed().as_secs_f64() * 1000.0,
                ok,
            });
            drop(permit);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_ranks_of_the_sorted_values() {
        let mut values: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&mut values, 50.0), Some(50.0));
        assert_eq!(percentile(&mut values, 99.0), Some(99.0));
        assert_eq!(percentile(&mut values, 100.0), Some(100.0));
        assert_eq!(percentile(&mut [], 50.0), None);
    }

    #[test]
    fn seconds_count_by_when_requests_were_sent() {
        let tally = Tally::default();
        for (sent_ms, ok) in [(10, true), (900, false), (1500, true), (1600, true)] {
            tally.push(Record {
                sent_ms,
                took_ms: 5.0,
                ok,
            });
        }
        let seconds = tally.seconds(3);
        assert_eq!(
            (seconds[0].sent, seconds[0].ok, seconds[0].failed),
            (2, 1, 1)
        );
        assert_eq!((seconds[1].sent, seconds[1].ok), (2, 2));
        assert_eq!((seconds[2].sent, seconds[2].p50_ms), (0, None));
    }
}

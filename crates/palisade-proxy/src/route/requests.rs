//! Request metrics of one route, with their handles looked up once.
//!
//! `palisade_requests_total{route, upstream, status, reason}` and
//! `palisade_request_duration_seconds{route, upstream}`, and the same answers in the
//! route's [`Tally`] for the dashboard. Asking the recorder for a labelled
//! metric hashes its labels and allocates them; on a path that answers tens of thousands
//! of requests a second, that happens once per (reason, status) pair here and every later
//! request only increments a cached handle.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use http::StatusCode;
use metrics::{Counter, Histogram};

use super::tally::Tally;
use crate::respond::Reason;

/// Status codes `http` accepts: 100 to 999.
const STATUSES: usize = 900;
const FIRST_STATUS: u16 = 100;

/// One counter per status, allocated when its reason is first seen.
type ByStatus = Box<[OnceLock<Counter>]>;

/// The request metrics of one route (or of requests no route matched).
pub struct RequestMetrics {
    route: Arc<str>,
    upstream: Arc<str>,
    duration: Histogram,
    /// Index 0: responses relayed from the upstream; `1 + reason.index()`: the proxy's own.
    by_reason: [OnceLock<ByStatus>; Reason::ALL.len() + 1],
    /// The same answers, per second, for the dashboard.
    tally: Tally,
}

impl RequestMetrics {
    /// Registers the duration histogram of `route` → `upstream` (empty strings when no
    /// route matched).
    pub fn new(route: &str, upstream: &str) -> Self {
        let duration = metrics::histogram!(
            "palisade_request_duration_seconds",
            "route" => route.to_owned(),
            "upstream" => upstream.to_owned()
        );
        Self {
            route: route.into(),
            upstream: upstream.into(),
            duration,
            by_reason: std::array::from_fn(|_| OnceLock::new()),
            tally: Tally::default(),
        }
    }

    /// Counts one answer, and its duration.
    pub fn record(&self, status: StatusCode, reason: Option<Reason>, took: Duration) {
        self.counter(status, reason).increment(1);
        self.duration.record(took.as_secs_f64());
        self.tally.record(status, reason, took);
    }

    /// The dashboard's counters of these answers.
    pub fn tally(&self) -> &Tally {
        &self.tally
    }

    fn counter(&self, status: StatusCode, reason: Option<Reason>) -> &Counter {
        let table = &self.by_reason[reason.map_or(0, |r| r.index() + 1)];
        let by_status = table.get_or_init(|| (0..STATUSES).map(|_| OnceLock::new()).collect());
        let slot = usize::from(status.as_u16().saturating_sub(FIRST_STATUS)).min(STATUSES - 1);
        by_status[slot].get_or_init(|| {
            metrics::counter!(
                "palisade_requests_total",
                "route" => self.route.to_string(),
                "upstream" => self.upstream.to_string(),
                "status" => status.as_str().to_owned(),
                "reason" => reason.map_or("upstream", Reason::as_str)
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_and_reason_has_its_own_slot() {
        let metrics = RequestMetrics::new("/a", "up");
        let ok = metrics.counter(StatusCode::OK, None) as *const Counter;
        let ok_again = metrics.counter(StatusCode::OK, None) as *const Counter;
        let refused = metrics.counter(StatusCode::OK, Some(Reason::CircuitOpen)) as *const Counter;
        let last = StatusCode::from_u16(999).unwrap_or(StatusCode::OK);
        let highest = metrics.counter(last, None) as *const Counter;
        assert_eq!(ok, ok_again, "a handle is looked up once");
        assert_ne!(ok, refused, "a reason has its own counter");
        assert_ne!(ok, highest, "a status has its own counter");
    }

    #[test]
    fn reason_indexes_follow_the_list() {
        for (i, reason) in Reason::ALL.iter().enumerate() {
            assert_eq!(reason.index(), i, "{reason:?}");
        }
    }
}

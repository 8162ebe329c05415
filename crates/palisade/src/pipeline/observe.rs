//! Optional per-call metrics for a pipeline.

use crate::Error;
use crate::clock::{Clock, Nanos};
use crate::events::names;
use crate::outcome::{Classify, Health, classify_result};

/// Counts calls by outcome and records their latency.
#[derive(Clone)]
pub(super) struct Observer {
    clock: Clock,
    success: metrics::Counter,
    failure: metrics::Counter,
    ignored: metrics::Counter,
    rejected: metrics::Counter,
    latency: metrics::Histogram,
}

impl std::fmt::Debug for Observer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Observer")
    }
}

impl Observer {
    pub(super) fn new(name: &str) -> Self {
        let counter = |outcome: &'static str| metrics::counter!(names::CALLS_TOTAL, "policy" => name.to_owned(), "outcome" => outcome);
        Self {
            clock: Clock::tokio(),
            success: counter("success"),
            failure: counter("failure"),
            ignored: counter("ignored"),
            rejected: counter("rejected"),
            latency: metrics::histogram!(names::CALL_DURATION_SECONDS, "policy" => name.to_owned()),
        }
    }

    pub(super) fn start(&self) -> Nanos {
        self.clock.now()
    }

    pub(super) fn finish<T, E, C>(
        &self,
        started: Nanos,
        classifier: &C,
        result: &Result<T, Error<E>>,
    ) where
        C: Classify<T, E> + ?Sized,
    {
        self.latency
            .record(self.clock.elapsed_since(started).as_secs_f64());
        let counter = match result {
            Err(e) if e.is_rejection() => &self.rejected,
            _ => match classify_result(classifier, result).health {
                Health::Success => &self.success,
                Health::Failure => &self.failure,
                Health::Ignored => &self.ignored,
            },
        };
        counter.increment(1);
    }
}

//! `palisade_sagas_parked{saga}`: how many sagas wait for an operator now, per saga.
//!
//! `palisade-saga` counts parkings (`palisade_saga_parked_total`), but a counter cannot
//! say whether a parked saga is still parked: an alert on it fires once and resolves by
//! itself while the saga waits. This gauge is the store's answer, read when `/metrics`
//! is scraped (as a Prometheus collector reads a database), so it falls back to 0 as soon
//! as an operator resumes, retries or aborts the saga, on every proxy sharing the store.
//!
//! The read is bounded: at most [`MAX_COUNTED`] parked sagas are counted, and a store
//! that does not answer within [`READ_TIMEOUT`] leaves the last values in place (the
//! scrape is not held up).

use std::collections::BTreeMap;
use std::time::Duration;

use palisade_saga::SagaState;

use super::Sagas;

/// The gauge's name.
pub const PARKED: &str = "palisade_sagas_parked";

/// The most parked sagas one scrape counts (the store's listing bound).
pub const MAX_COUNTED: usize = 10_000;

/// The longest a scrape waits for the store.
pub const READ_TIMEOUT: Duration = Duration::from_secs(1);

/// Sets the gauge of every configured saga from the store.
pub async fn refresh(sagas: &Sagas) {
    let listed = tokio::time::timeout(
        READ_TIMEOUT,
        sagas.runner().list(Some(SagaState::Parked), MAX_COUNTED),
    )
    .await;
    let rows = match listed {
        Ok(Ok(rows)) => rows,
        Ok(Err(error)) => {
            tracing::warn!(%error, "saga store: parked sagas not counted");
            return;
        }
        Err(_) => {
            tracing::warn!(timeout = ?READ_TIMEOUT, "saga store: parked sagas not counted in time");
            return;
        }
    };
    let counts = count(
        sagas.names.iter().map(String::as_str),
        rows.iter().map(|r| r.definition.as_str()),
    );
    for (saga, n) in counts {
        #[allow(clippy::cast_precision_loss)] // at most MAX_COUNTED
        metrics::gauge!(PARKED, "saga" => saga.to_owned()).set(n as f64);
    }
}

/// Parked sagas per name: every configured name (0 when none is parked), and any other
/// definition found parked (one no longer configured).
fn count<'a>(
    configured: impl Iterator<Item = &'a str>,
    parked: impl Iterator<Item = &'a str>,
) -> BTreeMap<&'a str, usize> {
    let mut counts: BTreeMap<&str, usize> = configured.map(|name| (name, 0)).collect();
    for name in parked {
        *counts.entry(name).or_default() += 1;
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_configured_saga_has_a_count_and_parked_ones_are_counted() {
        let counts = count(
            ["checkout", "refund"].into_iter(),
            ["checkout", "old", "checkout"].into_iter(),
        );
        let expected: BTreeMap<&str, usize> = [("checkout", 2), ("old", 1), ("refund", 0)]
            .into_iter()
            .collect();
        assert_eq!(counts, expected);
    }
}

//! The hypothesis that a sidecar's sagas end consistent: once the load has ended, every
//! saga it started is completed or compensated — none parked for an operator, none still
//! running or compensating after the time allowed. Read from the sidecar's
//! `/admin/sagas?state=…` every 250 ms until the sagas settle or the time is up.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;

use super::experiment::SagaExpectation;
use super::http::Client;

/// How long one read of the admin API may take.
const READ_TIMEOUT: Duration = Duration::from_secs(2);
/// How often the sagas are read while they settle.
const EVERY: Duration = Duration::from_millis(250);
/// Sagas read per state: the admin API's most.
const LIMIT: usize = 10_000;
/// The states a consistent saga ends in.
const SETTLED: [&str; 2] = ["completed", "compensated"];
/// The states that are not, yet: the first two may still end well, the last needs an
/// operator.
const UNSETTLED: [&str; 3] = ["running", "compensating", "parked"];

/// What the sagas came to.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Settlement {
    /// Sagas completed or compensated.
    pub(super) settled: usize,
    /// Sagas in each state that is not consistent, at the last read.
    pub(super) unsettled: BTreeMap<&'static str, usize>,
    /// How long after the load's end the last read was.
    pub(super) after: Duration,
    /// Why the sagas could not be read, if they could not.
    pub(super) error: Option<String>,
}

// === impl Settlement ===

impl Settlement {
    /// The verdict's measured text, and whether the sagas ended consistent.
    pub(super) fn judged(&self) -> (String, bool) {
        if let Some(error) = &self.error {
            return (format!("unreadable: {error}"), false);
        }
        let unsettled: Vec<String> = self
            .unsettled
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(state, n)| format!("{n} {state}"))
            .collect();
        let after = self.after.as_secs_f64();
        match (self.settled, unsettled.is_empty()) {
            (0, true) => ("no saga ran".to_owned(), false),
            (settled, true) => (format!("all {settled} consistent after {after:.2} s"), true),
            (settled, false) => (
                format!(
                    "{} after {after:.2} s ({settled} consistent)",
                    unsettled.join(", ")
                ),
                false,
            ),
        }
    }
}

/// Reads the sagas of `spec` until none is unsettled or `spec.within` has passed since
/// `load_ended`; the settled ones are counted once, at the end.
pub(super) async fn settle(
    spec: &SagaExpectation,
    client: &Client,
    load_ended: Instant,
) -> Settlement {
    let mut settlement = loop {
        let mut settlement = unsettled(spec, client).await;
        settlement.after = load_ended.elapsed();
        let done = settlement.error.is_none() && settlement.unsettled.values().all(|n| *n == 0);
        if done || settlement.after >= spec.within {
            break settlement;
        }
        tokio::time::sleep(EVERY).await;
    };
    if settlement.error.is_none() {
        for state in SETTLED {
            match count(spec, client, state).await {
                Ok(n) => settlement.settled += n,
                Err(error) => settlement.error = Some(error),
            }
        }
    }
    settlement
}

/// The sagas of `spec` in each state that is not consistent (yet).
async fn unsettled(spec: &SagaExpectation, client: &Client) -> Settlement {
    let mut settlement = Settlement::default();
    for state in UNSETTLED {
        match count(spec, client, state).await {
            Ok(n) => {
                settlement.unsettled.insert(state, n);
            }
            Err(error) => {
                settlement.error = Some(error);
                return settlement;
            }
        }
    }
    settlement
}

/// The sagas of `spec`'s saga (or every saga) in `state`.
async fn count(spec: &SagaExpectation, client: &Client, state: &str) -> Result<usize, String> {
    let url = format!(
        "{}/admin/sagas?state={state}&limit={LIMIT}",
        spec.admin.trim_end_matches('/')
    );
    let (status, body) = client.get(&url, READ_TIMEOUT).await?;
    if !status.is_success() {
        return Err(format!(
            "{url}: {status} {}",
            String::from_utf8_lossy(&body)
        ));
    }
    let answer: Value = serde_json::from_slice(&body).map_err(|e| format!("{url}: {e}"))?;
    let sagas = answer["sagas"]
        .as_array()
        .ok_or_else(|| format!("{url}: no sagas list"))?;
    Ok(sagas
        .iter()
        .filter(|s| {
            spec.saga
                .as_ref()
                .is_none_or(|name| s["saga"] == name.as_str())
        })
        .count())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settlement(settled: usize, unsettled: &[(&'static str, usize)]) -> Settlement {
        Settlement {
            settled,
            unsettled: unsettled.iter().copied().collect(),
            after: Duration::from_millis(1500),
            error: None,
        }
    }

    #[test]
    fn sagas_all_completed_or_compensated_are_consistent() {
        let judged = settlement(12, &[("running", 0), ("parked", 0)]).judged();
        assert_eq!(judged, ("all 12 consistent after 1.50 s".to_owned(), true));
    }

    #[test]
    fn a_parked_or_unfinished_saga_fails_and_is_named() {
        let (measured, passed) = settlement(9, &[("parked", 2), ("running", 1)]).judged();
        assert!(!passed);
        assert_eq!(measured, "2 parked, 1 running after 1.50 s (9 consistent)");
    }

    #[test]
    fn no_saga_at_all_proves_nothing() {
        assert_eq!(
            settlement(0, &[]).judged(),
            ("no saga ran".to_owned(), false)
        );
        let unreadable = Settlement {
            error: Some("refused".into()),
            ..Settlement::default()
        };
        assert!(!unreadable.judged().1);
    }
}

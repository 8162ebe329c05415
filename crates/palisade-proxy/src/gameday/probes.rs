//! Probes: a metric of a Prometheus-format page, an HTTP check's status, or the state of
//! an alert in the run's Prometheus (`prometheus.rs`), sampled through the run into a
//! series.

use std::sync::Mutex;
use std::time::Duration;

use std::collections::BTreeMap;

use serde_json::Value;

use super::experiment::{AlertExpectation, ProbeSpec};
use super::http::Client;
use super::journal::Series;

/// How long a scrape may take.
const SCRAPE_TIMEOUT: Duration = Duration::from_millis(500);

/// A metric name with the labels a sample must carry.
#[derive(Clone, Debug, PartialEq)]
pub struct Selector {
    name: String,
    labels: Vec<(String, String)>,
}

/// One probe and what it sampled.
pub(super) struct Probe {
    name: String,
    source: Source,
    points: Mutex<Vec<(u64, f64)>>,
}

/// Where a probe reads its value.
enum Source {
    /// The sum of a metric's matching samples on a Prometheus-format page.
    Metric { page: String, selector: Selector },
    /// The status of a GET of a URL; 0 when nothing answers in time.
    Check { url: String },
    /// The state of an alert in a Prometheus's alerts API: 0 inactive, 1 pending, 2
    /// firing (the most advanced of the alerts with that name and labels).
    Alert {
        api: String,
        name: String,
        labels: BTreeMap<String, String>,
    },
}

/// An alert's state as a probe's value.
pub const FIRING: f64 = 2.0;

// === impl Selector ===

impl Selector {
    /// `name` or `name{label="value",...}`; none if it is neither.
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        let (name, rest) = match text.find('{') {
            Some(i) => (&text[..i], Some(&text[i + 1..])),
            None => (text, None),
        };
        let valid_name = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':');
        if !valid_name {
            return None;
        }
        let labels = match rest {
            None => Vec::new(),
            Some(rest) => labels(rest.strip_suffix('}')?)?,
        };
        Some(Self {
            name: name.to_owned(),
            labels,
        })
    }

    /// The sum of the samples on `page` (Prometheus text format) that match; none when
    /// none does.
    pub fn sum(&self, page: &str) -> Option<f64> {
        let mut total = None;
        for line in page.lines().filter(|l| !l.starts_with('#')) {
            let Some((series, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let Some(sample) = Selector::parse(series) else {
                continue;
            };
            let matches =
                sample.name == self.name && self.labels.iter().all(|l| sample.labels.contains(l));
            let value = value.trim().parse::<f64>().ok().filter(|v| v.is_finite());
            if let (true, Some(value)) = (matches, value) {
                total = Some(total.unwrap_or(0.0) + value);
            }
        }
        total
    }
}

/// The state of the alerts named `name` carrying `labels` in an answer of Prometheus's
/// `/api/v1/alerts`: 2 when one fires, 1 when one is pending, 0 when none; none when
/// the answer is not that API's.
fn alert_state(body: &[u8], name: &str, labels: &BTreeMap<String, String>) -> Option<f64> {
    let answer: Value = serde_json::from_slice(body).ok()?;
    let alerts = answer.get("data")?.get("alerts")?.as_array()?;
    let carries = |alert: &Value| {
        let own = &alert["labels"];
        own["alertname"] == name && labels.iter().all(|(k, v)| own[k.as_str()] == v.as_str())
    };
    let state = alerts
        .iter()
        .filter(|alert| carries(alert))
        .map(|alert| match alert["state"].as_str() {
            Some("firing") => FIRING,
            Some("pending") => 1.0,
            _ => 0.0,
        })
        .fold(0.0, f64::max);
    Some(state)
}

/// `a="x",b="y"` as pairs; none if malformed.
fn labels(text: &str) -> Option<Vec<(String, String)>> {
    let mut pairs = Vec::new();
    let mut rest = text.trim();
    while !rest.is_empty() {
        let (key, after) = rest.split_once('=')?;
        let after = after.trim_start().strip_prefix('"')?;
        let end = after.find('"')?;
        pairs.push((key.trim().to_owned(), after[..end].to_owned()));
        rest = after[end + 1..]
            .trim_start()
            .trim_start_matches(',')
            .trim_start();
    }
    Some(pairs)
}

// === impl Probe ===

impl Probe {
    pub(super) fn new(spec: ProbeSpec) -> Option<Self> {
        let source = match (spec.http, spec.metrics, spec.metric) {
            (Some(url), None, None) => Source::Check { url },
            (None, Some(page), Some(metric)) => Source::Metric {
                page,
                selector: Selector::parse(&metric)?,
            },
            _ => return None,
        };
        Some(Self {
            name: spec.name,
            source,
            points: Mutex::new(Vec::new()),
        })
    }

    /// A probe of `alert`'s state in the alerts API at `api`, named as the alert's
    /// series ([`AlertExpectation::series_name`]).
    pub(super) fn alert(alert: &AlertExpectation, api: String) -> Self {
        Self {
            name: alert.series_name(),
            source: Source::Alert {
                api,
                name: alert.name.clone(),
                labels: alert.labels.clone(),
            },
            points: Mutex::new(Vec::new()),
        }
    }

    /// Reads once and keeps the value at `at_ms` (nothing when the page, the metric or
    /// the API's answer is missing).
    pub(super) async fn sample(&self, client: &Client, at_ms: u64) {
        let url = match &self.source {
            Source::Metric { page, .. } => page,
            Source::Check { url } => url,
            Source::Alert { api, .. } => api,
        };
        let answer = client.get(url, SCRAPE_TIMEOUT).await;
        let value = match (&self.source, answer) {
            (Source::Check { .. }, Ok((status, _))) => Some(f64::from(status.as_u16())),
            (Source::Check { .. }, Err(_)) => Some(0.0),
            (_, Ok((status, _))) if !status.is_success() => None,
            (_, Err(_)) => None,
            (Source::Metric { selector, .. }, Ok((_, body))) => {
                selector.sum(&String::from_utf8_lossy(&body))
            }
            (Source::Alert { name, labels, .. }, Ok((_, body))) => alert_state(&body, name, labels),
        };
        if let Some(value) = value {
            self.points
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((at_ms, value));
        }
    }

    /// Its name: the file's, or its alert's series name.
    pub(super) fn name(&self) -> &str {
        &self.name
    }

    /// What it sampled.
    pub(super) fn series(&self) -> Series {
        Series {
            name: self.name.clone(),
            points: self
                .points
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_selector_sums_the_samples_carrying_its_labels() {
        let page = "# HELP x\n\
            palisade_circuit_state{policy=\"a\",endpoint=\"1\"} 1\n\
            palisade_circuit_state{policy=\"a\",endpoint=\"2\"} 2\n\
            palisade_circuit_state{policy=\"b\"} 4\n\
            other 9\n";
        let a = Selector::parse("palisade_circuit_state{policy=\"a\"}").expect("valid");
        assert_eq!(a.sum(page), Some(3.0));
        let all = Selector::parse("palisade_circuit_state").expect("valid");
        assert_eq!(all.sum(page), Some(7.0));
        let none = Selector::parse("palisade_circuit_state{policy=\"c\"}").expect("valid");
        assert_eq!(none.sum(page), None);
    }

    #[test]
    fn an_alerts_state_is_read_from_the_alerts_api() {
        let body = br#"{"status":"success","data":{"alerts":[
            {"labels":{"alertname":"Burn","route":"/a"},"state":"pending"},
            {"labels":{"alertname":"Burn","route":"/b"},"state":"firing"},
            {"labels":{"alertname":"Other"},"state":"firing"}]}}"#;
        let labels = |route: &str| BTreeMap::from([("route".to_owned(), route.to_owned())]);
        assert_eq!(alert_state(body, "Burn", &BTreeMap::new()), Some(FIRING));
        assert_eq!(alert_state(body, "Burn", &labels("/a")), Some(1.0));
        assert_eq!(alert_state(body, "Burn", &labels("/c")), Some(0.0));
        assert_eq!(alert_state(body, "Missing", &BTreeMap::new()), Some(0.0));
        assert_eq!(alert_state(b"<html>", "Burn", &BTreeMap::new()), None);
        assert_eq!(alert_state(b"{}", "Burn", &BTreeMap::new()), None);
    }

    #[test]
    fn malformed_selectors_are_refused() {
        for bad in ["", "{a=\"b\"}", "x{a=b}", "x{a=\"b\"", "bad name"] {
            assert!(Selector::parse(bad).is_none(), "{bad:?}");
        }
    }
}

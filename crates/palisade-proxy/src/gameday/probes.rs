//! Probes: a metric of a Prometheus-format page, sampled through the run into a series.

use std::sync::Mutex;
use std::time::Duration;

use super::experiment::ProbeSpec;
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
    pub(super) spec: ProbeSpec,
    selector: Selector,
    points: Mutex<Vec<(u64, f64)>>,
}

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
        let selector = Selector::parse(&spec.metric)?;
        Some(Self {
            spec,
            selector,
            points: Mutex::new(Vec::new()),
        })
    }

    /// Scrapes once and keeps the value at `at_ms` (nothing when the page or the metric
    /// is missing).
    pub(super) async fn sample(&self, client: &Client, at_ms: u64) {
        let Ok((status, body)) = client.get(&self.spec.metrics, SCRAPE_TIMEOUT).await else {
            return;
        };
        if !status.is_success() {
            return;
        }
        if let Some(value) = self.selector.sum(&String::from_utf8_lossy(&body)) {
            self.points
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((at_ms, value));
        }
    }

    /// What it sampled.
    pub(super) fn series(&self) -> Series {
        Series {
            name: self.spec.name.clone(),
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
    fn malformed_selectors_are_refused() {
        for bad in ["", "{a=\"b\"}", "x{a=b}", "x{a=\"b\"", "bad name"] {
            assert!(Selector::parse(bad).is_none(), "{bad:?}");
        }
    }
}

//! Prometheus text read back: the samples of a `/metrics` exposition, and lookups by
//! name and labels.

use std::collections::BTreeMap;

/// One sample: labels and value.
#[derive(Clone, Debug)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// Every sample in a Prometheus text exposition.
pub fn samples(text: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (name_labels, value) = match line.rfind('}') {
            Some(close) => (&line[..=close], line[close + 1..].trim()),
            None => match line.split_once(char::is_whitespace) {
                Some((n, v)) => (n, v.trim()),
                None => continue,
            },
        };
        let value = value.split_whitespace().next().unwrap_or("");
        let value = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => match v.parse::<f64>() {
                Ok(v) => v,
                Err(_) => continue,
            },
        };
        let (name, labels) = match name_labels.find('{') {
            Some(open) => (
                &name_labels[..open],
                parse_labels(&name_labels[open + 1..name_labels.len() - 1]),
            ),
            None => (name_labels, BTreeMap::new()),
        };
        out.push(Sample {
            name: name.to_owned(),
            labels,
            value,
        });
    }
    out
}

fn parse_labels(s: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut rest = s;
    loop {
        rest = rest.trim_start_matches([',', ' ']);
        let Some(eq) = rest.find('=') else { break };
        let key = rest[..eq].trim().to_owned();
        rest = &rest[eq + 1..];
        let Some(stripped) = rest.strip_prefix('"') else {
            break;
        };
        let mut value = String::new();
        let mut chars = stripped.char_indices();
        let mut end = stripped.len();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, n)) = chars.next() {
                        value.push(match n {
                            'n' => '\n',
                            other => other,
                        });
                    }
                }
                '"' => {
                    end = i + 1;
                    break;
                }
                c => value.push(c),
            }
        }
        out.insert(key, value);
        rest = &stripped[end..];
    }
    out
}

/// Samples named exactly `name` whose labels include every `(key, value)` of `with`.
pub fn matching<'a>(all: &'a [Sample], name: &str, with: &[(&str, &str)]) -> Vec<&'a Sample> {
    all.iter()
        .filter(|s| s.name == name)
        .filter(|s| {
            with.iter()
                .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .collect()
}

/// The sum of those samples.
pub fn sum(all: &[Sample], name: &str, with: &[(&str, &str)]) -> f64 {
    matching(all, name, with).iter().map(|s| s.value).sum()
}

/// Whether any sample's name is `name` or starts with `name_` (histogram series).
pub fn has_metric(all: &[Sample], name: &str) -> bool {
    all.iter().any(|s| {
        s.name == name
            || s.name
                .strip_prefix(name)
                .is_some_and(|r| r.starts_with('_'))
    })
}

/// `promtool ARGS…` (bounded: 60 s): success, and its output.
pub async fn promtool(args: &[&std::ffi::OsStr]) -> (bool, String) {
    let run = tokio::process::Command::new("promtool")
        .args(args)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(super::secs(60), run)
        .await
        .expect("promtool ends within 60 s")
        .expect("promtool runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

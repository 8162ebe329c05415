//! A steady-state probe's tolerance: what its output must be for the hypothesis to hold.
//!
//! The output of an http probe is `{status, headers, body}` and of a process probe
//! `{status, stdout, stderr}`, as in Chaos Toolkit, so the forms mean:
//! - an integer: the status (HTTP status or exit code) equals it;
//! - a list of integers: the status is one of them — for these outputs Chaos Toolkit
//!   reads `[200, 299]` as "200 or 299", not as a range, and so does this;
//! - `{type: range, range: [lo, hi], target?}`: the target (default `status`), a number
//!   or text holding one, lies within `lo..=hi`;
//! - `{type: regex, pattern, target?}`: the pattern is found in the target (default
//!   `body` or `stdout`); a JSON body is matched as its compact text;
//! - a boolean: `true` holds when the probe succeeded (HTTP status below 400, exit code
//!   0), `false` when it did not. Chaos Toolkit compares the whole output with the
//!   boolean, which for these providers never holds; this reading is the useful one.
//!
//! Refused when the file is read: `jsonpath` and `probe` tolerances, strings (equal to the
//! whole output, which is never a string here), floats and anything else.

use regex::Regex;
use serde_json::Value;

/// Which provider produced an output: it decides the default targets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Produced {
    /// `{status, headers, body}`
    Http,
    /// `{status, stdout, stderr}`
    Process,
}

// === impl Produced ===

impl Produced {
    /// The keys of its output.
    fn fields(self) -> &'static [&'static str] {
        match self {
            Produced::Http => &["status", "headers", "body"],
            Produced::Process => &["status", "stdout", "stderr"],
        }
    }

    fn text_field(self) -> &'static str {
        match self {
            Produced::Http => "body",
            Produced::Process => "stdout",
        }
    }
}

/// A tolerance, checked.
#[derive(Clone, Debug)]
pub enum Tolerance {
    /// The probe succeeded (true) or did not (false).
    Succeeded(bool),
    /// The status is one of these.
    Status(Vec<i64>),
    /// The target's number lies within `lo..=hi`.
    Range {
        /// The output's key.
        target: String,
        /// Lowest allowed.
        lo: f64,
        /// Highest allowed.
        hi: f64,
    },
    /// The pattern is found in the target's text.
    Regex {
        /// The output's key.
        target: String,
        /// The compiled pattern.
        pattern: Regex,
    },
}

// === impl Tolerance ===

impl Tolerance {
    /// Reads `value` (already substituted) for a probe of `produced`; the problem's
    /// sub-path (`""`, `.range`, `[1]`) and message when it is not supported.
    pub(super) fn parse(value: &Value, produced: Produced) -> Result<Self, (String, String)> {
        let here = |m: &str| (String::new(), m.to_owned());
        match value {
            Value::Bool(b) => Ok(Tolerance::Succeeded(*b)),
            Value::Number(n) => n.as_i64().map(|i| Tolerance::Status(vec![i])).ok_or_else(|| {
                here("a number tolerance must be an integer (a status or exit code); allowed: an integer, a list of them, a boolean, a range or regex tolerance")
            }),
            Value::Array(items) => {
                let mut codes = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    match item.as_i64() {
                        Some(code) => codes.push(code),
                        None => {
                            return Err((
                                format!("[{i}]"),
                                "a list tolerance holds integers (statuses or exit codes); allowed: integers".into(),
                            ));
                        }
                    }
                }
                if codes.is_empty() {
                    return Err(here("an empty list tolerance never holds; allowed: one or more integers"));
                }
                Ok(Tolerance::Status(codes))
            }
            Value::String(_) => Err(here(
                "a string tolerance is compared with the whole output, which for http and process probes is an object and never equal; allowed: an integer, a list, a boolean, or {type: regex, pattern}",
            )),
            Value::Object(map) => Self::parse_dict(map, produced),
            Value::Null => Err(here("no tolerance given; allowed: an integer, a list of integers, a boolean, a range or regex tolerance")),
        }
    }

    fn parse_dict(
        map: &serde_json::Map<String, Value>,
        produced: Produced,
    ) -> Result<Self, (String, String)> {
        let kind = map.get("type").and_then(Value::as_str).unwrap_or("");
        let allowed: &[&str] = match kind {
            "range" => &["type", "range", "target"],
            "regex" => &["type", "pattern", "target"],
            "jsonpath" => {
                return Err((
                    ".type".into(),
                    "jsonpath tolerances are not supported; allowed: range, regex (on the body), an integer, a list or a boolean".into(),
                ));
            }
            "probe" => {
                return Err((
                    ".type".into(),
                    "a probe as tolerance is not supported; allowed: range, regex, an integer, a list or a boolean".into(),
                ));
            }
            _ => {
                return Err((
                    ".type".into(),
                    format!("tolerance type {kind:?} is not known; allowed: range, regex"),
                ));
            }
        };
        if let Some(key) = map.keys().find(|k| !allowed.contains(&k.as_str())) {
            return Err((
                format!(".{key}"),
                format!("unknown key; allowed: {}", allowed.join(", ")),
            ));
        }
        let target = match map.get("target") {
            None => None,
            Some(Value::String(t)) if produced.fields().contains(&t.as_str()) => Some(t.clone()),
            Some(_) => {
                return Err((
                    ".target".into(),
                    format!(
                        "not a key of this probe's output; allowed: {}",
                        produced.fields().join(", ")
                    ),
                ));
            }
        };
        if kind == "range" {
            let bounds = map.get("range").and_then(Value::as_array);
            let pair = bounds.and_then(|b| match b.as_slice() {
                [lo, hi] => Some((lo.as_f64()?, hi.as_f64()?)),
                _ => None,
            });
            return match pair {
                Some((lo, hi)) if lo <= hi => Ok(Tolerance::Range {
                    target: target.unwrap_or_else(|| "status".into()),
                    lo,
                    hi,
                }),
                _ => Err((
                    ".range".into(),
                    "a range is two numbers, the lower first; allowed: [lo, hi]".into(),
                )),
            };
        }
        let Some(pattern) = map.get("pattern").and_then(Value::as_str) else {
            return Err((
                ".pattern".into(),
                "a regex tolerance needs its pattern, as text".into(),
            ));
        };
        let pattern = Regex::new(pattern).map_err(|e| {
            (
                ".pattern".into(),
                format!("not a valid regular expression: {e}"),
            )
        })?;
        Ok(Tolerance::Regex {
            target: target.unwrap_or_else(|| produced.text_field().into()),
            pattern,
        })
    }

    /// Whether `output` (the probe's `{status, …}`) is within this tolerance.
    pub(super) fn holds(&self, output: &Value, produced: Produced) -> bool {
        let status = output.get("status").and_then(Value::as_i64);
        match self {
            Tolerance::Succeeded(expected) => {
                let succeeded = match (produced, status) {
                    (Produced::Http, Some(s)) => s < 400,
                    (Produced::Process, Some(s)) => s == 0,
                    (_, None) => false,
                };
                succeeded == *expected
            }
            Tolerance::Status(codes) => status.is_some_and(|s| codes.contains(&s)),
            Tolerance::Range { target, lo, hi } => {
                let number = match output.get(target) {
                    Some(Value::Number(n)) => n.as_f64(),
                    Some(Value::String(s)) => s.trim().parse::<f64>().ok(),
                    _ => None,
                };
                number.is_some_and(|n| *lo <= n && n <= *hi)
            }
            Tolerance::Regex { target, pattern } => match output.get(target) {
                Some(Value::String(text)) => pattern.is_match(text),
                Some(Value::Null) | None => false,
                Some(other) => pattern.is_match(&other.to_string()),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn parse(v: Value, p: Produced) -> Tolerance {
        Tolerance::parse(&v, p).unwrap()
    }

    fn refused(v: Value) -> (String, String) {
        Tolerance::parse(&v, Produced::Http).unwrap_err()
    }

    #[test]
    fn an_integer_or_a_list_is_the_status() {
        let ok = json!({"status": 200, "headers": {}, "body": "x"});
        let bad = json!({"status": 503, "headers": {}, "body": "x"});
        assert!(parse(json!(200), Produced::Http).holds(&ok, Produced::Http));
        assert!(!parse(json!(200), Produced::Http).holds(&bad, Produced::Http));
        // As in Chaos Toolkit for outputs with a status: membership, not a range.
        let list = parse(json!([200, 299]), Produced::Http);
        assert!(list.holds(&ok, Produced::Http));
        assert!(!list.holds(&json!({"status": 250}), Produced::Http));
        let exit = parse(json!(0), Produced::Process);
        assert!(exit.holds(
            &json!({"status": 0, "stdout": "", "stderr": ""}),
            Produced::Process
        ));
        assert!(!exit.holds(&json!({"status": 1}), Produced::Process));
    }

    #[test]
    fn a_boolean_is_whether_the_probe_succeeded() {
        let t = parse(json!(true), Produced::Http);
        assert!(t.holds(&json!({"status": 204}), Produced::Http));
        assert!(!t.holds(&json!({"status": 500}), Produced::Http));
        let f = parse(json!(false), Produced::Process);
        assert!(f.holds(&json!({"status": 2}), Produced::Process));
        assert!(!f.holds(&json!({"status": 0}), Produced::Process));
        assert!(!t.holds(&Value::Null, Produced::Http));
    }

    #[test]
    fn a_range_reads_the_status_or_a_number_in_text() {
        let t = parse(
            json!({"type": "range", "range": [200, 299]}),
            Produced::Http,
        );
        assert!(t.holds(&json!({"status": 250}), Produced::Http));
        assert!(!t.holds(&json!({"status": 300}), Produced::Http));
        let t = parse(
            json!({"type": "range", "range": [0.5, 2], "target": "stdout"}),
            Produced::Process,
        );
        assert!(t.holds(&json!({"status": 0, "stdout": " 1.5\n"}), Produced::Process));
        assert!(!t.holds(&json!({"status": 0, "stdout": "2.5"}), Produced::Process));
        assert!(!t.holds(&json!({"status": 0, "stdout": "many"}), Produced::Process));
    }

    #[test]
    fn a_regex_searches_the_body_or_stdout() {
        let t = parse(json!({"type": "regex", "pattern": "^ok"}), Produced::Http);
        assert!(t.holds(
            &json!({"status": 200, "body": "ok from app"}),
            Produced::Http
        ));
        assert!(!t.holds(&json!({"status": 200, "body": "not ok"}), Produced::Http));
        // A JSON body is matched as its text.
        let t = parse(
            json!({"type": "regex", "pattern": "\"up\":true"}),
            Produced::Http,
        );
        assert!(t.holds(
            &json!({"status": 200, "body": {"up": true}}),
            Produced::Http
        ));
        let t = parse(
            json!({"type": "regex", "pattern": "ready"}),
            Produced::Process,
        );
        assert!(t.holds(
            &json!({"status": 0, "stdout": "all ready\n"}),
            Produced::Process
        ));
        let t = parse(
            json!({"type": "regex", "pattern": "warn", "target": "stderr"}),
            Produced::Process,
        );
        assert!(!t.holds(
            &json!({"status": 0, "stdout": "warn", "stderr": ""}),
            Produced::Process
        ));
    }

    #[test]
    fn unsupported_forms_are_refused_with_where_and_what() {
        let (at, why) = refused(json!({"type": "jsonpath", "path": "$.a"}));
        assert_eq!(at, ".type");
        assert!(
            why.contains("jsonpath tolerances are not supported"),
            "{why}"
        );
        assert!(
            refused(json!({"type": "probe"}))
                .1
                .contains("not supported")
        );
        assert!(refused(json!("200")).1.contains("string tolerance"));
        assert!(refused(json!(1.5)).1.contains("integer"));
        assert_eq!(refused(json!([200, "x"])).0, "[1]");
        assert_eq!(
            refused(json!({"type": "range", "range": [3, 1]})).0,
            ".range"
        );
        assert_eq!(refused(json!({"type": "range", "range": [1]})).0, ".range");
        assert_eq!(
            refused(json!({"type": "regex", "pattern": "("})).0,
            ".pattern"
        );
        assert_eq!(
            refused(json!({"type": "regex", "pattern": "a", "path": "x"})).0,
            ".path"
        );
        assert_eq!(
            refused(json!({"type": "regex", "pattern": "a", "target": "stdout"})).0,
            ".target"
        );
        assert_eq!(refused(json!({"type": "other"})).0, ".type");
    }
}

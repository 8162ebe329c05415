//! The journal as JUnit XML, the format every CI system shows as tests.
//!
//! One `<testsuite>` named after the experiment's title; one `<testcase>` per hypothesis,
//! failed with the measured value and the threshold in its message; a failed testcase for
//! an abort and for each fault never removed. The file's result always agrees with the
//! run's: a journal that did not pass yet names no failure gets a failed `run` testcase,
//! so CI never shows green for an exit code of 1. Times are in seconds; a verdict is a
//! judgement over a window rather than a timed test, so its testcase's time is 0.

use std::fmt::Write as _;

use super::text::{duration, escape, junit_seconds};
use crate::gameday::journal::{FaultWindow, Journal, Verdict};

/// The JUnit XML report of `journal`.
pub fn junit(journal: &Journal) -> String {
    let cases = testcases(journal);
    let failures = cases.iter().filter(|c| c.failure.is_some()).count();
    let time = junit_seconds(journal.duration_ms);
    let suite = escape(&journal.title);

    let mut xml = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        xml,
        "<testsuites name=\"palisade gameday\" tests=\"{}\" failures=\"{failures}\" errors=\"0\" time=\"{time}\">",
        cases.len()
    );
    let _ = writeln!(
        xml,
        "  <testsuite name=\"{suite}\" tests=\"{}\" failures=\"{failures}\" errors=\"0\" skipped=\"0\" time=\"{time}\" timestamp=\"{}\">",
        cases.len(),
        escape(&journal.started_at)
    );
    properties(&mut xml, journal);
    for case in &cases {
        case.write(&mut xml, &suite);
    }
    xml.push_str("  </testsuite>\n</testsuites>\n");
    xml
}

/// The run's facts a reader needs to reproduce it.
fn properties(xml: &mut String, journal: &Journal) {
    xml.push_str("    <properties>\n");
    for (name, value) in [
        ("file", escape(&journal.file)),
        ("seed", journal.seed.to_string()),
        ("started_at", escape(&journal.started_at)),
        ("passed", journal.passed.to_string()),
    ] {
        let _ = writeln!(xml, "      <property name=\"{name}\" value=\"{value}\"/>");
    }
    xml.push_str("    </properties>\n");
}

/// Every testcase of the run, in the journal's order, each text still raw.
fn testcases(journal: &Journal) -> Vec<Case> {
    let mut cases: Vec<Case> = journal.verdicts.iter().map(Case::verdict).collect();
    if let Some(aborted) = &journal.aborted {
        cases.push(Case {
            name: "abort".into(),
            class: "abort".into(),
            failure: Some(Failure {
                kind: "aborted",
                message: format!("aborted at {}: {}", duration(aborted.at_ms), aborted.reason),
                detail: format!(
                    "An abort condition was breached at {}: {}. Every fault was removed in {} ms.",
                    duration(aborted.at_ms),
                    aborted.reason,
                    aborted.cleared_in_ms
                ),
            }),
        });
    }
    cases.extend(
        journal
            .faults
            .iter()
            .filter(|f| f.end_ms.is_none())
            .map(Case::never_removed),
    );
    if !journal.passed && cases.iter().all(|c| c.failure.is_none()) {
        cases.push(Case {
            name: "run".into(),
            class: "run".into(),
            failure: Some(Failure {
                kind: "run",
                message: "the run did not pass".into(),
                detail: "The journal says the run failed without a failed hypothesis, an \
                         abort or a fault left in place; its events say what happened."
                    .into(),
            }),
        });
    }
    cases
}

/// One testcase.
struct Case {
    name: String,
    /// Grouping under the suite: the hypothesis's window, `abort`, `fault` or `run`.
    class: String,
    failure: Option<Failure>,
}

/// Why a testcase failed: a one-line message and the text inside the element.
struct Failure {
    kind: &'static str,
    message: String,
    detail: String,
}

// === impl Case ===

impl Case {
    fn verdict(v: &Verdict) -> Case {
        let failure = (!v.passed).then(|| Failure {
            kind: "hypothesis",
            message: format!(
                "{} {}: measured {}, threshold {}",
                v.measure, v.window, v.measured, v.threshold
            ),
            detail: format!(
                "Hypothesis \"{}\" did not hold: {} over the window \"{}\" was {}; the threshold is {}.",
                v.name, v.measure, v.window, v.measured, v.threshold
            ),
        });
        Case {
            name: v.name.clone(),
            class: v.window.clone(),
            failure,
        }
    }

    fn never_removed(fault: &FaultWindow) -> Case {
        Case {
            name: format!("fault {} removed", fault.name),
            class: "fault".into(),
            failure: Some(Failure {
                kind: "fault-left",
                message: format!(
                    "{} ({} on {}) was never removed",
                    fault.name, fault.kind, fault.target
                ),
                detail: format!(
                    "The fault {} ({} on {}) began at {} and the journal has no end for it.",
                    fault.name,
                    fault.kind,
                    fault.target,
                    duration(fault.start_ms)
                ),
            }),
        }
    }

    fn write(&self, xml: &mut String, suite: &str) {
        let _ = write!(
            xml,
            "    <testcase name=\"{}\" classname=\"{suite}.{}\" time=\"0\"",
            escape(&self.name),
            escape(&self.class)
        );
        match &self.failure {
            None => xml.push_str("/>\n"),
            Some(f) => {
                let _ = write!(
                    xml,
                    ">\n      <failure type=\"{}\" message=\"{}\">{}</failure>\n    </testcase>\n",
                    f.kind,
                    escape(&f.message),
                    escape(&f.detail)
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::junit;
    use crate::gameday::journal::Journal;
    use crate::gameday::report::sample::{self, HOSTILE};

    #[test]
    fn one_suite_named_after_the_title_with_a_testcase_per_verdict() {
        let xml = junit(&sample::journal());
        assert!(xml.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"));
        assert_eq!(xml.matches("<testsuite ").count(), 1);
        assert!(xml.contains("<testsuite name=\"orders survive a slow payment service\""));
        assert!(xml.contains("<testcase name=\"orders keep succeeding\""));
        assert!(xml.contains("<testcase name=\"breaker opens\" classname=\"orders survive a slow payment service.during\" time=\"0\"/>"));
        // Two verdicts, the abort, the kill never removed; three of them failed.
        assert!(xml.contains("tests=\"4\" failures=\"3\""));
        assert_eq!(xml.matches("<testcase ").count(), 4);
        assert_eq!(xml.matches("<failure ").count(), 3);
        assert!(xml.ends_with("</testsuite>\n</testsuites>\n"));
    }

    #[test]
    fn a_failure_names_the_measured_value_and_the_threshold() {
        let xml = junit(&sample::journal());
        assert!(
            xml.contains("message=\"success rate during: measured 60.0%, threshold ≥ 99%\""),
            "{xml}"
        );
    }

    #[test]
    fn an_abort_and_a_fault_left_in_place_are_failures() {
        let xml = junit(&sample::journal());
        assert!(xml.contains(
            "<failure type=\"aborted\" message=\"aborted at 18.2 s: success rate 55% &lt; 60%\">"
        ));
        assert!(xml.contains("Every fault was removed in 120 ms."));
        assert!(xml.contains("<testcase name=\"fault kill-stock removed\""));
        assert!(xml.contains("kill-stock (kill on stock) was never removed"));
    }

    #[test]
    fn times_are_seconds() {
        let xml = junit(&sample::journal());
        assert!(xml.contains("time=\"30.000\" timestamp=\"2025-01-02T03:04:05Z\""));
        assert!(xml.contains("<property name=\"seed\" value=\"42\"/>"));
    }

    #[test]
    fn hostile_text_is_escaped_everywhere() {
        let xml = junit(&sample::hostile());
        assert!(!xml.contains(HOSTILE));
        assert!(!xml.contains("<script"));
        assert!(!xml.contains("<b>"));
        assert!(!xml.contains("'x'"));
        assert!(xml.contains(
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;quoted&quot; &lt;b&gt;"
        ));
        // Every quote in the output delimits an attribute: an even number per line.
        for line in xml.lines() {
            assert_eq!(line.matches('"').count() % 2, 0, "{line}");
        }
    }

    #[test]
    fn a_failed_run_without_a_named_failure_still_fails() {
        let journal = Journal {
            passed: false,
            ..Journal::default()
        };
        let xml = junit(&journal);
        assert!(xml.contains("tests=\"1\" failures=\"1\""));
        assert!(xml.contains("<testcase name=\"run\""));
    }

    #[test]
    fn an_empty_passed_run_has_no_testcase() {
        let journal = Journal {
            passed: true,
            ..Journal::default()
        };
        let xml = junit(&journal);
        assert!(xml.contains("<testsuite name=\"\" tests=\"0\" failures=\"0\""));
        assert!(!xml.contains("<testcase"));
    }
}

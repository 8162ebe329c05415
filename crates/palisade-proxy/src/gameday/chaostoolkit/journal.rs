//! What a run leaves: `journal.json` in Chaos Toolkit's journal shape (chaoslib's
//! `initialize_run_journal` and `execute_activity`), so its reporting tools read it, and
//! `junit.xml` for CI — a testcase per steady-state probe, before and after, and one per
//! failed action or rollback.
//!
//! The JUnit file agrees with the exit code: every reason the run fails is a failed
//! testcase, and a run that failed without one (interrupted) gets a failed `run` case.

use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;
use serde_json::Value;

use crate::gameday::report::text::escape;

/// How the run ended, as Chaos Toolkit names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// It ran to its end (the steady state may still have deviated).
    Completed,
    /// The steady state did not hold before the method, or a probe could not run.
    Failed,
    /// Stopped by an abort condition (not produced by this runner).
    Aborted,
    /// Stopped by Ctrl-C.
    Interrupted,
}

/// One activity's run.
#[derive(Clone, Debug, Serialize)]
pub struct Run {
    /// The activity as written.
    pub activity: Value,
    /// Its output: `{status, headers, body}` or `{status, stdout, stderr}`; null when
    /// it failed.
    pub output: Value,
    /// `succeeded` or `failed`.
    pub status: &'static str,
    /// ISO 8601, UTC.
    pub start: String,
    /// ISO 8601, UTC.
    pub end: String,
    /// Seconds.
    pub duration: f64,
    /// For steady-state probes: whether the output was within the tolerance.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tolerance_met: Option<bool>,
    /// Why it failed, as lines (Chaos Toolkit writes a Python traceback here).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exception: Option<Vec<String>>,
}

/// One check of the steady-state hypothesis.
#[derive(Clone, Debug, Serialize)]
pub struct State {
    /// Whether every probe ran and was within its tolerance.
    pub steady_state_met: bool,
    /// The probes run, up to the first that failed or missed its tolerance.
    pub probes: Vec<Run>,
}

/// The hypothesis checks.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SteadyStates {
    /// Before the method.
    pub before: Option<State>,
    /// After the method.
    pub after: Option<State>,
    /// During the method (never filled: no continuous strategy here).
    pub during: Vec<State>,
}

/// The journal.
#[derive(Clone, Debug, Serialize)]
pub struct Journal {
    /// The runner that wrote it (`palisade-<version>`; chaoslib writes its own version).
    #[serde(rename = "chaoslib-version")]
    pub chaoslib_version: String,
    /// `Linux-<release>-<arch>`.
    pub platform: String,
    /// The host's name.
    pub node: String,
    /// The experiment as read.
    pub experiment: Value,
    /// ISO 8601, UTC.
    pub start: String,
    /// ISO 8601, UTC.
    pub end: String,
    /// Seconds.
    pub duration: f64,
    /// How it ended.
    pub status: Status,
    /// Whether the steady state did not hold after the method.
    pub deviated: bool,
    /// The hypothesis checks.
    pub steady_states: SteadyStates,
    /// The method's activities, in the order they started.
    pub run: Vec<Run>,
    /// The rollbacks.
    pub rollbacks: Vec<Run>,
}

// === impl Journal ===

impl Journal {
    /// The run's verdict: it completed and the steady state held, and no action or
    /// rollback failed.
    pub fn passed(&self) -> bool {
        self.status == Status::Completed
            && !self.deviated
            && self
                .run
                .iter()
                .chain(&self.rollbacks)
                .all(|r| r.status == "succeeded")
    }

    /// Writes `journal.json` and `junit.xml` into `dir`.
    pub fn write(&self, dir: &Path) -> std::io::Result<()> {
        let json = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
        std::fs::write(dir.join("journal.json"), json)?;
        std::fs::write(dir.join("junit.xml"), self.junit())
    }

    /// The JUnit XML report.
    pub fn junit(&self) -> String {
        let mut cases: Vec<(String, String, Option<String>)> = Vec::new();
        for (when, state) in [
            ("before", &self.steady_states.before),
            ("after", &self.steady_states.after),
        ] {
            for probe in state.iter().flat_map(|s| s.probes.iter()) {
                let failure = match (probe.status, probe.tolerance_met) {
                    ("failed", _) => Some(format!("the probe failed: {}", exception(probe))),
                    (_, Some(false)) => Some(format!(
                        "not within its tolerance; output: {}",
                        probe.output
                    )),
                    _ => None,
                };
                cases.push((format!("steady state {when}"), name(probe), failure));
            }
        }
        for (class, runs) in [("method", &self.run), ("rollbacks", &self.rollbacks)] {
            for failed in runs.iter().filter(|r| r.status == "failed") {
                let message = format!("the activity failed: {}", exception(failed));
                cases.push((class.into(), name(failed), Some(message)));
            }
        }
        let named = cases.iter().any(|c| c.2.is_some());
        if !self.passed() && !named {
            let why = format!("the run ended {:?}", self.status).to_lowercase();
            cases.push(("run".into(), "run".into(), Some(why)));
        }
        let failures = cases.iter().filter(|c| c.2.is_some()).count();
        let title = escape(
            self.experiment
                .get("title")
                .and_then(Value::as_str)
                .unwrap_or("experiment"),
        );
        let mut xml = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        let _ = writeln!(
            xml,
            "<testsuites name=\"palisade gameday\" tests=\"{}\" failures=\"{failures}\" errors=\"0\" time=\"{:.3}\">",
            cases.len(),
            self.duration
        );
        let _ = writeln!(
            xml,
            "  <testsuite name=\"{title}\" tests=\"{}\" failures=\"{failures}\" errors=\"0\" skipped=\"0\" time=\"{:.3}\" timestamp=\"{}\">",
            cases.len(),
            self.duration,
            escape(&self.start)
        );
        for (class, case, failure) in &cases {
            let _ = write!(
                xml,
                "    <testcase classname=\"{}\" name=\"{}\" time=\"0\"",
                escape(class),
                escape(case)
            );
            match failure {
                None => xml.push_str("/>\n"),
                Some(message) => {
                    let _ = writeln!(
                        xml,
                        ">\n      <failure message=\"{0}\" type=\"failed\">{0}</failure>\n    </testcase>",
                        escape(message)
                    );
                }
            }
        }
        xml.push_str("  </testsuite>\n</testsuites>\n");
        xml
    }
}

fn name(run: &Run) -> String {
    run.activity
        .get("name")
        .or_else(|| run.activity.get("ref"))
        .and_then(Value::as_str)
        .unwrap_or("activity")
        .to_owned()
}

fn exception(run: &Run) -> String {
    run.exception
        .as_ref()
        .map(|e| e.join(" "))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn run(name: &str, status: &'static str, tolerance_met: Option<bool>) -> Run {
        Run {
            activity: json!({"name": name, "type": "probe"}),
            output: json!({"status": 200}),
            status,
            start: "s".into(),
            end: "e".into(),
            duration: 0.1,
            tolerance_met,
            exception: (status == "failed").then(|| vec!["boom".to_owned()]),
        }
    }

    fn journal() -> Journal {
        Journal {
            chaoslib_version: "palisade-test".into(),
            platform: "Linux".into(),
            node: "n".into(),
            experiment: json!({"title": "<t>"}),
            start: "s".into(),
            end: "e".into(),
            duration: 1.5,
            status: Status::Completed,
            deviated: false,
            steady_states: SteadyStates {
                before: Some(State {
                    steady_state_met: true,
                    probes: vec![run("up", "succeeded", Some(true))],
                }),
                after: None,
                during: Vec::new(),
            },
            run: vec![run("break", "succeeded", None)],
            rollbacks: Vec::new(),
        }
    }

    #[test]
    fn the_journal_has_chaos_toolkits_keys() {
        let value = serde_json::to_value(journal()).unwrap();
        for key in [
            "chaoslib-version",
            "platform",
            "node",
            "experiment",
            "start",
            "end",
            "duration",
            "status",
            "deviated",
            "steady_states",
            "run",
            "rollbacks",
        ] {
            assert!(value.get(key).is_some(), "{key}");
        }
        assert_eq!(value["status"], json!("completed"));
        assert_eq!(
            value["steady_states"]["before"]["probes"][0]["tolerance_met"],
            json!(true)
        );
        assert!(value["run"][0].get("tolerance_met").is_none());
    }

    #[test]
    fn junit_agrees_with_the_verdict() {
        let mut j = journal();
        assert!(j.passed());
        let xml = j.junit();
        assert!(
            xml.contains("failures=\"0\"") && xml.contains("name=\"&lt;t&gt;\""),
            "{xml}"
        );
        j.steady_states.after = Some(State {
            steady_state_met: false,
            probes: vec![run("up", "succeeded", Some(false))],
        });
        j.deviated = true;
        assert!(!j.passed());
        assert!(j.junit().contains("failures=\"1\""));
        let mut j = journal();
        j.run.push(run("kill", "failed", None));
        assert!(!j.passed());
        assert!(j.junit().contains("the activity failed: boom"));
        let mut j = journal();
        j.status = Status::Interrupted;
        assert!(j.junit().contains("name=\"run\""));
    }
}

//! One activity played as chaoslib's `execute_activity` plays it: the pause before, the
//! provider called (its start and end stamped), the pause after; a provider that raises
//! (no connection, a timeout, an unexpected status) makes the run `failed` with the reason
//! in `exception`. A probe's tolerance is judged by the caller, which knows whether the
//! probe belongs to the hypothesis.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;

use super::format::{Activity, Kind};
use super::http::{CallError, call};
use super::journal::Run;
use super::process;
use super::provider::Provider;

/// Plays activities; shared by the method and its background tasks.
#[derive(Debug)]
pub(super) struct Executor {
    /// The output directory, where process pids are reported.
    dir: PathBuf,
    /// Numbers the pid files.
    next: AtomicUsize,
}

// === impl Executor ===

impl Executor {
    pub(super) fn new(dir: PathBuf) -> Self {
        Self {
            dir,
            next: AtomicUsize::new(0),
        }
    }

    /// Plays `activity`: pauses, call, pauses; its run record.
    pub(super) async fn execute(&self, activity: &Activity) -> Run {
        pause(activity.pause_before).await;
        let start = now_iso();
        let began = Instant::now();
        let result = match &activity.provider {
            Provider::Http(spec) => call(spec).await.map_err(|e| {
                let why = e.to_string();
                match e {
                    CallError::Unexpected(_, output) => (why, output),
                    _ => (why, Value::Null),
                }
            }),
            Provider::Process(spec) => {
                let n = self.next.fetch_add(1, Ordering::Relaxed);
                let pid_file = self.dir.join(format!(".activity-{n}.pid"));
                process::run(spec, &pid_file)
                    .await
                    .map_err(|e| (e.to_string(), Value::Null))
            }
        };
        let duration = began.elapsed();
        let end = now_iso();
        pause(activity.pause_after).await;
        let (status, output, exception) = match result {
            Ok(output) => ("succeeded", output, None),
            Err((why, output)) => (
                "failed",
                output,
                Some(vec![format!("ActivityFailed: {why}")]),
            ),
        };
        Run {
            activity: activity.raw.clone(),
            output,
            status,
            start,
            end,
            duration: duration.as_secs_f64(),
            tolerance_met: None,
            exception,
        }
    }
}

async fn pause(length: Duration) {
    if !length.is_zero() {
        tokio::time::sleep(length).await;
    }
}

/// The line printed when a run ends: `[phase] probe "name": succeeded`.
pub(super) fn verdict_line(phase: &str, activity: &Activity, run: &Run) -> String {
    let kind = match activity.kind {
        Kind::Probe => "probe",
        Kind::Action => "action",
    };
    let mut line = format!("[{phase}] {kind} {:?}: {}", activity.name, run.status);
    match (run.tolerance_met, &run.exception) {
        (_, Some(why)) => {
            line.push_str(": ");
            line.push_str(&why.join(" "));
        }
        (Some(true), None) => line.push_str(", within its tolerance"),
        (Some(false), None) => {
            let status = run
                .output
                .get("status")
                .map_or("-".into(), Value::to_string);
            line.push_str(&format!(", NOT within its tolerance (status {status})"));
        }
        (None, None) => {}
    }
    line
}

/// Now, on the wall clock, as ISO 8601 in UTC (the journal's stamps; durations are taken
/// from tokio's clock).
#[allow(clippy::disallowed_methods)]
pub(super) fn now_iso() -> String {
    humantime::format_rfc3339_micros(std::time::SystemTime::now()).to_string()
}

//! A game day's journal: everything that happened, second by second, and the verdicts —
//! written as JSON, and what the JUnit and HTML reports are made from.

use serde::{Deserialize, Serialize};

/// The whole record of one run.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Journal {
    /// The experiment's title.
    pub title: String,
    /// The experiment file.
    pub file: String,
    /// The seed the fault timeline and the load were drawn from.
    pub seed: u64,
    /// When the run began, RFC 3339 (UTC).
    pub started_at: String,
    /// How long it ran, milliseconds.
    pub duration_ms: u64,
    /// The load, second by second (the first second is index 0).
    pub seconds: Vec<Second>,
    /// The control group's, if the load has one (`[load.control]`).
    #[serde(default)]
    pub control: Vec<Second>,
    /// When each fault was active.
    pub faults: Vec<FaultWindow>,
    /// Metrics and probes sampled during the run (a breaker's state, say), by name.
    pub series: Vec<Series>,
    /// One per hypothesis.
    pub verdicts: Vec<Verdict>,
    /// Present when an abort condition stopped the faults.
    pub aborted: Option<Aborted>,
    /// Every hypothesis held and nothing aborted the run.
    pub passed: bool,
    /// What the runner did, in order.
    pub events: Vec<Event>,
}

/// One second of load.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Second {
    /// Seconds since the start.
    pub t: u64,
    /// Requests sent in this second.
    pub sent: u64,
    /// Of them, answered successfully.
    pub ok: u64,
    /// Of them, failed (an error status, a transport error or the client's timeout).
    pub failed: u64,
    /// Median latency of the successful ones, milliseconds (none without any).
    pub p50_ms: Option<f64>,
    /// 99th percentile, milliseconds.
    pub p99_ms: Option<f64>,
}

/// When a fault was active.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FaultWindow {
    /// The fault's name in the experiment.
    pub name: String,
    /// What it does: `toxic latency`, `kill`, `stop`, `route abort 50%`…
    pub kind: String,
    /// What it acts on (a proxy, a target, a route).
    pub target: String,
    /// When it began, milliseconds since the start.
    pub start_ms: u64,
    /// When it was removed; none if it never was (which the runner reports as a failure).
    pub end_ms: Option<u64>,
}

/// Samples of one measured value over the run.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Series {
    /// What it is, e.g. `palisade_circuit_state{policy="orders"}`.
    pub name: String,
    /// (milliseconds since the start, value).
    pub points: Vec<(u64, f64)>,
}

/// A hypothesis and whether it held.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// The hypothesis's name.
    pub name: String,
    /// Over which window: before, during, after, throughout.
    pub window: String,
    /// What was measured, e.g. `success rate`.
    pub measure: String,
    /// The value measured, as written in the report (`99.2%`, `431 ms`, `opened after 1.2 s`).
    pub measured: String,
    /// The threshold, as written (`≥ 99%`).
    pub threshold: String,
    /// Whether it held.
    pub passed: bool,
}

/// An abort: a condition breached, every fault removed.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Aborted {
    /// When the breach was seen, milliseconds since the start.
    pub at_ms: u64,
    /// Which condition, with its value.
    pub reason: String,
    /// How long removing every fault took, milliseconds.
    pub cleared_in_ms: u64,
}

/// Something the runner did or saw.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Milliseconds since the start.
    pub at_ms: u64,
    /// What.
    pub text: String,
}

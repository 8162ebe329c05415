//! The experiment file: what a game day starts, the load it offers, the faults it injects
//! and when, what it measures, the hypotheses it judges and when it stops early. Read
//! and checked whole before anything starts; every problem is reported with its line.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::config::load::{Problem, Problems, read, render, syntax_problem};
use crate::config::spans::{Locator, Step};

/// The page that lists every key.
const DOC: &str = "docs/GAMEDAYS.md";
/// The longest run.
pub(super) const MAX_DURATION: Duration = Duration::from_secs(3600);
/// The most requests one run may send (rate × duration), so its record stays bounded.
pub const MAX_REQUESTS: f64 = 2_000_000.0;

/// An experiment, as written.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Experiment {
    /// What it shows.
    pub title: String,
    /// Seeds the load's spacing and the toxics' dice. Default 1.
    #[serde(default = "one")]
    pub seed: u64,
    /// How long the run lasts (the load runs throughout).
    #[serde(with = "humantime_serde")]
    pub duration: Duration,
    /// Processes the runner starts first and stops last.
    #[serde(default, rename = "target")]
    pub targets: Vec<Target>,
    /// TCP fault proxies the runner serves itself for the run.
    #[serde(default, rename = "proxy")]
    pub proxies: Vec<ProxySpec>,
    /// The load.
    pub load: LoadSpec,
    /// The faults, each at a time for a while.
    #[serde(default, rename = "fault")]
    pub faults: Vec<FaultSpec>,
    /// Values sampled through the run (a metric of a `/metrics` page).
    #[serde(default, rename = "probe")]
    pub probes: Vec<ProbeSpec>,
    /// A Prometheus the runner starts, for hypotheses that an alert fires.
    pub prometheus: Option<PrometheusSpec>,
    /// The hypotheses.
    #[serde(default, rename = "hypothesis")]
    pub hypotheses: Vec<Hypothesis>,
    /// When to stop injecting early.
    #[serde(default)]
    pub abort: AbortSpec,
}

fn one() -> u64 {
    1
}

/// A process the runner starts, waits for, and stops at the end.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    /// Its name, for faults and the journal.
    pub name: String,
    /// The program and its arguments; none for a service already running, which the run
    /// only waits for at its `ready` address (and cannot signal or restart).
    #[serde(default)]
    pub command: Vec<String>,
    /// Ready when this URL answers (any status) or, as `tcp://host:port`, accepts.
    pub ready: Option<String>,
    /// How long it may take to be ready. Default 10 s.
    #[serde(default = "ready_timeout", with = "humantime_serde")]
    pub ready_timeout: Duration,
}

fn ready_timeout() -> Duration {
    Duration::from_secs(10)
}

/// A fault proxy of the run.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxySpec {
    /// Its name, for faults.
    pub name: String,
    /// Where it listens, `host:port`.
    pub listen: String,
    /// Where it forwards, `host:port`.
    pub upstream: String,
}

/// The open-loop load.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoadSpec {
    /// The URL requested.
    pub url: String,
    /// The method: GET (the default), HEAD, POST, PUT, DELETE, PATCH or OPTIONS; a POST
    /// to a saga route starts a saga.
    #[serde(default = "get")]
    pub method: String,
    /// Requests a second, sent on schedule whatever the answers (open loop).
    pub rate: f64,
    /// How long a request may take before it counts as failed. Default 2 s.
    #[serde(default = "client_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// A control group: a share of the arrivals sent where the faults do not reach.
    pub control: Option<ControlSpec>,
}

/// `[load.control]`: the control group.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlSpec {
    /// Where its requests go (around the faults: straight to the dependency, say).
    pub url: String,
    /// The share of the arrivals it gets, above 0 and below 1.
    pub share: f64,
}

fn get() -> String {
    "GET".to_owned()
}

fn client_timeout() -> Duration {
    Duration::from_secs(2)
}

/// One fault: what, from when, for how long.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultSpec {
    /// Its name in the journal; its kind and target unless given.
    pub name: Option<String>,
    /// When it begins, from the start of the run.
    #[serde(with = "humantime_serde")]
    pub at: Duration,
    /// How long it lasts.
    #[serde(rename = "for", with = "humantime_serde")]
    pub lasts: Duration,
    /// A toxic on one of the run's proxies.
    pub toxic: Option<ToxicFault>,
    /// One of the run's proxies disabled: the dependency down.
    pub down: Option<String>,
    /// A signal to a target: `kill` (restarted when the fault ends) or `stop` (resumed).
    pub process: Option<ProcessFault>,
    /// A sidecar route's fault injection, through its admin API.
    pub route: Option<RouteFault>,
    /// A target's clock moved: it is started again under libfaketime, and again without
    /// it when the fault ends.
    pub skew: Option<SkewFault>,
    /// CPU or memory pressure on the machine (stress-ng) for the fault's window.
    pub pressure: Option<PressureFault>,
}

/// `skew = { target = "orders", offset = "+5s" }`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SkewFault {
    /// The target.
    pub target: String,
    /// `+` or `-` and a duration: how far its clock is moved.
    pub offset: String,
}

/// `pressure = { cpu = 2, memory = "256M" }`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PressureFault {
    /// Workers spinning on the CPU, 1 to 64.
    pub cpu: Option<u32>,
    /// Memory held and touched, `<number>[K|M|G]`, at most 64G.
    pub memory: Option<String>,
}

// === impl SkewFault ===

impl SkewFault {
    /// The offset in whole seconds (libfaketime's relative form), if it reads.
    pub fn seconds(&self) -> Option<i64> {
        let (sign, rest) = match self.offset.trim().split_at_checked(1)? {
            ("+", rest) => (1, rest),
            ("-", rest) => (-1, rest),
            _ => return None,
        };
        let duration = humantime::parse_duration(rest.trim()).ok()?;
        let seconds = i64::try_from(duration.as_secs()).ok()?;
        (seconds > 0).then_some(sign * seconds)
    }
}

// === impl PressureFault ===

impl PressureFault {
    /// stress-ng's command for this pressure over `lasts`; none if a value is out of
    /// range or the fault asks for nothing.
    pub fn command(&self, lasts: Duration) -> Option<Vec<String>> {
        let mut command = vec!["stress-ng".to_owned(), "--quiet".to_owned()];
        match self.cpu {
            Some(cpu) if (1..=64).contains(&cpu) => {
                command.extend(["--cpu".to_owned(), cpu.to_string()]);
            }
            Some(_) => return None,
            None => {}
        }
        if let Some(memory) = &self.memory {
            memory_bytes(memory)?;
            command.extend(["--vm", "1", "--vm-keep", "--vm-bytes"].map(str::to_owned));
            command.push(memory.trim().to_owned());
        }
        if command.len() == 2 {
            return None;
        }
        command.extend([
            "--timeout".to_owned(),
            format!("{}s", lasts.as_secs().max(1)),
        ]);
        Some(command)
    }
}

/// `256M` as bytes: at least 1 KiB, at most 64 GiB.
fn memory_bytes(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let unit: u64 = match unit {
        "" => 1,
        "K" | "k" => 1 << 10,
        "M" | "m" => 1 << 20,
        "G" | "g" => 1 << 30,
        _ => return None,
    };
    let bytes = digits.parse::<u64>().ok()?.checked_mul(unit)?;
    (1024..=64 << 30).contains(&bytes).then_some(bytes)
}

/// A toxic, as Toxiproxy's API takes it, on proxy `proxy`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToxicFault {
    /// The run's proxy it goes on.
    pub proxy: String,
    /// Its type (`latency`, `timeout`…).
    #[serde(rename = "type")]
    pub kind: String,
    /// `downstream` (default) or `upstream`.
    pub stream: Option<String>,
    /// The probability it applies to a connection. Default 1.
    pub toxicity: Option<f64>,
    /// Its attributes.
    #[serde(default)]
    pub attributes: Map<String, Value>,
}

/// A signal to one of the targets.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessFault {
    /// The target.
    pub target: String,
    /// What is done to it.
    pub action: ProcessAction,
}

/// What a process fault does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProcessAction {
    /// SIGKILL; started again (and waited for) when the fault ends.
    Kill,
    /// SIGSTOP; SIGCONT when the fault ends.
    Stop,
}

/// A route's fault injection on a running sidecar. Its keys beside `admin`, `route` and
/// `lease` are the `[route.fault]` keys, checked by name (`checks.rs`): serde cannot deny
/// unknown fields of a struct with a flattened map.
#[derive(Clone, Debug, Deserialize)]
pub struct RouteFault {
    /// The sidecar's admin address, `http://host:port`.
    pub admin: String,
    /// The route's position in its config (0 first).
    pub route: usize,
    /// The lease the fault is set with, renewed by the runner a third of it at a time: a
    /// runner killed outright leaves the fault on for at most this long. 1 s to 1 h,
    /// default 10 s.
    #[serde(default = "route_lease", with = "humantime_serde")]
    pub lease: Duration,
    /// The `[route.fault]` keys to set (`abort_percent`, `abort_status`, `delay_percent`,
    /// `delay`, `body_percent`, `body`, `body_rate`, `truncate_after`).
    #[serde(flatten)]
    pub keys: BTreeMap<String, toml::Value>,
}

fn route_lease() -> Duration {
    Duration::from_secs(10)
}

/// A value sampled every 250 ms through the run.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeSpec {
    /// Its name, for hypotheses and the report.
    pub name: String,
    /// A Prometheus-format page, `http://host:port/metrics` (with `metric`).
    pub metrics: Option<String>,
    /// The metric: a name, with labels it must have: `palisade_circuit_state{policy="a"}`.
    /// Samples matching are summed.
    pub metric: Option<String>,
    /// Or an HTTP check: a GET of this URL, sampled as its status (0: no answer).
    pub http: Option<String>,
}

/// A hypothesis: one measure over one window, against a threshold.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hypothesis {
    /// What it claims.
    pub name: String,
    /// Over which part of the run. Default throughout.
    #[serde(default)]
    pub window: Window,
    /// Share of the window's requests answered successfully, at least this.
    pub success_rate: Option<AtLeast>,
    /// A latency percentile of the window's successful requests, at most this.
    pub latency: Option<LatencyBound>,
    /// A probe reaches a value within a time (of the window's start).
    pub probe: Option<ProbeExpectation>,
    /// An alert of the run's Prometheus fires within a time (of the window's start).
    pub alert: Option<AlertExpectation>,
    /// Every saga of a sidecar ends consistent (completed or compensated) within a time
    /// of the load's end.
    pub sagas: Option<SagaExpectation>,
    /// Whose requests a success rate or latency judges. Default the experiment's.
    #[serde(default)]
    pub group: Group,
    /// The faults (by name) whose window `window` means, when the run has several in
    /// turn: *during* their span, *before* from the end of the fault before them, *after*
    /// until the next fault begins. Default every fault.
    pub fault: Option<String>,
}

/// The requests a hypothesis judges.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Group {
    /// Those the faults reach.
    #[default]
    Experiment,
    /// The control group's (`[load.control]`).
    Control,
}

/// Which part of the run a hypothesis judges.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Window {
    /// From the start to the first fault.
    Before,
    /// From the first fault's start to the last one's end.
    During,
    /// From the last fault's end to the end of the run.
    After,
    /// The whole run.
    #[default]
    Throughout,
}

/// `{ at_least = 0.99 }`.
#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AtLeast {
    /// The lowest value that holds.
    pub at_least: f64,
}

/// `{ percentile = 99, at_most = "300ms" }`.
#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LatencyBound {
    /// Which percentile, 1–100.
    pub percentile: f64,
    /// The longest that holds.
    #[serde(with = "humantime_serde")]
    pub at_most: Duration,
}

/// `[prometheus]`: a real Prometheus started for the run, scraping `scrape` and
/// evaluating the rules `palisade alerts` writes for the config at `alerts_for`, each
/// every second.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrometheusSpec {
    /// The pages it scrapes, `http://host:port/path`.
    pub scrape: Vec<String>,
    /// A sidecar config (a path from the runner's directory, as the targets' commands
    /// take theirs): the alerting rules are those `palisade alerts --config` writes for it.
    pub alerts_for: String,
}

/// `{ name = "PalisadeErrorBudgetFastBurn", within = "15s", labels = { route = "/" } }`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertExpectation {
    /// The alert's name (`alertname`).
    pub name: String,
    /// Labels the firing alert must carry.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// How soon after the window begins it must be firing.
    #[serde(with = "humantime_serde")]
    pub within: Duration,
}

// === impl AlertExpectation ===

impl AlertExpectation {
    /// The name of the series its alert's state is sampled into (0 inactive, 1
    /// pending, 2 firing).
    pub fn series_name(&self) -> String {
        let labels: Vec<String> = self
            .labels
            .iter()
            .map(|(k, v)| format!("{k}={v:?}"))
            .collect();
        if labels.is_empty() {
            format!("alert {}", self.name)
        } else {
            format!("alert {}{{{}}}", self.name, labels.join(","))
        }
    }
}

/// `{ admin = "http://127.0.0.1:9901", saga = "checkout", within = "10s" }`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SagaExpectation {
    /// The sidecar's admin address, `http://host:port`.
    pub admin: String,
    /// The saga (its `[[saga]]` name) judged; default every saga.
    pub saga: Option<String>,
    /// How long after the load ends the sagas still running or compensating may take.
    #[serde(with = "humantime_serde")]
    pub within: Duration,
}

/// `{ name = "breaker", reaches = 1, within = "2s" }`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeExpectation {
    /// The probe.
    pub name: String,
    /// The value it must reach.
    pub reaches: f64,
    /// How soon after the window begins.
    #[serde(with = "humantime_serde")]
    pub within: Duration,
}

/// `[abort]`: conditions checked every 250 ms; on a breach every fault is removed.
#[derive(Clone, Copy, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AbortSpec {
    /// Abort when the success rate of the last second's answers falls below this.
    pub success_rate_below: Option<f64>,
}

// === impl Experiment ===

impl Experiment {
    /// Reads and checks the experiment at `path`.
    pub fn load(path: &Path) -> Result<Self, Problems> {
        let (file, text) = read(path)?;
        Self::parse(&file, &text)
    }

    /// Checks `text`, read from `file`.
    pub fn parse(file: &str, text: &str) -> Result<Self, Problems> {
        let locator = Locator::new(text);
        let problems = |problems| Problems {
            file: file.to_owned(),
            problems,
        };
        let experiment: Experiment = toml::from_str(text)
            .map_err(|e| problems(vec![syntax_problem(&locator, text, &e, DOC)]))?;
        let mut found = Vec::new();
        super::checks::check(&experiment, &mut |path: &[Step], message: String| {
            found.push(Problem {
                line: locator.line(path),
                key: render(path),
                message,
            });
        });
        if found.is_empty() {
            return Ok(experiment);
        }
        found.sort_by_key(|p| p.line);
        Err(problems(found))
    }

    /// When the first fault begins and the last one ends; none without faults.
    pub fn fault_span(&self) -> Option<(Duration, Duration)> {
        let start = self.faults.iter().map(|f| f.at).min()?;
        let end = self.faults.iter().map(|f| f.at + f.lasts).max()?;
        Some((start, end))
    }

    /// The bounds of `hypothesis`'s window in this run: of its `fault`, or of every fault.
    pub fn window_of(&self, hypothesis: &Hypothesis) -> (Duration, Duration) {
        match &hypothesis.fault {
            Some(name) => self.fault_window(hypothesis.window, name),
            None => self.window(hypothesis.window),
        }
    }

    /// The bounds of `window` around the faults named `name`, between the faults
    /// before and after them (empty when no fault has that name).
    fn fault_window(&self, window: Window, name: &str) -> (Duration, Duration) {
        let (named, others): (Vec<&FaultSpec>, Vec<&FaultSpec>) =
            self.faults.iter().partition(|f| f.label() == name);
        let Some(start) = named.iter().map(|f| f.at).min() else {
            return (Duration::ZERO, Duration::ZERO);
        };
        let end = named.iter().map(|f| f.at + f.lasts).max().unwrap_or(start);
        let previous_end = others
            .iter()
            .map(|f| f.at + f.lasts)
            .filter(|e| *e <= start)
            .max()
            .unwrap_or(Duration::ZERO);
        let next_start = others
            .iter()
            .map(|f| f.at)
            .filter(|s| *s >= end)
            .min()
            .unwrap_or(self.duration);
        match window {
            Window::Before => (previous_end, start),
            Window::During => (start, end),
            Window::After => (end, next_start),
            Window::Throughout => (Duration::ZERO, self.duration),
        }
    }

    /// The bounds of `window` in this run.
    pub fn window(&self, window: Window) -> (Duration, Duration) {
        let span = self.fault_span();
        match (window, span) {
            (Window::Before, Some((start, _))) => (Duration::ZERO, start),
            (Window::During, Some(span)) => span,
            (Window::After, Some((_, end))) => (end, self.duration),
            _ => (Duration::ZERO, self.duration),
        }
    }
}

// === impl FaultSpec ===

impl FaultSpec {
    /// Its name: as given, else what it does to what.
    pub fn label(&self) -> String {
        if let Some(name) = &self.name {
            return name.clone();
        }
        let (kind, target) = self.describe();
        format!("{kind} {target}")
    }

    /// What it does, and to what.
    pub fn describe(&self) -> (String, String) {
        if let Some(toxic) = &self.toxic {
            (format!("toxic {}", toxic.kind), toxic.proxy.clone())
        } else if let Some(proxy) = &self.down {
            ("down".to_owned(), proxy.clone())
        } else if let Some(process) = &self.process {
            let action = match process.action {
                ProcessAction::Kill => "kill",
                ProcessAction::Stop => "stop",
            };
            (action.to_owned(), process.target.clone())
        } else if let Some(route) = &self.route {
            (
                "route fault".to_owned(),
                format!("{} route {}", route.admin, route.route),
            )
        } else if let Some(skew) = &self.skew {
            (format!("clock {}", skew.offset), skew.target.clone())
        } else if let Some(pressure) = &self.pressure {
            let cpu = pressure.cpu.map(|c| format!("cpu {c}"));
            let memory = pressure.memory.as_ref().map(|m| format!("memory {m}"));
            let what: Vec<String> = cpu.into_iter().chain(memory).collect();
            (
                format!("pressure {}", what.join(", ")),
                "the machine".to_owned(),
            )
        } else {
            ("nothing".to_owned(), String::new())
        }
    }
}

//! `palisade gameday FILE.toml`: a chaos experiment from one file, run by one command on a
//! laptop or a CI runner — targets started, an open-loop load, a timeline of faults,
//! probes sampled, hypotheses judged — that leaves nothing behind.
//!
//! The run, in order: the file is checked whole (`experiment`, `checks`); the fault
//! proxies are served in-process (`crate::toxic`); the targets start, each through a
//! guard that kills it if the runner dies (`targets`, `guard`); then for the experiment's
//! duration the load runs (`load`), the probes are sampled every 250 ms (`probes`) and a
//! control loop begins and ends the faults on schedule (`faults`), checks the abort
//! conditions every 250 ms and prints a progress line each second. At the end every
//! fault still on is ended, the hypotheses are judged (`verdicts`) and the journal is
//! written with its JUnit and HTML reports (`journal`, `report`).
//!
//! Invariants: every fault that begins is ended exactly once — at its time, on an abort
//! (all at once), on Ctrl-C, or when the run fails; the toxics live in the runner's own
//! process, so a runner killed outright takes them with it, and its guards kill its
//! targets within 100 ms; nothing is written outside the output directory.

pub mod chaostoolkit;
mod checks;
pub mod experiment;
mod faults;
pub mod guard;
mod http;
pub mod journal;
mod load;
pub mod probes;
mod prometheus;
pub mod report;
mod sagas;
mod targets;
#[cfg(test)]
mod tests;
mod verdicts;

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use experiment::Experiment;
use faults::{Stage, Undo};
use http::Client;
use journal::{Aborted, Event, FaultWindow, Journal};
use load::Tallies;
use probes::Probe;
use prometheus::Prometheus;
use targets::Targets;

use crate::config::load::Problems;
use crate::toxic::Registry;
use crate::toxic::proxy::ProxyRequest;

/// How often the control loop runs: fault times are kept to within this.
const TICK: Duration = Duration::from_millis(50);
/// How often abort conditions are checked, and probes sampled.
const CHECK_EVERY: Duration = Duration::from_millis(250);
/// The window of answers an abort condition judges.
const ABORT_WINDOW_MS: u64 = 1000;

/// Why a run could not be judged.
#[derive(Debug)]
pub enum RunError {
    /// The experiment file is wrong (exit code 2).
    Invalid(Problems),
    /// Something it needs failed: a target, a proxy, the output directory (exit code 1).
    Failed(String),
}

impl std::fmt::Display for RunError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RunError::Invalid(problems) => write!(f, "{problems}"),
            RunError::Failed(why) => write!(f, "{why}"),
        }
    }
}

/// Runs the experiment at `path`, writing its reports into `out` (default
/// `gameday-out/<file stem>`); the journal, whose `passed` is the verdict.
pub async fn run(path: &Path, out: Option<PathBuf>) -> Result<Journal, RunError> {
    let experiment = Experiment::load(path).map_err(RunError::Invalid)?;
    let out = out_dir(path, out);
    std::fs::create_dir_all(&out)
        .map_err(|e| RunError::Failed(format!("cannot create {}: {e}", out.display())))?;
    let mut journal = Journal {
        title: experiment.title.clone(),
        file: path.display().to_string(),
        seed: experiment.seed,
        started_at: humantime::format_rfc3339_seconds(
            std::time::SystemTime::UNIX_EPOCH + wall_clock(),
        )
        .to_string(),
        ..Journal::default()
    };
    let proxies = Registry::default();
    for spec in &experiment.proxies {
        let request = ProxyRequest {
            name: Some(spec.name.clone()),
            listen: Some(spec.listen.clone()),
            upstream: Some(spec.upstream.clone()),
            enabled: Some(true),
        };
        proxies
            .create(request)
            .await
            .map_err(|e| RunError::Failed(format!("proxy {}: {}", spec.name, e.message)))?;
    }
    let client = Client::new();
    let mut targets = Targets::start(&experiment.targets, &out, &client)
        .await
        .map_err(RunError::Failed)?;
    let prometheus = match &experiment.prometheus {
        Some(spec) => Some(
            Prometheus::start(spec, &out, &mut targets, &client)
                .await
                .map_err(RunError::Failed)?,
        ),
        None => None,
    };
    let outcome = Run {
        experiment: &experiment,
        journal: &mut journal,
        client: &client,
        tallies: Tallies::default(),
        probes: probes(&experiment, prometheus.as_ref()),
        start: Instant::now(),
    }
    .play(&proxies, &mut targets)
    .await;
    targets.stop_all();
    if let Some(prometheus) = &prometheus {
        prometheus.clean_up();
    }
    outcome?;
    write_journal(&journal, &out)?;
    Ok(journal)
}

/// Where a run on `path` writes: `out`, or `gameday-out/<file stem>`.
pub fn out_dir(path: &Path, out: Option<PathBuf>) -> PathBuf {
    out.unwrap_or_else(|| {
        let stem = path
            .file_stem()
            .map_or("gameday".into(), |s| s.to_string_lossy().into_owned());
        PathBuf::from("gameday-out").join(stem)
    })
}

/// The run's probes: the file's, and one per alert a hypothesis expects to fire.
fn probes(experiment: &Experiment, prometheus: Option<&Prometheus>) -> Vec<Arc<Probe>> {
    let alerts = experiment
        .hypotheses
        .iter()
        .filter_map(|h| h.alert.as_ref())
        .filter_map(|alert| Some(Probe::alert(alert, prometheus?.alerts_api())));
    let mut probes: Vec<Arc<Probe>> = Vec::new();
    for probe in experiment
        .probes
        .iter()
        .cloned()
        .filter_map(Probe::new)
        .chain(alerts)
    {
        if !probes.iter().any(|p| p.name() == probe.name()) {
            probes.push(Arc::new(probe));
        }
    }
    probes
}

/// The wall clock, for the journal's start time only (runs are timed by tokio's clock).
#[allow(clippy::disallowed_methods)]
fn wall_clock() -> Duration {
    std::time::SystemTime::now()
        .duration_since(std::time::SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
}

fn write_journal(journal: &Journal, out: &Path) -> Result<(), RunError> {
    report::write_all(journal, out)
        .map(drop)
        .map_err(|e| RunError::Failed(format!("writing the reports into {}: {e}", out.display())))
}

/// One run in progress.
struct Run<'r> {
    experiment: &'r Experiment,
    journal: &'r mut Journal,
    client: &'r Client,
    tallies: Tallies,
    probes: Vec<Arc<Probe>>,
    start: Instant,
}

/// A fault that began: its journal window and what ends it.
struct Active {
    index: usize,
    undo: Undo,
}

// === impl Run ===

impl Run<'_> {
    /// The run itself: load, probes and the control loop for the experiment's duration,
    /// then the verdicts. Every fault that began has ended when this returns.
    async fn play(mut self, proxies: &Registry, targets: &mut Targets) -> Result<(), RunError> {
        let duration = self.experiment.duration;
        let load = tokio::spawn(load::offer(
            self.experiment.load.clone(),
            self.experiment.seed,
            self.start,
            duration,
            self.client.clone(),
            self.tallies.clone(),
        ));
        let probing = self.sample_probes();
        let mut stage = Stage {
            proxies,
            targets,
            client: self.client,
        };
        let mut active: Vec<Active> = Vec::new();
        let result = self.control(&mut stage, &mut active).await;
        // Whatever happened, every fault still on ends now.
        self.end_all(&mut stage, &mut active, "the run ended").await;
        probing.abort();
        let _ = load.await;
        let load_ended = Instant::now();
        // Answers still on their way have until the client's timeout.
        tokio::time::sleep(self.experiment.load.timeout.min(Duration::from_secs(5))).await;
        let settlements = self.settle_sagas(load_ended).await;
        self.finish(&settlements);
        result
    }

    /// For each hypothesis on sagas, what they came to once the load ended.
    async fn settle_sagas(&self, load_ended: Instant) -> Vec<Option<sagas::Settlement>> {
        let mut settlements = Vec::new();
        for hypothesis in &self.experiment.hypotheses {
            settlements.push(match &hypothesis.sagas {
                Some(spec) => Some(sagas::settle(spec, self.client, load_ended).await),
                None => None,
            });
        }
        settlements
    }

    /// Begins and ends faults on schedule, checks the abort condition, prints progress.
    async fn control(
        &mut self,
        stage: &mut Stage<'_>,
        active: &mut Vec<Active>,
    ) -> Result<(), RunError> {
        let mut next_fault = 0;
        let mut order: Vec<usize> = (0..self.experiment.faults.len()).collect();
        order.sort_by_key(|&i| self.experiment.faults[i].at);
        let mut last_check = Duration::ZERO;
        let mut last_progress = Duration::ZERO;
        let ctrl_c = tokio::signal::ctrl_c();
        tokio::pin!(ctrl_c);
        loop {
            let now = self.start.elapsed();
            if now >= self.experiment.duration {
                return Ok(());
            }
            self.end_due(stage, active, now).await;
            self.renew_leases(stage, active).await;
            while self.journal.aborted.is_none()
                && next_fault < order.len()
                && self.experiment.faults[order[next_fault]].at <= now
            {
                let index = order[next_fault];
                next_fault += 1;
                self.begin(stage, active, index).await?;
            }
            if now >= last_check + CHECK_EVERY {
                last_check = now;
                self.check_abort(stage, active, now).await;
            }
            if now >= last_progress + Duration::from_secs(1) {
                last_progress = now;
                self.progress(now, active);
            }
            tokio::select! {
                () = tokio::time::sleep(TICK) => {}
                _ = &mut ctrl_c => {
                    self.event("interrupted (Ctrl-C): ending every fault".into());
                    return Err(RunError::Failed("interrupted".into()));
                }
            }
        }
    }

    async fn begin(
        &mut self,
        stage: &mut Stage<'_>,
        active: &mut Vec<Active>,
        index: usize,
    ) -> Result<(), RunError> {
        let experiment = self.experiment;
        let spec = &experiment.faults[index];
        let (kind, target) = spec.describe();
        match stage.begin(index, spec).await {
            Ok(undo) => {
                self.event(format!("fault {:?} began", spec.label()));
                self.journal.faults.push(FaultWindow {
                    name: spec.label(),
                    kind,
                    target,
                    start_ms: self.now_ms(),
                    end_ms: None,
                });
                active.push(Active { index, undo });
                Ok(())
            }
            Err(why) => {
                self.event(format!("fault {:?} could not begin: {why}", spec.label()));
                Err(RunError::Failed(format!("fault {:?}: {why}", spec.label())))
            }
        }
    }

    /// Ends the faults whose time is over.
    async fn end_due(&mut self, stage: &mut Stage<'_>, active: &mut Vec<Active>, now: Duration) {
        let mut i = 0;
        while i < active.len() {
            let experiment = self.experiment;
            let spec = &experiment.faults[active[i].index];
            if spec.at + spec.lasts <= now {
                let ended = active.swap_remove(i);
                self.end(stage, ended, "its time was over").await;
            } else {
                i += 1;
            }
        }
    }

    /// Renews the leases of the route faults on: a runner that stops renewing (killed
    /// outright) leaves them on for one lease at most.
    async fn renew_leases(&mut self, stage: &mut Stage<'_>, active: &mut [Active]) {
        for fault in active.iter_mut() {
            if let Err(why) = stage.renew(&mut fault.undo).await {
                let label = self.experiment.faults[fault.index].label();
                self.event(format!(
                    "fault {label:?}: its lease could not be renewed: {why}"
                ));
            }
        }
    }

    async fn end_all(&mut self, stage: &mut Stage<'_>, active: &mut Vec<Active>, why: &str) {
        for ended in active.drain(..) {
            self.end(stage, ended, why).await;
        }
    }

    async fn end(&mut self, stage: &mut Stage<'_>, ended: Active, why: &str) {
        let label = self.experiment.faults[ended.index].label();
        let outcome = stage.end(ended.undo).await;
        let at = self.now_ms();
        if let Some(window) = self
            .journal
            .faults
            .iter_mut()
            .rev()
            .find(|w| w.name == label && w.end_ms.is_none())
        {
            window.end_ms = Some(at);
        }
        match outcome {
            Ok(()) => self.event(format!("fault {label:?} ended: {why}")),
            Err(error) => self.event(format!(
                "fault {label:?} could not be ended ({why}): {error}"
            )),
        }
    }

    /// Ends every fault at once when the abort condition is breached.
    async fn check_abort(
        &mut self,
        stage: &mut Stage<'_>,
        active: &mut Vec<Active>,
        now: Duration,
    ) {
        let Some(below) = self.experiment.abort.success_rate_below else {
            return;
        };
        if self.journal.aborted.is_some() {
            return;
        }
        let now_ms = now.as_millis() as u64;
        let Some(success) = self
            .tallies
            .experiment
            .recent_success(now_ms, ABORT_WINDOW_MS)
        else {
            return;
        };
        if success >= below {
            return;
        }
        let reason = format!(
            "success rate {:.1}% over the last second, below {:.1}%",
            success * 100.0,
            below * 100.0
        );
        self.event(format!("abort: {reason}"));
        let began = Instant::now();
        self.end_all(stage, active, "the run aborted").await;
        self.journal.aborted = Some(Aborted {
            at_ms: now_ms,
            reason,
            cleared_in_ms: began.elapsed().as_millis() as u64,
        });
    }

    /// Samples every probe every 250 ms until aborted.
    fn sample_probes(&self) -> tokio::task::JoinHandle<()> {
        let (probes, client, start) = (self.probes.clone(), self.client.clone(), self.start);
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(CHECK_EVERY);
            loop {
                ticks.tick().await;
                let at = start.elapsed().as_millis() as u64;
                for probe in &probes {
                    probe.sample(&client, at).await;
                }
            }
        })
    }

    /// One progress line: time, load, success, p99, the faults on.
    fn progress(&self, now: Duration, active: &[Active]) {
        let second = now.as_secs().saturating_sub(1);
        let last = self.tallies.experiment.second(second);
        let faults: Vec<String> = active
            .iter()
            .map(|a| self.experiment.faults[a.index].label())
            .collect();
        let line = format!(
            "[{:>4}s/{}s] sent {:>5}/s  ok {:>5.1}%  p99 {:>7}  faults: {}",
            now.as_secs(),
            self.experiment.duration.as_secs(),
            last.sent,
            if last.sent == 0 {
                100.0
            } else {
                100.0 * last.ok as f64 / last.sent as f64
            },
            last.p99_ms.map_or("-".into(), |ms| format!("{ms:.0} ms")),
            if faults.is_empty() {
                "none".into()
            } else {
                faults.join(", ")
            },
        );
        let mut err = std::io::stderr();
        if err.is_terminal() {
            let _ = write!(err, "\r{line}\x1b[K");
        } else {
            let _ = writeln!(err, "{line}");
        }
    }

    /// Fills the journal from what was recorded, and judges the hypotheses.
    fn finish(&mut self, settlements: &[Option<sagas::Settlement>]) {
        let seconds = self.experiment.duration.as_secs();
        self.journal.duration_ms = self.experiment.duration.as_millis() as u64;
        self.journal.seconds = self.tallies.experiment.seconds(seconds);
        if self.experiment.load.control.is_some() {
            self.journal.control = self.tallies.control.seconds(seconds);
        }
        self.journal.series = self.probes.iter().map(|p| p.series()).collect();
        self.journal.verdicts = verdicts::judge(
            self.experiment,
            &self.tallies,
            &self.journal.series,
            settlements,
        );
        self.journal.passed = self.journal.aborted.is_none()
            && self.journal.verdicts.iter().all(|v| v.passed)
            && self.journal.faults.iter().all(|f| f.end_ms.is_some());
    }

    fn now_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    fn event(&mut self, text: String) {
        let at_ms = self.now_ms();
        self.journal.events.push(Event { at_ms, text });
    }
}

//! `palisade gameday experiment.json|.yaml|.yml`: a Chaos Toolkit experiment — the
//! field's one open format — run with its `http` and `process` activities, so a team
//! that has such files runs them here unchanged, with nothing else installed.
//!
//! The run, as chaoslib's: the file is checked whole (`source`, `format`, `provider`,
//! `tolerance`, `vars`) and refused with every problem at once (exit code 2); the
//! steady-state hypothesis is checked — if it does not hold the run `failed` and the
//! method is not played; the method's activities are played in order, each after its
//! pause, those marked `background` alongside and awaited at the method's end; the
//! hypothesis is checked again — if it no longer holds the run `deviated`; the rollbacks
//! are played last, always: after a failure and after Ctrl-C too (a second Ctrl-C stops
//! them). A line per activity is printed as it ends; `journal.json` (Chaos Toolkit's
//! shape) and `junit.xml` go to the output directory (`journal`).
//!
//! Invariants: a process activity runs under the game day's guard in its own process
//! group, killed with it when the activity ends, times out or is cancelled, and by the
//! guard if the runner is killed outright (`process`); every HTTP call and every body is
//! bounded (`http`); the exit code is 0 only when the run completed, did not deviate and
//! no action or rollback failed.

mod activities;
mod activity;
mod format;
mod http;
pub mod journal;
mod process;
mod provider;
mod source;
#[cfg(test)]
mod tests;
mod tolerance;
mod vars;

use std::path::Path;
use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

pub use source::Syntax;

use activity::{Executor, now_iso, verdict_line};
use format::{Activity, Experiment, Hypothesis, Loader};
use journal::{Journal, Run, State, Status, SteadyStates};
use source::Document;

use super::RunError;
use crate::config::load::{Problem, Problems};

/// The syntax of `path` when it is a Chaos Toolkit experiment (by its extension).
pub fn syntax_of(path: &Path) -> Option<Syntax> {
    let ext = path.extension()?.to_str()?.to_ascii_lowercase();
    match ext.as_str() {
        "json" => Some(Syntax::Json),
        "yaml" | "yml" => Some(Syntax::Yaml),
        _ => None,
    }
}

/// Reads and checks the experiment at `path`, reading `configuration` and `secrets`
/// from `env`.
pub fn load(
    path: &Path,
    syntax: Syntax,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Experiment, Problems> {
    let file = path.display().to_string();
    let one = |problem: Problem| Problems {
        file: file.clone(),
        problems: vec![problem],
    };
    let text = std::fs::read_to_string(path).map_err(|e| {
        one(Problem {
            line: 1,
            key: "-".into(),
            message: format!("cannot read the file: {e}; allowed: a readable JSON or YAML file"),
        })
    })?;
    parse(&file, &text, syntax, env)
}

/// Checks `text`, read from `file`.
pub fn parse(
    file: &str,
    text: &str,
    syntax: Syntax,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Experiment, Problems> {
    let fail = |mut problems: Vec<Problem>| {
        problems.sort_by_key(|p| p.line);
        problems.dedup();
        Problems {
            file: file.to_owned(),
            problems,
        }
    };
    let doc = Document::parse(text, syntax).map_err(|p| fail(vec![p]))?;
    let mut loader = Loader::new(&doc);
    let experiment = loader.experiment(env);
    match experiment {
        Some(experiment) if loader.problems.is_empty() => Ok(experiment),
        _ => Err(fail(loader.problems)),
    }
}

/// The process environment, as `load` reads it.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// Runs the experiment at `path`, writing its journal and JUnit report into `out`.
pub async fn run(path: &Path, syntax: Syntax, out: &Path) -> Result<Journal, RunError> {
    let experiment = load(path, syntax, &process_env).map_err(RunError::Invalid)?;
    std::fs::create_dir_all(out)
        .map_err(|e| RunError::Failed(format!("cannot create {}: {e}", out.display())))?;
    let executor = Arc::new(Executor::new(out.to_owned()));
    let mut journal = Journal {
        chaoslib_version: format!("palisade-{}", env!("CARGO_PKG_VERSION")),
        platform: platform(),
        node: read_trimmed("/proc/sys/kernel/hostname").unwrap_or_default(),
        experiment: experiment.raw.clone(),
        start: now_iso(),
        end: String::new(),
        duration: 0.0,
        status: Status::Completed,
        deviated: false,
        steady_states: SteadyStates::default(),
        run: Vec::new(),
        rollbacks: Vec::new(),
    };
    println!("experiment: {}", experiment.title);
    let began = Instant::now();
    let (presses, interrupts) = watch::channel(0u32);
    let listener = tokio::spawn(async move {
        while tokio::signal::ctrl_c().await.is_ok() {
            presses.send_modify(|n| *n += 1);
        }
    });
    let mut background: Vec<(Activity, JoinHandle<Run>)> = Vec::new();
    let played = play(&experiment, &executor, &mut journal, &mut background);
    let mut first = interrupts.clone();
    tokio::select! {
        () = played => {}
        _ = first.wait_for(|n| *n >= 1) => {
            println!("interrupted (Ctrl-C): playing the rollbacks (Ctrl-C again stops them)");
            journal.status = Status::Interrupted;
        }
    }
    // Whatever still runs in the background is cancelled: its processes are killed.
    for (_, task) in background.drain(..) {
        task.abort();
    }
    let mut second = interrupts.clone();
    tokio::select! {
        () = rollbacks(&experiment.rollbacks, &executor, &mut journal.rollbacks) => {}
        _ = second.wait_for(|n| *n >= 2) => {
            println!("interrupted again: the remaining rollbacks are not played");
            journal.status = Status::Interrupted;
        }
    }
    listener.abort();
    journal.end = now_iso();
    journal.duration = began.elapsed().as_secs_f64();
    journal.write(out).map_err(|e| {
        RunError::Failed(format!("writing the journal into {}: {e}", out.display()))
    })?;
    Ok(journal)
}

/// The hypothesis, the method and the hypothesis again, as far as they go.
async fn play(
    experiment: &Experiment,
    executor: &Arc<Executor>,
    journal: &mut Journal,
    background: &mut Vec<(Activity, JoinHandle<Run>)>,
) {
    if let Some(hypothesis) = &experiment.hypothesis {
        let state = check(hypothesis, executor, "steady state before").await;
        let met = state.steady_state_met;
        journal.steady_states.before = Some(state);
        if !met {
            println!("the steady state does not hold before the method: the method is not played");
            journal.status = Status::Failed;
            return;
        }
    }
    for activity in &experiment.method {
        if activity.background {
            let (executor, spawned) = (executor.clone(), activity.clone());
            let task = tokio::spawn(async move { executor.execute(&spawned).await });
            background.push((activity.clone(), task));
            continue;
        }
        let run = executor.execute(activity).await;
        println!("{}", verdict_line("method", activity, &run));
        journal.run.push(run);
    }
    for (activity, task) in background.drain(..) {
        if let Ok(run) = task.await {
            println!("{}", verdict_line("method, background", &activity, &run));
            journal.run.push(run);
        }
    }
    if let Some(hypothesis) = &experiment.hypothesis {
        let state = check(hypothesis, executor, "steady state after").await;
        if !state.steady_state_met {
            journal.deviated = true;
            if state.probes.iter().any(|p| p.status == "failed") {
                journal.status = Status::Failed;
            }
        }
        journal.steady_states.after = Some(state);
    }
}

/// Checks the hypothesis: its probes in order, up to the first that fails or is not
/// within its tolerance.
async fn check(hypothesis: &Hypothesis, executor: &Executor, phase: &str) -> State {
    println!("[{phase}] {}", hypothesis.title);
    let mut state = State {
        steady_state_met: true,
        probes: Vec::new(),
    };
    for probe in &hypothesis.probes {
        let mut run = executor.execute(probe).await;
        let met = run.status == "succeeded"
            && probe
                .tolerance
                .as_ref()
                .is_none_or(|t| t.holds(&run.output, probe.provider.produced()));
        run.tolerance_met = Some(met);
        println!("{}", verdict_line(phase, probe, &run));
        state.probes.push(run);
        if !met {
            state.steady_state_met = false;
            break;
        }
    }
    state
}

/// Plays every rollback, in order (background ones alongside, awaited at the end).
async fn rollbacks(list: &[Activity], executor: &Arc<Executor>, runs: &mut Vec<Run>) {
    let mut background = Vec::new();
    for activity in list {
        if activity.background {
            let (executor, spawned) = (executor.clone(), activity.clone());
            background.push((
                activity,
                tokio::spawn(async move { executor.execute(&spawned).await }),
            ));
            continue;
        }
        let run = executor.execute(activity).await;
        println!("{}", verdict_line("rollback", activity, &run));
        runs.push(run);
    }
    for (activity, task) in background {
        if let Ok(run) = task.await {
            println!("{}", verdict_line("rollback, background", activity, &run));
            runs.push(run);
        }
    }
}

/// `Linux-<release>-<arch>`, as Python's `platform.platform()` roughly writes it.
fn platform() -> String {
    let release = read_trimmed("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("Linux-{release}-{}", std::env::consts::ARCH)
}

fn read_trimmed(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_owned())
}

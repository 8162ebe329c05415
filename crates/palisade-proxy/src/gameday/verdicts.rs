//! Hypotheses judged: each measure over its window of the run, against its threshold.

use super::experiment::{Experiment, Group, Hypothesis, Window};
use super::journal::{Series, Verdict};
use super::load::{Tallies, Tally, percentile};
use super::probes::FIRING;
use super::sagas::Settlement;

use std::time::Duration;

/// The verdict on each hypothesis of `experiment`, from the load's `tally` and the
/// probes' `series`.
pub(super) fn judge(
    experiment: &Experiment,
    tallies: &Tallies,
    series: &[Series],
    settlements: &[Option<Settlement>],
) -> Vec<Verdict> {
    experiment
        .hypotheses
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let tally = match h.group {
                Group::Experiment => &tallies.experiment,
                Group::Control => &tallies.control,
            };
            let mut verdict = judge_one(experiment, h, tally, series);
            if let Some(sagas) = &h.sagas {
                verdict.measure = match &sagas.saga {
                    Some(saga) => format!("{saga} sagas completed or compensated"),
                    None => "sagas completed or compensated".to_owned(),
                };
                verdict.threshold = format!("within {:?} of the load's end", sagas.within);
                (verdict.measured, verdict.passed) = settlements
                    .get(i)
                    .and_then(Option::as_ref)
                    .map_or(("not read".to_owned(), false), Settlement::judged);
            }
            verdict
        })
        .collect()
}

fn judge_one(
    experiment: &Experiment,
    hypothesis: &Hypothesis,
    tally: &Tally,
    series: &[Series],
) -> Verdict {
    let (start, end) = experiment.window_of(hypothesis);
    let (start_ms, end_ms) = (start.as_millis() as u64, end.as_millis() as u64);
    let records = tally.sent_between(start_ms, end_ms);
    let mut verdict = Verdict {
        name: hypothesis.name.clone(),
        window: match hypothesis.group {
            Group::Experiment => window_name(hypothesis, start_ms, end_ms),
            Group::Control => format!(
                "{}, control group",
                window_name(hypothesis, start_ms, end_ms)
            ),
        },
        ..Verdict::default()
    };
    if let Some(rate) = hypothesis.success_rate {
        let ok = records.iter().filter(|r| r.ok).count();
        verdict.measure = "success rate".into();
        verdict.threshold = format!("≥ {}%", rate.at_least * 100.0);
        if records.is_empty() {
            verdict.measured = "no requests in the window".into();
        } else {
            let share = ok as f64 / records.len() as f64;
            verdict.measured = format!("{:.2}% of {}", share * 100.0, records.len());
            verdict.passed = share >= rate.at_least;
        }
    } else if let Some(bound) = hypothesis.latency {
        let mut latencies: Vec<f64> = records.iter().filter(|r| r.ok).map(|r| r.took_ms).collect();
        verdict.measure = format!("p{} latency", bound.percentile);
        verdict.threshold = format!("≤ {} ms", bound.at_most.as_millis());
        match percentile(&mut latencies, bound.percentile) {
            Some(ms) => {
                verdict.measured = format!("{ms:.1} ms");
                verdict.passed = ms <= bound.at_most.as_secs_f64() * 1000.0;
            }
            None => verdict.measured = "no successful requests in the window".into(),
        }
    } else if let Some(probe) = &hypothesis.probe {
        verdict.measure = format!("{} reaches {}", probe.name, probe.reaches);
        verdict.threshold = format!("within {:?}", probe.within);
        let points = points_of(series, &probe.name);
        (verdict.measured, verdict.passed) =
            reaches(points, probe.reaches, probe.within, start_ms, end_ms);
    } else if let Some(alert) = &hypothesis.alert {
        let name = alert.series_name();
        verdict.measure = format!("{name} fires");
        verdict.threshold = format!("within {:?}", alert.within);
        let points = points_of(series, &name);
        (verdict.measured, verdict.passed) =
            reaches(points, FIRING, alert.within, start_ms, end_ms);
    }
    verdict
}

fn points_of<'s>(series: &'s [Series], name: &str) -> &'s [(u64, f64)] {
    series
        .iter()
        .find(|s| s.name == name)
        .map(|s| s.points.as_slice())
        .unwrap_or_default()
}

/// When `points` first reach `value` in the window, as the measured text, and whether
/// that was `within` of its start.
fn reaches(
    points: &[(u64, f64)],
    value: f64,
    within: Duration,
    start_ms: u64,
    end_ms: u64,
) -> (String, bool) {
    let reached = points.iter().find(|(at, v)| {
        *at >= start_ms && *at < end_ms.max(start_ms + 1) && (v - value).abs() < 1e-9
    });
    match reached {
        Some((at, _)) => {
            let after = at - start_ms;
            (
                format!("after {:.2} s", after as f64 / 1000.0),
                u128::from(after) <= within.as_millis(),
            )
        }
        None => {
            let last = points
                .last()
                .map_or("no sample".to_owned(), |(_, v)| format!("last {v}"));
            (format!("never in the window ({last})"), false)
        }
    }
}

fn window_name(hypothesis: &Hypothesis, start_ms: u64, end_ms: u64) -> String {
    let name = match hypothesis.window {
        Window::Before => "before",
        Window::During => "during",
        Window::After => "after",
        Window::Throughout => "throughout",
    };
    let fault = hypothesis
        .fault
        .as_ref()
        .map(|f| format!(" {f}"))
        .unwrap_or_default();
    format!(
        "{name}{fault} ({:.1}–{:.1} s)",
        start_ms as f64 / 1000.0,
        end_ms as f64 / 1000.0
    )
}

//! Hypotheses judged: each measure over its window of the run, against its threshold.

use super::experiment::{Experiment, Group, Hypothesis, Window};
use super::journal::{Series, Verdict};
use super::load::{Tallies, Tally, percentile};

/// The verdict on each hypothesis of `experiment`, from the load's `tally` and the
/// probes' `series`.
pub(super) fn judge(experiment: &Experiment, tallies: &Tallies, series: &[Series]) -> Vec<Verdict> {
    experiment
        .hypotheses
        .iter()
        .map(|h| {
            let tally = match h.group {
                Group::Experiment => &tallies.experiment,
                Group::Control => &tallies.control,
            };
            judge_one(experiment, h, tally, series)
        })
        .collect()
}

fn judge_one(
    experiment: &Experiment,
    hypothesis: &Hypothesis,
    tally: &Tally,
    series: &[Series],
) -> Verdict {
    let (start, end) = experiment.window(hypothesis.window);
    let (start_ms, end_ms) = (start.as_millis() as u64, end.as_millis() as u64);
    let records = tally.sent_between(start_ms, end_ms);
    let mut verdict = Verdict {
        name: hypothesis.name.clone(),
        window: match hypothesis.group {
            Group::Experiment => window_name(hypothesis.window, start_ms, end_ms),
            Group::Control => format!(
                "{}, control group",
                window_name(hypothesis.window, start_ms, end_ms)
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
        let points = series
            .iter()
            .find(|s| s.name == probe.name)
            .map(|s| s.points.as_slice())
            .unwrap_or_default();
        let reached = points.iter().find(|(at, value)| {
            *at >= start_ms
                && *at < end_ms.max(start_ms + 1)
                && (value - probe.reaches).abs() < 1e-9
        });
        match reached {
            Some((at, _)) => {
                let after = at - start_ms;
                verdict.measured = format!("after {:.2} s", after as f64 / 1000.0);
                verdict.passed = after as u128 <= probe.within.as_millis();
            }
            None => {
                let last = points
                    .last()
                    .map_or("no sample".to_owned(), |(_, v)| format!("last {v}"));
                verdict.measured = format!("never in the window ({last})");
            }
        }
    }
    verdict
}

fn window_name(window: Window, start_ms: u64, end_ms: u64) -> String {
    let name = match window {
        Window::Before => "before",
        Window::During => "during",
        Window::After => "after",
        Window::Throughout => "throughout",
    };
    format!(
        "{name} ({:.1}–{:.1} s)",
        start_ms as f64 / 1000.0,
        end_ms as f64 / 1000.0
    )
}

//! The report's timelines, made from the journal: requests per second (sent and
//! successful), error rate, p99 latency and one strip per sampled series, over one time
//! axis, with a strip naming the faults above them.
//!
//! Every fault window is a band across every plot, and the abort a line across every
//! plot, so what the load did can be read against what was broken at the time. The axis
//! spans everything the journal holds — the run, the last second of load, a fault, a
//! sample, the abort, an event — so nothing is drawn outside it. A second's values are
//! drawn at its middle; a second with nothing sent has no error rate and a second with no
//! success no latency: gaps, not zeros.

use std::fmt::Write as _;

use super::svg::{Axis, Band, LEFT, Line, Mark, Overlay, Plot, RIGHT, WIDTH, num};
use super::text::{duration, escape};
use crate::gameday::journal::{FaultWindow, Journal, Second};

/// Height of the load plots in the viewBox.
const LOAD_HEIGHT: f64 = 170.0;
/// Height of a series' strip.
const SERIES_HEIGHT: f64 = 120.0;
/// Height of one fault's row in the faults' strip.
const ROW: f64 = 20.0;

/// Every timeline of `journal`, as inline SVG elements one after the other.
pub fn timelines(journal: &Journal) -> String {
    let axis = Axis::new(end_ms(journal));
    let bands: Vec<Band> = journal.faults.iter().map(band).collect();
    let mark = journal.aborted.as_ref().map(|a| Mark {
        at_ms: a.at_ms,
        label: format!("aborted at {}: {}", duration(a.at_ms), a.reason),
    });
    let overlay = Overlay {
        axis,
        bands: &bands,
        mark: mark.as_ref(),
    };
    let mut out = faults_strip(&journal.faults, axis);
    for plot in plots(journal) {
        out.push_str(&plot.render(&overlay));
        out.push('\n');
    }
    out
}

/// The last moment the journal mentions, milliseconds since the start.
fn end_ms(journal: &Journal) -> u64 {
    let seconds = journal.seconds.iter().map(|s| (s.t + 1) * 1000);
    let faults = journal
        .faults
        .iter()
        .map(|f| f.end_ms.unwrap_or(f.start_ms).max(f.start_ms));
    let samples = journal
        .series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.0));
    let abort = journal.aborted.iter().map(|a| a.at_ms);
    let events = journal.events.iter().map(|e| e.at_ms);
    seconds
        .chain(faults)
        .chain(samples)
        .chain(abort)
        .chain(events)
        .fold(journal.duration_ms, u64::max)
}

/// What a fault window's band says on hover.
fn band(fault: &FaultWindow) -> Band {
    Band {
        start_ms: fault.start_ms,
        end_ms: fault.end_ms,
        label: describe(fault),
    }
}

/// `slow-payments: toxic latency on payments, 10.0 s – 20.0 s`.
fn describe(fault: &FaultWindow) -> String {
    let end = fault
        .end_ms
        .map_or_else(|| "never removed".to_string(), duration);
    format!(
        "{}: {} on {}, {} – {}",
        fault.name,
        fault.kind,
        fault.target,
        duration(fault.start_ms),
        end
    )
}

/// The load plots, then one per series.
fn plots(journal: &Journal) -> Vec<Plot> {
    let each = |f: fn(&Second) -> Option<f64>| per_second(&journal.seconds, f);
    let mut plots = vec![
        Plot {
            label: "requests/s".into(),
            kind: "rate",
            height: LOAD_HEIGHT,
            lines: vec![
                line(Some("sent"), "sent", each(|s| Some(s.sent as f64))),
                line(Some("ok"), "ok", each(|s| Some(s.ok as f64))),
            ],
        },
        Plot {
            label: "error rate %".into(),
            kind: "errors",
            height: LOAD_HEIGHT,
            lines: vec![line(
                None,
                "errors",
                each(|s| (s.sent > 0).then(|| 100.0 * s.failed as f64 / s.sent as f64)),
            )],
        },
        Plot {
            label: "p99 latency (ms)".into(),
            kind: "p99",
            height: LOAD_HEIGHT,
            lines: vec![line(None, "p99", each(|s| s.p99_ms))],
        },
    ];
    plots.extend(journal.series.iter().map(|series| {
        let mut points: Vec<(u64, Option<f64>)> =
            series.points.iter().map(|&(t, v)| (t, Some(v))).collect();
        points.sort_by_key(|p| p.0);
        Plot {
            label: series.name.clone(),
            kind: "series",
            height: SERIES_HEIGHT,
            lines: vec![Line {
                name: None,
                class: "series",
                points,
                step: true,
            }],
        }
    }));
    plots
}

/// One value per second, at the second's middle.
fn per_second(seconds: &[Second], value: fn(&Second) -> Option<f64>) -> Vec<(u64, Option<f64>)> {
    seconds
        .iter()
        .map(|s| (s.t * 1000 + 500, value(s)))
        .collect()
}

fn line(name: Option<&str>, class: &'static str, points: Vec<(u64, Option<f64>)>) -> Line {
    Line {
        name: name.map(str::to_string),
        class,
        points,
        step: false,
    }
}

/// One row per fault over the shared axis: a bar for its window, labelled with its name,
/// kind and target.
fn faults_strip(faults: &[FaultWindow], axis: Axis) -> String {
    let height = 26.0 + ROW * faults.len().max(1) as f64;
    let mut svg = format!(
        "<svg class=\"plot-faults\" role=\"img\" aria-label=\"fault windows\" \
         viewBox=\"0 0 {} {}\"><title>fault windows</title>\
         <text class=\"heading\" x=\"{}\" y=\"14\">faults</text>",
        num(WIDTH),
        num(height),
        num(LEFT)
    );
    if faults.is_empty() {
        let _ = write!(
            svg,
            "<text class=\"empty\" x=\"{}\" y=\"36\" text-anchor=\"middle\">no faults</text>",
            num((LEFT + WIDTH - RIGHT) / 2.0)
        );
    }
    for (i, fault) in faults.iter().enumerate() {
        let y = 22.0 + ROW * i as f64;
        let x0 = axis.x(fault.start_ms);
        let x1 = axis.x(fault.end_ms.unwrap_or(axis.end_ms()));
        let label = escape(&format!(
            "{} — {} on {}",
            fault.name, fault.kind, fault.target
        ));
        // The label reads from the bar's start, or ends at its end in the right half.
        let (tx, anchor) = if x0 < (LEFT + WIDTH) / 2.0 {
            (x0 + 4.0, "start")
        } else {
            (x1 - 4.0, "end")
        };
        let _ = write!(
            svg,
            "<rect class=\"fault{}\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\"><title>{}</title></rect>\
             <text class=\"fault-label\" x=\"{}\" y=\"{}\" text-anchor=\"{anchor}\">{label}</text>",
            if fault.end_ms.is_none() { " open" } else { "" },
            num(x0),
            num(y),
            num((x1 - x0).max(1.0)),
            num(ROW - 4.0),
            escape(&describe(fault)),
            num(tx),
            num(y + 12.0),
        );
    }
    svg.push_str("</svg>\n");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gameday::report::sample::{self, HOSTILE};

    #[test]
    fn a_plot_per_load_measure_and_per_series() {
        let out = timelines(&sample::journal());
        assert_eq!(out.matches("<svg class=\"plot ").count(), 3 + 2);
        for label in [
            "requests/s",
            "error rate %",
            "p99 latency (ms)",
            "queue depth",
        ] {
            assert!(out.contains(&format!("aria-label=\"{label}\"")), "{label}");
        }
        assert!(out.contains("aria-label=\"palisade_circuit_state{policy=&quot;orders&quot;}\""));
        assert_eq!(out.matches("class=\"plot plot-series\"").count(), 2);
    }

    #[test]
    fn every_fault_window_is_a_band_on_every_plot_and_named_in_the_strip() {
        let out = timelines(&sample::journal());
        let plots = 5;
        assert_eq!(out.matches("<rect class=\"band\"").count(), plots);
        assert_eq!(out.matches("<rect class=\"band open\"").count(), plots);
        assert_eq!(
            out.matches("<title>slow-payments: toxic latency on payments, 10.0 s – 20.0 s</title>")
                .count(),
            plots + 1
        );
        assert!(out.contains(">slow-payments — toxic latency on payments</text>"));
        assert!(out.contains(">kill-stock — kill on stock</text>"));
        assert!(out.contains("kill-stock: kill on stock, 15.0 s – never removed"));
    }

    #[test]
    fn the_abort_is_a_line_on_every_plot() {
        let out = timelines(&sample::journal());
        assert_eq!(out.matches("<line class=\"abort\"").count(), 5);
        assert!(out.contains("aborted at 18.2 s: success rate 55% &lt; 60%"));
    }

    #[test]
    fn gaps_and_non_finite_samples_write_no_nan() {
        let out = timelines(&sample::journal());
        assert!(!out.contains("NaN"));
        assert!(!out.contains("inf"));
    }

    #[test]
    fn the_axis_spans_everything_the_journal_holds() {
        let mut journal = sample::journal();
        assert_eq!(end_ms(&journal), 30_000);
        journal.faults[1].end_ms = Some(45_000);
        assert_eq!(end_ms(&journal), 45_000);
        journal.events.push(crate::gameday::journal::Event {
            at_ms: 50_000,
            text: "cleanup".into(),
        });
        assert_eq!(end_ms(&journal), 50_000);
    }

    #[test]
    fn an_empty_journal_draws_empty_plots() {
        let out = timelines(&Journal::default());
        assert_eq!(out.matches("<svg class=\"plot ").count(), 3);
        assert_eq!(out.matches("no samples").count(), 3);
        assert!(out.contains("no faults"));
        assert!(!out.contains("<path"));
    }

    #[test]
    fn hostile_names_are_escaped() {
        let out = timelines(&sample::hostile());
        assert!(!out.contains(HOSTILE));
        assert!(!out.contains("<script"));
        assert!(!out.contains("<b>"));
    }
}

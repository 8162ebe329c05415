//! (tests only) Journals to render: a run with load, faults, series, verdicts and an
//! abort, and one whose every text is hostile markup.

use crate::gameday::journal::{Aborted, Event, FaultWindow, Journal, Second, Series, Verdict};

/// A 30-second run: steady load, a latency fault from 10 s to 20 s, a kill from 15 s that
/// was never removed, a breaker that opened and closed, one verdict held and one not, an
/// abort at 18 s. Seconds without successes have no latency (None), and one sample of the
/// series is NaN.
pub fn journal() -> Journal {
    let seconds = (0..30)
        .map(|t| {
            let failed = if (10..20).contains(&t) { 40 } else { 1 };
            let ok = if t == 16 { 0 } else { 100 - failed };
            Second {
                t,
                sent: 100,
                ok,
                failed: 100 - ok,
                p50_ms: (ok > 0).then_some(12.0 + t as f64),
                p99_ms: (ok > 0).then_some(40.0 + 10.0 * t as f64),
            }
        })
        .collect();
    Journal {
        title: "orders survive a slow payment service".into(),
        file: "gamedays/orders.toml".into(),
        seed: 42,
        started_at: "2025-01-02T03:04:05Z".into(),
        duration_ms: 30_000,
        seconds,
        control: Vec::new(),
        faults: vec![
            FaultWindow {
                name: "slow-payments".into(),
                kind: "toxic latency".into(),
                target: "payments".into(),
                start_ms: 10_000,
                end_ms: Some(20_000),
            },
            FaultWindow {
                name: "kill-stock".into(),
                kind: "kill".into(),
                target: "stock".into(),
                start_ms: 15_000,
                end_ms: None,
            },
        ],
        series: vec![
            Series {
                name: "palisade_circuit_state{policy=\"orders\"}".into(),
                points: vec![
                    (0, 0.0),
                    (11_000, 1.0),
                    (12_000, f64::NAN),
                    (14_000, 2.0),
                    (21_000, 0.0),
                ],
            },
            Series {
                name: "queue depth".into(),
                points: vec![(5_000, 3.0), (25_000, f64::INFINITY), (26_000, 7.5)],
            },
        ],
        verdicts: vec![
            Verdict {
                name: "orders keep succeeding".into(),
                window: "during".into(),
                measure: "success rate".into(),
                measured: "60.0%".into(),
                threshold: "≥ 99%".into(),
                passed: false,
            },
            Verdict {
                name: "breaker opens".into(),
                window: "during".into(),
                measure: "breaker opened within".into(),
                measured: "opened after 1.0 s".into(),
                threshold: "≤ 5 s".into(),
                passed: true,
            },
        ],
        aborted: Some(Aborted {
            at_ms: 18_250,
            reason: "success rate 55% < 60%".into(),
            cleared_in_ms: 120,
        }),
        passed: false,
        events: vec![
            Event {
                at_ms: 0,
                text: "load started: 100 rps".into(),
            },
            Event {
                at_ms: 10_000,
                text: "fault slow-payments added".into(),
            },
            Event {
                at_ms: 18_250,
                text: "abort: every fault removed".into(),
            },
        ],
    }
}

/// Markup in every text field.
pub const HOSTILE: &str = "<script>alert('x')</script> & \"quoted\" <b>";

/// [`journal`] with [`HOSTILE`] in every text the reports write.
pub fn hostile() -> Journal {
    let mut journal = journal();
    let h = || HOSTILE.to_string();
    journal.title = h();
    journal.file = h();
    journal.started_at = h();
    for fault in &mut journal.faults {
        (fault.name, fault.kind, fault.target) = (h(), h(), h());
    }
    for series in &mut journal.series {
        series.name = h();
    }
    for v in &mut journal.verdicts {
        (v.name, v.window, v.measure, v.measured, v.threshold) = (h(), h(), h(), h(), h());
    }
    if let Some(aborted) = &mut journal.aborted {
        aborted.reason = h();
    }
    for event in &mut journal.events {
        event.text = h();
    }
    journal
}

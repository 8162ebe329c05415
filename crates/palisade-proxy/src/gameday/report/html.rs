//! The journal as one self-contained HTML page: what ran, whether it held, and timelines
//! that show why.
//!
//! Self-contained means it opens from a CI artifact or a mail attachment with no network:
//! the CSS is inline, the plots are SVG drawn here (svg.rs, timeline.rs), the page has no
//! script, and its Content-Security-Policy forbids loading anything at all — a fetch the
//! page should never make is refused rather than made. Every text from the journal is
//! escaped (text.rs), so an experiment's names show as written and never act as markup.

use std::fmt::Write as _;

use super::text::{duration, escape};
use super::timeline::timelines;
use crate::gameday::journal::{Journal, Verdict};

/// Nothing loads: styles inline only, no script, no image, no font, no connection.
const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'";

/// The page's styles.
const STYLE: &str = "\
:root{--pass:#1a7f37;--fail:#cf222e;--ink:#1f2328;--mute:#656d76;--line:#d0d7de}
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;color:var(--ink);margin:0 auto;padding:24px;max-width:1100px}
h1{font-size:22px;margin:0 0 8px}h2{font-size:17px;margin:28px 0 8px}
.badge{display:inline-block;font-weight:700;padding:2px 10px;border-radius:4px;color:#fff;margin-right:8px}
.badge.passed{background:var(--pass)}.badge.failed,.badge.aborted{background:var(--fail)}
.abort-reason{color:var(--fail);font-weight:600}
dl.facts{display:grid;grid-template-columns:max-content 1fr;gap:2px 16px;margin:12px 0}
dl.facts dt{color:var(--mute)}dl.facts dd{margin:0;font-family:ui-monospace,monospace}
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:4px 8px;border-bottom:1px solid var(--line);vertical-align:top}
th{color:var(--mute);font-weight:600}td.result{font-weight:700}
tr.pass td.result{color:var(--pass)}tr.fail td.result{color:var(--fail)}tr.fail{background:#ffebe9}
svg{display:block;width:100%;height:auto;margin:4px 0}
svg text{font:11px system-ui,sans-serif;fill:var(--ink)}svg .heading{font-weight:700;font-size:12px}
svg .tick{fill:var(--mute)}svg .empty{fill:var(--mute);font-style:italic}
svg .grid{stroke:#eaeef2;stroke-width:1}
svg .band{fill:#fb8f44;fill-opacity:.16}svg .band.open{fill-opacity:.1;stroke:#fb8f44;stroke-dasharray:4 3}
svg .fault{fill:#fb8f44;fill-opacity:.55}svg .fault.open{fill-opacity:.3;stroke:#bc4c00;stroke-dasharray:4 3}
svg .abort{stroke:var(--fail);stroke-width:2;stroke-dasharray:6 4}
svg .line{fill:none;stroke-width:1.8;stroke-linejoin:round;stroke-linecap:round}
svg .line.sent{stroke:#8c959f}svg .line.ok{stroke:var(--pass)}svg .line.errors{stroke:var(--fail)}
svg .line.p99{stroke:#8250df}svg .line.series{stroke:#0969da}
svg .legend.sent{fill:#8c959f}svg .legend.ok{fill:var(--pass)}
ol.events{list-style:none;padding:0;font-family:ui-monospace,monospace;font-size:13px}
ol.events time{display:inline-block;min-width:7em;color:var(--mute)}
footer{margin-top:32px;color:var(--mute);font-size:12px}
";

/// The HTML report of `journal`.
pub fn html(journal: &Journal) -> String {
    let title = escape(&journal.title);
    let outcome = if journal.passed { "PASSED" } else { "FAILED" };
    let mut page = String::new();
    let _ = write!(
        page,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta http-equiv=\"Content-Security-Policy\" content=\"{CSP}\">\
         <meta name=\"generator\" content=\"palisade gameday\">\
         <title>{title} — {outcome}</title>\n<style>\n{STYLE}</style></head>\n<body>\n"
    );
    header(&mut page, journal);
    verdicts(&mut page, &journal.verdicts);
    let _ = write!(
        page,
        "<section class=\"timelines\"><h2>Timelines</h2>\n{}</section>\n",
        timelines(journal)
    );
    faults(&mut page, journal);
    events(&mut page, journal);
    page.push_str("<footer>Written by palisade gameday.</footer>\n</body></html>\n");
    page
}

/// Title, overall verdict, abort, and the facts to reproduce the run.
fn header(page: &mut String, journal: &Journal) {
    let (class, outcome) = if journal.passed {
        ("passed", "PASSED")
    } else {
        ("failed", "FAILED")
    };
    let _ = write!(
        page,
        "<header><h1>{}</h1>\n<p class=\"outcome\"><span class=\"badge {class}\">{outcome}</span>",
        escape(&journal.title)
    );
    if let Some(aborted) = &journal.aborted {
        let _ = write!(
            page,
            "<span class=\"badge aborted\">ABORTED</span>\
             <span class=\"abort-reason\">at {}: {}</span> — every fault removed in {} ms",
            duration(aborted.at_ms),
            escape(&aborted.reason),
            aborted.cleared_in_ms
        );
    }
    page.push_str("</p>\n<dl class=\"facts\">");
    for (name, value) in [
        ("file", escape(&journal.file)),
        ("seed", journal.seed.to_string()),
        ("started", escape(&journal.started_at)),
        ("duration", duration(journal.duration_ms)),
    ] {
        let _ = write!(page, "<dt>{name}</dt><dd>{value}</dd>");
    }
    page.push_str("</dl></header>\n");
}

/// One row per hypothesis.
fn verdicts(page: &mut String, verdicts: &[Verdict]) {
    page.push_str(
        "<section><h2>Hypotheses</h2>\n<table class=\"verdicts\"><thead><tr><th>hypothesis</th>\
         <th>window</th><th>measure</th><th>measured</th><th>threshold</th><th>result</th>\
         </tr></thead><tbody>\n",
    );
    if verdicts.is_empty() {
        page.push_str("<tr><td colspan=\"6\">no hypotheses</td></tr>\n");
    }
    for v in verdicts {
        let (class, result) = if v.passed {
            ("pass", "pass")
        } else {
            ("fail", "FAIL")
        };
        let _ = writeln!(
            page,
            "<tr class=\"{class}\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
             <td class=\"result\">{result}</td></tr>",
            escape(&v.name),
            escape(&v.window),
            escape(&v.measure),
            escape(&v.measured),
            escape(&v.threshold)
        );
    }
    page.push_str("</tbody></table></section>\n");
}

/// The fault windows as a table, with their exact times.
fn faults(page: &mut String, journal: &Journal) {
    if journal.faults.is_empty() {
        return;
    }
    page.push_str(
        "<section><h2>Faults</h2>\n<table class=\"faults\"><thead><tr><th>fault</th>\
         <th>kind</th><th>target</th><th>from</th><th>to</th></tr></thead><tbody>\n",
    );
    for fault in &journal.faults {
        let end = fault
            .end_ms
            .map_or_else(|| "never removed".to_string(), duration);
        let _ = writeln!(
            page,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{end}</td></tr>",
            escape(&fault.name),
            escape(&fault.kind),
            escape(&fault.target),
            duration(fault.start_ms)
        );
    }
    page.push_str("</tbody></table></section>\n");
}

/// What the runner did, in order.
fn events(page: &mut String, journal: &Journal) {
    page.push_str("<section><h2>Events</h2>\n<ol class=\"events\">\n");
    if journal.events.is_empty() {
        page.push_str("<li>no events</li>\n");
    }
    for event in &journal.events {
        let _ = writeln!(
            page,
            "<li><time>{}</time> {}</li>",
            duration(event.at_ms),
            escape(&event.text)
        );
    }
    page.push_str("</ol></section>\n");
}

#[cfg(test)]
mod tests {
    use super::html;
    use crate::gameday::journal::Journal;
    use crate::gameday::report::sample::{self, HOSTILE};

    #[test]
    fn the_header_says_what_ran_and_how_it_ended() {
        let page = html(&sample::journal());
        assert!(page.starts_with("<!DOCTYPE html>"));
        assert!(page.contains("<h1>orders survive a slow payment service</h1>"));
        assert!(page.contains("<span class=\"badge failed\">FAILED</span>"));
        assert!(page.contains("<span class=\"badge aborted\">ABORTED</span>"));
        assert!(page.contains("at 18.2 s: success rate 55% &lt; 60%"));
        assert!(page.contains("<dt>file</dt><dd>gamedays/orders.toml</dd>"));
        assert!(page.contains("<dt>seed</dt><dd>42</dd>"));
        assert!(page.contains("<dt>started</dt><dd>2025-01-02T03:04:05Z</dd>"));
        assert!(page.contains("<dt>duration</dt><dd>30.0 s</dd>"));
    }

    #[test]
    fn a_passed_run_says_passed_and_nothing_about_an_abort() {
        let journal = Journal {
            passed: true,
            aborted: None,
            ..sample::journal()
        };
        let page = html(&journal);
        assert!(page.contains("<span class=\"badge passed\">PASSED</span>"));
        assert!(!page.contains("FAILED"));
        assert!(!page.contains("ABORTED"));
    }

    #[test]
    fn a_row_per_verdict_coloured_by_its_result() {
        let page = html(&sample::journal());
        assert!(page.contains(
            "<tr class=\"fail\"><td>orders keep succeeding</td><td>during</td>\
             <td>success rate</td><td>60.0%</td><td>≥ 99%</td><td class=\"result\">FAIL</td></tr>"
        ));
        assert!(page.contains("<tr class=\"pass\"><td>breaker opens</td>"));
        assert!(page.contains("tr.fail td.result{color:var(--fail)}"));
    }

    #[test]
    fn the_timelines_the_faults_and_the_events_are_on_the_page() {
        let page = html(&sample::journal());
        assert_eq!(page.matches("<svg class=\"plot ").count(), 5);
        assert_eq!(page.matches("<svg class=\"plot-faults\"").count(), 1);
        assert!(page.contains(
            "<td>kill-stock</td><td>kill</td><td>stock</td><td>15.0 s</td><td>never removed</td>"
        ));
        assert!(page.contains("<li><time>18.2 s</time> abort: every fault removed</li>"));
    }

    #[test]
    fn nothing_is_loaded_from_anywhere() {
        let page = html(&sample::journal());
        assert!(page.contains("content=\"default-src 'none'; style-src 'unsafe-inline'\""));
        for reference in [
            "src=", "href=", "url(", "@import", "http:", "https:", "<script", "<link",
        ] {
            assert!(!page.contains(reference), "{reference}");
        }
    }

    #[test]
    fn hostile_text_is_escaped_everywhere() {
        let page = html(&sample::hostile());
        assert!(!page.contains(HOSTILE));
        assert!(!page.contains("<script"));
        assert!(!page.contains("<b>"));
        let escaped =
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;quoted&quot; &lt;b&gt;";
        // The title, heading, file, start, verdict cells, fault cells, events and more.
        assert!(
            page.matches(escaped).count() >= 20,
            "{}",
            page.matches(escaped).count()
        );
        assert!(page.contains(&format!("<title>{escaped} — FAILED</title>")));
    }

    #[test]
    fn an_empty_journal_renders() {
        let page = html(&Journal::default());
        assert!(page.contains("no hypotheses"));
        assert!(page.contains("no events"));
        assert_eq!(page.matches("<svg class=\"plot ").count(), 3);
        assert!(!page.contains("NaN"));
        assert!(page.ends_with("</body></html>\n"));
    }

    #[test]
    fn non_finite_samples_write_no_nan() {
        let mut journal = sample::journal();
        journal.seconds[3].p99_ms = Some(f64::NAN);
        journal.seconds[4].p99_ms = Some(f64::NEG_INFINITY);
        journal.series[0].points.push((29_000, f64::NAN));
        let page = html(&journal);
        assert!(!page.contains("NaN"));
        assert!(!page.contains("inf"));
    }
}

//! The game day's HTML report opened in a real browser: headless Chromium (Debian's
//! `chromium`) loads the `report.html` that `write_all` wrote, with its plots present in
//! the DOM it built and not one console message from the page — no script error, no
//! refused load, no markup from the journal run as markup. A control page with a script
//! error and an outside image shows that such messages are seen. A screenshot is left in
//! the target directory for review. Skipped loudly without Chromium; a failure in CI.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use palisade_proxy::gameday::journal::{
    Aborted, Event, FaultWindow, Journal, Second, Series, Verdict,
};
use palisade_proxy::gameday::report::write_all;
use tokio::process::Command;

/// A title that would run if it were not escaped.
const HOSTILE_TITLE: &str = "checkout <script>console.error('escaped?')</script> & \"friends\"";

/// A 60-second run: a latency fault, a kill never removed, a breaker's state, an abort.
fn journal() -> Journal {
    let seconds = (0..60)
        .map(|t| {
            let failed = match t {
                20..=29 => 3 + t % 5,
                30..=44 => 35,
                _ => 1,
            };
            let ok = if t == 33 { 0 } else { 200 - failed };
            Second {
                t,
                sent: 200,
                ok,
                failed: 200 - ok,
                p50_ms: (ok > 0).then_some(8.0 + (t % 7) as f64),
                p99_ms: (ok > 0).then(|| {
                    if (20..30).contains(&t) {
                        320.0
                    } else {
                        25.0 + (t % 5) as f64
                    }
                }),
            }
        })
        .collect();
    let breaker = [
        (0, 0.0),
        (31_000, 1.0),
        (36_000, 2.0),
        (36_500, 1.0),
        (41_000, 2.0),
        (42_000, 0.0),
    ];
    Journal {
        title: HOSTILE_TITLE.into(),
        file: "gamedays/<checkout>.toml".into(),
        seed: 7,
        started_at: "2025-06-01T12:00:00Z".into(),
        duration_ms: 60_000,
        seconds,
        control: Vec::new(),
        faults: vec![
            FaultWindow {
                name: "slow-payments".into(),
                kind: "toxic latency".into(),
                target: "payments".into(),
                start_ms: 20_000,
                end_ms: Some(30_000),
            },
            FaultWindow {
                name: "kill-stock".into(),
                kind: "kill".into(),
                target: "stock <svc>".into(),
                start_ms: 30_000,
                end_ms: None,
            },
        ],
        series: vec![
            Series {
                name: "palisade_circuit_state{policy=\"stock\"}".into(),
                points: breaker.to_vec(),
            },
            Series {
                name: "</svg><script>alert(1)</script>".into(),
                points: vec![
                    (1_000, 1.0),
                    (2_000, f64::NAN),
                    (3_000, f64::INFINITY),
                    (50_000, 4.0),
                ],
            },
        ],
        verdicts: vec![
            Verdict {
                name: "checkout keeps succeeding".into(),
                window: "during".into(),
                measure: "success rate".into(),
                measured: "82.5%".into(),
                threshold: "≥ 99%".into(),
                passed: false,
            },
            Verdict {
                name: "breaker <opens>".into(),
                window: "during".into(),
                measure: "breaker opened within".into(),
                measured: "opened after 1.0 s".into(),
                threshold: "≤ 5 s".into(),
                passed: true,
            },
        ],
        aborted: Some(Aborted {
            at_ms: 45_000,
            reason: "error rate 17.5% > 15%".into(),
            cleared_in_ms: 80,
        }),
        passed: false,
        events: vec![
            Event {
                at_ms: 0,
                text: "load started".into(),
            },
            Event {
                at_ms: 45_000,
                text: "abort: <every> fault removed".into(),
            },
        ],
    }
}

/// The Chromium binary, if installed.
async fn chromium() -> Option<&'static str> {
    for name in ["chromium", "chromium-browser"] {
        let found = Command::new(name)
            .arg("--version")
            .output()
            .await
            .is_ok_and(|o| o.status.success());
        if found {
            return Some(name);
        }
    }
    None
}

/// Runs headless Chromium on `page` with `args`, its console logged to stderr.
async fn run(chromium: &str, page: &Path, profile: &Path, args: &[&str]) -> Output {
    let url = format!("file://{}", page.display());
    let command = Command::new(chromium)
        .args([
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(&url)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(120), command)
        .await
        .expect("chromium finishes within 2 minutes")
        .expect("chromium runs");
    assert!(output.status.success(), "chromium failed: {output:?}");
    output
}

/// The page's console messages in Chromium's log: `…:INFO:CONSOLE…] "message", source: …`.
fn console_messages(stderr: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(stderr)
        .lines()
        .filter(|line| line.contains("CONSOLE") || line.contains("Uncaught"))
        .map(str::to_string)
        .collect()
}

#[tokio::test]
async fn the_html_report_opens_in_headless_chromium_with_its_plots_and_no_console_error() {
    let Some(chromium) = chromium().await else {
        assert!(
            std::env::var_os("CI").is_none(),
            "chromium is not installed: .ci/run installs it (apt-get install chromium)"
        );
        eprintln!(
            "\n*** SKIPPED: the HTML report in a browser (no `chromium` binary); \
             apt-get install chromium ***\n"
        );
        return;
    };
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("gameday-report");
    let _ = std::fs::remove_dir_all(&dir);
    let paths = write_all(&journal(), &dir).expect("the reports are written");
    let profile = dir.join("chromium-profile");

    // The control: a page that errs is seen to err.
    let control = dir.join("control.html");
    std::fs::write(
        &control,
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; script-src 'unsafe-inline'\">\
         <title>control</title></head><body><img src=\"http://127.0.0.1:9/x.png\">\
         <script>undefinedFunction();</script></body></html>",
    )
    .unwrap();
    let output = run(chromium, &control, &profile, &["--dump-dom"]).await;
    let messages = console_messages(&output.stderr);
    assert!(
        messages
            .iter()
            .any(|m| m.contains("Uncaught ReferenceError")),
        "a script error is not seen in chromium's log: {messages:#?}"
    );
    assert!(
        messages
            .iter()
            .any(|m| m.contains("Content Security Policy")),
        "a refused load is not seen in chromium's log: {messages:#?}"
    );

    // The report.
    let output = run(chromium, &paths.html, &profile, &["--dump-dom"]).await;
    let messages = console_messages(&output.stderr);
    assert!(
        messages.is_empty(),
        "the report logged to the console: {messages:#?}"
    );
    let dom = String::from_utf8_lossy(&output.stdout);
    for label in [
        "requests/s",
        "error rate %",
        "p99 latency (ms)",
        "fault windows",
    ] {
        assert!(
            dom.contains(&format!("aria-label=\"{label}\"")),
            "no plot of {label} in the DOM"
        );
    }
    // Three load plots and a strip per series.
    assert_eq!(dom.matches("<svg class=\"plot ").count(), 3 + 2, "{dom}");
    assert_eq!(dom.matches("class=\"plot plot-series\"").count(), 2);
    // Each of the two fault windows is a band on each of the five plots.
    assert_eq!(dom.matches("<rect class=\"band").count(), 2 * 5);
    assert!(dom.contains("aria-label=\"palisade_circuit_state{policy=&quot;stock&quot;}\""));
    // The hostile texts stayed text: no element came from the journal.
    assert!(!dom.contains("<script"), "{dom}");
    assert!(dom.contains(
        "checkout &lt;script&gt;console.error('escaped?')&lt;/script&gt; &amp; \"friends\""
    ));
    assert!(!dom.contains("NaN"));

    // A screenshot for a reader.
    let screenshot = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("gameday-report.png");
    let _ = std::fs::remove_file(&screenshot);
    let shot = format!("--screenshot={}", screenshot.display());
    run(
        chromium,
        &paths.html,
        &profile,
        &[&shot, "--window-size=1280,2200"],
    )
    .await;
    let png = std::fs::read(&screenshot).expect("chromium wrote the screenshot");
    assert!(png.starts_with(b"\x89PNG"), "not a PNG");
    eprintln!(
        "report: {}\nscreenshot: {}",
        paths.html.display(),
        screenshot.display()
    );
    let _ = std::fs::remove_dir_all(&profile);
}

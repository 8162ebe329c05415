//! The demo's live table and summary.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use super::load::{Path, Tally};
use crate::runtime::Runtime;

pub(super) fn intro(length: Duration, proxy: SocketAddr, admin: SocketAddr) {
    println!("Dashboard: http://{admin}/dashboard — open it to watch the run live\n");
    println!(
        "Palisade demo — {} s of traffic, the same requests straight to each upstream and through palisade.",
        length.as_secs()
    );
    println!("  steady: healthy, 3% of calls slow (400 ms)");
    println!(
        "  flaky:  25% of calls fail, then it goes down for 30% of the run, then recovers (palisade has a backup replica)"
    );
    println!("  stuck:  30% of calls never answer");
    println!(
        "  checkout: a saga every 2 s — reserve on steady, charge on payments (every third card declined: compensated)"
    );
    println!(
        "proxy on http://{proxy}, admin on http://{admin} (try /admin/state and /metrics). Ctrl-C stops.\n"
    );
}

fn ms(d: Option<Duration>) -> String {
    match d {
        Some(d) if d >= Duration::from_secs(10) => format!("{:.0}s", d.as_secs_f64()),
        Some(d) => format!("{:.0}ms", d.as_secs_f64() * 1000.0),
        None => "-".to_owned(),
    }
}

fn breaker_states(runtime: &Runtime, name: &str) -> String {
    let Some(upstream) = runtime.upstream(name) else {
        return "-".to_owned();
    };
    let mut states: Vec<String> = upstream
        .breakers()
        .iter()
        .map(|b| b.state().as_str().to_owned())
        .collect();
    states.dedup();
    states.join("/")
}

fn header() {
    println!(
        "  {:<7} │ {:>7} {:>7} {:>7} {:>7} │ {:>7} {:>8} {:>7} {:>7} │ {:<10} {:>7} {:>8}",
        "",
        "direct",
        "p50",
        "p99",
        "waiting",
        "palis.",
        "fallback",
        "p50",
        "p99",
        "breaker",
        "retries",
        "rejected"
    );
}

/// `whole`: shares of everything sent (the summary), else of what finished (a second).
fn row(name: &str, direct: &Tally, proxied: &Tally, breaker: &str, whole: bool) {
    let base = |t: &Tally| if whole { t.sent } else { t.finished() };
    println!(
        "  {:<7} │ {:>6.1}% {:>7} {:>7} {:>7} │ {:>6.1}% {:>8} {:>7} {:>7} │ {:<10} {:>7} {:>8}",
        name,
        100.0 * direct.answered_share(base(direct)),
        ms(direct.percentile(0.5)),
        ms(direct.percentile(0.99)),
        direct.waiting(),
        100.0 * proxied.answered_share(base(proxied)),
        proxied.fallback,
        ms(proxied.percentile(0.5)),
        ms(proxied.percentile(0.99)),
        breaker,
        proxied.retries,
        proxied.rejected,
    );
}

pub(super) fn second(
    elapsed: Duration,
    second: &BTreeMap<(&'static str, Path), Tally>,
    runtime: &Runtime,
) {
    println!(
        "t = {:>3} s   (shares of the requests that finished this second)",
        elapsed.as_secs()
    );
    header();
    for name in ["steady", "flaky", "stuck"] {
        let empty = Tally::default();
        let direct = second.get(&(name, Path::Direct)).unwrap_or(&empty);
        let proxied = second.get(&(name, Path::Palisade)).unwrap_or(&empty);
        row(name, direct, proxied, &breaker_states(runtime, name), false);
    }
}

pub(super) fn summary(total: &BTreeMap<(&'static str, Path), Tally>) {
    println!(
        "\nSummary (answered = 2xx from the upstream or a fallback; waiting = never answered):"
    );
    header();
    for name in ["steady", "flaky", "stuck"] {
        let empty = Tally::default();
        let direct = total.get(&(name, Path::Direct)).unwrap_or(&empty);
        let proxied = total.get(&(name, Path::Palisade)).unwrap_or(&empty);
        row(name, direct, proxied, "", true);
    }
    let answered = |path: Path| {
        let (ok, sent) = total
            .iter()
            .filter(|((_, p), _)| *p == path)
            .fold((0, 0), |(ok, sent), (_, t)| {
                (ok + t.ok + t.fallback, sent + t.sent)
            });
        100.0 * ok as f64 / sent.max(1) as f64
    };
    println!(
        "\nAnswered: {:.1}% straight to the upstreams, {:.1}% through palisade.",
        answered(Path::Direct),
        answered(Path::Palisade)
    );
}

//! The outage game: the real `palisade` binary, then HAProxy, nginx and Caddy (each given
//! its best resilience settings: `game/peers.rs`), one after the other, in front of three
//! real endpoints with a real capacity, through one scripted outage — an endpoint dies and
//! returns; another answers 503 to half of the data requests while its health check
//! passes; the offered load jumps to three times what the endpoints can serve, a fifth of
//! it critical; an endpoint hangs; recovery.
//!
//! Palisade must lose no request to a client timeout and serve at least 99% of critical
//! requests under overload (the critical load alone fits the capacity). The side-by-side
//! figures are printed (`cargo test --test game -- --nocapture`) and recorded in
//! docs/BENCHMARKS.md. A peer not installed is skipped loudly (a failure in CI).

mod support;

#[path = "game/load.rs"]
mod load;
#[path = "game/peers.rs"]
mod peers;
#[path = "game/servers.rs"]
mod servers;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use load::{CLIENT_TIMEOUT, Figures, Load, Tally};
use peers::Peer;
use servers::{Behaviour, Endpoint};
use support::Proxy;

/// Requests each endpoint serves at once, and for how long each.
const CAPACITY: usize = 4;
const SERVICE: Duration = Duration::from_millis(40);
/// So the three endpoints serve 300 requests a second in all.
const NORMAL: Load = Load {
    per_second: 150.0,
    critical_share: 0.2,
};
const OVERLOAD: Load = Load {
    per_second: 900.0,
    critical_share: 0.2,
};
const PHASE: Duration = Duration::from_secs(4);

/// The script: each phase's name, load, and what happens to the endpoints as it begins.
const PHASES: [(&str, Load); 6] = [
    ("steady", NORMAL),
    ("an endpoint down", NORMAL),
    ("it returns; another gray", NORMAL),
    ("overload 3x", OVERLOAD),
    ("an endpoint hangs", NORMAL),
    ("recovery", NORMAL),
];
const OVERLOAD_PHASE: usize = 3;

async fn begin_phase(phase: usize, endpoints: &[Endpoint; 3]) {
    match phase {
        1 => endpoints[0].stop(),
        2 => {
            endpoints[0].restart().await;
            endpoints[1].set(Behaviour::Gray(0.5));
        }
        3 => endpoints[1].set(Behaviour::Serving),
        4 => endpoints[2].set(Behaviour::Hanging),
        5 => endpoints[2].set(Behaviour::Serving),
        _ => {}
    }
}

/// Runs the script against the proxy at `url` in front of `endpoints`; returns the tally
/// and the most requests each endpoint held at once in the first and the second half of
/// the overload (as it begins, and once the proxy has settled).
async fn play(url: &str, endpoints: &[Endpoint; 3]) -> (Tally, [Vec<usize>; 2]) {
    let tally = Tally::default();
    let mut phases = Vec::new();
    let mut peaks = [Vec::new(), Vec::new()];
    let take_peaks = || {
        endpoints
            .iter()
            .map(Endpoint::take_peak)
            .collect::<Vec<_>>()
    };
    for (phase, (_, load)) in PHASES.iter().enumerate() {
        begin_phase(phase, endpoints).await;
        let (url, tally) = (url.to_owned(), tally.clone());
        let load = *load;
        phases.push(tokio::spawn(async move {
            load::offer(&url, load, PHASE, phase, &tally).await;
        }));
        if phase == OVERLOAD_PHASE {
            take_peaks();
            tokio::time::sleep(PHASE / 2).await;
            peaks[0] = take_peaks();
            tokio::time::sleep(PHASE / 2).await;
            peaks[1] = take_peaks();
        } else {
            tokio::time::sleep(PHASE).await;
        }
    }
    for p in phases {
        p.await.expect("load task");
    }
    (tally, peaks)
}

async fn endpoints() -> [Endpoint; 3] {
    [
        Endpoint::start(CAPACITY, SERVICE).await,
        Endpoint::start(CAPACITY, SERVICE).await,
        Endpoint::start(CAPACITY, SERVICE).await,
    ]
}

/// Palisade's adaptive limit: one for the upstream (Vegas, the library's defaults)…
const UPSTREAM_LIMIT: &str = "initial_limit = 20";
/// …or one per endpoint (the sidecar's defaults for that scope).
const ENDPOINT_LIMITS: &str = "scope = \"endpoint\"";

fn palisade_config(endpoints: &[SocketAddr], adaptive: &str) -> String {
    let list: Vec<String> = endpoints.iter().map(|e| format!("\"{e}\"")).collect();
    format!(
        r#"
[[upstream]]
name = "game"
endpoints = [{}]
balance = "p2c"
[upstream.health_check]
path = "/health/ready"
interval = "500ms"
timeout = "250ms"
healthy_after = 1
unhealthy_after = 2
[upstream.timeout]
total = "1s"
per_try = "250ms"
[upstream.retry]
max_attempts = 2
base = "5ms"
max_delay = "50ms"
budget = {{ ratio = 0.2, min_per_second = 10 }}
[upstream.circuit_breaker]
scope = "endpoint"
window = "count"
size = 20
failure_rate = 0.3
minimum_calls = 10
open_for = "1s"
max_open_for = "10s"
half_open_calls = 3
[upstream.adaptive_concurrency]
{adaptive}
[upstream.load_shedding]
max_queue = 256
target = "50ms"
interval = "500ms"

[[route]]
path_prefix = "/"
upstream = "game"
criticality_header = "x-criticality"
"#,
        list.join(", ")
    )
}

/// One proxy's figures: the whole run, each phase, and critical requests under overload.
struct Report {
    name: &'static str,
    all: Figures,
    phases: Vec<Figures>,
    critical_overload: Figures,
    /// The most requests each endpoint held at once (served or queued) in each half of
    /// the overload.
    peaks: [Vec<usize>; 2],
    /// Requests sent in each second of the overload that were served.
    overload_by_second: Vec<usize>,
    /// Each phase's unserved requests by status and reason.
    failures: Vec<BTreeMap<String, usize>>,
}

fn report(name: &'static str, (tally, peaks): &(Tally, [Vec<usize>; 2])) -> Report {
    Report {
        name,
        peaks: peaks.clone(),
        overload_by_second: tally.served_by_second(OVERLOAD_PHASE),
        failures: (0..PHASES.len()).map(|p| tally.failures(p)).collect(),
        all: tally.figures(|_| true),
        phases: (0..PHASES.len())
            .map(|p| tally.figures(|r| r.phase == p))
            .collect(),
        critical_overload: tally.figures(|r| r.phase == OVERLOAD_PHASE && r.critical),
    }
}

fn row(label: &str, f: &Figures) -> String {
    format!(
        "{label:<28} {:>6} {:>7.1}% {:>7.1?} {:>8.1?} {:>5}",
        f.sent,
        100.0 * f.served_share(),
        f.p50,
        f.p99,
        f.timed_out
    )
}

fn print(reports: &[Report]) {
    for r in reports {
        println!("\n{}", r.name);
        println!(
            "{:<28} {:>6} {:>8} {:>7} {:>8} {:>5}",
            "phase", "sent", "served", "p50", "p99", "t/o"
        );
        for (p, f) in r.phases.iter().enumerate() {
            println!("{}  {:?}", row(PHASES[p].0, f), r.failures[p]);
        }
        println!("{}", row("critical under overload", &r.critical_overload));
        println!("{}", row("whole run", &r.all));
        println!(
            "most held at once per endpoint under overload (capacity {CAPACITY}): \
             {:?} as it begins, {:?} settled",
            r.peaks[0], r.peaks[1]
        );
        println!(
            "served of each second's requests under overload: {:?}",
            r.overload_by_second
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_the_scripted_outage_palisade_loses_nothing_to_timeouts_and_serves_critical_traffic()
 {
    let mut reports = Vec::new();

    for (name, adaptive) in [
        ("palisade", ENDPOINT_LIMITS),
        ("palisade/upstream", UPSTREAM_LIMIT),
    ] {
        let eps = endpoints().await;
        let addrs: Vec<SocketAddr> = eps.iter().map(Endpoint::addr).collect();
        let proxy = Proxy::start(&palisade_config(&addrs, adaptive)).await;
        let played = play(&proxy.url("/data"), &eps).await;
        drop(proxy);
        drop(eps);
        reports.push(report(name, &played));
    }

    for peer in Peer::ALL {
        if peer.installed() {
            let eps = endpoints().await;
            let addrs: Vec<SocketAddr> = eps.iter().map(Endpoint::addr).collect();
            let proxy = peer.start(&addrs, CAPACITY).await;
            let played = play(&proxy.url("/data"), &eps).await;
            reports.push(report(peer.name(), &played));
        } else if std::env::var_os("CI").is_some() {
            panic!(
                "{0} is not installed: .ci/run installs it (apt-get install {0})",
                peer.name()
            );
        } else {
            eprintln!(
                "\n*** SKIPPED: {0}'s part of the outage game (no `{0}` binary); \
                 apt-get install {0} ***\n",
                peer.name()
            );
        }
    }
    print(&reports);

    let palisade = &reports[0];
    assert_eq!(
        palisade.all.timed_out, 0,
        "no request may wait past the client timeout ({CLIENT_TIMEOUT:?})"
    );
    assert!(
        palisade.critical_overload.served_share() >= 0.99,
        "critical requests served under overload: {:.1}%",
        100.0 * palisade.critical_overload.served_share()
    );
}

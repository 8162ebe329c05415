//! `palisade demo`: the sidecar at work, with nothing to set up.
//!
//! Three simulated upstreams run in-process on loopback — *steady* (healthy, with an
//! occasional slow call), *flaky* (fails a share of calls, then goes fully down for a
//! while, then comes back; it has a healthy backup replica) and *stuck* (a share of
//! calls never answer). The proxy runs in front of them from an embedded config, and a
//! load generator sends the same requests straight to each upstream and through the
//! proxy. A table every second compares the two; a summary ends the run. Meanwhile a
//! checkout saga runs every two seconds (`checkout.rs`): some complete, some are
//! compensated.

mod checkout;
mod load;
mod table;
mod upstreams;

use std::net::SocketAddr;
use std::time::Duration;

use tokio::time::Instant;

use crate::config;
use crate::serve;
use load::{Path, Tallies};
use upstreams::{Mood, Simulated};

/// Requests per second per upstream, on each path.
const RATE: u64 = 40;

fn steady(_: f64) -> Mood {
    Mood::Fine {
        slow: 0.03,
        failing: 0.0,
    }
}

fn flaky(progress: f64) -> Mood {
    match progress {
        p if p < 0.25 => Mood::Fine {
            slow: 0.0,
            failing: 0.25,
        },
        p if p < 0.55 => Mood::Down,
        _ => Mood::Fine {
            slow: 0.0,
            failing: 0.02,
        },
    }
}

fn replica(_: f64) -> Mood {
    Mood::Fine {
        slow: 0.0,
        failing: 0.0,
    }
}

fn stuck(_: f64) -> Mood {
    Mood::Hanging { share: 0.3 }
}

/// The proxy's config for the simulated upstreams at these addresses.
fn embedded_config(
    steady: SocketAddr,
    flaky: SocketAddr,
    replica: SocketAddr,
    stuck: SocketAddr,
) -> String {
    format!(
        r#"
[listener]
address = "127.0.0.1:0"
[admin]
address = "127.0.0.1:0"

[[upstream]]
name = "steady"
endpoints = ["{steady}"]
[upstream.timeout]
total = "1s"
per_try = "250ms"
[upstream.retry]
max_attempts = 2
base = "10ms"
max_delay = "50ms"
budget = {{ ratio = 0.2, min_per_second = 10 }}
[upstream.bulkhead]
max_concurrent = 64

[[upstream]]
name = "flaky"
endpoints = ["{flaky}"]
backup = ["{replica}"]
[upstream.timeout]
total = "1s"
per_try = "300ms"
[upstream.retry]
max_attempts = 3
base = "10ms"
max_delay = "100ms"
budget = {{ ratio = 0.5, min_per_second = 20 }}
[upstream.circuit_breaker]
window = "count"
size = 20
minimum_calls = 10
failure_rate = 0.5
open_for = "1s"
max_open_for = "4s"
half_open_calls = 2
[upstream.bulkhead]
max_concurrent = 64
[upstream.health_check]
path = "/health"
interval = "500ms"
timeout = "200ms"

[[upstream]]
name = "stuck"
endpoints = ["{stuck}"]
[upstream.timeout]
total = "600ms"
per_try = "150ms"
[upstream.retry]
max_attempts = 3
base = "5ms"
max_delay = "20ms"
budget = {{ ratio = 0.5, min_per_second = 20 }}
[upstream.circuit_breaker]
failure_rate = 0.9
[upstream.bulkhead]
max_concurrent = 32
max_queue = 32
queue_timeout = "50ms"

[[route]]
path_prefix = "/steady"
upstream = "steady"

[[route]]
path_prefix = "/flaky"
upstream = "flaky"
[route.fallback]
status = 200
body = '{{"items": [], "degraded": true}}'
content_type = "application/json"

[[route]]
path_prefix = "/stuck"
upstream = "stuck"
[route.fallback]
status = 200
body = '{{"degraded": true}}'
content_type = "application/json"
"#,
    )
}

/// The demo's upstreams by name, each with its script.
const UPSTREAMS: [(&str, upstreams::Script); 4] = [
    ("steady", steady),
    ("flaky", flaky),
    ("replica", replica),
    ("stuck", stuck),
];

/// Serves one of the demo's simulated upstreams (`steady`, `flaky`, `replica`, `stuck`)
/// on `address` until Ctrl-C or a signal ends the process — as a process of its own, for
/// game days that crash, stop or cut off an upstream (`gamedays/standard.toml`). Its
/// script stays as at the demo's start.
pub async fn serve_upstream(name: &str, address: SocketAddr) -> Result<(), String> {
    let Some((name, script)) = UPSTREAMS.iter().find(|(n, _)| *n == name) else {
        let names: Vec<&str> = UPSTREAMS.iter().map(|(n, _)| *n).collect();
        return Err(format!(
            "no demo upstream {name:?}; allowed: {}",
            names.join(", ")
        ));
    };
    // A script's progress over a century: the mood of its start, for good.
    let forever = Duration::from_secs(100 * 365 * 24 * 3600);
    let upstream = Simulated::start_on(address, name, *script, forever)
        .await
        .map_err(|e| format!("{address}: {e}"))?;
    println!("demo upstream {name} on http://{}", upstream.address);
    tokio::signal::ctrl_c().await.map_err(|e| e.to_string())
}

/// Runs the demo for `length` (or until Ctrl-C).
pub async fn run(length: Duration) -> Result<(), String> {
    let io = |e: std::io::Error| e.to_string();
    let steady = Simulated::start("steady", steady, length)
        .await
        .map_err(io)?;
    let flaky = Simulated::start("flaky", flaky, length).await.map_err(io)?;
    let replica = Simulated::start("replica", replica, length)
        .await
        .map_err(io)?;
    let stuck = Simulated::start("stuck", stuck, length).await.map_err(io)?;
    let payments = checkout::payments().await.map_err(io)?;
    let store = checkout::store();
    let text = embedded_config(
        steady.address,
        flaky.address,
        replica.address,
        stuck.address,
    ) + &checkout::config(payments, &store);
    let checked = config::parse("<embedded demo config>", &text).map_err(|p| p.to_string())?;
    let running = serve::start(checked, None).await.map_err(io)?;
    table::intro(length, running.address, running.admin_address);
    let checkouts = tokio::spawn(checkout::run(running.address, Instant::now() + length));

    let tallies = Tallies::default();
    let until = Instant::now() + length;
    let every = Duration::from_micros(1_000_000 / RATE);
    for upstream in [&steady, &flaky, &stuck] {
        let direct = format!("http://{}/{}", upstream.address, upstream.name);
        let proxied = format!("http://{}/{}", running.address, upstream.name);
        for (path, uri) in [(Path::Direct, direct), (Path::Palisade, proxied)] {
            let uri = uri
                .parse()
                .map_err(|e: http::uri::InvalidUri| e.to_string())?;
            tokio::spawn(load::drive(
                tallies.clone(),
                (upstream.name, path),
                uri,
                every,
                until,
            ));
        }
    }

    let started = Instant::now();
    let mut tick =
        tokio::time::interval_at(started + Duration::from_secs(1), Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let second = tallies.take_second();
                table::second(started.elapsed(), &second, &running.runtime.load());
                if Instant::now() >= until {
                    break;
                }
            }
            _ = tokio::signal::ctrl_c() => {
                println!("\ninterrupted");
                break;
            }
        }
    }
    // Give the last requests their full timeouts before the summary.
    tokio::time::sleep(Duration::from_secs(1)).await;
    table::summary(&tallies.total());
    if let Ok(Ok(c)) = tokio::time::timeout(Duration::from_secs(4), checkouts).await {
        println!(
            "Sagas: {} checkouts — {} completed, {} compensated (each declined charge's reservation released), {} other",
            c.completed + c.compensated + c.other,
            c.completed,
            c.compensated,
            c.other
        );
    }
    running.shutdown().await;
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", store.display()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The demo shows the sidecar as it should be set up: `palisade check` has no advice
    /// on its config.
    #[test]
    fn the_demo_config_gets_no_advice() {
        let at = |port| SocketAddr::from(([127, 0, 0, 1], port));
        let text = embedded_config(at(9001), at(9002), at(9003), at(9004))
            + &checkout::config(at(9005), std::path::Path::new("/tmp/demo.db"));
        let checked = config::parse("<demo>", &text).unwrap_or_else(|p| panic!("{p}"));
        let advice: Vec<String> = checked.advice.iter().map(ToString::to_string).collect();
        assert_eq!(advice, Vec::<String>::new());
    }
}

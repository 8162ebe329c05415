//! Issue 22's full-scale test: **4 processes × 256 callers at 10× the limit for 30 s**,
//! against a real `redis-server` of the test's own (skipped loudly without one, a
//! failure when `CI` is set). About 65 s: 30 s per mode.
//!
//! The processes are real: the test runs its own binary (`current_exe`) four times, each
//! child running the `#[ignore]`d [`worker`] test (`--exact worker --ignored
//! --nocapture`) with the Redis URL, the mode, the duration and the scope in
//! `PALISADE_FLEET_SCALE_WORKER`. Each worker has its own connection and membership, waits
//! until it counts 4 live instances, reads the server's `TIME`, runs its 256 callers,
//! reads `TIME` again and prints its counts on one `SCALE-RESULT` line; the parent sums
//! them over the server's time from the first start to the last end.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use palisade_fleet::{
    Membership, MembershipConfig, Mode, OnStoreDown, RedisStore, SharedRateLimitBuilder,
    SharedRateLimitConfig, StoreConfig,
};
use palisade_testkit::redis::OwnRedis;
use tokio::time::Instant;

use support::*;

const WORKER_ENV: &str = "PALISADE_FLEET_SCALE_WORKER";
const MARK: &str = "SCALE-RESULT";
const PROCESSES: usize = 4;
const CALLERS: usize = 256;
const PER_SECOND: f64 = 200.0;
const BURST: u32 = 20;
/// Lease mode: 20% of a second's quota, 10 tokens per instance among 4.
const LEASE_FRACTION: f64 = 0.2;
const RUN: Duration = Duration::from_secs(30);

/// One worker's report.
#[derive(Debug, Default)]
struct Report {
    admitted: u64,
    refused: u64,
    /// Decided by anything but Redis (the fallback is `closed`: refusals).
    not_shared: u64,
    /// Server time (µs) before the first request and after the last.
    start: u64,
    end: u64,
    lease_size: u64,
}

impl Report {
    fn line(&self) -> String {
        format!(
            "{MARK} admitted={} refused={} not_shared={} start={} end={} lease_size={}",
            self.admitted, self.refused, self.not_shared, self.start, self.end, self.lease_size
        )
    }

    /// Reads a report from a line holding one (libtest may have printed
    /// `test worker ... ` before it on the same line).
    fn parse(line: &str) -> Option<Self> {
        let rest = &line[line.find(MARK)? + MARK.len()..];
        let mut report = Report::default();
        for field in rest.split_whitespace() {
            let (name, value) = field.split_once('=')?;
            let value = value.parse().ok()?;
            match name {
                "admitted" => report.admitted = value,
                "refused" => report.refused = value,
                "not_shared" => report.not_shared = value,
                "start" => report.start = value,
                "end" => report.end = value,
                "lease_size" => report.lease_size = value,
                _ => return None,
            }
        }
        Some(report)
    }
}

#[test]
fn four_processes_at_ten_times_the_limit_for_30_s() {
    let Some(redis) = OwnRedis::start() else {
        return;
    };
    for mode in ["exact", "lease"] {
        let reports = run_processes(&redis, mode);
        assert_eq!(reports.len(), PROCESSES, "{mode}: a worker gave no report");
        let admitted: u64 = reports.iter().map(|r| r.admitted).sum();
        let refused: u64 = reports.iter().map(|r| r.refused).sum();
        let not_shared: u64 = reports.iter().map(|r| r.not_shared).sum();
        let start = reports.iter().map(|r| r.start).min().unwrap_or(0);
        let end = reports.iter().map(|r| r.end).max().unwrap_or(0);
        let t = end.saturating_sub(start) as f64 / 1e6;
        let exact_bound = PER_SECOND * t + f64::from(BURST);
        let leases: u64 = reports.iter().map(|r| r.lease_size).sum();
        let bound = match mode {
            "exact" => exact_bound,
            _ => exact_bound + leases as f64,
        };
        eprintln!(
            "{mode}: {PROCESSES} processes × {CALLERS} callers: admitted {admitted}, refused \
             {refused}, not shared {not_shared}, over {t:.3} s of server time; bound \
             {bound:.1} (rate·t + burst{}); {:.4} of rate·t",
            if mode == "exact" {
                String::new()
            } else {
                format!(" + Σ leases {leases}")
            },
            admitted as f64 / (PER_SECOND * t)
        );
        assert!(t >= RUN.as_secs_f64(), "{mode}: ran {t} s");
        assert_eq!(not_shared, 0, "{mode}: decisions made without Redis");
        assert!(
            refused as f64 > 5.0 * admitted as f64,
            "{mode}: the load was not 10× the limit"
        );
        assert!(
            admitted as f64 <= bound,
            "{mode}: admitted {admitted} > bound {bound}"
        );
        assert!(
            admitted as f64 >= 0.9 * PER_SECOND * t,
            "{mode}: admitted {admitted}, under 90% of {}",
            PER_SECOND * t
        );
    }
}

/// Runs the four workers of `mode` to the end and reads their reports.
fn run_processes(redis: &OwnRedis, mode: &str) -> Vec<Report> {
    let exe = std::env::current_exe().unwrap();
    let spec = format!("{} {mode} {} scale-{mode}", redis.url(), RUN.as_secs());
    let children: Vec<_> = (0..PROCESSES)
        .map(|_| {
            Command::new(&exe)
                .args(["--exact", "worker", "--ignored", "--nocapture"])
                .args(["--test-threads", "1"])
                .env(WORKER_ENV, &spec)
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut reports = Vec::new();
    for mut child in children {
        let stdout = child.stdout.take().unwrap();
        for line in BufReader::new(stdout).lines() {
            let line = line.unwrap();
            if let Some(report) = Report::parse(&line) {
                reports.push(report);
            }
        }
        assert!(child.wait().unwrap().success(), "a worker failed");
    }
    reports
}

/// One process of the fleet; run only by [`four_processes_at_ten_times_the_limit_for_30_s`].
#[test]
#[ignore = "a worker process of four_processes_at_ten_times_the_limit_for_30_s, which starts it"]
fn worker() {
    let Ok(spec) = std::env::var(WORKER_ENV) else {
        eprintln!(
            "worker: not started by four_processes_at_ten_times_the_limit_for_30_s; nothing to do"
        );
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let report = runtime.block_on(work(&spec));
    println!("\n{}", report.line());
}

async fn work(spec: &str) -> Report {
    let parts: Vec<&str> = spec.split_whitespace().collect();
    let [url, mode, seconds, scope] = parts[..] else {
        panic!("bad {WORKER_ENV}: {spec:?}")
    };
    let run = Duration::from_secs(seconds.parse().unwrap());
    let store = RedisStore::connect(&StoreConfig::new(url).timeout(Duration::from_millis(500)))
        .await
        .unwrap();
    let membership = Membership::start(
        store.clone(),
        scope,
        &MembershipConfig {
            interval: Duration::from_millis(100),
            expire_after: Duration::from_millis(1000),
        },
    )
    .unwrap();
    let config = SharedRateLimitConfig {
        scope: Some(scope.to_owned()),
        mode: if mode == "lease" {
            Mode::Lease
        } else {
            Mode::Exact
        },
        // Any store failure refuses, and is counted: the bound is Redis's alone.
        on_store_down: OnStoreDown::Closed,
        lease_fraction: LEASE_FRACTION,
        ..SharedRateLimitConfig::new("scale", PER_SECOND, BURST)
    };
    let limit = SharedRateLimitBuilder::from_config(config)
        .store(store.clone())
        .membership(membership)
        .build()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while limit.live_instances() != PROCESSES as u32 {
        assert!(Instant::now() < deadline, "never counted {PROCESSES} live");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let lease_size = if mode == "lease" {
        limit.lease_size()
    } else {
        0
    };
    // 10× the limit over the 4 processes: one request per caller per this period.
    let period = Duration::from_secs_f64((CALLERS * PROCESSES) as f64 / (10.0 * PER_SECOND));
    let start = server_micros(&store).await;
    let tally = paced(&[limit], CALLERS, period, run, shared_call).await;
    let end = server_micros(&store).await;
    Report {
        admitted: tally.admitted,
        refused: tally.refused,
        not_shared: tally.not_shared,
        start,
        end,
        lease_size,
    }
}

//! Crash harness: a child process runs sagas against real HTTP upstreams on loopback
//! that keep a ledger by idempotency key; it is killed with SIGKILL at seeded random
//! instants (mid-step, between an effect and its commit, mid-compensation, during
//! recovery) and restarted on the same store. At the end: 0 inconsistent sagas, 0
//! unfinished.
//!
//! `PALISADE_SAGA_CRASH_RUNS` sets the number of seeded runs on SQLite (default 200);
//! `PALISADE_SAGA_CRASH_PG_RUNS` on PostgreSQL (default 200). The child is this test binary
//! itself, run with `PALISADE_SAGA_CRASH_CHILD` set and filtered to `child_entry`.
//!
//! Also on PostgreSQL: a runner SIGSTOPped mid-saga while another takes its sagas over,
//! then SIGCONTed (`PALISADE_SAGA_SIGSTOP_RUNS`, default 8): its late writes are fenced.

mod common;

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use palisade::policy::timeout::Timeout;
use palisade_saga::{
    CompensationRetry, Runner, SagaDefinition, SagaState, StartOptions, Step, StepError, Store,
};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::json;

const SAGAS: usize = 6;
const STEPS: usize = 3;

// ---------------------------------------------------------------- the upstream's ledger

#[derive(Default)]
struct Entry {
    applied: bool,
    undone: bool,
    undo_attempts: u32,
}

/// The upstream's ledger by idempotency key, and the harness's tallies.
#[derive(Default)]
struct Books {
    entries: Mutex<HashMap<String, Entry>>,
    states: Mutex<Vec<SagaState>>,
    kills: AtomicUsize,
    kills_mid_saga: AtomicUsize,
}

impl Books {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.entries.lock().unwrap()
    }
}

type Ledger = Arc<Books>;

fn decide(key: &str) -> u64 {
    // FNV-1a: the same key always gets the same behaviour, whoever asks and how often.
    key.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

async fn handle(
    req: Request<hyper::body::Incoming>,
    ledger: Ledger,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_owned();
    let h = decide(&path);
    tokio::time::sleep(Duration::from_millis(h % 15)).await;
    let status = if let Some(key) = path.strip_prefix("/do/") {
        let mut l = ledger.lock();
        let e = l.entry(key.to_owned()).or_default();
        if e.applied {
            StatusCode::OK // replay of a key: the effect happened once
        } else if e.undone {
            // A late action (from a runner killed or stopped mid-request) after its
            // compensation: the tombstone keeps it from taking effect.
            StatusCode::CONFLICT
        } else {
            match h % 20 {
                0 | 1 => StatusCode::BAD_REQUEST, // definitive, nothing applied
                2 => {
                    e.applied = true;
                    StatusCode::INTERNAL_SERVER_ERROR // applied, but the answer says failure
                }
                3 => StatusCode::SERVICE_UNAVAILABLE, // unknown, nothing applied
                _ => {
                    e.applied = true;
                    StatusCode::OK
                }
            }
        }
    } else if let Some(key) = path
        .strip_prefix("/undo/")
        .and_then(|k| k.strip_suffix("/compensate"))
    {
        let mut l = ledger.lock();
        let e = l.entry(key.to_owned()).or_default();
        e.undo_attempts += 1;
        if u64::from(e.undo_attempts) <= h % 3 {
            StatusCode::SERVICE_UNAVAILABLE // a flaky compensation, retried with backoff
        } else {
            e.undone = true; // also a tombstone when nothing was applied
            StatusCode::OK
        }
    } else {
        StatusCode::NOT_FOUND
    };
    let mut resp = Response::new(Full::new(Bytes::from_static(b"{}")));
    *resp.status_mut() = status;
    Ok(resp)
}

async fn upstream() -> (SocketAddr, Ledger) {
    let ledger = Ledger::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let l = Arc::clone(&ledger);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let l = Arc::clone(&l);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| handle(req, Arc::clone(&l)));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, ledger)
}

// ---------------------------------------------------------------- the child

type Client = hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    Full<Bytes>,
>;

async fn post(
    client: &Client,
    url: String,
    compensation: bool,
) -> Result<serde_json::Value, StepError> {
    let req = Request::post(url)
        .body(Full::new(Bytes::new()))
        .map_err(StepError::definitive)?;
    match client.request(req).await {
        Ok(resp) => {
            let s = resp.status();
            if s.is_success()
                || (compensation && (s == StatusCode::NOT_FOUND || s == StatusCode::GONE))
            {
                Ok(json!({ "status": s.as_u16() }))
            } else if s.is_client_error() && !compensation {
                Err(StepError::definitive(s))
            } else {
                Err(StepError::unknown(s))
            }
        }
        Err(e) if e.is_connect() => Err(StepError::definitive(e)),
        Err(e) => Err(StepError::unknown(e)),
    }
}

fn crash_definition(upstream: &str) -> SagaDefinition {
    let client: Client =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build_http();
    let mut b = SagaDefinition::builder("crash", 1).compensation_retry(CompensationRetry {
        max_attempts: 8,
        base: Duration::from_millis(5),
        max_delay: Duration::from_millis(50),
        ..CompensationRetry::default()
    });
    for i in 0..STEPS {
        let (c1, c2) = (client.clone(), client.clone());
        let (u1, u2) = (upstream.to_owned(), upstream.to_owned());
        b = b.step(
            Step::new(format!("s{i}"), move |cx| {
                let (c, u) = (c1.clone(), u1.clone());
                async move { post(&c, format!("http://{u}/do/{}", cx.idempotency_key), false).await }
            })
            .compensate(move |cx| {
                let (c, u) = (c2.clone(), u2.clone());
                async move { post(&c, format!("http://{u}/undo/{}", cx.idempotency_key), true).await }
            })
            .policy(Timeout::new(Duration::from_secs(2))),
        );
    }
    b.build().unwrap()
}

/// Run as the child: start (idempotently) every saga of the run and drive all to the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_entry() {
    let Ok(store_url) = std::env::var("PALISADE_SAGA_CRASH_CHILD") else {
        return;
    };
    let upstream = std::env::var("PALISADE_SAGA_CRASH_UPSTREAM").unwrap();
    let run = std::env::var("PALISADE_SAGA_CRASH_RUN").unwrap();
    let store = open_store(&store_url).await;
    let runner = Runner::builder(store)
        .runner_id(std::env::var("PALISADE_SAGA_CRASH_RUNNER").unwrap_or_else(|_| "child".into()))
        .lease(Duration::from_secs(1))
        .register(crash_definition(&upstream))
        .start()
        .await
        .unwrap();
    let mut ids = Vec::new();
    for i in 0..SAGAS {
        let id = format!("r{run}-{i}");
        // A client retries a start that failed for the store's sake, with the same id.
        let options = StartOptions {
            id: Some(id.clone()),
            version: None,
        };
        let mut tries = 0;
        while let Err(e) = runner
            .start_saga("crash", json!({ "i": i }), options.clone())
            .await
        {
            tries += 1;
            assert!(tries < 100, "cannot start {id}: {e}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        ids.push(id);
    }
    for id in &ids {
        let mut tries = 0;
        while let Err(e) = runner.wait(id, Duration::from_secs(60)).await {
            tries += 1;
            assert!(tries < 100, "saga {id}: {e}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    runner.shutdown();
}

async fn open_store(url: &str) -> Store {
    match url.strip_prefix("sqlite:") {
        Some(path) => palisade_saga::store::sqlite::open(path).await.unwrap(),
        None => palisade_saga::store::postgres::open(url).await.unwrap(),
    }
}

// ---------------------------------------------------------------- the parent

async fn one_run(
    run: u64,
    store_url: String,
    upstream: SocketAddr,
    ledger: Ledger,
) -> Result<(), String> {
    let mut rng = SmallRng::seed_from_u64(run);
    let kills = rng.random_range(1..=4);
    let exe = std::env::current_exe().unwrap();
    for attempt in 0..=kills {
        let mut child = tokio::process::Command::new(&exe)
            .args([
                "child_entry",
                "--exact",
                "--nocapture",
                "--test-threads=1",
                "-q",
            ])
            .env("PALISADE_SAGA_CRASH_CHILD", &store_url)
            .env("PALISADE_SAGA_CRASH_UPSTREAM", upstream.to_string())
            .env("PALISADE_SAGA_CRASH_RUN", run.to_string())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        if attempt < kills {
            tokio::time::sleep(Duration::from_millis(rng.random_range(5..120))).await;
            let _ = child.start_kill(); // SIGKILL
            let _ = child.wait().await;
            ledger.kills.fetch_add(1, Ordering::Relaxed);
            let store = open_store(&store_url).await;
            let rows = store.list(None, 1000).await.unwrap_or_default();
            if rows.iter().any(|r| r.state.is_active()) {
                ledger.kills_mid_saga.fetch_add(1, Ordering::Relaxed);
            }
        } else {
            let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output()).await;
            match out {
                Ok(Ok(o)) if o.status.success() => {}
                Ok(Ok(o)) => {
                    return Err(format!(
                        "run {run}: child failed: {}",
                        String::from_utf8_lossy(&o.stderr)
                    ));
                }
                _ => return Err(format!("run {run}: child did not finish")),
            }
        }
    }
    check(run, &store_url, &ledger).await
}

/// Each saga completed with every effect applied, compensated with every applied effect
/// undone, or parked with a reason; none unfinished.
async fn check(run: u64, store_url: &str, ledger: &Ledger) -> Result<(), String> {
    let store = open_store(store_url).await;
    let rows = store.list(None, 1000).await.map_err(|e| e.to_string())?;
    let rows: Vec<_> = rows
        .into_iter()
        .filter(|r| r.id.starts_with(&format!("r{run}-")))
        .collect();
    if rows.len() != SAGAS {
        return Err(format!("run {run}: {} sagas, not {SAGAS}", rows.len()));
    }
    let l = ledger.lock();
    for row in rows {
        ledger.states.lock().unwrap().push(row.state);
        let effect = |i: usize| {
            l.get(&format!("{}/s{i}", row.id))
                .map_or((false, false), |e| (e.applied, e.undone))
        };
        let ok = match row.state {
            SagaState::Completed => (0..STEPS).all(|i| effect(i) == (true, false)),
            SagaState::Compensated => (0..STEPS).all(|i| !effect(i).0 || effect(i).1),
            SagaState::Parked => row.reason.is_some(),
            _ => false,
        };
        if !ok {
            let effects: Vec<_> = (0..STEPS).map(effect).collect();
            return Err(format!(
                "run {run}: saga {} inconsistent: {:?} effects {effects:?}",
                row.id, row.state
            ));
        }
    }
    Ok(())
}

async fn harness(runs: u64, mut fresh_store: impl FnMut(u64) -> String) {
    let (addr, ledger) = upstream().await;
    let started = tokio::time::Instant::now(); // real time: this harness never pauses the clock
    let mut tasks = tokio::task::JoinSet::new();
    let mut failures = Vec::new();
    for run in 0..runs {
        if tasks.len() >= 4 {
            match tasks.join_next().await {
                Some(Ok(Err(e))) => failures.push(e),
                Some(Err(e)) => failures.push(format!("a run panicked: {e}")),
                _ => {}
            }
        }
        tasks.spawn(one_run(run, fresh_store(run), addr, Arc::clone(&ledger)));
    }
    while let Some(r) = tasks.join_next().await {
        match r {
            Ok(Err(e)) => failures.push(e),
            Err(e) => failures.push(format!("a run panicked: {e}")),
            Ok(Ok(())) => {}
        }
    }
    let states = std::mem::take(&mut *ledger.states.lock().unwrap());
    let count = |s: SagaState| states.iter().filter(|x| **x == s).count();
    eprintln!(
        "crash harness: {runs} runs in {:?}: {} inconsistent; sagas completed {}, compensated {}, parked {}; SIGKILLs {} ({} with sagas unfinished)",
        started.elapsed(),
        failures.len(),
        count(SagaState::Completed),
        count(SagaState::Compensated),
        count(SagaState::Parked),
        ledger.kills.load(Ordering::Relaxed),
        ledger.kills_mid_saga.load(Ordering::Relaxed),
    );
    assert!(failures.is_empty(), "{failures:#?}");
}

fn runs(var: &str, default: u64) -> u64 {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_survives_sigkill() {
    if std::env::var_os("PALISADE_SAGA_CRASH_CHILD").is_some() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("palisade-saga-crash-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    harness(runs("PALISADE_SAGA_CRASH_RUNS", 200), |run| {
        format!("sqlite:{}", dir.join(format!("run{run}.db")).display())
    })
    .await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_survives_sigkill() {
    if std::env::var_os("PALISADE_SAGA_CRASH_CHILD").is_some() {
        return;
    }
    let n = runs("PALISADE_SAGA_CRASH_PG_RUNS", 200);
    let mut urls = Vec::new();
    for _ in 0..n {
        match common::pg::fresh_url() {
            Some(url) => urls.push(url),
            None => return,
        }
    }
    harness(n, |run| urls[usize::try_from(run).unwrap()].clone()).await;
    for url in &urls {
        common::pg::drop_schema(url);
    }
}

/// A runner SIGSTOPped mid-saga while another takes its sagas over (lease 1 s), then
/// SIGCONTed: its late writes are fenced, and every saga ends consistent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_sigstopped_runner_is_taken_over() {
    if std::env::var_os("PALISADE_SAGA_CRASH_CHILD").is_some() {
        return;
    }
    let runs = runs("PALISADE_SAGA_SIGSTOP_RUNS", 8);
    let (addr, ledger) = upstream().await;
    let mut tasks = tokio::task::JoinSet::new();
    let mut urls = Vec::new();
    for run in 0..runs {
        let Some(url) = common::pg::fresh_url() else {
            return;
        };
        urls.push(url.clone());
        tasks.spawn(stop_run(10_000 + run, url, addr, Arc::clone(&ledger)));
    }
    let mut failures = Vec::new();
    while let Some(r) = tasks.join_next().await {
        match r {
            Ok(Err(e)) => failures.push(e),
            Err(e) => failures.push(format!("a run panicked: {e}")),
            Ok(Ok(())) => {}
        }
    }
    eprintln!(
        "sigstop harness: {runs} runs: {} inconsistent; {} sagas started by the stopped runner finished by the other",
        failures.len(),
        TAKEN_OVER.load(Ordering::Relaxed)
    );
    for url in &urls {
        common::pg::drop_schema(url);
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

static TAKEN_OVER: AtomicUsize = AtomicUsize::new(0);

/// PostgreSQL stopped at once (as a crash would stop it) while a runner recovers the
/// sagas a SIGKILLed one left, and started again: the runner gets its store back, and
/// every saga ends consistent. The server is the test's own (`OwnServer`), on a free port.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restarted_during_recovery() {
    if std::env::var_os("PALISADE_SAGA_CRASH_CHILD").is_some() {
        return;
    }
    let Some(server) = common::pg::OwnServer::start() else {
        return;
    };
    let (addr, ledger) = upstream().await;
    let runs = runs("PALISADE_SAGA_PG_RESTART_RUNS", 4);
    let mut failures = Vec::new();
    let mut recovered = 0;
    for run in 0..runs {
        let run = 20_000 + run;
        let Some(url) = common::pg::fresh_url_on(server.url()) else {
            return;
        };
        let mut rng = SmallRng::seed_from_u64(run);
        // A runner killed mid-run leaves sagas unfinished.
        let mut first = child("first", &url, addr, run);
        tokio::time::sleep(Duration::from_millis(rng.random_range(20..120))).await;
        let _ = first.start_kill();
        let _ = first.wait().await;
        let left = open_store(&url)
            .await
            .list(None, 1000)
            .await
            .unwrap_or_default();
        if left.iter().any(|r| r.state.is_active()) {
            recovered += 1;
        }
        // Another recovers them; the server goes down under it, and comes back.
        let recovering = child("recovering", &url, addr, run);
        tokio::time::sleep(Duration::from_millis(rng.random_range(5..80))).await;
        tokio::task::block_in_place(|| server.stop_immediately());
        tokio::time::sleep(Duration::from_millis(rng.random_range(200..1200))).await;
        tokio::task::block_in_place(|| server.start_again());
        match tokio::time::timeout(Duration::from_secs(120), recovering.wait_with_output()).await {
            Ok(Ok(out)) if out.status.success() => {
                if let Err(e) = check(run, &url, &ledger).await {
                    failures.push(e);
                }
            }
            Ok(Ok(out)) => failures.push(format!(
                "run {run}: the recovering runner failed: {}",
                String::from_utf8_lossy(&out.stderr)
            )),
            _ => failures.push(format!("run {run}: the recovering runner did not finish")),
        }
    }
    eprintln!(
        "postgres restart during recovery: {runs} runs ({recovered} with sagas left unfinished), {} inconsistent",
        failures.len()
    );
    assert!(failures.is_empty(), "{failures:#?}");
    assert!(
        recovered > 0,
        "no run left sagas to recover: the test proved nothing"
    );
}

fn child(runner: &str, store_url: &str, upstream: SocketAddr, run: u64) -> tokio::process::Child {
    tokio::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "child_entry",
            "--exact",
            "--nocapture",
            "--test-threads=1",
            "-q",
        ])
        .env("PALISADE_SAGA_CRASH_CHILD", store_url)
        .env("PALISADE_SAGA_CRASH_UPSTREAM", upstream.to_string())
        .env("PALISADE_SAGA_CRASH_RUN", run.to_string())
        .env("PALISADE_SAGA_CRASH_RUNNER", runner)
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

fn signal(child: &tokio::process::Child, sig: &str) {
    if let Some(pid) = child.id() {
        let _ = std::process::Command::new("kill")
            .args([sig, &pid.to_string()])
            .status();
    }
}

async fn stop_run(
    run: u64,
    store_url: String,
    upstream: SocketAddr,
    ledger: Ledger,
) -> Result<(), String> {
    let mut rng = SmallRng::seed_from_u64(run);
    let first = child("c1", &store_url, upstream, run);
    // Stop it mid-saga: once its sagas are in the store, at a seeded instant.
    let store = open_store(&store_url).await;
    for _ in 0..500 {
        if !store.list(None, 1).await.unwrap_or_default().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(rng.random_range(0..40))).await;
    signal(&first, "-STOP");
    let second = child("c2", &store_url, upstream, run);
    let out = tokio::time::timeout(Duration::from_secs(60), second.wait_with_output()).await;
    let ok = matches!(&out, Ok(Ok(o)) if o.status.success());
    signal(&first, "-CONT");
    if !ok {
        return Err(format!(
            "run {run}: the second runner did not finish: {out:?}"
        ));
    }
    match tokio::time::timeout(Duration::from_secs(60), first.wait_with_output()).await {
        Ok(Ok(o)) if o.status.success() => {
            for row in store.list(None, 100).await.unwrap_or_default() {
                let events = store.events(&row.id, 1).await.unwrap_or_default();
                let started_by_c1 = events.first().and_then(|e| e.detail.as_deref()) == Some("c1");
                if started_by_c1 && row.owner.as_deref() == Some("c2") {
                    TAKEN_OVER.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        other => {
            return Err(format!(
                "run {run}: the stopped runner did not finish: {other:?}"
            ));
        }
    }
    check(run, &store_url, &ledger).await
}

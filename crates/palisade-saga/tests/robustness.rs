//! Store URLs, a lost database connection, and the metrics a runner emits.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use palisade_saga::{
    Runner, SagaDefinition, SagaState, StartOptions, Step, StepError, StoreError, store,
};
use serde_json::{Value, json};
use tokio::sync::Notify;

#[tokio::test]
async fn store_urls_open_or_say_why_not() {
    assert_eq!(store::open("memory://").await.unwrap().kind(), "memory");
    let dir = std::env::temp_dir().join(format!("palisade-saga-url-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let url = format!("sqlite://{}", dir.join("u.db").display()); // sqlite:///abs/path
    assert_eq!(store::open(&url).await.unwrap().kind(), "sqlite");
    assert!(matches!(
        store::open("mysql://x").await,
        Err(StoreError::Open(_))
    ));
    assert!(matches!(
        store::open("sqlite://").await,
        Err(StoreError::Open(_))
    ));
    let missing = store::open("sqlite:///nonexistent-dir/for/sure/x.db").await;
    assert!(
        matches!(missing, Err(StoreError::Open(ref m)) if m.contains("nonexistent-dir")),
        "{missing:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The store's connection is killed while a step runs; the step's commit fails, is
/// retried, the store reconnects, and the saga completes with nothing lost.
#[tokio::test(start_paused = true)]
async fn a_lost_postgres_connection_loses_nothing() {
    let Some(url) = common::pg::fresh_url() else {
        return;
    };
    let app = format!("saga_conn_{}", std::process::id());
    let store = store::postgres::open(&format!("{url} application_name={app}"))
        .await
        .unwrap();
    let gate = Arc::new(Notify::new());
    let first = Arc::new(AtomicBool::new(true));
    let (g, f) = (Arc::clone(&gate), Arc::clone(&first));
    let def = SagaDefinition::builder("conn", 1)
        .step(Step::new("a", |_cx| async { Ok(json!("a")) }))
        .step(Step::new("b", move |_cx| {
            let (g, f) = (Arc::clone(&g), Arc::clone(&f));
            async move {
                if f.swap(false, Ordering::SeqCst) {
                    g.notified().await;
                }
                Ok::<Value, StepError>(json!("b"))
            }
        }))
        .build()
        .unwrap();
    let runner = Runner::builder(store).register(def).start().await.unwrap();
    let id = runner
        .start_saga("conn", json!(null), StartOptions::default())
        .await
        .unwrap();
    while first.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let killed = std::thread::spawn(move || {
        let mut c = postgres::Client::connect(&common::pg::base(), postgres::NoTls).unwrap();
        c.query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
            &[&app],
        )
        .unwrap()
        .len()
    })
    .join()
    .unwrap();
    assert_eq!(killed, 1);
    gate.notify_one();
    let row = runner.wait(&id, Duration::from_secs(60)).await.unwrap();
    assert_eq!(row.state, SagaState::Completed);
    assert_eq!(row.outputs, [json!("a"), json!("b")]);
    runner.shutdown();
    common::pg::drop_schema(&url);
}

#[tokio::test(start_paused = true)]
async fn metrics_count_sagas_and_time_steps() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder
        .install()
        .expect("the only recorder in this test binary");
    let def = SagaDefinition::builder("metered", 1)
        .step(Step::new("a", |_cx| async { Ok(Value::Null) }))
        .step(Step::new("b", |cx| async move {
            if *cx.input == json!("fail") {
                Err(StepError::definitive("no"))
            } else {
                Ok(Value::Null)
            }
        }))
        .build()
        .unwrap();
    let runner = Runner::builder(store::memory::open())
        .register(def)
        .start()
        .await
        .unwrap();
    for input in ["ok", "fail", "ok"] {
        let id = runner
            .start_saga("metered", json!(input), StartOptions::default())
            .await
            .unwrap();
        runner.wait(&id, Duration::from_secs(60)).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(10)).await;
    let snapshot = snapshotter.snapshot().into_vec();
    let counter = |name: &str| {
        snapshot
            .iter()
            .find(|(k, _, _, _)| {
                k.key().name() == name && k.key().labels().any(|l| l.value() == "metered")
            })
            .map(|(_, _, _, v)| v)
    };
    assert_eq!(
        counter("palisade_saga_started_total"),
        Some(&DebugValue::Counter(3))
    );
    assert_eq!(
        counter("palisade_saga_completed_total"),
        Some(&DebugValue::Counter(2))
    );
    assert_eq!(
        counter("palisade_saga_compensated_total"),
        Some(&DebugValue::Counter(1))
    );
    let steps = snapshot
        .iter()
        .filter(|(k, _, _, _)| k.key().name() == "palisade_saga_step_duration_seconds")
        .map(|(_, _, _, v)| match v {
            DebugValue::Histogram(h) => h.len(),
            _ => 0,
        })
        .sum::<usize>();
    assert_eq!(steps, 2 + 2 + 2 + 1, "six actions and one compensation");
    assert!(
        snapshot
            .iter()
            .any(|(k, _, _, v)| k.key().name() == "palisade_saga_running"
                && *v == DebugValue::Gauge(0.0.into()))
    );
    runner.shutdown();
}

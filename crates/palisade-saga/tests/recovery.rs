//! Recovery at scale: 10,000 unfinished sagas (`PALISADE_SAGA_RECOVERY_SAGAS`) left by a
//! dead runner on SQLite are all finished by the next one; the target is 10 s (release
//! build), printed, and asserted at 60 s so a debug build on a busy machine passes.

use std::time::Duration;

use palisade_saga::{Runner, SagaDefinition, SagaState, StartOptions, Step};
use serde_json::{Value, json};

fn definition(hang: bool) -> SagaDefinition {
    let mut b = SagaDefinition::builder("r", 1);
    for i in 0..3 {
        b = b.step(Step::new(format!("s{i}"), move |_cx| async move {
            if hang && i == 1 {
                std::future::pending::<()>().await;
            }
            Ok(Value::Null)
        }));
    }
    b.build().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_unfinished_sagas_finish_after_a_restart() {
    let n: usize = std::env::var("PALISADE_SAGA_RECOVERY_SAGAS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let dir = std::env::temp_dir().join(format!("palisade-saga-recovery-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("r.db");
    let store = palisade_saga::store::sqlite::open(&path).await.unwrap();
    let a = Runner::builder(store)
        .register(definition(true))
        .max_running(n)
        .start()
        .await
        .unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..n {
        let a = a.clone();
        tasks.spawn(async move {
            a.start_saga(
                "r",
                json!(i),
                StartOptions {
                    id: Some(format!("r-{i}")),
                    version: None,
                },
            )
            .await
            .unwrap();
        });
    }
    while tasks.join_next().await.is_some() {}
    while a
        .list(Some(SagaState::Running), 10_000)
        .await
        .unwrap()
        .iter()
        .any(|r| r.cursor < 1)
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    a.shutdown(); // dies with every saga at step s1

    let started = tokio::time::Instant::now();
    let store = palisade_saga::store::sqlite::open(&path).await.unwrap();
    let b = Runner::builder(store)
        .register(definition(false))
        .start()
        .await
        .unwrap();
    loop {
        let running = b.list(Some(SagaState::Running), 1).await.unwrap();
        if running.is_empty() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "recovery too slow"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let took = started.elapsed();
    let done = b
        .list(Some(SagaState::Completed), 10_000)
        .await
        .unwrap()
        .len();
    eprintln!("recovery: {n} unfinished sagas finished {took:?} after the restart");
    assert_eq!(done, n.min(10_000));
    b.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
}

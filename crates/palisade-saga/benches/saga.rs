//! Saga throughput and overhead: 3-step sagas with no-op steps, through the library API.
//!
//! - `saga/<store>/64_concurrent`: 64 sagas started at once, all driven to completion;
//!   criterion's elements/s is sagas/s.
//! - `saga/<store>/one`: one saga alone, start to completed: its median is one saga's own
//!   overhead (p50).
//!
//! Stores: SQLite (WAL, `synchronous = FULL`) in a temporary directory, and PostgreSQL on
//! loopback (`PALISADE_SAGA_PG`, default `host=127.0.0.1 user=postgres dbname=test`; a
//! fresh schema; skipped with a message when unreachable).

#![allow(missing_docs)] // criterion_group! generates undocumented items

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use palisade_saga::{Runner, SagaDefinition, StartOptions, Step, Store};
use serde_json::{Value, json};

static NEXT: AtomicU64 = AtomicU64::new(0);

fn definition() -> SagaDefinition {
    let mut b = SagaDefinition::builder("bench", 1);
    for name in ["reserve", "charge", "ship"] {
        b = b.step(
            Step::new(name, |_cx| async { Ok(Value::Null) })
                .compensate(|_cx| async { Ok(Value::Null) }),
        );
    }
    b.build().expect("a valid definition")
}

async fn batch(runner: &Runner, n: usize) {
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..n {
        let runner = runner.clone();
        tasks.spawn(async move {
            let id = format!("b-{}", NEXT.fetch_add(1, Ordering::Relaxed));
            let options = StartOptions {
                id: Some(id),
                version: None,
            };
            let id = runner
                .start_saga("bench", json!({"cart": 1}), options)
                .await
                .expect("started");
            runner
                .wait(&id, Duration::from_secs(60))
                .await
                .expect("finished");
        });
    }
    while tasks.join_next().await.is_some() {}
}

fn pg_url() -> Option<String> {
    let base = std::env::var("PALISADE_SAGA_PG").unwrap_or_else(|_| {
        "host=127.0.0.1 port=5432 user=postgres dbname=test connect_timeout=3".into()
    });
    let schema = format!("saga_bench_{}", std::process::id());
    let mut client = match postgres::Client::connect(&base, postgres::NoTls) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("!!! PostgreSQL unreachable ({e}): its benchmarks are skipped");
            return None;
        }
    };
    client
        .batch_execute(&format!(
            "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}"
        ))
        .ok()?;
    Some(format!("{base} options='-c search_path={schema}'"))
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let dir = std::env::temp_dir().join(format!("palisade-saga-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temp dir");
    let mut stores: Vec<(&str, Store)> = Vec::new();
    let pg = pg_url();
    rt.block_on(async {
        stores.push((
            "sqlite",
            palisade_saga::store::sqlite::open(dir.join("bench.db"))
                .await
                .expect("sqlite"),
        ));
        if let Some(url) = pg {
            stores.push((
                "postgres",
                palisade_saga::store::postgres::open(&url)
                    .await
                    .expect("postgres"),
            ));
        }
    });
    for (name, store) in stores {
        let runner = rt
            .block_on(
                Runner::builder(store)
                    .register(definition())
                    .max_running(4096)
                    .start(),
            )
            .expect("a runner");
        let mut group = c.benchmark_group(format!("saga/{name}"));
        group.measurement_time(Duration::from_secs(5));
        group.sample_size(20);
        group.throughput(Throughput::Elements(64));
        group.bench_function("64_concurrent", |b| {
            b.to_async(&rt).iter(|| batch(&runner, 64))
        });
        group.throughput(Throughput::Elements(1));
        group.bench_function("one", |b| b.to_async(&rt).iter(|| batch(&runner, 1)));
        group.finish();
        runner.shutdown();
    }
    let _ = std::fs::remove_dir_all(&dir);
    drop(rt); // closes the stores' connections before their schema goes
    drop_schema();
}

fn drop_schema() {
    let base = std::env::var("PALISADE_SAGA_PG").unwrap_or_else(|_| {
        "host=127.0.0.1 port=5432 user=postgres dbname=test connect_timeout=3".into()
    });
    if let Ok(mut client) = postgres::Client::connect(&base, postgres::NoTls) {
        let _ = client.batch_execute(&format!(
            "DROP SCHEMA IF EXISTS saga_bench_{} CASCADE",
            std::process::id()
        ));
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);

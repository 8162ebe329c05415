//! `bulkhead`: one call through a bulkhead with free slots (64 allowed, 1 in use).
//!
//! Tower contenders (`ready().await` + `call` on a current-thread runtime, over the same
//! ready `service_fn`): palisade's `Bulkhead::layer()`, tower's `ConcurrencyLimit` and
//! tower-resilience's `BulkheadLayer`. Sync contenders: palisade `try_acquire` + drop vs
//! tokio's `Semaphore::try_acquire` + drop (the semaphore tower's limit is built on).
//! `async_palisade` (`Policy::call`) is shown for reference; it has no peer.

#![allow(missing_docs)] // criterion_group! generates undocumented items

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use palisade::Policy;
use palisade::policy::bulkhead::Bulkhead;
use palisade_bench::{
    ALLOC_CALLS, count_allocs, count_allocs_async, iter_service, ready_service, report_allocs,
    runtime, service_allocs, short_config,
};
use tower::Layer;

const MAX_CONCURRENT: usize = 64;

fn bench(c: &mut Criterion) {
    let rt = runtime();
    let bulkhead = Bulkhead::builder()
        .name("bench")
        .max_concurrent(MAX_CONCURRENT)
        .build()
        .expect("valid bulkhead");
    let semaphore = tokio::sync::Semaphore::new(MAX_CONCURRENT);
    let ours_svc = bulkhead.layer().layer(ready_service());
    let tower_svc = tower::limit::ConcurrencyLimitLayer::new(MAX_CONCURRENT).layer(ready_service());
    let resilience_svc = tower_resilience::bulkhead::BulkheadLayer::builder()
        .max_concurrent_calls(MAX_CONCURRENT)
        .build()
        .expect("valid tower-resilience bulkhead")
        .layer(ready_service());

    report_allocs(
        "bulkhead",
        "sync_palisade",
        count_allocs(ALLOC_CALLS, || {
            drop(black_box(bulkhead.try_acquire().expect("room")))
        }),
    );
    report_allocs(
        "bulkhead",
        "sync_tokio_semaphore",
        count_allocs(ALLOC_CALLS, || {
            drop(black_box(semaphore.try_acquire().expect("room")))
        }),
    );
    report_allocs(
        "bulkhead",
        "async_palisade",
        count_allocs_async(&rt, ALLOC_CALLS, || {
            bulkhead.call(|| async { Ok::<u64, ()>(1) })
        }),
    );
    report_allocs("bulkhead", "tower_palisade", service_allocs(&rt, &ours_svc));
    report_allocs(
        "bulkhead",
        "tower_concurrency_limit",
        service_allocs(&rt, &tower_svc),
    );
    report_allocs(
        "bulkhead",
        "tower_resilience",
        service_allocs(&rt, &resilience_svc),
    );

    let mut group = c.benchmark_group("bulkhead");
    group.bench_function("sync_palisade", |b| {
        b.iter(|| drop(black_box(bulkhead.try_acquire().expect("room"))))
    });
    group.bench_function("sync_tokio_semaphore", |b| {
        b.iter(|| drop(black_box(semaphore.try_acquire().expect("room"))))
    });
    group.bench_function("async_palisade", |b| {
        b.to_async(&rt)
            .iter(|| bulkhead.call(|| async { Ok::<u64, ()>(black_box(1)) }))
    });
    group.bench_function("tower_palisade", |b| iter_service(b, &rt, &ours_svc));
    group.bench_function("tower_concurrency_limit", |b| {
        iter_service(b, &rt, &tower_svc)
    });
    group.bench_function("tower_resilience", |b| {
        iter_service(b, &rt, &resilience_svc)
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = short_config();
    targets = bench
}
criterion_main!(benches);

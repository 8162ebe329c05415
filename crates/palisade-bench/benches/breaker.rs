//! `breaker`: one successful call through a closed circuit breaker.
//!
//! Sync contenders (no future involved): palisade `try_acquire` + `record`, recloser
//! `call`, failsafe `call`. Async contenders (one future awaited on a current-thread
//! runtime): palisade `call`, recloser's `AsyncRecloser::call`, failsafe's futures
//! `call`. Tower contenders (`ready().await` + `call`): palisade's `layer()` and
//! tower-resilience's `CircuitBreakerLayer`, both over the same ready `service_fn`.

#![allow(missing_docs)] // criterion_group! generates undocumented items

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use palisade::Outcome;
use palisade::Policy;
use palisade::policy::circuit_breaker::CircuitBreaker;
use palisade_bench::{
    ALLOC_CALLS, count_allocs, count_allocs_async, iter_service, ready_service, report_allocs,
    report_future_size, runtime, service_allocs, service_future_size, short_config,
};
use tower::Layer;

fn ours() -> CircuitBreaker {
    CircuitBreaker::builder()
        .name("bench")
        .count_window(100)
        .build()
        .expect("valid breaker")
}

fn sync_ours(breaker: &CircuitBreaker) {
    let permit = breaker.try_acquire().expect("closed breaker admits");
    black_box(Ok::<(), ()>(())).expect("succeeds");
    permit.record(&Outcome::success());
}

fn bench(c: &mut Criterion) {
    let rt = runtime();
    let breaker = ours();
    let recloser = recloser::Recloser::default();
    let failsafe_cb = failsafe::Config::new().build();
    let async_recloser = recloser::AsyncRecloser::from(recloser::Recloser::default());
    let failsafe_async = failsafe::Config::new().build();
    let ours_svc = breaker.layer().layer(ready_service());
    let resilience_svc = tower_resilience::circuitbreaker::CircuitBreakerLayer::builder()
        .sliding_window_size(100)
        .build()
        .expect("valid tower-resilience breaker")
        .layer(ready_service());

    // Allocations per call, once per run.
    {
        report_allocs(
            "breaker",
            "sync_palisade",
            count_allocs(ALLOC_CALLS, || sync_ours(&breaker)),
        );
        report_allocs(
            "breaker",
            "sync_recloser",
            count_allocs(ALLOC_CALLS, || {
                black_box(recloser.call(|| Ok::<(), ()>(()))).expect("closed");
            }),
        );
        report_allocs(
            "breaker",
            "sync_failsafe",
            count_allocs(ALLOC_CALLS, || {
                black_box(failsafe::CircuitBreaker::call(&failsafe_cb, || {
                    Ok::<(), ()>(())
                }))
                .expect("closed");
            }),
        );
        report_allocs(
            "breaker",
            "async_palisade",
            count_allocs_async(&rt, ALLOC_CALLS, || {
                breaker.call(|| async { Ok::<u64, ()>(1) })
            }),
        );
        report_allocs(
            "breaker",
            "async_recloser",
            count_allocs_async(&rt, ALLOC_CALLS, || {
                async_recloser.call(async { Ok::<u64, ()>(1) })
            }),
        );
        report_allocs(
            "breaker",
            "async_failsafe",
            count_allocs_async(&rt, ALLOC_CALLS, || {
                failsafe::futures::CircuitBreaker::call(&failsafe_async, async { Ok::<u64, ()>(1) })
            }),
        );
        report_allocs("breaker", "tower_palisade", service_allocs(&rt, &ours_svc));
        report_allocs(
            "breaker",
            "tower_resilience",
            service_allocs(&rt, &resilience_svc),
        );
    }

    report_future_size(
        "breaker",
        "async_palisade",
        size_of_val(&breaker.call(|| async { Ok::<u64, ()>(1) })),
    );
    report_future_size(
        "breaker",
        "async_recloser",
        size_of_val(&async_recloser.call(async { Ok::<u64, ()>(1) })),
    );
    report_future_size("breaker", "tower_palisade", service_future_size(&ours_svc));

    let mut group = c.benchmark_group("breaker");

    group.bench_function("sync_palisade", |b| b.iter(|| sync_ours(&breaker)));
    group.bench_function("sync_recloser", |b| {
        b.iter(|| black_box(recloser.call(|| Ok::<(), ()>(()))))
    });
    group.bench_function("sync_failsafe", |b| {
        b.iter(|| {
            black_box(failsafe::CircuitBreaker::call(&failsafe_cb, || {
                Ok::<(), ()>(())
            }))
        })
    });

    group.bench_function("async_palisade", |b| {
        b.to_async(&rt)
            .iter(|| breaker.call(|| async { Ok::<u64, ()>(black_box(1)) }))
    });
    group.bench_function("async_recloser", |b| {
        b.to_async(&rt)
            .iter(|| async_recloser.call(async { Ok::<u64, ()>(black_box(1)) }))
    });
    group.bench_function("async_failsafe", |b| {
        b.to_async(&rt).iter(|| {
            failsafe::futures::CircuitBreaker::call(&failsafe_async, async {
                Ok::<u64, ()>(black_box(1))
            })
        })
    });

    group.bench_function("tower_palisade", |b| iter_service(b, &rt, &ours_svc));
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

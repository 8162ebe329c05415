//! `retry`: a retry (3 attempts allowed) whose first attempt succeeds.
//!
//! `bare`: the operation `async { Ok::<u64, ()>(1) }` awaited directly — the floor.
//! `palisade_call`: the same operation through `Retry::call`; the overhead is the difference.
//! Tower contenders over the same ready `service_fn`, for reference: palisade's
//! `Retry::layer()`, tower's `Retry` with an attempts policy, tower-resilience's
//! `RetryLayer`, and the bare service itself.

#![allow(missing_docs)] // criterion_group! generates undocumented items

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use palisade::Policy;
use palisade::policy::retry::Retry;
use palisade_bench::{
    ALLOC_CALLS, Attempts, count_allocs_async, iter_service, ready_service, report_allocs,
    report_future_size, runtime, service_allocs, service_future_size, short_config,
};
use tower::Layer;

const ATTEMPTS: u32 = 3;

fn bench(c: &mut Criterion) {
    let rt = runtime();
    let retry = Retry::builder()
        .name("bench")
        .max_attempts(ATTEMPTS)
        .build()
        .expect("valid retry");
    let bare_svc = ready_service();
    let ours_svc = retry.layer().layer(ready_service());
    let tower_svc = tower::retry::RetryLayer::new(Attempts {
        left: ATTEMPTS as usize,
    })
    .layer(ready_service());
    let resilience_svc = tower_resilience::retry::RetryLayer::<u64, u64, std::io::Error>::builder()
        .max_attempts(ATTEMPTS as usize)
        .build()
        .layer(ready_service());

    report_allocs(
        "retry",
        "bare",
        count_allocs_async(&rt, ALLOC_CALLS, || async { Ok::<u64, ()>(1) }),
    );
    report_allocs(
        "retry",
        "palisade_call",
        count_allocs_async(&rt, ALLOC_CALLS, || {
            retry.call(|| async { Ok::<u64, ()>(1) })
        }),
    );
    report_allocs("retry", "tower_bare", service_allocs(&rt, &bare_svc));
    report_allocs("retry", "tower_palisade", service_allocs(&rt, &ours_svc));
    report_allocs("retry", "tower_retry", service_allocs(&rt, &tower_svc));
    report_allocs(
        "retry",
        "tower_resilience",
        service_allocs(&rt, &resilience_svc),
    );

    report_future_size(
        "retry",
        "palisade_call",
        size_of_val(&retry.call(|| async { Ok::<u64, ()>(1) })),
    );
    report_future_size("retry", "tower_palisade", service_future_size(&ours_svc));
    report_future_size("retry", "tower_retry", service_future_size(&tower_svc));

    let mut group = c.benchmark_group("retry");
    group.bench_function("bare", |b| {
        b.to_async(&rt)
            .iter(|| async { Ok::<u64, ()>(black_box(1)) })
    });
    group.bench_function("palisade_call", |b| {
        b.to_async(&rt)
            .iter(|| retry.call(|| async { Ok::<u64, ()>(black_box(1)) }))
    });
    group.bench_function("tower_bare", |b| iter_service(b, &rt, &bare_svc));
    group.bench_function("tower_palisade", |b| iter_service(b, &rt, &ours_svc));
    group.bench_function("tower_retry", |b| iter_service(b, &rt, &tower_svc));
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

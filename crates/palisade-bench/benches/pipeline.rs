//! `pipeline`: one successful call through four policies — timeout (1 s), retry (3
//! attempts), circuit breaker (count window 100), bulkhead (64) — outermost first.
//!
//! * `palisade_call`: `Pipeline::call` on an async closure.
//! * `palisade_layer`: `Pipeline::layer()` as a tower service.
//! * `tower_stack`: tower's `Timeout` + `Retry` (attempts policy) + `ConcurrencyLimit`;
//!   tower has no circuit breaker, so this stack does one policy less.
//! * `resilience_stack`: tower-resilience's `TimeLimiter` + `Retry` + `CircuitBreaker` +
//!   `Bulkhead`.
//! * `bare_call` / `bare_service`: the operation alone, for the floor.
//!
//! Before timing, every contender's heap allocations per call are counted and printed;
//! the benchmark panics if palisade's pipeline allocates on this success path.

#![allow(missing_docs)] // criterion_group! generates undocumented items

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use palisade::policy::bulkhead::Bulkhead;
use palisade::policy::circuit_breaker::CircuitBreaker;
use palisade::policy::retry::Retry;
use palisade::policy::timeout::Timeout;
use palisade::{Pipeline, Policy};
use palisade_bench::{
    ALLOC_CALLS, Attempts, count_allocs_async, iter_service, ready_service, report_allocs,
    report_future_size, runtime, service_allocs, service_future_size, short_config,
};
use tower::{Layer, ServiceBuilder};

const TIMEOUT: Duration = Duration::from_secs(1);
const ATTEMPTS: u32 = 3;
const WINDOW: u32 = 100;
const MAX_CONCURRENT: usize = 64;

type IoResult = Result<u64, std::io::Error>;

fn bench(c: &mut Criterion) {
    let rt = runtime();
    let pipeline = Pipeline::builder()
        .push(Timeout::new(TIMEOUT))
        .push(
            Retry::builder()
                .name("bench")
                .max_attempts(ATTEMPTS)
                .build()
                .expect("retry"),
        )
        .push(
            CircuitBreaker::builder()
                .name("bench")
                .count_window(WINDOW)
                .build()
                .expect("breaker"),
        )
        .push(
            Bulkhead::builder()
                .name("bench")
                .max_concurrent(MAX_CONCURRENT)
                .build()
                .expect("bulkhead"),
        )
        .build();
    let ours_svc = pipeline.layer().layer(ready_service());
    let tower_svc = ServiceBuilder::new()
        .timeout(TIMEOUT)
        .retry(Attempts {
            left: ATTEMPTS as usize,
        })
        .concurrency_limit(MAX_CONCURRENT)
        .service(ready_service());
    let resilience_svc = {
        use tower_resilience::bulkhead::{BulkheadLayer, BulkheadServiceError};
        use tower_resilience::circuitbreaker::{CircuitBreakerError, CircuitBreakerLayer};
        use tower_resilience::retry::RetryLayer;
        use tower_resilience::timelimiter::TimeLimiterLayer;
        type BreakerError = CircuitBreakerError<BulkheadServiceError<std::io::Error>>;
        ServiceBuilder::new()
            .layer(
                TimeLimiterLayer::builder()
                    .timeout_duration(TIMEOUT)
                    .build(),
            )
            .layer(
                RetryLayer::<u64, u64, BreakerError>::builder()
                    .max_attempts(ATTEMPTS as usize)
                    .build(),
            )
            .layer(
                CircuitBreakerLayer::builder()
                    .sliding_window_size(WINDOW as usize)
                    .build()
                    .expect("tower-resilience breaker"),
            )
            .layer(
                BulkheadLayer::builder()
                    .max_concurrent_calls(MAX_CONCURRENT)
                    .build()
                    .expect("tower-resilience bulkhead"),
            )
            .service(ready_service())
    };
    let bare_svc = ready_service();

    // Allocations per call, once per run; ours must not allocate.
    let ours_call = count_allocs_async(&rt, ALLOC_CALLS, || {
        pipeline.call(|| async { Ok::<u64, std::io::Error>(1) })
    });
    let ours_layer = service_allocs(&rt, &ours_svc);
    report_allocs("pipeline", "palisade_call", ours_call);
    report_allocs("pipeline", "palisade_layer", ours_layer);
    report_allocs("pipeline", "tower_stack", service_allocs(&rt, &tower_svc));
    report_allocs(
        "pipeline",
        "resilience_stack",
        service_allocs(&rt, &resilience_svc),
    );
    report_allocs(
        "pipeline",
        "bare_call",
        count_allocs_async(&rt, ALLOC_CALLS, || async { IoResult::Ok(1) }),
    );
    report_allocs("pipeline", "bare_service", service_allocs(&rt, &bare_svc));
    assert!(
        ours_call == 0.0 && ours_layer == 0.0,
        "palisade's pipeline allocates on the success path: {ours_call} allocations per \
         `call`, {ours_layer} per tower call"
    );

    report_future_size(
        "pipeline",
        "palisade_call",
        size_of_val(&pipeline.call(|| async { IoResult::Ok(1) })),
    );
    report_future_size("pipeline", "palisade_layer", service_future_size(&ours_svc));
    report_future_size("pipeline", "tower_stack", service_future_size(&tower_svc));

    let mut group = c.benchmark_group("pipeline");
    group.bench_function("palisade_call", |b| {
        b.to_async(&rt)
            .iter(|| pipeline.call(|| async { IoResult::Ok(black_box(1)) }))
    });
    group.bench_function("palisade_layer", |b| iter_service(b, &rt, &ours_svc));
    group.bench_function("tower_stack", |b| iter_service(b, &rt, &tower_svc));
    group.bench_function("resilience_stack", |b| {
        iter_service(b, &rt, &resilience_svc)
    });
    group.bench_function("bare_call", |b| {
        b.to_async(&rt)
            .iter(|| async { IoResult::Ok(black_box(1)) })
    });
    group.bench_function("bare_service", |b| iter_service(b, &rt, &bare_svc));
    group.finish();
}

criterion_group! {
    name = benches;
    config = short_config();
    targets = bench
}
criterion_main!(benches);

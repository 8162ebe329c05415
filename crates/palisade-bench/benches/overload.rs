#![allow(missing_docs)] // criterion's macros generate undocumented items
//! Adaptive overload protection on its success path: the adaptive limiter's
//! acquire/record/release against congestion-limiter's, the load shedder's and the
//! client throttle's per-call decisions, and fault injection switched off against no
//! policy at all.

use std::hint::black_box;

use congestion_limiter::limiter::Limiter as _;
use criterion::{Criterion, criterion_group, criterion_main};
use palisade::Policy;
use palisade::criticality::Criticality;
use palisade::outcome::Outcome;
use palisade::policy::adaptive_concurrency::{
    AdaptiveConcurrency, AdaptiveConcurrencyConfig, AlgorithmConfig,
};
use palisade::policy::fault::{FaultConfig, FaultInjection};
use palisade::policy::shed::{LoadShedder, ShedConfig};
use palisade::policy::throttle::{AdaptiveThrottle, ThrottleConfig};
use palisade_bench::{runtime, short_config};

fn bench(c: &mut Criterion) {
    let rt = runtime();
    let _context = rt.enter();

    let ours = AdaptiveConcurrency::new(AdaptiveConcurrencyConfig {
        algorithm: AlgorithmConfig::Aimd {
            backoff_ratio: 0.9,
            latency_threshold: None,
        },
        initial_limit: 1000,
        max_limit: 1000,
        ..Default::default()
    })
    .expect("valid limiter");
    let theirs = congestion_limiter::limiter::DefaultLimiter::new(
        congestion_limiter::limits::Aimd::new(1000, 1..=1000),
    );
    let shedder = LoadShedder::new(ShedConfig::default()).expect("valid shedder");
    let throttle = AdaptiveThrottle::new(ThrottleConfig::default()).expect("valid throttle");
    let chaos = FaultInjection::<u64, ()>::builder(FaultConfig::default())
        .build()
        .expect("valid faults");

    let mut group = c.benchmark_group("overload");
    group.bench_function("adaptive_palisade", |b| {
        b.iter(|| {
            let permit = ours.try_acquire().expect("room");
            permit.record(black_box(&Outcome::success()));
        })
    });
    group.bench_function("adaptive_congestion_limiter", |b| {
        b.to_async(&rt).iter(|| async {
            let token = theirs.try_acquire().await.expect("room");
            theirs
                .release(token, Some(congestion_limiter::limiter::Outcome::Success))
                .await;
        })
    });
    group.bench_function("shed_decision", |b| {
        b.iter(|| {
            drop(black_box(
                shedder.try_acquire(Criticality::Critical).expect("room"),
            ))
        })
    });
    group.bench_function("throttle_decision", |b| {
        b.iter(|| {
            black_box(throttle.admit());
            throttle.accepted();
        })
    });
    group.bench_function("fault_off", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(chaos.call(|| async { Ok::<u64, ()>(1) }).await) })
    });
    // "No policy" through the same call API: an empty pipeline runs the operation as is.
    let nothing = palisade::Pipeline::builder().build();
    group.bench_function("no_policy", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(nothing.call(|| async { Ok::<u64, ()>(1) }).await) })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = short_config();
    targets = bench
}
criterion_main!(benches);

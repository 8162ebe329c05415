//! `contention`: one policy shared by 1 or 2 threads calling it in a tight loop.
//!
//! Each thread makes `iters` calls; the threads start together at a `Barrier` and each
//! times its own loop; the reported time is the slowest thread's, so "time per iteration"
//! is the wall time of one call per thread. With perfect scaling the 2-thread figure
//! equals the 1-thread figure; the ratio 2-thread ÷ 1-thread is the slowdown caused by
//! sharing (cache-line traffic on the shared atomics). Target: at most 2×.
//!
//! * `breaker_*`: closed breaker, sync `try_acquire` + `record` (shared `CircuitBreaker`).
//! * `recloser_*`: recloser's sync `call`, for reference (shared `Arc<Recloser>`).
//! * `pipeline_*`: the 4-policy pipeline of the `pipeline` group via `Pipeline::call`,
//!   each thread on its own current-thread runtime (built before the barrier).
//!
//! On a 2-core machine the 2-thread runs use every core: anything else running at the
//! same time (a compiler) shows up here first.

#![allow(missing_docs)] // criterion_group! generates undocumented items

use std::hint::black_box;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use palisade::policy::bulkhead::Bulkhead;
use palisade::policy::circuit_breaker::CircuitBreaker;
use palisade::policy::retry::Retry;
use palisade::policy::timeout::Timeout;
use palisade::{Outcome, Pipeline, Policy};
use palisade_bench::{runtime, short_config};

/// Runs `work` on `threads` scoped threads released together; returns the slowest
/// thread's own measurement. `work` gets the barrier to wait on once its setup is done.
fn on_threads<W>(threads: usize, iters: u64, work: &W) -> Duration
where
    W: Fn(&Barrier, u64) -> Duration + Sync,
{
    let barrier = Barrier::new(threads);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| s.spawn(|| work(&barrier, iters)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("bench thread"))
            .max()
            .expect("at least one thread")
    })
}

fn breaker_loop(breaker: &CircuitBreaker, barrier: &Barrier, iters: u64) -> Duration {
    barrier.wait();
    let start = Instant::now();
    for _ in 0..iters {
        let permit = breaker.try_acquire().expect("closed breaker admits");
        black_box(Ok::<(), ()>(())).expect("succeeds");
        permit.record(&Outcome::success());
    }
    start.elapsed()
}

fn recloser_loop(recloser: &recloser::Recloser, barrier: &Barrier, iters: u64) -> Duration {
    barrier.wait();
    let start = Instant::now();
    for _ in 0..iters {
        black_box(recloser.call(|| Ok::<(), ()>(()))).expect("closed");
    }
    start.elapsed()
}

fn bench(c: &mut Criterion) {
    let breaker = CircuitBreaker::builder()
        .name("bench")
        .count_window(100)
        .build()
        .expect("valid breaker");
    let recloser = Arc::new(recloser::Recloser::default());
    let pipeline = Pipeline::builder()
        .push(Timeout::new(Duration::from_secs(1)))
        .push(
            Retry::builder()
                .name("bench")
                .max_attempts(3)
                .build()
                .expect("retry"),
        )
        .push(
            CircuitBreaker::builder()
                .name("bench")
                .count_window(100)
                .build()
                .expect("breaker"),
        )
        .push(
            Bulkhead::builder()
                .name("bench")
                .max_concurrent(64)
                .build()
                .expect("bulkhead"),
        )
        .build();
    let pipeline_loop = |barrier: &Barrier, iters: u64| -> Duration {
        let rt = runtime();
        let pipeline = &pipeline;
        rt.block_on(async move {
            barrier.wait();
            let start = Instant::now();
            for _ in 0..iters {
                let result = pipeline
                    .call(|| async { Ok::<u64, std::io::Error>(black_box(1)) })
                    .await;
                black_box(result.expect("succeeds"));
            }
            start.elapsed()
        })
    };

    let mut group = c.benchmark_group("contention");
    for threads in [1, 2] {
        let suffix = if threads == 1 {
            "1_thread"
        } else {
            "2_threads"
        };
        group.bench_function(format!("breaker_{suffix}"), |b| {
            b.iter_custom(|iters| {
                on_threads(threads, iters, &|barrier: &Barrier, n| {
                    breaker_loop(&breaker, barrier, n)
                })
            })
        });
        group.bench_function(format!("recloser_{suffix}"), |b| {
            b.iter_custom(|iters| {
                on_threads(threads, iters, &|barrier: &Barrier, n| {
                    recloser_loop(&recloser, barrier, n)
                })
            })
        });
        group.bench_function(format!("pipeline_{suffix}"), |b| {
            b.iter_custom(|iters| on_threads(threads, iters, &pipeline_loop))
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = short_config();
    targets = bench
}
criterion_main!(benches);

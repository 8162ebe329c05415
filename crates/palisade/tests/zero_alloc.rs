//! The success path allocates nothing: a closed breaker, a bulkhead with room, a limiter
//! with tokens, a retry that succeeds first time, a timeout — alone and as a pipeline.
//!
//! Counted with `allocation-counter`, which wraps the global allocator. Futures are
//! polled by hand with a no-op waker inside a tokio runtime context, so that nothing but
//! the policies runs while counting.

#![cfg(not(palisade_loom))]

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use palisade::policy::bulkhead::Bulkhead;
use palisade::policy::circuit_breaker::CircuitBreaker;
use palisade::policy::rate_limit::{Quota, RateLimiter};
use palisade::policy::retry::Retry;
use palisade::policy::timeout::Timeout;
use palisade::{Pipeline, Policy};

fn run_ready<F: Future>(future: F) -> F::Output {
    let mut cx = Context::from_waker(Waker::noop());
    let mut future = pin!(future);
    match future.as_mut().poll(&mut cx) {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("the operation is ready at once; the policy must not wait"),
    }
}

fn allocations_per_1000_calls(mut call: impl FnMut()) -> u64 {
    for _ in 0..100 {
        call(); // warm up: lazily initialised thread-locals, timer handles, …
    }
    allocation_counter::measure(|| {
        for _ in 0..1000 {
            call();
        }
    })
    .count_total
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap()
}

async fn ok() -> Result<u64, std::io::Error> {
    Ok(1)
}

#[test]
fn every_policy_and_the_pipeline_allocate_nothing_on_success() {
    let rt = runtime();
    let _context = rt.enter();
    let breaker = CircuitBreaker::with_defaults("db");
    let bulkhead = Bulkhead::builder().build().unwrap();
    let limiter = RateLimiter::builder()
        .quota(Quota::new(1e9, 1_000_000))
        .build()
        .unwrap();
    let retry = Retry::builder().build().unwrap();
    let timeout = Timeout::new(Duration::from_secs(1));
    let pipeline = Pipeline::builder()
        .push(timeout.clone())
        .push(retry.clone())
        .push(breaker.clone())
        .push(bulkhead.clone())
        .build();

    let cases: [(&str, u64); 6] = [
        (
            "breaker",
            allocations_per_1000_calls(|| assert!(run_ready(breaker.call(ok)).is_ok())),
        ),
        (
            "bulkhead",
            allocations_per_1000_calls(|| assert!(run_ready(bulkhead.call(ok)).is_ok())),
        ),
        (
            "rate limiter",
            allocations_per_1000_calls(|| assert!(run_ready(limiter.call(ok)).is_ok())),
        ),
        (
            "retry",
            allocations_per_1000_calls(|| assert!(run_ready(retry.call(ok)).is_ok())),
        ),
        (
            "timeout",
            allocations_per_1000_calls(|| assert!(run_ready(timeout.call(ok)).is_ok())),
        ),
        (
            "pipeline",
            allocations_per_1000_calls(|| assert!(run_ready(pipeline.call(ok)).is_ok())),
        ),
    ];
    for (name, allocations) in cases {
        assert_eq!(
            allocations, 0,
            "{name} allocated {allocations} times in 1000 successful calls"
        );
    }
}

#[test]
fn the_tower_stack_allocates_nothing_on_success_either() {
    use tower::{Layer, Service};
    let rt = runtime();
    let _context = rt.enter();
    let pipeline = Pipeline::builder()
        .push(Timeout::new(Duration::from_secs(1)))
        .push(Retry::builder().build().unwrap())
        .push(CircuitBreaker::with_defaults("db"))
        .push(Bulkhead::builder().build().unwrap())
        .build();
    let mut svc = pipeline
        .layer()
        .layer(tower::service_fn(|x: u64| async move {
            Ok::<_, std::io::Error>(x)
        }));
    let mut cx = Context::from_waker(Waker::noop());
    let allocations = allocations_per_1000_calls(|| {
        assert!(svc.poll_ready(&mut cx).is_ready());
        assert_eq!(run_ready(svc.call(7)).unwrap(), 7);
    });
    // The breaker layer's response future owns a handle to the breaker (an `Arc` clone:
    // no allocation); the retry layer keeps the request (a `u64` here).
    assert_eq!(allocations, 0);
}

//! `rate_limit`: one GCRA check that is allowed, palisade vs governor.
//!
//! Both limiters get the same quota: 1e9 calls per second with a burst of 1,000,000, so a
//! check (tens of nanoseconds) never outruns the refill and every check is allowed; the
//! benchmark panics otherwise, so a limited (cheaper or dearer) path is never timed.
//! `direct_*`: one shared limiter. `keyed_*`: a limiter per key, cycling over 1,024 keys
//! that are all inserted before timing starts (the lookup, not the insert, is timed).

#![allow(missing_docs)] // criterion_group! generates undocumented items

use std::cell::Cell;
use std::hint::black_box;
use std::num::NonZeroU32;

use criterion::{Criterion, criterion_group, criterion_main};
use palisade::clock::Clock;
use palisade::policy::rate_limit::{KeyedRateLimiter, Quota, RateLimiter};
use palisade_bench::{ALLOC_CALLS, count_allocs, report_allocs, short_config};

const PER_SECOND: u32 = 1_000_000_000;
const BURST: u32 = 1_000_000;
const KEYS: u64 = 1024;

fn governor_quota() -> governor::Quota {
    governor::Quota::per_second(NonZeroU32::new(PER_SECOND).expect("non-zero"))
        .allow_burst(NonZeroU32::new(BURST).expect("non-zero"))
}

fn our_quota() -> Quota {
    Quota::new(f64::from(PER_SECOND), BURST)
}

/// The next key of the cycle; a `Cell` so the closures stay `Fn`-agnostic.
fn next_key(counter: &Cell<u64>) -> u64 {
    let key = counter.get();
    counter.set((key + 1) % KEYS);
    key
}

fn bench(c: &mut Criterion) {
    // Governor reads quanta's TSC clock; ours does with `Clock::fast()`. The default
    // clock (tokio's, which honours a paused test clock) is measured beside them.
    let ours = RateLimiter::builder()
        .quota(our_quota())
        .clock(Clock::fast())
        .build()
        .expect("valid limiter");
    let ours_default_clock = RateLimiter::builder()
        .quota(our_quota())
        .build()
        .expect("valid limiter");
    let ours_keyed = KeyedRateLimiter::<u64>::builder()
        .quota(our_quota())
        .max_keys(100_000)
        .clock(Clock::fast())
        .build()
        .expect("valid keyed limiter");
    let theirs = governor::RateLimiter::direct(governor_quota());
    let theirs_keyed = governor::RateLimiter::keyed(governor_quota());
    for key in 0..KEYS {
        ours_keyed.check(&key).expect("allowed");
        theirs_keyed.check_key(&key).expect("allowed");
    }

    let key = Cell::new(0);
    report_allocs(
        "rate_limit",
        "direct_palisade",
        count_allocs(ALLOC_CALLS, || ours.check().expect("allowed")),
    );
    report_allocs(
        "rate_limit",
        "direct_governor",
        count_allocs(ALLOC_CALLS, || theirs.check().expect("allowed")),
    );
    report_allocs(
        "rate_limit",
        "keyed_palisade",
        count_allocs(ALLOC_CALLS, || {
            ours_keyed.check(&next_key(&key)).expect("allowed")
        }),
    );
    report_allocs(
        "rate_limit",
        "keyed_governor",
        count_allocs(ALLOC_CALLS, || {
            theirs_keyed.check_key(&next_key(&key)).expect("allowed");
        }),
    );

    let mut group = c.benchmark_group("rate_limit");
    group.bench_function("direct_palisade", |b| {
        b.iter(|| black_box(ours.check()).expect("allowed"))
    });
    group.bench_function("direct_palisade_default_clock", |b| {
        b.iter(|| black_box(ours_default_clock.check()).expect("allowed"))
    });
    group.bench_function("direct_governor", |b| {
        b.iter(|| black_box(theirs.check()).expect("allowed"))
    });
    group.bench_function("keyed_palisade", |b| {
        b.iter(|| black_box(ours_keyed.check(&black_box(next_key(&key)))).expect("allowed"))
    });
    group.bench_function("keyed_governor", |b| {
        b.iter(|| black_box(theirs_keyed.check_key(&black_box(next_key(&key)))).expect("allowed"))
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = short_config();
    targets = bench
}
criterion_main!(benches);

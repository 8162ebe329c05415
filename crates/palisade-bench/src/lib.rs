//! Shared helpers for the criterion benchmarks in `benches/`.
//!
//! * [`CountingAlloc`]: the global allocator of every bench binary that links this crate.
//!   It forwards to [`System`] and, only while [`count_allocs`] runs, counts allocations,
//!   so the success path of each contender can be checked for heap traffic.
//! * [`runtime`]: the current-thread tokio runtime every async benchmark runs on.
//! * [`short_config`]: the short criterion settings the suite uses on a 2-core machine.
//! * [`report_allocs`]: prints one `ALLOCS` line per contender, read back by `run.sh`.

// The workspace forbids `unsafe_code`. This crate needs exactly one `unsafe impl
// GlobalAlloc` — there is no safe way to observe heap allocations — so the bench crate
// denies unsafe code (see its Cargo.toml) and allows it on that impl alone.

use std::alloc::{GlobalAlloc, Layout, System};
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

/// A [`System`] allocator that counts allocations while counting is switched on.
///
/// Counting is off except inside [`count_allocs`], so the timed benchmarks pay one relaxed
/// load per allocation and nothing else; every contender pays the same.
#[derive(Debug)]
pub struct CountingAlloc;

static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

#[allow(unsafe_code)] // the allocation counter; see the note at the top of this file
// SAFETY: every method forwards to `System` with the caller's arguments unchanged, so
// `System`'s guarantees are passed through; the counter has no effect on memory.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

/// Calls per allocation measurement.
pub const ALLOC_CALLS: usize = 10_000;

/// Runs `f` `calls` times with counting on and returns allocations per call.
///
/// Single-threaded use only: the counter is global, so anything another thread allocates
/// meanwhile is counted too (the benchmarks call this before criterion starts threads).
pub fn count_allocs(calls: usize, mut f: impl FnMut()) -> f64 {
    // One warm-up call outside the count: lazily initialised state (thread-locals,
    // first-use registrations) is not per-call cost.
    f();
    ALLOCATIONS.store(0, Ordering::SeqCst);
    COUNTING.store(true, Ordering::SeqCst);
    for _ in 0..calls {
        f();
    }
    COUNTING.store(false, Ordering::SeqCst);
    ALLOCATIONS.load(Ordering::SeqCst) as f64 / calls as f64
}

/// Like [`count_allocs`] for an async call, each one driven to completion on `rt`.
///
/// All `calls` run inside one `block_on`, so the runtime's own per-`block_on` work is not
/// counted; `make` builds the call's future.
pub fn count_allocs_async<Fut: Future>(
    rt: &tokio::runtime::Runtime,
    calls: usize,
    mut make: impl FnMut() -> Fut,
) -> f64 {
    rt.block_on(async {
        std::hint::black_box(make().await);
        ALLOCATIONS.store(0, Ordering::SeqCst);
        COUNTING.store(true, Ordering::SeqCst);
        for _ in 0..calls {
            std::hint::black_box(make().await);
        }
        COUNTING.store(false, Ordering::SeqCst);
    });
    ALLOCATIONS.load(Ordering::SeqCst) as f64 / calls as f64
}

/// Prints one line per contender: `ALLOCS <group> <contender> <allocations per call>`.
pub fn report_allocs(group: &str, contender: &str, per_call: f64) {
    println!("ALLOCS {group} {contender} {per_call:.3}");
}

/// The current-thread runtime, with timers, that every async benchmark runs on.
///
/// # Panics
/// If tokio cannot build a runtime (no reasonable recovery in a benchmark).
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("cannot build a tokio runtime: {e}"))
}

/// Short criterion settings for a 2-core machine shared with a compiler: 1 s warm-up,
/// 3 s measurement, 40 samples. Command-line flags (`--measurement-time` …) still win.
pub fn short_config() -> criterion::Criterion {
    criterion::Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(40)
        .configure_from_args()
}

/// The request every tower benchmark sends.
pub const REQUEST: u64 = 1;

/// Times `ready().await` + `call(REQUEST).await` on a clone of `svc`, driven on `rt`.
///
/// One clone per criterion sample (outside the timed loop); each iteration is one call.
///
/// # Panics
/// If the service is not ready or a call fails: the benchmarks time the success path.
pub fn iter_service<S>(b: &mut criterion::Bencher<'_>, rt: &tokio::runtime::Runtime, svc: &S)
where
    S: tower::Service<u64> + Clone,
    S::Error: std::fmt::Debug,
{
    use tower::ServiceExt;
    b.to_async(rt).iter_custom(|iters| {
        let mut svc = svc.clone();
        async move {
            let start = std::time::Instant::now();
            for _ in 0..iters {
                let ready = svc.ready().await.expect("service ready");
                let response = ready.call(std::hint::black_box(REQUEST)).await;
                std::hint::black_box(response.expect("call succeeds"));
            }
            start.elapsed()
        }
    });
}

/// Allocations per `ready().await` + `call(REQUEST).await` on `svc`, see [`count_allocs`].
///
/// # Panics
/// If the service is not ready or a call fails.
pub fn service_allocs<S>(rt: &tokio::runtime::Runtime, svc: &S) -> f64
where
    S: tower::Service<u64> + Clone,
    S::Error: std::fmt::Debug,
{
    use tower::ServiceExt;
    let mut svc = svc.clone();
    rt.block_on(async {
        let mut one = async || {
            let ready = svc.ready().await.expect("service ready");
            std::hint::black_box(ready.call(REQUEST).await.expect("call succeeds"));
        };
        one().await;
        ALLOCATIONS.store(0, Ordering::SeqCst);
        COUNTING.store(true, Ordering::SeqCst);
        for _ in 0..ALLOC_CALLS {
            one().await;
        }
        COUNTING.store(false, Ordering::SeqCst);
    });
    ALLOCATIONS.load(Ordering::SeqCst) as f64 / ALLOC_CALLS as f64
}

/// The inner service of every tower benchmark: answers at once with `Ok(request)`.
pub fn ready_service() -> impl tower::Service<
    u64,
    Response = u64,
    Error = std::io::Error,
    Future = std::future::Ready<Result<u64, std::io::Error>>,
> + Clone
+ Send
+ Sync
+ 'static {
    tower::service_fn(|request: u64| std::future::ready(Ok::<u64, std::io::Error>(request)))
}

/// A tower retry policy that retries errors up to `max_attempts` attempts in all, at once:
/// the plain-tower counterpart of palisade's `Retry` on the success path.
#[derive(Clone, Copy, Debug)]
pub struct Attempts {
    /// Attempts left, the current one included.
    pub left: usize,
}

impl<Req: Clone, Res, E> tower::retry::Policy<Req, Res, E> for Attempts {
    type Future = std::future::Ready<()>;

    fn retry(&mut self, _request: &mut Req, result: &mut Result<Res, E>) -> Option<Self::Future> {
        match result {
            Ok(_) => None,
            Err(_) if self.left > 1 => {
                self.left -= 1;
                Some(std::future::ready(()))
            }
            Err(_) => None,
        }
    }

    fn clone_request(&mut self, request: &Req) -> Option<Req> {
        Some(request.clone())
    }
}

/// Prints `FUTURE_BYTES <group> <contender> <bytes>`: the size of one call's future, which
/// every await moves and every poll walks (a boxed future shows as its box, 16 bytes).
pub fn report_future_size(group: &str, contender: &str, bytes: usize) {
    println!("FUTURE_BYTES {group} {contender} {bytes}");
}

/// The size of `S`'s response future.
pub fn service_future_size<S: tower::Service<u64>>(_svc: &S) -> usize {
    std::mem::size_of::<S::Future>()
}

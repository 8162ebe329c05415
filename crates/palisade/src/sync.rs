//! Synchronisation primitives, swapped for loom's when model checking.
//!
//! The lock-free state of the circuit breaker and the bulkhead's permit accounting are
//! checked with [loom](https://docs.rs/loom). Building with `--cfg palisade_loom` replaces
//! the atomics and the mutex used by that state with loom's instrumented versions; every
//! other build uses `std`'s. Only the types that hold modelled state come from here.

#[cfg(palisade_loom)]
pub(crate) use loom::sync::Mutex;
#[cfg(palisade_loom)]
pub(crate) use loom::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};

#[cfg(not(palisade_loom))]
pub(crate) use std::sync::Mutex;
#[cfg(not(palisade_loom))]
pub(crate) use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};

/// Locks `mutex`, recovering the data if a previous holder panicked.
///
/// Policy state guarded by a mutex is always left consistent between statements, so a
/// poisoned lock carries no broken invariant; refusing to serve would only turn one
/// panic into many.
#[cfg(not(palisade_loom))]
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Locks `mutex` (loom's), recovering the data if a previous holder panicked.
#[cfg(palisade_loom)]
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> loom::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

//! Values that travel with a future: the machinery behind deadlines and criticality.
//!
//! A [`Scoped`] future sets a thread-local `Cell` to its value for the duration of each
//! poll of what it wraps and restores the previous value afterwards (even on panic). The
//! value therefore follows the future wherever it is polled, like a task-local, at the
//! cost of two `const` thread-local accesses per poll — cheaper than tokio's
//! `task_local!`, which swaps a `RefCell` with guards.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::thread::LocalKey;

use pin_project_lite::pin_project;

/// A thread-local slot for one kind of context value.
pub(crate) type Slot<T> = LocalKey<Cell<Option<T>>>;

pin_project! {
    /// A future polled with `value` in `slot`.
    pub struct Scoped<F, T: 'static> {
        #[pin]
        inner: F,
        slot: &'static Slot<T>,
        value: T,
    }
}

impl<F, T: Copy + 'static> Scoped<F, T> {
    pub(crate) fn new(slot: &'static Slot<T>, value: T, inner: F) -> Self {
        Self { inner, slot, value }
    }

    /// Replaces the value set for the polls to come.
    pub(crate) fn set_value(self: Pin<&mut Self>, value: T) {
        *self.project().value = value;
    }
}

/// Restores the previous value when a poll ends.
struct Restore<T: Copy + 'static> {
    slot: &'static Slot<T>,
    previous: Option<T>,
}

impl<T: Copy + 'static> Drop for Restore<T> {
    fn drop(&mut self) {
        self.slot.with(|cell| cell.set(self.previous));
    }
}

impl<F: Future, T: Copy + 'static> Future for Scoped<F, T> {
    type Output = F::Output;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let slot: &'static Slot<T> = this.slot;
        let previous = slot.with(|cell| cell.replace(Some(*this.value)));
        let _restore = Restore { slot, previous };
        this.inner.poll(cx)
    }
}

/// The value in `slot` for the future being polled, if any.
#[inline]
pub(crate) fn get<T: Copy + 'static>(slot: &'static Slot<T>) -> Option<T> {
    slot.with(Cell::get)
}

//! The bulkhead's permit accounting.
//!
//! One atomic word holds both the calls running (low 21 bits; the limit is at most
//! 1,000,000) and the calls ever admitted (the high 43 bits, wrapping after 8.8 × 10^12),
//! so admitting a call and counting it is a single compare-and-swap, and a bulkhead with
//! room admits without a lock. `queued` counts waiters; a release looks at it and wakes
//! one waiter only when there is one, so the uncontended path never touches the waiter
//! list. Both sides use sequentially consistent operations: a waiter announces itself
//! (`queued += 1`) before its last look at `active`, and a releaser frees its slot
//! (`active -= 1`) before it looks at `queued`, so a release can never miss a waiter that
//! would otherwise sleep with a slot free.

use crate::sync::{AtomicU64, AtomicUsize, Ordering};

const ACTIVE_BITS: u32 = 21;
const ACTIVE_MASK: u64 = (1 << ACTIVE_BITS) - 1;
const ONE_ADMITTED: u64 = 1 << ACTIVE_BITS;

pub(crate) struct Slots {
    /// The concurrency limit; an adaptive limiter moves it at run time.
    max: AtomicUsize,
    pub(crate) max_queue: usize,
    /// `admitted << 21 | active`.
    state: AtomicU64,
    queued: AtomicUsize,
    peak: AtomicUsize,
    pub(crate) rejected: AtomicU64,
    pub(crate) waited: AtomicU64,
    pub(crate) wait_nanos: AtomicU64,
}

impl Slots {
    pub(crate) fn new(max: usize, max_queue: usize) -> Self {
        Self {
            max: AtomicUsize::new(max),
            max_queue,
            state: AtomicU64::new(0),
            queued: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
            rejected: AtomicU64::new(0),
            waited: AtomicU64::new(0),
            wait_nanos: AtomicU64::new(0),
        }
    }

    /// Takes a slot for a newly arrived call, unless others are already queued for one
    /// (arrivals do not overtake the queue). Returns the number now active.
    #[inline]
    pub(crate) fn try_acquire_fresh(&self) -> Option<usize> {
        if self.queued.load(Ordering::SeqCst) > 0 {
            return None;
        }
        self.try_acquire()
    }

    /// Takes a slot if one is free. Returns the number now active.
    #[inline]
    pub(crate) fn try_acquire(&self) -> Option<usize> {
        let max = self.max.load(Ordering::Relaxed) as u64;
        let mut state = self.state.load(Ordering::Relaxed);
        loop {
            if state & ACTIVE_MASK >= max {
                return None;
            }
            match self.state.compare_exchange_weak(
                state,
                state.wrapping_add(1 + ONE_ADMITTED),
                Ordering::SeqCst,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    let now = (state & ACTIVE_MASK) as usize + 1;
                    if now > self.peak.load(Ordering::Relaxed) {
                        self.peak.fetch_max(now, Ordering::Relaxed);
                    }
                    return Some(now);
                }
                Err(seen) => state = seen,
            }
        }
    }

    /// Gives a slot back. Returns true if a waiter should be woken.
    #[inline]
    pub(crate) fn release(&self) -> bool {
        // `active` is at least 1 here, so the subtraction never borrows from `admitted`.
        self.state.fetch_sub(1, Ordering::SeqCst);
        self.queued.load(Ordering::SeqCst) > 0
    }

    /// Joins the queue if it has room.
    pub(crate) fn try_enqueue(&self) -> bool {
        let mut queued = self.queued.load(Ordering::SeqCst);
        loop {
            if queued >= self.max_queue {
                return false;
            }
            match self.queued.compare_exchange_weak(
                queued,
                queued + 1,
                Ordering::SeqCst,
                Ordering::SeqCst,
            ) {
                Ok(_) => return true,
                Err(seen) => queued = seen,
            }
        }
    }

    /// Leaves the queue (served or timed out).
    pub(crate) fn dequeue(&self) {
        self.queued.fetch_sub(1, Ordering::SeqCst);
    }

    /// The concurrency limit now.
    pub(crate) fn max(&self) -> usize {
        self.max.load(Ordering::Relaxed)
    }

    /// Moves the concurrency limit. Calls running above a lowered limit finish
    /// normally; no new call is admitted until `active` is below the new limit.
    pub(crate) fn set_max(&self, max: usize) -> usize {
        self.max.swap(max.max(1), Ordering::SeqCst)
    }

    pub(crate) fn active(&self) -> usize {
        (self.state.load(Ordering::Relaxed) & ACTIVE_MASK) as usize
    }

    /// Calls admitted so far (modulo 2^43).
    pub(crate) fn admitted(&self) -> u64 {
        self.state.load(Ordering::Relaxed) >> ACTIVE_BITS
    }

    pub(crate) fn queued(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    pub(crate) fn peak(&self) -> usize {
        self.peak.load(Ordering::Relaxed)
    }
}

#[cfg(all(test, not(palisade_loom)))]
mod tests {
    use super::*;

    #[test]
    fn never_more_than_max_and_fresh_calls_do_not_overtake_the_queue() {
        let slots = Slots::new(2, 1);
        assert_eq!(slots.try_acquire_fresh(), Some(1));
        assert_eq!(slots.try_acquire_fresh(), Some(2));
        assert_eq!(slots.try_acquire_fresh(), None);
        assert!(slots.try_enqueue());
        assert!(!slots.try_enqueue(), "queue of one is full");
        assert!(slots.release(), "a waiter is there to wake");
        assert_eq!(slots.try_acquire_fresh(), None, "the waiter goes first");
        assert_eq!(slots.try_acquire(), Some(2));
        slots.dequeue();
        assert_eq!(slots.peak(), 2);
    }
}

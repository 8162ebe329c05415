//! Upstream writes held to the end of the event loop's turn while a worker is busy.
//!
//! A worker's event loop wakes with many client requests ready at once. Written the
//! moment each is parsed, every request to an upstream is a `send` that may wake the
//! upstream's process: on a shared core the scheduler often switches to it at once, it
//! answers that one request, sleeps, and the proxy is switched back in for the next
//! request — a context switch pair per request, and each side's caches cooled by the
//! other's (bench/proxy's pinned layout shows it; docs/BENCHMARKS.md has the figures).
//! HAProxy's event loop, likewise, reads every ready connection before it writes to any
//! server.
//!
//! So, while the worker has other requests in flight, a request yields once before it
//! enters its upstream's policies (`forward`: after the refusals that need no upstream,
//! before the timeouts, retries and the write, so that the yield re-polls as little as
//! possible): the event loop reads and parses the rest of the turn's requests first, and
//! the writes leave together; the upstream wakes once for the batch. The yield costs far
//! less than the switches it saves. A lone request (in flight alone on its worker)
//! writes at once: holding it would only add a turn of the event loop to its latency.
//! A request that arrives alone while others are in flight (say, slow ones) pays that
//! turn: the yield, one `epoll_wait` that does not block, and the re-poll.
//!
//! The count is per worker thread: each worker runs its own event loop (see `serve`).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

thread_local! {
    /// Requests in flight on this thread's event loop.
    static IN_FLIGHT: Arc<AtomicUsize> = Arc::new(AtomicUsize::new(0));
}

/// A request in flight on the worker that started it, counted until it is dropped.
///
/// It holds its worker's counter, so that it gives back to the right one even when a
/// multi-threaded runtime (the demo's) drops it on another thread.
#[derive(Debug)]
pub(crate) struct InFlight {
    counter: Arc<AtomicUsize>,
}

impl InFlight {
    /// Counts a request on the calling thread's worker.
    pub(crate) fn enter() -> Self {
        let counter = IN_FLIGHT.with(Arc::clone);
        counter.fetch_add(1, Ordering::Relaxed);
        Self { counter }
    }

    /// Other requests are in flight on this request's worker.
    fn has_company(&self) -> bool {
        self.counter.load(Ordering::Relaxed) > 1
    }

    /// Waits, when other requests are in flight, until the event loop has served the
    /// rest of its turn; at once otherwise.
    pub(crate) async fn before_upstream_write(&self) {
        if self.has_company() {
            tokio::task::yield_now().await;
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.counter.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_requests_in_flight_per_thread() {
        let first = InFlight::enter();
        assert!(!first.has_company(), "alone on this thread");
        let second = InFlight::enter();
        assert!(first.has_company() && second.has_company());
        // Another thread's worker has its own count.
        std::thread::spawn(|| assert!(!InFlight::enter().has_company()))
            .join()
            .expect("other thread");
        drop(second);
        assert!(!first.has_company());
    }

    #[test]
    fn a_request_dropped_on_another_thread_gives_back_to_its_own_worker() {
        let first = InFlight::enter();
        let second = InFlight::enter();
        std::thread::spawn(move || drop(second))
            .join()
            .expect("other thread");
        assert!(!first.has_company());
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_lone_request_does_not_yield_and_a_busy_one_yields_once() {
        use std::sync::atomic::AtomicBool;
        let lone = InFlight::enter();
        // Polled once, a lone request's wait is already over.
        let mut wait = std::pin::pin!(lone.before_upstream_write());
        assert!(futures_ready(wait.as_mut()));

        let other = InFlight::enter();
        let ran = Arc::new(AtomicBool::new(false));
        let flag = ran.clone();
        let sibling = tokio::spawn(async move { flag.store(true, Ordering::Relaxed) });
        // With company, the wait lets the sibling task run first.
        lone.before_upstream_write().await;
        assert!(
            ran.load(Ordering::Relaxed),
            "the other task ran before the write"
        );
        sibling.await.expect("sibling");
        drop(other);
    }

    /// Polls `future` once with a no-op waker: whether it finished.
    fn futures_ready<F: std::future::Future>(future: std::pin::Pin<&mut F>) -> bool {
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        future.poll(&mut cx).is_ready()
    }
}

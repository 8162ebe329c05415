//! Bulkhead: cap the calls running at once against one dependency.
//!
//! A [`Bulkhead`] admits at most `max_concurrent` calls; up to `max_queue` more wait for
//! a slot, each for at most `queue_timeout`, in arrival order. A call that finds the
//! queue full is rejected **at once** with [`Error::BulkheadFull`] — it never waits out a
//! queue timeout it could not have used. The slot is held by a permit until the call's
//! future completes or is dropped.
//!
//! A bulkhead with room admits with one compare-and-swap and releases with one atomic
//! subtraction and one load; the waiter list is only touched when someone waits.
//!
//! For blocking code, [`BlockingBulkhead`] runs closures on its own bounded thread pool;
//! a blocking call that the caller stopped waiting for keeps its slot until it really
//! returns, so the pool is never oversubscribed.
//!
//! ```
//! use std::time::Duration;
//! use palisade::{Error, Policy, policy::bulkhead::Bulkhead};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let bulkhead = Bulkhead::builder().name("db").max_concurrent(1).queue(0, Duration::ZERO).build().unwrap();
//! let held = bulkhead.try_acquire().unwrap();
//! let refused = bulkhead.call(|| async { Ok::<_, std::io::Error>(()) }).await;
//! assert!(matches!(refused, Err(Error::BulkheadFull { active: 1, max: 1, .. })));
//! drop(held);
//! assert!(bulkhead.call(|| async { Ok::<_, std::io::Error>(()) }).await.is_ok());
//! # }
//! ```

mod blocking;
mod config;
mod layer;
mod registry;
mod slots;

pub use blocking::BlockingBulkhead;
pub use config::{BulkheadBuilder, BulkheadConfig};
pub use layer::{BulkheadLayer, BulkheadService};
pub use registry::BulkheadRegistry;

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::Notify;

use crate::clock::{Clock, duration_to_nanos};
use crate::events::{Emitter, Event, names};
use crate::outcome::Classify;
use crate::policy::Policy;
use crate::sync::Ordering;
use crate::{Error, Name};
use slots::Slots;

/// A bulkhead; clones share the slots. See the [module docs](self).
#[derive(Clone)]
pub struct Bulkhead {
    shared: Arc<Shared>,
}

pub(crate) struct Shared {
    name: Name,
    slots: Slots,
    queue_timeout: Duration,
    wakeups: Notify,
    clock: Clock,
    emitter: Emitter,
    active_gauge: metrics::Gauge,
    queued_gauge: metrics::Gauge,
    rejected_counter: metrics::Counter,
    wait_histogram: metrics::Histogram,
}

/// A bulkhead's counters at one moment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BulkheadSnapshot {
    /// The bulkhead's name.
    pub name: String,
    /// Calls running now.
    pub active: usize,
    /// Calls waiting now.
    pub queued: usize,
    /// Most calls ever running at once.
    pub peak: usize,
    /// The concurrency limit.
    pub max_concurrent: usize,
    /// The queue limit.
    pub max_queue: usize,
    /// Calls admitted so far.
    pub accepted: u64,
    /// Calls rejected so far.
    pub rejected: u64,
    /// Calls that had to wait before running.
    pub waited: u64,
    /// Total time those calls waited.
    #[serde(with = "humantime_serde")]
    pub total_wait: Duration,
}

/// A slot in a [`Bulkhead`], released when dropped.
#[must_use = "the slot is released when the permit is dropped"]
pub struct BulkheadPermit<'a> {
    shared: &'a Shared,
}

/// A slot in a [`Bulkhead`] that owns a handle to it, released when dropped.
#[must_use = "the slot is released when the permit is dropped"]
pub struct OwnedBulkheadPermit {
    shared: Arc<Shared>,
}

/// Why a call got no slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The queue was full (or there is none).
    QueueFull,
    /// The call waited `queue_timeout` in the queue.
    WaitedTooLong,
}

// === impl Bulkhead ===

impl Bulkhead {
    /// A builder; see [`BulkheadConfig`] for the defaults.
    pub fn builder() -> BulkheadBuilder {
        BulkheadBuilder::default()
    }

    pub(super) fn from_builder(builder: BulkheadBuilder) -> Self {
        let config = builder.config;
        let name: Name = config.name.as_str().into();
        let label = name.to_string();
        Self {
            shared: Arc::new(Shared {
                slots: Slots::new(config.max_concurrent, config.max_queue),
                queue_timeout: config.queue_timeout,
                wakeups: Notify::new(),
                clock: builder.clock.unwrap_or_default(),
                emitter: Emitter::new(builder.listener),
                active_gauge: metrics::gauge!(names::BULKHEAD_ACTIVE, "policy" => label.clone()),
                queued_gauge: metrics::gauge!(names::BULKHEAD_QUEUED, "policy" => label.clone()),
                rejected_counter: metrics::counter!(names::BULKHEAD_REJECTED_TOTAL, "policy" => label.clone()),
                wait_histogram: metrics::histogram!(names::BULKHEAD_WAIT_SECONDS, "policy" => label),
                name,
            }),
        }
    }

    /// The bulkhead's name.
    pub fn name(&self) -> &Name {
        &self.shared.name
    }

    /// A slot now, with the number of calls running once it is taken.
    #[inline]
    pub(crate) fn try_acquire_counted(&self) -> Option<(BulkheadPermit<'_>, usize)> {
        let active = self.shared.try_acquire_fresh()?;
        Some((
            BulkheadPermit {
                shared: &self.shared,
            },
            active,
        ))
    }

    /// A slot now, if one is free and nobody is queued for one.
    #[inline]
    pub fn try_acquire(&self) -> Option<BulkheadPermit<'_>> {
        self.shared.try_acquire_fresh()?;
        Some(BulkheadPermit {
            shared: &self.shared,
        })
    }

    /// A slot, waiting in the queue if needed; `Err(BulkheadFull)` if the queue is full
    /// (at once) or the wait timed out.
    pub async fn acquire<E>(&self) -> Result<BulkheadPermit<'_>, Error<E>> {
        self.shared
            .acquire()
            .await
            .map_err(|r| self.shared.refused(r))?;
        Ok(BulkheadPermit {
            shared: &self.shared,
        })
    }

    /// Like [`acquire`](Self::acquire), with a permit that owns a handle.
    pub async fn acquire_owned<E>(&self) -> Result<OwnedBulkheadPermit, Error<E>> {
        self.shared
            .acquire()
            .await
            .map_err(|r| self.shared.refused(r))?;
        Ok(OwnedBulkheadPermit {
            shared: self.shared.clone(),
        })
    }

    /// Like [`try_acquire`](Self::try_acquire), with a permit that owns a handle.
    #[inline]
    pub fn try_acquire_owned(&self) -> Option<OwnedBulkheadPermit> {
        self.shared.try_acquire_fresh()?;
        Some(OwnedBulkheadPermit {
            shared: self.shared.clone(),
        })
    }

    /// The counters now.
    pub fn snapshot(&self) -> BulkheadSnapshot {
        self.shared.snapshot()
    }

    /// Calls running now.
    pub fn active(&self) -> usize {
        self.shared.slots.active()
    }

    /// The queue's length limit.
    pub fn max_queue(&self) -> usize {
        self.shared.slots.max_queue
    }

    /// The concurrency limit now.
    pub fn max_concurrent(&self) -> usize {
        self.shared.slots.max()
    }

    /// Moves the concurrency limit (at least 1) at run time, waking queued calls when it
    /// rises. Calls already running above a lowered limit finish normally.
    pub fn set_max_concurrent(&self, max: usize) {
        let before = self.shared.slots.set_max(max);
        if max > before && self.shared.slots.queued() > 0 {
            for _ in before..max.min(before + self.shared.slots.queued()) {
                self.shared.wakeups.notify_one();
            }
        }
    }
}

impl<T, E> Policy<T, E> for Bulkhead
where
    T: Send,
    E: Send + fmt::Debug,
{
    async fn execute<C, F, Fut>(&self, _classifier: &C, operation: F) -> Result<T, Error<E>>
    where
        C: Classify<T, E> + ?Sized,
        F: Fn() -> Fut + Send + Sync,
        Fut: Future<Output = Result<T, Error<E>>> + Send,
    {
        let _permit = match self.try_acquire() {
            Some(permit) => permit,
            None => self.acquire().await?,
        };
        operation().await
    }
}

impl fmt::Debug for Bulkhead {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bulkhead")
            .field("name", &self.shared.name)
            .field("active", &self.shared.slots.active())
            .field("max", &self.shared.slots.max())
            .finish()
    }
}

// === impl Shared ===

impl Shared {
    /// A slot now, counted; the number of calls running once it is taken.
    #[inline]
    fn try_acquire_fresh(&self) -> Option<usize> {
        let active = self.slots.try_acquire_fresh()?;
        self.admitted();
        Some(active)
    }

    /// Counts an admitted call in the active gauge. The gauges move by increments and
    /// decrements only: a value read from the slots and then set could be overtaken by
    /// another thread's (two admissions setting 2 then 1), and gauges shared by name, as
    /// an old and a new bulkhead's are across a reload, would overwrite each other.
    #[inline]
    fn admitted(&self) {
        self.active_gauge.increment(1.0);
    }

    #[inline]
    fn release(&self) {
        let wake = self.slots.release();
        self.active_gauge.decrement(1.0);
        if wake {
            self.wakeups.notify_one();
        }
    }

    /// Fast path, then the queue.
    pub(crate) async fn acquire(&self) -> Result<(), Refusal> {
        if self.try_acquire_fresh().is_some() {
            return Ok(());
        }
        self.wait_in_queue().await
    }

    #[cold]
    async fn wait_in_queue(&self) -> Result<(), Refusal> {
        if !self.slots.try_enqueue() {
            return Err(Refusal::QueueFull);
        }
        let _leave = Dequeue(self);
        self.queued_gauge.increment(1.0);
        let started = self.clock.now();
        let timeout = tokio::time::sleep(self.queue_timeout);
        tokio::pin!(timeout);
        loop {
            let notified = self.wakeups.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.slots.try_acquire().is_some() {
                self.admitted();
                let waited = self.clock.elapsed_since(started);
                self.slots.waited.fetch_add(1, Ordering::Relaxed);
                self.slots
                    .wait_nanos
                    .fetch_add(duration_to_nanos(waited), Ordering::Relaxed);
                self.wait_histogram.record(waited.as_secs_f64());
                return Ok(());
            }
            tokio::select! {
                biased;
                () = &mut notified => {}
                () = &mut timeout => return Err(Refusal::WaitedTooLong),
            }
        }
    }

    #[cold]
    pub(crate) fn refused<E>(&self, refusal: Refusal) -> Error<E> {
        self.slots.rejected.fetch_add(1, Ordering::Relaxed);
        self.rejected_counter.increment(1);
        if self.emitter.is_listening() {
            self.emitter.emit(Event::BulkheadRejected {
                snapshot: self.snapshot(),
                after_waiting: refusal == Refusal::WaitedTooLong,
            });
        }
        Error::BulkheadFull {
            name: self.name.clone(),
            active: self.slots.active(),
            max: self.slots.max(),
        }
    }

    fn snapshot(&self) -> BulkheadSnapshot {
        BulkheadSnapshot {
            name: self.name.to_string(),
            active: self.slots.active(),
            queued: self.slots.queued(),
            peak: self.slots.peak(),
            max_concurrent: self.slots.max(),
            max_queue: self.slots.max_queue,
            accepted: self.slots.admitted(),
            rejected: self.slots.rejected.load(Ordering::Relaxed),
            waited: self.slots.waited.load(Ordering::Relaxed),
            total_wait: std::time::Duration::from_nanos(
                self.slots.wait_nanos.load(Ordering::Relaxed),
            ),
        }
    }
}

/// Leaves the queue when the waiting call is served, times out or is dropped.
struct Dequeue<'a>(&'a Shared);

impl Drop for Dequeue<'_> {
    fn drop(&mut self) {
        self.0.slots.dequeue();
        self.0.queued_gauge.decrement(1.0);
    }
}

// === impl BulkheadPermit ===

impl Drop for BulkheadPermit<'_> {
    #[inline]
    fn drop(&mut self) {
        self.shared.release();
    }
}

impl Drop for OwnedBulkheadPermit {
    #[inline]
    fn drop(&mut self) {
        self.shared.release();
    }
}

impl fmt::Debug for BulkheadPermit<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BulkheadPermit")
            .field("bulkhead", &self.shared.name)
            .finish()
    }
}

impl fmt::Debug for OwnedBulkheadPermit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OwnedBulkheadPermit")
            .field("bulkhead", &self.shared.name)
            .finish()
    }
}

#[cfg(all(test, not(palisade_loom)))]
mod tests;

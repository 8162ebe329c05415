//! Criticality-aware load shedding: under overload, drop the least important work first
//! and keep queues short.
//!
//! A [`LoadShedder`] serves at most `max_concurrent` calls (a fixed number, an
//! [`AdaptiveConcurrency`] limiter's current limit, or a number read at each admission,
//! such as the sum of per-endpoint limits). Beyond that, calls wait in one queue
//! per [criticality](crate::criticality) class:
//!
//! * a freed slot is **handed** to the best waiter — the highest class, oldest first — so
//!   waiters never stampede for it;
//! * a newcomer finding the queue full **displaces** the newest waiter of a lower class,
//!   or is shed itself if there is none;
//! * **CoDel**: while a queue stands for a whole interval (or even its shortest delay
//!   exceeds `target`), the queue is congested and a newly queued *sheddable* call waits
//!   at most `target`; critical calls, and every call while the queue is healthy, wait at
//!   most `interval`. A standing queue cannot form;
//! * **adaptive LIFO**: while congested, the newest waiter of a sheddable class is served
//!   first — its caller is most likely still waiting, the oldest has probably given up.
//!   Critical classes stay oldest first: served before any sheddable call, their queue
//!   drains whenever their own load fits, and newest first would only let their oldest
//!   waiters time out.
//!
//! A shed call gets [`Error::Shed`]. The class is read from the call's context
//! ([`criticality::scope`]).
//!
//! ```
//! use palisade::{Error, Policy};
//! use palisade::criticality::{self, Criticality};
//! use palisade::policy::shed::{LoadShedder, ShedConfig};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let shedder = LoadShedder::new(ShedConfig { max_concurrent: 1, max_queue: 0, ..Default::default() }).unwrap();
//! let busy = shedder.try_acquire(Criticality::Critical).unwrap();
//! let r = criticality::scope(Criticality::Sheddable, shedder.call(|| async { Ok::<_, ()>(()) })).await;
//! assert!(matches!(r, Err(Error::Shed { .. })));
//! drop(busy);
//! # }
//! ```

mod config;
mod queue;

pub use config::{LoadShedderBuilder, ShedConfig};

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::clock::{Clock, Nanos, duration_to_nanos};
use crate::config::ConfigError;
use crate::criticality::{self, Criticality};
use crate::events::{Emitter, Event, Listener, names};
use crate::outcome::Classify;
use crate::policy::Policy;
use crate::policy::adaptive_concurrency::AdaptiveConcurrency;
use crate::{Error, Name};
use queue::Queues;

/// A criticality-aware load shedder; clones share the slots and queues.
#[derive(Clone)]
pub struct LoadShedder {
    shared: Arc<Shared>,
}

struct Shared {
    name: Name,
    capacity: Capacity,
    max_queue: usize,
    target: Nanos,
    interval: Nanos,
    lifo: bool,
    active: AtomicUsize,
    queued: AtomicUsize,
    queues: Mutex<Queues>,
    clock: Clock,
    emitter: Emitter,
    shed: [metrics::Counter; 4],
}

/// How many calls a shedder serves at once.
#[derive(Clone)]
pub(crate) enum Capacity {
    /// `max_concurrent`.
    Fixed(usize),
    /// An adaptive limiter's limit.
    Following(AdaptiveConcurrency),
    /// Read at each admission (at least 1).
    Computed(Arc<dyn Fn() -> usize + Send + Sync>),
}

/// A slot in a [`LoadShedder`], handed on (or freed) when dropped.
#[must_use = "the slot is released when the permit is dropped"]
pub struct ShedPermit<'a> {
    shared: &'a Shared,
}

impl LoadShedder {
    /// A shedder on tokio's clock.
    pub fn new(config: ShedConfig) -> Result<Self, ConfigError> {
        LoadShedderBuilder::from_config(config).build()
    }

    /// A builder from the default config.
    pub fn builder() -> LoadShedderBuilder {
        LoadShedderBuilder::default()
    }

    /// A shedder of `capacity` (when given) instead of `max_concurrent`.
    pub(crate) fn from_parts(
        config: ShedConfig,
        capacity: Option<Capacity>,
        clock: Clock,
        listener: Option<Listener>,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        let name: Name = config.name.as_str().into();
        let counter = |c: Criticality| metrics::counter!(names::SHED_TOTAL, "policy" => name.to_string(), "criticality" => c.as_str());
        Ok(Self {
            shared: Arc::new(Shared {
                shed: Criticality::ALL.map(counter),
                name,
                capacity: capacity.unwrap_or(Capacity::Fixed(config.max_concurrent)),
                max_queue: config.max_queue,
                target: duration_to_nanos(config.target),
                interval: duration_to_nanos(config.interval),
                lifo: config.adaptive_lifo,
                active: AtomicUsize::new(0),
                queued: AtomicUsize::new(0),
                queues: Mutex::new(Queues::new()),
                clock,
                emitter: Emitter::new(listener),
            }),
        })
    }

    /// Calls being served and waiting.
    pub fn load(&self) -> (usize, usize) {
        (
            self.shared.active.load(Ordering::Relaxed),
            self.shared.queued.load(Ordering::Relaxed),
        )
    }

    /// True while the queue is congested (CoDel).
    pub fn is_congested(&self) -> bool {
        self.shared.lock().congested
    }

    /// A slot now, if one is free and nobody waits.
    #[inline]
    pub fn try_acquire(&self, _class: Criticality) -> Option<ShedPermit<'_>> {
        let shared = &self.shared;
        (shared.queued.load(Ordering::SeqCst) == 0 && shared.try_take())
            .then(|| ShedPermit { shared })
    }

    /// A slot for a call of `class`: at once, after waiting, or `Err(Shed)`.
    pub async fn acquire<E>(&self, class: Criticality) -> Result<ShedPermit<'_>, Error<E>> {
        if let Some(permit) = self.try_acquire(class) {
            return Ok(permit);
        }
        self.shared.wait(class).await.map(|()| ShedPermit {
            shared: &self.shared,
        })
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Queues> {
        self.queues.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn capacity(&self) -> usize {
        match &self.capacity {
            Capacity::Fixed(max) => *max,
            Capacity::Following(limit) => limit.limit(),
            Capacity::Computed(capacity) => capacity().max(1),
        }
    }

    #[inline]
    fn try_take(&self) -> bool {
        let capacity = self.capacity();
        let mut active = self.active.load(Ordering::Relaxed);
        loop {
            if active >= capacity {
                return false;
            }
            match self.active.compare_exchange_weak(
                active,
                active + 1,
                Ordering::SeqCst,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(seen) => active = seen,
            }
        }
    }

    #[cold]
    async fn wait<E>(&self, class: Criticality) -> Result<(), Error<E>> {
        let (answer, mut handed) = tokio::sync::oneshot::channel();
        let (id, wait) = {
            let mut queues = self.lock();
            if queues.len() == 0 && self.try_take() {
                return Ok(());
            }
            if queues.len() >= self.max_queue {
                match queues.lowest_below(class) {
                    Some(lower) => {
                        if let Some(displaced) = queues.pop_newest(lower) {
                            self.queued.fetch_sub(1, Ordering::SeqCst);
                            let _ = displaced.answer.send(false);
                        }
                    }
                    None => return Err(self.shed(class)),
                }
            }
            if self.max_queue == 0 {
                return Err(self.shed(class));
            }
            let now = self.clock.now();
            queues.roll(now, self.target, self.interval);
            let id = queues.push(class, now, answer);
            self.queued.fetch_add(1, Ordering::SeqCst);
            // Congested: sheddable classes wait at most `target`; critical ones keep `interval`.
            let short = queues.congested && class < Criticality::Critical;
            (id, if short { self.target } else { self.interval })
        };
        // A slot may have been freed between the check above and joining the queue.
        self.dispatch();
        let timeout = tokio::time::sleep(std::time::Duration::from_nanos(wait));
        tokio::pin!(timeout);
        tokio::select! {
            given = &mut handed => match given {
                Ok(true) => Ok(()),
                _ => Err(self.shed(class)),
            },
            () = &mut timeout => {
                let mut queues = self.lock();
                if queues.remove(class, id) {
                    self.queued.fetch_sub(1, Ordering::SeqCst);
                    drop(queues);
                    return Err(self.shed(class));
                }
                drop(queues);
                // Handed a slot (or displaced) at the same moment; the answer is already sent.
                match handed.try_recv() {
                    Ok(true) => Ok(()),
                    _ => Err(self.shed(class)),
                }
            }
        }
    }

    /// Hands free slots to the best waiters.
    fn dispatch(&self) {
        while self.queued.load(Ordering::SeqCst) > 0 && self.try_take() {
            let mut queues = self.lock();
            let now = self.clock.now();
            match queues.pop_next(self.lifo) {
                Some(waiter) => {
                    self.queued.fetch_sub(1, Ordering::SeqCst);
                    queues.observe_delay(
                        now,
                        now.saturating_sub(waiter.since),
                        self.target,
                        self.interval,
                    );
                    // Sent under the lock, so a waiter timing out sees either its place in
                    // the queue or this answer, never neither.
                    if waiter.answer.send(true).is_err() {
                        self.active.fetch_sub(1, Ordering::SeqCst);
                    }
                }
                None => {
                    queues.drained(now);
                    self.active.fetch_sub(1, Ordering::SeqCst);
                    return;
                }
            }
        }
    }

    fn release(&self) {
        self.active.fetch_sub(1, Ordering::SeqCst);
        self.dispatch();
    }

    #[cold]
    fn shed<E>(&self, class: Criticality) -> Error<E> {
        self.shed[class.rank()].increment(1);
        if self.emitter.is_listening() {
            self.emitter.emit(Event::Shed {
                name: self.name.clone(),
                criticality: class,
            });
        }
        Error::Shed {
            name: self.name.clone(),
        }
    }
}

impl Drop for ShedPermit<'_> {
    fn drop(&mut self) {
        self.shared.release();
    }
}

impl<T, E> Policy<T, E> for LoadShedder
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
        let _permit = self.acquire(criticality::current()).await?;
        operation().await
    }
}

impl fmt::Debug for LoadShedder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (active, queued) = self.load();
        f.debug_struct("LoadShedder")
            .field("name", &self.shared.name)
            .field("active", &active)
            .field("queued", &queued)
            .finish()
    }
}

impl LoadShedder {
    /// This policy as a tower layer (through [`PolicyLayer`](crate::layer::PolicyLayer)),
    /// with the default classifier.
    pub fn layer(&self) -> crate::layer::PolicyLayer<Self, crate::DefaultClassifier> {
        self.layer_with(crate::DefaultClassifier)
    }

    /// This policy as a tower layer classifying responses with `classifier`.
    pub fn layer_with<C>(&self, classifier: C) -> crate::layer::PolicyLayer<Self, C> {
        crate::layer::PolicyLayer::new(self.clone(), classifier)
    }
}

#[cfg(all(test, not(palisade_loom)))]
mod tests;

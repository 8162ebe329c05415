//! A bulkhead for blocking closures, on its own bounded thread pool.

use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{Bulkhead, BulkheadBuilder, BulkheadConfig, BulkheadSnapshot, OwnedBulkheadPermit};
use crate::Error;
use crate::config::{ConfigError, in_range};

type Job = Box<dyn FnOnce() + Send>;

/// Runs blocking closures on `max_concurrent` dedicated threads, admitting them through a
/// [`Bulkhead`] (same queue and rejection rules).
///
/// The slot is released only when the closure returns: a caller that stops waiting
/// ([`call_timeout`](Self::call_timeout)) gets [`Error::Timeout`] at once, while the
/// closure keeps its thread and its slot until it really ends, so the pool never runs
/// more than `max_concurrent` closures. A panicking closure frees its slot and resumes
/// the panic in the caller.
///
/// ```
/// use palisade::policy::bulkhead::{BlockingBulkhead, BulkheadConfig};
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let pool = BlockingBulkhead::new(BulkheadConfig { max_concurrent: 2, ..Default::default() }).unwrap();
/// let sum = pool.call(|| Ok::<_, std::io::Error>((1..=10).sum::<u32>())).await.unwrap();
/// assert_eq!(sum, 55);
/// # }
/// ```
#[derive(Clone)]
pub struct BlockingBulkhead {
    bulkhead: Bulkhead,
    jobs: mpsc::Sender<Job>,
}

impl BlockingBulkhead {
    /// Validates `config` (at most 1,024 threads) and starts the threads.
    pub fn new(config: BulkheadConfig) -> Result<Self, ConfigError> {
        in_range("max_concurrent", config.max_concurrent, 1, 1024)?;
        let threads = config.max_concurrent;
        let name = config.name.clone();
        let bulkhead = BulkheadBuilder::from_config(config).build()?;
        let (jobs, receiver) = mpsc::channel::<Job>();
        let receiver = Arc::new(Mutex::new(receiver));
        for index in 0..threads {
            let receiver = receiver.clone();
            std::thread::Builder::new()
                .name(format!("palisade-{name}-{index}"))
                .spawn(move || work(&receiver))
                .map_err(|e| {
                    ConfigError::new(
                        "max_concurrent",
                        format!("could not start thread {index}: {e}"),
                        "a thread count the system can start",
                    )
                })?;
        }
        Ok(Self { bulkhead, jobs })
    }

    /// Runs `work` on the pool once a slot is free.
    pub async fn call<T, E, F>(&self, work: F) -> Result<T, Error<E>>
    where
        F: FnOnce() -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: Send + 'static,
    {
        let result = self.submit(work).await?;
        result.await_answer().await
    }

    /// Runs `work` on the pool, waiting at most `timeout` for its answer (queue time
    /// included). On timeout the closure keeps running, and keeps its slot, until done.
    pub async fn call_timeout<T, E, F>(&self, timeout: Duration, work: F) -> Result<T, Error<E>>
    where
        F: FnOnce() -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: Send + 'static,
    {
        let attempt = async {
            let pending = self.submit(work).await?;
            pending.await_answer().await
        };
        match tokio::time::timeout(timeout, attempt).await {
            Ok(result) => result,
            Err(_) => Err(Error::Timeout { after: timeout }),
        }
    }

    /// The bulkhead's counters.
    pub fn snapshot(&self) -> BulkheadSnapshot {
        self.bulkhead.snapshot()
    }

    /// The bulkhead admitting the closures.
    pub fn bulkhead(&self) -> &Bulkhead {
        &self.bulkhead
    }

    async fn submit<T, E, F>(&self, work: F) -> Result<Pending<T, E>, Error<E>>
    where
        F: FnOnce() -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: Send + 'static,
    {
        let permit: OwnedBulkheadPermit = self.bulkhead.acquire_owned().await?;
        let (answer, receiver) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let result = catch_unwind(AssertUnwindSafe(work));
            // The slot is free before the caller hears the answer.
            drop(permit);
            let _ = answer.send(result);
        });
        if self.jobs.send(job).is_err() {
            // Every worker thread is gone; nothing can run the closure.
            return Err(Error::Shed {
                name: self.bulkhead.name().clone(),
            });
        }
        Ok(Pending { receiver })
    }
}

struct Pending<T, E> {
    receiver: tokio::sync::oneshot::Receiver<std::thread::Result<Result<T, E>>>,
}

impl<T, E> Pending<T, E> {
    async fn await_answer(self) -> Result<T, Error<E>> {
        match self.receiver.await {
            Ok(Ok(result)) => result.map_err(Error::Inner),
            Ok(Err(panic)) => resume_unwind(panic),
            Err(_) => resume_unwind(Box::new("palisade: blocking worker vanished")),
        }
    }
}

fn work(receiver: &Mutex<mpsc::Receiver<Job>>) {
    loop {
        let job = {
            let guard = receiver
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            guard.recv()
        };
        match job {
            Ok(job) => job(),
            Err(_) => return, // the bulkhead was dropped
        }
    }
}

impl fmt::Debug for BlockingBulkhead {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlockingBulkhead")
            .field("bulkhead", &self.bulkhead)
            .finish()
    }
}

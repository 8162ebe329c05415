//! Hedging: when a call is slow, send one more attempt and take whichever answers well
//! first.
//!
//! A few slow answers (a GC pause, a cold cache, a busy replica) make a service's tail
//! latency; a second attempt sent after a short wait usually lands elsewhere and answers
//! at the usual speed ("The Tail at Scale", Dean and Barroso). A [`Hedge`]:
//!
//! 1. runs the operation;
//! 2. if it has not answered after the *hedge delay*, starts **one** more attempt;
//! 3. returns the first **good** answer — one the [classifier](crate::outcome) calls a
//!    success. If the first to finish is not good, it waits for the other; if neither
//!    is good, it returns the one that finished last;
//! 4. drops (cancels) the attempt still running.
//!
//! A call that fails before the delay is returned at once: hedging is for slowness,
//! retrying failures is the [`Retry`](crate::policy::retry::Retry)'s job.
//!
//! # The delay
//!
//! Fixed (`learn = false`), or learned: the `percentile` (default p95) of this policy's
//! own first attempts over the last `window`, once `min_samples` exist (the fixed
//! `delay` until then). The percentile comes from a lock-free
//! latency histogram (`window::LatencyWindow`) (within 1/32) and is recomputed at most once per
//! hundredth of the window. What is measured:
//!
//! * a first attempt that answers well: its latency;
//! * a first attempt cancelled because the hedge answered first: the hedge delay. All
//!   that is known is that it was slower than that, and this keeps the share of samples
//!   above the delay right. Measuring it at the time it had run instead (the delay plus
//!   the hedge's own latency) would feed the delay back into itself: with a fast mode and
//!   a rare very slow one — the tail hedging is for — the percentile sits on a plateau,
//!   and whenever slightly more than 5% of a window were slow the delay would creep up
//!   by one hedge latency per refresh, until hedging no longer helped. The bias of this
//!   choice is the other way (the delay may settle a little below the percentile when
//!   hedges nearly always win, i.e. hedging a little more), and extra load stays within
//!   the cap either way;
//! * failures, and calls that may not be hedged: nothing.
//!
//! # Only idempotent calls
//!
//! A hedge sends the same request twice. With `idempotent_only` (the default) a call is
//! hedged only when marked as safe to repeat:
//!
//! * `idempotent(future)` ([`idempotent`]) marks every call made while `future` runs (a
//!   tokio task-local, like the [deadline]), so the mark reaches a
//!   hedge deep inside a [`Pipeline`](crate::Pipeline) without changing any signature;
//!   [`Hedge::call_idempotent`] is the short form for one call;
//! * the tower layer may instead judge each request:
//!   [`HedgeLayer::idempotent_when`] takes a predicate such as "the method is GET".
//!
//! Unmarked calls pass through untouched and cost nothing.
//!
//! # Extra load is capped
//!
//! Every hedge-eligible call deposits into the policy's own cap — a
//! [`RetryBudget`] with `ratio = max_extra_load` (default 0.1) and no per-second floor —
//! and every hedge withdraws from it, so hedges add at most 10% to the calls of the last
//! `window`, even when the dependency slows down as a whole (when hedging cannot help).
//! A shared [`RetryBudget`] given to [`HedgeBuilder::budget`] is charged as well: hedges
//! and retries then share one allowance of extra load. The hedge only withdraws from a
//! shared budget; the [`Retry`](crate::policy::retry::Retry) sharing it deposits one
//! token per call. A hedge is also not started once the call's deadline has passed.
//!
//! Each hedge is counted in `palisade_hedges_total{policy}` and reported as
//! [`Event::Hedged`]; a hedge refused by the cap or the budget is counted in
//! `palisade_hedges_refused_total{policy}`.
//!
//! ```
//! use std::time::Duration;
//! use palisade::policy::hedge::Hedge;
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
//! let hedge = Hedge::builder().delay(Duration::from_millis(20)).learn(false).max_extra_load(1.0).build().unwrap();
//! let attempt = std::sync::atomic::AtomicU32::new(0);
//! let started = tokio::time::Instant::now();
//! let answer = hedge.call_idempotent(|| {
//!     let n = attempt.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
//!     async move {
//!         // The first attempt hangs; the hedge, sent after 20 ms, answers in 5 ms.
//!         tokio::time::sleep(Duration::from_secs(if n == 0 { 10 } else { 0 })).await;
//!         tokio::time::sleep(Duration::from_millis(5)).await;
//!         Ok::<_, std::io::Error>(n)
//!     }
//! }).await;
//! assert_eq!(answer.unwrap(), 1);
//! assert_eq!(started.elapsed(), Duration::from_millis(25));
//! # }
//! ```

mod config;
mod layer;

pub use config::{HedgeBuilder, HedgeConfig};
pub use layer::{HedgeLayer, HedgeService, Idempotency, Marked};

use std::fmt;
use std::future::{Future, poll_fn};
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::time::Sleep;

use crate::clock::{Clock, Nanos};
use crate::events::{Emitter, Event, Listener, names};
use crate::outcome::{Classify, classify_result};
use crate::policy::Policy;
use crate::policy::retry::RetryBudget;
use crate::window::PercentileTracker;
use crate::{Error, Name, deadline};

/// Sub-windows of the learned-latency window: it slides in sixths.
const SUB_WINDOWS: usize = 6;

tokio::task_local! {
    static IDEMPOTENT: ();
}

/// A future whose calls are marked idempotent; see [`idempotent`].
pub type Idempotent<F> = tokio::task::futures::TaskLocalFuture<(), F>;

/// Marks every call made while `future` runs as safe to repeat, so hedges with
/// `idempotent_only` may hedge them.
///
/// ```
/// use palisade::policy::hedge::{idempotent, is_idempotent};
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// assert!(!is_idempotent());
/// assert!(idempotent(async { is_idempotent() }).await);
/// # }
/// ```
pub fn idempotent<F: Future>(future: F) -> Idempotent<F> {
    IDEMPOTENT.scope((), future)
}

/// True inside [`idempotent`].
pub fn is_idempotent() -> bool {
    IDEMPOTENT.try_with(|_| ()).is_ok()
}

/// Sends one more attempt of a slow call; see the [module docs](self). Clones share the
/// learned latency, the cap and the counters.
#[derive(Clone)]
pub struct Hedge {
    shared: Arc<Shared>,
}

struct Shared {
    name: Name,
    delay: Duration,
    learned: Option<PercentileTracker>,
    idempotent_only: bool,
    cap: RetryBudget,
    budget: Option<RetryBudget>,
    clock: Clock,
    emitter: Emitter,
    hedges: metrics::Counter,
    refused: metrics::Counter,
}

// === impl Hedge ===

impl Hedge {
    /// A builder; see [`HedgeConfig`] for the defaults.
    pub fn builder() -> HedgeBuilder {
        HedgeBuilder::default()
    }

    pub(crate) fn from_parts(
        config: &HedgeConfig,
        cap: RetryBudget,
        budget: Option<RetryBudget>,
        clock: Clock,
        listener: Option<Listener>,
    ) -> Self {
        let name: Name = config.name.as_str().into();
        let learned = config.learn.then(|| {
            PercentileTracker::new(
                config.window,
                SUB_WINDOWS,
                config.percentile,
                u64::from(config.min_samples),
            )
        });
        Self {
            shared: Arc::new(Shared {
                hedges: metrics::counter!(names::HEDGES_TOTAL, "policy" => name.to_string()),
                refused: metrics::counter!(names::HEDGES_REFUSED_TOTAL, "policy" => name.to_string()),
                name,
                delay: config.delay,
                learned,
                idempotent_only: config.idempotent_only,
                cap,
                budget,
                clock,
                emitter: Emitter::new(listener),
            }),
        }
    }

    /// The policy's name.
    pub fn name(&self) -> &Name {
        &self.shared.name
    }

    /// The delay after which a call starting now would be hedged: the learned
    /// percentile once known, else the fixed delay.
    pub fn delay(&self) -> Duration {
        self.delay_at(self.shared.clock.now())
    }

    /// First-attempt latencies in the learning window (0 when not learning).
    pub fn samples(&self) -> u64 {
        self.shared
            .learned
            .as_ref()
            .map_or(0, |learned| learned.samples(self.shared.clock.now()))
    }

    /// The shared budget hedges are charged to, if any.
    pub fn budget(&self) -> Option<&RetryBudget> {
        self.shared.budget.as_ref()
    }

    /// Runs `operation` as an [`idempotent`] call: it may be hedged.
    pub async fn call_idempotent<T, E, F, Fut>(&self, operation: F) -> Result<T, Error<E>>
    where
        T: Send,
        E: Send + fmt::Debug,
        F: Fn() -> Fut + Send + Sync,
        Fut: Future<Output = Result<T, E>> + Send,
    {
        idempotent(Policy::<T, E>::call(self, operation)).await
    }

    fn delay_at(&self, now: Nanos) -> Duration {
        let shared = &self.shared;
        match &shared.learned {
            Some(learned) => learned.get(now).unwrap_or(shared.delay),
            None => shared.delay,
        }
    }

    /// Starts a call: `None` if it may not be hedged, else its hedge delay (the call is
    /// then counted towards the cap). `idempotent` is asked only if it matters.
    pub(crate) fn begin(&self, idempotent: impl FnOnce() -> bool) -> Option<Duration> {
        let shared = &self.shared;
        if shared.idempotent_only && !idempotent() {
            return None;
        }
        shared.cap.deposit();
        Some(self.delay_at(shared.clock.now()))
    }

    /// Whether a hedge may start now; charges the cap and the shared budget if so.
    fn admit(&self) -> bool {
        let shared = &self.shared;
        if deadline::is_exceeded() {
            return false;
        }
        // The own cap is checked first, so that a refusal there spends nothing shared.
        let granted = shared.cap.available() > 0
            && shared.budget.as_ref().is_none_or(RetryBudget::try_withdraw)
            && shared.cap.try_withdraw();
        if !granted {
            shared.refused.increment(1);
        }
        granted
    }

    /// Reports a hedge sent after `after`.
    fn launched(&self, after: Duration) {
        let shared = &self.shared;
        shared.hedges.increment(1);
        if shared.emitter.is_listening() {
            shared.emitter.emit(Event::Hedged {
                name: shared.name.clone(),
                after,
            });
        }
    }

    /// Measures a first attempt: its latency, or the delay if the hedge overtook it.
    fn measure(&self, latency: Duration) {
        if let Some(learned) = &self.shared.learned {
            learned.record(self.shared.clock.now(), latency);
        }
    }
}

impl<T, E> Policy<T, E> for Hedge
where
    T: Send,
    E: Send + fmt::Debug,
{
    async fn execute<C, F, Fut>(&self, classifier: &C, operation: F) -> Result<T, Error<E>>
    where
        C: Classify<T, E> + ?Sized,
        F: Fn() -> Fut + Send + Sync,
        Fut: Future<Output = Result<T, Error<E>>> + Send,
    {
        let Some(delay) = self.begin(is_idempotent) else {
            return operation().await;
        };
        let mut race = pin!(Race::new(self, operation(), Some(delay)));
        poll_fn(|cx| {
            race.as_mut().poll_race(
                cx,
                self,
                |result| classify_result(classifier, result).is_success(),
                |_| Poll::Ready(Some(operation())),
            )
        })
        .await
    }
}

impl fmt::Debug for Hedge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hedge")
            .field("name", &self.shared.name)
            .field("delay", &self.shared.delay)
            .field("learning", &self.shared.learned.is_some())
            .field("idempotent_only", &self.shared.idempotent_only)
            .finish()
    }
}

// === Race ===

pin_project! {
    /// One call's attempts: the first, a timer for the hedge, and the hedge.
    ///
    /// Shared by [`Hedge::execute`] and the tower future, which differ only in how an
    /// attempt is judged and how the second one is started (given to [`Race::poll_race`]).
    pub(crate) struct Race<F> {
        started: Nanos,
        delay: Duration,
        // The timer fired and the hedge was admitted; waiting for the launch.
        launching: bool,
        #[pin]
        timer: Option<Sleep>,
        #[pin]
        first: Option<F>,
        #[pin]
        second: Option<F>,
    }
}

impl<F: Future> Race<F> {
    /// Starts the race with the first attempt running; `delay` is `None` for a call
    /// that may not be hedged.
    pub(crate) fn new(hedge: &Hedge, first: F, delay: Option<Duration>) -> Self {
        Self {
            started: if delay.is_some() && hedge.shared.learned.is_some() {
                hedge.shared.clock.now()
            } else {
                0
            },
            delay: delay.unwrap_or_default(),
            launching: false,
            timer: delay.map(tokio::time::sleep),
            first: Some(first),
            second: None,
        }
    }

    /// Drives the attempts. `is_good` judges an answer; `launch` starts the hedge
    /// (`Ready(None)` if it cannot be started).
    pub(crate) fn poll_race(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        hedge: &Hedge,
        is_good: impl Fn(&F::Output) -> bool,
        mut launch: impl FnMut(&mut Context<'_>) -> Poll<Option<F>>,
    ) -> Poll<F::Output> {
        let mut this = self.project();
        loop {
            if let Some(first) = this.first.as_mut().as_pin_mut() {
                if let Poll::Ready(output) = first.poll(cx) {
                    this.first.set(None);
                    let good = is_good(&output);
                    if good {
                        hedge.measure(hedge.shared.clock.elapsed_since(*this.started));
                    }
                    if good || this.second.is_none() {
                        // Cancel the hedge, if any; never start one.
                        this.second.set(None);
                        this.timer.set(None);
                        return Poll::Ready(output);
                    }
                    // Not good, and the hedge is running: its answer decides.
                }
            }
            if let Some(second) = this.second.as_mut().as_pin_mut() {
                if let Poll::Ready(output) = second.poll(cx) {
                    this.second.set(None);
                    let good = is_good(&output);
                    if good || this.first.is_none() {
                        if good && this.first.is_some() {
                            // Overtaken: slower than the delay, at least.
                            hedge.measure(*this.delay);
                        }
                        this.first.set(None);
                        return Poll::Ready(output);
                    }
                    // Not good, and the first is still running: its answer decides.
                }
            }
            if let Some(timer) = this.timer.as_mut().as_pin_mut() {
                if timer.poll(cx).is_pending() {
                    return Poll::Pending;
                }
                this.timer.set(None);
                *this.launching = hedge.admit();
            }
            if *this.launching {
                match launch(cx) {
                    Poll::Ready(Some(second)) => {
                        *this.launching = false;
                        hedge.launched(*this.delay);
                        this.second.set(Some(second));
                        // Poll the hedge once, so that it registers its wake-up.
                        continue;
                    }
                    Poll::Ready(None) => *this.launching = false,
                    Poll::Pending => {}
                }
            }
            return Poll::Pending;
        }
    }
}

#[cfg(all(test, not(palisade_loom)))]
mod tests;

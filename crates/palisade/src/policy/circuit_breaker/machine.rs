//! The breaker's state machine: admission, recording and transitions.
//!
//! The closed state's path is lock-free: admission is one atomic load, recording is the
//! window's atomics. Everything else — tripping, entering and leaving half-open, forced
//! states — happens under a mutex, re-checking the state word's generation so that of
//! many threads seeing the same threshold crossed exactly one makes the transition.

use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::config::{BreakerMode, CircuitBreakerConfig};
use super::state::{CircuitState, Word};
use super::window::{FailureWindow, Thresholds};
use crate::Name;
use crate::clock::{Clock, Nanos, duration_to_nanos};
use crate::events::{Emitter, Event, names};
use crate::outcome::{Health, Outcome};
use crate::sync::{AtomicU64, Mutex, Ordering, lock};

/// What kind of call a permit admitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Admission {
    /// A call in the closed state: its outcome goes to the window.
    Tracked,
    /// A half-open probe: its outcome decides the next state.
    Probe,
    /// A call whose outcome is not recorded (forced closed, disabled, metrics-only
    /// calls that would have been rejected).
    Untracked,
}

/// Why a call was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rejected {
    /// The breaker's state when it refused.
    pub state: CircuitState,
    /// When a call may be admitted again, if known.
    pub retry_after: Option<Duration>,
}

pub(crate) struct Shared {
    pub(crate) name: Name,
    pub(crate) clock: Clock,
    pub(crate) mode: BreakerMode,
    pub(crate) slow_call: Option<Nanos>,
    thresholds: Thresholds,
    open_for: Duration,
    max_open_for: Duration,
    open_backoff: f64,
    open_jitter: f64,
    half_open_calls: u32,
    half_open_concurrency: u32,
    half_open_successes: u32,
    max_half_open: Nanos,
    word: AtomicU64,
    open_until: AtomicU64,
    /// When the current state was entered (clock nanoseconds).
    entered_at: AtomicU64,
    window: FailureWindow,
    control: Mutex<Control>,
    emitter: Emitter,
    gauge: metrics::Gauge,
    rejected: metrics::Counter,
    pub(crate) changed: std::sync::Arc<tokio::sync::Notify>,
}

/// State touched only under the mutex.
struct Control {
    /// Trips since the breaker last closed.
    consecutive_trips: u32,
    /// Probes failed or unanswered in a row since the breaker last closed or a probe
    /// last succeeded: what the open time grows with (see `open_duration`).
    failed_probes: u32,
    /// Some probe succeeded since the breaker last closed: the dependency serves, at
    /// least in part, so the open time no longer grows.
    probe_served: bool,
    half_open: HalfOpen,
    rng: SmallRng,
}

/// One half-open period's probes.
#[derive(Default, Clone, Copy)]
struct HalfOpen {
    /// Probes admitted this period (a cancelled or ignored probe gives its slot back).
    admitted: u32,
    /// Probes admitted and not yet answered.
    in_flight: u32,
    /// Probes that succeeded this period.
    successes: u32,
    /// While probes are in flight: when the wait for an answer began (the first probe's
    /// admission, or the last answer since). `None` when no probe is outstanding: a quiet
    /// half-open state waits for traffic as long as it takes, so sparse successful
    /// probes close it.
    waiting_since: Option<Nanos>,
}

impl HalfOpen {
    /// The instant outstanding probes count as failed, if any are outstanding.
    fn deadline(&self, max_half_open: Nanos) -> Option<Nanos> {
        self.waiting_since
            .map(|since| since.saturating_add(max_half_open))
    }

    /// Notes a probe admitted at `now`; true if it is the only one outstanding.
    fn admit(&mut self, now: Nanos) -> bool {
        self.admitted += 1;
        self.in_flight += 1;
        if self.waiting_since.is_none() {
            self.waiting_since = Some(now);
            return true;
        }
        false
    }

    /// Notes that a probe answered at `now`: the wait for the others, if any, starts
    /// again.
    fn answered(&mut self, now: Nanos) {
        self.in_flight = self.in_flight.saturating_sub(1);
        self.waiting_since = (self.in_flight > 0).then_some(now);
    }

    /// Notes that a probe was cancelled: its slot is free again, and the wait for the
    /// others, if any, goes on (a cancellation says nothing about the dependency).
    fn withdrawn(&mut self) {
        self.admitted = self.admitted.saturating_sub(1);
        self.in_flight = self.in_flight.saturating_sub(1);
        if self.in_flight == 0 {
            self.waiting_since = None;
        }
    }
}

// === impl Shared ===

impl Shared {
    pub(crate) fn new(config: &CircuitBreakerConfig, clock: Clock, emitter: Emitter) -> Self {
        let name: Name = config.name.as_str().into();
        let initial = match config.mode {
            BreakerMode::Disabled => CircuitState::Disabled,
            _ => CircuitState::Closed,
        };
        let rng = match config.seed {
            Some(seed) => SmallRng::seed_from_u64(seed),
            None => SmallRng::from_os_rng(),
        };
        let built_at = clock.now();
        let gauge = metrics::gauge!(names::CIRCUIT_STATE, "policy" => name.to_string());
        gauge.set(initial.gauge());
        Self {
            rejected: metrics::counter!(names::CIRCUIT_REJECTED_TOTAL, "policy" => name.to_string()),
            gauge,
            name,
            clock,
            mode: config.mode,
            slow_call: config.slow_call_duration.map(duration_to_nanos),
            thresholds: Thresholds {
                failure_rate: config.failure_rate,
                slow_call_rate: config.slow_call_rate,
                minimum_calls: config.minimum_calls,
                consecutive: config.size,
            },
            open_for: config.open_for,
            max_open_for: config.max_open_for,
            open_backoff: config.open_backoff,
            open_jitter: config.open_jitter,
            half_open_calls: config.half_open_calls,
            half_open_concurrency: config.half_open_concurrency,
            half_open_successes: config.half_open_successes.unwrap_or(config.half_open_calls),
            max_half_open: duration_to_nanos(config.max_half_open),
            word: AtomicU64::new(Word::new(initial, 0).0),
            open_until: AtomicU64::new(0),
            entered_at: AtomicU64::new(built_at),
            window: FailureWindow::new(config),
            control: Mutex::new(Control {
                consecutive_trips: 0,
                failed_probes: 0,
                probe_served: false,
                half_open: HalfOpen::default(),
                rng,
            }),
            emitter,
            changed: std::sync::Arc::new(tokio::sync::Notify::new()),
        }
    }

    #[inline]
    pub(crate) fn word(&self) -> Word {
        Word(self.word.load(Ordering::Acquire))
    }

    pub(crate) fn open_until(&self) -> Nanos {
        self.open_until.load(Ordering::Acquire)
    }

    /// Whether admitted calls must note their start time.
    #[inline(always)]
    pub(crate) fn times_calls(&self) -> bool {
        self.slow_call.is_some()
    }

    // --- admission ---

    /// Admits a call or says why not. The closed path takes no lock.
    #[inline]
    pub(crate) fn admit(&self) -> Result<(Admission, u64), Rejected> {
        let word = self.word();
        match word.state() {
            CircuitState::Closed => Ok((Admission::Tracked, word.generation())),
            CircuitState::ForcedClosed | CircuitState::Disabled => {
                Ok((Admission::Untracked, word.generation()))
            }
            _ => self.admit_slow(word),
        }
    }

    #[cold]
    fn admit_slow(&self, word: Word) -> Result<(Admission, u64), Rejected> {
        let verdict = match word.state() {
            CircuitState::Open => {
                let now = self.clock.now();
                let until = self.open_until();
                if now < until {
                    Err(Rejected {
                        state: CircuitState::Open,
                        retry_after: Some(Duration::from_nanos(until - now)),
                    })
                } else {
                    self.admit_probe(now)
                }
            }
            CircuitState::HalfOpen => self.admit_probe(self.clock.now()),
            CircuitState::ForcedOpen => Err(Rejected {
                state: CircuitState::ForcedOpen,
                retry_after: None,
            }),
            _ => Ok((Admission::Untracked, word.generation())),
        };
        match verdict {
            Err(rejected) => {
                self.note_rejection(rejected);
                if self.mode == BreakerMode::MetricsOnly {
                    Ok((Admission::Untracked, word.generation()))
                } else {
                    Err(rejected)
                }
            }
            admitted => admitted,
        }
    }

    /// Under the lock: enters half-open if the open time is over, then admits a probe
    /// if the half-open caps allow.
    fn admit_probe(&self, now: Nanos) -> Result<(Admission, u64), Rejected> {
        let mut control = lock(&self.control);
        let mut word = self.word();
        if word.state() == CircuitState::Open {
            let until = self.open_until();
            if now < until {
                return Err(Rejected {
                    state: CircuitState::Open,
                    retry_after: Some(Duration::from_nanos(until - now)),
                });
            }
            control.half_open = HalfOpen::default();
            word = self.transition(word, CircuitState::HalfOpen);
        }
        if word.state() != CircuitState::HalfOpen {
            // Someone else moved the breaker on (closed it, forced it) meanwhile.
            drop(control);
            return match word.state() {
                CircuitState::Closed => Ok((Admission::Tracked, word.generation())),
                CircuitState::ForcedOpen | CircuitState::Open => Err(Rejected {
                    state: word.state(),
                    retry_after: None,
                }),
                _ => Ok((Admission::Untracked, word.generation())),
            };
        }
        let half = &mut control.half_open;
        let deadline = half.deadline(self.max_half_open);
        if deadline.is_some_and(|deadline| now >= deadline) {
            // Probes went unanswered for too long: treat them as failed.
            control.failed_probes = control.failed_probes.saturating_add(1);
            let until = self.reopen(&mut control, word, now);
            return Err(Rejected {
                state: CircuitState::Open,
                retry_after: Some(Duration::from_nanos(until.saturating_sub(now))),
            });
        }
        if half.admitted < self.half_open_calls && half.in_flight < self.half_open_concurrency {
            if half.admit(now) {
                // The timer (if any) must now watch for this probe's answer.
                self.changed.notify_waiters();
            }
            return Ok((Admission::Probe, word.generation()));
        }
        // Full: a slot frees when a probe answers, or when the outstanding ones time out.
        let wait = deadline
            .map_or(self.open_for, |deadline| {
                Duration::from_nanos(deadline - now)
            })
            .min(self.open_for);
        Err(Rejected {
            state: CircuitState::HalfOpen,
            retry_after: Some(wait),
        })
    }

    /// The refusal `admit` would give now for certain, found without admitting: held
    /// open, or open with its open time not over. Moves no state; `count` notes the
    /// refusal as `admit` would. `None` when a call might be admitted (closed, half-open,
    /// open with its time up, metrics-only): `admit` decides those.
    pub(crate) fn refusal(&self, count: bool) -> Option<Rejected> {
        if self.mode == BreakerMode::MetricsOnly {
            return None;
        }
        let rejected = match self.word().state() {
            CircuitState::ForcedOpen => Rejected {
                state: CircuitState::ForcedOpen,
                retry_after: None,
            },
            CircuitState::Open => {
                let now = self.clock.now();
                let until = self.open_until();
                if now >= until {
                    return None;
                }
                Rejected {
                    state: CircuitState::Open,
                    retry_after: Some(Duration::from_nanos(until - now)),
                }
            }
            _ => return None,
        };
        if count {
            self.note_rejection(rejected);
        }
        Some(rejected)
    }

    #[cold]
    fn note_rejection(&self, rejected: Rejected) {
        self.rejected.increment(1);
        if self.emitter.is_listening() {
            self.emitter.emit(Event::CircuitRejected {
                name: self.name.clone(),
                state: rejected.state,
            });
        }
    }

    // --- recording ---

    /// Records the outcome of a call admitted as `admission` in `generation`.
    #[inline]
    pub(crate) fn record(
        &self,
        admission: Admission,
        generation: u64,
        outcome: &Outcome,
        elapsed: Nanos,
    ) {
        let slow = self.slow_call.is_some_and(|limit| elapsed >= limit);
        match admission {
            Admission::Untracked => {}
            Admission::Tracked => self.record_tracked(generation, outcome.health, slow),
            Admission::Probe => self.record_probe(generation, outcome.health, slow),
        }
    }

    #[inline]
    fn record_tracked(&self, generation: u64, health: Health, slow: bool) {
        let failed = match health {
            Health::Success => false,
            Health::Failure => true,
            Health::Ignored => return,
        };
        let word = self.word();
        if word.generation() != generation || word.state() != CircuitState::Closed {
            return;
        }
        if self
            .window
            .record(failed, slow, &self.clock, &self.thresholds)
        {
            self.trip(generation);
        }
    }

    #[cold]
    fn trip(&self, generation: u64) {
        let mut control = lock(&self.control);
        let word = self.word();
        if word.generation() != generation || word.state() != CircuitState::Closed {
            return; // another thread tripped it first
        }
        let now = self.clock.now();
        self.reopen(&mut control, word, now);
    }

    fn record_probe(&self, generation: u64, health: Health, slow: bool) {
        let mut control = lock(&self.control);
        let word = self.word();
        if word.generation() != generation || word.state() != CircuitState::HalfOpen {
            return;
        }
        let now = self.clock.now();
        let half = &mut control.half_open;
        half.answered(now);
        match (health, slow) {
            (Health::Failure, _) | (Health::Success, true) => {
                control.failed_probes = control.failed_probes.saturating_add(1);
                self.reopen(&mut control, word, now);
            }
            (Health::Success, false) => {
                half.successes += 1;
                let closes = half.successes >= self.half_open_successes;
                control.failed_probes = 0;
                control.probe_served = true;
                if closes {
                    control.consecutive_trips = 0;
                    control.probe_served = false;
                    self.window.clear();
                    self.transition(word, CircuitState::Closed);
                }
            }
            (Health::Ignored, _) => {
                // Says nothing: give the probe slot back.
                half.admitted = half.admitted.saturating_sub(1);
            }
        }
    }

    /// A probe was dropped before it finished: give its slot back.
    pub(crate) fn release_probe(&self, generation: u64) {
        let mut control = lock(&self.control);
        let word = self.word();
        if word.generation() == generation && word.state() == CircuitState::HalfOpen {
            control.half_open.withdrawn();
        }
    }

    // --- transitions ---

    /// Opens the breaker (from closed or half-open) for the next backed-off duration.
    /// Returns the end of the open time.
    fn reopen(&self, control: &mut Control, word: Word, now: Nanos) -> Nanos {
        control.consecutive_trips = control.consecutive_trips.saturating_add(1);
        let wait = self.open_duration(control);
        let until = now.saturating_add(duration_to_nanos(wait));
        self.open_until.store(until, Ordering::Release);
        self.transition(word, CircuitState::Open);
        until
    }

    /// `open_for × backoff^n`, capped, then spread by ± jitter, where `n` counts each
    /// `half_open_calls` probes failed in a row — so the open time grows only while
    /// failures go on:
    /// - a period's verdict rests on its first failed probe, so one failed period is one
    ///   sample; the open time grows once as many probes have failed in a row as a period
    ///   admits (with `half_open_calls = 1`, every failed period);
    /// - once any probe has succeeded since the breaker last closed, the dependency serves
    ///   at least in part (recovering, or a gray failure): every open time until it closes
    ///   is `open_for`, so it is let back within `open_for` of its recovery;
    /// - a close starts over.
    fn open_duration(&self, control: &mut Control) -> Duration {
        let exponent = if control.probe_served {
            0
        } else {
            (control.failed_probes / self.half_open_calls.max(1)).min(1000) as i32
        };
        let base = self.open_for.as_secs_f64() * self.open_backoff.powi(exponent);
        let capped = base.min(self.max_open_for.as_secs_f64());
        let spread = if self.open_jitter > 0.0 {
            let factor: f64 = control.rng.random_range(-1.0..=1.0);
            capped * self.open_jitter * factor
        } else {
            0.0
        };
        Duration::try_from_secs_f64((capped + spread).max(0.0)).unwrap_or(self.max_open_for)
    }

    /// Publishes `to`, reports it, and wakes the state timer. Call under the lock.
    fn transition(&self, from: Word, to: CircuitState) -> Word {
        let next = from.next(to);
        self.entered_at.store(self.clock.now(), Ordering::Relaxed);
        self.word.store(next.0, Ordering::Release);
        self.gauge.set(to.gauge());
        metrics::counter!(
            names::CIRCUIT_TRANSITIONS_TOTAL,
            "policy" => self.name.to_string(),
            "from" => from.state().as_str(),
            "to" => to.as_str()
        )
        .increment(1);
        self.emitter.emit(Event::CircuitStateChanged {
            name: self.name.clone(),
            from: from.state(),
            to,
        });
        self.changed.notify_waiters();
        next
    }

    /// Moves to `state` by an operator's or the timer's decision.
    pub(crate) fn force(&self, state: CircuitState) {
        let mut control = lock(&self.control);
        let word = self.word();
        if word.state() == state {
            return;
        }
        if state == CircuitState::Closed {
            control.consecutive_trips = 0;
            control.failed_probes = 0;
            control.probe_served = false;
            self.window.clear();
        }
        if state == CircuitState::HalfOpen {
            control.half_open = HalfOpen::default();
        }
        self.transition(word, state);
    }

    /// Ends an open state's time now, so the next call is a probe; no other state
    /// changes.
    pub(crate) fn end_open_time(&self) {
        let _control = lock(&self.control);
        if self.word().state() == CircuitState::Open {
            self.open_until.store(self.clock.now(), Ordering::Release);
            self.changed.notify_waiters();
        }
    }

    /// For the timer: moves an expired open state to half-open, and a half-open state
    /// whose probes went unanswered for `max_half_open` back to open. Returns when to
    /// look again, if ever (a transition or an admitted probe wakes the timer as well).
    pub(crate) fn tick(&self) -> Option<Nanos> {
        let now = self.clock.now();
        let mut control = lock(&self.control);
        let word = self.word();
        match word.state() {
            CircuitState::Open => {
                let until = self.open_until();
                if now < until {
                    return Some(until);
                }
                control.half_open = HalfOpen::default();
                self.transition(word, CircuitState::HalfOpen);
                None
            }
            CircuitState::HalfOpen => {
                // Nothing to watch until a probe is admitted (which wakes the timer).
                let deadline = control.half_open.deadline(self.max_half_open)?;
                if now < deadline {
                    return Some(deadline);
                }
                control.failed_probes = control.failed_probes.saturating_add(1);
                Some(self.reopen(&mut control, word, now))
            }
            _ => None,
        }
    }

    pub(crate) fn window_counts(&self) -> crate::window::Counts {
        self.window.counts(&self.clock)
    }

    /// How long the breaker has been in its current state.
    pub(crate) fn time_in_state(&self) -> Duration {
        self.clock
            .elapsed_since(self.entered_at.load(Ordering::Relaxed))
    }

    pub(crate) fn consecutive_trips(&self) -> u32 {
        lock(&self.control).consecutive_trips
    }

    pub(crate) fn window_needs_time(&self) -> bool {
        self.window.needs_time()
    }
}

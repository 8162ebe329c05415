//! Permission to make one call through a breaker, and the duty to report its outcome.
//!
//! A permit that is dropped without [`record`](Permit::record) — the call was cancelled —
//! reports nothing, and gives a half-open probe slot back so that a cancelled probe
//! cannot wedge the breaker.

use std::sync::Arc;

use super::CircuitBreaker;
use super::machine::{Admission, Shared};
use crate::clock::Nanos;
use crate::outcome::Outcome;

/// What every permit carries.
#[derive(Debug)]
struct Ticket {
    admission: Admission,
    generation: u64,
    started: Nanos,
    done: bool,
}

/// A call admitted by a [`CircuitBreaker`], borrowing it.
#[must_use = "a permit reports the call's outcome with `record`"]
#[derive(Debug)]
pub struct Permit<'a> {
    breaker: &'a Shared,
    ticket: Ticket,
}

/// A call admitted by a [`CircuitBreaker`], owning a handle to it (for futures that
/// outlive the borrow, such as tower responses).
#[must_use = "a permit reports the call's outcome with `record`"]
#[derive(Debug)]
pub struct OwnedPermit {
    breaker: Arc<Shared>,
    ticket: Ticket,
}

// === impl Ticket ===

impl Ticket {
    #[inline]
    fn new(breaker: &Shared, admission: Admission, generation: u64) -> Self {
        let started = if breaker.times_calls() && admission != Admission::Untracked {
            breaker.clock.now()
        } else {
            0
        };
        Self {
            admission,
            generation,
            started,
            done: false,
        }
    }

    #[inline]
    fn record(&mut self, breaker: &Shared, outcome: &Outcome) {
        self.done = true;
        let elapsed = if breaker.times_calls() {
            breaker.clock.now().saturating_sub(self.started)
        } else {
            0
        };
        breaker.record(self.admission, self.generation, outcome, elapsed);
    }

    #[cold]
    fn abandon(&mut self, breaker: &Shared) {
        if !self.done && self.admission == Admission::Probe {
            breaker.release_probe(self.generation);
        }
        self.done = true;
    }
}

// === impl Permit ===

impl<'a> Permit<'a> {
    #[inline]
    pub(super) fn new(breaker: &'a Shared, admission: Admission, generation: u64) -> Self {
        let ticket = Ticket::new(breaker, admission, generation);
        Self { breaker, ticket }
    }

    /// Reports how the call went.
    #[inline]
    pub fn record(mut self, outcome: &Outcome) {
        self.ticket.record(self.breaker, outcome);
    }

    /// True if this call is a half-open probe.
    pub fn is_probe(&self) -> bool {
        self.ticket.admission == Admission::Probe
    }
}

impl Drop for Permit<'_> {
    #[inline]
    fn drop(&mut self) {
        if !self.ticket.done {
            self.ticket.abandon(self.breaker);
        }
    }
}

// === impl OwnedPermit ===

impl OwnedPermit {
    pub(super) fn new(breaker: &CircuitBreaker, admission: Admission, generation: u64) -> Self {
        let ticket = Ticket::new(&breaker.shared, admission, generation);
        Self {
            breaker: breaker.shared.clone(),
            ticket,
        }
    }

    /// Reports how the call went.
    #[inline]
    pub fn record(mut self, outcome: &Outcome) {
        self.ticket.record(&self.breaker, outcome);
    }

    /// True if this call is a half-open probe.
    pub fn is_probe(&self) -> bool {
        self.ticket.admission == Admission::Probe
    }
}

impl Drop for OwnedPermit {
    fn drop(&mut self) {
        if !self.ticket.done {
            self.ticket.abandon(&self.breaker);
        }
    }
}

//! Property test: the circuit breaker against a small reference model.
//!
//! Random sequences of calls (succeeding, failing, ignored; finished at once or held in
//! flight and finished later, or dropped) and clock advances drive both the real breaker
//! and a plain, obviously-correct model written with a `VecDeque`. After every step the
//! two must agree on the state and on every admission decision.

#![cfg(not(palisade_loom))]

use std::collections::VecDeque;
use std::time::Duration;

use palisade::clock::Clock;
use palisade::outcome::Outcome;
use palisade::policy::circuit_breaker::{CircuitBreaker, CircuitState, Permit};
use proptest::prelude::*;

const SIZE: usize = 6;
const MIN_CALLS: usize = 3;
const RATE: f64 = 0.5;
const OPEN_MS: u64 = 1000;
const MAX_OPEN_MS: u64 = 8000;
const HALF_OPEN_CALLS: u32 = 3;
const HALF_OPEN_CONCURRENCY: u32 = 2;
const HALF_OPEN_SUCCESSES: u32 = 2;
const MAX_HALF_OPEN_MS: u64 = 5000;

#[derive(Clone, Copy, Debug)]
enum Kind {
    Success,
    Failure,
    Ignored,
}

#[derive(Clone, Debug)]
enum Op {
    Advance(u64),
    Call(Kind),
    Hold,
    Finish(usize, Kind),
    Drop(usize),
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![3 => Just(Kind::Success), 3 => Just(Kind::Failure), 1 => Just(Kind::Ignored)]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => (0u64..2500).prop_map(Op::Advance),
        6 => kind().prop_map(Op::Call),
        1 => Just(Op::Hold),
        2 => (0usize..4, kind()).prop_map(|(i, k)| Op::Finish(i, k)),
        1 => (0usize..4).prop_map(Op::Drop),
    ]
}

fn outcome(kind: Kind) -> Outcome {
    match kind {
        Kind::Success => Outcome::success(),
        Kind::Failure => Outcome::failure(),
        Kind::Ignored => Outcome::ignored(),
    }
}

// === the model ===

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Admitted {
    Tracked,
    Probe,
}

#[derive(Debug)]
struct Model {
    state: CircuitState,
    generation: u64,
    /// Probes failed or unanswered in a row since the last close or success.
    failed_probes: u32,
    /// A probe succeeded since the last close.
    probe_served: bool,
    window: VecDeque<bool>,
    open_until: u64,
    /// While probes are outstanding: since when no probe has answered.
    waiting_since: Option<u64>,
    admitted: u32,
    in_flight: u32,
    successes: u32,
}

impl Model {
    fn new() -> Self {
        Self {
            state: CircuitState::Closed,
            generation: 0,
            failed_probes: 0,
            probe_served: false,
            window: VecDeque::new(),
            open_until: 0,
            waiting_since: None,
            admitted: 0,
            in_flight: 0,
            successes: 0,
        }
    }

    fn admit(&mut self, now: u64) -> Option<(Admitted, u64)> {
        match self.state {
            CircuitState::Closed => return Some((Admitted::Tracked, self.generation)),
            CircuitState::Open if now < self.open_until => return None,
            CircuitState::Open => {
                self.state = CircuitState::HalfOpen;
                self.generation += 1;
                self.waiting_since = None;
                self.admitted = 0;
                self.in_flight = 0;
                self.successes = 0;
            }
            _ => {}
        }
        if self
            .waiting_since
            .is_some_and(|since| now >= since + MAX_HALF_OPEN_MS)
        {
            self.failed_probes += 1;
            self.reopen(now);
            return None;
        }
        if self.admitted < HALF_OPEN_CALLS && self.in_flight < HALF_OPEN_CONCURRENCY {
            self.admitted += 1;
            self.in_flight += 1;
            self.waiting_since.get_or_insert(now);
            return Some((Admitted::Probe, self.generation));
        }
        None
    }

    fn record(&mut self, admitted: Admitted, generation: u64, kind: Kind, now: u64) {
        if generation != self.generation {
            return;
        }
        match (admitted, self.state) {
            (Admitted::Tracked, CircuitState::Closed) => {
                let failed = match kind {
                    Kind::Ignored => return,
                    Kind::Failure => true,
                    Kind::Success => false,
                };
                self.window.push_back(failed);
                if self.window.len() > SIZE {
                    self.window.pop_front();
                }
                let failures = self.window.iter().filter(|f| **f).count();
                if self.window.len() >= MIN_CALLS
                    && failures as f64 / self.window.len() as f64 >= RATE
                {
                    self.reopen(now);
                }
            }
            (Admitted::Probe, CircuitState::HalfOpen) => {
                self.answered(now);
                match kind {
                    Kind::Failure => {
                        self.failed_probes += 1;
                        self.reopen(now)
                    }
                    Kind::Ignored => self.admitted -= 1,
                    Kind::Success => {
                        self.successes += 1;
                        self.failed_probes = 0;
                        self.probe_served = true;
                        if self.successes >= HALF_OPEN_SUCCESSES {
                            self.probe_served = false;
                            self.state = CircuitState::Closed;
                            self.generation += 1;
                            self.window.clear();
                        }
                    }
                }
            }
            _ => {}
        }
    }

    fn abandon(&mut self, admitted: Admitted, generation: u64) {
        if admitted == Admitted::Probe
            && generation == self.generation
            && self.state == CircuitState::HalfOpen
        {
            self.in_flight -= 1;
            self.admitted -= 1;
            if self.in_flight == 0 {
                self.waiting_since = None;
            }
        }
    }

    fn answered(&mut self, now: u64) {
        self.in_flight -= 1;
        self.waiting_since = (self.in_flight > 0).then_some(now);
    }

    fn reopen(&mut self, now: u64) {
        // Grows once per HALF_OPEN_CALLS probes failed in a row, and not at all once a
        // probe has succeeded since the last close.
        let exponent = if self.probe_served {
            0
        } else {
            self.failed_probes / HALF_OPEN_CALLS
        };
        let wait = (OPEN_MS << exponent.min(20)).min(MAX_OPEN_MS);
        self.open_until = now + wait;
        self.state = CircuitState::Open;
        self.generation += 1;
    }
}

fn real() -> (CircuitBreaker, palisade::clock::ManualClock) {
    let (clock, hand) = Clock::manual();
    let breaker = CircuitBreaker::builder()
        .count_window(SIZE as u32)
        .minimum_calls(MIN_CALLS as u32)
        .failure_rate(RATE)
        .open_for(
            Duration::from_millis(OPEN_MS),
            Duration::from_millis(MAX_OPEN_MS),
            2.0,
            0.0,
        )
        .half_open(HALF_OPEN_CALLS, HALF_OPEN_CONCURRENCY, HALF_OPEN_SUCCESSES)
        .max_half_open(Duration::from_millis(MAX_HALF_OPEN_MS))
        .clock(clock)
        .build()
        .unwrap();
    (breaker, hand)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn breaker_matches_the_reference_model(ops in proptest::collection::vec(op(), 1..120)) {
        let (breaker, hand) = real();
        let mut model = Model::new();
        let mut now = 0u64;
        let mut held: Vec<(Permit<'_>, (Admitted, u64))> = Vec::new();
        for op in ops {
            match op {
                Op::Advance(ms) => {
                    now += ms;
                    hand.advance(Duration::from_millis(ms));
                }
                Op::Call(kind) => {
                    let expected = model.admit(now);
                    let got = breaker.try_acquire();
                    prop_assert_eq!(got.is_ok(), expected.is_some(), "admission at {} ms", now);
                    if let (Ok(permit), Some((admitted, generation))) = (got, expected) {
                        prop_assert_eq!(permit.is_probe(), admitted == Admitted::Probe);
                        permit.record(&outcome(kind));
                        model.record(admitted, generation, kind, now);
                    }
                }
                Op::Hold => {
                    let expected = model.admit(now);
                    let got = breaker.try_acquire();
                    prop_assert_eq!(got.is_ok(), expected.is_some(), "admission at {} ms", now);
                    if let (Ok(permit), Some(ticket)) = (got, expected) {
                        held.push((permit, ticket));
                    }
                }
                Op::Finish(i, kind) if i < held.len() => {
                    let (permit, (admitted, generation)) = held.remove(i);
                    permit.record(&outcome(kind));
                    model.record(admitted, generation, kind, now);
                }
                Op::Drop(i) if i < held.len() => {
                    let (permit, (admitted, generation)) = held.remove(i);
                    drop(permit);
                    model.abandon(admitted, generation);
                }
                Op::Finish(..) | Op::Drop(..) => {}
            }
            prop_assert_eq!(breaker.state(), model.state, "after {} ms; model {:?}", now, model);
        }
    }
}

// === recovery under any traffic spacing ===

/// A breaker that tripped, then sees only successful calls at the given spacing (each
/// answered at once or after a delay), must close: half-open never reopens while its
/// probes answer, however sparse the traffic.
fn recovers(
    calls: u32,
    concurrency: u32,
    successes: u32,
    max_half_open_ms: u64,
    spacing: &[(u64, u64)],
) -> Result<(), TestCaseError> {
    let (clock, hand) = Clock::manual();
    let breaker = CircuitBreaker::builder()
        .consecutive_failures(1)
        .open_for(
            Duration::from_millis(OPEN_MS),
            Duration::from_millis(MAX_OPEN_MS),
            2.0,
            0.0,
        )
        .half_open(calls, concurrency, successes)
        .max_half_open(Duration::from_millis(max_half_open_ms))
        .clock(clock)
        .build()
        .unwrap();
    breaker.try_acquire().unwrap().record(&Outcome::failure());
    prop_assert_eq!(breaker.state(), CircuitState::Open);
    let mut probes = 0u32;
    for &(gap_ms, answer_ms) in spacing {
        hand.advance(Duration::from_millis(gap_ms));
        let Ok(permit) = breaker.try_acquire() else {
            prop_assert!(
                probes == 0,
                "a probe was refused after {} answered ones",
                probes
            );
            continue;
        };
        // An answer slower than max_half_open is an unanswered probe: keep within it.
        hand.advance(Duration::from_millis(answer_ms % max_half_open_ms));
        permit.record(&Outcome::success());
        probes += 1;
        if probes >= successes {
            prop_assert_eq!(breaker.state(), CircuitState::Closed);
            return Ok(());
        }
        prop_assert_eq!(breaker.state(), CircuitState::HalfOpen);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn successful_probes_close_the_breaker_at_any_spacing(
        (calls, concurrency, successes) in (1u32..6).prop_flat_map(|calls| (Just(calls), 1..=calls, 1..=calls)),
        max_half_open_ms in 1u64..60_000,
        spacing in proptest::collection::vec((0u64..600_000, 0u64..60_000), 1..40),
    ) {
        recovers(calls, concurrency, successes, max_half_open_ms, &spacing)?;
    }
}

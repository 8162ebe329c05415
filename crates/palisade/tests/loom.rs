//! Loom models of the lock-free parts: the breaker's state word and window, and the
//! bulkhead's permit accounting. Run with
//! `RUSTFLAGS="--cfg palisade_loom" cargo test -p palisade --test loom --release`.

#![cfg(palisade_loom)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use loom::thread;
use palisade::clock::Clock;
use palisade::events::Event;
use palisade::outcome::Outcome;
use palisade::policy::bulkhead::Bulkhead;
use palisade::policy::circuit_breaker::{CircuitBreaker, CircuitState};

fn breaker(failures: u32, trips: Arc<AtomicUsize>) -> CircuitBreaker {
    let (clock, _hand) = Clock::manual();
    CircuitBreaker::builder()
        .consecutive_failures(failures)
        .seed(1)
        .clock(clock)
        .on_event(move |e| {
            if matches!(
                e,
                Event::CircuitStateChanged {
                    to: CircuitState::Open,
                    ..
                }
            ) {
                trips.fetch_add(1, Ordering::SeqCst);
            }
        })
        .build()
        .unwrap()
}

/// Two threads cross the threshold at once: the breaker opens exactly once.
#[test]
fn concurrent_failures_trip_the_breaker_exactly_once() {
    loom::model(|| {
        let trips = Arc::new(AtomicUsize::new(0));
        let b = breaker(2, trips.clone());
        let handles: Vec<_> = (0..2)
            .map(|_| {
                let b = b.clone();
                thread::spawn(move || {
                    if let Ok(permit) = b.try_acquire() {
                        permit.record(&Outcome::failure());
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(b.state(), CircuitState::Open);
        assert_eq!(trips.load(Ordering::SeqCst), 1);
    });
}

/// A success racing a failure on a count window: the counters always equal the outcomes
/// kept, whatever the interleaving.
#[test]
fn racing_outcomes_keep_the_window_counts_consistent() {
    loom::model(|| {
        let (clock, _hand) = Clock::manual();
        let b = CircuitBreaker::builder()
            .count_window(2)
            .minimum_calls(2)
            .failure_rate(1.0)
            .clock(clock)
            .seed(1)
            .build()
            .unwrap();
        let threads: Vec<_> = [Outcome::failure(), Outcome::success()]
            .into_iter()
            .map(|outcome| {
                let b = b.clone();
                thread::spawn(move || b.try_acquire().unwrap().record(&outcome))
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let s = b.snapshot();
        assert_eq!((s.calls, s.failures), (2, 1));
        assert_eq!(b.state(), CircuitState::Closed);
    });
}

/// Acquire/release from three threads on a bulkhead of one: never two inside at once,
/// and every slot comes back.
#[test]
fn bulkhead_never_over_admits_and_never_leaks() {
    loom::model(|| {
        let bulkhead = Bulkhead::builder()
            .max_concurrent(1)
            .queue(0, std::time::Duration::ZERO)
            .build()
            .unwrap();
        let inside = Arc::new(loom::sync::atomic::AtomicUsize::new(0));
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let (bulkhead, inside) = (bulkhead.clone(), inside.clone());
                thread::spawn(move || {
                    if let Some(permit) = bulkhead.try_acquire() {
                        let was = inside.fetch_add(1, loom::sync::atomic::Ordering::SeqCst);
                        assert_eq!(was, 0, "two calls inside a bulkhead of one");
                        inside.fetch_sub(1, loom::sync::atomic::Ordering::SeqCst);
                        drop(permit);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let s = bulkhead.snapshot();
        assert_eq!(s.active, 0);
        assert!(s.accepted >= 1, "at least the first caller got in");
        assert!(bulkhead.try_acquire().is_some(), "the slot came back");
    });
}

/// The over-admission bug class: clones of an adaptive limiter share one count, so two
/// clones racing for a limit of one never both get in.
#[test]
fn adaptive_limiter_clones_never_over_admit() {
    use palisade::policy::adaptive_concurrency::{
        AdaptiveConcurrencyBuilder, AdaptiveConcurrencyConfig,
    };
    loom::model(|| {
        let (clock, _hand) = Clock::manual();
        let config = AdaptiveConcurrencyConfig {
            initial_limit: 1,
            ..Default::default()
        };
        let limiter = AdaptiveConcurrencyBuilder::from_config(config)
            .clock(clock)
            .build()
            .unwrap();
        let inside = Arc::new(loom::sync::atomic::AtomicUsize::new(0));
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let (limiter, inside) = (limiter.clone(), inside.clone());
                thread::spawn(move || {
                    if let Some(permit) = limiter.try_acquire() {
                        let was = inside.fetch_add(1, loom::sync::atomic::Ordering::SeqCst);
                        assert_eq!(was, 0, "two calls inside a limit of one");
                        inside.fetch_sub(1, loom::sync::atomic::Ordering::SeqCst);
                        drop(permit);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(limiter.in_flight(), 0, "every permit came back");
    });
}

/// A limit lowered while calls race for slots: no call is admitted at or above the limit
/// it saw, and every slot comes back.
#[test]
fn a_moving_limit_never_leaks_or_over_admits() {
    loom::model(|| {
        let bulkhead = Bulkhead::builder()
            .max_concurrent(2)
            .queue(0, std::time::Duration::ZERO)
            .build()
            .unwrap();
        let inside = Arc::new(loom::sync::atomic::AtomicUsize::new(0));
        let lower = {
            let bulkhead = bulkhead.clone();
            thread::spawn(move || bulkhead.set_max_concurrent(1))
        };
        let caller = {
            let (bulkhead, inside) = (bulkhead.clone(), inside.clone());
            thread::spawn(move || {
                if let Some(permit) = bulkhead.try_acquire() {
                    let was = inside.fetch_add(1, loom::sync::atomic::Ordering::SeqCst);
                    assert!(was < 2, "more calls inside than the highest limit");
                    inside.fetch_sub(1, loom::sync::atomic::Ordering::SeqCst);
                    drop(permit);
                }
            })
        };
        if let Some(permit) = bulkhead.try_acquire() {
            let was = inside.fetch_add(1, loom::sync::atomic::Ordering::SeqCst);
            assert!(was < 2);
            inside.fetch_sub(1, loom::sync::atomic::Ordering::SeqCst);
            drop(permit);
        }
        lower.join().unwrap();
        caller.join().unwrap();
        assert_eq!(bulkhead.snapshot().active, 0);
        assert_eq!(bulkhead.max_concurrent(), 1);
        let first = bulkhead.try_acquire();
        assert!(first.is_some());
        assert!(bulkhead.try_acquire().is_none(), "the lowered limit holds");
    });
}

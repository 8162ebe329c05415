//! The shedder's waiting room: one queue per criticality class, served highest class
//! first, oldest first (or newest first while congested), with CoDel's delay tracking.

use std::collections::VecDeque;

use tokio::sync::oneshot;

use crate::clock::Nanos;
use crate::criticality::Criticality;

/// One waiting call: told `true` when it is handed a slot, `false` when it is shed.
pub(super) struct Waiter {
    pub(super) id: u64,
    pub(super) since: Nanos,
    pub(super) answer: oneshot::Sender<bool>,
}

/// Per-class queues and CoDel's state.
pub(super) struct Queues {
    classes: [VecDeque<Waiter>; 4],
    len: usize,
    next_id: u64,
    /// Start of the current CoDel interval.
    interval_start: Nanos,
    /// Lowest queue delay seen in the current interval.
    interval_min: Option<Nanos>,
    /// Whether the queue emptied during the current interval.
    drained_in_interval: bool,
    /// True while the last interval's lowest delay exceeded the target.
    pub(super) congested: bool,
}

impl Queues {
    pub(super) fn new() -> Self {
        Self {
            classes: Default::default(),
            len: 0,
            next_id: 0,
            interval_start: 0,
            interval_min: None,
            // Empty from the start: no standing queue yet.
            drained_in_interval: true,
            congested: false,
        }
    }

    pub(super) fn len(&self) -> usize {
        self.len
    }

    pub(super) fn push(
        &mut self,
        class: Criticality,
        since: Nanos,
        answer: oneshot::Sender<bool>,
    ) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.classes[class.rank()].push_back(Waiter { id, since, answer });
        self.len += 1;
        id
    }

    /// Removes waiter `id` of `class`; false if it is no longer queued.
    pub(super) fn remove(&mut self, class: Criticality, id: u64) -> bool {
        let queue = &mut self.classes[class.rank()];
        match queue.iter().position(|w| w.id == id) {
            Some(at) => {
                queue.remove(at);
                self.taken();
                true
            }
            None => false,
        }
    }

    /// The lowest class with a waiter, if lower than `than`.
    pub(super) fn lowest_below(&self, than: Criticality) -> Option<Criticality> {
        Criticality::ALL
            .into_iter()
            .take_while(|c| *c < than)
            .find(|c| !self.classes[c.rank()].is_empty())
    }

    /// Takes the most recent waiter of `class` (to shed it).
    pub(super) fn pop_newest(&mut self, class: Criticality) -> Option<Waiter> {
        let waiter = self.classes[class.rank()].pop_back()?;
        self.taken();
        Some(waiter)
    }

    /// Takes the next waiter to serve: highest class first; oldest first, or, for the
    /// sheddable classes, newest first while congested and `lifo` is on.
    ///
    /// Critical classes stay oldest first: they are served before any sheddable call, so
    /// their queue drains whenever their own load fits the capacity, and newest first
    /// would only let their oldest waiters time out behind the newer ones.
    pub(super) fn pop_next(&mut self, lifo: bool) -> Option<Waiter> {
        let congested = self.congested;
        let (rank, queue) = self
            .classes
            .iter_mut()
            .enumerate()
            .rev()
            .find(|(_, q)| !q.is_empty())?;
        let newest_first = lifo && congested && rank < Criticality::Critical.rank();
        let waiter = if newest_first {
            queue.pop_back()
        } else {
            queue.pop_front()
        }?;
        self.taken();
        Some(waiter)
    }

    /// A waiter left the queue; if it was the last, the queue emptied this interval.
    fn taken(&mut self) {
        self.len -= 1;
        if self.len == 0 {
            self.drained_in_interval = true;
        }
    }

    /// CoDel: notes a queue delay (see [`roll`](Self::roll)).
    pub(super) fn observe_delay(
        &mut self,
        now: Nanos,
        delay: Nanos,
        target: Nanos,
        interval: Nanos,
    ) {
        self.interval_min = Some(self.interval_min.map_or(delay, |m| m.min(delay)));
        self.roll(now, target, interval);
    }

    /// CoDel: at the end of each interval, the queue is congested if a queue stood the
    /// whole interval (it never emptied) or even its lowest delay exceeded `target`.
    /// (With LIFO service the lowest delay alone would hide a standing queue: the newest
    /// waiter is served almost at once.) Called on every delay observed and before every
    /// waiter joins; an interval that saw no delay at all (a quiet queue) is never
    /// congested, so a verdict does not outlive the quiet after it.
    pub(super) fn roll(&mut self, now: Nanos, target: Nanos, interval: Nanos) {
        let elapsed = now.saturating_sub(self.interval_start);
        if elapsed < interval {
            return;
        }
        let quiet = elapsed >= interval.saturating_mul(2) && self.len == 0;
        self.congested =
            !quiet && (!self.drained_in_interval || self.interval_min.is_some_and(|m| m > target));
        self.interval_start = now;
        self.interval_min = None;
        self.drained_in_interval = self.len == 0;
    }

    /// The queue emptied: no standing queue in this interval.
    pub(super) fn drained(&mut self, _now: Nanos) {
        self.drained_in_interval = true;
    }
}

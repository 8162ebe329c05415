//! The rules about time and room: a timeout at all, a breaker's evidence, a concurrency
//! limit, its queue.

use std::time::Duration;

use palisade::policy::circuit_breaker::{BreakerMode, WindowKind};

use super::{Advice, At, Rule, human};
use crate::config::LimitScope;

/// The fewest calls a breaker should judge a failure rate on: below it, the three or
/// four failures of a blip (a deploy, a pause) reach its rate and open it.
pub const MIN_CALLS: u32 = 10;

/// The fewest failures in a row that should trip a `consecutive` breaker.
pub const MIN_CONSECUTIVE: u32 = 5;

/// The most rounds of its concurrency a queue should hold: a caller behind more waits
/// ten times the upstream's latency before it even starts.
pub const MAX_QUEUE_ROUNDS: usize = 10;

/// The limit rules' advice on one upstream.
pub(super) fn advise(at: &At<'_>) -> Vec<Advice> {
    let mut advice: Vec<Advice> = [no_timeout(at), blip(at), no_limit(at)]
        .into_iter()
        .flatten()
        .collect();
    advice.extend(long_queues(at));
    advice
}

fn no_timeout(at: &At<'_>) -> Option<Advice> {
    let set = ["total", "per_try", "adaptive"]
        .iter()
        .any(|k| at.has(&["timeout", k]));
    if set {
        return None;
    }
    let t = &at.upstream.timeout;
    Some(at.advice(
        Rule::NoTimeout,
        &["timeout"],
        format!(
            "no timeout is set, so the defaults apply: {} per attempt, {} in all, likely \
             far above this upstream's slowest healthy answer; a hung upstream holds each \
             request, and its slot, that long",
            human(t.per_try),
            human(t.total)
        ),
        "set [upstream.timeout] per_try a little above the upstream's p99.9 latency, and \
         total to what its callers wait (at least max_attempts × per_try + backoffs)",
    ))
}

fn blip(at: &At<'_>) -> Option<Advice> {
    let breaker = &at.policies.breaker;
    if breaker.mode == BreakerMode::Disabled {
        return None;
    }
    if breaker.window == WindowKind::Consecutive {
        return (breaker.size < MIN_CONSECUTIVE).then(|| {
            at.advice(
                Rule::BreakerTripsOnBlip,
                &["circuit_breaker", "size"],
                format!(
                    "a consecutive breaker tripping on {} failures in a row opens on a blip \
                     (a restart, a dropped connection)",
                    breaker.size
                ),
                format!("size = {MIN_CONSECUTIVE} or more, or a count window"),
            )
        });
    }
    if breaker.minimum_calls >= MIN_CALLS {
        return None;
    }
    let trips_after = (f64::from(breaker.minimum_calls) * breaker.failure_rate).ceil();
    Some(at.advice(
        Rule::BreakerTripsOnBlip,
        at.first_set(&[&["circuit_breaker", "minimum_calls"], &["circuit_breaker"]]),
        format!(
            "minimum_calls = {}: the breaker judges {} calls, so {trips_after} failures of a \
             blip open it",
            breaker.minimum_calls, breaker.minimum_calls
        ),
        format!("minimum_calls = {MIN_CALLS} or more (20 is the default)"),
    ))
}

fn no_limit(at: &At<'_>) -> Option<Advice> {
    let u = at.upstream;
    if u.bulkhead.is_some() || u.adaptive_concurrency.is_some() || u.load_shedding.is_some() {
        return None;
    }
    Some(at.advice(
        Rule::NoConcurrencyLimit,
        &["bulkhead"],
        "no bulkhead, adaptive_concurrency or load_shedding: when this upstream slows \
         down, its requests pile up without bound and take the connections, memory and \
         workers the other upstreams need",
        "add [upstream.bulkhead] with max_concurrent near what the upstream serves at once \
         (64 by default), or [upstream.adaptive_concurrency] to learn it",
    ))
}

/// A queue's bounds, where the file sets them.
struct Queue {
    section: &'static str,
    depth: usize,
    concurrency: usize,
    wait: Option<(Duration, &'static str)>,
}

fn long_queues(at: &At<'_>) -> Vec<Advice> {
    let u = at.upstream;
    let mut queues = Vec::new();
    if let Some(b) = &u.bulkhead {
        queues.push(Queue {
            section: "bulkhead",
            depth: b.max_queue,
            concurrency: b.max_concurrent,
            wait: (b.max_queue > 0).then_some((b.queue_timeout, "queue_timeout")),
        });
    }
    // Per endpoint, the limiters have no queue: requests wait in the shedder's.
    let adaptive = at.policies.adaptive.as_ref();
    if let Some(a) = adaptive
        .filter(|a| a.scope == LimitScope::Upstream)
        .map(|a| &a.config)
    {
        queues.push(Queue {
            section: "adaptive_concurrency",
            depth: a.max_queue,
            concurrency: usize::try_from(a.max_limit).unwrap_or(usize::MAX),
            wait: (a.max_queue > 0).then_some((a.queue_timeout, "queue_timeout")),
        });
    }
    if let Some(s) = &u.load_shedding {
        queues.push(Queue {
            section: "load_shedding",
            depth: s.max_queue,
            concurrency: s.max_concurrent,
            wait: (s.max_queue > 0).then_some((s.interval, "interval")),
        });
    }
    queues
        .iter()
        .flat_map(|q| [too_deep(at, q), too_slow(at, q)])
        .flatten()
        .collect()
}

fn too_deep(at: &At<'_>, q: &Queue) -> Option<Advice> {
    if q.depth <= q.concurrency.saturating_mul(MAX_QUEUE_ROUNDS) {
        return None;
    }
    let limit = if q.section == "adaptive_concurrency" {
        "max_limit"
    } else {
        "max_concurrent"
    };
    Some(at.advice(
        Rule::LongQueue,
        &[q.section, "max_queue"],
        format!(
            "max_queue = {} holds {} rounds of {limit} = {}: a caller at its end waits \
             that many upstream latencies before it starts, long after it gave up",
            q.depth,
            q.depth / q.concurrency.max(1),
            q.concurrency
        ),
        format!(
            "max_queue at most {MAX_QUEUE_ROUNDS} × {limit} ({}), or less: a full queue \
             answers at once, which callers can act on",
            q.concurrency.saturating_mul(MAX_QUEUE_ROUNDS)
        ),
    ))
}

fn too_slow(at: &At<'_>, q: &Queue) -> Option<Advice> {
    let (wait, key) = q.wait?;
    let total = at.upstream.timeout.total;
    if wait <= total {
        return None;
    }
    Some(at.advice(
        Rule::LongQueue,
        &[q.section, key],
        format!(
            "{key} = {} > total {}: a request may wait in the queue longer than its whole \
             timeout, which starts only when it leaves the queue",
            human(wait),
            human(total)
        ),
        format!(
            "{key} well below total ({}): a queue is for bursts",
            human(total)
        ),
    ))
}

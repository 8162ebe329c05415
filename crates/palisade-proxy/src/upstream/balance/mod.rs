//! Choosing an endpoint: power of two choices by peak-EWMA cost, round robin or random;
//! primaries first, backups only when no primary takes the request.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use palisade::Error;
use palisade::clock::{Clock, Nanos};
use palisade::outcome::{Health, Outcome};
use palisade::policy::adaptive_concurrency::OwnedLimitPermit;
use palisade::policy::circuit_breaker::{CircuitState, OwnedPermit};
use palisade_http::classify::{TransportError, TransportErrorKind};
use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use rand::{Rng, RngCore};
use smallvec::SmallVec;

use super::endpoint::Endpoint;

mod limits;
use crate::config::Balance;
pub(crate) use limits::EndpointLimits;

/// Candidates kept on the stack: groups this large or smaller never allocate to pick.
const INLINE_CANDIDATES: usize = 8;

/// Candidate endpoint indexes, in the order to try them.
type Candidates = SmallVec<[usize; INLINE_CANDIDATES]>;

/// The upstream's typical latency before any attempt succeeded: 1 ms, so new endpoints
/// get traffic.
const FIRST_TYPICAL_NANOS: f64 = 1_000_000.0;

/// A failed attempt costs its endpoint's estimate at least this many times the upstream's
/// typical latency: a failure costs the caller a retry or an error, so an endpoint that
/// fails fast (a gray failure answering 503 at once) never looks fastest.
const FAILURE_COST: f64 = 2.0;

/// The weight of each successful attempt's latency in the upstream's typical latency.
const TYPICAL_WEIGHT: f64 = 1.0 / 16.0;

/// An endpoint that agreed to take an attempt. It counts as in flight at the endpoint
/// until this is dropped, whether the attempt finished or was cancelled (a timeout, a
/// losing hedge, a client gone).
pub(crate) struct Picked {
    pub(crate) endpoint: Arc<Endpoint>,
    pub(crate) index: usize,
    pub(crate) permit: Option<OwnedPermit>,
    /// A place under the endpoint's adaptive limit, when it has one and had room.
    pub(crate) limit: Option<OwnedLimitPermit>,
}

impl Drop for Picked {
    fn drop(&mut self) {
        self.endpoint.end();
    }
}

/// The balancer of one upstream.
pub(crate) struct Balancer {
    pub(crate) name: Arc<str>,
    pub(crate) balance: Balance,
    pub(crate) primaries: Vec<Arc<Endpoint>>,
    pub(crate) backups: Vec<Arc<Endpoint>>,
    next: AtomicUsize,
    clock: Clock,
    /// The upstream's typical latency (f64 nanoseconds, as bits): a moving average of
    /// its successful attempts', what an idle endpoint is estimated at.
    typical: AtomicU64,
    /// How long a recovered endpoint's share of picks ramps up (zero: off).
    slow_start: Duration,
    /// A seeded generator for the random choices, for reproducible simulations; none:
    /// the thread's generator.
    seeded: Option<std::sync::Mutex<SmallRng>>,
}

impl Balancer {
    pub(crate) fn new(
        name: Arc<str>,
        balance: Balance,
        primaries: Vec<Arc<Endpoint>>,
        backups: Vec<Arc<Endpoint>>,
        clock: Clock,
    ) -> Self {
        Self {
            name,
            balance,
            primaries,
            backups,
            next: AtomicUsize::new(0),
            clock,
            typical: AtomicU64::new(FIRST_TYPICAL_NANOS.to_bits()),
            slow_start: Duration::ZERO,
            seeded: None,
        }
    }

    /// Makes the random choices from `seed`, so a simulation runs the same every time.
    #[cfg(test)]
    pub(crate) fn seed(&mut self, seed: u64) {
        use rand::SeedableRng;
        self.seeded = Some(std::sync::Mutex::new(SmallRng::seed_from_u64(seed)));
    }

    /// Runs `choose` with the balancer's generator: the seeded one, or the thread's.
    fn random<T>(&self, choose: impl FnOnce(&mut dyn RngCore) -> T) -> T {
        match &self.seeded {
            Some(rng) => choose(&mut *rng.lock().unwrap_or_else(|e| e.into_inner())),
            None => choose(&mut rand::rng()),
        }
    }

    /// Ramps a recovered endpoint's share of picks up over `window` (see [`weight`]).
    pub(crate) fn slow_start(mut self, window: Duration) -> Self {
        self.slow_start = window;
        self
    }

    /// The clock attempts are timed by (peak-EWMA latency).
    pub(crate) fn clock(&self) -> &Clock {
        &self.clock
    }

    /// An attempt on `picked` got its answer at `now`, after `took`, judged `outcome`: its
    /// breaker learns the outcome, its endpoint and the upstream the latency. A failure
    /// is observed as at least [`FAILURE_COST`] times the typical latency; a probe that
    /// closes the endpoint's breaker starts its estimate over, at the typical latency.
    pub(crate) fn finish(
        &self,
        picked: &mut Picked,
        now: Nanos,
        took: Duration,
        outcome: &Outcome,
    ) {
        let mut nanos = took.as_nanos() as f64;
        match outcome.health {
            Health::Failure => nanos = nanos.max(FAILURE_COST * self.typical_latency()),
            Health::Success => self.learn_typical(nanos),
            Health::Ignored => {}
        }
        picked.endpoint.observe(now, nanos);
        if let Some(limit) = picked.limit.take() {
            limit.record_round_trip(outcome, took);
        }
        if let Some(permit) = picked.permit.take() {
            let probe = permit.is_probe();
            permit.record(outcome);
            if probe && picked.endpoint.breaker_state() == CircuitState::Closed {
                // Its probes closed the breaker: what it cost while failing (timeouts
                // observed as latency) says nothing of it now.
                picked.endpoint.forget_latency();
            }
        }
    }

    /// The upstream's typical latency in nanoseconds (see [`FIRST_TYPICAL_NANOS`]).
    pub(crate) fn typical_latency(&self) -> f64 {
        f64::from_bits(self.typical.load(Ordering::Relaxed))
    }

    /// Moves the typical latency towards a successful attempt's. Concurrent updates may
    /// lose one another's sample: an average of many needs none in particular.
    fn learn_typical(&self, nanos: f64) {
        let typical = self.typical_latency();
        let next = typical + (nanos - typical) * TYPICAL_WEIGHT;
        self.typical.store(next.to_bits(), Ordering::Relaxed);
    }

    /// Every endpoint, primaries first; `index` in [`Picked`] refers to this order.
    pub(crate) fn all(&self) -> impl Iterator<Item = &Arc<Endpoint>> {
        self.primaries.iter().chain(self.backups.iter())
    }

    /// Picks an endpoint for an attempt, preferring ones not in `tried` (a bit per index).
    ///
    /// Endpoints whose breaker certainly refuses (ejected, its open time not over; held
    /// open) are not candidates: they are never offered, so they draw no picks from the
    /// endpoints that can serve. An endpoint waiting for a probe (open with its time over,
    /// or half-open) is offered first, so it returns as soon as it has recovered. When the
    /// chosen endpoint refuses all the same (its half-open probe slots are taken), the
    /// rest are tried in the balancer's order again (by load for p2c), never in list
    /// order.
    pub(crate) fn pick(&self, tried: u64) -> Result<Picked, Error<TransportError>> {
        let mut refused = Refused::default();
        for (group, offset) in [(&self.primaries, 0), (&self.backups, self.primaries.len())] {
            for avoid_tried in [true, false] {
                if !avoid_tried && tried == 0 {
                    // Nothing tried yet: the first pass already offered every endpoint.
                    continue;
                }
                let mut order = self.order(group, offset, tried, avoid_tried);
                for position in 0..order.len() {
                    let index = order[position];
                    let endpoint = &group[index - offset];
                    match endpoint.breaker.as_ref().map(|b| b.try_acquire_owned()) {
                        None => return Ok(self.picked(endpoint, index, None)),
                        Some(Ok(permit)) => return Ok(self.picked(endpoint, index, Some(permit))),
                        Some(Err(rejected)) => {
                            refused.note(rejected.retry_after);
                            if position == 0 {
                                self.reorder_rest(group, offset, &mut order[1..]);
                            }
                        }
                    }
                }
            }
        }
        // The endpoints left out for a certain refusal refuse this request too.
        self.note_certain_refusals(&mut refused);
        Err(self.refused(refused))
    }

    /// The error [`pick`](Self::pick) would give now for certain, found without picking:
    /// no endpoint can take a request, each unhealthy, held open, or open with its open
    /// time not over. Refusals are counted on the breakers `pick` would have asked.
    /// `None`: some endpoint might take it (`pick` decides, and counts).
    pub(crate) fn refusal(&self) -> Option<Error<TransportError>> {
        // Without counting first: an endpoint that might take the request ends it.
        if self.all().any(|e| e.is_healthy() && !certainly_refuses(e)) {
            return None;
        }
        let mut refused = Refused::default();
        self.note_certain_refusals(&mut refused);
        Some(self.refused(refused))
    }

    /// Notes, and counts on their breakers, the refusals of the healthy endpoints that
    /// certainly refuse (held open, or open with their open time not over): the ones
    /// `pick` leaves out.
    fn note_certain_refusals(&self, refused: &mut Refused) {
        for endpoint in self.all().filter(|e| e.is_healthy()) {
            if is_held_open(endpoint) {
                refused.note(None);
            } else if let Some(rejected) = endpoint.breaker.as_ref().and_then(|b| b.refuse_early())
            {
                refused.note(rejected.retry_after);
            }
        }
    }

    /// No endpoint took the request: a breaker's refusal if any refused (with the
    /// soonest time one may take a request again), else no healthy endpoint.
    fn refused(&self, refused: Refused) -> Error<TransportError> {
        if refused.any {
            return Error::CircuitOpen {
                name: self.name.clone(),
                retry_after: refused.soonest,
            };
        }
        Error::Inner(TransportError {
            kind: TransportErrorKind::NoHealthyEndpoint,
            message: format!("no healthy endpoint in upstream {}", self.name),
        })
    }

    fn picked(
        &self,
        endpoint: &Arc<Endpoint>,
        index: usize,
        permit: Option<OwnedPermit>,
    ) -> Picked {
        endpoint.start();
        Picked {
            endpoint: endpoint.clone(),
            index,
            permit,
            // Over its limit only when every candidate was full (see `order`).
            limit: endpoint.limit.as_ref().and_then(|l| l.try_acquire_owned()),
        }
    }

    /// Candidate indexes of `group` (global indexes: `offset` + position) in the order to
    /// try them; on the stack for groups of up to [`INLINE_CANDIDATES`] endpoints, since
    /// every attempt asks.
    fn order(
        &self,
        group: &[Arc<Endpoint>],
        offset: usize,
        tried: u64,
        avoid_tried: bool,
    ) -> Candidates {
        let mut candidates: Candidates = (0..group.len())
            .filter(|&i| is_offered(&group[i]))
            .map(|i| i + offset)
            .filter(|&i| !avoid_tried || i >= 64 || tried & (1 << i) == 0)
            .collect();
        if candidates.len() < 2 {
            return candidates;
        }
        if let Some(probing) = candidates
            .iter()
            .position(|&i| wants_probe(&group[i - offset]))
        {
            // Its recovery waits on a probe: offer it first, whatever its estimate (what
            // it cost while failing says nothing of it now). A probe that fails is tried
            // again elsewhere; one already out makes it refuse, and the rest are tried
            // by load.
            candidates.swap(0, probing);
            return candidates;
        }
        // Endpoints under their adaptive limit are chosen among first; the full ones
        // follow, for when the first choices refuse. (When every one is full, the
        // shedder in front admitted more than the limits add up to — a limit fell
        // meanwhile — and the request goes by load over a limit rather than be refused
        // after it waited.)
        let roomy = match candidates.iter().all(|&i| group[i - offset].has_room()) {
            true => candidates.len(),
            false => partition_roomy(&mut candidates, |i| group[i - offset].has_room()),
        };
        let choose = match roomy {
            0 => candidates.len(),
            n => n,
        };
        self.choose_first(group, offset, &mut candidates[..choose]);
        candidates
    }

    /// Puts the balancer's choice among `candidates` first.
    fn choose_first(&self, group: &[Arc<Endpoint>], offset: usize, candidates: &mut [usize]) {
        if candidates.len() < 2 {
            return;
        }
        match self.balance {
            Balance::RoundRobin => {
                let start = self.next.fetch_add(1, Ordering::Relaxed) % candidates.len();
                candidates.rotate_left(start);
            }
            Balance::Random => {
                let start = self.random(|rng| rng.random_range(0..candidates.len()));
                candidates.rotate_left(start);
            }
            Balance::P2c => {
                let (a, b) = self.random(|rng| {
                    let a = rng.random_range(0..candidates.len());
                    let b = rng.random_range(0..candidates.len() - 1);
                    (a, if b >= a { b + 1 } else { b })
                });
                let cost = |i: usize| self.cost(&group[candidates[i] - offset]);
                let first = if cost(a) <= cost(b) { a } else { b };
                candidates.swap(0, first);
            }
        }
    }

    /// Orders `rest` (global indexes into `group`, less `offset`) after the first choice
    /// refused: by load for p2c, shuffled for random; round robin keeps its rotation.
    #[cold]
    fn reorder_rest(&self, group: &[Arc<Endpoint>], offset: usize, rest: &mut [usize]) {
        match self.balance {
            Balance::RoundRobin => {}
            Balance::Random => self.random(|mut rng| rest.shuffle(&mut rng)),
            Balance::P2c => {
                let cost = |i: &usize| self.cost(&group[*i - offset]);
                rest.sort_by(|a, b| cost(a).total_cmp(&cost(b)));
            }
        }
    }
}

impl Balancer {
    /// An endpoint's cost to p2c: its load estimate, divided by its slow-start weight;
    /// infinite at its adaptive limit.
    fn cost(&self, endpoint: &Endpoint) -> f64 {
        if !endpoint.has_room() {
            return f64::INFINITY;
        }
        let cost = endpoint.cost(&self.clock, self.typical_latency());
        if self.slow_start.is_zero() {
            return cost;
        }
        cost / weight(endpoint, self.slow_start)
    }
}

/// Moves the candidates `roomy` says yes to first, keeping each side's order; how many.
fn partition_roomy(candidates: &mut Candidates, roomy: impl Fn(usize) -> bool) -> usize {
    let (mut yes, no): (Candidates, Candidates) =
        candidates.iter().copied().partition(|&i| roomy(i));
    let count = yes.len();
    yes.extend(no);
    *candidates = yes;
    count
}

/// An endpoint's share of picks while it ramps up after its breaker closed: from a tenth
/// to all of it, linearly over `window`; 1 otherwise, and without a breaker. (Endpoints
/// built together ramp together, which changes no choice between them.)
fn weight(endpoint: &Endpoint, window: Duration) -> f64 {
    const FLOOR: f64 = 0.1;
    let Some(breaker) = endpoint.breaker.as_ref() else {
        return 1.0;
    };
    if breaker.state() != CircuitState::Closed {
        return 1.0;
    }
    let ramped = breaker.time_in_state().as_secs_f64() / window.as_secs_f64();
    ramped.clamp(FLOOR, 1.0)
}

/// The refusals met while picking.
#[derive(Default)]
struct Refused {
    /// Some breaker refused.
    any: bool,
    /// The soonest time one said it may take a request again.
    soonest: Option<Duration>,
}

impl Refused {
    fn note(&mut self, retry_after: Option<Duration>) {
        self.any = true;
        if let Some(after) = retry_after {
            self.soonest = Some(self.soonest.map_or(after, |s| s.min(after)));
        }
    }
}

/// Held open by an operator (`POST /admin/upstream/{name}/circuit`).
fn is_held_open(endpoint: &Endpoint) -> bool {
    endpoint.breaker_state() == CircuitState::ForcedOpen
}

/// Its breaker is open with its open time over, or half-open: it takes a request only as
/// a probe, and only a probe can let it back.
pub(super) fn wants_probe(endpoint: &Endpoint) -> bool {
    matches!(
        endpoint.breaker_state(),
        CircuitState::Open | CircuitState::HalfOpen
    )
}

/// Worth offering a request: a candidate (healthy, not held open) whose breaker does not
/// refuse for certain. `pick` offers these, and the endpoints' limits add up theirs.
pub(super) fn is_offered(endpoint: &Endpoint) -> bool {
    endpoint.is_candidate() && !certainly_refuses(endpoint)
}

/// Its breaker refuses any request now (ejected with its open time not over, or held
/// open): asking it would take nothing.
fn certainly_refuses(endpoint: &Endpoint) -> bool {
    endpoint
        .breaker
        .as_ref()
        .is_some_and(|breaker| breaker.would_refuse().is_some())
}

#[cfg(test)]
mod tests;

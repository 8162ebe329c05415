//! The policy's metrics, through the `metrics` facade, every handle made once.
//!
//! - `palisade_rate_limit_decisions_total{policy, decision, counting}`: the core's name
//!   ([`names::RATE_LIMIT_DECISIONS_TOTAL`]), `decision` = `allowed` | `limited`, and
//!   `counting` = what decided ([`Counting::as_str`]).
//! - `palisade_fleet_counting{policy, counting}`: 1 for what decides now, 0 for the
//!   other three.
//! - `palisade_fleet_live_instances{policy}`: the live count the shares are cut for.
//!
//! The two fleet gauges are named here, not in the core's `events::names`: the core
//! crate knows nothing of fleets, and only this crate records them.

use metrics::{Counter, Gauge};
use palisade::events::names;

use super::Counting;

/// Gauge: 1 for the [`Counting`] in use, 0 for the others.
pub const FLEET_COUNTING: &str = "palisade_fleet_counting";

/// Gauge: the fleet's live instances as this instance last counted them.
pub const FLEET_LIVE_INSTANCES: &str = "palisade_fleet_live_instances";

/// Every handle of one policy.
#[derive(Debug)]
pub(super) struct Metrics {
    /// `[admitted?][counting]`.
    decisions: [[Counter; 4]; 2],
    counting: [Gauge; 4],
    live: Gauge,
}

impl Metrics {
    pub(super) fn new(policy: &str) -> Self {
        let decisions = |decision: &'static str| {
            Counting::ALL.map(|counting| {
                metrics::counter!(
                    names::RATE_LIMIT_DECISIONS_TOTAL,
                    "policy" => policy.to_owned(),
                    "decision" => decision,
                    "counting" => counting.as_str()
                )
            })
        };
        let metrics = Self {
            decisions: [decisions("limited"), decisions("allowed")],
            counting: Counting::ALL.map(|counting| {
                metrics::gauge!(
                    FLEET_COUNTING,
                    "policy" => policy.to_owned(),
                    "counting" => counting.as_str()
                )
            }),
            live: metrics::gauge!(FLEET_LIVE_INSTANCES, "policy" => policy.to_owned()),
        };
        metrics.counting_now(Counting::Shared);
        metrics
    }

    /// Counts one decision.
    #[inline]
    pub(super) fn decision(&self, admitted: bool, counting: Counting) {
        self.decisions[usize::from(admitted)][counting.index()].increment(1);
    }

    /// Sets the counting gauges: 1 for `now`, 0 for the others.
    pub(super) fn counting_now(&self, now: Counting) {
        for counting in Counting::ALL {
            let value = if counting == now { 1.0 } else { 0.0 };
            self.counting[counting.index()].set(value);
        }
    }

    /// Sets the live-instances gauge.
    pub(super) fn live(&self, live: u32) {
        self.live.set(f64::from(live));
    }
}

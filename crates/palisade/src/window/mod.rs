//! Lock-free sliding windows over recent calls.
//!
//! * [`OutcomeRing`]: the last *N* calls, one bit per call for "failed" and one for
//!   "slow", with running counts kept equal to the number of set bits. Recording a
//!   success whose slot already held a success is one atomic add and one load.
//! * [`BucketRing`]: the last *D* of time as *B* buckets, each one packed `u64`
//!   (epoch tag, two counters) updated with compare-and-swap, so a bucket is renewed and
//!   counted in one atomic step and no update is ever lost at a bucket boundary.
//! * [`LatencyWindow`]: a log-linear latency histogram over the last *D* of time, in
//!   rotating sub-windows of tagged counters, answering percentiles within a documented
//!   relative error; [`PercentileTracker`] caches one percentile of it for the adaptive
//!   timeout and the hedge.
//!
//! All have have a fixed size chosen at construction: no window grows with traffic.

mod buckets;
mod latency;
mod outcomes;

pub(crate) use buckets::BucketRing;
pub(crate) use latency::PercentileTracker;
pub(crate) use outcomes::{Counts, OutcomeRing};

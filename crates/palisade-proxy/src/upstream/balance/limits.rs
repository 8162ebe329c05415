//! The endpoints' adaptive limits as one capacity, for an upstream whose limits are per
//! endpoint: its shedder admits as many requests as the endpoints it may send to can
//! take, so the rest wait at the proxy, where shedding by criticality acts, rather than
//! in an endpoint's queue.

use std::sync::Arc;

use super::{is_offered, wants_probe};
use crate::upstream::endpoint::Endpoint;

/// The endpoints' adaptive limits as one capacity: what an upstream whose limits are
/// per endpoint admits at once (its shedder's capacity).
pub(crate) struct EndpointLimits {
    primaries: Vec<Arc<Endpoint>>,
    backups: Vec<Arc<Endpoint>>,
}

impl EndpointLimits {
    pub(crate) fn new(primaries: &[Arc<Endpoint>], backups: &[Arc<Endpoint>]) -> Self {
        Self {
            primaries: primaries.to_vec(),
            backups: backups.to_vec(),
        }
    }

    /// The sum of the limits of the endpoints `pick` offers now: the primaries', or the
    /// backups' when no primary is offered. An endpoint waiting for its probes counts one,
    /// so that a request flows to probe it while no more wait for it than it takes.
    pub(crate) fn capacity(&self) -> usize {
        let offered = |group: &[Arc<Endpoint>]| -> usize {
            group
                .iter()
                .filter(|e| is_offered(e))
                .filter_map(|e| match wants_probe(e) {
                    true => Some(1),
                    false => e.concurrency_limit(),
                })
                .sum()
        };
        match offered(&self.primaries) {
            0 => offered(&self.backups),
            primaries => primaries,
        }
    }
}

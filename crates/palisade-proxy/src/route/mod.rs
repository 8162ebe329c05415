//! A route: a path prefix, its upstream, its fallback and its fault injection.
//!
//! `requests` holds a route's request counters and latency histogram.
//!
//! Fault injection is the library's [`FaultInjection`]: `[route.fault]`'s percentages are
//! mapped to its rates once, when the config loads (and when the admin API replaces
//! them). The sidecar asks it for a decision ([`FaultInjection::roll`]) before a
//! request's future exists, so an injected abort is answered at once, with the route's
//! configured status. A body fault is the library's degradation (`degrade_rate`): the
//! request is forwarded, and its response body slowed or cut (see `body_fault`), the
//! fault's slot held until that body ends.
//!
//! A fault set through the admin API with a lease (`lease.rs`) holds until the lease
//! runs out, then the fault the config gave is back.

use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use palisade::ConfigError;
use palisade::policy::fault::{self, FaultInjection, FaultSlot};
use tokio::task::AbortHandle;
use tokio::time::Instant;

mod lease;
mod requests;
mod tally;

pub use lease::{FaultLease, MAX_LEASE, MIN_LEASE};
pub use requests::RequestMetrics;
pub use tally::{Counts, Tally};

use crate::body_fault::BodyFault;
use crate::config::FaultSection;
use crate::respond::Fallback;
use crate::upstream::Upstream;

/// A route, ready to serve.
pub struct Route {
    /// Position in the file, for `/admin/route/{n}/fault`.
    pub index: usize,
    /// Requests whose path starts with this come here.
    pub path_prefix: String,
    /// Where they go.
    pub upstream: Arc<Upstream>,
    /// What to answer when resilience gives up.
    pub fallback: Option<Fallback>,
    /// Where a request's criticality is read from.
    pub criticality_header: Option<http::HeaderName>,
    /// Its request counters and latency histogram.
    pub requests: RequestMetrics,
    /// The fault settings as last given (for `/admin/state`).
    fault: RwLock<FaultSection>,
    /// The library's fault injection, from `fault`.
    faults: FaultInjection<(), ()>,
    /// The status of injected aborts.
    abort_status: AtomicU16,
    /// The fault settings the config gave: what a lease's end puts back.
    configured: FaultSection,
    /// The lease on the fault settings now, if they were set with one.
    lease: FaultLease,
}

/// What fault injection decided for one request.
#[derive(Debug)]
pub enum Injected {
    /// Nothing.
    None,
    /// Answer with this status, without calling the upstream.
    Abort(u16),
    /// Wait this long first, holding the slot (one of the faults in progress).
    Delay(Duration, FaultSlot),
    /// Forward, then degrade the response body so, holding the slot until it ends.
    Body(BodyFault, FaultSlot),
}

impl Route {
    pub(crate) fn new(
        index: usize,
        config: &crate::config::Route,
        upstream: Arc<Upstream>,
    ) -> Result<Self, ConfigError> {
        let fault = config.fault.clone().unwrap_or_default();
        let faults = FaultInjection::builder(fault.policy_config(&config.path_prefix))
            // An injected outcome is answered by the sidecar itself (see `inject`), and a
            // degradation is its own too: the response body's (see `body_fault`).
            .inject(|| Ok(()))
            .degrade(Ok)
            .build()?;
        let requests = RequestMetrics::new(&config.path_prefix, &upstream.name);
        Ok(Self {
            index,
            path_prefix: config.path_prefix.clone(),
            upstream,
            fallback: config.fallback.as_ref().map(Fallback::from),
            criticality_header: config
                .criticality_header
                .as_ref()
                .and_then(|h| http::HeaderName::from_bytes(h.as_bytes()).ok()),
            requests,
            abort_status: AtomicU16::new(fault.abort_status),
            configured: fault.clone(),
            fault: RwLock::new(fault),
            faults,
            lease: FaultLease::default(),
        })
    }

    /// A request's criticality: from the route's header, else `critical`.
    pub fn criticality(&self, headers: &http::HeaderMap) -> palisade::criticality::Criticality {
        self.criticality_header
            .as_ref()
            .and_then(|name| headers.get(name))
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(palisade::criticality::Criticality::Critical)
    }

    /// The fault settings now.
    pub fn fault(&self) -> FaultSection {
        self.fault.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Replaces the fault settings until replaced again (admin API), dropping any lease.
    pub fn set_fault(&self, fault: FaultSection) -> Result<(), ConfigError> {
        self.apply(fault)?;
        self.lease.cancel();
        Ok(())
    }

    /// Replaces the fault settings until `until` (admin API); `watch` starts the task
    /// that calls [`end_lease`](Self::end_lease) with the lease's generation then.
    pub fn lease_fault(
        &self,
        fault: FaultSection,
        until: Instant,
        watch: impl FnOnce(u64) -> AbortHandle,
    ) -> Result<(), ConfigError> {
        self.apply(fault)?;
        self.lease.grant(until, watch);
        Ok(())
    }

    /// Puts the configured fault settings back when lease `generation` is the one held
    /// and is over.
    pub fn end_lease(&self, generation: u64) {
        if self.lease.expire(generation, Instant::now()) {
            tracing::info!(
                route = self.index,
                "fault lease ran out: the configured fault injection is back"
            );
            // The configured settings were validated when the config loaded.
            if let Err(error) = self.apply(self.configured.clone()) {
                tracing::error!(route = self.index, %error, "configured fault refused");
            }
        }
    }

    /// How long the fault settings' lease has left, in milliseconds (as `/admin/state`
    /// shows it); none when they hold until replaced.
    pub fn fault_lease_ms(&self) -> Option<u64> {
        self.lease
            .left(Instant::now())
            .map(|left| u64::try_from(left.as_millis()).unwrap_or(u64::MAX))
    }

    /// Puts `fault` in force. `max_concurrent` keeps its loaded value.
    fn apply(&self, mut fault: FaultSection) -> Result<(), ConfigError> {
        let mut current = self.fault.write().unwrap_or_else(|e| e.into_inner());
        self.faults.set_rates(
            fault.abort_percent / 100.0,
            fault.delay_percent / 100.0,
            fault.delay,
        )?;
        self.faults.set_degrade_rate(fault.body_percent / 100.0)?;
        self.abort_status
            .store(fault.abort_status, Ordering::Relaxed);
        if fault.is_active() {
            self.faults.enable();
        } else {
            self.faults.disable();
        }
        fault.max_concurrent = current.max_concurrent;
        *current = fault;
        Ok(())
    }

    /// Rolls the dice for one request. Switched off, one relaxed load.
    pub fn inject(&self) -> Injected {
        match self.faults.roll() {
            fault::Injected::None => Injected::None,
            fault::Injected::Outcome(_slot) => {
                Injected::Abort(self.abort_status.load(Ordering::Relaxed))
            }
            fault::Injected::Latency { delay, slot } => Injected::Delay(delay, slot),
            // What a body fault does is read now, under the settings' lock: on this
            // fault's path only.
            fault::Injected::Degrade(slot) => Injected::Body(
                self.fault
                    .read()
                    .unwrap_or_else(|e| e.into_inner())
                    .body_fault(),
                slot,
            ),
        }
    }
}

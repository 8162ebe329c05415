//! A route: a path prefix, its upstream, its fallback and its fault injection.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderMap, HeaderValue};
use rand::Rng;
use serde::Serialize;

use super::requests::RequestMetrics;
use super::upstream::Upstream;
use crate::config::{FallbackSection, FaultSection};
use crate::respond::{self, Reason};

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
    fault: RwLock<FaultSection>,
    /// True when either fault rate is above zero: the only thing a request reads when
    /// fault injection is off.
    faulty: AtomicBool,
    faults_abort: metrics::Counter,
    faults_delay: metrics::Counter,
}

/// A fixed response.
#[derive(Clone, Debug, Serialize)]
pub struct Fallback {
    /// Its status.
    pub status: u16,
    /// Its body.
    #[serde(skip)]
    pub body: Bytes,
    /// Its `Content-Type`.
    pub content_type: String,
    /// Its headers for each reason (indexed by [`Reason::index`]), built once.
    #[serde(skip)]
    headers: Box<[HeaderMap]>,
    /// The same, as header lines (see [`Fallback::lines`]).
    #[serde(skip)]
    lines: Box<[Bytes]>,
}

impl Fallback {
    /// The headers of this fallback answering for `reason`: `x-palisade-fallback: 1`,
    /// `x-palisade-reason` and its `Content-Type`.
    pub fn headers(&self, reason: Reason) -> HeaderMap {
        match self.headers.get(reason.index()) {
            Some(headers) => headers.clone(),
            None => fallback_headers(&self.content_type, reason),
        }
    }
}

impl Fallback {
    /// [`Fallback::headers`] as header lines, for a connection that writes them as they
    /// are (see `http1_server`).
    pub fn lines(&self, reason: Reason) -> Bytes {
        match self.lines.get(reason.index()) {
            Some(lines) => lines.clone(),
            None => respond::lines(&fallback_headers(&self.content_type, reason)),
        }
    }
}

fn fallback_headers(content_type: &str, reason: Reason) -> HeaderMap {
    let mut headers = HeaderMap::with_capacity(3);
    headers.insert(respond::FALLBACK, HeaderValue::from_static("1"));
    headers.insert(respond::REASON, HeaderValue::from_static(reason.as_str()));
    if let Ok(content_type) = HeaderValue::from_str(content_type) {
        headers.insert(CONTENT_TYPE, content_type);
    }
    headers
}

/// What fault injection decided for one request.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Injected {
    /// Nothing.
    None,
    /// Answer with this status, without calling the upstream.
    Abort(u16),
    /// Wait this long first.
    Delay(Duration),
}

impl Route {
    pub(crate) fn new(
        index: usize,
        config: &crate::config::Route,
        upstream: Arc<Upstream>,
    ) -> Self {
        let fault = config.fault.clone().unwrap_or_default();
        let faulty = AtomicBool::new(fault.is_active());
        let requests = RequestMetrics::new(&config.path_prefix, &upstream.name);
        let counter = |kind: &'static str| {
            metrics::counter!(
                "palisade_faults_injected_total",
                "route" => config.path_prefix.clone(),
                "kind" => kind
            )
        };
        Self {
            index,
            path_prefix: config.path_prefix.clone(),
            upstream,
            fallback: config.fallback.as_ref().map(Fallback::from),
            criticality_header: config
                .criticality_header
                .as_ref()
                .and_then(|h| http::HeaderName::from_bytes(h.as_bytes()).ok()),
            requests,
            fault: RwLock::new(fault),
            faulty,
            faults_abort: counter("abort"),
            faults_delay: counter("delay"),
        }
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

    /// Replaces the fault settings (admin API).
    pub fn set_fault(&self, fault: FaultSection) {
        let mut current = self.fault.write().unwrap_or_else(|e| e.into_inner());
        self.faulty.store(fault.is_active(), Ordering::Relaxed);
        *current = fault;
    }

    /// Rolls the dice for one request.
    pub fn inject(&self) -> Injected {
        if !self.faulty.load(Ordering::Relaxed) {
            return Injected::None;
        }
        let fault = self.fault.read().unwrap_or_else(|e| e.into_inner());
        let mut rng = rand::rng();
        if fault.abort_percent > 0.0 && rng.random_range(0.0..100.0) < fault.abort_percent {
            self.faults_abort.increment(1);
            return Injected::Abort(fault.abort_status);
        }
        if fault.delay_percent > 0.0 && rng.random_range(0.0..100.0) < fault.delay_percent {
            self.faults_delay.increment(1);
            return Injected::Delay(fault.delay);
        }
        Injected::None
    }
}

impl From<&FallbackSection> for Fallback {
    fn from(section: &FallbackSection) -> Self {
        Self {
            status: section.status,
            body: Bytes::from(section.body.clone()),
            content_type: section.content_type.clone(),
            headers: Reason::ALL
                .iter()
                .map(|&reason| fallback_headers(&section.content_type, reason))
                .collect(),
            lines: Reason::ALL
                .iter()
                .map(|&reason| respond::lines(&fallback_headers(&section.content_type, reason)))
                .collect(),
        }
    }
}

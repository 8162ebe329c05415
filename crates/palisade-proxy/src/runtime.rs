//! The running form of a config: routes, upstreams and their policies.
//!
//! A [`Runtime`] is built from a checked config and swapped whole on reload; requests in
//! flight keep the runtime they started with.

use std::sync::{Arc, OnceLock};

use palisade::ConfigError;
use palisade::clock::Clock;

use crate::config::Config;
use crate::config::load::Checked;
use crate::route::{RequestMetrics, Route};
use crate::saga::{SagaRoute, Sagas};
use crate::upstream::{FleetStore, Upstream};

/// Everything a request needs, built from one config.
pub struct Runtime {
    /// The config it was built from.
    pub config: Config,
    /// Routes, longest prefix first.
    pub routes: Vec<Route>,
    /// Upstreams, in file order.
    pub upstreams: Vec<Arc<Upstream>>,
    /// Metrics of requests no route matched.
    pub unrouted: RequestMetrics,
    /// The clock every policy of this runtime reads, and requests are timed by.
    pub clock: Clock,
    /// The worker threads serving it, each with its own idle upstream connections.
    pub workers: usize,
    /// Routes that start sagas, longest prefix first.
    pub saga_routes: Vec<SagaRoute>,
    /// The saga service, once started (it outlives reloads: each runtime shares it).
    pub sagas: Arc<OnceLock<Arc<Sagas>>>,
}

impl Runtime {
    /// Builds the policies, clients and health checks of `checked` (needs a tokio runtime).
    ///
    /// Every policy reads the CPU's time-stamp counter ([`Clock::fast`]): the sidecar
    /// reads the time a dozen times per request, and on a virtual machine a
    /// `clock_gettime` costs tens of nanoseconds where the counter costs a few. Timers
    /// (timeouts, backoff, open-state waits) still run on tokio's clock.
    ///
    /// `workers`: the worker threads that serve it (see `serve`), each keeping its own
    /// idle connections to every endpoint.
    pub fn build(checked: &Checked, workers: usize) -> Result<Self, ConfigError> {
        let config = &checked.config;
        let clock = Clock::fast();
        let fleet = config.fleet.as_ref().map(FleetStore::start).transpose()?;
        let upstreams = config
            .upstream
            .iter()
            .zip(&checked.upstreams)
            .map(|(u, p)| Upstream::build(u, p, &clock, workers, fleet.as_ref()).map(Arc::new))
            .collect::<Result<Vec<_>, _>>()?;
        let mut routes = Vec::with_capacity(config.route.len());
        let mut saga_routes = Vec::new();
        for (index, route) in config.route.iter().enumerate() {
            if let Some(saga) = &route.saga {
                saga_routes.push(saga_route(config, index, route, saga));
                continue;
            }
            let upstream = upstreams
                .iter()
                .find(|u| *u.name == route.upstream)
                .cloned()
                .ok_or_else(|| {
                    ConfigError::new(
                        "route.upstream",
                        format!("{:?} is not defined", route.upstream),
                        "a defined upstream",
                    )
                })?;
            routes.push(Route::new(index, route, upstream)?);
        }
        routes.sort_by(|a, b| {
            b.path_prefix
                .len()
                .cmp(&a.path_prefix.len())
                .then(a.index.cmp(&b.index))
        });
        saga_routes.sort_by_key(|r| std::cmp::Reverse(r.path_prefix.len()));
        Ok(Self {
            config: config.clone(),
            routes,
            upstreams,
            unrouted: RequestMetrics::new("", ""),
            clock,
            workers,
            saga_routes,
            sagas: Arc::default(),
        })
    }

    /// The saga route for `path`, when one matches it with a longer prefix than any
    /// upstream route's.
    pub fn saga_route(&self, path: &str) -> Option<&SagaRoute> {
        let saga = self
            .saga_routes
            .iter()
            .find(|r| path.starts_with(&r.path_prefix))?;
        match self.route_with_position(path) {
            Some((_, route)) if route.path_prefix.len() > saga.path_prefix.len() => None,
            _ => Some(saga),
        }
    }

    /// The route for `path` (the longest matching prefix), and its position for
    /// [`routed`](Self::routed).
    pub fn route_with_position(&self, path: &str) -> Option<(usize, &Route)> {
        self.routes
            .iter()
            .enumerate()
            .find(|(_, r)| path.starts_with(&r.path_prefix))
    }

    /// The route at a position [`route_with_position`](Self::route_with_position) gave.
    pub fn routed(&self, position: usize) -> Option<&Route> {
        self.routes.get(position)
    }

    /// The route at position `index` in the file.
    pub fn route_at(&self, index: usize) -> Option<&Route> {
        self.routes.iter().find(|r| r.index == index)
    }

    /// The upstream called `name`.
    pub fn upstream(&self, name: &str) -> Option<&Arc<Upstream>> {
        self.upstreams.iter().find(|u| &*u.name == name)
    }
}

/// The running form of a route with `saga = "…"`.
fn saga_route(
    config: &Config,
    index: usize,
    route: &crate::config::Route,
    saga: &str,
) -> SagaRoute {
    let definition = config.saga.iter().find(|s| s.name == saga);
    SagaRoute {
        index,
        path_prefix: route.path_prefix.clone(),
        saga: saga.to_owned(),
        steps: definition
            .map(|d| d.step.iter().map(|s| s.name.clone()).collect())
            .unwrap_or_default(),
        deadline: definition.and_then(|d| d.deadline),
        requests: RequestMetrics::new(&route.path_prefix, &format!("saga:{saga}")),
    }
}

//! `palisade toxic`: a fault proxy for TCP, driven by an HTTP API compatible with
//! Toxiproxy's.
//!
//! Each proxy listens on an address and relays every connection to its upstream; toxics
//! on a proxy act on the bytes of one direction ([`fault::Fault`]: latency with jitter,
//! bandwidth, slow close, timeout, reset, slicer, data limit) and disabling a proxy takes
//! the dependency down. The API (`api`) has Toxiproxy's paths, JSON and status codes, so
//! its client libraries and existing test suites work unchanged.
//!
//! Invariants: every toxic change reaches open connections (a link reads the toxics
//! before each chunk and whenever they change); nothing grows without bound — proxies
//! ([`registry::MAX_PROXIES`]), toxics per proxy ([`proxy::MAX_TOXICS`]), connections per
//! proxy ([`proxy::MAX_LINKS`]) and the bytes held per connection (a bounded channel of
//! chunks per direction) are all capped; removing a proxy or stopping the server closes
//! every listener and connection it opened.
//!
//! HTTP faults (an abort status at a rate, a delay) are the sidecar's route faults, the
//! library's fault injection (`[route.fault]`, `POST /admin/route/{n}/fault`).

mod api;
pub mod fault;
mod link;
pub mod proxy;
pub mod registry;
pub mod toxics;

use std::net::SocketAddr;
use std::sync::Arc;

use http::StatusCode;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub use registry::Registry;

/// An API call's refusal: its status and what is wrong.
#[derive(Debug)]
pub struct ApiError {
    /// 400, 404, 409 or 500.
    pub status: StatusCode,
    /// What is wrong, and how to fix it where the fix is known.
    pub message: String,
}

impl ApiError {
    pub(crate) fn bad_request(message: String) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            message,
        }
    }

    pub(crate) fn not_found(message: String) -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            message,
        }
    }

    pub(crate) fn conflict(message: String) -> Self {
        Self {
            status: StatusCode::CONFLICT,
            message,
        }
    }

    pub(crate) fn internal(message: String) -> Self {
        Self {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message,
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.message, self.status)
    }
}

/// A running toxic server. Dropping it stops the API and closes every proxy.
pub struct ToxicServer {
    address: SocketAddr,
    registry: Arc<Registry>,
    api: JoinHandle<()>,
}

impl ToxicServer {
    /// Serves the API on `address`, with the proxies of `populate` (a Toxiproxy config:
    /// a JSON list of proxies) created first.
    pub async fn start(address: SocketAddr, populate: Option<&str>) -> Result<Self, String> {
        let registry = Arc::new(Registry::default());
        if let Some(json) = populate {
            let value = serde_json::from_str(json)
                .map_err(|error| format!("the proxies file is not JSON: {error}"))?;
            let requests = api::proxy_list(value).map_err(|error| error.message)?;
            registry
                .populate(requests)
                .await
                .map_err(|(error, _)| error.message)?;
        }
        let listener = TcpListener::bind(address)
            .await
            .map_err(|error| format!("cannot listen on {address}: {error}"))?;
        let address = listener
            .local_addr()
            .map_err(|error| format!("listener address: {error}"))?;
        let router = api::router(registry.clone());
        let api = tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, router).await {
                tracing::error!(%error, "toxic API stopped");
            }
        });
        tracing::info!(%address, "toxic API listening");
        Ok(Self {
            address,
            registry,
            api,
        })
    }

    /// Where the API listens.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// The proxies.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// Serves until the process is stopped.
    pub async fn wait(mut self) {
        let _ = (&mut self.api).await;
    }
}

impl Drop for ToxicServer {
    fn drop(&mut self) {
        self.api.abort();
    }
}

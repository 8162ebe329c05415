//! Health checks: a registry of named checks, and the `/health/live`, `/health/ready` and
//! `/health/deep` endpoints that report them.
//!
//! A check is an async function returning [`Status`]: ok, degraded or failed, with a
//! reason. Each has a [`Class`]:
//! - **liveness** — the process itself (a stuck event loop, a poisoned state), never its
//!   dependencies: an orchestrator restarts a process whose liveness fails, and a database
//!   outage must not restart every replica at once;
//! - **readiness** — what must work for this replica to take traffic; a failed one takes
//!   it out of the load balancer's rotation (503) until it passes again;
//! - **deep** — everything worth seeing (for dashboards and people), never used to route.
//!
//! Every check runs under its own timeout (a check that outlives it has failed), in a task
//! of its own, so that one that panics is reported failed with the panic's message and the
//! server goes on. A check's result is cached for its TTL, and one run at a time serves
//! every caller waiting for it: however many requests ask at once, a dependency sees at
//! most one check per TTL — `/health/deep` can never overload what it watches.
//!
//! Readiness also follows the process's own life: not ready until [`Health::warmed_up`]
//! (caches loaded, connections opened), and not ready again once [`Health::draining`]
//! (shutdown begun), so that the load balancer stops sending before the server stops
//! taking.
//!
//! ```
//! use std::time::Duration;
//! use palisade_http::health::{Class, Health, Status};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let health = Health::builder()
//!     .check("database", Class::Readiness, Duration::from_secs(1), || async {
//!         Status::Failed("connection refused".into())
//!     })
//!     .build()
//!     .expect("a valid registry");
//! health.warmed_up();
//! let report = health.report(Class::Readiness).await;
//! assert!(!report.passes());
//! assert_eq!(
//!     report.json(),
//!     r#"{"status":"not_ready","checks":{"database":"error: connection refused"}}"#
//! );
//! # }
//! ```

mod dependencies;
mod registry;
mod service;

#[cfg(feature = "postgres")]
pub use dependencies::postgres_check;
#[cfg(feature = "redis")]
pub use dependencies::redis_check;
#[cfg(feature = "sqlx")]
pub use dependencies::sqlx_check;
pub use registry::{Check, Health, HealthBuilder, Report};
pub use service::HealthService;

/// What a check found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Status {
    /// Works.
    Ok,
    /// Works, worse than it should (slow, a replica missing): reported, not failing.
    Degraded(String),
    /// Does not work, and why.
    Failed(String),
}

/// Which question a check answers (see the module's doc).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Class {
    /// The process itself.
    Liveness,
    /// What must work to take traffic.
    Readiness,
    /// Everything, for people and dashboards.
    Deep,
}

/// A ready-made check: a Palisade breaker is not open. Open (or forced open) fails,
/// half-open is degraded, closed is ok — so readiness can follow a dependency the breaker
/// already watches, without a call of its own.
pub fn breaker_check(
    breaker: palisade::policy::circuit_breaker::CircuitBreaker,
) -> impl Fn() -> std::future::Ready<Status> + Send + Sync + 'static {
    use palisade::policy::circuit_breaker::CircuitState;
    move || {
        std::future::ready(match breaker.state() {
            CircuitState::Closed => Status::Ok,
            CircuitState::HalfOpen => Status::Degraded(format!("{} is half-open", breaker.name())),
            _ => Status::Failed(format!("{} is open", breaker.name())),
        })
    }
}

/// A ready-made check: an HTTP endpoint answers `GET uri` with a 2xx status (over one
/// pooled hyper client; give the check a timeout that suits the endpoint). Any other
/// status fails, naming it; so does a connection that cannot be made.
#[cfg(feature = "http-check")]
pub fn http_check(
    uri: http::Uri,
) -> impl Fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = Status> + Send>>
+ Send
+ Sync
+ 'static {
    use http_body_util::Empty;
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;

    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<bytes::Bytes>>();
    move || {
        let client = client.clone();
        let uri = uri.clone();
        Box::pin(async move {
            match client.get(uri).await {
                Ok(response) if response.status().is_success() => Status::Ok,
                Ok(response) => Status::Failed(format!("status {}", response.status())),
                Err(error) => Status::Failed(format!("unreachable: {error}")),
            }
        })
    }
}

// === impl Status ===

impl Status {
    /// Whether it counts against its class (only [`Status::Failed`] does).
    pub fn is_failed(&self) -> bool {
        matches!(self, Status::Failed(_))
    }

    /// As the endpoints write it: `ok`, `degraded: …`, `error: …`.
    pub fn describe(&self) -> String {
        match self {
            Status::Ok => "ok".to_owned(),
            Status::Degraded(why) => format!("degraded: {why}"),
            Status::Failed(why) => format!("error: {why}"),
        }
    }
}

// === impl Class ===

impl Class {
    /// Whether a check of this class is asked for a report of `asked`: liveness only its
    /// own, readiness its own, deep every check.
    pub(crate) fn serves(self, asked: Class) -> bool {
        asked == Class::Deep || self == asked
    }
}

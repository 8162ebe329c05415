//! The checks, their runs (timeout, panic, cache, one at a time) and the reports made of
//! them.

use std::fmt::Write as _;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use palisade::ConfigError;
use tokio::time::Instant;

use super::{Class, Status};

/// How long a check's result serves every caller, unless the check says otherwise.
pub const DEFAULT_TTL: Duration = Duration::from_secs(1);

type Run = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Status> + Send>> + Send + Sync>;

/// A named check (see the [module docs](super)).
pub struct Check {
    name: Arc<str>,
    class: Class,
    timeout: Duration,
    ttl: Duration,
    run: Run,
    /// The last result and when it was had; locked across a run, so that callers
    /// arriving meanwhile wait for it rather than start their own.
    last: tokio::sync::Mutex<Option<(Instant, Status)>>,
}

/// The checks of a service and its own readiness (see the [module docs](super)).
pub struct Health {
    checks: Vec<Arc<Check>>,
    warmed: AtomicBool,
    draining: AtomicBool,
}

/// Builds a [`Health`].
#[derive(Default)]
pub struct HealthBuilder {
    checks: Vec<Check>,
}

/// What the checks of one class found.
#[derive(Clone, Debug)]
pub struct Report {
    class: Class,
    /// Why the service is not ready whatever its checks say (warming up, draining).
    gate: Option<&'static str>,
    checks: Vec<(Arc<str>, Status)>,
}

// === impl HealthBuilder ===

impl HealthBuilder {
    /// Adds a check named `name`, of `class`, failed if it does not answer within
    /// `timeout`; its result serves every caller for [`DEFAULT_TTL`].
    #[must_use]
    pub fn check<F, Fut>(self, name: &str, class: Class, timeout: Duration, check: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Status> + Send + 'static,
    {
        self.check_with_ttl(name, class, timeout, DEFAULT_TTL, check)
    }

    /// As [`check`](Self::check), its result serving every caller for `ttl`: a deep
    /// check of a costly dependency runs at most once per `ttl` however often it is asked.
    #[must_use]
    pub fn check_with_ttl<F, Fut>(
        mut self,
        name: &str,
        class: Class,
        timeout: Duration,
        ttl: Duration,
        check: F,
    ) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Status> + Send + 'static,
    {
        let run: Run = Arc::new(move || Box::pin(check()));
        self.checks.push(Check {
            name: name.into(),
            class,
            timeout,
            ttl,
            run,
            last: tokio::sync::Mutex::new(None),
        });
        self
    }

    /// The registry. Refused: two checks of one name, an empty name, a timeout of zero or
    /// over a minute, a TTL over an hour.
    pub fn build(self) -> Result<Health, ConfigError> {
        for (index, check) in self.checks.iter().enumerate() {
            if check.name.is_empty() || self.checks[..index].iter().any(|c| c.name == check.name) {
                return Err(ConfigError::new(
                    "health.check.name",
                    format!("{:?} is empty or given twice", check.name),
                    "a distinct, non-empty name per check",
                ));
            }
            if check.timeout.is_zero() || check.timeout > Duration::from_secs(60) {
                return Err(ConfigError::new(
                    format!("health.check.{}.timeout", check.name),
                    format!("{:?} is out of range", check.timeout),
                    "more than 0 and at most 1 minute",
                ));
            }
            if check.ttl > Duration::from_secs(3600) {
                return Err(ConfigError::new(
                    format!("health.check.{}.ttl", check.name),
                    format!("{:?} is out of range", check.ttl),
                    "at most 1 hour",
                ));
            }
        }
        Ok(Health {
            checks: self.checks.into_iter().map(Arc::new).collect(),
            warmed: AtomicBool::new(false),
            draining: AtomicBool::new(false),
        })
    }
}

// === impl Health ===

impl Health {
    /// An empty builder.
    pub fn builder() -> HealthBuilder {
        HealthBuilder::default()
    }

    /// The service has warmed up: it may be ready from now on (it is not before).
    pub fn warmed_up(&self) {
        self.warmed.store(true, Ordering::Release);
    }

    /// The service is shutting down: not ready from now on, so that traffic stops coming
    /// before the server stops taking it.
    pub fn draining(&self) {
        self.draining.store(true, Ordering::Release);
    }

    /// Runs (or reads from cache) every check `class` asks for, at once, and reports.
    pub async fn report(&self, class: Class) -> Report {
        let gate = match class {
            Class::Readiness if self.draining.load(Ordering::Acquire) => Some("draining"),
            Class::Readiness if !self.warmed.load(Ordering::Acquire) => Some("warming up"),
            _ => None,
        };
        let mut runs = tokio::task::JoinSet::new();
        let asked: Vec<&Arc<Check>> = self
            .checks
            .iter()
            .filter(|c| c.class.serves(class))
            .collect();
        for (index, check) in asked.iter().enumerate() {
            let check = Arc::clone(check);
            runs.spawn(async move { (index, check.status().await) });
        }
        let mut found = vec![None; asked.len()];
        while let Some(done) = runs.join_next().await {
            if let Ok((index, status)) = done {
                found[index] = Some(status);
            }
        }
        let checks = asked
            .iter()
            .zip(found)
            .map(|(check, status)| {
                let status = status.unwrap_or_else(|| Status::Failed("the check was lost".into()));
                (Arc::clone(&check.name), status)
            })
            .collect();
        Report {
            class,
            gate,
            checks,
        }
    }
}

// === impl Check ===

impl Check {
    /// The last result if younger than the TTL, else a new run's; one run at a time.
    async fn status(&self) -> Status {
        let mut last = self.last.lock().await;
        if let Some((at, status)) = &*last {
            if at.elapsed() < self.ttl {
                return status.clone();
            }
        }
        let status = self.run_once().await;
        *last = Some((Instant::now(), status.clone()));
        status
    }

    /// One run, in a task of its own, bounded by the timeout; a panic is a failure.
    async fn run_once(&self) -> Status {
        let mut task = tokio::spawn((self.run)());
        match tokio::time::timeout(self.timeout, &mut task).await {
            Ok(Ok(status)) => status,
            Ok(Err(error)) if error.is_panic() => {
                Status::Failed(format!("panicked: {}", panic_message(error.into_panic())))
            }
            Ok(Err(_)) => Status::Failed("cancelled".into()),
            Err(_) => {
                task.abort();
                Status::Failed(format!("no answer within {:?}", self.timeout))
            }
        }
    }
}

/// A panic's message, when it is a string.
fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    match payload.downcast::<String>() {
        Ok(message) => *message,
        Err(payload) => payload
            .downcast::<&'static str>()
            .map_or_else(|_| "(no message)".to_owned(), |m| (*m).to_owned()),
    }
}

// === impl Report ===

impl Report {
    /// Whether the class passes: no check failed (and, for readiness, warmed up and not
    /// draining). A degraded check passes.
    pub fn passes(&self) -> bool {
        self.gate.is_none() && !self.checks.iter().any(|(_, status)| status.is_failed())
    }

    /// Each check's name and what it found, in the order they were added.
    pub fn checks(&self) -> &[(Arc<str>, Status)] {
        &self.checks
    }

    /// The report as the endpoints write it:
    /// `{"status":"not_ready","checks":{"database":"error: …"}}`, with `"reason"` when
    /// the service is warming up or draining.
    pub fn json(&self) -> String {
        let status = match (self.class, self.passes()) {
            (Class::Liveness, true) => "live",
            (Class::Liveness, false) => "not_live",
            (Class::Readiness, true) => "ready",
            (Class::Readiness, false) => "not_ready",
            (Class::Deep, true) => "ok",
            (Class::Deep, false) => "failing",
        };
        let mut out = format!(r#"{{"status":"{status}""#);
        if let Some(reason) = self.gate {
            let _ = write!(out, r#","reason":"{reason}""#);
        }
        let checks: serde_json::Map<String, serde_json::Value> = self
            .checks
            .iter()
            .map(|(name, status)| (name.to_string(), status.describe().into()))
            .collect();
        let _ = write!(out, r#","checks":{}}}"#, serde_json::Value::Object(checks));
        out
    }
}

impl std::fmt::Debug for Check {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Check")
            .field("name", &self.name)
            .field("class", &self.class)
            .field("timeout", &self.timeout)
            .field("ttl", &self.ttl)
            .finish()
    }
}

impl std::fmt::Debug for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Health")
            .field("checks", &self.checks)
            .field("warmed", &self.warmed)
            .field("draining", &self.draining)
            .finish()
    }
}

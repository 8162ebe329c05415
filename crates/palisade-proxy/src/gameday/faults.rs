//! Faults on and off: a toxic on one of the run's proxies, a proxy down, a target killed
//! or stopped, a sidecar route's fault injection. Each fault that began is ended exactly
//! once — at its time, on an abort, or when the run stops for any reason.

use std::time::Duration;

use http::Method;
use serde_json::{Map, Value};
use tokio::time::Instant;

use super::experiment::{FaultSpec, ProcessAction, RouteFault};
use super::http::Client;
use super::targets::Targets;
use crate::toxic::Registry;
use crate::toxic::proxy::ProxyRequest;
use crate::toxic::toxics::ToxicRequest;

/// How long an admin call may take.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(2);

/// What ending a fault must undo.
pub(super) enum Undo {
    /// Remove this toxic from this proxy.
    Toxic { proxy: String, toxic: String },
    /// Enable this proxy again.
    Up(String),
    /// Start this target again (as the file says: without a wrapper).
    Restart(String),
    /// Stop this process the fault started.
    Remove(String),
    /// Resume this target.
    Resume(String),
    /// Put this route's fault back as it was; meanwhile renew the lease it was set with.
    Route {
        admin: String,
        route: usize,
        was: Value,
        lease: RouteLease,
    },
}

/// The lease of a route fault the runner set: renewed a third of the way through.
pub(super) struct RouteLease {
    fault: Value,
    length: Duration,
    renewed: Instant,
}

/// Where faults are applied.
pub(super) struct Stage<'s> {
    pub(super) proxies: &'s Registry,
    pub(super) targets: &'s mut Targets,
    pub(super) client: &'s Client,
}

// === impl Stage ===

impl Stage<'_> {
    /// Begins fault `index` (`spec`); what will end it.
    pub(super) async fn begin(&mut self, index: usize, spec: &FaultSpec) -> Result<Undo, String> {
        if let Some(toxic) = &spec.toxic {
            let name = format!("gameday-{index}");
            let request = ToxicRequest::new(
                Some(name.clone()),
                toxic.kind.clone(),
                toxic.stream.clone(),
                toxic.toxicity,
                toxic.attributes.clone(),
            );
            self.proxies
                .add_toxic(&toxic.proxy, request)
                .await
                .map_err(|e| e.message)?;
            return Ok(Undo::Toxic {
                proxy: toxic.proxy.clone(),
                toxic: name,
            });
        }
        if let Some(proxy) = &spec.down {
            self.enable(proxy, false).await?;
            return Ok(Undo::Up(proxy.clone()));
        }
        if let Some(process) = &spec.process {
            return match process.action {
                ProcessAction::Kill => {
                    self.targets.signal(&process.target, "KILL")?;
                    Ok(Undo::Restart(process.target.clone()))
                }
                ProcessAction::Stop => {
                    self.targets.signal(&process.target, "STOP")?;
                    Ok(Undo::Resume(process.target.clone()))
                }
            };
        }
        if let Some(skew) = &spec.skew {
            let seconds = skew.seconds().ok_or("an unreadable offset")?;
            self.targets
                .restart(&skew.target, &skewed(seconds), self.client)
                .await?;
            return Ok(Undo::Restart(skew.target.clone()));
        }
        if let Some(pressure) = &spec.pressure {
            let command = pressure.command(spec.lasts).ok_or("nothing to press")?;
            let name = format!("pressure-{index}");
            self.targets
                .add(&name, command, None, Duration::from_secs(5), self.client)
                .await?;
            return Ok(Undo::Remove(name));
        }
        if let Some(route) = &spec.route {
            let was = self.route_fault(route).await?;
            let mut fault = Map::new();
            for (key, value) in &route.keys {
                fault.insert(key.clone(), toml_to_json(value));
            }
            let fault = Value::Object(fault);
            self.set_route_fault(&route.admin, route.route, &fault, Some(route.lease))
                .await?;
            return Ok(Undo::Route {
                admin: route.admin.clone(),
                route: route.route,
                was,
                lease: RouteLease {
                    fault,
                    length: route.lease,
                    renewed: Instant::now(),
                },
            });
        }
        Err("a fault with nothing to do".to_owned())
    }

    /// Ends a fault.
    pub(super) async fn end(&mut self, undo: Undo) -> Result<(), String> {
        match undo {
            Undo::Toxic { proxy, toxic } => self
                .proxies
                .remove_toxic(&proxy, &toxic)
                .await
                .map_err(|e| e.message),
            Undo::Up(proxy) => self.enable(&proxy, true).await,
            Undo::Restart(target) => self.targets.restart(&target, &[], self.client).await,
            Undo::Remove(name) => self.targets.remove(&name),
            Undo::Resume(target) => self.targets.signal(&target, "CONT"),
            Undo::Route {
                admin, route, was, ..
            } => self.set_route_fault(&admin, route, &was, None).await,
        }
    }

    /// Renews the lease of a route fault when a third of it has passed; what failed.
    pub(super) async fn renew(&self, undo: &mut Undo) -> Result<(), String> {
        let Undo::Route {
            admin,
            route,
            lease,
            ..
        } = undo
        else {
            return Ok(());
        };
        if lease.renewed.elapsed() < lease.length / 3 {
            return Ok(());
        }
        lease.renewed = Instant::now();
        self.set_route_fault(admin, *route, &lease.fault, Some(lease.length))
            .await
    }

    async fn enable(&self, proxy: &str, enabled: bool) -> Result<(), String> {
        let request = ProxyRequest {
            enabled: Some(enabled),
            ..ProxyRequest::default()
        };
        self.proxies
            .update(proxy, request)
            .await
            .map(drop)
            .map_err(|e| e.message)
    }

    /// The route's fault settings now, from the sidecar's `/admin/state`.
    async fn route_fault(&self, route: &RouteFault) -> Result<Value, String> {
        let url = format!("{}/admin/state", route.admin.trim_end_matches('/'));
        let (status, body) = self.client.get(&url, ADMIN_TIMEOUT).await?;
        if !status.is_success() {
            return Err(format!("{url}: {status}"));
        }
        let state: Value = serde_json::from_slice(&body).map_err(|e| format!("{url}: {e}"))?;
        state["routes"]
            .as_array()
            .and_then(|routes| routes.get(route.route))
            .map(|r| r["fault"].clone())
            .filter(|f| f.is_object())
            .ok_or_else(|| format!("{url} has no route {}", route.route))
    }

    async fn set_route_fault(
        &self,
        admin: &str,
        route: usize,
        fault: &Value,
        lease: Option<Duration>,
    ) -> Result<(), String> {
        let mut url = format!("{}/admin/route/{route}/fault", admin.trim_end_matches('/'));
        if let Some(lease) = lease {
            url += &format!("?lease={}ms", lease.as_millis());
        }
        let (status, body) = self
            .client
            .send(Method::POST, &url, Some(fault.to_string()), ADMIN_TIMEOUT)
            .await?;
        if status.is_success() {
            Ok(())
        } else {
            Err(format!(
                "{url}: {status} {}",
                String::from_utf8_lossy(&body)
            ))
        }
    }
}

/// The environment that moves a process's clock by `seconds`: libfaketime preloaded
/// (Debian's `faketime` package; `$LIB` is the loader's own library directory), set
/// directly rather than through the `faketime` command, which runs the target as its
/// child and would outlive a kill of it.
fn skewed(seconds: i64) -> Vec<(String, String)> {
    vec![
        (
            "LD_PRELOAD".to_owned(),
            "/usr/$LIB/faketime/libfaketime.so.1".to_owned(),
        ),
        ("FAKETIME".to_owned(), format!("{seconds:+}")),
        ("FAKETIME_DONT_FAKE_MONOTONIC".to_owned(), "1".to_owned()),
    ]
}

/// A TOML value as JSON (a route fault's keys, given in the experiment's TOML).
fn toml_to_json(value: &toml::Value) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

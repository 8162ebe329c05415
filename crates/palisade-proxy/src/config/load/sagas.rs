//! Checks of the saga sections and of routes that start sagas.

use super::{Checker, Step, key};
use crate::config::saga::{Saga, SagaStore};
use crate::config::{Config, Route};

impl Checker<'_> {
    /// `[saga_store]` and every `[[saga]]`.
    pub(super) fn check_sagas(&mut self, config: &Config) {
        if let Some(store) = &config.saga_store {
            self.check_store(store);
        }
        for (i, saga) in config.saga.iter().enumerate() {
            self.check_saga(config, i, saga);
        }
    }

    /// A route with `saga = "…"`: the saga exists, and the route has nothing of an
    /// upstream route's.
    pub(super) fn check_saga_route(
        &mut self,
        config: &Config,
        i: usize,
        saga: &str,
        route: &Route,
    ) {
        let at = |k: &str| vec![key("route"), Step::Index(i), key(k)];
        if !config.saga.iter().any(|s| s.name == saga) {
            let names: Vec<_> = config.saga.iter().map(|s| s.name.as_str()).collect();
            self.problem(
                &at("saga"),
                format!(
                    "{saga:?} is not a defined saga; allowed: {}",
                    if names.is_empty() {
                        "a [[saga]] with this name".to_owned()
                    } else {
                        names.join(", ")
                    }
                ),
            );
        }
        for (name, present) in [
            ("upstream", !route.upstream.is_empty()),
            ("fallback", route.fallback.is_some()),
            ("fault", route.fault.is_some()),
        ] {
            if present {
                self.problem(
                    &at(name),
                    format!(
                        "a route that starts a saga takes no {name}; allowed: saga alone (its steps name their upstreams)"
                    ),
                );
            }
        }
    }

    fn check_store(&mut self, store: &SagaStore) {
        let url = store.url.as_str();
        let ok = match url.split_once("://") {
            Some(("sqlite", path)) => !path.is_empty(),
            Some(("postgres" | "postgresql", rest)) => !rest.is_empty(),
            _ => false,
        };
        if !ok {
            self.problem(
                &[key("saga_store"), key("url")],
                format!(
                    "{url:?} is not a saga store; allowed: \"sqlite://PATH\" or \"postgres://USER@HOST/DB\""
                ),
            );
        }
    }

    fn check_saga(&mut self, config: &Config, i: usize, saga: &Saga) {
        let at = |k: &str| vec![key("saga"), Step::Index(i), key(k)];
        if saga.name.is_empty() {
            self.problem(&at("name"), "empty; allowed: a name routes can give");
        }
        if config.saga[..i].iter().any(|s| s.name == saga.name) {
            self.problem(
                &at("name"),
                format!(
                    "{:?} is defined twice; allowed: one [[saga]] per name",
                    saga.name
                ),
            );
        }
        if saga.step.is_empty() {
            self.problem(
                &at("step"),
                "no [[saga.step]] is defined; allowed: at least one",
            );
        }
        if let Err(error) = saga.compensation_retry.validate() {
            self.problem(
                &at("compensation_retry"),
                format!("{error}; allowed: see docs/CONFIG.md"),
            );
        }
        for (j, step) in saga.step.iter().enumerate() {
            let at = |k: &str| {
                vec![
                    key("saga"),
                    Step::Index(i),
                    key("step"),
                    Step::Index(j),
                    key(k),
                ]
            };
            if step.name.is_empty() || step.name.contains('/') {
                self.problem(
                    &at("name"),
                    format!("{:?}; allowed: a non-empty name without '/'", step.name),
                );
            }
            if saga.step[..j].iter().any(|s| s.name == step.name) {
                self.problem(
                    &at("name"),
                    format!("{:?} is used twice; allowed: one step per name", step.name),
                );
            }
            self.check_upstream_named(config, &at("upstream"), &step.upstream);
            // The step's request, and its compensation's (keys of the inline table
            // `compensate`).
            let step_path = vec![key("saga"), Step::Index(i), key("step"), Step::Index(j)];
            let mut requests = vec![(step_path, &step.method, &step.path)];
            if let Some(c) = &step.compensate {
                requests.push((at("compensate"), &c.method, &c.path));
            }
            for (section, method, path) in requests {
                let key_at = |k: &str| section.iter().cloned().chain([key(k)]).collect::<Vec<_>>();
                if http::Method::from_bytes(method.as_bytes()).is_err() || method.is_empty() {
                    self.problem(
                        &key_at("method"),
                        format!("{method:?} is not an HTTP method; allowed: e.g. \"POST\""),
                    );
                }
                if !path.starts_with('/') {
                    self.problem(
                        &key_at("path"),
                        format!(
                            "{path:?} does not start with '/'; allowed: a path such as \"/reservations/{{saga_id}}\""
                        ),
                    );
                }
            }
        }
    }
}

//! The experiment, checked: Chaos Toolkit's schema read from the file's JSON value, every
//! problem collected with its path (`method[2].provider.type`) and line before anything
//! runs.
//!
//! Kept from the schema: `title`, `description`, `tags`, `configuration`, `secrets`,
//! `steady-state-hypothesis` {`title`, `probes`}, `method`, `rollbacks`; each activity's
//! `type`, `name`, `provider`, `tolerance`, `pauses`, `background`, or a `ref` to an
//! activity named elsewhere in the file. `version`, `contributions` and `extensions` carry
//! nothing this runner acts on and are accepted and left alone. Refused, each with why:
//! `python` providers and `controls` (Python code), `runtime` and `dry` (strategies this
//! runner does not offer), and any other key.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{Map, Value};

use super::activities::Slot;
use super::provider::Provider;
use super::source::Document;
use super::tolerance::Tolerance;
use super::vars::{Vars, configuration_entry, secret_entry};
use crate::config::load::{Problem, render};
use crate::config::spans::Step;

/// The experiment, ready to run.
#[derive(Clone, Debug)]
pub struct Experiment {
    /// Its title, substituted.
    pub title: String,
    /// The file's value as read, for the journal (unsubstituted: no secret in it).
    pub raw: Value,
    /// Checked before and after the method, when given.
    pub hypothesis: Option<Hypothesis>,
    /// The activities that make the experiment, in order.
    pub method: Vec<Activity>,
    /// The activities that undo the method, always played at the end.
    pub rollbacks: Vec<Activity>,
}

/// The steady-state hypothesis.
#[derive(Clone, Debug)]
pub struct Hypothesis {
    /// What it claims.
    pub title: String,
    /// Its probes, each with a tolerance.
    pub probes: Vec<Activity>,
}

/// What an activity is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Observes.
    Probe,
    /// Changes something.
    Action,
}

/// One probe or action.
#[derive(Clone, Debug)]
pub struct Activity {
    /// Probe or action.
    pub kind: Kind,
    /// Its name.
    pub name: String,
    /// What it calls.
    pub provider: Provider,
    /// What its output must be (hypothesis probes).
    pub tolerance: Option<Tolerance>,
    /// Waited before it starts.
    pub pause_before: Duration,
    /// Waited after it ends.
    pub pause_after: Duration,
    /// Runs alongside the next activities; awaited at the end of the method.
    pub background: bool,
    /// The activity as written, for the journal.
    pub raw: Value,
}

const TOP: &[&str] = &[
    "version",
    "title",
    "description",
    "tags",
    "contributions",
    "extensions",
    "configuration",
    "secrets",
    "steady-state-hypothesis",
    "method",
    "rollbacks",
];
/// Reads the checker's way through one document.
pub(super) struct Loader<'d> {
    doc: &'d Document,
    pub(super) problems: Vec<Problem>,
    pub(super) vars: Vars,
}

pub(super) fn key(k: &str) -> Step {
    Step::Key(k.to_owned())
}

pub(super) fn child(path: &[Step], step: Step) -> Vec<Step> {
    let mut out = path.to_vec();
    out.push(step);
    out
}

// === impl Loader ===

impl<'d> Loader<'d> {
    pub(super) fn new(doc: &'d Document) -> Self {
        Self {
            doc,
            problems: Vec::new(),
            vars: Vars::default(),
        }
    }

    pub(super) fn problem(&mut self, path: &[Step], message: impl Into<String>) {
        self.problems.push(Problem {
            line: self.doc.line(path),
            key: if path.is_empty() {
                "-".into()
            } else {
                render(path)
            },
            message: message.into(),
        });
    }

    /// The whole experiment, or `None` with its problems recorded.
    pub(super) fn experiment(
        &mut self,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Option<Experiment> {
        let doc = self.doc;
        let Some(top) = doc.value.as_object() else {
            self.problem(
                &[],
                "an experiment is a mapping of keys; allowed: title, description, method, ...",
            );
            return None;
        };
        self.top_keys(top);
        self.configuration(top, env);
        self.secrets(top, env);
        let title = self.text(top, &[], "title", true);
        let title = self
            .vars
            .substitute_str(&title)
            .as_str()
            .map_or(title, str::to_owned);
        self.text(top, &[], "description", true);
        self.tags(top);

        let hypothesis = self.hypothesis(top);
        if !top.contains_key("method") {
            self.problem(
                &[key("method")],
                "required, and missing; allowed: a list of activities (it may be empty)",
            );
        }
        let method = self.list(top, "method");
        let rollbacks = self.list(top, "rollbacks");
        let mut named: HashMap<String, Activity> = HashMap::new();
        for activity in hypothesis.iter().flat_map(|h| h.probes.iter()) {
            named
                .entry(activity.name.clone())
                .or_insert_with(|| activity.clone());
        }
        for slot in method.iter().chain(rollbacks.iter()) {
            if let Slot::Parsed(activity) = slot {
                named
                    .entry(activity.name.clone())
                    .or_insert_with(|| activity.as_ref().clone());
            }
        }
        let method = self.resolve(method, &named);
        let rollbacks = self.resolve(rollbacks, &named);
        Some(Experiment {
            title,
            raw: doc.value.clone(),
            hypothesis,
            method,
            rollbacks,
        })
    }

    fn top_keys(&mut self, top: &Map<String, Value>) {
        for name in top.keys() {
            let message: String = match name.as_str() {
                k if TOP.contains(&k) => continue,
                "controls" => "controls are Python extensions and are not supported; this runner runs http and process activities only".into(),
                "runtime" => "runtime strategies are not supported: the hypothesis is checked before and after the method, and rollbacks are always played".into(),
                "dry" => "dry runs are not supported; allowed: run the experiment".into(),
                _ => format!("unknown key; allowed: {}", TOP.join(", ")),
            };
            self.problem(&[key(name)], message);
        }
    }

    fn configuration(&mut self, top: &Map<String, Value>, env: &dyn Fn(&str) -> Option<String>) {
        let Some(config) = top.get("configuration") else {
            return;
        };
        let Some(config) = config.as_object() else {
            self.problem(&[key("configuration")], "a mapping of names to values");
            return;
        };
        for (name, value) in config {
            match configuration_entry(value, env) {
                Ok(resolved) => self.vars.add(name, resolved),
                Err(error) => self.problem(&[key("configuration"), key(name)], error.to_string()),
            }
        }
    }

    fn secrets(&mut self, top: &Map<String, Value>, env: &dyn Fn(&str) -> Option<String>) {
        let Some(secrets) = top.get("secrets") else {
            return;
        };
        let Some(scopes) = secrets.as_object() else {
            self.problem(
                &[key("secrets")],
                "a mapping of scopes, each a mapping of names to secrets",
            );
            return;
        };
        for (scope, entries) in scopes {
            let at = [key("secrets"), key(scope)];
            let Some(entries) = entries.as_object() else {
                self.problem(&at, "a scope is a mapping of names to secrets");
                continue;
            };
            for (name, value) in entries {
                match secret_entry(value, env) {
                    Ok(resolved) => self.vars.add(name, resolved),
                    Err(error) => self.problem(&child(&at, key(name)), error.to_string()),
                }
            }
        }
    }

    /// The text at `at.name`; empty (with a problem) when required and missing or empty.
    pub(super) fn text(
        &mut self,
        map: &Map<String, Value>,
        at: &[Step],
        name: &str,
        required: bool,
    ) -> String {
        let path = child(at, key(name));
        match map.get(name) {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            None if !required => String::new(),
            None => {
                self.problem(&path, "required, and missing; allowed: non-empty text");
                String::new()
            }
            Some(_) => {
                self.problem(&path, "must be non-empty text");
                String::new()
            }
        }
    }

    fn tags(&mut self, top: &Map<String, Value>) {
        match top.get("tags") {
            None => {}
            Some(Value::Array(tags)) => {
                for (i, tag) in tags.iter().enumerate() {
                    if tag.as_str().is_none_or(str::is_empty) {
                        self.problem(&[key("tags"), Step::Index(i)], "a tag is non-empty text");
                    }
                }
            }
            Some(_) => self.problem(&[key("tags")], "a list of non-empty texts"),
        }
    }

    fn hypothesis(&mut self, top: &Map<String, Value>) -> Option<Hypothesis> {
        let at = [key("steady-state-hypothesis")];
        let value = top.get("steady-state-hypothesis")?;
        let Some(map) = value.as_object() else {
            self.problem(&at, "a mapping with title and probes");
            return None;
        };
        for name in map
            .keys()
            .filter(|k| !["title", "probes", "controls"].contains(&k.as_str()))
        {
            self.problem(
                &child(&at, key(name)),
                "unknown key; allowed: title, probes",
            );
        }
        if map.contains_key("controls") {
            self.problem(
                &child(&at, key("controls")),
                "controls are Python extensions and are not supported",
            );
        }
        let title = self.text(map, &at, "title", true);
        let mut probes = Vec::new();
        let list_at = child(&at, key("probes"));
        match map.get("probes") {
            None => {}
            Some(Value::Array(items)) => {
                for (i, item) in items.iter().enumerate() {
                    let path = child(&list_at, Step::Index(i));
                    if item.get("ref").is_some() {
                        self.problem(&path, "a steady-state probe is written out in full; allowed: an activity with a tolerance");
                        continue;
                    }
                    if let Some(probe) = self.activity(item, &path, true) {
                        probes.push(probe);
                    }
                }
            }
            Some(_) => self.problem(&list_at, "a list of probes"),
        }
        Some(Hypothesis { title, probes })
    }
}

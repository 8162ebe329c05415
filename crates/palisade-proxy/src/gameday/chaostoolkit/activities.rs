//! Reading the activities: the method and rollbacks (with their `ref`s resolved to the
//! activities named elsewhere in the file), and each probe or action — type, name,
//! provider, tolerance, pauses, background — every problem recorded with its path.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{Map, Value};

use super::format::{Activity, Kind, Loader, child, key};
use super::provider::{self, Provider};
use super::tolerance::{Produced, Tolerance};
use crate::config::spans::Step;

const ACTIVITY: &[&str] = &[
    "type",
    "name",
    "provider",
    "tolerance",
    "pauses",
    "background",
];

/// A method or rollback slot before references are resolved.
pub(super) enum Slot {
    Parsed(Box<Activity>),
    Ref(String, Vec<Step>),
    Broken,
}

// === impl Loader ===

impl Loader<'_> {
    pub(super) fn list(&mut self, top: &Map<String, Value>, name: &str) -> Vec<Slot> {
        let at = [key(name)];
        match top.get(name) {
            None => Vec::new(),
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, item)| {
                    let path = child(&at, Step::Index(i));
                    match item.get("ref") {
                        Some(Value::String(r)) if item.as_object().is_some_and(|m| m.len() == 1) => {
                            Slot::Ref(r.clone(), path)
                        }
                        Some(_) => {
                            self.problem(&path, "a reference is {ref: \"name\"} alone; allowed: the name of an activity in this file");
                            Slot::Broken
                        }
                        None => self.activity(item, &path, false).map_or(Slot::Broken, |a| Slot::Parsed(Box::new(a))),
                    }
                })
                .collect(),
            Some(_) => {
                self.problem(&at, "a list of activities");
                Vec::new()
            }
        }
    }

    pub(super) fn resolve(
        &mut self,
        slots: Vec<Slot>,
        named: &HashMap<String, Activity>,
    ) -> Vec<Activity> {
        let mut out = Vec::with_capacity(slots.len());
        for slot in slots {
            match slot {
                Slot::Parsed(activity) => out.push(*activity),
                Slot::Ref(name, path) => match named.get(&name) {
                    Some(activity) => out.push(activity.clone()),
                    None => self.problem(
                        &child(&path, key("ref")),
                        format!("no activity named {name:?} in this file; allowed: the name of a probe or action written out here"),
                    ),
                },
                Slot::Broken => {}
            }
        }
        out
    }

    /// One activity at `path`; a hypothesis probe must have a tolerance.
    pub(super) fn activity(
        &mut self,
        value: &Value,
        path: &[Step],
        in_hypothesis: bool,
    ) -> Option<Activity> {
        let Some(map) = value.as_object() else {
            self.problem(
                path,
                "an activity is a mapping with type, name and provider",
            );
            return None;
        };
        let before = self.problems.len();
        for name in map.keys() {
            match name.as_str() {
                k if ACTIVITY.contains(&k) => {}
                "controls" => self.problem(
                    &child(path, key(name)),
                    "controls are Python extensions and are not supported",
                ),
                _ => self.problem(
                    &child(path, key(name)),
                    format!("unknown key; allowed: {}", ACTIVITY.join(", ")),
                ),
            }
        }
        let kind = match map.get("type").and_then(Value::as_str) {
            Some("probe") => Kind::Probe,
            Some("action") => Kind::Action,
            _ => {
                self.problem(&child(path, key("type")), "allowed: probe, action");
                Kind::Probe
            }
        };
        if in_hypothesis && kind != Kind::Probe {
            self.problem(
                &child(path, key("type")),
                "the hypothesis holds probes only; allowed: probe",
            );
        }
        let name = self.text(map, path, "name", true);
        let provider_at = child(path, key("provider"));
        let provider = match map.get("provider") {
            Some(p) => provider::parse(self, p, &provider_at),
            None => {
                self.problem(
                    &provider_at,
                    "required, and missing; allowed: an http or process provider",
                );
                None
            }
        };
        let tolerance = match map.get("tolerance") {
            Some(t) => {
                let t = self.vars.substitute(t);
                // Checked even when the provider is not: its type alone says the output.
                let produced = provider.as_ref().map(Provider::produced).or_else(|| {
                    match map.get("provider")?.get("type")?.as_str()? {
                        "http" => Some(Produced::Http),
                        "process" => Some(Produced::Process),
                        _ => None,
                    }
                });
                match produced.map(|p| Tolerance::parse(&t, p)) {
                    Some(Ok(t)) => Some(t),
                    Some(Err((sub, message))) => {
                        let mut at = child(path, key("tolerance"));
                        if let Some(name) = sub.strip_prefix('.') {
                            at.push(key(name));
                        } else if let Some(i) =
                            sub.strip_prefix('[').and_then(|s| s.strip_suffix(']'))
                        {
                            at.push(Step::Index(i.parse().unwrap_or_default()));
                        }
                        self.problem(&at, message);
                        None
                    }
                    None => None,
                }
            }
            None if in_hypothesis => {
                self.problem(&child(path, key("tolerance")), "a steady-state probe needs a tolerance; allowed: an integer, a list, a boolean, a range or regex tolerance");
                None
            }
            None => None,
        };
        let (pause_before, pause_after) = self.pauses(map.get("pauses"), path);
        let background = match map.get("background") {
            None => false,
            Some(Value::Bool(true)) if in_hypothesis => {
                self.problem(
                    &child(path, key("background")),
                    "steady-state probes run one after the other; allowed: false",
                );
                false
            }
            Some(Value::Bool(b)) => *b,
            Some(_) => {
                self.problem(&child(path, key("background")), "allowed: true, false");
                false
            }
        };
        let provider = provider?;
        (self.problems.len() == before).then(|| Activity {
            kind,
            name,
            provider,
            tolerance,
            pause_before,
            pause_after,
            background,
            raw: value.clone(),
        })
    }

    fn pauses(&mut self, value: Option<&Value>, path: &[Step]) -> (Duration, Duration) {
        let at = child(path, key("pauses"));
        let Some(value) = value else {
            return (Duration::ZERO, Duration::ZERO);
        };
        let value = self.vars.substitute(value);
        let Some(map) = value.as_object() else {
            self.problem(&at, "a mapping with before and after, in seconds");
            return (Duration::ZERO, Duration::ZERO);
        };
        for name in map
            .keys()
            .filter(|k| !["before", "after"].contains(&k.as_str()))
        {
            self.problem(
                &child(&at, key(name)),
                "unknown key; allowed: before, after",
            );
        }
        let mut pause = |name: &str| match map.get(name) {
            None => Duration::ZERO,
            Some(v) => match seconds(v) {
                Some(d) => d,
                None => {
                    self.problem(&child(&at, key(name)), "seconds, a number from 0 to 86400");
                    Duration::ZERO
                }
            },
        };
        (pause("before"), pause("after"))
    }
}

/// A number of seconds (0 to a day) as a duration.
pub(super) fn seconds(value: &Value) -> Option<Duration> {
    let n = value.as_f64()?;
    (n.is_finite() && (0.0..=86_400.0).contains(&n)).then(|| Duration::from_secs_f64(n))
}

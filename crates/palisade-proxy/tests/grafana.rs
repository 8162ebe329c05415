//! The Grafana dashboard (`deploy/grafana/palisade.json`) against the code: every metric
//! its queries name is one the code registers — a string literal `"palisade_…"` in the
//! sources of palisade, palisade-proxy or palisade-fleet, read now, so a renamed metric
//! fails here — every panel has a title, the `${DS_PROMETHEUS}` data source and an id of
//! its own, and every query is PromQL that `promtool` accepts once the dashboard's
//! variables are filled in (skipped loudly without `promtool`; a failure in CI).

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use regex::Regex;
use serde_json::Value;
use support::*;

/// The workspace's root.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn dashboard() -> Value {
    let path = root().join("deploy/grafana/palisade.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path:?} is not JSON: {e}"))
}

/// Every panel, rows and the panels inside collapsed rows included.
fn panels(dashboard: &Value) -> Vec<&Value> {
    fn walk<'a>(list: &'a Value, out: &mut Vec<&'a Value>) {
        for panel in list.as_array().into_iter().flatten() {
            out.push(panel);
            walk(&panel["panels"], out);
        }
    }
    let mut out = Vec::new();
    walk(&dashboard["panels"], &mut out);
    out
}

/// Every PromQL expression: the panels' targets and the template variables' queries,
/// each with where it is.
fn queries(dashboard: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for panel in panels(dashboard) {
        for (i, target) in panel["targets"]
            .as_array()
            .into_iter()
            .flatten()
            .enumerate()
        {
            let expr = target["expr"].as_str().unwrap_or_default();
            out.push((format!("panel {} target {i}", panel["title"]), expr.into()));
        }
    }
    for var in dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if var["type"] == "query" {
            let query = var["query"]["query"].as_str().or(var["query"].as_str());
            out.push((
                format!("variable {}", var["name"]),
                query.unwrap_or_default().into(),
            ));
        }
    }
    out
}

/// Every string literal `"palisade_…"` (a whole literal of lowercase letters, digits and
/// `_`) in the `.rs` files under `dir`, their unit tests left out.
fn registered_in(dir: &Path, names: &mut BTreeSet<String>) {
    let literal = Regex::new(r#""(palisade_[a-z0-9_]*[a-z0-9])""#).unwrap();
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{dir:?}: {e}")) {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            registered_in(&path, names);
        } else if path.extension().is_some_and(|e| e == "rs")
            && path.file_name().is_some_and(|n| n != "tests.rs")
        {
            let text = std::fs::read_to_string(&path).expect("a source file");
            let code = ["\n#[cfg(test)]", "\n#[cfg(all(test"]
                .iter()
                .filter_map(|marker| text.find(marker))
                .min()
                .map_or(text.as_str(), |end| &text[..end]);
            for m in literal.captures_iter(code) {
                names.insert(m[1].to_string());
            }
        }
    }
}

/// The metric names the code registers.
fn registered() -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for krate in ["palisade", "palisade-proxy", "palisade-fleet"] {
        registered_in(&root().join("crates").join(krate).join("src"), &mut names);
    }
    names
}

#[test]
fn every_metric_the_dashboard_queries_is_one_the_code_registers() {
    let registered = registered();
    for known in ["palisade_requests_total", "palisade_circuit_state"] {
        assert!(
            registered.contains(known),
            "the scan of the sources missed {known}: {registered:#?}"
        );
    }
    let metric = Regex::new(r"palisade_[a-z_]+").unwrap();
    let mut used = BTreeSet::new();
    let mut unknown = Vec::new();
    for (place, expr) in queries(&dashboard()) {
        assert!(!expr.trim().is_empty(), "{place} has no query");
        for m in metric.find_iter(&expr) {
            let name = m.as_str();
            // A histogram's series: `_bucket`, `_sum` and `_count` of a `_seconds` metric
            // (the sidecar's exporter gives buckets to the metrics ending in `seconds`).
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| name.strip_suffix(suffix))
                .filter(|base| base.ends_with("_seconds"))
                .unwrap_or(name);
            if registered.contains(base) {
                used.insert(base.to_string());
            } else {
                unknown.push(format!("{place}: {name}"));
            }
        }
    }
    assert!(
        unknown.is_empty(),
        "the dashboard queries metrics the code does not register: {unknown:#?}\n\
         registered: {registered:#?}"
    );
    assert!(
        used.len() >= 15,
        "only {} metrics shown: {used:?}",
        used.len()
    );
}

#[test]
fn every_panel_has_a_title_the_prometheus_variable_and_an_id_of_its_own() {
    let dashboard = dashboard();
    let variables: Vec<_> = dashboard["templating"]["list"]
        .as_array()
        .expect("templating.list")
        .iter()
        .map(|v| v["name"].as_str().unwrap_or_default())
        .collect();
    for name in ["DS_PROMETHEUS", "upstream", "route"] {
        assert!(
            variables.contains(&name),
            "no variable {name}: {variables:?}"
        );
    }
    let uses_variable = |ds: &Value| ds["uid"] == "${DS_PROMETHEUS}" && ds["type"] == "prometheus";

    let mut ids = BTreeSet::new();
    let all = panels(&dashboard);
    assert!(all.len() >= 15, "only {} panels", all.len());
    for panel in all {
        let title = panel["title"].as_str().unwrap_or_default();
        assert!(!title.trim().is_empty(), "a panel has no title: {panel:#}");
        assert!(
            uses_variable(&panel["datasource"]),
            "panel {title:?}: datasource is not ${{DS_PROMETHEUS}}: {}",
            panel["datasource"]
        );
        let id = panel["id"]
            .as_u64()
            .unwrap_or_else(|| panic!("panel {title:?} has no id"));
        assert!(
            ids.insert(id),
            "panel id {id} is used twice (again by {title:?})"
        );
        if panel["type"] == "row" {
            continue;
        }
        let targets = panel["targets"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        assert!(!targets.is_empty(), "panel {title:?} has no query");
        for target in targets {
            assert!(
                uses_variable(&target["datasource"]),
                "panel {title:?}: a target's datasource is not ${{DS_PROMETHEUS}}"
            );
        }
    }
}

#[tokio::test]
async fn every_query_is_promql_that_promtool_accepts() {
    if !installed("promtool", "prometheus") {
        return;
    }
    // Each query as a recording rule, the dashboard's variables filled in as Grafana
    // would with "All" selected.
    let mut rules = String::from("groups:\n  - name: grafana\n    rules:\n");
    for (i, (place, expr)) in queries(&dashboard()).into_iter().enumerate() {
        // A variable's label_values(SELECTOR, LABEL) is Grafana's: its selector is PromQL.
        let expr = match expr
            .strip_prefix("label_values(")
            .and_then(|e| e.strip_suffix(')'))
            .and_then(|e| e.rsplit_once(','))
        {
            Some((selector, _label)) => selector.to_string(),
            None => expr,
        };
        let filled = expr
            .replace("$__rate_interval", "5m")
            .replace("$instance", ".*")
            .replace("$upstream", ".*")
            .replace("$route", ".*");
        assert!(
            !filled.contains('$'),
            "{place}: a variable is left: {filled}"
        );
        rules.push_str(&format!(
            "      # {place}\n      - record: dashboard:query_{i}\n        expr: |\n"
        ));
        for line in filled.lines() {
            rules.push_str(&format!("          {line}\n"));
        }
    }
    let file = temp_path("grafana-queries", "yml");
    std::fs::write(&file, &rules).expect("write the rules");
    let (ok, said) = promtool(&["check".as_ref(), "rules".as_ref(), file.as_os_str()]).await;
    let _ = std::fs::remove_file(&file);
    assert!(
        ok,
        "promtool refuses the dashboard's queries:\n{said}\n{rules}"
    );
}

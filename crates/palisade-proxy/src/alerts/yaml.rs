//! The rules as a Prometheus rule file (`groups:`), written by hand: every string is
//! written double-quoted with JSON's escapes, which YAML reads the same, so no value can
//! break the file's structure whatever a name in the config holds.

use std::fmt::Write as _;

use super::promql::is_unprintable;
use super::rule::{Group, Rule};
use crate::runbooks;

/// The rule file of `groups`, with a comment naming `source`; runbook links go to
/// `runbook_base`.
pub fn render(source: &str, groups: &[Group], runbook_base: &str) -> String {
    let mut out = String::new();
    out.push_str("# Prometheus alerting rules for ");
    out.extend(
        source
            .chars()
            .map(|c| if is_unprintable(c) { '?' } else { c }),
    );
    out.push_str(", written by `palisade alerts`.\n");
    out.push_str("# Load them with `rule_files`; each alert's runbook_url says what to do.\n");
    out.push_str("groups:\n");
    for group in groups {
        let _ = writeln!(out, "  - name: {}", quoted(&group.name));
        out.push_str("    rules:\n");
        for rule in &group.rules {
            write_rule(&mut out, rule, runbook_base);
        }
    }
    out
}

fn write_rule(out: &mut String, rule: &Rule, runbook_base: &str) {
    let _ = writeln!(out, "      - alert: {}", quoted(rule.alert.name()));
    write_expr(out, &rule.expr);
    if let Some(hold) = rule.hold {
        let _ = writeln!(out, "        for: {hold}");
    }
    out.push_str("        labels:\n");
    let _ = writeln!(out, "          severity: {}", rule.severity.as_str());
    for (name, value) in &rule.labels {
        let _ = writeln!(out, "          {name}: {}", quoted(value));
    }
    out.push_str("        annotations:\n");
    let _ = writeln!(out, "          summary: {}", quoted(&rule.summary));
    let _ = writeln!(out, "          description: {}", quoted(&rule.description));
    let url = runbooks::url(runbook_base, &rule.alert.anchor());
    let _ = writeln!(out, "          runbook_url: {}", quoted(&url));
}

/// The expression as a literal block, line by line as its rule wrote it. PromQL holds
/// no newline inside its strings (they are escaped), and the `--selector` scope refuses
/// control characters, so every line of it is the expression's.
fn write_expr(out: &mut String, expr: &str) {
    out.push_str("        expr: |-\n");
    for line in expr.lines() {
        let _ = writeln!(out, "          {}", line.trim_end());
    }
}

/// `value` as a double-quoted scalar (JSON's escapes, and YAML's line breaks escaped
/// too).
fn quoted(value: &str) -> String {
    let json = serde_json::Value::String(value.to_owned()).to_string();
    json.chars()
        .map(|c| match c {
            c if is_unprintable(c) => format!("\\u{:04x}", u32::from(c)),
            c => c.to_string(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::rule::{Alert, Severity};

    #[test]
    fn a_rule_is_written_with_every_string_quoted() {
        let rule = Rule {
            alert: Alert::CircuitOpen,
            expr: "m{policy=\"a\\\"b\"} == 1\n  or m == 2".to_owned(),
            hold: Some("1m"),
            severity: Severity::Warning,
            labels: vec![("upstream", "a: b\n- c\u{85}".to_owned())],
            summary: "s {{ $labels.policy }}".to_owned(),
            description: "d".to_owned(),
        };
        let groups = [Group {
            name: "g".to_owned(),
            rules: vec![rule],
        }];
        let text = render("f\r.toml", &groups, "https://x/R.md");
        let expected = r#"groups:
  - name: "g"
    rules:
      - alert: "PalisadeCircuitOpen"
        expr: |-
          m{policy="a\"b"} == 1
            or m == 2
        for: 1m
        labels:
          severity: warning
          upstream: "a: b\n- c\u0085"
        annotations:
          summary: "s {{ $labels.policy }}"
          description: "d"
          runbook_url: "https://x/R.md#palisadecircuitopen"
"#;
        assert!(text.ends_with(expected), "{text}");
        assert!(text.starts_with("# Prometheus alerting rules for f?.toml,"));
    }
}

//! PromQL pieces: label matchers with their values escaped, and the selector every rule
//! adds (`--selector`), checked before it is used.

/// The matchers added to every series selector (`--selector`), e.g. `job="checkout"`,
/// so that rules for one sidecar do not read another's series.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Scope {
    extra: Vec<String>,
}

// === impl Scope ===

impl Scope {
    /// Reads `job="checkout", env=~"prod|staging"` (braces optional); an error names
    /// what is wrong where.
    pub fn parse(selector: &str) -> Result<Self, String> {
        if selector.chars().any(is_unprintable) {
            return Err("control characters are not allowed; write them as escapes".to_owned());
        }
        let inner = selector.trim();
        let inner = inner
            .strip_prefix('{')
            .and_then(|s| s.strip_suffix('}'))
            .unwrap_or(inner);
        let mut extra = Vec::new();
        let mut rest = inner.trim_start();
        while !rest.is_empty() {
            let (matcher, after) = matcher(rest)?;
            extra.push(matcher);
            rest = after.trim_start();
            if let Some(after_comma) = rest.strip_prefix(',') {
                rest = after_comma.trim_start();
            } else if !rest.is_empty() {
                return Err(format!("expected ',' before {rest:?}"));
            }
        }
        Ok(Self { extra })
    }

    /// `metric{matchers…, the scope's…}`.
    pub fn select(&self, metric: &str, matchers: &[String]) -> String {
        let all: Vec<&str> = matchers
            .iter()
            .chain(&self.extra)
            .map(String::as_str)
            .collect();
        format!("{metric}{{{}}}", all.join(","))
    }
}

/// One `name op "value"` at the start of `text`, and the text after it.
fn matcher(text: &str) -> Result<(String, &str), String> {
    let name_end = text
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(text.len());
    let name = &text[..name_end];
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
        return Err(format!("expected a label name at {text:?}"));
    }
    let rest = text[name_end..].trim_start();
    let op = ["=~", "!~", "!=", "="]
        .into_iter()
        .find(|op| rest.starts_with(op))
        .ok_or_else(|| format!("expected =, !=, =~ or !~ after {name:?}"))?;
    let rest = rest[op.len()..].trim_start();
    let len = quoted_len(rest).ok_or_else(|| {
        format!("expected a double-quoted value after {name}{op}, found {rest:?}")
    })?;
    Ok((format!("{name}{op}{}", &rest[..len]), &rest[len..]))
}

/// The length of the double-quoted string `text` starts with, quotes included.
fn quoted_len(text: &str) -> Option<usize> {
    let mut chars = text.char_indices();
    if chars.next()?.1 != '"' {
        return None;
    }
    let mut escaped = false;
    for (i, c) in chars {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => return Some(i + 1),
            _ => {}
        }
    }
    None
}

/// `label="value"`.
pub fn eq(label: &str, value: &str) -> String {
    format!("{label}={}", quote(value))
}

/// `label=~"regex"`: `regex` is a regular expression, quoted as it is.
pub fn matches(label: &str, regex: &str) -> String {
    format!("{label}=~{}", quote(regex))
}

/// `label=~"(a|b)"` matching exactly one of `values` (Prometheus anchors the regex).
pub fn one_of<'a>(label: &str, values: impl IntoIterator<Item = &'a str>) -> String {
    let escaped: Vec<String> = values.into_iter().map(regex_escape).collect();
    matches(label, &format!("({})", escaped.join("|")))
}

/// A PromQL string literal of `value`.
fn quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if is_unprintable(c) => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            _ => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A control character, or a character YAML may take for a line break: none is written
/// as it is, so that an expression's lines are its own.
pub(super) fn is_unprintable(c: char) -> bool {
    c.is_control() || c == '\u{2028}' || c == '\u{2029}'
}

/// `literal` with RE2's special characters escaped.
fn regex_escape(literal: &str) -> String {
    let mut out = String::with_capacity(literal.len());
    for c in literal.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_escaped_as_promql_strings_and_regexes() {
        assert_eq!(eq("route", r#"/a"b\c"#), r#"route="/a\"b\\c""#);
        assert_eq!(eq("route", "a\nb\u{2028}"), r#"route="a\u000ab\u2028""#);
        assert_eq!(
            one_of("policy", ["up/127.0.0.1:80", "up/[::1]:80"]),
            r#"policy=~"(up/127\\.0\\.0\\.1:80|up/\\[::1\\]:80)""#
        );
    }

    #[test]
    fn a_selector_is_read_into_matchers_added_to_every_series() {
        let scope = Scope::parse(r#"{job="a", env=~"prod|x\"y" ,zone!="" }"#).unwrap();
        assert_eq!(
            scope.select("m", &[eq("route", "/")]),
            r#"m{route="/",job="a",env=~"prod|x\"y",zone!=""}"#
        );
        assert_eq!(Scope::parse("  ").unwrap(), Scope::default());
    }

    #[test]
    fn a_bad_selector_is_refused_with_what_is_wrong() {
        for (selector, says) in [
            ("job", "expected =, !=, =~ or !~"),
            (r#"job="a" env="b""#, "expected ','"),
            (r#"job=a"#, "double-quoted"),
            (r#"job="a"#, "double-quoted"),
            (r#"1job="a""#, "label name"),
            (r#"="a""#, "label name"),
            ("job=\"a\nb\"", "control characters"),
        ] {
            let error = Scope::parse(selector).unwrap_err();
            assert!(error.contains(says), "{selector}: {error}");
        }
    }
}

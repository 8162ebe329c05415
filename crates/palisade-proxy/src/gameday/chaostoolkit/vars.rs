//! `configuration` and `secrets`, and `${name}` substitution from them, as Chaos Toolkit
//! does it (Python's `string.Template`, `safe_substitute`).
//!
//! A string that is exactly one `${name}` (or `$name`) becomes the value itself, with its
//! type: `"timeout": "${t}"` with `t = 5` is the number 5. Inside longer text the value is
//! written as Python's `str` would. `$$` is a `$`; a name found nowhere is left as written.
//! Configuration is looked up first, then each secrets scope in file order. Values are
//! resolved once, when the file is read: an environment variable that is missing and has
//! no default is a problem of the file, as in Chaos Toolkit.

use serde_json::Value;

/// The names an experiment can substitute, in lookup order.
#[derive(Clone, Debug, Default)]
pub(super) struct Vars {
    entries: Vec<(String, Value)>,
}

/// Why a configuration or secret entry could not be resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum VarError {
    /// `{type: env}` naming a variable that is not set, with no default.
    Unset(String),
    /// A dict form this runner does not support (a dynamic probe, a vault secret).
    Unsupported(String),
    /// A shape that is no entry at all.
    Invalid(String),
}

impl std::fmt::Display for VarError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            VarError::Unset(key) => write!(
                f,
                "the environment variable {key} is not set and the entry has no default; allowed: set it, or add \"default\""
            ),
            VarError::Unsupported(what) => write!(f, "{what}"),
            VarError::Invalid(what) => write!(f, "{what}"),
        }
    }
}

// === impl Vars ===

impl Vars {
    /// Adds `name`, unless an earlier source already has it.
    pub(super) fn add(&mut self, name: &str, value: Value) {
        if !self.entries.iter().any(|(n, _)| n == name) {
            self.entries.push((name.to_owned(), value));
        }
    }

    fn get(&self, name: &str) -> Option<&Value> {
        self.entries.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    /// `value` with every string in it substituted, recursively.
    pub(super) fn substitute(&self, value: &Value) -> Value {
        match value {
            Value::String(text) => self.substitute_str(text),
            Value::Array(items) => Value::Array(items.iter().map(|v| self.substitute(v)).collect()),
            Value::Object(map) => Value::Object(
                map.iter()
                    .map(|(k, v)| (k.clone(), self.substitute(v)))
                    .collect(),
            ),
            other => other.clone(),
        }
    }

    /// One string substituted: the value itself when the string is one whole pattern.
    pub(super) fn substitute_str(&self, text: &str) -> Value {
        if let Some(name) = whole_pattern(text) {
            if let Some(value) = self.get(name) {
                return value.clone();
            }
        }
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(at) = rest.find('$') {
            out.push_str(&rest[..at]);
            let after = &rest[at + 1..];
            if let Some(tail) = after.strip_prefix('$') {
                out.push('$');
                rest = tail;
                continue;
            }
            let (name, consumed) = match after.strip_prefix('{') {
                Some(braced) => match braced.find('}') {
                    Some(end) if is_identifier(&braced[..end]) => (&braced[..end], end + 2),
                    _ => ("", 0),
                },
                None => {
                    let len = identifier_len(after);
                    (&after[..len], len)
                }
            };
            match self.get(name).filter(|_| consumed > 0) {
                Some(value) => {
                    out.push_str(&python_str(value));
                    rest = &after[consumed..];
                }
                None => {
                    out.push('$');
                    rest = after;
                }
            }
        }
        out.push_str(rest);
        Value::String(out)
    }
}

/// The name when `text` is exactly `${name}` or `$name`.
fn whole_pattern(text: &str) -> Option<&str> {
    let rest = text.strip_prefix('$')?;
    let name = rest
        .strip_prefix('{')
        .and_then(|r| r.strip_suffix('}'))
        .unwrap_or(rest);
    is_identifier(name).then_some(name)
}

/// Python's `Template` identifier: `[_a-zA-Z][_a-zA-Z0-9]*`.
fn is_identifier(name: &str) -> bool {
    !name.is_empty() && identifier_len(name) == name.len()
}

fn identifier_len(text: &str) -> usize {
    let mut len = 0;
    for (i, c) in text.char_indices() {
        let ok = c == '_' || c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit());
        if !ok {
            break;
        }
        len = i + c.len_utf8();
    }
    len
}

/// A value as Python's `str()` writes it inside text.
fn python_str(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::Null => "None".into(),
        other => other.to_string(),
    }
}

/// A `configuration` entry's value: a literal, or `{type: env, key, default?,
/// env_var_type?}` read from the environment.
pub(super) fn configuration_entry(
    value: &Value,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Value, VarError> {
    let Some(map) = value.as_object() else {
        return Ok(value.clone());
    };
    match map.get("type").and_then(Value::as_str) {
        Some("env") => {
            let key = map.get("key").and_then(Value::as_str).ok_or_else(|| {
                VarError::Invalid("an env entry needs \"key\", the variable's name".into())
            })?;
            let raw = match (env(key), map.get("default")) {
                (Some(found), _) => Value::String(found),
                (None, Some(default)) => default.clone(),
                (None, None) => return Err(VarError::Unset(key.to_owned())),
            };
            convert(raw, map.get("env_var_type").and_then(Value::as_str))
        }
        Some("probe") => Err(VarError::Unsupported(
            "a dynamic configuration (a probe run to find the value) is not supported; allowed: a literal value or {type: env, key, default}".into(),
        )),
        // Chaos Toolkit takes any other mapping as a literal value.
        _ => Ok(value.clone()),
    }
}

/// An environment value cast as `env_var_type` says (`int`, `float`, `str`, `bytes`).
fn convert(raw: Value, kind: Option<&str>) -> Result<Value, VarError> {
    let Value::String(text) = &raw else {
        return Ok(raw);
    };
    let bad = |k: &str| VarError::Invalid(format!("{text:?} is no {k}"));
    match kind {
        None | Some("str" | "bytes") => Ok(raw.clone()),
        Some("int") => text
            .trim()
            .parse::<i64>()
            .map(Value::from)
            .map_err(|_| bad("int")),
        Some("float") => text
            .trim()
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map(Value::Number)
            .ok_or_else(|| bad("float")),
        Some(other) => Err(VarError::Invalid(format!(
            "env_var_type {other:?} is not known; allowed: int, float, str, bytes"
        ))),
    }
}

/// A `secrets` entry's value: a literal, or `{type: env, key}`.
pub(super) fn secret_entry(
    value: &Value,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Value, VarError> {
    let Some(map) = value.as_object() else {
        return Ok(value.clone());
    };
    match map.get("type").and_then(Value::as_str) {
        Some("env") => {
            let key = map.get("key").and_then(Value::as_str).ok_or_else(|| {
                VarError::Invalid("an env secret needs \"key\", the variable's name".into())
            })?;
            env(key)
                .map(Value::String)
                .ok_or_else(|| VarError::Unset(key.to_owned()))
        }
        Some(other) => Err(VarError::Unsupported(format!(
            "secrets of type {other:?} are not supported; allowed: a literal value or {{type: env, key}}"
        ))),
        None => Ok(value.clone()),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn vars() -> Vars {
        let mut vars = Vars::default();
        vars.add("host", json!("127.0.0.1:80"));
        vars.add("t", json!(5));
        vars.add("on", json!(true));
        vars.add("host", json!("shadowed"));
        vars
    }

    #[test]
    fn a_whole_pattern_keeps_its_type_and_text_gets_pythons_str() {
        let vars = vars();
        assert_eq!(vars.substitute_str("${t}"), json!(5));
        assert_eq!(vars.substitute_str("$t"), json!(5));
        assert_eq!(
            vars.substitute_str("http://${host}/x"),
            json!("http://127.0.0.1:80/x")
        );
        assert_eq!(vars.substitute_str("t=$t, on=${on}"), json!("t=5, on=True"));
    }

    #[test]
    fn unknown_names_and_escapes_are_left_as_python_leaves_them() {
        let vars = vars();
        assert_eq!(vars.substitute_str("${nope}"), json!("${nope}"));
        assert_eq!(vars.substitute_str("a $nope b"), json!("a $nope b"));
        assert_eq!(vars.substitute_str("cost: $$5 ${t}"), json!("cost: $5 5"));
        assert_eq!(vars.substitute_str("${ bad }"), json!("${ bad }"));
        assert_eq!(vars.substitute_str("end $"), json!("end $"));
    }

    #[test]
    fn substitution_reaches_into_lists_and_mappings() {
        let got = vars().substitute(&json!({"a": ["${t}", {"b": "${host}"}], "n": 1}));
        assert_eq!(got, json!({"a": [5, {"b": "127.0.0.1:80"}], "n": 1}));
    }

    #[test]
    fn configuration_reads_the_environment_with_defaults_and_types() {
        let env = |k: &str| (k == "PORT").then(|| "8080".to_owned());
        let entry = json!({"type": "env", "key": "PORT", "env_var_type": "int"});
        assert_eq!(configuration_entry(&entry, &env), Ok(json!(8080)));
        let entry = json!({"type": "env", "key": "HOST", "default": "localhost"});
        assert_eq!(configuration_entry(&entry, &env), Ok(json!("localhost")));
        let entry = json!({"type": "env", "key": "HOST"});
        assert_eq!(
            configuration_entry(&entry, &env),
            Err(VarError::Unset("HOST".into()))
        );
        assert_eq!(configuration_entry(&json!("lit"), &env), Ok(json!("lit")));
        let probe = json!({"type": "probe", "name": "x"});
        assert!(matches!(
            configuration_entry(&probe, &env),
            Err(VarError::Unsupported(_))
        ));
    }

    #[test]
    fn secrets_come_from_the_environment_or_literally_and_nothing_else() {
        let env = |k: &str| (k == "TOKEN").then(|| "s3cret".to_owned());
        assert_eq!(
            secret_entry(&json!({"type": "env", "key": "TOKEN"}), &env),
            Ok(json!("s3cret"))
        );
        assert!(matches!(
            secret_entry(&json!({"type": "vault", "path": "x"}), &env),
            Err(VarError::Unsupported(_))
        ));
        assert_eq!(
            secret_entry(&json!({"type": "env", "key": "NOPE"}), &env),
            Err(VarError::Unset("NOPE".into()))
        );
    }
}

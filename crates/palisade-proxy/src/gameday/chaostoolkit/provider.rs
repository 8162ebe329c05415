//! An activity's provider, checked: `http` (a request, its answer the output) and
//! `process` (a program, its exit code and output the output). `python` is refused:
//! it calls Python functions, and this runner is no Python interpreter.
//!
//! Values are substituted from `configuration` and `secrets` as Chaos Toolkit does:
//! `url`, `method`, `headers`, `timeout`, `arguments` and `expected_status` of an http
//! provider, `arguments` and `timeout` of a process provider (its `path` as written).

use std::path::{Path, PathBuf};
use std::time::Duration;

use http::Method;
use serde_json::{Map, Value};

use super::activities::seconds;
use super::format::Loader;
use super::tolerance::Produced;
use crate::config::spans::Step;

/// Chaos Toolkit's requests have no timeout by default; this runner bounds every call.
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(30);

const HTTP_KEYS: &[&str] = &[
    "type",
    "url",
    "method",
    "headers",
    "arguments",
    "timeout",
    "expected_status",
    "verify_tls",
    "secrets",
];
const PROCESS_KEYS: &[&str] = &["type", "path", "arguments", "timeout", "secrets"];

/// What an activity calls.
#[derive(Clone, Debug)]
pub enum Provider {
    /// An HTTP request.
    Http(HttpCall),
    /// A program run to its end.
    Process(ProcessCall),
}

/// An HTTP request.
#[derive(Clone, Debug)]
pub struct HttpCall {
    /// `http://host:port/path?query`.
    pub url: String,
    /// Default GET.
    pub method: Method,
    /// Sent as given.
    pub headers: Vec<(String, String)>,
    /// GET: the query; otherwise the body (JSON when the Content-Type says so, a form
    /// for a mapping, the text itself for a string).
    pub arguments: Option<Value>,
    /// For the connection to be made.
    pub connect: Duration,
    /// For the whole answer, once connected.
    pub read: Duration,
    /// When given, any other status fails the activity.
    pub expected_status: Option<u16>,
}

/// A program run through the guard, in its own process group.
#[derive(Clone, Debug)]
pub struct ProcessCall {
    /// The program, found on `PATH` when the file was read.
    pub program: PathBuf,
    /// Its arguments.
    pub arguments: Arguments,
    /// Killed (with its process group) when it runs longer; none by default, as in
    /// Chaos Toolkit.
    pub timeout: Option<Duration>,
}

/// A process's arguments: a list (run directly) or a string (run by `sh -c`).
#[derive(Clone, Debug)]
pub enum Arguments {
    /// Each one argument.
    List(Vec<String>),
    /// Appended to the program's path and run by the shell.
    Shell(String),
}

// === impl Provider ===

impl Provider {
    /// The shape of its output.
    pub(super) fn produced(&self) -> Produced {
        match self {
            Provider::Http(_) => Produced::Http,
            Provider::Process(_) => Produced::Process,
        }
    }
}

fn at(path: &[Step], name: &str) -> Vec<Step> {
    let mut out = path.to_vec();
    out.push(Step::Key(name.to_owned()));
    out
}

/// The provider at `path`, or `None` with its problems recorded in `loader`.
pub(super) fn parse(loader: &mut Loader<'_>, value: &Value, path: &[Step]) -> Option<Provider> {
    let Some(map) = value.as_object() else {
        loader.problem(path, "a mapping with type and its settings");
        return None;
    };
    let before = loader.problems.len();
    let kind = map.get("type").and_then(Value::as_str).unwrap_or_default();
    let allowed = match kind {
        "http" => HTTP_KEYS,
        "process" => PROCESS_KEYS,
        "python" => {
            loader.problem(&at(path, "type"), "python providers call Python functions and are not supported; only http and process providers are");
            return None;
        }
        other => {
            loader.problem(
                &at(path, "type"),
                format!(
                    "provider type {other:?} is not supported; only http and process providers are"
                ),
            );
            return None;
        }
    };
    for name in map.keys().filter(|k| !allowed.contains(&k.as_str())) {
        loader.problem(
            &at(path, name),
            format!("unknown key; allowed: {}", allowed.join(", ")),
        );
    }
    let provider = if kind == "http" {
        http(loader, map, path).map(Provider::Http)
    } else {
        process(loader, map, path).map(Provider::Process)
    };
    provider.filter(|_| loader.problems.len() == before)
}

fn http(loader: &mut Loader<'_>, map: &Map<String, Value>, path: &[Step]) -> Option<HttpCall> {
    let get = |loader: &Loader<'_>, name: &str| map.get(name).map(|v| loader.vars.substitute(v));
    let url = match get(loader, "url") {
        Some(Value::String(url))
            if url.starts_with("http://") && url.parse::<http::Uri>().is_ok() =>
        {
            url
        }
        Some(Value::String(url)) if url.starts_with("https://") => {
            loader.problem(
                &at(path, "url"),
                "https is not supported by this runner's client; allowed: an http:// URL",
            );
            return None;
        }
        None => {
            loader.problem(
                &at(path, "url"),
                "required, and missing; allowed: an http:// URL",
            );
            return None;
        }
        Some(_) => {
            loader.problem(&at(path, "url"), "not a URL; allowed: an http:// URL");
            return None;
        }
    };
    let method = match get(loader, "method") {
        None => Method::GET,
        Some(Value::String(m)) => match Method::from_bytes(m.to_ascii_uppercase().as_bytes()) {
            Ok(method) => method,
            Err(_) => {
                loader.problem(
                    &at(path, "method"),
                    "not an HTTP method; allowed: GET, POST, PUT, DELETE, ...",
                );
                Method::GET
            }
        },
        Some(_) => {
            loader.problem(
                &at(path, "method"),
                "not an HTTP method; allowed: GET, POST, PUT, DELETE, ...",
            );
            Method::GET
        }
    };
    let mut headers = Vec::new();
    match get(loader, "headers") {
        None => {}
        Some(Value::Object(h)) => {
            for (name, value) in &h {
                let text = match value {
                    Value::String(s) => s.clone(),
                    Value::Number(_) | Value::Bool(_) => value.to_string(),
                    _ => String::new(),
                };
                let valid = http::HeaderName::from_bytes(name.as_bytes()).is_ok()
                    && http::HeaderValue::from_str(&text).is_ok()
                    && !matches!(value, Value::Null | Value::Array(_) | Value::Object(_));
                if valid {
                    headers.push((name.clone(), text));
                } else {
                    loader.problem(
                        &at(&at(path, "headers"), name.as_str()),
                        "a header is a name and a text value",
                    );
                }
            }
        }
        Some(_) => loader.problem(&at(path, "headers"), "a mapping of header names to values"),
    }
    let (connect, read) = match get(loader, "timeout") {
        None => (HTTP_TIMEOUT, HTTP_TIMEOUT),
        Some(Value::Array(pair)) => match pair.as_slice() {
            [c, r] => match (positive(c), positive(r)) {
                (Some(c), Some(r)) => (c, r),
                _ => {
                    loader.problem(
                        &at(path, "timeout"),
                        "[connect, read] in seconds, each above 0 and at most a day",
                    );
                    (HTTP_TIMEOUT, HTTP_TIMEOUT)
                }
            },
            _ => {
                loader.problem(
                    &at(path, "timeout"),
                    "[connect, read] in seconds, or one number of seconds",
                );
                (HTTP_TIMEOUT, HTTP_TIMEOUT)
            }
        },
        Some(t) => match positive(&t) {
            Some(t) => (t, t),
            None => {
                loader.problem(
                    &at(path, "timeout"),
                    "seconds, above 0 and at most a day, or [connect, read]",
                );
                (HTTP_TIMEOUT, HTTP_TIMEOUT)
            }
        },
    };
    let expected_status = match get(loader, "expected_status") {
        None => None,
        Some(v) => match v.as_u64().filter(|s| (100..=599).contains(s)) {
            Some(s) => u16::try_from(s).ok(),
            None => {
                loader.problem(&at(path, "expected_status"), "an HTTP status, 100 to 599");
                None
            }
        },
    };
    if map.get("verify_tls").is_some_and(|v| !v.is_boolean()) {
        loader.problem(
            &at(path, "verify_tls"),
            "allowed: true, false (ignored: http:// only)",
        );
    }
    Some(HttpCall {
        url,
        method,
        headers,
        arguments: get(loader, "arguments").filter(|a| !a.is_null()),
        connect,
        read,
        expected_status,
    })
}

fn positive(value: &Value) -> Option<Duration> {
    seconds(value).filter(|d| !d.is_zero())
}

fn process(
    loader: &mut Loader<'_>,
    map: &Map<String, Value>,
    path: &[Step],
) -> Option<ProcessCall> {
    let program = match map.get("path") {
        Some(Value::String(p)) if !p.is_empty() => match which(p) {
            Some(found) => found,
            None => {
                loader.problem(
                    &at(path, "path"),
                    format!("{p:?} is not an executable file, nor found on PATH"),
                );
                return None;
            }
        },
        _ => {
            loader.problem(
                &at(path, "path"),
                "required: the program to run, a path or a name on PATH",
            );
            return None;
        }
    };
    let arguments = match map.get("arguments").map(|v| loader.vars.substitute(v)) {
        None | Some(Value::Null) => Arguments::List(Vec::new()),
        Some(Value::String(s)) => Arguments::Shell(s),
        Some(Value::Array(items)) => Arguments::List(
            items
                .iter()
                .filter_map(argument)
                .filter(|a| !a.is_empty())
                .collect(),
        ),
        // Chaos Toolkit flattens a mapping into its keys and values, in order.
        Some(Value::Object(m)) => Arguments::List(
            m.iter()
                .flat_map(|(k, v)| [Some(k.clone()), argument(v)])
                .flatten()
                .filter(|a| !a.is_empty())
                .collect(),
        ),
        Some(_) => {
            loader.problem(
                &at(path, "arguments"),
                "a list of arguments, or one string run by the shell",
            );
            return None;
        }
    };
    let timeout = match map.get("timeout").map(|v| loader.vars.substitute(v)) {
        None | Some(Value::Null) => None,
        Some(t) => match positive(&t) {
            Some(t) => Some(t),
            None => {
                loader.problem(&at(path, "timeout"), "seconds, above 0 and at most a day");
                return None;
            }
        },
    };
    Some(ProcessCall {
        program,
        arguments,
        timeout,
    })
}

/// An argument as Python's `str` writes it (`None` is dropped).
fn argument(value: &Value) -> Option<String> {
    match value {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        Value::Bool(true) => Some("True".into()),
        Value::Bool(false) => Some("False".into()),
        other => Some(other.to_string()),
    }
}

/// `name` as `shutil.which` finds it: a path with a slash as is, else the first
/// executable file of that name on `PATH`; `~/` is the home directory.
fn which(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let expanded = match (name.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => Path::new(&home).join(rest),
        _ => PathBuf::from(name),
    };
    let executable = |p: &Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if expanded.components().count() > 1 || name.contains('/') {
        return executable(&expanded).then_some(expanded);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(&expanded))
        .find(|candidate| executable(candidate))
}

//! An http provider's request, made as Chaos Toolkit makes it with `requests`: GET sends
//! its arguments as the query; other methods send them as JSON when the `Content-Type`
//! header says `application/json`, as a form for a mapping, as the text for a string.
//! The output is `{status, headers, body}`, the body parsed when the answer is JSON.
//!
//! Bounded: the connection must be made within the connect timeout, and the whole
//! answer must arrive within the read timeout after that; at most 1 MiB of the body is
//! kept (the rest is not read).

use bytes::{Bytes, BytesMut};
use http::{HeaderValue, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Map, Value};

use super::provider::HttpCall;

/// The most of a body kept in the output.
pub const MAX_BODY: usize = 1024 * 1024;

/// Why a request failed (the activity fails with it).
#[derive(Debug)]
pub(super) enum CallError {
    /// No connection, or it broke.
    Connect(String),
    /// No full answer in time.
    Timeout,
    /// A status other than `expected_status`, with the output.
    Unexpected(u16, Value),
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Connect(why) => write!(f, "{why}"),
            CallError::Timeout => write!(f, "activity took too long to complete"),
            CallError::Unexpected(status, _) => {
                write!(f, "the status was {status}, not the expected one")
            }
        }
    }
}

/// Makes the request; its output.
pub(super) async fn call(spec: &HttpCall) -> Result<Value, CallError> {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(spec.connect));
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build(connector);
    let request = request(spec).map_err(|e| CallError::Connect(format!("{}: {e}", spec.url)))?;
    let exchange = async {
        let response = client
            .request(request)
            .await
            .map_err(|e| CallError::Connect(format!("failed to connect to {}: {e:?}", spec.url)))?;
        let (parts, mut body) = response.into_parts();
        let mut kept = BytesMut::new();
        while kept.len() < MAX_BODY {
            match body.frame().await {
                None => break,
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        let room = MAX_BODY - kept.len();
                        kept.extend_from_slice(&data[..data.len().min(room)]);
                    }
                }
                Some(Err(e)) => {
                    return Err(CallError::Connect(format!(
                        "{}: the answer broke: {e}",
                        spec.url
                    )));
                }
            }
        }
        Ok((parts, kept.freeze()))
    };
    let (parts, body) = tokio::time::timeout(spec.connect + spec.read, exchange)
        .await
        .map_err(|_| CallError::Timeout)??;
    let mut headers = Map::new();
    for (name, value) in &parts.headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        let merged = match headers.get(name.as_str()).and_then(Value::as_str) {
            Some(before) => format!("{before}, {value}"),
            None => value,
        };
        headers.insert(name.as_str().to_owned(), Value::String(merged));
    }
    let json = parts
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim_start()
                .to_ascii_lowercase()
                .starts_with("application/json")
        });
    let body = json
        .then(|| serde_json::from_slice::<Value>(&body).ok())
        .flatten()
        .unwrap_or_else(|| Value::String(String::from_utf8_lossy(&body).into_owned()));
    let status = parts.status.as_u16();
    let output = serde_json::json!({"status": status, "headers": headers, "body": body});
    match spec.expected_status {
        Some(expected) if expected != status => Err(CallError::Unexpected(status, output)),
        _ => Ok(output),
    }
}

fn request(spec: &HttpCall) -> Result<Request<Full<Bytes>>, http::Error> {
    let json = spec.headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("content-type") && v.trim().eq_ignore_ascii_case("application/json")
    });
    let mut url = spec.url.clone();
    let mut body = Bytes::new();
    let mut content_type = None;
    match (&spec.arguments, spec.method == http::Method::GET) {
        (None, _) => {}
        (Some(args), true) => {
            let query = form(args);
            if !query.is_empty() {
                url.push(if url.contains('?') { '&' } else { '?' });
                url.push_str(&query);
            }
        }
        (Some(args), false) if json => body = Bytes::from(args.to_string()),
        (Some(Value::String(text)), false) => body = Bytes::from(text.clone()),
        (Some(args), false) => {
            body = Bytes::from(form(args));
            content_type = Some("application/x-www-form-urlencoded");
        }
    }
    let mut builder = Request::builder().method(spec.method.clone()).uri(url);
    for (name, value) in &spec.headers {
        builder = builder.header(name.as_str(), value.as_str());
    }
    let has_type = spec
        .headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("content-type"));
    if let (Some(kind), false) = (content_type, has_type) {
        builder = builder.header(http::header::CONTENT_TYPE, HeaderValue::from_static(kind));
    }
    builder.body(Full::new(body))
}

/// A mapping as `application/x-www-form-urlencoded` (a list value repeats its key).
pub(super) fn form(args: &Value) -> String {
    let Some(map) = args.as_object() else {
        return match args {
            Value::String(s) => s.clone(),
            _ => String::new(),
        };
    };
    let mut pairs = Vec::new();
    for (key, value) in map {
        let values: Vec<&Value> = match value {
            Value::Array(items) => items.iter().collect(),
            other => vec![other],
        };
        for v in values {
            let text = match v {
                Value::Null => continue,
                Value::String(s) => s.clone(),
                Value::Bool(true) => "True".into(),
                Value::Bool(false) => "False".into(),
                other => other.to_string(),
            };
            pairs.push(format!("{}={}", encode(key), encode(&text)));
        }
    }
    pairs.join("&")
}

/// Percent-encoding as forms write it: unreserved bytes kept, space as `+`.
fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(byte as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn forms_encode_and_repeat_list_keys() {
        let got = form(&json!({"q": "a b&c", "n": 2, "k": ["x", "y"], "z": null, "t": true}));
        let mut pairs: Vec<&str> = got.split('&').collect();
        pairs.sort_unstable();
        assert_eq!(pairs, ["k=x", "k=y", "n=2", "q=a+b%26c", "t=True"]);
    }
}

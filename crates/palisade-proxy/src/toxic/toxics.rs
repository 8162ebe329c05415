//! A toxic: a named [`Fault`] on one direction of a proxy's connections, applied to each
//! connection with a probability (its toxicity), as Toxiproxy defines them.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::ApiError;
use super::fault::Fault;

/// Which bytes a toxic acts on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    /// From the client to the upstream.
    Upstream,
    /// From the upstream to the client (Toxiproxy's default).
    Downstream,
}

/// One toxic of a proxy.
#[derive(Clone, Debug)]
pub struct Toxic {
    /// Unique within its proxy; `{type}_{stream}` unless given.
    pub name: String,
    /// The direction it acts on.
    pub stream: Stream,
    /// The probability that it applies to a connection, drawn once per connection.
    pub toxicity: f64,
    /// What it does.
    pub fault: Fault,
    /// A new id for each version of the toxic, so an update is drawn afresh on every
    /// connection.
    pub(crate) id: u64,
}

/// A toxic as a client sends it: every field optional (an update changes the ones given).
#[derive(Debug, Default, Deserialize)]
pub struct ToxicRequest {
    name: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    stream: Option<String>,
    toxicity: Option<f64>,
    attributes: Option<Map<String, Value>>,
}

impl ToxicRequest {
    /// A request with every field given (the game day's toxics).
    pub fn new(
        name: Option<String>,
        kind: String,
        stream: Option<String>,
        toxicity: Option<f64>,
        attributes: Map<String, Value>,
    ) -> Self {
        Self {
            name,
            kind: Some(kind),
            stream,
            toxicity,
            attributes: Some(attributes),
        }
    }
}

/// Ids of toxic versions.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

fn next_id() -> u64 {
    NEXT_ID.fetch_add(1, Ordering::Relaxed)
}

// === impl Stream ===

impl Stream {
    fn parse(stream: &str) -> Result<Self, ApiError> {
        match stream {
            "upstream" => Ok(Stream::Upstream),
            "downstream" => Ok(Stream::Downstream),
            other => Err(ApiError::bad_request(format!(
                "stream must be \"upstream\" or \"downstream\", not {other:?}"
            ))),
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Stream::Upstream => "upstream",
            Stream::Downstream => "downstream",
        }
    }
}

// === impl Toxic ===

impl Toxic {
    /// A new toxic from a create request: `type` required; stream downstream, toxicity 1
    /// and attributes 0 unless given.
    pub fn create(request: ToxicRequest) -> Result<Self, ApiError> {
        let kind = request
            .kind
            .ok_or_else(|| ApiError::bad_request("a toxic needs a \"type\"".to_owned()))?;
        let stream = Stream::parse(request.stream.as_deref().unwrap_or("downstream"))?;
        let fault = Fault::parse(&kind, &request.attributes.unwrap_or_default())?;
        let name = request
            .name
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| format!("{kind}_{}", stream.as_str()));
        Ok(Self {
            name: valid_name(name)?,
            stream,
            toxicity: toxicity(request.toxicity.unwrap_or(1.0))?,
            fault,
            id: next_id(),
        })
    }

    /// This toxic with the fields `request` gives changed: attributes given replace
    /// theirs, the others stay; the type cannot change.
    pub fn update(&self, request: ToxicRequest) -> Result<Self, ApiError> {
        if let Some(kind) = request.kind.as_deref()
            && kind != self.fault.kind()
        {
            return Err(ApiError::bad_request(format!(
                "toxic {:?} is a {}; its type cannot change to {kind} (delete it and add a new one)",
                self.name,
                self.fault.kind()
            )));
        }
        let mut attributes = match self.fault.attributes() {
            Value::Object(map) => map,
            _ => Map::new(),
        };
        attributes.extend(request.attributes.unwrap_or_default());
        Ok(Self {
            name: self.name.clone(),
            stream: match request.stream {
                Some(stream) => Stream::parse(&stream)?,
                None => self.stream,
            },
            toxicity: toxicity(request.toxicity.unwrap_or(self.toxicity))?,
            fault: Fault::parse(self.fault.kind(), &attributes)?,
            id: next_id(),
        })
    }

    /// Toxiproxy's JSON of the toxic.
    pub fn to_json(&self) -> Value {
        json!({
            "name": self.name,
            "type": self.fault.kind(),
            "stream": self.stream.as_str(),
            "toxicity": self.toxicity,
            "attributes": self.fault.attributes(),
        })
    }
}

fn toxicity(toxicity: f64) -> Result<f64, ApiError> {
    if (0.0..=1.0).contains(&toxicity) {
        Ok(toxicity)
    } else {
        Err(ApiError::bad_request(format!(
            "toxicity is a probability from 0 to 1, not {toxicity}"
        )))
    }
}

/// A proxy's or toxic's name: 1 to 200 characters, none of them `/` (it is a path part).
pub(crate) fn valid_name(name: String) -> Result<String, ApiError> {
    if name.is_empty()
        || name.len() > 200
        || name.contains('/')
        || name.chars().any(char::is_control)
    {
        return Err(ApiError::bad_request(format!(
            "{name:?} is not a usable name: 1 to 200 characters, no '/' or control characters"
        )));
    }
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(value: Value) -> ToxicRequest {
        serde_json::from_value(value).expect("a toxic request")
    }

    #[test]
    fn a_toxic_takes_toxiproxy_s_defaults() {
        let toxic = Toxic::create(request(
            json!({"type": "latency", "attributes": {"latency": 100}}),
        ))
        .expect("valid");
        assert_eq!(
            toxic.to_json(),
            json!({"name": "latency_downstream", "type": "latency", "stream": "downstream",
                   "toxicity": 1.0, "attributes": {"latency": 100, "jitter": 0}})
        );
    }

    #[test]
    fn an_update_changes_what_it_gives_and_keeps_the_rest() {
        let toxic = Toxic::create(request(json!({"type": "latency", "name": "slow",
            "attributes": {"latency": 100, "jitter": 5}})))
        .expect("valid");
        let updated = toxic
            .update(request(
                json!({"attributes": {"latency": 300}, "toxicity": 0.5}),
            ))
            .expect("valid");
        assert_eq!(
            updated.fault.attributes(),
            json!({"latency": 300, "jitter": 5})
        );
        assert_eq!(updated.toxicity, 0.5);
        assert_ne!(updated.id, toxic.id, "an update is drawn afresh");
        let error = toxic
            .update(request(json!({"type": "timeout"})))
            .expect_err("the type is fixed");
        assert!(error.message.contains("cannot change"), "{}", error.message);
    }

    #[test]
    fn bad_requests_say_what_is_wrong() {
        for (value, says) in [
            (json!({}), "needs a \"type\""),
            (
                json!({"type": "latency", "stream": "sideways"}),
                "stream must be",
            ),
            (json!({"type": "latency", "toxicity": 1.5}), "probability"),
            (
                json!({"type": "latency", "name": "a/b"}),
                "not a usable name",
            ),
        ] {
            let error = Toxic::create(request(value)).expect_err(says);
            assert!(error.message.contains(says), "{}", error.message);
        }
    }
}

//! The faults a toxic applies to a connection's bytes, and their JSON as Toxiproxy writes
//! it: a `type` and integer `attributes` (milliseconds, bytes, KB/s; the slicer's delay in
//! microseconds), so Toxiproxy's client libraries create and read them unchanged.

use std::time::Duration;

use serde_json::{Map, Value, json};

use super::ApiError;

/// The longest delay any attribute may ask for: one day (a longer one is a typo).
const MAX_DELAY_MS: u64 = 24 * 60 * 60 * 1000;

/// What a toxic does to the bytes of its stream.
#[derive(Clone, Debug, PartialEq)]
pub enum Fault {
    /// Holds each chunk for `latency` ± `jitter` before passing it on.
    Latency {
        /// The added delay.
        latency: Duration,
        /// A uniform spread around it.
        jitter: Duration,
    },
    /// Passes at most `kb_per_second` kilobytes a second (0: unlimited).
    Bandwidth {
        /// KB/s.
        kb_per_second: u64,
    },
    /// Delays the close (end of stream) by `delay`.
    SlowClose {
        /// How long.
        delay: Duration,
    },
    /// Stops all data; closes the connection after `timeout` (zero: holds it until the
    /// toxic is removed).
    Timeout {
        /// When to close; zero: never.
        timeout: Duration,
    },
    /// Resets the client's connection (TCP RST) after `timeout`.
    ResetPeer {
        /// When to reset; zero: at once.
        timeout: Duration,
    },
    /// Cuts the data into slices of `average_size` ± `size_variation` bytes, `delay` apart.
    Slicer {
        /// Bytes per slice on average (at least 1).
        average_size: u64,
        /// Spread around it.
        size_variation: u64,
        /// Pause between slices.
        delay: Duration,
    },
    /// Closes the connection once `bytes` have passed.
    LimitData {
        /// How many.
        bytes: u64,
    },
}

/// The attribute names of each type, in Toxiproxy's order.
const ATTRIBUTES: [(&str, &[&str]); 7] = [
    ("latency", &["latency", "jitter"]),
    ("bandwidth", &["rate"]),
    ("slow_close", &["delay"]),
    ("timeout", &["timeout"]),
    ("reset_peer", &["timeout"]),
    ("slicer", &["average_size", "size_variation", "delay"]),
    ("limit_data", &["bytes"]),
];

// === impl Fault ===

impl Fault {
    /// The fault of type `kind` with `attributes` (absent ones are 0). Refuses an unknown
    /// type, an unknown attribute (a typo would otherwise do nothing) and a value that is
    /// not a non-negative integer in range.
    pub fn parse(kind: &str, attributes: &Map<String, Value>) -> Result<Self, ApiError> {
        let Some((_, names)) = ATTRIBUTES.iter().find(|(k, _)| *k == kind) else {
            let known: Vec<&str> = ATTRIBUTES.iter().map(|(k, _)| *k).collect();
            return Err(ApiError::bad_request(format!(
                "unknown toxic type {kind:?}; the types are {}",
                known.join(", ")
            )));
        };
        if let Some(unknown) = attributes.keys().find(|k| !names.contains(&k.as_str())) {
            return Err(ApiError::bad_request(format!(
                "a {kind} toxic has no attribute {unknown:?}; its attributes are {}",
                names.join(", ")
            )));
        }
        let number = |name: &str| attribute(attributes, name);
        let delay = |name: &str| -> Result<Duration, ApiError> {
            let ms = number(name)?;
            if ms > MAX_DELAY_MS {
                return Err(ApiError::bad_request(format!(
                    "{kind}.{name} = {ms} ms is over a day"
                )));
            }
            Ok(Duration::from_millis(ms))
        };
        Ok(match kind {
            "latency" => Fault::Latency {
                latency: delay("latency")?,
                jitter: delay("jitter")?,
            },
            "bandwidth" => Fault::Bandwidth {
                kb_per_second: number("rate")?,
            },
            "slow_close" => Fault::SlowClose {
                delay: delay("delay")?,
            },
            "timeout" => Fault::Timeout {
                timeout: delay("timeout")?,
            },
            "reset_peer" => Fault::ResetPeer {
                timeout: delay("timeout")?,
            },
            "slicer" => slicer(
                number("average_size")?,
                number("size_variation")?,
                number("delay")?,
            )?,
            _ => Fault::LimitData {
                bytes: number("bytes")?,
            },
        })
    }

    /// Toxiproxy's name of the type.
    pub fn kind(&self) -> &'static str {
        match self {
            Fault::Latency { .. } => "latency",
            Fault::Bandwidth { .. } => "bandwidth",
            Fault::SlowClose { .. } => "slow_close",
            Fault::Timeout { .. } => "timeout",
            Fault::ResetPeer { .. } => "reset_peer",
            Fault::Slicer { .. } => "slicer",
            Fault::LimitData { .. } => "limit_data",
        }
    }

    /// The attributes as Toxiproxy writes them.
    pub fn attributes(&self) -> Value {
        let ms = |d: &Duration| d.as_millis() as u64;
        match self {
            Fault::Latency { latency, jitter } => {
                json!({"latency": ms(latency), "jitter": ms(jitter)})
            }
            Fault::Bandwidth { kb_per_second } => json!({ "rate": kb_per_second }),
            Fault::SlowClose { delay } => json!({ "delay": ms(delay) }),
            Fault::Timeout { timeout } | Fault::ResetPeer { timeout } => {
                json!({ "timeout": ms(timeout) })
            }
            Fault::Slicer {
                average_size,
                size_variation,
                delay,
            } => json!({
                "average_size": average_size,
                "size_variation": size_variation,
                "delay": delay.as_micros() as u64,
            }),
            Fault::LimitData { bytes } => json!({ "bytes": bytes }),
        }
    }
}

/// A slicer's fault: slices of at least one byte, a variation below the average.
fn slicer(average_size: u64, size_variation: u64, delay_us: u64) -> Result<Fault, ApiError> {
    if average_size == 0 {
        return Err(ApiError::bad_request(
            "slicer.average_size must be at least 1 byte".to_owned(),
        ));
    }
    if size_variation >= average_size {
        return Err(ApiError::bad_request(format!(
            "slicer.size_variation ({size_variation}) must be below average_size ({average_size})"
        )));
    }
    if delay_us > MAX_DELAY_MS * 1000 {
        return Err(ApiError::bad_request(format!(
            "slicer.delay = {delay_us} µs is over a day"
        )));
    }
    Ok(Fault::Slicer {
        average_size,
        size_variation,
        delay: Duration::from_micros(delay_us),
    })
}

/// Attribute `name` of `attributes`: a non-negative integer, 0 when absent.
fn attribute(attributes: &Map<String, Value>, name: &str) -> Result<u64, ApiError> {
    match attributes.get(name) {
        None | Some(Value::Null) => Ok(0),
        Some(value) => value
            .as_u64()
            .or_else(|| {
                // 200.0 is 200; Toxiproxy's clients in dynamic languages may send floats.
                value
                    .as_f64()
                    .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f <= u64::MAX as f64)
                    .map(|f| f as u64)
            })
            .ok_or_else(|| {
                ApiError::bad_request(format!(
                    "attribute {name:?} must be a non-negative integer, not {value}"
                ))
            }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(kind: &str, attributes: Value) -> Result<Fault, ApiError> {
        Fault::parse(kind, attributes.as_object().expect("an object"))
    }

    #[test]
    fn every_type_reads_and_writes_toxiproxy_s_attributes() {
        for (kind, attributes) in [
            ("latency", json!({"latency": 200, "jitter": 10})),
            ("bandwidth", json!({"rate": 64})),
            ("slow_close", json!({"delay": 500})),
            ("timeout", json!({"timeout": 0})),
            ("reset_peer", json!({"timeout": 100})),
            (
                "slicer",
                json!({"average_size": 64, "size_variation": 32, "delay": 10}),
            ),
            ("limit_data", json!({"bytes": 1024})),
        ] {
            let fault = parse(kind, attributes.clone()).expect(kind);
            assert_eq!(fault.kind(), kind);
            assert_eq!(fault.attributes(), attributes, "{kind}");
        }
    }

    #[test]
    fn absent_attributes_are_zero_and_floats_with_no_fraction_are_integers() {
        assert_eq!(
            parse("latency", json!({"latency": 150.0})).expect("latency"),
            Fault::Latency {
                latency: Duration::from_millis(150),
                jitter: Duration::ZERO
            }
        );
    }

    #[test]
    fn bad_toxics_are_refused_with_what_is_wrong() {
        for (kind, attributes, says) in [
            ("lag", json!({}), "unknown toxic type \"lag\""),
            ("latency", json!({"latncy": 5}), "no attribute \"latncy\""),
            ("latency", json!({"latency": -5}), "non-negative integer"),
            ("latency", json!({"latency": "5"}), "non-negative integer"),
            ("latency", json!({"latency": 1.5}), "non-negative integer"),
            (
                "timeout",
                json!({"timeout": 100_000_000_000u64}),
                "over a day",
            ),
            ("slicer", json!({"average_size": 0}), "at least 1 byte"),
            (
                "slicer",
                json!({"average_size": 4, "size_variation": 4}),
                "below average_size",
            ),
        ] {
            let error = parse(kind, attributes).expect_err(kind);
            assert_eq!(error.status, http::StatusCode::BAD_REQUEST);
            assert!(error.message.contains(says), "{}", error.message);
        }
    }
}

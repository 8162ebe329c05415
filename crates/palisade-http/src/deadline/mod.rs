//! Time budgets across hops.
//!
//! Inbound, a caller may state its budget three ways:
//!
//! | header | form | meaning |
//! |---|---|---|
//! | `X-Request-Timeout` | milliseconds, e.g. `250` | relative: this much time from now |
//! | `grpc-timeout` | up to 8 digits and a unit `H M S m u n`, e.g. `100m` | relative (gRPC) |
//! | `X-Request-Deadline` | Unix milliseconds, e.g. `1767225600000` | absolute: answer by then |
//!
//! When several are present the **smallest** budget wins: a caller never gets more time
//! than any of its statements allows. Relative budgets survive clock skew between hosts;
//! an absolute deadline is only as good as the two clocks, so prefer the relative ones.
//!
//! Outbound, every attempt carries the remaining budget minus a safety margin as
//! `X-Request-Timeout` (and `grpc-timeout` for gRPC requests); an inbound
//! `X-Request-Deadline` is not forwarded, since the next host's clock may differ.
//!
//! In a Rust service, [`InboundDeadlineLayer`] reads the inbound budget and runs the
//! handler inside Palisade's deadline scope (504 at once when it is spent).

mod layer;

pub use layer::{InboundDeadline, InboundDeadlineLayer, ResponseFuture};

use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue};

/// `X-Request-Timeout`.
pub const X_REQUEST_TIMEOUT: HeaderName = HeaderName::from_static("x-request-timeout");
/// `X-Request-Deadline`.
pub const X_REQUEST_DEADLINE: HeaderName = HeaderName::from_static("x-request-deadline");
/// `grpc-timeout`.
pub const GRPC_TIMEOUT: HeaderName = HeaderName::from_static("grpc-timeout");

/// A deadline header that cannot be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{header}: {value:?} is not {expected}")]
pub struct BadDeadline {
    /// The header.
    pub header: &'static str,
    /// What it said.
    pub value: String,
    /// What it should say.
    pub expected: &'static str,
}

/// The caller's budget, if it stated one: the smallest of the three headers.
pub fn inbound(headers: &HeaderMap) -> Result<Option<Duration>, BadDeadline> {
    // Most requests state no deadline: one pass of name comparisons tells, where three
    // lookups would hash three names.
    let stated = headers.keys().any(|name| {
        *name == X_REQUEST_TIMEOUT || *name == GRPC_TIMEOUT || *name == X_REQUEST_DEADLINE
    });
    if !stated {
        return Ok(None);
    }
    let mut budget: Option<Duration> = None;
    let mut consider = |d: Duration| budget = Some(budget.map_or(d, |b| b.min(d)));
    if let Some(v) = headers.get(&X_REQUEST_TIMEOUT) {
        let ms = text(v)
            .and_then(|t| t.trim().parse::<u64>().ok())
            .ok_or_else(|| bad("x-request-timeout", v, "whole milliseconds"))?;
        consider(Duration::from_millis(ms));
    }
    if let Some(v) = headers.get(&GRPC_TIMEOUT) {
        let d = text(v).and_then(parse_grpc_timeout).ok_or_else(|| {
            bad(
                "grpc-timeout",
                v,
                "1 to 8 digits and a unit H, M, S, m, u or n",
            )
        })?;
        consider(d);
    }
    if let Some(v) = headers.get(&X_REQUEST_DEADLINE) {
        let at = text(v)
            .and_then(|t| t.trim().parse::<u64>().ok())
            .ok_or_else(|| bad("x-request-deadline", v, "Unix time in whole milliseconds"))?;
        consider(Duration::from_millis(
            at.saturating_sub(crate::wall::unix_millis()),
        ));
    }
    Ok(budget)
}

/// Writes `remaining − margin` (at least 1 ms) as `X-Request-Timeout`, and as
/// `grpc-timeout` when `grpc` is true; removes `X-Request-Deadline`.
pub fn outbound(headers: &mut HeaderMap, remaining: Duration, margin: Duration, grpc: bool) {
    let left = outbound_budget(remaining, margin);
    let ms = u64::try_from(left.as_millis()).unwrap_or(u64::MAX);
    headers.insert(X_REQUEST_TIMEOUT, HeaderValue::from(ms));
    headers.remove(X_REQUEST_DEADLINE);
    if grpc {
        if let Ok(value) = HeaderValue::from_str(&format_grpc_timeout(left)) {
            headers.insert(GRPC_TIMEOUT, value);
        }
    }
}

/// The budget [`outbound`] passes on: `remaining − margin`, at least 1 ms. Its
/// `X-Request-Timeout` value is the budget in whole milliseconds.
pub fn outbound_budget(remaining: Duration, margin: Duration) -> Duration {
    remaining
        .saturating_sub(margin)
        .max(Duration::from_millis(1))
}

/// Parses a gRPC timeout: 1–8 ASCII digits and a unit.
pub fn parse_grpc_timeout(text: &str) -> Option<Duration> {
    let text = text.trim();
    let (digits, unit) = text.split_at(text.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// Formats a gRPC timeout in the finest unit that fits in 8 digits.
pub fn format_grpc_timeout(d: Duration) -> String {
    const MAX: u128 = 99_999_999;
    let units: [(u128, &str); 6] = [
        (d.as_nanos(), "n"),
        (d.as_micros(), "u"),
        (d.as_millis(), "m"),
        (u128::from(d.as_secs()), "S"),
        (u128::from(d.as_secs() / 60), "M"),
        (u128::from(d.as_secs() / 3600), "H"),
    ];
    for (value, unit) in units {
        if value <= MAX {
            return format!("{value}{unit}");
        }
    }
    format!("{MAX}H")
}

fn text(v: &HeaderValue) -> Option<&str> {
    v.to_str().ok()
}

fn bad(header: &'static str, v: &HeaderValue, expected: &'static str) -> BadDeadline {
    BadDeadline {
        header,
        value: String::from_utf8_lossy(v.as_bytes()).into_owned(),
        expected,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&HeaderName, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert((*k).clone(), v.parse().unwrap());
        }
        h
    }

    #[test]
    fn the_smallest_budget_wins() {
        let h = headers(&[(&X_REQUEST_TIMEOUT, "500"), (&GRPC_TIMEOUT, "200m")]);
        assert_eq!(inbound(&h).unwrap(), Some(Duration::from_millis(200)));
        let soon = (crate::wall::unix_millis() + 50).to_string();
        let h = headers(&[(&X_REQUEST_TIMEOUT, "500"), (&X_REQUEST_DEADLINE, &soon)]);
        assert!(inbound(&h).unwrap().unwrap() <= Duration::from_millis(50));
        let past = headers(&[(&X_REQUEST_DEADLINE, "1000")]);
        assert_eq!(inbound(&past).unwrap(), Some(Duration::ZERO));
        assert_eq!(inbound(&HeaderMap::new()).unwrap(), None);
    }

    #[test]
    fn unreadable_headers_are_errors_naming_the_header() {
        let e = inbound(&headers(&[(&X_REQUEST_TIMEOUT, "soon")])).unwrap_err();
        assert_eq!(e.header, "x-request-timeout");
        assert!(inbound(&headers(&[(&GRPC_TIMEOUT, "123456789S")])).is_err());
        assert!(inbound(&headers(&[(&GRPC_TIMEOUT, "10x")])).is_err());
        assert!(inbound(&headers(&[(&X_REQUEST_DEADLINE, "-1")])).is_err());
    }

    #[test]
    fn grpc_timeouts_round_trip() {
        for (text, d) in [
            ("1H", Duration::from_secs(3600)),
            ("2M", Duration::from_secs(120)),
            ("3S", Duration::from_secs(3)),
            ("250m", Duration::from_millis(250)),
            ("7u", Duration::from_micros(7)),
            ("9n", Duration::from_nanos(9)),
        ] {
            assert_eq!(parse_grpc_timeout(text), Some(d));
        }
        assert_eq!(format_grpc_timeout(Duration::from_millis(250)), "250000u");
        assert_eq!(format_grpc_timeout(Duration::from_secs(100_000)), "100000S");
        assert_eq!(parse_grpc_timeout(""), None);
    }

    #[test]
    fn outbound_writes_the_remaining_budget_minus_the_margin() {
        let mut h = headers(&[(&X_REQUEST_DEADLINE, "1")]);
        outbound(
            &mut h,
            Duration::from_millis(300),
            Duration::from_millis(20),
            true,
        );
        assert_eq!(h[&X_REQUEST_TIMEOUT], "280");
        assert_eq!(h[&GRPC_TIMEOUT], "280000u");
        assert!(!h.contains_key(&X_REQUEST_DEADLINE));
        outbound(
            &mut h,
            Duration::from_millis(5),
            Duration::from_millis(20),
            false,
        );
        assert_eq!(
            h[&X_REQUEST_TIMEOUT], "1",
            "never zero: the next hop still gets a chance to refuse"
        );
    }

    proptest::proptest! {
        #[test]
        fn formatted_grpc_timeouts_parse_back_to_at_most_the_original(nanos in 0u64..u64::MAX / 2) {
            let d = Duration::from_nanos(nanos);
            let back = parse_grpc_timeout(&format_grpc_timeout(d)).unwrap();
            proptest::prop_assert!(back <= d);
        }
    }
}

//! `Retry-After`: reading the delay an upstream asks for, writing the one we ask for.

use std::time::Duration;

use http::HeaderMap;
use http::header::RETRY_AFTER;

/// The delay a `Retry-After` header asks for: delta-seconds (`120`) or an HTTP date
/// (`Wed, 21 Oct 2015 07:28:00 GMT`; a date in the past means zero). `None` when absent
/// or unreadable.
pub fn parse(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(
        at.duration_since(crate::wall::now())
            .unwrap_or(Duration::ZERO),
    )
}

/// The header value for a wait of `delay`: whole seconds, rounded up, at least 1.
pub fn value(delay: Duration) -> http::HeaderValue {
    let seconds = delay.as_secs() + u64::from(delay.subsec_nanos() > 0);
    http::HeaderValue::from(seconds.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, value.parse().unwrap());
        h
    }

    #[test]
    fn delta_seconds_and_dates() {
        assert_eq!(parse(&headers("120")), Some(Duration::from_secs(120)));
        assert_eq!(parse(&headers(" 3 ")), Some(Duration::from_secs(3)));
        assert_eq!(
            parse(&headers("Wed, 21 Oct 2015 07:28:00 GMT")),
            Some(Duration::ZERO)
        );
        let later = httpdate::fmt_http_date(crate::wall::now() + Duration::from_secs(3600));
        let d = parse(&headers(&later)).unwrap();
        assert!(d > Duration::from_secs(3590) && d <= Duration::from_secs(3600));
        assert_eq!(parse(&headers("soon")), None);
        assert_eq!(parse(&headers("-5")), None);
        assert_eq!(parse(&HeaderMap::new()), None);
    }

    #[test]
    fn written_values_round_up() {
        assert_eq!(value(Duration::from_millis(1)), "1");
        assert_eq!(value(Duration::from_millis(1500)), "2");
        assert_eq!(value(Duration::from_secs(7)), "7");
        assert_eq!(value(Duration::ZERO), "1");
    }
}

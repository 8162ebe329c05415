//! Hop-by-hop headers: meaningful for one connection only, never forwarded (RFC 9110 §7.6.1);
//! and trailer fields: which a relay passes on after a body, and which it may not.

use http::header::{self, Entry, HeaderName};
use http::{HeaderMap, HeaderValue};

/// Headers that always describe only the connection they arrive on. `Trailer` is not one:
/// it announces the trailer fields of the message, end to end (RFC 9110 §6.6.2; RFC 2616's
/// "Trailers" in this list was `TE: trailers`).
const HOP_BY_HOP: [HeaderName; 7] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::UPGRADE,
];

/// Fields a sender must not put in trailers, or a recipient may not act on there (RFC
/// 9110 §6.5.1): framing, routing, request modifiers, authentication, caching and the
/// content's own metadata. A relay drops them from the trailers it passes on.
const NOT_IN_TRAILERS: [HeaderName; 12] = [
    header::AUTHORIZATION,
    header::CACHE_CONTROL,
    header::CONTENT_ENCODING,
    header::CONTENT_LENGTH,
    header::CONTENT_RANGE,
    header::CONTENT_TYPE,
    header::EXPECT,
    header::HOST,
    header::MAX_FORWARDS,
    header::SET_COOKIE,
    header::TRAILER,
    header::WWW_AUTHENTICATE,
];

/// Removes hop-by-hop headers, including any named in `Connection`, and
/// `Transfer-Encoding` (the body is re-framed on the next hop).
///
/// Most messages carry none of them, so one pass over the names (comparisons, no hashing)
/// decides whether there is anything to remove.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    if !headers.keys().any(is_hop_by_hop) {
        return;
    }
    if let Entry::Occupied(connection) = headers.entry(header::CONNECTION) {
        let (_, values) = connection.remove_entry_mult();
        let values: Vec<HeaderValue> = values.collect();
        for value in &values {
            let Ok(names) = value.to_str() else { continue };
            for name in names.split(',').map(str::trim) {
                // `keep-alive` and `close` (nearly every `Connection` header) are options,
                // not names to look up: a `Keep-Alive` header goes with the fixed list.
                if name.eq_ignore_ascii_case("keep-alive") || name.eq_ignore_ascii_case("close") {
                    continue;
                }
                // An invalid name matches nothing and removes nothing.
                headers.remove(name);
            }
        }
    }
    if headers.keys().any(is_hop_by_hop) {
        for name in &HOP_BY_HOP {
            headers.remove(name);
        }
        headers.remove(header::TRANSFER_ENCODING);
    }
}

/// A header that describes only the connection it arrives on (`Transfer-Encoding`
/// included), whatever `Connection` lists.
pub fn is_hop_by_hop(name: &HeaderName) -> bool {
    *name == header::TRANSFER_ENCODING || HOP_BY_HOP.contains(name)
}

/// A `Connection` value that names other headers to strip, beyond its `keep-alive` and
/// `close` options.
pub fn names_headers(connection: &HeaderValue) -> bool {
    connection.as_bytes().split(|&b| b == b',').any(|token| {
        let token = token.trim_ascii();
        !token.is_empty()
            && !token.eq_ignore_ascii_case(b"keep-alive")
            && !token.eq_ignore_ascii_case(b"close")
    })
}

/// Whether `name` may be passed on as a trailer field: not a hop-by-hop field and not one
/// RFC 9110 §6.5.1 keeps out of trailers.
pub fn is_trailer_field(name: &HeaderName) -> bool {
    !is_hop_by_hop(name) && !NOT_IN_TRAILERS.contains(name)
}

/// Whether a request's `TE` says its sender takes trailer fields (`TE: trailers`), so that
/// a relay which passes trailers on may ask the next hop for them.
pub fn accepts_trailers(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::TE)
        .iter()
        .any(accepts_trailers_value)
}

/// Whether one `TE` value lists `trailers`.
pub fn accepts_trailers_value(value: &HeaderValue) -> bool {
    value
        .as_bytes()
        .split(|&b| b == b',')
        .any(|token| token.trim_ascii().eq_ignore_ascii_case(b"trailers"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_standard_and_connection_named_headers() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            "keep-alive, x-session-secret".parse().unwrap(),
        );
        h.insert("keep-alive", "timeout=5".parse().unwrap());
        h.insert("x-session-secret", "s".parse().unwrap());
        h.insert(header::TRANSFER_ENCODING, "chunked".parse().unwrap());
        h.insert(header::UPGRADE, "websocket".parse().unwrap());
        h.insert(header::CONTENT_TYPE, "text/plain".parse().unwrap());
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key(header::CONTENT_TYPE));
    }

    #[test]
    fn strips_every_connection_value_and_leaves_clean_maps_alone() {
        let mut h = HeaderMap::new();
        h.append(header::CONNECTION, "x-a".parse().unwrap());
        h.append(header::CONNECTION, "x-b, not a name!".parse().unwrap());
        h.insert("x-a", "1".parse().unwrap());
        h.insert("x-b", "2".parse().unwrap());
        h.insert(header::TE, "trailers".parse().unwrap());
        h.insert(header::HOST, "example".parse().unwrap());
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1, "{h:?}");
        assert!(h.contains_key(header::HOST));

        assert!(names_headers(&"keep-alive, x-a".parse().unwrap()));
        assert!(!names_headers(&"Keep-Alive , close,".parse().unwrap()));
        assert!(is_hop_by_hop(&header::TRANSFER_ENCODING));
        assert!(!is_hop_by_hop(&header::HOST));

        let mut clean = HeaderMap::new();
        clean.insert(header::HOST, "example".parse().unwrap());
        clean.insert(header::CONTENT_LENGTH, "2".parse().unwrap());
        let before = clean.clone();
        strip_hop_by_hop(&mut clean);
        assert_eq!(clean, before);
    }

    #[test]
    fn trailer_is_end_to_end_and_trailer_fields_exclude_framing_and_routing() {
        assert!(!is_hop_by_hop(&header::TRAILER));
        let mut h = HeaderMap::new();
        h.insert(header::TRAILER, "x-checksum".parse().unwrap());
        strip_hop_by_hop(&mut h);
        assert!(h.contains_key(header::TRAILER));

        assert!(is_trailer_field(&HeaderName::from_static("x-checksum")));
        assert!(is_trailer_field(&HeaderName::from_static("grpc-status")));
        for name in [
            header::CONTENT_LENGTH,
            header::TRANSFER_ENCODING,
            header::HOST,
            header::TE,
        ] {
            assert!(!is_trailer_field(&name), "{name}");
        }
    }

    #[test]
    fn te_trailers_is_read_from_any_token_of_any_line() {
        let mut h = HeaderMap::new();
        assert!(!accepts_trailers(&h));
        h.append(header::TE, "gzip".parse().unwrap());
        assert!(!accepts_trailers(&h));
        h.append(header::TE, "deflate, Trailers".parse().unwrap());
        assert!(accepts_trailers(&h));
    }
}

//! What the proxy settles in a client's request head before routing it, whichever server
//! (HTTP/1 or HTTP/2) read it: one framing, one `Host`, the request target's authority as
//! the `Host`, and a target of ASCII only.
//!
//! A head whose meaning a proxy and its upstream could read differently is refused with
//! 400 and never forwarded: `Content-Length` beside `Transfer-Encoding` (RFC 9112 §6.3:
//! "ought to be handled as an error"; hyper would read the chunked body and forward it),
//! two `Host` headers (which one routes?), a target with bytes
//! beyond ASCII (forwarded raw, each server decodes them its own way), and an HTTP/2
//! `:authority` that names another host than its `Host` header (RFC 9113 §8.3.1). An
//! HTTP/1 absolute-form target (`GET http://a.example/x`) names the host itself: its
//! authority replaces a `Host` header that differs (RFC 9112 §3.2.2, as a proxy must).

use http::header::{CONTENT_LENGTH, HOST, TRANSFER_ENCODING};
use http::request::Parts;
use http::{HeaderValue, Version};

use crate::respond::Reason;

/// Settles `head` for forwarding, or says why it is refused.
pub(super) fn settle(head: &mut Parts) -> Result<(), Reason> {
    if head.headers.contains_key(TRANSFER_ENCODING) && head.headers.contains_key(CONTENT_LENGTH) {
        return Err(Reason::BadRequest);
    }
    let mut hosts = head.headers.get_all(HOST).iter();
    let host = hosts.next();
    if hosts.next().is_some() {
        return Err(Reason::BadRequest);
    }
    let target_is_ascii = head
        .uri
        .path_and_query()
        .is_none_or(|target| target.as_str().is_ascii());
    if !target_is_ascii {
        return Err(Reason::BadRequest);
    }
    let Some(authority) = head.uri.authority() else {
        return Ok(());
    };
    let differs = host.is_some_and(|host| {
        !host
            .as_bytes()
            .eq_ignore_ascii_case(authority.as_str().as_bytes())
    });
    if !differs {
        return Ok(());
    }
    if head.version == Version::HTTP_2 {
        return Err(Reason::BadRequest);
    }
    let settled = HeaderValue::from_str(authority.as_str()).map_err(|_| Reason::BadRequest)?;
    head.headers.insert(HOST, settled);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(target: &str, version: Version, hosts: &[&str]) -> Parts {
        let mut builder = http::Request::builder().uri(target).version(version);
        for host in hosts {
            builder = builder.header(HOST, *host);
        }
        builder.body(()).unwrap().into_parts().0
    }

    #[test]
    fn one_host_and_an_origin_form_target_pass_unchanged() {
        let mut parts = head("/api/x?q=1", Version::HTTP_11, &["a.example"]);
        assert_eq!(settle(&mut parts), Ok(()));
        assert_eq!(parts.headers[HOST], "a.example");
    }

    #[test]
    fn a_length_beside_a_transfer_coding_is_refused() {
        let mut parts = head("/x", Version::HTTP_11, &["a.example"]);
        parts
            .headers
            .insert(CONTENT_LENGTH, HeaderValue::from_static("4"));
        parts
            .headers
            .insert(TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
        assert_eq!(settle(&mut parts), Err(Reason::BadRequest));
    }

    #[test]
    fn two_hosts_are_refused() {
        let mut parts = head("/x", Version::HTTP_11, &["a.example", "b.example"]);
        assert_eq!(settle(&mut parts), Err(Reason::BadRequest));
        let mut parts = head("/x", Version::HTTP_11, &["a.example", "a.example"]);
        assert_eq!(
            settle(&mut parts),
            Err(Reason::BadRequest),
            "even equal ones"
        );
    }

    #[test]
    fn an_absolute_form_target_names_the_host() {
        let mut parts = head("http://a.example:8080/x", Version::HTTP_11, &["b.example"]);
        assert_eq!(settle(&mut parts), Ok(()));
        assert_eq!(parts.headers[HOST], "a.example:8080");
        let mut parts = head("http://A.example/x", Version::HTTP_11, &["a.EXAMPLE"]);
        assert_eq!(settle(&mut parts), Ok(()));
        assert_eq!(parts.headers[HOST], "a.EXAMPLE", "equal but for case: kept");
    }

    #[test]
    fn an_http2_authority_and_host_that_differ_are_refused() {
        let mut parts = head("http://a.example/x", Version::HTTP_2, &["b.example"]);
        assert_eq!(settle(&mut parts), Err(Reason::BadRequest));
        let mut parts = head("http://a.example/x", Version::HTTP_2, &[]);
        assert_eq!(settle(&mut parts), Ok(()));
    }

    #[test]
    fn a_target_beyond_ascii_is_refused() {
        let mut parts = head("/x", Version::HTTP_11, &["a.example"]);
        parts.uri = http::Uri::from_maybe_shared(bytes::Bytes::from_static(b"/caf\xc3\xa9"))
            .expect("the http crate takes UTF-8 in a target");
        assert_eq!(settle(&mut parts), Err(Reason::BadRequest));
    }
}

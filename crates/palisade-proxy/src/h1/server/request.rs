//! Request heads the own server takes: HTTP/1.1, no body, nothing the connection must
//! change protocol or close for. Anything else is left to hyper (see the module above).

use std::mem::MaybeUninit;

use bytes::Bytes;
use http::request::Parts;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Uri, Version};

/// The most request headers read; a request with more is left to hyper, which answers
/// 431.
const MAX_HEADERS: usize = 100;

/// The length of the request head at the start of `buf` (through its empty line), if
/// `buf` holds it all.
pub(in crate::h1) fn head_end(buf: &[u8]) -> Option<usize> {
    let mut start = 0;
    while let Some(offset) = memchr::memchr(b'\n', &buf[start..]) {
        let end = start + offset;
        let line = &buf[start..end];
        // An empty line ends the head; one before any other line is leading noise
        // (RFC 9112 §2.2), left to hyper with the rest.
        if line.is_empty() || line == b"\r" {
            return Some(end + 1);
        }
        start = end + 1;
    }
    None
}

/// Why a head is not taken.
#[derive(Debug, PartialEq, Eq)]
pub(in crate::h1) enum NotTaken {
    /// Framed twice, by `Content-Length` and `Transfer-Encoding`: refused (400), as a
    /// smuggling attempt (RFC 9112 §6.3). hyper would read it by its coding and forward it.
    Ambiguous,
    /// Not a valid request head (or not one the own server reads); hyper answers it.
    Other,
}

/// The parts of the request whose whole head is `head`, if the own server takes it.
pub(in crate::h1) fn parse(head: &Bytes) -> Result<Parts, NotTaken> {
    let mut slots = [MaybeUninit::<httparse::Header<'_>>::uninit(); MAX_HEADERS];
    let mut request = httparse::Request::new(&mut []);
    match request.parse_with_uninit_headers(head, &mut slots) {
        Ok(httparse::Status::Complete(len)) if len == head.len() => {}
        _ => return Err(NotTaken::Other),
    }
    if request.version != Some(1) {
        return Err(NotTaken::Other);
    }
    let method = request
        .method
        .and_then(|m| Method::from_bytes(m.as_bytes()).ok())
        .filter(|m| *m != Method::CONNECT)
        .ok_or(NotTaken::Other)?;
    let path = request.path.ok_or(NotTaken::Other)?;
    let uri =
        Uri::from_maybe_shared(head.slice_ref(path.as_bytes())).map_err(|_| NotTaken::Other)?;
    let mut headers = HeaderMap::with_capacity(request.headers.len());
    for header in request.headers.iter() {
        if !takes(header) {
            return Err(if framed_twice(request.headers) {
                NotTaken::Ambiguous
            } else {
                NotTaken::Other
            });
        }
        let name = HeaderName::from_bytes(header.name.as_bytes()).map_err(|_| NotTaken::Other)?;
        let value = HeaderValue::from_maybe_shared(head.slice_ref(header.value))
            .map_err(|_| NotTaken::Other)?;
        headers.append(name, value);
    }
    let (mut parts, ()) = Request::new(()).into_parts();
    parts.method = method;
    parts.uri = uri;
    parts.version = Version::HTTP_11;
    parts.headers = headers;
    Ok(parts)
}

/// Whether the head carries both `Content-Length` and `Transfer-Encoding`.
fn framed_twice(headers: &[httparse::Header<'_>]) -> bool {
    let has = |name: &str| headers.iter().any(|h| h.name.eq_ignore_ascii_case(name));
    has("content-length") && has("transfer-encoding")
}

/// Whether the own server takes a request with this header: none that gives it a body,
/// asks for `100 Continue`, an upgrade or the connection's close.
fn takes(header: &httparse::Header<'_>) -> bool {
    let name = header.name.as_bytes();
    let is = |known: &[u8]| name.eq_ignore_ascii_case(known);
    match name.len() {
        6 if is(b"expect") => false,
        7 if is(b"upgrade") => false,
        10 if is(b"connection") => !header.value.split(|&b| b == b',').any(|token| {
            let token = token.trim_ascii();
            token.eq_ignore_ascii_case(b"close") || token.eq_ignore_ascii_case(b"upgrade")
        }),
        14 if is(b"content-length") => header.value.trim_ascii() == b"0",
        17 if is(b"transfer-encoding") => false,
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(text: &str) -> Result<Parts, NotTaken> {
        let bytes = Bytes::copy_from_slice(text.as_bytes());
        assert_eq!(
            head_end(&bytes),
            Some(bytes.len()),
            "{text:?} is a whole head"
        );
        parse(&bytes)
    }

    #[test]
    fn a_plain_get_is_taken_with_its_headers_in_order() {
        let parts =
            parsed("GET /a/b?c=1 HTTP/1.1\r\nHost: x\r\nAccept: */*\r\nX-A: 1\r\nx-a: 2\r\n\r\n")
                .expect("taken");
        assert_eq!(parts.method, Method::GET);
        assert_eq!(parts.uri.path(), "/a/b");
        assert_eq!(parts.uri.query(), Some("c=1"));
        assert_eq!(parts.headers["host"], "x");
        let xa: Vec<_> = parts.headers.get_all("x-a").iter().collect();
        assert_eq!(xa, ["1", "2"]);
    }

    #[test]
    fn a_head_framed_by_both_a_length_and_a_coding_is_ambiguous() {
        for text in [
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: x\r\ntransfer-encoding: chunked\r\ncontent-length: 0\r\n\r\n",
        ] {
            assert_eq!(parsed(text).err(), Some(NotTaken::Ambiguous), "{text}");
        }
    }

    #[test]
    fn bodies_upgrades_closes_expectations_and_http_1_0_are_left_to_hyper() {
        for text in [
            "POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            "GET / HTTP/1.1\r\nConnection: keep-alive, close\r\n\r\n",
            "GET / HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n",
            "PUT / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 0\r\n\r\n",
            "GET / HTTP/1.0\r\n\r\n",
            "CONNECT a:443 HTTP/1.1\r\n\r\n",
            "GET / HTTP/1.1\r\nBad Header: x\r\n\r\n",
            "GET / HTTP/1.1\r\nX: a\rb\r\n\r\n",
        ] {
            assert_eq!(parsed(text).err(), Some(NotTaken::Other), "{text:?}");
        }
    }

    #[test]
    fn an_empty_declared_body_and_keep_alive_are_taken() {
        let parts =
            parsed("DELETE /x HTTP/1.1\r\nContent-Length: 0\r\nConnection: keep-alive\r\n\r\n")
                .expect("taken");
        assert_eq!(parts.method, Method::DELETE);
    }

    #[test]
    fn a_head_is_found_only_when_whole() {
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nHost: x\r\n"), None);
        assert_eq!(head_end(b"GET / HTTP/1.1\r\n\r\nGET"), Some(18));
        assert_eq!(head_end(b"GET / HTTP/1.1\n\n"), Some(16));
    }

    proptest::proptest! {
        #[test]
        fn no_input_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..256)) {
            let bytes = Bytes::from(bytes);
            if let Some(end) = head_end(&bytes) {
                let _ = parse(&bytes.slice(..end));
            }
        }
    }
}

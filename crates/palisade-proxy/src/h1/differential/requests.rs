//! The request heads the comparison is fed, and hyper's server reading them.

use super::responses::{MALFORMED, join, line_ends};
use super::*;

/// What hyper's server makes of a request head.
struct Served {
    method: String,
    target: String,
    headers: Vec<(String, Vec<u8>)>,
    /// hyper's framing says the request has no body.
    bodiless: bool,
}

/// hyper's HTTP/1 server's reading of `head`, sent alone before the client's close; `None`
/// if it refused it.
async fn hyper_server(head: &'static [u8]) -> Option<Served> {
    let (mut client, server) = tokio::io::duplex(1 << 20);
    let seen = Arc::new(Mutex::new(None));
    let record = seen.clone();
    let service = hyper::service::service_fn(move |request: http::Request<Incoming>| {
        let headers = request
            .headers()
            .iter()
            .map(|(n, v)| (n.as_str().to_owned(), v.as_bytes().to_vec()))
            .collect();
        *record.lock().unwrap_or_else(|e| e.into_inner()) = Some(Served {
            method: request.method().to_string(),
            target: request.uri().to_string(),
            headers,
            bodiless: request.body().is_end_stream(),
        });
        async { Ok::<_, std::convert::Infallible>(http::Response::new(Empty::<Bytes>::new())) }
    });
    let served = tokio::spawn(
        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(server), service),
    );
    let _ = client.write_all(head).await;
    let _ = client.shutdown().await;
    let _ = served.await;
    seen.lock().unwrap_or_else(|e| e.into_inner()).take()
}

/// `headers` ordered by name, each name's values in their order, without
/// `Content-Length`: a taken request has no body, and its length lines are the
/// framing's (the client writes the framing's own, whatever the request carried).
fn by_name(mut headers: Vec<(String, Vec<u8>)>) -> Vec<(String, Vec<u8>)> {
    headers.retain(|(name, _)| name != "content-length");
    headers.sort_by(|a, b| a.0.cmp(&b.0));
    headers
}

/// Request lines.
const REQUEST_LINE: &[&[u8]] = &[
    b"GET / HTTP/1.1",
    b"GET / HTTP/1.1",
    b"GET /a?b=c HTTP/1.1",
    b"HEAD /x HTTP/1.1",
    b"DELETE /x HTTP/1.1",
    b"PATCH /x HTTP/1.1",
    b"get / HTTP/1.1",
    b"M-SEARCH * HTTP/1.1",
    b"OPTIONS * HTTP/1.1",
    b"GET * HTTP/1.1",
    b"GET http://a.example/x HTTP/1.1",
    b"GET http://u@a.example:8080/x?y HTTP/1.1",
    b"GET /x#frag HTTP/1.1",
    b"GET //x HTTP/1.1",
    b"GET /a%20b HTTP/1.1",
];

/// Request lines the own server never takes, or no reader should.
const ODD_REQUEST_LINE: &[&[u8]] = &[
    b"CONNECT a.example:443 HTTP/1.1",
    b"GET /\xff HTTP/1.1",
    b"GET  / HTTP/1.1",
    b"GET / HTTP/1.1 ",
    b"GET /\tHTTP/1.1",
    b"GET / HTTP/1.0",
    b"GET / HTTP/1.2",
    b"GET / http/1.1",
    b"G@T / HTTP/1.1",
    b"GET /a b HTTP/1.1",
];

/// Request header lines.
const REQUEST_HEADER: &[&[u8]] = &[
    b"Host: x",
    b"Host: x",
    b"Host: x:80",
    b"Host:",
    b"Host: x, y",
    b"Host : x",
    b"Content-Length: 0",
    b"Content-Length:  0 ",
    b"Content-Length: 00",
    b"Content-Length: 0, 0",
    b"Content-Length: +0",
    b"Content-Length: 5",
    b"Transfer-Encoding: chunked",
    b"Transfer-Encoding: identity",
    b"Connection: keep-alive",
    b"Connection: close",
    b"Connection: keep-alive, close",
    b"Connection: Upgrade",
    b"Expect: 100-continue",
    b"Upgrade: websocket",
    b"TE: trailers",
    b"X-A: b",
    b"X-A: c",
    b"X-A:  spaced  ",
    b"X-Tab: a\tb",
    b"X-Empty:",
    b"X-Obs: a\xffb",
];

/// A request head.
pub(super) fn request_head() -> impl Strategy<Value = Vec<u8>> {
    let pick = |list: &[&'static [u8]]| prop::sample::select(list.to_vec());
    (
        prop_oneof![3 => pick(REQUEST_LINE), 1 => pick(ODD_REQUEST_LINE)],
        prop::collection::vec(
            prop_oneof![6 => pick(REQUEST_HEADER), 1 => pick(MALFORMED)],
            0..5,
        ),
        line_ends(),
    )
        .prop_map(|(line, headers, ends)| {
            let mut lines = vec![line];
            lines.extend(headers);
            lines.push(b"");
            join(&lines, ends)
        })
}

/// The comparison of one request head (see the module's doc).
pub(super) fn compare_request(head: &[u8]) -> Result<(), String> {
    let bytes = Bytes::copy_from_slice(head);
    let Some(end) = request::head_end(&bytes) else {
        return Ok(()); // not a whole head: the own server waits, or hands it over
    };
    let Ok(parts) = request::parse(&bytes.slice(..end)) else {
        return Ok(()); // not taken: hyper answers it (or the own server refuses it)
    };
    let head: &'static [u8] = head.to_vec().leak();
    let shown = String::from_utf8_lossy(head);
    let Some(served) = run(hyper_server(head)) else {
        return Err(format!(
            "the own server takes {shown:?}, which hyper refuses"
        ));
    };
    let ours: Vec<(String, Vec<u8>)> = parts
        .headers
        .iter()
        .map(|(n, v)| (n.as_str().to_owned(), v.as_bytes().to_vec()))
        .collect();
    if parts.method.as_str() != served.method
        || parts.uri.to_string() != served.target
        || by_name(ours.clone()) != by_name(served.headers.clone())
    {
        return Err(format!(
            "{shown:?}: own server {} {} {ours:?}, hyper {} {} {:?}",
            parts.method, parts.uri, served.method, served.target, served.headers
        ));
    }
    if !served.bodiless {
        // The own server takes only bodiless requests: reading the next bytes as the
        // next request where hyper reads them as a body is smuggling.
        return Err(format!(
            "the own server takes {shown:?} as bodiless, hyper reads a body"
        ));
    }
    Ok(())
}

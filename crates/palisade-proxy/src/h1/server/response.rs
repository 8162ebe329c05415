//! Writing a response: its head (an upstream's raw header lines, or a header map), then
//! its body, framed by `Content-Length` or chunked, in as few writes as it arrives in.

use std::cell::RefCell;
use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::task::Poll;
use std::time::UNIX_EPOCH;

use super::ClientStream;
use bytes::Bytes;
use http::header::{CONTENT_LENGTH, DATE, TRANSFER_ENCODING};
use http::{Response, StatusCode};
use http_body::Body as _;
use tokio::io::AsyncWriteExt;

use palisade::clock::{Clock, Nanos};

use crate::body::ProxyBody;
use crate::h1::client::RawHead;
use crate::h1::framing::{self, Framing};
use crate::h1::wire::push_header;
use crate::respond::Reply;

/// Body bytes gathered before they are written.
const GATHER: usize = 64 * 1024;
/// The write buffer a connection keeps between responses, at most.
const KEEP: usize = 8 * 1024;

/// Writes `reply` to `stream`, using `out` as the write buffer. `last`: the
/// connection closes after it (it says so in `Connection: close`). `Ok(true)`: the
/// connection may carry another request; `Ok(false)`: it must close (the body did not
/// match its length, or failed).
pub(super) async fn write(
    stream: &mut ClientStream,
    out: &mut Vec<u8>,
    reply: Reply,
    head_request: bool,
    last: bool,
) -> io::Result<bool> {
    out.clear();
    let framing = encode_head(
        out,
        &reply.response,
        reply.head.as_ref(),
        head_request,
        last,
    );
    let body = reply.response.into_body();
    let written = write_body(stream, out, body, framing).await;
    if out.capacity() > KEEP {
        // A large body was gathered: an idle connection does not keep that much.
        *out = Vec::new();
    }
    written
}

/// Writes the status line and headers into `out`; returns how the body is framed.
fn encode_head(
    out: &mut Vec<u8>,
    response: &Response<ProxyBody>,
    raw: Option<&RawHead>,
    head_request: bool,
    last: bool,
) -> Framing {
    let status = response.status();
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("Unknown").as_bytes());
    out.extend_from_slice(b"\r\n");
    let mut length = raw.and_then(RawHead::length);
    let mut dated = raw.is_some_and(RawHead::is_dated);
    if let Some(raw) = raw {
        raw.write_to(out);
    }
    for (name, value) in response.headers() {
        if *name == TRANSFER_ENCODING {
            continue; // the framing below is the one that holds
        }
        if *name == CONTENT_LENGTH {
            match std::str::from_utf8(value.as_bytes())
                .ok()
                .and_then(|v| v.parse().ok())
            {
                Some(n) if length.is_none() => length = Some(n),
                _ => continue,
            }
        }
        dated |= *name == DATE;
        push_header(out, name.as_str().as_bytes(), value.as_bytes());
    }
    if !dated {
        push_date(out);
    }
    if last {
        out.extend_from_slice(b"connection: close\r\n");
    }
    let bodiless = head_request
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    let framing = if bodiless {
        Framing::None
    } else if let Some(n) = length {
        Framing::Length(n)
    } else {
        let framing = match response.body().size_hint().exact() {
            Some(n) => Framing::Length(n),
            None => Framing::Chunked,
        };
        framing.push_header(out);
        framing
    };
    out.extend_from_slice(b"\r\n");
    framing
}

/// Writes the body after the head already in `out`, gathering what is ready before each
/// write.
async fn write_body(
    stream: &mut ClientStream,
    out: &mut Vec<u8>,
    mut body: ProxyBody,
    framing: Framing,
) -> io::Result<bool> {
    if framing == Framing::None {
        stream.write_all(out).await?;
        return Ok(true);
    }
    let mut sent = 0u64;
    let mut trailers = None;
    loop {
        // Polled once first: a frame already here joins the bytes gathered so far; only
        // when none is ready is what is gathered written before waiting.
        let polled = poll_fn(|cx| Poll::Ready(Pin::new(&mut body).poll_frame(cx))).await;
        let frame = match polled {
            Poll::Ready(frame) => frame,
            Poll::Pending => {
                if !out.is_empty() {
                    stream.write_all(out).await?;
                    out.clear();
                }
                poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await
            }
        };
        let data = match frame {
            None => break,
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => data,
                // Passed on after a chunked body's last chunk; a body framed by its
                // length has no place for them.
                Err(frame) => {
                    trailers = frame.into_trailers().ok();
                    continue;
                }
            },
            Some(Err(error)) => {
                // The status is out or about to be: the client learns of the failure by
                // the connection closing before the body's end.
                tracing::debug!(%error, "response body failed");
                stream.write_all(out).await?;
                return Ok(false);
            }
        };
        if data.is_empty() {
            continue;
        }
        sent += data.len() as u64;
        match framing {
            Framing::Length(n) if sent > n => {
                let over = usize::try_from(sent - n).unwrap_or(usize::MAX);
                let fits = data.len().saturating_sub(over);
                out.extend_from_slice(&data[..fits]);
                stream.write_all(out).await?;
                return Ok(false);
            }
            Framing::Chunked => push_chunk(stream, out, data).await?,
            _ => push_data(stream, out, data).await?,
        }
    }
    if framing == Framing::Chunked {
        out.extend_from_slice(b"0\r\n"); // the last chunk, then its trailers
        for (name, value) in trailers.iter().flatten() {
            push_header(out, name.as_str().as_bytes(), value.as_bytes());
        }
        out.extend_from_slice(b"\r\n");
    }
    stream.write_all(out).await?;
    out.clear();
    Ok(is_complete(framing, sent))
}

/// Whether `sent` bytes make the whole body `framing` declared.
fn is_complete(framing: Framing, sent: u64) -> bool {
    match framing {
        Framing::Length(n) => sent == n,
        Framing::None | Framing::Chunked => true,
    }
}

/// Adds `data` to what is gathered, or writes both when it is large.
async fn push_data(stream: &mut ClientStream, out: &mut Vec<u8>, data: Bytes) -> io::Result<()> {
    if out.len() + data.len() <= GATHER {
        out.extend_from_slice(&data);
        return Ok(());
    }
    stream.write_all(out).await?;
    out.clear();
    stream.write_all(&data).await
}

/// Adds `data` as one chunk.
async fn push_chunk(stream: &mut ClientStream, out: &mut Vec<u8>, data: Bytes) -> io::Result<()> {
    framing::push_chunk_size(out, data.len());
    push_data(stream, out, data).await?;
    out.extend_from_slice(b"\r\n");
    Ok(())
}

/// The `Date` header line of the current second, formatted once per second per thread.
struct DateLine {
    /// Times the line's second by the CPU's counter: the wall clock is read only when a
    /// second has passed.
    clock: Clock,
    /// The reading of `clock` at which the line's second ends.
    expires: Nanos,
    line: Vec<u8>,
}

thread_local! {
    static DATE_LINE: RefCell<DateLine> = RefCell::new(DateLine {
        clock: Clock::fast(),
        expires: 0,
        line: Vec::new(),
    });
}

/// Adds a `Date` header: every response the proxy makes itself carries one.
fn push_date(out: &mut Vec<u8>) {
    DATE_LINE.with(|date| {
        let mut date = date.borrow_mut();
        let now = date.clock.now();
        if now >= date.expires {
            let wall = palisade_http::wall::now();
            let into_second = wall
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos());
            date.expires = now + u64::from(1_000_000_000 - into_second);
            date.line.clear();
            date.line.extend_from_slice(b"date: ");
            date.line
                .extend_from_slice(httpdate::fmt_http_date(wall).as_bytes());
            date.line.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(&date.line);
    });
}

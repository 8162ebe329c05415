//! The sidecar's HTTP/1.1 client: one request at a time on a keep-alive connection,
//! driven by the request's own task.
//!
//! hyper's client connection runs as a task of its own: every proxied request would be
//! handed to that task and its response handed back (two task crossings, often two
//! threads, per request), and its body streamed through a channel between them. Here the
//! connection is a plain value: the request's future writes the head (and a small body)
//! in one write and reads the response head; the response body reads from the same
//! socket when the client side polls it, and hands the connection back when it ends. No
//! task is spawned, nothing crosses tasks.
//!
//! What it speaks: requests with no body, a `Content-Length` body (written with the head
//! when small) or a chunked one; responses framed by `Content-Length`, chunked, or by the
//! connection's close; `HEAD`, 204 and 304 without a body; interim 1xx responses skipped
//! (101 refused: a pooled connection never switches protocols; upgrades go through
//! `forward::tunnel` on a connection of their own). A body that streams is written while
//! the connection is watched: an endpoint that gives its final answer before the body is
//! all sent (a 413, say) stops the sending, and its answer is relayed (the connection is
//! then not reused); interim answers (100 Continue) meanwhile are skipped.

mod body;
mod head;
mod raw;
mod response;
#[cfg(test)]
mod tests;

use std::io::ErrorKind;

use bytes::BytesMut;
use http::header::CONTENT_LENGTH;
use http::uri::Authority;
use http::{Method, Response, StatusCode};
use http_body_util::BodyExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::h1::framing::{self, Framing};
use crate::h1::interim::EarlyHints;
pub(crate) use body::Body;
pub(crate) use head::RequestHead;
pub(crate) use response::RawHead;

use crate::body::{BoxError, ProxyBody};

/// Room made in the read buffer when it runs low.
const READ_BUFFER: usize = 8 * 1024;
/// Request bodies up to this many bytes are written together with their head.
const COALESCE: u64 = 16 * 1024;

/// The response head at the start of `buf`, split off it, or `None` if `buf` does not
/// hold a whole head yet. `head_request`: the request was a `HEAD` (no body follows).
/// The header lines are kept as received where they can be (see `raw`), else the head is
/// parsed into a map alone (`head::parse_full`).
fn parse_response(
    buf: &mut BytesMut,
    head_request: bool,
) -> Result<Option<response::ResponseHead>, Error> {
    match raw::parse(buf, head_request)? {
        raw::Parsed::Head(head) => Ok(Some(head)),
        raw::Parsed::Partial if buf.len() <= response::MAX_HEAD => Ok(None),
        raw::Parsed::Partial | raw::Parsed::Full => head::parse_full(buf, head_request),
    }
}

/// The raw parse with its fallback (`keep_raw`), or the full one alone: for tests that
/// compare them.
#[cfg(test)]
fn parse(
    buf: &mut BytesMut,
    head_request: bool,
    keep_raw: bool,
) -> Result<Option<response::ResponseHead>, Error> {
    if keep_raw {
        parse_response(buf, head_request)
    } else {
        head::parse_full(buf, head_request)
    }
}

/// Why an exchange failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    /// The socket failed.
    #[error("upstream connection: {0}")]
    Io(#[from] std::io::Error),
    /// The server closed the connection without a byte of response.
    #[error("the upstream closed the connection without answering")]
    Closed,
    /// The server closed the connection in the middle of the response.
    #[error("the upstream closed the connection before the response ended")]
    Incomplete,
    /// The response is not valid HTTP/1.
    #[error("malformed response from the upstream: {0}")]
    Malformed(&'static str),
    /// The request body failed while it was sent.
    #[error("request body: {0}")]
    Body(BoxError),
    /// The request body's length is not the one it declared.
    #[error("the request body's length differs from the one declared")]
    BodyLength,
}

impl From<crate::h1::framing::Invalid> for Error {
    fn from(invalid: crate::h1::framing::Invalid) -> Self {
        match invalid {
            crate::h1::framing::Invalid::Malformed(what) => Error::Malformed(what),
            crate::h1::framing::Invalid::Incomplete => Error::Incomplete,
        }
    }
}

/// An HTTP/1.1 connection to an endpoint, between requests.
#[derive(Debug)]
pub(crate) struct Connection {
    io: TcpStream,
    /// Bytes read and not yet consumed; a response's head and body are split off it.
    read: BytesMut,
    /// The request head being written; its capacity is kept for the next request.
    write: Vec<u8>,
}

impl Connection {
    /// A connection over `io`, boxed: it moves between its pool, each request's future
    /// and each response's body, and as a pointer it moves in one word and adds one word
    /// to each of those futures.
    pub(crate) fn new(io: TcpStream) -> Box<Self> {
        Box::new(Self {
            io,
            read: BytesMut::new(),
            write: Vec::new(),
        })
    }

    /// An idle connection is still usable: the server has neither closed it nor sent
    /// anything unasked. Costs no system call unless the socket has become readable, as
    /// far as the event loop has seen: a close that arrived since its last turn goes
    /// unseen. With `confirm`, the kernel is asked (one `recv` with `MSG_PEEK`), for a
    /// request that could not be sent again if the connection turned out closed.
    pub(crate) fn is_open(&self, confirm: bool) -> bool {
        let mut probe = [0u8; 1];
        let unread =
            matches!(self.io.try_read(&mut probe), Err(e) if e.kind() == ErrorKind::WouldBlock);
        if !unread || !confirm {
            return unread;
        }
        let mut peek = [std::mem::MaybeUninit::<u8>::uninit(); 1];
        matches!(
            socket2::SockRef::from(&self.io).peek(&mut peek),
            Err(e) if e.kind() == ErrorKind::WouldBlock
        )
    }

    /// Sends a request (its head, then `body`) and reads the response head. `authority`
    /// is the `Host` when the head gives none. The response body streams from this
    /// connection, which the body holds until it ends.
    pub(crate) async fn send<B>(
        mut self: Box<Self>,
        head: &RequestHead<'_>,
        mut body: ProxyBody,
        authority: &Authority,
        wrap: impl FnOnce(Body) -> B,
    ) -> Result<Box<Response<B>>, Error> {
        let framing = if http_body::Body::is_end_stream(&body) {
            let declares = head.headers.contains_key(CONTENT_LENGTH)
                || *head.method == Method::POST
                || *head.method == Method::PUT
                || *head.method == Method::PATCH;
            if declares {
                Framing::Length(0)
            } else {
                Framing::None
            }
        } else {
            match http_body::Body::size_hint(&body).exact() {
                Some(n) => Framing::Length(n),
                None => Framing::Chunked,
            }
        };
        head::encode_request(&mut self.write, head, authority, framing);
        // Whether the request went out whole: a connection whose request was cut short by
        // an early answer is not reused.
        let mut whole = true;
        match framing {
            Framing::None | Framing::Length(0) => {
                self.io.write_all(&self.write).await?;
            }
            Framing::Length(n) if n <= COALESCE => {
                let mut sent = 0;
                while let Some(frame) = body.frame().await {
                    if let Ok(data) = frame.map_err(Error::Body)?.into_data() {
                        sent += data.len() as u64;
                        if sent > n {
                            return Err(Error::BodyLength);
                        }
                        self.write.extend_from_slice(&data);
                    }
                }
                if sent != n {
                    return Err(Error::BodyLength);
                }
                self.io.write_all(&self.write).await?;
            }
            Framing::Length(n) => {
                self.io.write_all(&self.write).await?;
                whole = self.stream_body(&mut body, Some(n)).await? == Sent::Whole;
            }
            Framing::Chunked => {
                self.io.write_all(&self.write).await?;
                whole = self.stream_body(&mut body, None).await? == Sent::Whole;
            }
        }
        drop(body);
        self.read_response(*head.method == Method::HEAD, whole, head.early_hints, wrap)
            .await
    }

    /// Writes a body frame by frame: `length` bytes, or chunked when `None`, watching
    /// the connection meanwhile for an early final answer.
    async fn stream_body(
        &mut self,
        body: &mut ProxyBody,
        length: Option<u64>,
    ) -> Result<Sent, Error> {
        let Connection { io, read, write } = self;
        let (mut reader, mut writer) = io.split();
        let mut sent = 0u64;
        loop {
            let frame = tokio::select! {
                biased;
                answered = answered_early(&mut reader, read) => return answered,
                frame = body.frame() => frame,
            };
            let Some(frame) = frame else { break };
            let Ok(data) = frame.map_err(Error::Body)?.into_data() else {
                continue; // a request body's trailers are not forwarded
            };
            if data.is_empty() {
                continue;
            }
            sent += data.len() as u64;
            write.clear();
            match length {
                Some(n) if sent > n => return Err(Error::BodyLength),
                Some(_) => write.extend_from_slice(&data),
                None => {
                    framing::push_chunk_size(write, data.len());
                    write.extend_from_slice(&data);
                    write.extend_from_slice(b"\r\n");
                }
            }
            tokio::select! {
                biased;
                answered = answered_early(&mut reader, read) => return answered,
                written = writer.write_all(write) => written?,
            }
        }
        match length {
            Some(n) if sent != n => Err(Error::BodyLength),
            Some(_) => Ok(Sent::Whole),
            None => {
                writer.write_all(framing::LAST_CHUNK).await?;
                Ok(Sent::Whole)
            }
        }
    }

    /// Reads the response head. The response is boxed where it is made, with its body as
    /// `wrap` makes it: it is passed up through every policy of the request, and boxed it
    /// is one word at each step rather than a few hundred bytes copied.
    async fn read_response<B>(
        mut self: Box<Self>,
        head_request: bool,
        reusable: bool,
        early_hints: Option<&EarlyHints>,
        wrap: impl FnOnce(Body) -> B,
    ) -> Result<Box<Response<B>>, Error> {
        loop {
            if !self.read.is_empty() {
                if let Some(head) = parse_response(&mut self.read, head_request)? {
                    if head.status == StatusCode::SWITCHING_PROTOCOLS {
                        return Err(Error::Malformed("protocol upgrades are not relayed"));
                    }
                    if head.status.is_informational() {
                        // The final answer follows; early hints go on to a client whose
                        // connection relays them.
                        if let (StatusCode::EARLY_HINTS, Some(hints), Some(raw)) =
                            (head.status, early_hints, head.raw)
                        {
                            hints.push(raw);
                        }
                        continue;
                    }
                    let mut response = Box::new(Response::new(wrap(Body::new(
                        self,
                        head.framing,
                        head.keep_alive && reusable,
                        head.raw,
                    ))));
                    *response.status_mut() = head.status;
                    *response.version_mut() = head.version;
                    *response.headers_mut() = head.headers;
                    return Ok(response);
                }
            }
            if self.read.capacity() - self.read.len() < 1024 {
                self.read.reserve(READ_BUFFER);
            }
            if self.io.read_buf(&mut self.read).await? == 0 {
                return Err(if self.read.is_empty() {
                    Error::Closed
                } else {
                    Error::Incomplete
                });
            }
        }
    }
}

/// How sending a request body ended.
#[derive(Debug, PartialEq, Eq)]
enum Sent {
    /// All of it went out.
    Whole,
    /// The endpoint gave its final answer first; the rest was not sent.
    Early,
}

/// Resolves when the endpoint has given a final answer while the request body is still
/// going out (its head then waits in `read`), or has closed the connection. Interim
/// answers (100 Continue) are dropped from `read` as they come; without a final one this
/// never resolves.
async fn answered_early(
    reader: &mut tokio::net::tcp::ReadHalf<'_>,
    read: &mut BytesMut,
) -> Result<Sent, Error> {
    loop {
        while let Some((status, end)) = head::peek_status(read)? {
            if !status.is_informational() || status == StatusCode::SWITCHING_PROTOCOLS {
                return Ok(Sent::Early);
            }
            let _interim = read.split_to(end);
        }
        if read.capacity() - read.len() < 1024 {
            read.reserve(READ_BUFFER);
        }
        if reader.read_buf(read).await? == 0 {
            return Err(if read.is_empty() {
                Error::Closed
            } else {
                Error::Incomplete
            });
        }
    }
}

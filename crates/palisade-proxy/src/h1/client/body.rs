//! Response bodies: the framing's decoder, and the body that streams from its connection
//! and gives the connection back once the body has ended.

use std::future::Future as _;
use std::pin::{Pin, pin};
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};
use http_body::{Frame, SizeHint};
use tokio::io::AsyncReadExt;

use super::response::RawHead;
use super::{Connection, Error};
use crate::h1::framing::{Decoded, Decoder, take};

/// The most trailer lines read after a chunked body (those not passed on included).
const MAX_TRAILERS: usize = 100;

// === impl Body ===

/// A response body streamed from its connection.
///
/// When the body has ended and the connection may carry another request,
/// [`Body::take_connection`] hands the connection back; a body dropped before its end
/// closes its connection.
#[derive(Debug)]
pub(crate) struct Body {
    conn: Option<Box<Connection>>,
    framing: Decoder,
    keep_alive: bool,
    /// The server has closed its side.
    eof: bool,
    /// A body already read whole with the head, not yet handed out.
    ready: Option<Bytes>,
    /// The response's header lines as received, when kept raw (see `raw`).
    raw: Option<RawHead>,
    /// The trailers read so far: boxed, as most bodies have none.
    trailers: Option<Box<Trailers>>,
}

/// A chunked body's trailer section as it is read.
#[derive(Debug, Default)]
struct Trailers {
    /// The fields that may be passed on.
    fields: HeaderMap,
    /// Lines read, those dropped included.
    lines: usize,
}

impl Body {
    pub(super) fn new(
        mut conn: Box<Connection>,
        mut framing: Decoder,
        keep_alive: bool,
        raw: Option<RawHead>,
    ) -> Self {
        // The common small response arrives with its head: take it now, so that the
        // connection is free before the body is even asked for.
        let mut ready = None;
        if let Decoder::Length(n) = framing {
            if n > 0 && conn.read.len() as u64 >= n {
                ready = Some(conn.read.split_to(take(conn.read.len(), n)).freeze());
                framing = Decoder::Length(0);
            }
        }
        Self {
            conn: Some(conn),
            framing,
            keep_alive,
            eof: false,
            ready,
            raw,
            trailers: None,
        }
    }

    /// The response's header lines as received, if they were kept raw. At most once.
    pub(crate) fn take_raw(&mut self) -> Option<RawHead> {
        self.raw.take()
    }

    /// The connection, if the body has been read to its end and the connection can take
    /// another request. At most once.
    pub(crate) fn take_connection(&mut self) -> Option<Box<Connection>> {
        let reusable = self.keep_alive
            && self.framing.is_done()
            && self.conn.as_ref().is_some_and(|c| c.read.is_empty());
        if reusable { self.conn.take() } else { None }
    }

    /// Every byte of the body has been read from the connection.
    pub(crate) fn is_read(&self) -> bool {
        self.framing.is_done()
    }

    /// Takes a trailer line: a field that may be passed on (see
    /// `palisade_http::headers::is_trailer_field`) is kept, others are dropped; a line
    /// that is not a field, or one too many, fails the body.
    fn trailer(&mut self, line: &[u8]) -> Result<(), Error> {
        let trailers = self.trailers.get_or_insert_default();
        trailers.lines += 1;
        if trailers.lines > MAX_TRAILERS {
            return Err(Error::Malformed("too many trailer fields"));
        }
        if line[0] == b' ' || line[0] == b'\t' {
            return Err(Error::Malformed("folded trailer field"));
        }
        let colon = memchr::memchr(b':', line).ok_or(Error::Malformed("invalid trailer field"))?;
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(&line[..colon]),
            HeaderValue::from_bytes(line[colon + 1..].trim_ascii()),
        ) else {
            return Err(Error::Malformed("invalid trailer field"));
        };
        if palisade_http::headers::is_trailer_field(&name) {
            trailers.fields.append(name, value);
        }
        Ok(())
    }

    fn poll_read_more(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        let Some(conn) = self.conn.as_mut() else {
            return Poll::Ready(Err(Error::Incomplete));
        };
        if conn.read.capacity() - conn.read.len() < 1024 {
            conn.read.reserve(super::READ_BUFFER);
        }
        let read = ready!(pin!(conn.io.read_buf(&mut conn.read)).poll(cx))?;
        if read == 0 {
            self.eof = true;
        }
        Poll::Ready(Ok(()))
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        let this = self.get_mut();
        if let Some(bytes) = this.ready.take() {
            return Poll::Ready(Some(Ok(Frame::data(bytes))));
        }
        loop {
            let decoded = match this.conn.as_mut() {
                Some(conn) => this.framing.decode(&mut conn.read, this.eof),
                None if this.framing.is_done() => Ok(Decoded::End),
                None => Err(crate::h1::framing::Invalid::Incomplete),
            };
            match decoded {
                Ok(Decoded::Data(bytes)) => return Poll::Ready(Some(Ok(Frame::data(bytes)))),
                Ok(Decoded::Trailer(line)) => {
                    if let Err(error) = this.trailer(&line) {
                        this.conn = None;
                        return Poll::Ready(Some(Err(error)));
                    }
                }
                Ok(Decoded::End) => {
                    let trailers = this.trailers.take().filter(|t| !t.fields.is_empty());
                    return Poll::Ready(trailers.map(|t| Ok(Frame::trailers(t.fields))));
                }
                Ok(Decoded::More) => {
                    if let Err(error) = ready!(this.poll_read_more(cx)) {
                        this.conn = None;
                        return Poll::Ready(Some(Err(error)));
                    }
                }
                Err(invalid) => {
                    this.conn = None;
                    return Poll::Ready(Some(Err(invalid.into())));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ready.is_none() && self.framing.is_done() && self.trailers.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        let ready = self.ready.as_ref().map_or(0, |b| b.len() as u64);
        match self.framing.remaining() {
            Some(n) => SizeHint::with_exact(n + ready),
            None => SizeHint::default(),
        }
    }
}

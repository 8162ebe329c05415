//! The sidecar's own HTTP/1.1 server, for the requests that make up nearly all of a
//! sidecar's traffic: HTTP/1.1, keep-alive, no body. It hands the connection to hyper's
//! server, with the bytes it has read put back, at the first request it does not take
//! (a body, `Expect`, an upgrade, `Connection: close`, HTTP/1.0, anything malformed or
//! too large, which hyper answers with 400 or 431), and hyper serves the connection from
//! then on.
//!
//! Why: a response relayed through hyper's server has its upstream's head parsed into a
//! `HeaderMap` only to be encoded back from it, and goes through hyper's dispatcher (see
//! docs/BENCHMARKS.md for the share of a request that is). Here an upstream's header
//! lines are written through as they came (`h1::client::RawHead`), the proxy's own headers
//! after them, and a body that arrived with its head leaves in the same write.
//!
//! The rest is as with hyper: requests on a connection are answered in order (pipelined
//! ones too), the header timeout is kept by `head_timeout`, and a stop (see `drain`)
//! closes the connection once it is idle or its response is written.

pub(super) mod request;
mod response;

use std::future::Future as _;
use std::future::poll_fn;
use std::io;
use std::sync::Arc;
use std::task::{Poll, ready};

use arc_swap::ArcSwap;
use bytes::BytesMut;
use http::{Method, Request};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::h1::interim::EarlyHints;
use crate::h1::rewind::Rewind;

/// A client's connection as the own server (and hyper, after a hand-over) reads and
/// writes it: its writes timed for the send timeout (see `head_timeout`).
pub(crate) type ClientStream = crate::serve::head_timeout::WriteWatched<TcpStream>;

use crate::body::ClientBody;
use crate::forward::{self, Client, Handled};
use crate::respond::{self, Reason};
use crate::runtime::Runtime;
use crate::serve::drain::Drain;

/// Room made in the read buffer when it runs low.
const READ_BUFFER: usize = 4 * 1024;

/// How a connection left the own server.
pub(crate) enum Served {
    /// It is closed (or to be closed).
    Closed,
    /// hyper serves it from here on, starting with the bytes read so far.
    HandedOver(Rewind<ClientStream>),
}

/// Serves `stream` until it closes or is handed over. `max_head`: the longest request
/// head taken (a longer one is handed to hyper, which answers 431). `abort_on_close`:
/// the client's closing its side cancels its request in flight (else it is answered,
/// as a client that half-closes after its request expects).
pub(crate) async fn serve(
    mut stream: ClientStream,
    runtime: &ArcSwap<Runtime>,
    client: &Arc<Client>,
    drain: &Drain,
    max_head: usize,
    abort_on_close: bool,
) -> io::Result<Served> {
    let mut read = BytesMut::new();
    let mut out = Vec::new();
    // Until the connection is handed to hyper (which cannot send them), an upstream's
    // early hints are written to it (see `h1::interim`).
    client.early_hints.relay(true);
    loop {
        let head = loop {
            if let Some(end) = request::head_end(&read) {
                break read.split_to(end).freeze();
            }
            if read.len() > max_head {
                client.early_hints.relay(false);
                return Ok(Served::HandedOver(Rewind::new(read.freeze(), stream)));
            }
            if read_more(&mut stream, &mut read, drain).await? == 0 {
                return Ok(Served::Closed);
            }
        };
        if head.len() > max_head {
            return Ok(hand_over(head, read, stream, client));
        }
        let parts = match request::parse(&head) {
            Ok(parts) => parts,
            Err(request::NotTaken::Other) => return Ok(hand_over(head, read, stream, client)),
            Err(request::NotTaken::Ambiguous) => {
                let refused =
                    respond::explained_reply(Reason::BadRequest, Reason::BadRequest.status(), None);
                response::write(&mut stream, &mut out, refused, false, true).await?;
                return Ok(Served::Closed);
            }
        };
        let head_request = parts.method == Method::HEAD;
        let request = Request::from_parts(parts, ClientBody::Empty);
        let reply = match forward::handle(runtime.load_full(), request, client.clone()) {
            Handled::Answered(reply) => reply,
            // As hyper does with `half_close(false)`: a client that closes its side while
            // its request is in flight cancels the request (its upstream call, its
            // bulkhead slot).
            // Waited for with the upstream's early hints written meanwhile. Hints are
            // queued by the request's own future, in this task (the upstream client reads
            // them while it waits for the final answer): so after each poll that leaves
            // the answer pending, a look at the queue (one atomic load) is all it takes.
            Handled::Forwarded(mut answer) => loop {
                let hints = &client.early_hints;
                let step = poll_fn(|cx| match answer.as_mut().poll(cx) {
                    Poll::Ready(reply) => Poll::Ready(Some(reply)),
                    Poll::Pending if hints.has_queued() => Poll::Ready(None),
                    Poll::Pending => Poll::Pending,
                });
                let step = if abort_on_close {
                    // As hyper does with `half_close(false)`: a client that closes its
                    // side cancels its request (its upstream call, its bulkhead slot).
                    // Else it is answered whatever its read side does, and the next read
                    // finds its close (or the next request).
                    tokio::select! {
                        biased;
                        step = step => step,
                        () = closed(&mut stream, &mut read) => return Ok(Served::Closed),
                    }
                } else {
                    step.await
                };
                // Hints go out before the answer (those that came with it too).
                if hints.has_queued() {
                    write_hints(&mut stream, hints).await?;
                }
                if let Some(reply) = step {
                    break reply;
                }
            },
        };
        let last = drain.is_draining();
        let reusable = response::write(&mut stream, &mut out, reply, head_request, last).await?;
        if !reusable || last {
            return Ok(Served::Closed);
        }
    }
}

/// Hands the connection to hyper with `head` and the bytes after it put back.
fn hand_over(head: bytes::Bytes, rest: BytesMut, stream: ClientStream, client: &Client) -> Served {
    client.early_hints.relay(false);
    let mut prefix = BytesMut::with_capacity(head.len() + rest.len());
    prefix.extend_from_slice(&head);
    prefix.extend_from_slice(&rest);
    Served::HandedOver(Rewind::new(prefix.freeze(), stream))
}

/// Writes the early hints queued for the connection.
async fn write_hints(stream: &mut ClientStream, hints: &EarlyHints) -> io::Result<()> {
    let mut out = Vec::new();
    for head in &hints.take_all() {
        crate::h1::interim::encode(head, &mut out);
    }
    stream.write_all(&out).await
}

/// Resolves when the client closes its side of the connection (or it fails). Bytes it
/// sends meanwhile (a pipelined request) go to `read`, after which nothing more is
/// watched.
async fn closed(stream: &mut ClientStream, read: &mut BytesMut) {
    poll_fn(|cx| {
        if !read.is_empty() {
            return Poll::Pending;
        }
        match ready!(poll_read(stream, read, cx)) {
            Ok(0) | Err(_) => Poll::Ready(()),
            Ok(_) => Poll::Pending,
        }
    })
    .await;
}

/// Reads what the client has sent into `read`; 0 when it has closed, or when the server
/// is stopping and no request has begun.
async fn read_more(
    stream: &mut ClientStream,
    read: &mut BytesMut,
    drain: &Drain,
) -> io::Result<usize> {
    poll_fn(|cx| {
        if read.is_empty() && drain.is_draining() {
            return Poll::Ready(Ok(0));
        }
        poll_read(stream, read, cx)
    })
    .await
}

/// One read into `read`, through tokio's `AsyncRead`: a read that does not fill the
/// room given shows the socket drained, and tokio then waits for the next readiness
/// event without first trying another `recv` that would fail with `EAGAIN`.
fn poll_read(
    stream: &mut ClientStream,
    read: &mut BytesMut,
    cx: &mut std::task::Context<'_>,
) -> Poll<io::Result<usize>> {
    if read.capacity() - read.len() < 1024 {
        read.reserve(READ_BUFFER);
    }
    std::pin::pin!(stream.read_buf(read)).poll(cx)
}

//! Response bodies degraded by a route's fault injection: slowed, or cut short.
//!
//! Which requests get a body fault, how many are in progress at once and how they are
//! counted is the library's fault injection (its `degrade_rate`, decided by
//! `FaultInjection::roll`); this is only what a degradation does to an HTTP body:
//!
//! - [`BodyFault::Slow`]: the bytes are released at `bytes_per_second`, in chunks of about
//!   a twentieth of a second's worth, each when the bytes before it and itself would have
//!   taken that long. At most one upstream frame is held (the upstream is read again only
//!   when it is all released), so a slowed body holds the upstream back through its
//!   connection's flow control, never buffers without bound.
//! - [`BodyFault::Truncate`]: after `after` bytes the body fails with [`BodyTruncated`]
//!   (a body that ends by itself before that is left whole). The head has gone out
//!   unchanged, `Content-Length` included, so the client sees an incomplete response: on
//!   HTTP/1.1 the connection closes before the declared length or without a chunked
//!   body's last chunk (both servers, the sidecar's own and hyper's, close the
//!   connection when a body fails), on HTTP/2 the stream is reset.
//!
//! Either way the fault's guard (its place among the faults in progress) is held until
//! the body ends, fails or is dropped.

use std::future::Future as _;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};

use crate::body::BoxError;

/// The most bytes a slowed body releases at once.
const MAX_CHUNK: u64 = 64 * 1024;
/// Release steps per second of a slowed body (fewer when the rate is below this).
const STEPS_PER_SECOND: u64 = 20;

/// What a body fault does to a response body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyFault {
    /// Releases the body at this many bytes per second (at least 1).
    Slow {
        /// The rate, bytes per second.
        bytes_per_second: u64,
    },
    /// Fails the body after this many bytes.
    Truncate {
        /// Bytes let through before the cut.
        after: u64,
    },
}

/// The error a truncated body ends with.
#[derive(Debug, thiserror::Error)]
#[error("response body cut after {0} bytes by an injected fault")]
pub struct BodyTruncated(pub u64);

pin_project! {
    /// `inner` degraded by a [`BodyFault`], holding `guard` until it ends, fails or is
    /// dropped (see the module's doc).
    #[project = Projected]
    pub struct FaultyBody<B, G> {
        #[pin]
        inner: B,
        fault: BodyFault,
        guard: Option<G>,
        // Slow: data taken from `inner` and not yet released (one frame at most).
        pending: Bytes,
        // Slow: bytes released so far; truncate: bytes let through so far.
        sent: u64,
        // Slow: when the first byte was asked for, which the release times count from.
        started: Option<Instant>,
        // Slow: the wait for the next release, made at the first one.
        wait: Option<Pin<Box<Sleep>>>,
        // Truncate: the cut is made; the body fails after one yield (see `report_cut`).
        cut: bool,
        // Truncate: the yield before the failure is over.
        yielded: bool,
        // The body has ended or failed.
        done: bool,
    }
}

impl<B, G> FaultyBody<B, G> {
    /// `inner` degraded by `fault`, holding `guard`.
    pub fn new(inner: B, fault: BodyFault, guard: G) -> Self {
        Self {
            inner,
            fault,
            guard: Some(guard),
            pending: Bytes::new(),
            sent: 0,
            started: None,
            wait: None,
            cut: false,
            yielded: false,
            done: false,
        }
    }
}

impl<B, G> Body for FaultyBody<B, G>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        if *this.done {
            return Poll::Ready(None);
        }
        let polled = match *this.fault {
            BodyFault::Slow { bytes_per_second } => slow(&mut this, bytes_per_second, cx),
            BodyFault::Truncate { after } => truncate(&mut this, after, cx),
        };
        if matches!(polled, Poll::Ready(None) | Poll::Ready(Some(Err(_)))) {
            *this.done = true;
            this.guard.take();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        // Not while bytes wait for release or a cut waits to be reported: a server told
        // the body is over would end it properly (a chunked body's last chunk), and the
        // client would take a cut body for a whole one.
        self.done || (self.pending.is_empty() && !self.cut && self.inner.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        let inner = self.inner.size_hint();
        let held = self.pending.len() as u64;
        let mut hint = SizeHint::new();
        hint.set_lower(inner.lower().saturating_add(held));
        if let Some(upper) = inner.upper() {
            hint.set_upper(upper.saturating_add(held));
        }
        hint
    }
}

type Polled = Poll<Option<Result<Frame<Bytes>, BoxError>>>;

/// The next chunk of a slowed body, when its time has come.
fn slow<B, G>(this: &mut Projected<'_, B, G>, bytes_per_second: u64, cx: &mut Context<'_>) -> Polled
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    let bytes_per_second = bytes_per_second.max(1);
    let started = *this.started.get_or_insert_with(Instant::now);
    while this.pending.is_empty() {
        match ready!(this.inner.as_mut().poll_frame(cx)) {
            None => return Poll::Ready(None),
            Some(Err(error)) => return Poll::Ready(Some(Err(error.into()))),
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => *this.pending = data,
                // Trailers: after the last data, which is all released by now.
                Err(frame) => return Poll::Ready(Some(Ok(frame))),
            },
        }
    }
    let step = (bytes_per_second / STEPS_PER_SECOND).clamp(1, MAX_CHUNK);
    let len = step.min(this.pending.len() as u64);
    let due =
        palisade::clock::instant_after(started, release_time(*this.sent + len, bytes_per_second));
    match this.wait.as_mut() {
        Some(wait) => wait.as_mut().reset(due),
        None => *this.wait = Some(Box::pin(tokio::time::sleep_until(due))),
    }
    if let Some(wait) = this.wait.as_mut() {
        ready!(wait.as_mut().poll(cx));
    }
    *this.sent += len;
    // `len` is at most the pending length, a usize.
    let chunk = this
        .pending
        .split_to(usize::try_from(len).unwrap_or(usize::MAX));
    Poll::Ready(Some(Ok(Frame::data(chunk))))
}

/// The failure of a cut body, after one yield: a server that finds a body failed
/// closes the connection at once, and hyper's drops what it has buffered (the head, the
/// bytes before the cut) when it does; given a pending poll first, it writes them out.
/// (A client that is not reading may so get fewer bytes than the cut: the response is
/// incomplete either way.)
fn report_cut<B, G>(this: &mut Projected<'_, B, G>, after: u64, cx: &mut Context<'_>) -> Polled {
    if !*this.yielded {
        *this.yielded = true;
        cx.waker().wake_by_ref();
        return Poll::Pending;
    }
    Poll::Ready(Some(Err(BodyTruncated(after).into())))
}

/// How long `bytes` take at `bytes_per_second`.
fn release_time(bytes: u64, bytes_per_second: u64) -> Duration {
    let nanos = u128::from(bytes) * 1_000_000_000 / u128::from(bytes_per_second);
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

/// The next frame of a body cut after `after` bytes.
fn truncate<B, G>(this: &mut Projected<'_, B, G>, after: u64, cx: &mut Context<'_>) -> Polled
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    if *this.cut {
        return report_cut(this, after, cx);
    }
    let frame = match ready!(this.inner.as_mut().poll_frame(cx)) {
        None => return Poll::Ready(None),
        Some(Err(error)) => return Poll::Ready(Some(Err(error.into()))),
        Some(Ok(frame)) => frame,
    };
    let mut data = match frame.into_data() {
        Ok(data) => data,
        // Trailers come after the whole body: nothing was cut.
        Err(frame) => return Poll::Ready(Some(Ok(frame))),
    };
    let left = after.saturating_sub(*this.sent);
    if data.is_empty() {
        return Poll::Ready(Some(Ok(Frame::data(data))));
    }
    if left == 0 {
        *this.cut = true;
        return report_cut(this, after, cx);
    }
    if data.len() as u64 > left {
        // `left` is below the data's length, a usize.
        data.truncate(usize::try_from(left).unwrap_or(usize::MAX));
        *this.cut = true;
    }
    *this.sent += data.len() as u64;
    Poll::Ready(Some(Ok(Frame::data(data))))
}

#[cfg(test)]
mod tests;

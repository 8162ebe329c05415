//! Bodies the proxy sends and returns.

use std::future::Future as _;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full};
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};

/// The error of any body the proxy handles.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Any body, boxed: requests to upstreams and responses to clients.
pub type ProxyBody = UnsyncBoxBody<Bytes, BoxError>;

/// A body of fixed bytes.
pub fn full(bytes: impl Into<Bytes>) -> ProxyBody {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// An empty body. It has no size, so boxing it allocates nothing.
pub fn empty() -> ProxyBody {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

/// Boxes any body whose error converts to [`BoxError`].
pub fn boxed<B>(body: B) -> ProxyBody
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    body.map_err(Into::into).boxed_unsync()
}

pin_project! {
    /// A body that holds `guard` (a bulkhead slot, a metrics timer) until it ends or is
    /// dropped: the work of a proxied request ends with its response body, not its head.
    pub struct Guarded<B, G> {
        #[pin]
        inner: B,
        guard: Option<G>,
    }
}

impl<B, G> Guarded<B, G> {
    /// Holds `guard` for the life of `inner`.
    pub fn new(inner: B, guard: G) -> Self {
        Self {
            inner,
            guard: Some(guard),
        }
    }
}

impl<B: Body, G> Body for Guarded<B, G> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let this = self.project();
        let frame = this.inner.poll_frame(cx);
        if matches!(frame, Poll::Ready(None) | Poll::Ready(Some(Err(_)))) {
            this.guard.take();
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

pin_project! {
    /// A body that fails when no frame comes for `limit`: a sender that stalls mid-body
    /// (a client trickling an upload, an upstream that stops mid-response) cannot hold
    /// what the exchange holds (a bulkhead slot, a pooled connection) for ever.
    ///
    /// The timer exists only while the body waits: a body whose frames are there when
    /// polled (most bodies, which arrive with their head) never arms one.
    pub struct IdleTimeout<B> {
        #[pin]
        inner: B,
        limit: Duration,
        // Armed at the first wait, reset after each frame that ended a wait.
        idle: Option<Pin<Box<Sleep>>>,
        waiting: bool,
    }
}

/// The error of a body that went idle for too long.
#[derive(Debug, thiserror::Error)]
#[error("no body data for {0:?}")]
pub struct BodyIdle(pub Duration);

impl<B> IdleTimeout<B> {
    /// `inner`, failing after `limit` without a frame.
    pub fn new(inner: B, limit: Duration) -> Self {
        Self {
            inner,
            limit,
            idle: None,
            waiting: false,
        }
    }
}

impl<B> Body for IdleTimeout<B>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    type Data = B::Data;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, BoxError>>> {
        let this = self.project();
        if let Poll::Ready(frame) = this.inner.poll_frame(cx) {
            *this.waiting = false;
            return Poll::Ready(frame.map(|frame| frame.map_err(Into::into)));
        }
        if !*this.waiting {
            // A new wait: counted from now.
            *this.waiting = true;
            let deadline = palisade::clock::instant_after(Instant::now(), *this.limit);
            match this.idle.as_mut() {
                Some(idle) => idle.as_mut().reset(deadline),
                None => *this.idle = Some(Box::pin(tokio::time::sleep_until(deadline))),
            }
        }
        match this.idle.as_mut().map(|idle| idle.as_mut().poll(cx)) {
            Some(Poll::Ready(())) => Poll::Ready(Some(Err(BodyIdle(*this.limit).into()))),
            _ => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A client's request body: hyper's, or none at all (a request read by the sidecar's own
/// HTTP/1 server, which takes only requests without a body; see `h1::server`).
pub enum ClientBody {
    /// The body as hyper's server reads it.
    Incoming(hyper::body::Incoming),
    /// No body.
    Empty,
}

impl Body for ClientBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            ClientBody::Incoming(body) => Pin::new(body).poll_frame(cx),
            ClientBody::Empty => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ClientBody::Incoming(body) => body.is_end_stream(),
            ClientBody::Empty => true,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ClientBody::Incoming(body) => body.size_hint(),
            ClientBody::Empty => SizeHint::with_exact(0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A body of chunks sent by a task, each after its delay.
    struct Trickled(tokio::sync::mpsc::Receiver<Bytes>);

    impl Body for Trickled {
        type Data = Bytes;
        type Error = BoxError;

        fn poll_frame(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
            self.get_mut()
                .0
                .poll_recv(cx)
                .map(|chunk| chunk.map(|c| Ok(Frame::data(c))))
        }
    }

    fn trickled(chunks: Vec<(u64, &'static str)>) -> Trickled {
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        tokio::spawn(async move {
            for (delay, chunk) in chunks {
                tokio::time::sleep(Duration::from_millis(delay)).await;
                if tx.send(Bytes::from(chunk)).await.is_err() {
                    return;
                }
            }
        });
        Trickled(rx)
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_keeps_coming_is_never_cut() {
        let chunks = vec![(900, "a"), (900, "b"), (900, "c")];
        let body = IdleTimeout::new(trickled(chunks), Duration::from_secs(1));
        let collected = body.collect().await.expect("each wait was under the limit");
        assert_eq!(collected.to_bytes(), "abc");
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_stalls_fails_after_the_limit() {
        let started = Instant::now();
        let chunks = vec![(100, "a"), (5000, "b")];
        let body = IdleTimeout::new(trickled(chunks), Duration::from_secs(1));
        let error = body.collect().await.expect_err("stalled for 5 s");
        assert!(error.is::<BodyIdle>(), "{error}");
        assert_eq!(started.elapsed(), Duration::from_millis(1100));
    }
}

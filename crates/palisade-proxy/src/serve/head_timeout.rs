//! The header timeout of client connections: a connection must start each request
//! within `header_timeout` of starting to wait for one (when it opens, and each time its
//! last response has ended). One that does not, idle or slow, is ended. A request in
//! flight, its body's upload and its response's download are never cut by it.
//!
//! Each connection keeps a mark of its idleness, and one timer, [`expired`], wakes at
//! most once per `header_timeout` and reads it: still idle past the limit ends the
//! connection; otherwise it sleeps until the limit counted from the mark. There are two
//! marks, one per way requests share a connection:
//!
//! * [`Waiting`], HTTP/1 on the proxy port: one request at a time, so the request path
//!   sets the mark with a plain store — "a request is in flight", or "waiting since t".
//!   hyper can keep the timeout itself, but it arms a timer for every request head: a
//!   boxed sleep, a clock read, and an insertion into tokio's timer wheel that is removed
//!   again microseconds later, when the head arrives. The mark costs a store.
//! * [`Streams`], HTTP/2 and the admin port: any number of requests at once, so the mark
//!   counts them. [`Counted`] wraps a connection's service and holds an [`Active`] guard
//!   per request from the call until its response body ends or is dropped; the last
//!   guard to go starts the wait. [`serve_while_used`] runs such a connection: idle past
//!   the limit, it is told to finish (for HTTP/2, a GOAWAY), and if it is still open after
//!   another idle limit — a client that never acknowledges the GOAWAY — it is dropped,
//!   which closes it. hyper's HTTP/2 server has no timeout of its own for this.
//!
//! An HTTP/1 connection has a send timeout as well: its socket is [`WriteWatched`], which
//! notes since when a write has waited for the client, and [`write_stalled`] ends the
//! connection when a write has waited `body_timeout` (a client that stopped reading
//! would otherwise hold its response, and the bulkhead slot and upstream connection
//! behind it, for ever).
//!
//! Marks read the clock they are given ([`Clock::fast`] on the proxy port); the timer is
//! tokio's.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use palisade::clock::{Clock, Nanos};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

use crate::body::{Guarded, ProxyBody, boxed};
use crate::serve::drain::Graceful;

/// The mark while a request is in flight.
const BUSY: Nanos = Nanos::MAX;
/// The write mark while no write waits.
const NOT_BLOCKED: Nanos = 0;

/// A connection's idleness, as [`expired`] reads it.
pub trait Idleness {
    /// How long the connection has waited for a request; `None` while one is in flight.
    fn waited(&self) -> Option<Duration>;
}

/// Resolves once the connection has waited `limit` for a request.
pub async fn expired<M: Idleness + ?Sized>(mark: &M, limit: Duration) {
    let sleep = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(sleep);
    loop {
        let next = match mark.waited() {
            Some(waited) if waited >= limit => return,
            Some(waited) => limit - waited,
            None => limit,
        };
        sleep.as_mut().reset(Instant::now() + next);
        sleep.as_mut().await;
    }
}

/// Whether an HTTP/1 connection waits for a request head, and since when.
pub struct Waiting {
    clock: Clock,
    /// [`BUSY`], or the clock's reading when the wait began (ns).
    since: AtomicU64,
    /// [`NOT_BLOCKED`], or the clock's reading when a write began to wait for the
    /// client (ns).
    blocked: AtomicU64,
}

// === impl Waiting ===

impl Waiting {
    /// A connection that starts waiting now (it has just been accepted).
    pub fn new(clock: Clock) -> Self {
        let since = AtomicU64::new(clock.now());
        Self {
            clock,
            since,
            blocked: AtomicU64::new(NOT_BLOCKED),
        }
    }

    /// A request head has arrived: the connection is busy until its response ends.
    pub fn busy(&self) {
        self.since.store(BUSY, Ordering::Relaxed);
    }

    /// The response has ended (or was dropped): the wait for the next head begins.
    pub fn idle(&self) {
        self.since.store(self.clock.now(), Ordering::Relaxed);
    }

    /// A write to the client waits (`pending`) or went through.
    fn note_write(&self, pending: bool) {
        let blocked = self.blocked.load(Ordering::Relaxed);
        if pending && blocked == NOT_BLOCKED {
            // A reading of 0 would read as "not blocked"; the clock is past it.
            self.blocked
                .store(self.clock.now().max(1), Ordering::Relaxed);
        } else if !pending && blocked != NOT_BLOCKED {
            self.blocked.store(NOT_BLOCKED, Ordering::Relaxed);
        }
    }

    /// How long the current write has waited for the client; `None` if none waits.
    fn blocked_for(&self) -> Option<Duration> {
        match self.blocked.load(Ordering::Relaxed) {
            NOT_BLOCKED => None,
            since => Some(self.clock.elapsed_since(since)),
        }
    }
}

impl Idleness for Waiting {
    fn waited(&self) -> Option<Duration> {
        match self.since.load(Ordering::Relaxed) {
            BUSY => None,
            since => Some(self.clock.elapsed_since(since)),
        }
    }
}

/// Resolves once a write to the client has waited `limit` (a client that stopped
/// reading its response): an HTTP/1 connection's send timeout. Only a write the socket
/// cannot take counts; a response waiting for its upstream is bounded by the upstream's
/// `body_idle`.
pub async fn write_stalled(waiting: &Waiting, limit: Duration) {
    expired(&Blocked(waiting), limit).await
}

/// A connection's writes, read as [`expired`] reads a wait: how long the current write
/// has waited for the client.
struct Blocked<'a>(&'a Waiting);

impl Idleness for Blocked<'_> {
    fn waited(&self) -> Option<Duration> {
        self.0.blocked_for()
    }
}

pin_project_lite::pin_project! {
    /// A client connection's socket that notes in its [`Waiting`] mark since when a
    /// write has waited for the client to make room. A write the socket takes at once
    /// costs one load; only a write that waits reads the clock.
    pub struct WriteWatched<S> {
        #[pin]
        io: S,
        waiting: Arc<Waiting>,
    }
}

impl<S> WriteWatched<S> {
    /// `io`, its writes noted in `waiting`.
    pub fn new(io: S, waiting: Arc<Waiting>) -> Self {
        Self { io, waiting }
    }
}

impl<S: AsyncRead> AsyncRead for WriteWatched<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        self.project().io.poll_read(cx, buf)
    }
}

impl<S: AsyncWrite> AsyncWrite for WriteWatched<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.project();
        let written = this.io.poll_write(cx, buf);
        this.waiting.note_write(written.is_pending());
        written
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.project();
        let written = this.io.poll_write_vectored(cx, bufs);
        this.waiting.note_write(written.is_pending());
        written
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.project();
        let flushed = this.io.poll_flush(cx);
        this.waiting.note_write(flushed.is_pending());
        flushed
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.project().io.poll_shutdown(cx)
    }
}

/// Marks its connection idle when dropped: held by a relayed response's body, which is
/// dropped when it ends or when hyper gives up on it.
pub struct IdleOnDrop(pub Arc<Waiting>);

impl Drop for IdleOnDrop {
    fn drop(&mut self) {
        self.0.idle();
    }
}

/// How many requests a connection has in flight, and since when it has had none.
pub struct Streams {
    clock: Clock,
    /// Requests in flight: [`Active`] guards alive.
    active: AtomicUsize,
    /// The clock's reading when the last request ended, or the wait began (ns).
    since: AtomicU64,
}

// === impl Streams ===

impl Streams {
    /// A connection that starts waiting now.
    pub fn new(clock: Clock) -> Self {
        let since = AtomicU64::new(clock.now());
        Self {
            clock,
            active: AtomicUsize::new(0),
            since,
        }
    }

    /// The mark of a connection that has waited as `waiting` says (an HTTP/1 mark kept
    /// while its protocol was not yet known): its wait goes on from the same start.
    pub fn continuing(waiting: &Waiting) -> Self {
        let streams = Self::new(waiting.clock.clone());
        match waiting.since.load(Ordering::Relaxed) {
            BUSY => {}
            since => streams.since.store(since, Ordering::Relaxed),
        }
        streams
    }

    /// A request begins: the connection is busy until the guard is dropped.
    pub fn begin(self: &Arc<Self>) -> Active {
        self.active.fetch_add(1, Ordering::AcqRel);
        Active(self.clone())
    }

    /// The wait, if there is one, counts from now.
    fn restart(&self) {
        self.since.store(self.clock.now(), Ordering::Release);
    }
}

impl Idleness for Streams {
    fn waited(&self) -> Option<Duration> {
        // The count is read first: a zero seen here was left by a guard that had stored
        // its end before it counted itself out (see `Active`'s drop).
        if self.active.load(Ordering::Acquire) > 0 {
            return None;
        }
        Some(self.clock.elapsed_since(self.since.load(Ordering::Acquire)))
    }
}

/// One request in flight on a connection counted by [`Streams`]; its end when dropped.
pub struct Active(Arc<Streams>);

impl Drop for Active {
    fn drop(&mut self) {
        // The end before the count: a reader that sees no request in flight sees when
        // the last one ended.
        self.0.restart();
        self.0.active.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A connection's service whose requests are counted in its [`Streams`]: each from its
/// call until its response body ends, or until the answer or the body is dropped (the
/// client reset the stream, the connection closed).
#[derive(Clone)]
pub struct Counted<S> {
    inner: S,
    streams: Arc<Streams>,
}

// === impl Counted ===

impl<S> Counted<S> {
    /// Counts the requests `inner` serves in `streams`.
    pub fn new(inner: S, streams: Arc<Streams>) -> Self {
        Self { inner, streams }
    }
}

impl<S> hyper::service::Service<Request<Incoming>> for Counted<S>
where
    S: hyper::service::Service<Request<Incoming>, Response = Response<ProxyBody>>,
    S::Future: Send + 'static,
{
    type Response = Response<ProxyBody>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<ProxyBody>, S::Error>> + Send>>;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        let active = self.streams.begin();
        let answer = self.inner.call(request);
        Box::pin(async move {
            let response = answer.await?;
            Ok(response.map(|body| boxed(Guarded::new(body, active))))
        })
    }
}

/// Serves `connection`, whose requests `streams` counts, until it ends (`Some` with its
/// output), or until it has been idle for `limit` twice (`None`): after the first, it is
/// told to finish what it serves and close (HTTP/2: GOAWAY); after the second, counted
/// from that request, it is dropped, which closes it.
pub(crate) async fn serve_while_used<C: Graceful>(
    connection: C,
    streams: &Streams,
    limit: Duration,
) -> Option<C::Output> {
    tokio::pin!(connection);
    let mut told = false;
    loop {
        tokio::select! {
            biased;
            ended = connection.as_mut() => return Some(ended),
            () = expired(streams, limit) => {
                if told {
                    return None;
                }
                told = true;
                connection.as_mut().graceful_shutdown();
                streams.restart();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_connection_waiting_past_the_limit_expires_and_a_busy_one_does_not() {
        let (clock, hand) = Clock::manual();
        let waiting = Waiting::new(clock);
        let limit = Duration::from_secs(10);
        let watch = expired(&waiting, limit);
        tokio::pin!(watch);

        // A request arrives after 4 s and takes 30 s: never cut meanwhile.
        hand.advance(Duration::from_secs(4));
        waiting.busy();
        for _ in 0..6 {
            hand.advance(Duration::from_secs(5));
            tokio::time::advance(Duration::from_secs(5)).await;
            assert!(
                futures_poll(watch.as_mut()).is_pending(),
                "cut while a request was in flight"
            );
        }
        // Its response ends; 9 s of waiting is within the limit, 10 s is not.
        waiting.idle();
        hand.advance(Duration::from_secs(9));
        tokio::time::advance(Duration::from_secs(9)).await;
        assert!(futures_poll(watch.as_mut()).is_pending(), "cut after 9 s");
        hand.advance(Duration::from_secs(1));
        tokio::time::advance(Duration::from_secs(10)).await;
        assert!(
            futures_poll(watch.as_mut()).is_ready(),
            "not cut after 10 s"
        );
    }

    #[test]
    fn the_last_request_to_end_starts_the_wait() {
        let (clock, hand) = Clock::manual();
        let streams = Arc::new(Streams::new(clock));
        hand.advance(Duration::from_secs(4));
        assert_eq!(
            streams.waited(),
            Some(Duration::from_secs(4)),
            "from the start"
        );
        let first = streams.begin();
        let second = streams.begin();
        hand.advance(Duration::from_secs(3));
        drop(first);
        assert_eq!(streams.waited(), None, "one request is still in flight");
        hand.advance(Duration::from_secs(3));
        drop(second);
        hand.advance(Duration::from_secs(2));
        assert_eq!(streams.waited(), Some(Duration::from_secs(2)));
    }

    #[test]
    fn an_http2_mark_goes_on_from_the_connection_s_first_wait() {
        let (clock, hand) = Clock::manual();
        let waiting = Waiting::new(clock);
        hand.advance(Duration::from_secs(3));
        let streams = Streams::continuing(&waiting);
        hand.advance(Duration::from_secs(1));
        assert_eq!(streams.waited(), Some(Duration::from_secs(4)));
    }

    /// A connection that ends when told to shut down if `obeys`, else never; `told`
    /// records the telling.
    struct Connection {
        told: Arc<std::sync::atomic::AtomicBool>,
        obeys: bool,
    }

    impl std::future::Future for Connection {
        type Output = ();

        fn poll(self: Pin<&mut Self>, _: &mut std::task::Context<'_>) -> std::task::Poll<()> {
            if self.obeys && self.told.load(Ordering::Relaxed) {
                std::task::Poll::Ready(())
            } else {
                std::task::Poll::Pending
            }
        }
    }

    impl Graceful for Connection {
        fn graceful_shutdown(self: Pin<&mut Self>) {
            self.told.store(true, Ordering::Relaxed);
        }
    }

    fn connection(obeys: bool) -> (Connection, Arc<std::sync::atomic::AtomicBool>) {
        let told = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let connection = Connection {
            told: told.clone(),
            obeys,
        };
        (connection, told)
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_connection_is_told_to_finish_then_dropped_if_it_does_not() {
        let limit = Duration::from_secs(10);
        let streams = Streams::new(Clock::tokio());
        let (connection, told) = connection(false);
        let served = serve_while_used(connection, &streams, limit);
        tokio::pin!(served);

        tokio::time::advance(Duration::from_secs(9)).await;
        assert!(futures_poll(served.as_mut()).is_pending());
        assert!(!told.load(Ordering::Relaxed), "told before the limit");
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(futures_poll(served.as_mut()).is_pending());
        assert!(told.load(Ordering::Relaxed), "not told at the limit");
        tokio::time::advance(Duration::from_secs(9)).await;
        assert!(futures_poll(served.as_mut()).is_pending(), "dropped early");
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(futures_poll(served.as_mut()), std::task::Poll::Ready(None));
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_that_finishes_when_told_ends_on_its_own() {
        let streams = Streams::new(Clock::tokio());
        let (connection, _) = connection(true);
        let served = serve_while_used(connection, &streams, Duration::from_secs(10));
        assert_eq!(
            tokio::time::timeout(Duration::from_secs(11), served).await,
            Ok(Some(()))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_in_flight_keeps_its_connection_however_long_it_takes() {
        let limit = Duration::from_secs(10);
        let streams = Arc::new(Streams::new(Clock::tokio()));
        let (connection, told) = connection(false);
        let served = serve_while_used(connection, &streams, limit);
        tokio::pin!(served);

        tokio::time::advance(Duration::from_secs(4)).await;
        let request = streams.begin();
        for _ in 0..10 {
            tokio::time::advance(Duration::from_secs(5)).await;
            assert!(futures_poll(served.as_mut()).is_pending());
        }
        assert!(
            !told.load(Ordering::Relaxed),
            "told while a request was in flight"
        );
        drop(request);
        tokio::time::advance(Duration::from_secs(9)).await;
        assert!(futures_poll(served.as_mut()).is_pending());
        assert!(!told.load(Ordering::Relaxed), "told within the limit");
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(futures_poll(served.as_mut()).is_pending());
        assert!(
            told.load(Ordering::Relaxed),
            "not told a limit after the request ended"
        );
    }

    #[test]
    fn dropping_the_guard_starts_the_wait() {
        let (clock, hand) = Clock::manual();
        let waiting = Arc::new(Waiting::new(clock));
        waiting.busy();
        assert_eq!(waiting.waited(), None);
        hand.advance(Duration::from_secs(3));
        drop(IdleOnDrop(waiting.clone()));
        hand.advance(Duration::from_secs(2));
        assert_eq!(waiting.waited(), Some(Duration::from_secs(2)));
    }

    /// Polls `future` once with a no-op waker.
    fn futures_poll<F: std::future::Future>(
        future: std::pin::Pin<&mut F>,
    ) -> std::task::Poll<F::Output> {
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        future.poll(&mut cx)
    }

    #[tokio::test(start_paused = true)]
    async fn a_write_waiting_past_the_limit_stalls_and_one_that_goes_through_does_not() {
        let (clock, hand) = Clock::manual();
        let waiting = Waiting::new(clock);
        let limit = Duration::from_secs(10);
        let watch = write_stalled(&waiting, limit);
        tokio::pin!(watch);
        // Writes that wait briefly, then go through: never a stall.
        for _ in 0..5 {
            waiting.note_write(true);
            hand.advance(Duration::from_secs(9));
            tokio::time::advance(Duration::from_secs(9)).await;
            assert!(
                futures_poll(watch.as_mut()).is_pending(),
                "cut a write that went through"
            );
            waiting.note_write(false);
        }
        // A write that keeps waiting: a stall once it has waited the limit.
        waiting.note_write(true);
        hand.advance(Duration::from_secs(9));
        waiting.note_write(true); // still waiting: its start stays
        tokio::time::advance(Duration::from_secs(9)).await;
        assert!(futures_poll(watch.as_mut()).is_pending());
        hand.advance(Duration::from_secs(1));
        tokio::time::advance(Duration::from_secs(10)).await;
        assert!(
            futures_poll(watch.as_mut()).is_ready(),
            "not cut after 10 s"
        );
    }
}

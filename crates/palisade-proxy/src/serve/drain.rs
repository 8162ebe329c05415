//! Graceful shutdown of the connections a worker serves: on stop, each is told to finish
//! the request in flight and close, and the worker waits until all have.
//!
//! hyper-util's `GracefulShutdown` does the same by polling a `watch` channel's
//! `changed()` future beside the connection on every wake-up of the connection's task,
//! two or three times per request. Here a connection reads
//! one atomic flag per wake-up; its task's waker is registered once (again only if the
//! task's waker changes), and the stop wakes every registered connection.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use hyper_util::server::graceful::GracefulConnection;
use pin_project_lite::pin_project;
use tokio::sync::Notify;

/// The connections of one worker, and the signal that drains them.
#[derive(Clone, Default)]
pub(crate) struct Drain {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    draining: AtomicBool,
    state: Mutex<State>,
    /// Notified when the last connection ends while draining.
    all_closed: Notify,
}

#[derive(Default)]
struct State {
    /// The wakers of the connections' tasks, by connection.
    wakers: HashMap<u64, Waker>,
    /// Connections being served.
    live: usize,
    next_id: u64,
}

// === impl Drain ===

impl Drain {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Whether the connections are told to finish and close.
    pub(crate) fn is_draining(&self) -> bool {
        self.inner.draining()
    }

    /// Serves `connection` until it ends, shutting it down gracefully on `shutdown`.
    pub(crate) fn watch<C: Graceful>(&self, connection: C) -> Watched<C> {
        let mut state = self.inner.lock();
        state.live += 1;
        let id = state.next_id;
        state.next_id += 1;
        Watched {
            connection,
            inner: self.inner.clone(),
            id,
            registered: None,
            shutting_down: false,
        }
    }

    /// Tells every connection to finish what it serves and close, and waits until they
    /// all have. Connections watched from now on shut down at once.
    pub(crate) async fn shutdown(self) {
        self.inner.draining.store(true, Ordering::Release);
        let wakers: Vec<Waker> = self.inner.lock().wakers.drain().map(|(_, w)| w).collect();
        for waker in wakers {
            waker.wake();
        }
        loop {
            let closed = self.inner.all_closed.notified();
            tokio::pin!(closed);
            closed.as_mut().enable();
            if self.inner.lock().live == 0 {
                return;
            }
            closed.await;
        }
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }
}

/// A connection that can be told to finish what it serves and close.
pub(crate) trait Graceful: Future {
    fn graceful_shutdown(self: Pin<&mut Self>);
}

pin_project! {
    /// A hyper connection, as a [`Graceful`] one.
    pub(crate) struct Hyper<C> {
        #[pin]
        connection: C,
    }
}

impl<C> Hyper<C> {
    pub(crate) fn new(connection: C) -> Self {
        Self { connection }
    }
}

impl<C: GracefulConnection> Future for Hyper<C> {
    type Output = C::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.project().connection.poll(cx)
    }
}

impl<C: GracefulConnection> Graceful for Hyper<C> {
    fn graceful_shutdown(self: Pin<&mut Self>) {
        self.project().connection.graceful_shutdown();
    }
}

pin_project! {
    /// A hyper HTTP/1 connection that can switch protocols, as a [`Graceful`] one.
    pub(crate) struct Upgradeable<I, S>
    where
        S: hyper::service::HttpService<hyper::body::Incoming>,
    {
        #[pin]
        connection: hyper::server::conn::http1::UpgradeableConnection<I, S>,
    }
}

impl<I, S> Upgradeable<I, S>
where
    S: hyper::service::HttpService<hyper::body::Incoming>,
{
    pub(crate) fn new(connection: hyper::server::conn::http1::UpgradeableConnection<I, S>) -> Self {
        Self { connection }
    }
}

impl<I, S, B> Future for Upgradeable<I, S>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: hyper::service::HttpService<hyper::body::Incoming, ResBody = B>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: hyper::body::Body + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Output = Result<(), hyper::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.project().connection.poll(cx)
    }
}

impl<I, S, B> Graceful for Upgradeable<I, S>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: hyper::service::HttpService<hyper::body::Incoming, ResBody = B>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: hyper::body::Body + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    fn graceful_shutdown(self: Pin<&mut Self>) {
        self.project().connection.graceful_shutdown();
    }
}

pin_project! {
    /// A connection that reads [`Drain::is_draining`] itself each time its task wakes:
    /// the watch only wakes it on a stop.
    pub(crate) struct SelfDraining<F> {
        #[pin]
        connection: F,
    }
}

impl<F> SelfDraining<F> {
    pub(crate) fn new(connection: F) -> Self {
        Self { connection }
    }
}

impl<F: Future> Future for SelfDraining<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.project().connection.poll(cx)
    }
}

impl<F: Future> Graceful for SelfDraining<F> {
    fn graceful_shutdown(self: Pin<&mut Self>) {}
}

pin_project! {
    /// A connection served under a [`Drain`].
    pub(crate) struct Watched<C> {
        #[pin]
        connection: C,
        inner: Arc<Inner>,
        id: u64,
        // The waker registered for this connection's task.
        registered: Option<Waker>,
        shutting_down: bool,
    }

    impl<C> PinnedDrop for Watched<C> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            let mut state = this.inner.lock();
            state.wakers.remove(this.id);
            state.live = state.live.saturating_sub(1);
            if state.live == 0 && this.inner.draining() {
                this.inner.all_closed.notify_waiters();
            }
        }
    }
}

// === impl Watched ===

impl<C: Graceful> Future for Watched<C> {
    type Output = C::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        if !*this.shutting_down {
            if !this
                .registered
                .as_ref()
                .is_some_and(|w| w.will_wake(cx.waker()))
            {
                let waker = cx.waker().clone();
                this.inner.lock().wakers.insert(*this.id, waker.clone());
                *this.registered = Some(waker);
            }
            // Read after the waker is registered: a stop that took the wakers before
            // this one was in is seen here.
            if this.inner.draining() {
                *this.shutting_down = true;
                this.connection.as_mut().graceful_shutdown();
            }
        }
        this.connection.poll(cx)
    }
}

impl<C: Graceful> Graceful for Watched<C> {
    /// Tells the connection to finish now, stop or no stop (see `head_timeout`).
    fn graceful_shutdown(self: Pin<&mut Self>) {
        let this = self.project();
        *this.shutting_down = true;
        this.connection.graceful_shutdown();
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::time::Duration;

    use bytes::Bytes;
    use http_body_util::Full;
    use hyper::body::Incoming;
    use hyper::{Request, Response};
    use hyper_util::rt::TokioIo;
    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
    use tokio::sync::mpsc;
    use tokio::task::JoinHandle;

    use super::*;

    /// An HTTP/1 connection served under `drain`, each request answered when `gate` is
    /// notified; `started` hears of each request as it arrives.
    fn serve(
        drain: &Drain,
        gate: Arc<Notify>,
        started: mpsc::UnboundedSender<()>,
    ) -> (DuplexStream, JoinHandle<()>) {
        let (client, server) = tokio::io::duplex(4096);
        let service = hyper::service::service_fn(move |_: Request<Incoming>| {
            let gate = gate.clone();
            let _ = started.send(());
            async move {
                gate.notified().await;
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
            }
        });
        let connection = hyper::server::conn::http1::Builder::new()
            .serve_connection(TokioIo::new(server), service);
        let watched = drain.watch(Hyper::new(connection));
        (client, tokio::spawn(async move { drop(watched.await) }))
    }

    async fn read_to_close(client: &mut DuplexStream) -> String {
        let mut bytes = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), client.read_to_end(&mut bytes))
            .await
            .expect("the connection closed")
            .expect("read");
        String::from_utf8_lossy(&bytes).into_owned()
    }

    #[tokio::test(start_paused = true)]
    async fn a_stop_waits_for_the_request_in_flight_then_closes_its_connection() {
        let drain = Drain::new();
        let gate = Arc::new(Notify::new());
        let (started, mut requests) = mpsc::unbounded_channel();
        let (mut client, served) = serve(&drain, gate.clone(), started);
        client
            .write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .expect("write");
        requests.recv().await.expect("the request arrived");

        let stop = tokio::spawn(drain.clone().shutdown());
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!stop.is_finished(), "the stop did not wait for the request");

        gate.notify_one();
        let response = read_to_close(&mut client).await;
        assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
        assert!(response.ends_with("ok"), "{response}");
        tokio::time::timeout(Duration::from_secs(5), stop)
            .await
            .expect("the stop ended once the connection closed")
            .expect("stop task");
        served.await.expect("connection task");
    }

    #[tokio::test(start_paused = true)]
    async fn idle_connections_close_at_once_and_so_does_one_watched_after_the_stop() {
        let drain = Drain::new();
        let gate = Arc::new(Notify::new());
        let (started, _requests) = mpsc::unbounded_channel();
        let (mut idle, _) = serve(&drain, gate.clone(), started.clone());
        let (mut other, _) = serve(&drain, gate.clone(), started.clone());
        // Both connections' tasks run once (and register) before the stop.
        tokio::task::yield_now().await;

        tokio::time::timeout(Duration::from_secs(5), drain.clone().shutdown())
            .await
            .expect("idle connections closed at once");
        assert_eq!(read_to_close(&mut idle).await, "");
        assert_eq!(read_to_close(&mut other).await, "");

        let (mut late, served) = serve(&drain, gate, started);
        assert_eq!(read_to_close(&mut late).await, "");
        served.await.expect("connection task");
        assert_eq!(drain.inner.lock().live, 0);
        assert!(drain.inner.lock().wakers.is_empty());
    }
}

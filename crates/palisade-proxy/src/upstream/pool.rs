//! Connections to one endpoint: pooled HTTP/1.1 keep-alive connections, or one shared
//! HTTP/2 connection.
//!
//! Built on hyper's connection API rather than on hyper-util's general-purpose client,
//! because each endpoint owns its pool:
//!
//! * a request finds its connections without hashing a pool key or taking a global lock;
//! * an HTTP/1.1 connection is not a task: the request's own task writes the request and
//!   reads the response on it (see `h1::client`), and it goes back to its pool
//!   the moment its response body ends (with a small body, as soon as the head is read);
//! * an idle connection the server has closed is found closed when it is taken (its
//!   socket has become readable), and is passed over: a request is never written to it,
//!   so this is safe for any method.
//!
//! With one runtime per worker thread (see `serve`), each worker keeps its own idle
//! connections: a connection is registered with the event loop of the thread that opened
//! it, and is only ever used by that thread's requests. Which worker a request runs on is
//! passed to the pool with it (the client connection's `worker`), never looked up.
//!
//! Bounds: at most `MAX_IDLE` idle connections per endpoint and worker, each idle at
//! most `IDLE_TIMEOUT`; an HTTP/2 endpoint has one connection, replaced when it closes.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::uri::Authority;
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use palisade::clock::{Clock, Nanos};
use tokio::net::TcpStream;

use crate::body::{BoxError, ProxyBody};
use crate::config::Protocol;
use crate::h1::client as http1;

/// Idle HTTP/1.1 connections kept per endpoint.
const MAX_IDLE: usize = 256;
/// How long an idle connection is kept.
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// TCP keep-alive probes start after this much silence.
const TCP_KEEPALIVE: Duration = Duration::from_secs(60);

/// How an endpoint's connections are made and kept.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Connections {
    /// HTTP/1.1 (pooled) or HTTP/2 (one multiplexed connection).
    pub(crate) protocol: Protocol,
    /// Longest wait for a connection to be established.
    pub(crate) connect_timeout: Duration,
    /// Worker threads, each with its own idle HTTP/1.1 connections.
    pub(crate) workers: usize,
}

/// Why a request got no response.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SendError {
    /// No connection could be made.
    #[error("connect to {address}: {reason}")]
    Connect {
        /// The endpoint.
        address: String,
        /// What failed.
        reason: String,
    },
    /// The HTTP/2 connection failed while the request was sent or its response awaited.
    #[error(transparent)]
    Request(#[from] hyper::Error),
    /// The HTTP/1.1 exchange failed.
    #[error(transparent)]
    Http1(#[from] http1::Error),
}

/// The connections of one endpoint.
pub(crate) struct Pool {
    shared: Arc<Shared>,
}

/// What a pool's connections and returning bodies share.
pub(crate) struct Shared {
    /// `host:port`: where to connect, and the `Host` when the client gave none.
    authority: Authority,
    protocol: Protocol,
    connect_timeout: Duration,
    /// What idle times are measured with (the runtime's clock).
    clock: Clock,
    /// Idle HTTP/1.1 connections per worker, the most recently used last.
    idle: Box<[Mutex<Vec<Idle>>]>,
    /// The HTTP/2 connection, once made.
    multiplexed: tokio::sync::Mutex<Option<http2::SendRequest<ProxyBody>>>,
}

struct Idle {
    connection: Box<http1::Connection>,
    /// When it became idle, by the pool's clock.
    since: Nanos,
}

impl Pool {
    pub(crate) fn new(authority: Authority, connections: Connections, clock: Clock) -> Self {
        Self {
            shared: Arc::new(Shared {
                authority,
                protocol: connections.protocol,
                connect_timeout: connections.connect_timeout,
                clock,
                idle: (0..connections.workers.max(1))
                    .map(|_| Mutex::new(Vec::new()))
                    .collect(),
                multiplexed: tokio::sync::Mutex::new(None),
            }),
        }
    }

    /// Idle HTTP/1.1 connections now, over every worker.
    pub(crate) fn idle(&self) -> usize {
        self.shared
            .idle
            .iter()
            .map(|idle| idle.lock().unwrap_or_else(|e| e.into_inner()).len())
            .sum()
    }

    /// Sends `request` (its URI absolute, as for any endpoint) from `worker` and returns
    /// the response head; the body streams from the connection. The response is boxed
    /// (see [`Pool::send_http1`]).
    pub(crate) async fn send(
        &self,
        request: Request<ProxyBody>,
        worker: usize,
    ) -> Result<Box<Response<PooledBody>>, SendError> {
        // Every path that may connect is boxed: a connect's future is large, and unboxed
        // it would be part of (and copied with) every request's future.
        match self.shared.protocol {
            Protocol::Http1 => {
                let (parts, body) = request.into_parts();
                let head = http1::RequestHead::of(&parts);
                self.send_http1(&head, body, true, worker).await
            }
            Protocol::Http2 => Box::pin(self.send_http2(request)).await,
        }
    }

    /// Whether requests go over HTTP/1.1, so that [`Pool::send_http1`] can take them.
    pub(crate) fn is_http1(&self) -> bool {
        self.shared.protocol == Protocol::Http1
    }

    /// Sends a request given as its head and body over HTTP/1.1 (see
    /// [`Pool::is_http1`]), and returns the response head; the body streams from the
    /// connection.
    ///
    /// The response is boxed where it is read: it goes up through every policy of the
    /// request (timeouts, breaker, retry), each of which returns it, and boxed it moves
    /// as one word rather than as 264 bytes copied at every step.
    ///
    /// `once_only`: the request cannot be sent again (not replayable), so an idle
    /// connection is confirmed open with the kernel before it is written to. `worker`:
    /// the worker the request runs on, whose idle connections it takes and gives back.
    pub(crate) async fn send_http1(
        &self,
        head: &http1::RequestHead<'_>,
        body: ProxyBody,
        once_only: bool,
        worker: usize,
    ) -> Result<Box<Response<PooledBody>>, SendError> {
        let connection = match self.shared.checkout(once_only, worker) {
            Some(connection) => connection,
            None => Box::pin(self.shared.connect_http1()).await?,
        };
        let pooled = |body| self.pooled(body, worker);
        Ok(connection
            .send(head, body, &self.shared.authority, pooled)
            .await?)
    }

    async fn send_http2(
        &self,
        request: Request<ProxyBody>,
    ) -> Result<Box<Response<PooledBody>>, SendError> {
        let mut sender = self.shared.multiplexed().await?;
        sender.ready().await?;
        let response = sender.send_request(request).await?;
        Ok(Box::new(response.map(PooledBody::Http2)))
    }

    /// A response body, holding the connection until it ends.
    fn pooled(&self, mut body: http1::Body, worker: usize) -> PooledBody {
        if body.is_read() {
            // The whole body came with the head, or there is none (HEAD, 204, 304,
            // `Content-Length: 0`): the connection is free at once.
            if let Some(connection) = body.take_connection() {
                self.shared.check_in(connection, worker);
            }
            PooledBody::Http1 {
                body,
                pool: None,
                worker,
            }
        } else {
            PooledBody::Http1 {
                body,
                pool: Some(self.shared.clone()),
                worker,
            }
        }
    }
}

// === impl Shared ===

impl Shared {
    /// `worker`'s idle connections.
    fn idle(&self, worker: usize) -> std::sync::MutexGuard<'_, Vec<Idle>> {
        // Never empty: a pool has a list for at least one worker.
        let worker = worker % self.idle.len();
        self.idle[worker].lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `worker`'s most recently used idle connection that can take a request, if any.
    fn checkout(&self, confirm: bool, worker: usize) -> Option<Box<http1::Connection>> {
        loop {
            let Idle { connection, since } = self.idle(worker).pop()?;
            if self.clock.elapsed_since(since) <= IDLE_TIMEOUT && connection.is_open(confirm) {
                return Some(connection);
            }
        }
    }

    /// Keeps `connection` for the next request, within the bounds. Connections idle too
    /// long are dropped (closed) here, after the lock is released.
    fn check_in(&self, connection: Box<http1::Connection>, worker: usize) {
        let now = self.clock.now();
        let stale: Vec<Idle> = {
            let mut idle = self.idle(worker);
            let stale = idle
                .iter()
                .take_while(|i| Duration::from_nanos(now.saturating_sub(i.since)) > IDLE_TIMEOUT)
                .count();
            let stale = idle.drain(..stale).collect();
            if idle.len() < MAX_IDLE {
                idle.push(Idle {
                    connection,
                    since: now,
                });
            }
            stale
        };
        drop(stale);
    }

    async fn connect(&self) -> Result<TcpStream, SendError> {
        let address = self.authority.as_str();
        let failed = |reason: String| SendError::Connect {
            address: address.to_owned(),
            reason,
        };
        let stream = tokio::time::timeout(self.connect_timeout, TcpStream::connect(address))
            .await
            .map_err(|_| failed(format!("no connection within {:?}", self.connect_timeout)))?
            .map_err(|e| failed(e.to_string()))?;
        let _ = stream.set_nodelay(true);
        let keepalive = socket2::TcpKeepalive::new().with_time(TCP_KEEPALIVE);
        let _ = socket2::SockRef::from(&stream).set_tcp_keepalive(&keepalive);
        Ok(stream)
    }

    async fn connect_http1(&self) -> Result<Box<http1::Connection>, SendError> {
        Ok(http1::Connection::new(self.connect().await?))
    }

    async fn multiplexed(&self) -> Result<http2::SendRequest<ProxyBody>, SendError> {
        let mut slot = self.multiplexed.lock().await;
        if let Some(sender) = slot.as_ref().filter(|s| !s.is_closed()) {
            return Ok(sender.clone());
        }
        let io = TokioIo::new(self.connect().await?);
        let (sender, connection) = http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .handshake(io)
            .await?;
        self.drive(connection);
        *slot = Some(sender.clone());
        Ok(sender)
    }

    /// Runs the HTTP/2 connection's I/O on its own task until it closes: it serves
    /// every request to the endpoint at once.
    fn drive<C>(&self, connection: C)
    where
        C: std::future::Future<Output = Result<(), hyper::Error>> + Send + 'static,
    {
        let endpoint = self.authority.clone();
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, %endpoint, "upstream connection failed");
            }
        });
    }
}

// === impl PooledBody ===

/// A response body from an endpoint. An HTTP/1.1 connection goes back to its pool when
/// the body ends; if the body is dropped before, the connection is closed.
pub(crate) enum PooledBody {
    /// From an HTTP/1.1 connection, with the pool to return it to (`None` once returned)
    /// and the worker whose idle connections it joins.
    Http1 {
        body: http1::Body,
        pool: Option<Arc<Shared>>,
        worker: usize,
    },
    /// A stream of the endpoint's HTTP/2 connection.
    Http2(Incoming),
}

impl PooledBody {
    /// The response's header lines as received, if they were kept raw (see
    /// `http1::RequestHead::raw_response`). At most once.
    pub(crate) fn take_raw(&mut self) -> Option<http1::RawHead> {
        match self {
            PooledBody::Http1 { body, .. } => body.take_raw(),
            PooledBody::Http2(_) => None,
        }
    }
}

impl Body for PooledBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            PooledBody::Http2(body) => Pin::new(body).poll_frame(cx).map_err(Into::into),
            PooledBody::Http1 { body, pool, worker } => {
                let frame = Pin::new(&mut *body).poll_frame(cx);
                if frame.is_ready() && body.is_read() {
                    if let (Some(pool), Some(connection)) = (pool.take(), body.take_connection()) {
                        pool.check_in(connection, *worker);
                    }
                }
                frame.map_err(Into::into)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            PooledBody::Http1 { body, .. } => body.is_end_stream(),
            PooledBody::Http2(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            PooledBody::Http1 { body, .. } => body.size_hint(),
            PooledBody::Http2(body) => body.size_hint(),
        }
    }
}

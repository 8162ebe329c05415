//! Connections to one endpoint: pooled HTTP/1.1 keep-alive connections, or one shared
//! HTTP/2 connection.
//!
//! Built on hyper's connection API rather than on hyper-util's general-purpose client,
//! because each endpoint owns its pool:
//!
//! * a request finds its connections without hashing a pool key or taking a global lock;
//! * an HTTP/1.1 connection goes back to its pool the moment its response body ends,
//!   instead of through a task spawned to wait for it;
//! * a request that meets a connection the server closed while it sat idle is sent once
//!   more on a new connection. It was never written, so this is safe for any method.
//!
//! Bounds: at most `MAX_IDLE` idle connections per endpoint, each idle at most
//! `IDLE_TIMEOUT`; an HTTP/2 endpoint has one connection, replaced when it closes.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::HOST;
use http::uri::Authority;
use http::{HeaderValue, Request, Response, Uri};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::{TrySendError, http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use pin_project_lite::pin_project;
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::body::ProxyBody;
use crate::config::Protocol;

/// Idle HTTP/1.1 connections kept per endpoint.
const MAX_IDLE: usize = 256;
/// How long an idle connection is kept.
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// TCP keep-alive probes start after this much silence.
const TCP_KEEPALIVE: Duration = Duration::from_secs(60);

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
    /// The connection failed while the request was sent or its response awaited.
    #[error(transparent)]
    Request(#[from] hyper::Error),
}

/// The connections of one endpoint.
pub(crate) struct Pool {
    shared: Arc<Shared>,
}

struct Shared {
    /// `host:port`: where to connect, and the `Host` when the client gave none.
    authority: Authority,
    protocol: Protocol,
    connect_timeout: Duration,
    /// Idle HTTP/1.1 connections, the most recently used last.
    idle: Mutex<Vec<Idle>>,
    /// The HTTP/2 connection, once made.
    multiplexed: tokio::sync::Mutex<Option<http2::SendRequest<ProxyBody>>>,
}

struct Idle {
    sender: http1::SendRequest<ProxyBody>,
    since: Instant,
}

impl Pool {
    pub(crate) fn new(authority: Authority, protocol: Protocol, connect_timeout: Duration) -> Self {
        Self {
            shared: Arc::new(Shared {
                authority,
                protocol,
                connect_timeout,
                idle: Mutex::new(Vec::new()),
                multiplexed: tokio::sync::Mutex::new(None),
            }),
        }
    }

    /// Idle HTTP/1.1 connections now.
    pub(crate) fn idle(&self) -> usize {
        self.shared.idle().len()
    }

    /// Sends `request` (its URI absolute, as for any endpoint) and returns the response
    /// head; the body streams from the connection.
    pub(crate) async fn send(
        &self,
        request: Request<ProxyBody>,
    ) -> Result<Response<PooledBody>, SendError> {
        // Every path that may connect is boxed: a connect's future is large, and unboxed
        // it would be part of (and copied with) every request's future.
        match self.shared.protocol {
            Protocol::Http1 => self.send_http1(request).await,
            Protocol::Http2 => Box::pin(self.send_http2(request)).await,
        }
    }

    async fn send_http1(
        &self,
        mut request: Request<ProxyBody>,
    ) -> Result<Response<PooledBody>, SendError> {
        to_origin_form(&mut request, &self.shared.authority);
        let mut sender = match self.shared.checkout().await {
            Some(sender) => sender,
            None => Box::pin(self.shared.connect_http1()).await?,
        };
        let request = match sender.try_send_request(request).await {
            Ok(response) => return Ok(self.pooled(response, sender)),
            Err(unsent) => unsent_or_error(unsent)?,
        };
        // The server closed that connection before it took the request: a new one.
        let mut sender = Box::pin(self.shared.connect_http1()).await?;
        match sender.try_send_request(request).await {
            Ok(response) => Ok(self.pooled(response, sender)),
            Err(failed) => Err(failed.into_error().into()),
        }
    }

    async fn send_http2(
        &self,
        request: Request<ProxyBody>,
    ) -> Result<Response<PooledBody>, SendError> {
        let mut sender = self.shared.multiplexed().await?;
        sender.ready().await?;
        let response = sender.send_request(request).await?;
        Ok(response.map(|body| PooledBody {
            body,
            returning: None,
        }))
    }

    /// The response, its body holding the connection until it ends.
    fn pooled(
        &self,
        response: Response<Incoming>,
        sender: http1::SendRequest<ProxyBody>,
    ) -> Response<PooledBody> {
        let returning = Returning {
            sender,
            pool: self.shared.clone(),
        };
        response.map(|body| {
            if body.is_end_stream() {
                // No body to read (HEAD, 204, 304, `Content-Length: 0`): free at once.
                returning.give_back();
                PooledBody {
                    body,
                    returning: None,
                }
            } else {
                PooledBody {
                    body,
                    returning: Some(returning),
                }
            }
        })
    }
}

/// The request to send again if the connection refused it before writing it.
fn unsent_or_error(
    mut unsent: TrySendError<Request<ProxyBody>>,
) -> Result<Request<ProxyBody>, SendError> {
    match unsent.take_message() {
        Some(request) => Ok(request),
        None => Err(unsent.into_error().into()),
    }
}

/// HTTP/1.1 sends the path alone on the request line, and the endpoint in `Host` when
/// the client gave none.
fn to_origin_form(request: &mut Request<ProxyBody>, authority: &Authority) {
    let path = request.uri().path_and_query().cloned();
    if let Some(path) = path {
        *request.uri_mut() = Uri::from(path);
    }
    if !request.headers().contains_key(HOST) {
        if let Ok(host) = HeaderValue::from_str(authority.as_str()) {
            request.headers_mut().insert(HOST, host);
        }
    }
}

// === impl Shared ===

impl Shared {
    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<Idle>> {
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The most recently used idle connection that can take a request, if any.
    async fn checkout(&self) -> Option<http1::SendRequest<ProxyBody>> {
        loop {
            let Idle { mut sender, since } = self.idle().pop()?;
            if sender.is_closed() || since.elapsed() > IDLE_TIMEOUT {
                continue;
            }
            // Given back as its last response ended: ready once its connection has read
            // that response to the end, which is at once or very soon.
            if sender.ready().await.is_ok() {
                return Some(sender);
            }
        }
    }

    /// Keeps `sender` for the next request, within the bounds.
    fn check_in(&self, sender: http1::SendRequest<ProxyBody>) {
        if sender.is_closed() {
            return;
        }
        let now = Instant::now();
        let mut idle = self.idle();
        let stale = idle
            .iter()
            .take_while(|i| i.sender.is_closed() || now.duration_since(i.since) > IDLE_TIMEOUT)
            .count();
        idle.drain(..stale);
        if idle.len() < MAX_IDLE {
            idle.push(Idle { sender, since: now });
        }
    }

    async fn connect(&self) -> Result<TokioIo<TcpStream>, SendError> {
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
        Ok(TokioIo::new(stream))
    }

    async fn connect_http1(&self) -> Result<http1::SendRequest<ProxyBody>, SendError> {
        let io = self.connect().await?;
        let (sender, connection) = http1::handshake(io).await?;
        self.drive(connection);
        Ok(sender)
    }

    async fn multiplexed(&self) -> Result<http2::SendRequest<ProxyBody>, SendError> {
        let mut slot = self.multiplexed.lock().await;
        if let Some(sender) = slot.as_ref().filter(|s| !s.is_closed()) {
            return Ok(sender.clone());
        }
        let io = self.connect().await?;
        let (sender, connection) = http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .handshake(io)
            .await?;
        self.drive(connection);
        *slot = Some(sender.clone());
        Ok(sender)
    }

    /// Runs a connection's I/O on its own task until it closes.
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

/// An HTTP/1.1 connection on its way back to its pool.
struct Returning {
    sender: http1::SendRequest<ProxyBody>,
    pool: Arc<Shared>,
}

impl Returning {
    fn give_back(self) {
        self.pool.check_in(self.sender);
    }
}

pin_project! {
    /// A response body from an endpoint. An HTTP/1.1 connection goes back to its pool
    /// when the body ends; if the body is dropped before, the connection is dropped too.
    pub(crate) struct PooledBody {
        #[pin]
        body: Incoming,
        returning: Option<Returning>,
    }
}

impl Body for PooledBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let mut this = self.project();
        let frame = this.body.as_mut().poll_frame(cx);
        let ended = match &frame {
            Poll::Ready(None) => true,
            Poll::Ready(Some(Ok(_))) => this.body.is_end_stream(),
            Poll::Ready(Some(Err(_))) => {
                this.returning.take();
                false
            }
            Poll::Pending => false,
        };
        if ended {
            if let Some(returning) = this.returning.take() {
                returning.give_back();
            }
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

//! Listening: the proxy port and the admin port, graceful shutdown and reload.
//!
//! * HTTP/1.1 (keep-alive) and HTTP/2 (h2c, prior knowledge) on one port.
//! * Malformed requests get 400 and oversized heads 431 from hyper; a client that sends
//!   its head too slowly is cut off after `header_timeout`.
//! * SIGTERM or SIGINT: stop accepting, let in-flight requests finish within
//!   `drain_timeout`, exit.
//! * SIGHUP: re-read the file; a valid config replaces the running one (connections stay
//!   open, requests in flight finish on the old one); an invalid one is logged and
//!   refused, and the old one keeps serving.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::admin::{self, Admin};
use crate::body::ProxyBody;
use crate::config::{self, Checked};
use crate::forward;
use crate::runtime::Runtime;

/// A running proxy: its ports, and a handle to stop it.
pub struct Running {
    /// The proxy port.
    pub address: SocketAddr,
    /// The admin port.
    pub admin_address: SocketAddr,
    /// The live runtime (swapped on reload).
    pub runtime: Arc<ArcSwap<Runtime>>,
    stop: watch::Sender<bool>,
    done: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Stops accepting, drains in-flight requests (within the configured bound), returns.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.done.await;
    }

    /// Waits until the proxy stops by itself (a signal).
    pub async fn wait(self) {
        let _ = self.done.await;
    }
}

/// Binds both ports and starts serving `checked`. `file`, if given, is re-read on SIGHUP.
pub async fn start(checked: Checked, file: Option<PathBuf>) -> std::io::Result<Running> {
    let runtime = Runtime::build(&checked).map_err(|e| std::io::Error::other(e.to_string()))?;
    let listener_config = checked.config.listener.clone();
    let runtime = Arc::new(ArcSwap::from_pointee(runtime));
    let proxy = TcpListener::bind(listener_config.address).await?;
    let admin_listener = TcpListener::bind(checked.config.admin.address).await?;
    let address = proxy.local_addr()?;
    let admin_address = admin_listener.local_addr()?;
    let (stop, stopped) = watch::channel(false);
    let admin = Arc::new(Admin::new(
        runtime.clone(),
        checked.config.admin.token.clone(),
    ));
    tokio::spawn(admin::serve(admin_listener, admin, stopped.clone()));
    if let Some(file) = file {
        tokio::spawn(reload_on_hangup(file, runtime.clone()));
    }
    tokio::spawn(stop_on_signal(stop.clone()));
    let done = tokio::spawn(serve(proxy, runtime.clone(), listener_config, stopped));
    tracing::info!(%address, %admin_address, "palisade listening");
    Ok(Running {
        address,
        admin_address,
        runtime,
        stop,
        done,
    })
}

async fn serve(
    listener: TcpListener,
    runtime: Arc<ArcSwap<Runtime>>,
    config: config::Listener,
    mut stopped: watch::Receiver<bool>,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_timeout)
        .max_buf_size(config.max_header_bytes)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(config.max_header_bytes).unwrap_or(u32::MAX));
    let graceful = GracefulShutdown::new();
    loop {
        let (stream, client) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(error) => {
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
            _ = stopped.changed() => break,
        };
        let _ = stream.set_nodelay(true);
        let runtime = runtime.clone();
        let service = service_fn(move |request: Request<Incoming>| {
            let runtime = runtime.load_full();
            async move {
                Ok::<Response<ProxyBody>, Infallible>(
                    forward::handle(&runtime, request, client).await,
                )
            }
        });
        let connection = builder
            .serve_connection(TokioIo::new(stream), service)
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "connection ended with an error");
            }
        });
    }
    drop(listener);
    tracing::info!("draining in-flight requests");
    if tokio::time::timeout(config.drain_timeout, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(timeout = ?config.drain_timeout, "drain timed out; closing remaining connections");
    }
}

async fn stop_on_signal(stop: watch::Sender<bool>) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::warn!("cannot listen for SIGTERM/SIGINT");
        return;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = int.recv() => tracing::info!("SIGINT: shutting down"),
    }
    let _ = stop.send(true);
}

async fn reload_on_hangup(file: PathBuf, runtime: Arc<ArcSwap<Runtime>>) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hangups) = signal(SignalKind::hangup()) else {
        tracing::warn!("cannot listen for SIGHUP");
        return;
    };
    while hangups.recv().await.is_some() {
        match reload(&file, &runtime) {
            Ok(()) => tracing::info!(file = %file.display(), "configuration reloaded"),
            Err(problems) => {
                tracing::error!("configuration refused, the running one stays:\n{problems}")
            }
        }
    }
}

/// Re-reads `file` and swaps the runtime if it is valid.
pub fn reload(file: &std::path::Path, runtime: &ArcSwap<Runtime>) -> Result<(), String> {
    let checked = config::load(file).map_err(|p| p.to_string())?;
    let current = runtime.load();
    if checked.config.listener.address != current.config.listener.address
        || checked.config.admin.address != current.config.admin.address
    {
        tracing::warn!("listener and admin addresses change only on restart");
    }
    let next = Runtime::build(&checked).map_err(|e| e.to_string())?;
    runtime.store(Arc::new(next));
    metrics::counter!("palisade_config_reloads_total").increment(1);
    Ok(())
}

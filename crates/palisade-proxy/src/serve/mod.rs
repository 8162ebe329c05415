//! Listening: the proxy port and the admin port, graceful shutdown and reload.
//!
//! * HTTP/1.1 (keep-alive) and HTTP/2 (h2c, prior knowledge) on one port. HTTP/1
//!   connections start on the sidecar's own server (`h1::server`), which hands them
//!   to hyper's at the first request it does not take.
//! * Malformed requests get 400 and oversized heads 431 from hyper; an HTTP/1 client that
//!   does not send a whole request head within `header_timeout` of the connection opening,
//!   or of its last response ending, is cut off; an HTTP/2 connection with no request in
//!   flight for as long gets a GOAWAY, and is closed (see `head_timeout`).
//! * At most `max_connections` client connections are open at once over all workers;
//!   one more is closed as soon as it is accepted (see `cap`). The admin port has its
//!   own timeout and cap (see `admin`).
//! * SIGTERM or SIGINT: stop accepting, let in-flight requests finish within
//!   `drain_timeout`, exit.
//! * SIGHUP: re-read the file; a valid config replaces the running one (connections stay
//!   open, requests in flight finish on the old one); an invalid one is logged and
//!   refused, and the old one keeps serving.

pub(crate) mod cap;
pub(crate) mod drain;
pub mod head_timeout;
pub mod sniff;
mod workers;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use palisade::clock::Clock;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};

use crate::admin::{self, Admin};
use crate::body::{ClientBody, ProxyBody};
use crate::config::{self, Checked};
use crate::dashboard::{self, Dashboard};
use crate::forward::{self, Handled};
use crate::h1::server::{self as h1_server, Served};
use crate::runtime::Runtime;
use cap::Cap;
use drain::{Drain, Hyper, SelfDraining, Upgradeable};
use head_timeout::{Counted, Streams, WriteWatched};
use sniff::Protocol;
use workers::{Handed, Placement, Workers};

/// The future answering one request, boxed (see `serve`).
type ResponseFuture = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<Response<ProxyBody>, Infallible>> + Send>,
>;

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

/// Binds both ports and starts serving `checked` on the calling runtime. `file`, if
/// given, is re-read on SIGHUP.
pub async fn start(checked: Checked, file: Option<PathBuf>) -> std::io::Result<Running> {
    start_with_workers(checked, file, 1).await
}

/// As [`start`], with `workers − 1` more threads, each running its own current-thread
/// runtime: every worker accepts from the same listening socket and serves the
/// connections it accepted, start to end, with its own idle upstream connections (one
/// event loop per worker, as nginx and HAProxy run). The calling runtime is worker 0 and
/// also runs the admin port, health checks and signal handling.
pub async fn start_with_workers(
    checked: Checked,
    file: Option<PathBuf>,
    workers: usize,
) -> std::io::Result<Running> {
    let runtime =
        Runtime::build(&checked, workers).map_err(|e| std::io::Error::other(e.to_string()))?;
    let listener_config = checked.config.listener.clone();
    let runtime = Arc::new(ArcSwap::from_pointee(runtime));
    start_sagas(&checked, &runtime).await?;
    let proxy = TcpListener::bind(listener_config.address).await?;
    let admin_listener = TcpListener::bind(checked.config.admin.address).await?;
    let address = proxy.local_addr()?;
    let admin_address = admin_listener.local_addr()?;
    let (stop, stopped) = watch::channel(false);
    let dashboard = Arc::new(Dashboard::new(
        runtime.clone(),
        checked.config.admin.dashboard_interval,
    ));
    tokio::spawn(dashboard::run(dashboard.clone(), stopped.clone()));
    let admin = Arc::new(Admin::new(
        runtime.clone(),
        checked.config.admin.token.clone(),
        dashboard,
    ));
    tokio::spawn(admin::serve(
        admin_listener,
        admin,
        checked.config.admin.clone(),
        stopped.clone(),
    ));
    if let Some(file) = file {
        tokio::spawn(reload_on_hangup(file, runtime.clone()));
    }
    tokio::spawn(stop_on_signal(stop.clone()));
    // One cap for the port, shared by every worker.
    let cap = Cap::new(listener_config.max_connections, "proxy");
    let mut others = Vec::new();
    let mut first_worker = None;
    if workers > 1 {
        let (shared, inboxes) = Workers::new(workers);
        for (index, inbox) in inboxes.into_iter().enumerate() {
            let worker = (Placement::new(index, shared.clone()), inbox);
            if index == 0 {
                first_worker = Some(worker);
                continue;
            }
            let listener: std::net::TcpListener =
                socket2::SockRef::from(&proxy).try_clone()?.into();
            others.push(spawn_worker(
                index,
                listener,
                worker,
                runtime.clone(),
                listener_config.clone(),
                cap.clone(),
                stopped.clone(),
            )?);
        }
    }
    let first = tokio::spawn(serve(
        proxy,
        first_worker,
        runtime.clone(),
        listener_config,
        cap,
        stopped,
    ));
    let done = tokio::spawn(async move {
        let _ = first.await;
        for other in others {
            let _ = other.await;
        }
    });
    tracing::info!(%address, %admin_address, "palisade listening");
    Ok(Running {
        address,
        admin_address,
        runtime,
        stop,
        done,
    })
}

/// Opens the saga store and starts the runner when the config has sagas: unfinished
/// sagas resume before the ports open. A store that cannot be opened fails the start.
async fn start_sagas(checked: &Checked, runtime: &Arc<ArcSwap<Runtime>>) -> std::io::Result<()> {
    let started = crate::saga::Sagas::start(&checked.config, saga_sender(runtime))
        .await
        .map_err(std::io::Error::other)?;
    if let Some(sagas) = started {
        tracing::info!(store = %sagas.store_url, "sagas running");
        let _ = runtime.load().sagas.set(sagas);
    }
    Ok(())
}

/// How saga steps reach upstreams: through the live runtime's upstream of that name and
/// its policies (`forward::call`), as requests from loopback on worker 0's connections
/// (the saga runner's tasks run on worker 0's event loop).
fn saga_sender(runtime: &Arc<ArcSwap<Runtime>>) -> crate::saga::Sender {
    let live = Arc::downgrade(runtime);
    let client = Arc::new(forward::Client::new(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        0,
        runtime.load().clock.clone(),
    ));
    Arc::new(move |name: &str, request| {
        let upstream = live
            .upgrade()
            .and_then(|live| live.load().upstream(name).cloned());
        let name = name.to_owned();
        let client = client.clone();
        Box::pin(async move {
            let Some(upstream) = upstream else {
                return Err(crate::saga::Unanswered::NotSent(format!(
                    "upstream {name} is not configured"
                )));
            };
            forward::call::call(&upstream, &client, request).await
        })
    })
}

/// Worker `index`: a thread with its own current-thread runtime serving from `listener`
/// (a copy of the proxy's listening socket). The receiver fires when it has drained.
fn spawn_worker(
    index: usize,
    listener: std::net::TcpListener,
    worker: Worker,
    runtime: Arc<ArcSwap<Runtime>>,
    config: config::Listener,
    cap: Cap,
    stopped: watch::Receiver<bool>,
) -> std::io::Result<tokio::sync::oneshot::Receiver<()>> {
    let (done, finished) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name(format!("palisade-worker-{index}"))
        .spawn(move || {
            match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(event_loop) => event_loop.block_on(async move {
                    match TcpListener::from_std(listener) {
                        Ok(listener) => {
                            serve(listener, Some(worker), runtime, config, cap, stopped).await;
                        }
                        Err(error) => tracing::warn!(%error, index, "worker cannot listen"),
                    }
                }),
                Err(error) => tracing::warn!(%error, index, "worker runtime failed"),
            }
            let _ = done.send(());
        })?;
    Ok(finished)
}

/// A worker's side of the connection hand-off, and its queue of handed connections.
type Worker = (Placement, mpsc::Receiver<Handed>);

/// Accepts and serves connections until stopped, then drains them. With `worker`, the
/// connections are balanced with the other workers (see `workers`); each connection
/// served holds a place in `cap` until it ends.
async fn serve(
    listener: TcpListener,
    worker: Option<Worker>,
    runtime: Arc<ArcSwap<Runtime>>,
    config: config::Listener,
    cap: Cap,
    mut stopped: watch::Receiver<bool>,
) {
    let protocols = Arc::new(Protocols::new(&config));
    let drain = Drain::new();
    let (placement, mut inbox) = match worker {
        Some((placement, inbox)) => (Some(placement), Some(inbox)),
        None => (None, None),
    };
    // The worker this runs as: whose idle upstream connections its requests use.
    let index = placement.as_ref().map_or(0, Placement::index);
    loop {
        let (stream, client, load) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, client)) => match &placement {
                    Some(placement) => match placement.place(stream, client) {
                        Some((stream, client, load)) => (stream, client, Some(load)),
                        None => continue,
                    },
                    None => (stream, client, None),
                },
                Err(error) => {
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
            handed = workers::handed(&mut inbox) => match placement.as_ref().and_then(|p| p.receive(handed)) {
                Some((stream, client, load)) => (stream, client, Some(load)),
                None => continue,
            },
            _ = stopped.changed() => break,
        };
        // Over the cap: dropped, which closes it.
        let Some(place) = cap.admit(client) else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let service = Service {
            runtime: runtime.clone(),
            client: Arc::new(forward::Client::new(client, index, protocols.clock.clone())),
        };
        let drain = drain.clone();
        let protocols = protocols.clone();
        tokio::spawn(async move {
            serve_connection(stream, service, protocols, drain).await;
            drop((load, place));
        });
    }
    drop(listener);
    tracing::info!("draining in-flight requests");
    if tokio::time::timeout(config.drain_timeout, drain.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(timeout = ?config.drain_timeout, "drain timed out; closing remaining connections");
    }
}

/// The HTTP/1 and HTTP/2 servers, configured once.
struct Protocols {
    http1: http1::Builder,
    http2: http2::Builder<TokioExecutor>,
    header_timeout: Duration,
    /// Longest wait for a client to take the next piece of a response (HTTP/1).
    body_timeout: Duration,
    /// The longest request head read.
    max_header_bytes: usize,
    /// A client's close cancels its request in flight (`listener.abort_on_close`).
    abort_on_close: bool,
    /// Times connections' waits for request heads (see `head_timeout`).
    clock: Clock,
}

impl Protocols {
    fn new(config: &config::Listener) -> Self {
        let mut http1 = http1::Builder::new();
        http1
            .timer(TokioTimer::new())
            // Kept per connection by `head_timeout`, not with a timer per request.
            .header_read_timeout(None)
            .max_buf_size(config.max_header_bytes)
            // A response head and a small body go out in one contiguous write (one copy
            // into the head's buffer) rather than a two-part vectored write.
            .writev(false)
            // A client that half-closes after its request is answered, unless its close
            // is to cancel the request.
            .half_close(!config.abort_on_close)
            .keep_alive(true);
        let mut http2 = http2::Builder::new(TokioExecutor::new());
        http2
            .timer(TokioTimer::new())
            .max_header_list_size(u32::try_from(config.max_header_bytes).unwrap_or(u32::MAX));
        Self {
            http1,
            http2,
            header_timeout: config.header_timeout,
            body_timeout: config.body_timeout,
            max_header_bytes: config.max_header_bytes,
            abort_on_close: config.abort_on_close,
            clock: Clock::fast(),
        }
    }
}

/// Serves one client connection in the protocol its first bytes show.
async fn serve_connection(
    stream: TcpStream,
    service: Service,
    protocols: Arc<Protocols>,
    drain: Drain,
) {
    let protocol =
        match tokio::time::timeout(protocols.header_timeout, sniff::protocol(&stream)).await {
            Ok(Ok(protocol)) => protocol,
            Ok(Err(error)) => return tracing::debug!(%error, "connection failed before a request"),
            Err(_) => return tracing::debug!("no request within the header timeout"),
        };
    let ended = match protocol {
        Protocol::Http1 => {
            let waiting = service.client.waiting.clone();
            let max_head = protocols.max_header_bytes;
            let abort_on_close = protocols.abort_on_close;
            let connection = async {
                let own = h1_server::serve(
                    WriteWatched::new(stream, waiting.clone()),
                    &service.runtime,
                    &service.client,
                    &drain,
                    max_head,
                    abort_on_close,
                );
                match drain.watch(SelfDraining::new(own)).await {
                    Ok(Served::Closed) => Ok(()),
                    Ok(Served::HandedOver(io)) => {
                        // With upgrades: a request to switch protocols (see
                        // `forward::tunnel`) gets its connection once answered 101.
                        let hyper = protocols
                            .http1
                            .serve_connection(TokioIo::new(io), service)
                            .with_upgrades();
                        drain
                            .watch(Upgradeable::new(hyper))
                            .await
                            .map_err(Ended::Hyper)
                    }
                    Err(error) => Err(Ended::Io(error)),
                }
            };
            tokio::select! {
                biased;
                ended = connection => ended,
                () = head_timeout::expired(&*waiting, protocols.header_timeout) => {
                    // Dropping the connection closes it.
                    return tracing::debug!("no request head within the header timeout");
                }
                () = head_timeout::write_stalled(&waiting, protocols.body_timeout) => {
                    // Its response (and what that holds: a bulkhead slot, an upstream
                    // connection) is dropped with it.
                    return tracing::debug!("the client took no response data within the body timeout");
                }
            }
        }
        Protocol::Http2 => {
            // Requests are counted per connection (HTTP/2 serves several at once), and
            // the wait that began at the accept goes on.
            let streams = Arc::new(Streams::continuing(&service.client.waiting));
            let service = Counted::new(service, streams.clone());
            let connection = protocols
                .http2
                .serve_connection(TokioIo::new(stream), service);
            let connection = drain.watch(Hyper::new(connection));
            match head_timeout::serve_while_used(connection, &streams, protocols.header_timeout)
                .await
            {
                Some(ended) => ended.map_err(Ended::Hyper),
                // Dropping the connection closed it.
                None => return tracing::debug!("HTTP/2 connection idle past the header timeout"),
            }
        }
    };
    if let Err(error) = ended {
        tracing::debug!(%error, "connection ended with an error");
    }
}

/// Why a connection ended early.
#[derive(Debug, thiserror::Error)]
enum Ended {
    #[error(transparent)]
    Hyper(hyper::Error),
    #[error(transparent)]
    Io(std::io::Error),
}

/// The proxy as a hyper service: one per connection.
#[derive(Clone)]
struct Service {
    runtime: Arc<ArcSwap<Runtime>>,
    client: Arc<forward::Client>,
}

impl hyper::service::Service<Request<Incoming>> for Service {
    type Response = Response<ProxyBody>;
    type Error = Infallible;
    type Future = ResponseFuture;

    fn call(&self, request: Request<Incoming>) -> ResponseFuture {
        // Boxed (and the request's own future boxed inside, see `forward::Forwarding`):
        // hyper keeps one slot for the in-flight future per connection for the
        // connection's whole life, so an unboxed request future would cost its full size
        // on every idle keep-alive connection and be copied into that slot on every request.
        let handled = forward::handle(
            self.runtime.load_full(),
            request.map(ClientBody::Incoming),
            self.client.clone(),
        );
        match handled {
            Handled::Answered(reply) => Box::pin(std::future::ready(Ok(reply.into_response()))),
            Handled::Forwarded(reply) => Box::pin(async move { Ok(reply.await.into_response()) }),
        }
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
    let (next, running) = (&checked.config, &current.config);
    // Only `max_body_bytes` and `body_timeout` are read from the running config; the
    // rest was read at start.
    let listener_changed = config::Listener {
        max_body_bytes: running.listener.max_body_bytes,
        body_timeout: running.listener.body_timeout,
        ..next.listener.clone()
    } != running.listener;
    if listener_changed || next.admin != running.admin {
        tracing::warn!(
            "[listener] keys other than max_body_bytes and body_timeout, and [admin] keys, change only on restart"
        );
    }
    if next.saga != running.saga || next.saga_store != running.saga_store {
        tracing::warn!("[saga_store] and [[saga]] change only on restart");
    }
    let mut next = Runtime::build(&checked, current.workers).map_err(|e| e.to_string())?;
    next.sagas = current.sagas.clone();
    runtime.store(Arc::new(next));
    metrics::counter!("palisade_config_reloads_total").increment(1);
    Ok(())
}

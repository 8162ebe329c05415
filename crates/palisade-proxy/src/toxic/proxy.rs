//! One toxic proxy: a listener whose connections are relayed to an upstream through the
//! proxy's toxics. Disabling it (Toxiproxy's "down") closes the listener and every open
//! connection; enabling it listens again.

use std::net::SocketAddr;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;

use super::ApiError;
use super::link::{self, Toxics};
use super::toxics::{Toxic, ToxicRequest, valid_name};

/// Open connections per proxy; one more is closed as soon as it is accepted.
pub const MAX_LINKS: usize = 10_000;
/// Toxics per proxy.
pub const MAX_TOXICS: usize = 64;

/// A proxy as a client sends it: every field optional (an update changes the ones given).
/// Other fields (a dumped proxy's `toxics`) are ignored, as Toxiproxy ignores them.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct ProxyRequest {
    pub(crate) name: Option<String>,
    pub(crate) listen: Option<String>,
    pub(crate) upstream: Option<String>,
    pub(crate) enabled: Option<bool>,
}

/// One proxy.
pub(crate) struct Proxy {
    pub(crate) name: String,
    /// The listen address: as asked, then as bound (a port 0 is chosen once).
    listen: String,
    pub(crate) upstream: String,
    toxics: watch::Sender<Toxics>,
    /// Present while enabled.
    running: Option<Running>,
}

/// An enabled proxy's listener. Dropping it closes the listener and every link.
struct Running {
    address: SocketAddr,
    accept: JoinHandle<()>,
    /// Dropped with this: every link's receiver sees it and closes.
    _stop: watch::Sender<()>,
}

impl Running {
    /// Stops accepting and returns once the listener is closed, so a client told the
    /// proxy is down finds it refusing.
    async fn stop(mut self) {
        self.accept.abort();
        let _ = (&mut self.accept).await;
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

// === impl Proxy ===

impl Proxy {
    /// A proxy from a create request (`name` and `upstream` required; `listen`
    /// 127.0.0.1:0 and enabled unless given), listening if enabled.
    pub(crate) async fn create(request: ProxyRequest) -> Result<Self, ApiError> {
        let name = valid_name(
            request
                .name
                .ok_or_else(|| ApiError::bad_request("a proxy needs a \"name\"".to_owned()))?,
        )?;
        let upstream = request.upstream.ok_or_else(|| {
            ApiError::bad_request(format!("proxy {name:?} needs an \"upstream\" (host:port)"))
        })?;
        let mut proxy = Self {
            name,
            listen: request.listen.unwrap_or_else(|| "127.0.0.1:0".to_owned()),
            upstream: host_port("upstream", upstream)?,
            toxics: watch::Sender::new(Arc::from(Vec::new())),
            running: None,
        };
        proxy.listen = host_port("listen", proxy.listen)?;
        if request.enabled.unwrap_or(true) {
            proxy.enable().await?;
        }
        Ok(proxy)
    }

    /// Applies an update: a new listen address or upstream restarts the listener (open
    /// links keep their upstream); `enabled` starts or stops it.
    pub(crate) async fn update(&mut self, request: ProxyRequest) -> Result<(), ApiError> {
        let mut restart = false;
        if let Some(upstream) = request.upstream {
            self.upstream = host_port("upstream", upstream)?;
            restart = true;
        }
        if let Some(listen) = request.listen {
            let listen = host_port("listen", listen)?;
            restart |= listen != self.listen && listen != self.address_text();
            self.listen = listen;
        }
        let enable = request.enabled.unwrap_or(self.running.is_some());
        if !enable || restart {
            self.disable().await;
        }
        if enable && self.running.is_none() {
            self.enable().await?;
        }
        Ok(())
    }

    /// Whether a populate of `request` may keep this proxy as it is.
    pub(crate) fn same_as(&self, request: &ProxyRequest) -> bool {
        request.upstream.as_deref() == Some(&self.upstream)
            && request
                .listen
                .as_deref()
                .is_none_or(|l| l == self.listen || l == self.address_text())
    }

    /// Stops listening and closes its connections; returns once the listener is closed.
    pub(crate) async fn disable(&mut self) {
        if let Some(running) = self.running.take() {
            running.stop().await;
        }
    }

    /// Starts listening.
    async fn enable(&mut self) -> Result<(), ApiError> {
        let listener = TcpListener::bind(&self.listen).await.map_err(|error| {
            ApiError::conflict(format!(
                "proxy {:?} cannot listen on {}: {error}",
                self.name, self.listen
            ))
        })?;
        let address = listener
            .local_addr()
            .map_err(|error| ApiError::internal(format!("listener address: {error}")))?;
        let (stop, stopped) = watch::channel(());
        let accept = tokio::spawn(accept(
            listener,
            self.upstream.clone(),
            self.toxics.subscribe(),
            stopped,
        ));
        tracing::info!(proxy = %self.name, %address, upstream = %self.upstream, "toxic proxy listening");
        // A port 0 is chosen once: enabling again listens on the same port, as Toxiproxy.
        self.listen = address.to_string();
        self.running = Some(Running {
            address,
            accept,
            _stop: stop,
        });
        Ok(())
    }

    /// The address it listens on (as asked while disabled).
    fn address_text(&self) -> String {
        self.running
            .as_ref()
            .map_or_else(|| self.listen.clone(), |r| r.address.to_string())
    }

    /// Enables it (if disabled) and removes its toxics: `/reset`.
    pub(crate) async fn reset(&mut self) -> Result<(), ApiError> {
        self.toxics.send_replace(Arc::from(Vec::new()));
        if self.running.is_none() {
            self.enable().await?;
        }
        Ok(())
    }

    /// Toxiproxy's JSON of the proxy, with its toxics.
    pub(crate) fn to_json(&self) -> Value {
        json!({
            "name": self.name,
            "listen": self.address_text(),
            "upstream": self.upstream,
            "enabled": self.running.is_some(),
            "toxics": self.toxics().iter().map(Toxic::to_json).collect::<Vec<_>>(),
        })
    }

    /// Its toxics now.
    pub(crate) fn toxics(&self) -> Toxics {
        self.toxics.borrow().clone()
    }

    /// Its toxic `name`.
    pub(crate) fn toxic(&self, name: &str) -> Result<Toxic, ApiError> {
        self.toxics()
            .iter()
            .find(|t| t.name == name)
            .cloned()
            .ok_or_else(|| ApiError::not_found(format!("toxic {name:?} not found")))
    }

    /// Adds a toxic; refuses a name in use and more than [`MAX_TOXICS`].
    pub(crate) fn add_toxic(&self, request: ToxicRequest) -> Result<Toxic, ApiError> {
        let toxic = Toxic::create(request)?;
        let mut toxics = self.toxics().to_vec();
        if toxics.iter().any(|t| t.name == toxic.name) {
            return Err(ApiError::conflict(format!(
                "toxic {:?} already exists on proxy {:?}",
                toxic.name, self.name
            )));
        }
        if toxics.len() >= MAX_TOXICS {
            return Err(ApiError::bad_request(format!(
                "proxy {:?} has {MAX_TOXICS} toxics, the most it may have",
                self.name
            )));
        }
        toxics.push(toxic.clone());
        self.toxics.send_replace(Arc::from(toxics));
        Ok(toxic)
    }

    /// Changes toxic `name` by `request`.
    pub(crate) fn update_toxic(
        &self,
        name: &str,
        request: ToxicRequest,
    ) -> Result<Toxic, ApiError> {
        let updated = self.toxic(name)?.update(request)?;
        let toxics: Vec<Toxic> = self
            .toxics()
            .iter()
            .map(|t| {
                if t.name == name {
                    updated.clone()
                } else {
                    t.clone()
                }
            })
            .collect();
        self.toxics.send_replace(Arc::from(toxics));
        Ok(updated)
    }

    /// Removes toxic `name`.
    pub(crate) fn remove_toxic(&self, name: &str) -> Result<(), ApiError> {
        self.toxic(name)?;
        let toxics: Vec<Toxic> = self
            .toxics()
            .iter()
            .filter(|t| t.name != name)
            .cloned()
            .collect();
        self.toxics.send_replace(Arc::from(toxics));
        Ok(())
    }
}

/// Accepts connections and relays each, at most [`MAX_LINKS`] at once.
async fn accept(
    listener: TcpListener,
    upstream: String,
    toxics: watch::Receiver<Toxics>,
    stop: watch::Receiver<()>,
) {
    let links = Arc::new(Semaphore::new(MAX_LINKS));
    loop {
        let client = match listener.accept().await {
            Ok((client, _)) => client,
            Err(error) => {
                tracing::warn!(%error, "toxic proxy: accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        let Ok(permit) = links.clone().try_acquire_owned() else {
            continue; // dropping the connection closes it
        };
        let (upstream, toxics, stop) = (upstream.clone(), toxics.clone(), stop.clone());
        tokio::spawn(async move {
            link::relay(client, upstream, toxics, stop).await;
            drop(permit);
        });
    }
}

/// `address` if it is `host:port` with a valid port.
fn host_port(key: &str, address: String) -> Result<String, ApiError> {
    let valid = address
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
    if valid {
        Ok(address)
    } else {
        Err(ApiError::bad_request(format!(
            "{key} {address:?} is not host:port, e.g. \"127.0.0.1:6379\""
        )))
    }
}

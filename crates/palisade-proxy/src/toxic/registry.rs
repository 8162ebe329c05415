//! Every proxy of a toxic server, by name, and the operations of Toxiproxy's API on them.

use std::collections::BTreeMap;

use serde_json::{Value, json};
use tokio::sync::Mutex;

use super::ApiError;
use super::proxy::{Proxy, ProxyRequest};
use super::toxics::ToxicRequest;

/// Proxies one server holds.
pub const MAX_PROXIES: usize = 1024;

/// The proxies. One lock orders the API's changes; connections never take it.
#[derive(Default)]
pub struct Registry {
    proxies: Mutex<BTreeMap<String, Proxy>>,
}

// === impl Registry ===

impl Registry {
    /// `GET /proxies`: every proxy by name.
    pub async fn list(&self) -> Value {
        let proxies = self.proxies.lock().await;
        Value::Object(
            proxies
                .iter()
                .map(|(name, proxy)| (name.clone(), proxy.to_json()))
                .collect(),
        )
    }

    /// `POST /proxies`.
    pub async fn create(&self, request: ProxyRequest) -> Result<Value, ApiError> {
        let mut proxies = self.proxies.lock().await;
        if let Some(name) = &request.name
            && proxies.contains_key(name)
        {
            return Err(ApiError::conflict(format!("proxy {name:?} already exists")));
        }
        if proxies.len() >= MAX_PROXIES {
            return Err(ApiError::bad_request(format!(
                "{MAX_PROXIES} proxies exist, the most one server holds"
            )));
        }
        let proxy = Proxy::create(request).await?;
        let json = proxy.to_json();
        proxies.insert(proxy.name.clone(), proxy);
        Ok(json)
    }

    /// `POST /populate`: creates each proxy, replacing one of the same name unless it
    /// already listens and forwards as asked (then only `enabled` is applied). Stops at
    /// the first refusal; the proxies done before it stay.
    pub async fn populate(&self, requests: Vec<ProxyRequest>) -> Result<Value, (ApiError, Value)> {
        let mut proxies = self.proxies.lock().await;
        let mut done = Vec::new();
        for request in requests {
            let name = request.name.clone().unwrap_or_default();
            let outcome = match proxies.get_mut(&name) {
                Some(existing) if existing.same_as(&request) => {
                    let enabled = ProxyRequest {
                        enabled: request.enabled.or(Some(true)),
                        ..ProxyRequest::default()
                    };
                    existing.update(enabled).await
                }
                _ => {
                    // Free its listen address before the new one binds it.
                    if let Some(mut old) = proxies.remove(&name) {
                        old.disable().await;
                    }
                    if proxies.len() >= MAX_PROXIES {
                        Err(ApiError::bad_request(format!(
                            "{MAX_PROXIES} proxies exist, the most one server holds"
                        )))
                    } else {
                        Proxy::create(request).await.map(|proxy| {
                            proxies.insert(proxy.name.clone(), proxy);
                        })
                    }
                }
            };
            if let Err(error) = outcome {
                return Err((error, json!({ "proxies": done })));
            }
            if let Some(proxy) = proxies.get(&name) {
                done.push(proxy.to_json());
            }
        }
        Ok(json!({ "proxies": done }))
    }

    /// `GET /proxies/{name}`.
    pub async fn get(&self, name: &str) -> Result<Value, ApiError> {
        let proxies = self.proxies.lock().await;
        Ok(found(&proxies, name)?.to_json())
    }

    /// `POST /proxies/{name}`: changes its listen address, upstream or enabled.
    pub async fn update(&self, name: &str, request: ProxyRequest) -> Result<Value, ApiError> {
        let mut proxies = self.proxies.lock().await;
        let proxy = proxies.get_mut(name).ok_or_else(|| not_found(name))?;
        proxy.update(request).await?;
        Ok(proxy.to_json())
    }

    /// `DELETE /proxies/{name}`: closes its listener and connections.
    pub async fn delete(&self, name: &str) -> Result<(), ApiError> {
        let mut proxies = self.proxies.lock().await;
        let mut proxy = proxies.remove(name).ok_or_else(|| not_found(name))?;
        proxy.disable().await;
        Ok(())
    }

    /// `POST /reset`: every proxy enabled, every toxic removed.
    pub async fn reset(&self) -> Result<(), ApiError> {
        let mut proxies = self.proxies.lock().await;
        for proxy in proxies.values_mut() {
            proxy.reset().await?;
        }
        Ok(())
    }

    /// `GET /proxies/{name}/toxics`.
    pub async fn toxics(&self, name: &str) -> Result<Value, ApiError> {
        let proxies = self.proxies.lock().await;
        let proxy = found(&proxies, name)?;
        Ok(Value::Array(
            proxy.toxics().iter().map(|t| t.to_json()).collect(),
        ))
    }

    /// `POST /proxies/{name}/toxics`.
    pub async fn add_toxic(&self, name: &str, request: ToxicRequest) -> Result<Value, ApiError> {
        let proxies = self.proxies.lock().await;
        Ok(found(&proxies, name)?.add_toxic(request)?.to_json())
    }

    /// `GET /proxies/{name}/toxics/{toxic}`.
    pub async fn toxic(&self, name: &str, toxic: &str) -> Result<Value, ApiError> {
        let proxies = self.proxies.lock().await;
        Ok(found(&proxies, name)?.toxic(toxic)?.to_json())
    }

    /// `POST /proxies/{name}/toxics/{toxic}`.
    pub async fn update_toxic(
        &self,
        name: &str,
        toxic: &str,
        request: ToxicRequest,
    ) -> Result<Value, ApiError> {
        let proxies = self.proxies.lock().await;
        Ok(found(&proxies, name)?
            .update_toxic(toxic, request)?
            .to_json())
    }

    /// `DELETE /proxies/{name}/toxics/{toxic}`.
    pub async fn remove_toxic(&self, name: &str, toxic: &str) -> Result<(), ApiError> {
        let proxies = self.proxies.lock().await;
        found(&proxies, name)?.remove_toxic(toxic)
    }
}

fn found<'p>(proxies: &'p BTreeMap<String, Proxy>, name: &str) -> Result<&'p Proxy, ApiError> {
    proxies.get(name).ok_or_else(|| not_found(name))
}

fn not_found(name: &str) -> ApiError {
    ApiError::not_found(format!("proxy {name:?} not found"))
}

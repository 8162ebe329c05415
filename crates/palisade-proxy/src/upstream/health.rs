//! Active health checks: a GET to each endpoint every interval.
//!
//! `healthy_after` passing checks in a row make an endpoint healthy, `unhealthy_after`
//! failing ones unhealthy. Health and ejection are separate: a passing check never
//! closes an endpoint's open breaker, so an endpoint whose checks pass while its data
//! requests fail (a gray failure) cannot flap back into rotation before its open time
//! ends. An endpoint that becomes healthy again (it had failed its checks: it was down,
//! and is back) has its breaker's open time ended: its next request is a probe, so it
//! returns at once instead of after an open time that grew while it was down (as Envoy
//! un-ejects a host on a successful active check). Each check task holds only a weak reference and ends when
//! its endpoint is dropped (on reload).

use std::sync::{Arc, Weak};

use bytes::Bytes;
use http_body_util::Empty;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::endpoint::Endpoint;
use crate::config::HealthCheck;

/// Starts the check task of `endpoint`.
pub(crate) fn spawn(endpoint: &Arc<Endpoint>, check: HealthCheck) {
    let weak = Arc::downgrade(endpoint);
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(check.timeout));
    connector.set_nodelay(true);
    let client: Client<HttpConnector, Empty<Bytes>> =
        Client::builder(TokioExecutor::new()).build(connector);
    tokio::spawn(run(weak, client, check));
}

async fn run(
    endpoint: Weak<Endpoint>,
    client: Client<HttpConnector, Empty<Bytes>>,
    check: HealthCheck,
) {
    let mut ticker = tokio::time::interval(check.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let Some(endpoint) = endpoint.upgrade() else {
            return;
        };
        let uri = format!("http://{}{}", endpoint.address, check.path);
        let answer = match uri.parse::<http::Uri>() {
            Ok(uri) => match tokio::time::timeout(check.timeout, client.get(uri)).await {
                Ok(Ok(response)) => Ok(response.status()),
                Ok(Err(error)) => Err(error.to_string()),
                Err(_) => Err(format!("no answer within {:?}", check.timeout)),
            },
            Err(error) => Err(error.to_string()),
        };
        record(&endpoint, &check, answer);
    }
}

fn record(endpoint: &Endpoint, check: &HealthCheck, answer: Result<http::StatusCode, String>) {
    let mut status = endpoint.check.lock().unwrap_or_else(|e| e.into_inner());
    status.checks += 1;
    let passed = matches!(answer, Ok(code) if code.is_success());
    status.last = Some(match answer {
        Ok(code) => code.as_u16().to_string(),
        Err(error) => error,
    });
    if passed {
        status.passing_in_a_row += 1;
        status.failing_in_a_row = 0;
        if !endpoint.is_healthy() && status.passing_in_a_row >= check.healthy_after {
            endpoint.set_healthy(true);
            if let Some(breaker) = &endpoint.breaker {
                breaker.probe_now();
            }
        }
    } else {
        status.failing_in_a_row += 1;
        status.passing_in_a_row = 0;
        if endpoint.is_healthy() && status.failing_in_a_row >= check.unhealthy_after {
            endpoint.set_healthy(false);
        }
    }
}

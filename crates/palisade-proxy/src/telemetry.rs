//! Logs and the Prometheus recorder.
//!
//! The recorder is installed before any policy is built (policies register their metric
//! handles when built) and rendered by the admin port's `/metrics`.

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

static PROMETHEUS: OnceLock<PrometheusHandle> = OnceLock::new();

/// Latency buckets, in seconds: 0.5 ms to 10 s.
const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Installs the Prometheus recorder once per process; later calls do nothing.
pub fn install_metrics() {
    PROMETHEUS.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("seconds".into()), &BUCKETS)
            .unwrap_or_else(|_| PrometheusBuilder::new());
        match builder.install_recorder() {
            Ok(handle) => {
                let upkeep = handle.clone();
                tokio::spawn(async move {
                    // Histogram samples wait in buffers until upkeep folds them into buckets: every
                    // second keeps that buffer small at tens of thousands of requests a second.
                    let mut tick = tokio::time::interval(Duration::from_secs(1));
                    loop {
                        tick.tick().await;
                        upkeep.run_upkeep();
                    }
                });
                handle
            }
            Err(error) => {
                tracing::warn!(%error, "a metrics recorder was already installed; /metrics will be empty");
                PrometheusBuilder::new().build_recorder().handle()
            }
        }
    });
}

/// The Prometheus text of every metric.
pub fn render_metrics() -> String {
    PROMETHEUS.get().map_or_else(
        || "# metrics recorder not installed\n".to_owned(),
        PrometheusHandle::render,
    )
}

/// Logs to stderr, filtered by `RUST_LOG` (default `info`).
pub fn install_logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

//! A real Prometheus for a game day that asserts alerts fire: started by the runner
//! (Debian's `prometheus` package), scraping the pages the file names every second and
//! evaluating, every second, the rules `palisade alerts` writes for a sidecar's config —
//! the very rules an operator deploys. Its alerts API is sampled into a series per alert
//! a hypothesis names (`probes.rs`).
//!
//! It runs as one of the run's processes, under the same guard as the targets, so it
//! never outlives the runner; its configuration and rules are kept in the output
//! directory beside the reports, and its database, written there too, is removed at the
//! end.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::experiment::PrometheusSpec;
use super::http::Client;
use super::targets::Targets;

/// How often it scrapes and evaluates its rules.
const INTERVAL: &str = "1s";
/// How long it may take to be ready.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// The Prometheus a run started.
pub(super) struct Prometheus {
    /// Its address, `http://127.0.0.1:port`.
    pub(super) url: String,
    /// Its database, removed at the end.
    data: PathBuf,
}

// === impl Prometheus ===

impl Prometheus {
    /// Writes its configuration and rules into `out/prometheus/` and starts it as the
    /// run's process `prometheus`, ready when this returns.
    pub(super) async fn start(
        spec: &PrometheusSpec,
        out: &Path,
        targets: &mut Targets,
        client: &Client,
    ) -> Result<Self, String> {
        let dir = out.join("prometheus");
        let data = dir.join("data");
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let rules = dir.join("alerts.yml");
        std::fs::write(&rules, rules_for(Path::new(&spec.alerts_for))?)
            .map_err(|e| format!("{}: {e}", rules.display()))?;
        let config = dir.join("prometheus.yml");
        std::fs::write(&config, config_text(&spec.scrape, &rules))
            .map_err(|e| format!("{}: {e}", config.display()))?;
        let port = free_port()?;
        let url = format!("http://127.0.0.1:{port}");
        let command = vec![
            "prometheus".to_owned(),
            format!("--config.file={}", config.display()),
            format!("--storage.tsdb.path={}", data.display()),
            format!("--web.listen-address=127.0.0.1:{port}"),
            "--log.level=warn".to_owned(),
        ];
        targets
            .add(
                "prometheus",
                command,
                Some(format!("{url}/-/ready")),
                READY_TIMEOUT,
                client,
            )
            .await
            .map_err(|e| {
                format!("{e} (a game day with [prometheus] needs Debian's prometheus package)")
            })?;
        Ok(Self { url, data })
    }

    /// Its alerts API.
    pub(super) fn alerts_api(&self) -> String {
        format!("{}/api/v1/alerts", self.url)
    }

    /// Removes its database (the process is stopped with the targets).
    pub(super) fn clean_up(&self) {
        let _ = std::fs::remove_dir_all(&self.data);
    }
}

/// The rules `palisade alerts` writes for the sidecar config at `source`.
fn rules_for(source: &Path) -> Result<String, String> {
    let checked = crate::config::load(source).map_err(|problems| problems.to_string())?;
    crate::alerts::write(
        &source.display().to_string(),
        &checked,
        &crate::alerts::Options::default(),
    )
}

/// Prometheus's configuration: every page a job of its own, scraped and evaluated every
/// second. The pages are checked (`http://host:port/path`) before the run.
fn config_text(scrape: &[String], rules: &Path) -> String {
    let mut text = format!(
        "global:\n  scrape_interval: {INTERVAL}\n  evaluation_interval: {INTERVAL}\n\
         rule_files:\n  - {}\nscrape_configs:\n",
        quoted(&rules.display().to_string())
    );
    for (i, page) in scrape.iter().enumerate() {
        let (address, path) = split_page(page).unwrap_or_default();
        let _ = write!(
            text,
            "  - job_name: gameday-{i}\n    metrics_path: {}\n    static_configs:\n      - targets: [{}]\n",
            quoted(path),
            quoted(address),
        );
    }
    text
}

/// `http://host:port/path` as its address and path; none when it is not that.
pub(super) fn split_page(page: &str) -> Option<(&str, &str)> {
    let rest = page.strip_prefix("http://")?;
    let (address, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/metrics"),
    };
    super::checks::is_host_port(address).then_some((address, path))
}

/// A YAML double-quoted string.
fn quoted(text: &str) -> String {
    serde_json::Value::String(text.to_owned()).to_string()
}

fn free_port() -> Result<u16, String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|e| format!("no free port for Prometheus: {e}"))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_split_into_address_and_path() {
        assert_eq!(
            split_page("http://127.0.0.1:9901/metrics"),
            Some(("127.0.0.1:9901", "/metrics"))
        );
        assert_eq!(
            split_page("http://127.0.0.1:9901"),
            Some(("127.0.0.1:9901", "/metrics"))
        );
        for bad in [
            "https://a:1/m",
            "127.0.0.1:9901/metrics",
            "http://host/m",
            "http://:1/",
        ] {
            assert_eq!(split_page(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_configuration_scrapes_each_page_and_loads_the_rules() {
        let text = config_text(
            &[
                "http://127.0.0.1:9901/metrics".into(),
                "http://127.0.0.1:9902/m".into(),
            ],
            Path::new("/out/prometheus/alerts.yml"),
        );
        assert!(text.contains("evaluation_interval: 1s"), "{text}");
        assert!(
            text.contains("  - \"/out/prometheus/alerts.yml\""),
            "{text}"
        );
        assert!(text.contains("metrics_path: \"/m\""), "{text}");
        assert!(text.contains("targets: [\"127.0.0.1:9902\"]"), "{text}");
        assert_eq!(text.matches("job_name").count(), 2);
    }
}

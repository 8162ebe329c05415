//! Configuration of the [`RedisStore`](super::RedisStore).

use std::time::Duration;

use palisade::ConfigError;
use serde::{Deserialize, Serialize};

/// Where Redis is, how long a call to it may take, and when to stop asking it.
/// Defaults, and why:
///
/// | field | default | why |
/// |---|---|---|
/// | `url` | none | one Redis server; exactly one of `url` and `nodes` is set |
/// | `nodes` | none | a Redis Cluster's seed nodes; exactly one of `url` and `nodes` is set |
/// | `timeout` | `5ms` | a decision on loopback or in one zone takes well under 1 ms; a Redis slower than 5 ms is failing, and the request must not wait for it |
/// | `connect_timeout` | `1s` | connecting happens at start and after a loss, off the per-call budget |
/// | `breaker` | `{ failures = 3, open_for = "250ms" }` | see [`StoreBreakerConfig`] |
///
/// ```toml
/// url = "redis://10.0.0.5:6379"        # one server, or:
/// # nodes = ["redis://10.0.0.5:7000", "redis://10.0.0.6:7001"]
/// timeout = "5ms"
/// breaker = { failures = 3, open_for = "250ms" }
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// One server, `redis://[user:password@]host:port[/db]`. TLS (`rediss://`) is not
    /// built in yet. Exactly one of `url` and `nodes`.
    pub url: Option<String>,
    /// A Redis Cluster: some of its nodes, `redis://[user:password@]host:port` each (1
    /// to 64; the client learns the others from them, and follows `MOVED`/`ASK`).
    /// Exactly one of `url` and `nodes`.
    pub nodes: Option<Vec<String>>,
    /// The longest one call (one decision) may take, from sending it to reading the
    /// answer; more than 0 and at most 10 s.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// The longest connecting may take; more than 0 and at most 60 s.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// The breaker around every call.
    pub breaker: StoreBreakerConfig,
}

/// The store's circuit breaker: after `failures` calls in a row that timed out or found
/// Redis unavailable, calls answer [`FleetError::CircuitOpen`](crate::FleetError) at once
/// for `open_for`, then one call probes Redis (success closes the breaker, failure opens
/// it for `open_for` again). Defaults, and why:
///
/// | field | default | why |
/// |---|---|---|
/// | `failures` | `3` | one lost packet or one slow call is not an outage; three in a row, at a 5 ms timeout, is 15 ms of requests that waited for nothing |
/// | `open_for` | `250ms` | fixed, never growing: one probe per 250 ms is nothing for Redis, and a fleet is back on shared counting within 250 ms (plus the probe) of Redis answering again, well within 1 s |
///
/// A malformed answer is not a failure here: Redis answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreBreakerConfig {
    /// Failed calls in a row (timeouts or unavailable) that open the breaker, 1 to 100.
    pub failures: u32,
    /// How long the breaker stays open before one call probes Redis; 10 ms to 10 s.
    #[serde(with = "humantime_serde")]
    pub open_for: Duration,
}

/// The default of [`StoreConfig::timeout`].
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(5);

/// The most seed nodes [`StoreConfig::nodes`] takes.
pub const MAX_NODES: usize = 64;

/// Says how to name the server(s), for errors.
const WHERE: &str = "url = \"redis://host:port[/db]\" for one server, or \
                     nodes = [\"redis://host:port\", …] for a Redis Cluster";

// === impl StoreConfig ===

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            url: None,
            nodes: None,
            timeout: DEFAULT_TIMEOUT,
            connect_timeout: Duration::from_secs(1),
            breaker: StoreBreakerConfig::default(),
        }
    }
}

impl StoreConfig {
    /// The defaults with one server at `url`.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: Some(url.into()),
            ..Self::default()
        }
    }

    /// The defaults with a Redis Cluster, reached through `nodes` (some of its nodes).
    pub fn cluster<I, S>(nodes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            nodes: Some(nodes.into_iter().map(Into::into).collect()),
            ..Self::default()
        }
    }

    /// Sets the per-call timeout.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets the connect timeout.
    #[must_use]
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Sets the breaker.
    #[must_use]
    pub fn breaker(mut self, breaker: StoreBreakerConfig) -> Self {
        self.breaker = breaker;
        self
    }

    /// Checks every field; a URL Redis's client cannot read is an error here, not at the
    /// first call.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.target()?;
        duration("timeout", self.timeout, Duration::from_secs(10))?;
        duration(
            "connect_timeout",
            self.connect_timeout,
            Duration::from_secs(60),
        )?;
        self.breaker.validate().map_err(|e| e.within("breaker"))?;
        Ok(())
    }

    /// The server or the cluster, each URL read.
    pub(crate) fn target(&self) -> Result<Target, ConfigError> {
        match (&self.url, &self.nodes) {
            (Some(url), None) => Ok(Target::Server(client(url)?)),
            (None, Some(nodes)) => cluster_client(nodes).map(Target::Cluster),
            (Some(_), Some(_)) => Err(ConfigError::new(
                "url",
                "both url and nodes are set",
                format!("one of them: {WHERE}"),
            )),
            (None, None) => Err(ConfigError::new(
                "url",
                "neither url nor nodes is set",
                WHERE,
            )),
        }
    }
}

/// What a [`StoreConfig`] connects to.
pub(crate) enum Target {
    /// One server.
    Server(redis::Client),
    /// A Redis Cluster, through these nodes (checked: they make one cluster client).
    Cluster(Vec<String>),
}

/// The client for one server's URL.
fn client(url: &str) -> Result<redis::Client, ConfigError> {
    redis::Client::open(url).map_err(|e| {
        ConfigError::new(
            "url",
            format!("{url:?} is not a Redis URL ({e})"),
            "redis://host:port[/db]",
        )
    })
}

/// The seed nodes, each checked on its own so that an error names the one that is wrong,
/// then together as the cluster client checks them.
fn cluster_client(nodes: &[String]) -> Result<Vec<String>, ConfigError> {
    if nodes.is_empty() || nodes.len() > MAX_NODES {
        return Err(ConfigError::new(
            "nodes",
            format!("{} nodes", nodes.len()),
            format!("1 to {MAX_NODES} of the cluster's nodes, redis://host:port each"),
        ));
    }
    for (i, node) in nodes.iter().enumerate() {
        let info = redis::IntoConnectionInfo::into_connection_info(node.as_str())
            .map_err(|e| format!("{node:?} is not a Redis URL ({e})"))
            .and_then(|info| match (&info.addr, info.redis.db) {
                (redis::ConnectionAddr::Tcp(..), 0) => Ok(info),
                (redis::ConnectionAddr::Tcp(..), db) => Err(format!(
                    "{node:?} names database {db}; a cluster has only database 0"
                )),
                _ => Err(format!("{node:?} is not a TCP address")),
            });
        if let Err(problem) = info {
            return Err(ConfigError::new(
                format!("nodes[{i}]"),
                problem,
                "redis://[user:password@]host:port",
            ));
        }
    }
    // The builder's own checks: the same user, password and protocol on every node.
    redis::cluster::ClusterClientBuilder::new(nodes.iter().map(String::as_str))
        .build()
        .map_err(|e| {
            ConfigError::new(
                "nodes",
                format!("the nodes do not make one cluster client ({e})"),
                "the same user, password and protocol on every node",
            )
        })?;
    Ok(nodes.to_vec())
}

// === impl StoreBreakerConfig ===

impl Default for StoreBreakerConfig {
    fn default() -> Self {
        Self {
            failures: 3,
            open_for: Duration::from_millis(250),
        }
    }
}

impl StoreBreakerConfig {
    /// Checks both fields.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=100).contains(&self.failures) {
            return Err(ConfigError::new(
                "failures",
                format!("{} is out of range", self.failures),
                "1 to 100 failed calls in a row",
            ));
        }
        let (min, max) = (Duration::from_millis(10), Duration::from_secs(10));
        if self.open_for < min || self.open_for > max {
            return Err(ConfigError::new(
                "open_for",
                format!("{:?} is out of range", self.open_for),
                "10ms to 10s",
            ));
        }
        Ok(())
    }
}

fn duration(field: &str, value: Duration, max: Duration) -> Result<(), ConfigError> {
    if value.is_zero() || value > max {
        return Err(ConfigError::new(
            field,
            format!("{value:?} is out of range"),
            format!("more than 0 and at most {max:?}"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_need_only_a_server() {
        let config = StoreConfig::default();
        assert_eq!(config.timeout, Duration::from_millis(5));
        assert_eq!(config.breaker.failures, 3);
        assert_eq!(config.breaker.open_for, Duration::from_millis(250));
        let err = config.validate().unwrap_err();
        assert_eq!(err.field, "url");
        assert!(err.problem.contains("neither"), "{err}");
        assert!(err.allowed.contains("nodes"), "{err}");
        StoreConfig::new("redis://127.0.0.1:6379")
            .validate()
            .unwrap();
        StoreConfig::cluster(["redis://127.0.0.1:7000", "redis://127.0.0.1:7001"])
            .validate()
            .unwrap();
    }

    #[test]
    fn a_bad_url_is_a_config_error() {
        for url in ["", "http://x", "redis://host:notaport", "nonsense"] {
            let err = StoreConfig::new(url).validate().unwrap_err();
            assert_eq!(err.field, "url", "{url}");
        }
    }

    #[test]
    fn url_and_nodes_exclude_each_other() {
        let mut both = StoreConfig::new("redis://a:6379");
        both.nodes = Some(vec!["redis://b:7000".into()]);
        let err = both.validate().unwrap_err();
        assert_eq!(err.field, "url");
        assert!(err.problem.contains("both"), "{err}");
    }

    #[test]
    fn bad_nodes_are_named() {
        let empty = StoreConfig::cluster(Vec::<String>::new());
        assert_eq!(empty.validate().unwrap_err().field, "nodes");
        let many = StoreConfig::cluster((0..65).map(|i| format!("redis://h:{}", 7000 + i)));
        assert_eq!(many.validate().unwrap_err().field, "nodes");
        let bad = StoreConfig::cluster(["redis://a:7000", "http://b:7001"]);
        assert_eq!(bad.validate().unwrap_err().field, "nodes[1]");
        let db = StoreConfig::cluster(["redis://a:7000/2"]);
        let err = db.validate().unwrap_err();
        assert_eq!(err.field, "nodes[0]");
        assert!(err.problem.contains("database 2"), "{err}");
        let unix = StoreConfig::cluster(["redis+unix:///tmp/redis.sock"]);
        assert_eq!(unix.validate().unwrap_err().field, "nodes[0]");
        let passwords = StoreConfig::cluster(["redis://:a@h:7000", "redis://:b@h:7001"]);
        assert_eq!(passwords.validate().unwrap_err().field, "nodes");
    }

    #[test]
    fn timeouts_have_ranges() {
        let server = StoreConfig::new("redis://127.0.0.1:6379");
        let zero = server.clone().timeout(Duration::ZERO);
        assert_eq!(zero.validate().unwrap_err().field, "timeout");
        let long = server.connect_timeout(Duration::from_secs(61));
        assert_eq!(long.validate().unwrap_err().field, "connect_timeout");
    }

    #[test]
    fn the_breaker_has_ranges() {
        let with = |failures, open_for| {
            StoreConfig::new("redis://127.0.0.1:6379")
                .breaker(StoreBreakerConfig { failures, open_for })
        };
        let ms = Duration::from_millis;
        with(1, ms(10)).validate().unwrap();
        with(100, ms(10_000)).validate().unwrap();
        for (failures, open_for, field) in [
            (0, ms(250), "breaker.failures"),
            (101, ms(250), "breaker.failures"),
            (3, ms(9), "breaker.open_for"),
            (3, ms(10_001), "breaker.open_for"),
        ] {
            let err = with(failures, open_for).validate().unwrap_err();
            assert_eq!(err.field, field, "{failures} {open_for:?}");
        }
    }

    #[test]
    fn reads_from_toml() {
        let config: StoreConfig =
            toml::from_str("url = \"redis://10.0.0.1:6380/2\"\ntimeout = \"2ms\"").unwrap();
        assert_eq!(config.timeout, Duration::from_millis(2));
        assert_eq!(config.connect_timeout, Duration::from_secs(1));
        assert_eq!(config.breaker, StoreBreakerConfig::default());
        config.validate().unwrap();
        assert!(toml::from_str::<StoreConfig>("urll = \"x\"").is_err());

        let config: StoreConfig = toml::from_str(
            "nodes = [\"redis://10.0.0.1:7000\", \"redis://10.0.0.2:7001\"]\n\
             breaker = { failures = 5, open_for = \"100ms\" }",
        )
        .unwrap();
        assert_eq!(config.url, None);
        assert_eq!(config.nodes.as_ref().map(Vec::len), Some(2));
        assert_eq!(config.breaker.failures, 5);
        assert_eq!(config.breaker.open_for, Duration::from_millis(100));
        config.validate().unwrap();
        // A breaker table with one field takes the other's default.
        let config: StoreConfig =
            toml::from_str("url = \"redis://h:1\"\nbreaker = { failures = 7 }").unwrap();
        assert_eq!(config.breaker.open_for, Duration::from_millis(250));
        assert!(toml::from_str::<StoreConfig>("breaker = { failure = 7 }").is_err());
    }
}

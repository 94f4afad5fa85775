//! Where the node's shared state lives (`[broker]`): the in-memory broker,
//! one Redis, a Redis Cluster, or Redis behind Sentinel; and its timings.

use super::{ConfigError, problem};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BrokerConfig {
    /// Redis URL (`redis://[user:password@]host:port[/db]`, `rediss://` for
    /// TLS). Default: unset, which runs the in-memory broker: one node, no
    /// Redis.
    pub redis_url: Option<String>,
    /// Seed nodes of a Redis Cluster (URLs as above); pub/sub is sharded
    /// (SSUBSCRIBE/SPUBLISH). Default: empty. Exclusive with `redis_url`.
    pub redis_cluster: Vec<String>,
    /// Redis Sentinel: the sentinels, as `host:port` or URLs
    /// (`redis://host:26379`, with the sentinels' own password if they need
    /// one). The primary they name is
    /// reached with the scheme, credentials and database of `redis_url` if
    /// it is set (its host and port are not used). Default: empty.
    pub sentinels: Vec<String>,
    /// The name of the group the sentinels monitor (`sentinel monitor
    /// <name> ...`); needed with `sentinels`. Default: unset.
    pub sentinel_master: Option<String>,
    /// Prefix of every Redis key and pub/sub name. Default: `switchyard`.
    pub prefix: String,
    /// For `rediss://`: a PEM file of the CA that signed Redis' certificate,
    /// instead of the system's trust store. Default: unset.
    pub tls_ca_file: Option<PathBuf>,
    /// For `rediss://` with client certificates (mutual TLS): this node's
    /// PEM certificate and key. Default: unset.
    pub tls_cert_file: Option<PathBuf>,
    pub tls_key_file: Option<PathBuf>,
    /// How often a node refreshes its entry in the cluster registry; the
    /// entry expires after three times this. Default: `5s`.
    #[serde(with = "humantime_serde")]
    pub heartbeat_interval: Duration,
    /// How long a presence entry lives unless its node refreshes it (every
    /// third of it): the longest a client of a node that died stays in
    /// presence, and the latest its `leave` comes. Default: `60s`.
    #[serde(with = "humantime_serde")]
    pub presence_ttl: Duration,
    /// How long a cluster-wide survey (`POST /api/channels`) waits for the
    /// nodes' answers; nodes that do not answer in time are left out.
    /// Default: `1s`.
    #[serde(with = "humantime_serde")]
    pub survey_timeout: Duration,
    /// How long a publish with `receipt` waits for the nodes' answers;
    /// nodes that do not answer in time are left out (and counted as
    /// unanswered). Default: `1s`.
    #[serde(with = "humantime_serde")]
    pub receipt_timeout: Duration,
    /// How long a publish's `idempotency_key` is remembered per channel: a
    /// repeat within it publishes nothing and answers what the first
    /// answered. Default: `5m`.
    #[serde(with = "humantime_serde")]
    pub idempotency_window: Duration,
    /// How long the broker's health check (a PING on each connection,
    /// every second) may wait for an answer: a path that has gone silent
    /// (no reset, no answer) is seen within this and a second, and the
    /// node reports not ready (`/readyz` 503). Default: `2s`.
    #[serde(with = "humantime_serde")]
    pub health_timeout: Duration,
    /// How long a node that cannot reach its broker keeps its clients: past
    /// this, while other nodes may be healthy, it hands them back (closes
    /// them with 1001, paced over `shutdown.drain_period` like a drain) and
    /// refuses new ones, so they reconnect to a node that can serve them and
    /// recover there. 0 keeps them. Default: `10s`.
    #[serde(with = "humantime_serde")]
    pub cutoff_after: Duration,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            redis_url: None,
            redis_cluster: Vec::new(),
            sentinels: Vec::new(),
            sentinel_master: None,
            prefix: "switchyard".to_owned(),
            tls_ca_file: None,
            tls_cert_file: None,
            tls_key_file: None,
            heartbeat_interval: Duration::from_secs(5),
            presence_ttl: Duration::from_secs(60),
            survey_timeout: Duration::from_secs(1),
            receipt_timeout: Duration::from_secs(1),
            idempotency_window: Duration::from_secs(300),
            health_timeout: Duration::from_secs(2),
            cutoff_after: Duration::from_secs(10),
        }
    }
}

/// Whether `url` names a Redis server the way the client takes it.
fn is_redis_url(url: &str) -> bool {
    ["redis://", "rediss://", "redis+unix://", "unix://"]
        .iter()
        .any(|scheme| url.strip_prefix(scheme).is_some_and(|rest| !rest.is_empty()))
}

/// `host:port` (or `[v6]:port`), the form redis-cli and Sentinel's own
/// docs give sentinels in.
fn is_host_port(entry: &str) -> bool {
    entry.rsplit_once(':').is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok())
}

impl BrokerConfig {
    /// Sentinels given as `host:port` become `redis://host:port`.
    pub(super) fn normalize(&mut self) {
        for sentinel in &mut self.sentinels {
            if !sentinel.contains("://") && is_host_port(sentinel) {
                *sentinel = format!("redis://{sentinel}");
            }
        }
    }

    pub(super) fn check(&self) -> Result<(), ConfigError> {
        if let Some(url) = &self.redis_url
            && !is_redis_url(url)
        {
            return Err(problem(
                "broker.redis_url",
                format!("{url:?} is not redis://[user:password@]host:port[/db] or rediss://..."),
            ));
        }
        for url in &self.redis_cluster {
            if !is_redis_url(url) {
                return Err(problem(
                    "broker.redis_cluster",
                    format!("{url:?} is not redis://host:port or rediss://host:port"),
                ));
            }
        }
        for sentinel in &self.sentinels {
            if !is_redis_url(sentinel) {
                return Err(problem(
                    "broker.sentinels",
                    format!("{sentinel:?} is not host:port, redis://host:port or rediss://host:port"),
                ));
            }
        }
        if self.redis_url.is_some() && !self.redis_cluster.is_empty() {
            return Err(problem(
                "broker.redis_cluster",
                "set either broker.redis_url or broker.redis_cluster, not both",
            ));
        }
        if self.sentinels.is_empty() != self.sentinel_master.is_none() {
            return Err(problem(
                "broker.sentinel_master",
                "set both broker.sentinels and broker.sentinel_master, or neither",
            ));
        }
        if !self.sentinels.is_empty() && !self.redis_cluster.is_empty() {
            return Err(problem("broker.sentinels", "set either broker.sentinels or broker.redis_cluster, not both"));
        }
        if self.prefix.is_empty() || self.prefix.contains(['{', '}']) {
            return Err(problem("broker.prefix", "must be non-empty, without { or }"));
        }
        if self.tls_cert_file.is_some() != self.tls_key_file.is_some() {
            return Err(problem(
                "broker.tls_key_file",
                "set both broker.tls_cert_file and broker.tls_key_file, or neither",
            ));
        }
        if self.presence_ttl < Duration::from_secs(1) {
            return Err(problem("broker.presence_ttl", "must be at least 1s"));
        }
        if self.idempotency_window < Duration::from_millis(1) {
            return Err(problem("broker.idempotency_window", "must be at least 1ms"));
        }
        if self.receipt_timeout.is_zero() {
            return Err(problem("broker.receipt_timeout", "must be more than 0s"));
        }
        if self.survey_timeout.is_zero() {
            return Err(problem("broker.survey_timeout", "must be more than 0s"));
        }
        if self.health_timeout.is_zero() {
            return Err(problem("broker.health_timeout", "must be more than 0s"));
        }
        if self.heartbeat_interval.is_zero() {
            return Err(problem("broker.heartbeat_interval", "must be more than 0s"));
        }
        Ok(())
    }
}

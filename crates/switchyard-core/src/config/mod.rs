//! The configuration tree. Every field says its unit and default; the
//! loader (defaults → TOML file → `SWITCHYARD_*` environment → flags) lives in
//! the gateway binary. docs/configuration.md lists the same, for operators.
//!
//! # Layout
//! - [`Config`] (here): the root, and [`Config::validate`], which asks each
//!   section to check itself.
//! - `client`: `[client]` and `[limits]`.
//! - `broker`: `[broker]`.
//! - `access`: `[api]`, `[auth]`, `[admin]`, `[tls]`.
//! - `proxy`: `[proxy.*]`.
//! - `namespace`: `[namespaces.NAME]`.
//! - `operations`: `[rebalance]`, `[shutdown]`, `[testing]`.
//! - `consumer`: `[[consumers]]`.
//! - `pusher`: `[pusher]`, `[[pusher.apps]]` and `[[webhooks]]`.

mod access;
mod broker;
mod client;
mod consumer;
mod namespace;
mod operations;
mod proxy;
mod pusher;

pub use access::{AdminConfig, ApiConfig, AuthConfig, TlsConfig};
pub use broker::BrokerConfig;
pub use client::{ClientConfig, LimitsConfig};
pub use consumer::{ConsumerConfig, ConsumerKind, DEFAULT_REDIS_STREAM};
pub use namespace::{NamespaceConfig, SlowConsumerPolicy, SubscribePermission};
pub use operations::{RebalanceConfig, ShutdownConfig, TestingConfig};
pub use proxy::{DEFAULT_PROXY_HEADERS, ProxyConfig, ProxyEndpointConfig};
pub use pusher::{PusherAppConfig, PusherConfig, WEBHOOK_EVENTS, WebhookConfig};

use crate::channel::DEFAULT_NAMESPACE;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;

/// The whole configuration of a node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Public listener: WebSocket at `/ws`, plus health and metrics unless
    /// `internal_listen` is set. Default: `0.0.0.0:8080`.
    pub listen: SocketAddr,
    /// Optional second listener for `/metrics`, `/healthz` and `/readyz`
    /// only, e.g. `127.0.0.1:9090`. Default: unset (served on `listen`).
    pub internal_listen: Option<SocketAddr>,
    /// This node's name in logs and in the cluster. Default: a random id.
    pub node_name: Option<String>,
    pub broker: BrokerConfig,
    pub api: ApiConfig,
    pub auth: AuthConfig,
    pub client: ClientConfig,
    pub limits: LimitsConfig,
    pub shutdown: ShutdownConfig,
    pub tls: TlsConfig,
    pub testing: TestingConfig,
    pub rebalance: RebalanceConfig,
    pub admin: AdminConfig,
    pub proxy: ProxyConfig,
    /// Namespaces by name; `default` holds channels with no `:`.
    /// Default: only `default`, with its defaults.
    pub namespaces: BTreeMap<String, NamespaceConfig>,
    /// Queues of the application's to publish from. Default: none.
    pub consumers: Vec<ConsumerConfig>,
    /// The Pusher Channels door. Default: no apps.
    pub pusher: PusherConfig,
    /// Webhooks of switchyard's own protocol. Default: none.
    pub webhooks: Vec<WebhookConfig>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
            internal_listen: None,
            node_name: None,
            broker: BrokerConfig::default(),
            api: ApiConfig::default(),
            auth: AuthConfig::default(),
            client: ClientConfig::default(),
            limits: LimitsConfig::default(),
            shutdown: ShutdownConfig::default(),
            tls: TlsConfig::default(),
            testing: TestingConfig::default(),
            rebalance: RebalanceConfig::default(),
            admin: AdminConfig::default(),
            proxy: ProxyConfig::default(),
            namespaces: BTreeMap::from([(DEFAULT_NAMESPACE.to_owned(), NamespaceConfig::default())]),
            consumers: Vec::new(),
            pusher: PusherConfig::default(),
            webhooks: Vec::new(),
        }
    }
}

/// A configuration that cannot run, with the key at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {problem}")]
pub struct ConfigError {
    pub key: String,
    pub problem: String,
}

fn problem(key: impl Into<String>, problem: impl Into<String>) -> ConfigError {
    ConfigError { key: key.into(), problem: problem.into() }
}

/// An identifier that goes into key names, URLs and metric labels as it
/// is: 1 to `max` letters, digits, `_` or `-`.
fn check_name(key: String, name: &str, max: usize) -> Result<(), ConfigError> {
    let ok = !name.is_empty()
        && name.len() <= max
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok { Ok(()) } else { Err(problem(key, format!("1 to {max} letters, digits, '_' or '-'"))) }
}

impl Config {
    /// Checks what serde cannot: ranges and relations between fields, each
    /// section its own. Adds the `default` namespace when it is missing.
    pub fn validate(mut self) -> Result<Config, ConfigError> {
        self.namespaces.entry(DEFAULT_NAMESPACE.to_owned()).or_default();
        self.broker.normalize();
        self.client.check()?;
        self.limits.check()?;
        self.shutdown.check()?;
        self.broker.check()?;
        self.tls.check()?;
        self.rebalance.check()?;
        self.api.check()?;
        self.proxy.check()?;
        self.pusher.check()?;
        pusher::check_webhooks(&self.webhooks)?;
        if !self.pusher.apps.is_empty() {
            for (name, namespace) in self.pusher.namespaces() {
                match self.namespaces.get(name) {
                    Some(existing) if *existing != namespace => {
                        return Err(problem(format!("namespaces.{name}"), "is reserved for the Pusher apps' channels"));
                    }
                    _ => self.namespaces.insert(name.to_owned(), namespace),
                };
            }
        }
        for (name, namespace) in &self.namespaces {
            namespace.check(name, &self.proxy)?;
        }
        for (index, consumer) in self.consumers.iter().enumerate() {
            consumer.check(index)?;
            if self.consumers[..index].iter().any(|c| c.name == consumer.name) {
                return Err(problem(format!("consumers[{index}].name"), "another consumer has this name"));
            }
            // The broker's Redis serves when it is one server; behind
            // Sentinel or as a Cluster the stream's Redis is named.
            if consumer.kind == ConsumerKind::RedisStream
                && consumer.redis_url.is_none()
                && self.broker.redis_url.is_none()
            {
                return Err(problem(
                    format!("consumers[{index}].redis_url"),
                    "needed unless the broker is one Redis (broker.redis_url)",
                ));
            }
        }
        Ok(self)
    }

    /// Whether a browser's cookies can make a client someone: a connect
    /// token read from a cookie, or a backend proxy that is sent the
    /// `Cookie` header. Then a page of another site could connect as the
    /// logged-in user, so cross-origin connections need
    /// `limits.allowed_origins` to allow them.
    pub fn credentials_from_cookies(&self) -> bool {
        self.auth.token_cookie.is_some()
            || self.proxy.endpoints().iter().any(|(_, endpoint)| {
                endpoint.url.is_some() && endpoint.headers.iter().any(|h| h.eq_ignore_ascii_case("cookie"))
            })
    }

    /// The namespace of a channel, if it is configured.
    pub fn namespace(&self, name: &str) -> Option<&NamespaceConfig> {
        self.namespaces.get(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_documented_file_shape_parses() {
        let config: Config = toml::from_str(
            r#"
            listen = "0.0.0.0:8080"
            [broker]
            redis_url = "redis://127.0.0.1:6379"
            [namespaces.default]
            allow_publish = true
            [namespaces.chat]
            history_size = 100
            history_ttl = "10m"
            allow_publish = true
            "#,
        )
        .unwrap();
        let config = config.validate().unwrap();
        assert_eq!(config.namespaces["chat"].history_ttl, Duration::from_secs(600));
        assert_eq!(config.broker.redis_url.as_deref(), Some("redis://127.0.0.1:6379"));
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused() {
        assert!(toml::from_str::<Config>("lisen = \"0.0.0.0:1\"").is_err());
        let config: Config = toml::from_str("[namespaces.chat]\nhistory_size = 10").unwrap();
        assert_eq!(config.validate().unwrap_err().key, "namespaces.chat.history_ttl");
        let config: Config = toml::from_str("[namespaces.\"a:b\"]").unwrap();
        assert_eq!(config.validate().unwrap_err().key, "namespaces.a:b");
    }

    #[test]
    fn consumers_are_checked_and_name_their_key() {
        let parse = |toml: &str| {
            toml::from_str::<Config>(toml)
                .map_err(|e| e.to_string())
                .and_then(|c| c.validate().map_err(|e| e.to_string()))
        };
        let stream = "[broker]\nredis_url = \"redis://127.0.0.1:6379\"\n[[consumers]]\nname = \"events\"\nkind = \"redis_stream\"\n";
        let config = parse(stream).unwrap();
        assert_eq!(config.consumers[0].stream(), DEFAULT_REDIS_STREAM);
        assert_eq!(config.consumers[0].claim_after, std::time::Duration::from_secs(10));
        let without_redis = "[[consumers]]\nname = \"events\"\nkind = \"redis_stream\"\n";
        assert!(parse(without_redis).unwrap_err().contains("consumers[0].redis_url"));
        let twice = format!("{stream}[[consumers]]\nname = \"events\"\nkind = \"redis_stream\"\n");
        assert!(parse(&twice).unwrap_err().contains("consumers[1].name"));
        let bad_name = stream.replace("\"events\"", "\"bad name\"");
        assert!(parse(&bad_name).unwrap_err().contains("consumers[0].name"));
        let nats = stream.replace("redis_stream", "nats_jetstream");
        assert!(parse(&nats).unwrap_err().contains("consumers[0].nats_url"));
        let nats = format!("{nats}nats_url = \"nats://127.0.0.1:4222\"\n");
        assert!(parse(&nats).unwrap_err().contains("consumers[0].stream"));
        assert!(parse(&format!("{nats}stream = \"EVENTS\"\n")).is_ok());
        let outbox = stream.replace("redis_stream", "postgres_outbox");
        assert!(parse(&outbox).unwrap_err().contains("consumers[0].postgres_url"));
        let outbox = format!("{outbox}postgres_url = \"postgres://127.0.0.1/app\"\npartitions = 4\n");
        assert_eq!(parse(&outbox).unwrap().consumers[0].partitions, 4);
        assert!(parse(&outbox.replace("partitions = 4", "partitions = 0")).is_err());
        assert!(parse(&format!("{outbox}table = \"x; drop\"\n")).unwrap_err().contains("consumers[0].table"));
        assert!(parse(&stream.replace("kind", "knd")).is_err());
    }

    #[test]
    fn default_namespace_is_always_there() {
        let config: Config = toml::from_str("[namespaces.chat]").unwrap();
        assert!(config.validate().unwrap().namespace("default").is_some());
    }

    #[test]
    fn sentinels_may_be_host_and_port_and_bad_addresses_name_their_key() {
        let mut config = Config::default();
        config.broker.sentinels = vec!["127.0.0.1:26379".into(), "redis://[::1]:26380".into()];
        config.broker.sentinel_master = Some("main".into());
        let config = config.validate().unwrap();
        assert_eq!(config.broker.sentinels, ["redis://127.0.0.1:26379", "redis://[::1]:26380"]);
        for (sentinels, url, key) in [
            (vec!["sentinel-without-port"], None, "broker.sentinels"),
            (vec![], Some("127.0.0.1:6379"), "broker.redis_url"),
            (vec![], Some("http://127.0.0.1:6379"), "broker.redis_url"),
        ] {
            let mut config = Config::default();
            config.broker.sentinel_master = (!sentinels.is_empty()).then(|| "main".into());
            config.broker.sentinels = sentinels.into_iter().map(String::from).collect();
            config.broker.redis_url = url.map(String::from);
            let error = config.validate().unwrap_err();
            assert_eq!(error.key, key, "{error}");
        }
    }
}

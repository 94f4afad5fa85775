//! The node's configuration as the broker takes it.

use switchyard_broker::{BrokerError, PublishOptions, RedisSettings, RedisTarget, RedisTls, Sentinels};
use switchyard_core::config::{Config, NamespaceConfig};

/// The Redis broker's settings, if the config names a Redis.
pub fn redis_settings(config: &Config, node: &str) -> Result<Option<RedisSettings>, BrokerError> {
    let broker = &config.broker;
    let namespaces = config.namespaces.iter().map(|(name, ns)| (name.clone(), publish_options(ns))).collect();
    let target = match (&broker.redis_url, broker.redis_cluster.is_empty()) {
        _ if !broker.sentinels.is_empty() => RedisTarget::Sentinel(Sentinels {
            sentinels: broker.sentinels.clone(),
            master: broker.sentinel_master.clone().unwrap_or_default(),
            primary: broker.redis_url.clone(),
        }),
        (Some(url), _) => RedisTarget::Standalone(url.clone()),
        (None, false) => RedisTarget::Cluster(broker.redis_cluster.clone()),
        (None, true) => return Ok(None),
    };
    let read = |path: &std::path::PathBuf| {
        std::fs::read(path).map_err(|e| BrokerError::Internal(format!("cannot read {}: {e}", path.display())))
    };
    let tls = RedisTls {
        ca: broker.tls_ca_file.as_ref().map(read).transpose()?,
        client: match (&broker.tls_cert_file, &broker.tls_key_file) {
            (Some(cert), Some(key)) => Some((read(cert)?, read(key)?)),
            _ => None,
        },
    };
    Ok(Some(RedisSettings {
        target,
        prefix: broker.prefix.clone(),
        tls,
        namespaces,
        node: node.to_owned(),
        idempotency_window: broker.idempotency_window,
        health_timeout: broker.health_timeout,
    }))
}

/// How the broker keeps the channels of a namespace.
pub fn publish_options(namespace: &NamespaceConfig) -> PublishOptions {
    PublishOptions {
        history_size: namespace.history_size,
        history_ttl: namespace.history_ttl,
        history_meta_ttl: namespace.history_meta_ttl,
    }
}

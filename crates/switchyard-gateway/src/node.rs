//! What one node shares between its connections.

use crate::auth::Authenticator;
use crate::connections::Connections;
use crate::tls::Tls;
use governor::clock::QuantaClock;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use switchyard_broker::{
    Broker, BrokerError, MemoryBroker, PublicationSink, PublishOptions, RedisBroker, RedisSettings, RedisTarget,
    RedisTls,
};
use switchyard_core::config::{Config, NamespaceConfig};
use switchyard_core::hub::{ConnId, Hub};
use switchyard_core::metric;
use switchyard_proto::v1::Envelope;

/// One gateway node: its config, subscriptions, broker and connections.
pub struct Node {
    pub config: Arc<Config>,
    pub hub: Arc<Hub>,
    pub broker: Arc<dyn Broker>,
    pub connections: Connections,
    pub auth: Authenticator,
    /// TLS for the public listener, when `tls.cert` and `tls.key` are set.
    pub tls: Option<Arc<Tls>>,
    /// This node's name: in client ids, Envelopes and logs.
    pub name: String,
    /// The clock of every connection's command rate limiter. One for the
    /// node: creating a clock probes the CPU (`cpuid`), which in a virtual
    /// machine cost more than the rest of accepting a connection.
    pub rate_clock: QuantaClock,
    next_conn: AtomicU64,
    draining: AtomicBool,
}

/// Hands the broker's publications to the hub.
struct HubSink(Arc<Hub>);

impl PublicationSink for HubSink {
    fn deliver(&self, envelope: Envelope) {
        metric::broker_received().increment(1);
        self.0.broadcast(&envelope);
    }
}

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Broker(#[from] BrokerError),
    #[error("{0}")]
    Auth(String),
    #[error("{0}")]
    Tls(String),
}

/// The Redis broker's settings, if the config names a Redis.
pub fn redis_settings(config: &Config) -> Result<Option<RedisSettings>, BrokerError> {
    let broker = &config.broker;
    let namespaces = config.namespaces.iter().map(|(name, ns)| (name.clone(), publish_options(ns))).collect();
    let target = match (&broker.redis_url, broker.redis_cluster.is_empty()) {
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
    Ok(Some(RedisSettings { target, prefix: broker.prefix.clone(), tls, namespaces }))
}

/// How the broker keeps the channels of a namespace.
pub fn publish_options(namespace: &NamespaceConfig) -> PublishOptions {
    PublishOptions {
        history_size: namespace.history_size,
        history_ttl: namespace.history_ttl,
        history_meta_ttl: namespace.history_meta_ttl,
    }
}

impl Node {
    /// A node on the broker its config names: Redis (one, or a Cluster), or
    /// the in-memory broker when there is none.
    pub async fn connect(config: Config) -> Result<Arc<Node>, StartError> {
        let auth = Authenticator::new(&config.auth).map_err(StartError::Auth)?;
        let tls = match (&config.tls.cert, &config.tls.key) {
            (Some(cert), Some(key)) => Some(Arc::new(Tls::new(cert, key).map_err(StartError::Tls)?)),
            _ => None,
        };
        let hub = Arc::new(Hub::new());
        let sink = Arc::new(HubSink(hub.clone()));
        let broker: Arc<dyn Broker> = match redis_settings(&config)? {
            Some(settings) => Arc::new(RedisBroker::connect(settings, sink).await?),
            None => Arc::new(MemoryBroker::new(sink)),
        };
        Ok(Node::new(config, auth, tls, hub, broker))
    }

    /// A node on a broker that delivers into `hub`.
    pub fn new(
        config: Config,
        auth: Authenticator,
        tls: Option<Arc<Tls>>,
        hub: Arc<Hub>,
        broker: Arc<dyn Broker>,
    ) -> Arc<Node> {
        let name = config.node_name.clone().unwrap_or_else(|| format!("{:016x}", rand::random::<u64>()));
        let (max_connections, max_per_ip) = (config.limits.max_connections, config.limits.max_connections_per_ip);
        Arc::new(Node {
            auth,
            tls,
            config: Arc::new(config),
            hub,
            broker,
            connections: Connections::new(max_connections, max_per_ip),
            name,
            rate_clock: QuantaClock::default(),
            next_conn: AtomicU64::new(1),
            draining: AtomicBool::new(false),
        })
    }

    pub fn next_conn_id(&self) -> ConnId {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    /// Whether the node accepts connections: not draining, broker reachable.
    pub fn is_ready(&self) -> bool {
        !self.is_draining() && self.broker.is_ready()
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// From now on `/readyz` says 503 and upgrades are refused.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Release);
        metric::ready().set(0.0);
    }
}

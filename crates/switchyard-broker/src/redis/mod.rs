//! The Redis broker: many stateless nodes, one Redis or a Redis Cluster.
//!
//! - Publishes go through the `switchyard` function library
//!   ([`library`]), the same path backends use with `FCALL`.
//! - Each node holds one pub/sub subscription per channel that has a local
//!   subscriber; subscribes and unsubscribes from many sessions are batched
//!   into few commands ([`subscriptions`]).
//! - Messages are Envelopes, decoded once per node ([`pushes`]); malformed
//!   ones are dropped and counted.
//! - A health loop pings both connections every second; that drives
//!   readiness, reconnects, and reloading the library after a Redis restart.

mod client;
mod connection;
mod health;
mod history;
pub mod keys;
mod leases;
pub mod library;
mod order;
mod presence;
mod pushes;
mod registry;
mod sentinel;
mod sessions;
mod stream_reader;
mod subscriptions;

pub use client::RedisTls;
pub use connection::RedisTarget;
pub use leases::RedisLeases;
pub use presence::RedisPresence;
pub use registry::RedisRegistry;
pub use sentinel::Sentinels;
pub use sessions::RedisSessions;
pub use stream_reader::{StreamEntry, StreamReader};

use crate::broker::{Broker, BrokerError, History, PublicationSink, PublishOptions, StreamPosition};
use crate::node_info::NodeInfo;
use async_trait::async_trait;
use connection::{Commands, PubSub};
use keys::Keys;
use prost::Message as _;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use subscriptions::Request;
use switchyard_core::metric;
use switchyard_proto::v1::{Control, Envelope};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// Where Redis is and how switchyard names things in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisSettings {
    pub target: RedisTarget,
    /// Prefix of every key and pub/sub name. Default: `switchyard`.
    pub prefix: String,
    /// Certificates for `rediss://`, when the system's are not the ones.
    pub tls: RedisTls,
    /// Each namespace's history settings, baked into the function library
    /// so that backends' `FCALL`s keep history too.
    pub namespaces: Vec<(String, PublishOptions)>,
    /// This node's name: it listens to its own control channel.
    pub node: String,
    /// How long an idempotency key is remembered, baked into the library
    /// like the history settings.
    pub idempotency_window: std::time::Duration,
    /// How long a health check's PING may wait (see `broker.health_timeout`).
    pub health_timeout: std::time::Duration,
}

/// State shared by the broker and its tasks.
struct Shared {
    keys: Keys,
    /// The switchyard channels this node subscribes to.
    channels: Mutex<HashSet<String>>,
    /// Both connections answered the last health check.
    ready: AtomicBool,
    /// The pub/sub connection was lost and has not been seen healthy since.
    lost: AtomicBool,
    /// What this node delivered of each history channel, to see gaps and
    /// regressions (see `order`). Entries go when the channel is unsubscribed.
    order: Mutex<order::Order>,
}

pub struct RedisBroker {
    settings: RedisSettings,
    shared: Arc<Shared>,
    commands: Commands,
    requests: mpsc::Sender<Request>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for RedisBroker {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl RedisBroker {
    /// Connects, loads the function library, and starts delivering
    /// publications of subscribed channels to `sink`.
    pub async fn connect(settings: RedisSettings, sink: Arc<dyn PublicationSink>) -> Result<RedisBroker, BrokerError> {
        let sharded = settings.target.is_cluster();
        let mut commands = Commands::connect(&settings.target, &settings.tls).await.map_err(unavailable)?;
        library::load(&mut commands, &settings.prefix, sharded, &settings.namespaces, settings.idempotency_window)
            .await
            .map_err(unavailable)?;
        let (push_tx, push_rx) = pushes::lanes();
        let push_tx: Arc<dyn redis::aio::AsyncPushSender> = Arc::new(push_tx);
        let mut pubsub = PubSub::connect(&settings.target, &settings.tls, push_tx).await.map_err(unavailable)?;
        let keys = Keys::new(&settings.prefix);
        pubsub.listen(&keys.control()).await.map_err(unavailable)?;
        pubsub.listen(&keys.node_control(&settings.node)).await.map_err(unavailable)?;
        let shared = Arc::new(Shared {
            keys,
            channels: Mutex::new(HashSet::new()),
            ready: AtomicBool::new(true),
            lost: AtomicBool::new(false),
            order: Mutex::new(order::Order::default()),
        });
        metric::broker_up().set(1.0);
        let (requests, requests_rx) = mpsc::channel(4096);
        let (repairs, repairs_rx) = mpsc::channel(1);
        let tasks = vec![
            tokio::spawn(subscriptions::run(pubsub.clone(), shared.clone(), requests_rx)),
            tokio::spawn(pushes::run(push_rx, repairs_rx, commands.clone(), shared.clone(), sink, requests.clone())),
            tokio::spawn(health::run(
                commands.clone(),
                pubsub,
                shared.clone(),
                settings.clone(),
                repairs,
                requests.clone(),
            )),
        ];
        Ok(RedisBroker { settings, shared, commands, requests, tasks })
    }

    async fn request(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<(), BrokerError>>) -> Request,
    ) -> Result<(), BrokerError> {
        let (tx, rx) = oneshot::channel();
        self.requests.send(make(tx)).await.map_err(|_| BrokerError::Internal("broker stopped".into()))?;
        rx.await.map_err(|_| BrokerError::Internal("broker stopped".into()))?
    }

    /// The session store on this broker's Redis connection.
    pub fn sessions(&self) -> RedisSessions {
        RedisSessions { commands: self.commands.clone(), keys: self.shared.keys.clone() }
    }

    /// The node registry on this broker's Redis connection.
    pub fn registry(&self) -> RedisRegistry {
        RedisRegistry { commands: self.commands.clone(), keys: self.shared.keys.clone() }
    }

    /// Leases on this broker's Redis connection.
    pub fn leases(&self) -> RedisLeases {
        RedisLeases { commands: self.commands.clone(), keys: self.shared.keys.clone() }
    }

    /// Presence on this broker's Redis connection.
    pub fn presence(&self) -> RedisPresence {
        RedisPresence { commands: self.commands.clone(), index: Keys::new(&self.settings.prefix).presence_index() }
    }

    async fn load_library(&self) -> Result<(), BrokerError> {
        let mut conn = self.commands.clone();
        let sharded = self.settings.target.is_cluster();
        library::load(
            &mut conn,
            &self.settings.prefix,
            sharded,
            &self.settings.namespaces,
            self.settings.idempotency_window,
        )
        .await
        .map_err(unavailable)
    }

    async fn fcall<T: redis::FromRedisValue>(
        &self,
        function: &str,
        channel: &str,
        envelope: &[u8],
        key: Option<&str>,
    ) -> redis::RedisResult<T> {
        let mut conn = self.commands.clone();
        let mut cmd = redis::cmd("FCALL");
        cmd.arg(function).arg(1).arg(channel).arg(envelope);
        if let Some(key) = key {
            cmd.arg(key);
        }
        cmd.query_async(&mut conn).await
    }

    /// Publishes to a channel without history: for such a channel the
    /// library's function would do nothing but `PUBLISH` (or `SPUBLISH`)
    /// the Envelope, so the node sends that command itself and Redis
    /// spares a function call per publication. The same connection carries
    /// the channel's other publishes, so their order holds.
    async fn publish_plain(&self, envelope: &Envelope) -> Result<StreamPosition, BrokerError> {
        let command = if self.settings.target.is_cluster() { "SPUBLISH" } else { "PUBLISH" };
        let mut conn = self.commands.clone();
        let mut cmd = redis::cmd(command);
        cmd.arg(self.shared.keys.pubsub(&envelope.channel)).arg(envelope.encode_to_vec());
        cmd.query_async::<i64>(&mut conn).await.map_err(|e| {
            metric::broker_errors("publish").increment(1);
            unavailable(e)
        })?;
        Ok(StreamPosition { epoch: String::new(), offset: 0 })
    }

    /// Publishes through `function` (reloading the library if Redis lost it).
    async fn publish_with<T: redis::FromRedisValue>(
        &self,
        function: &str,
        envelope: &Envelope,
        key: Option<&str>,
    ) -> Result<T, BrokerError> {
        let bytes = envelope.encode_to_vec();
        let result = match self.fcall(function, &envelope.channel, &bytes, key).await {
            Err(e) if library::is_missing(&e) => {
                // Redis lost its functions (a restart without persistence).
                self.load_library().await?;
                self.fcall(function, &envelope.channel, &bytes, key).await
            }
            other => other,
        };
        result.map_err(|e| {
            metric::broker_errors("publish").increment(1);
            unavailable(e)
        })
    }
}

/// A Redis error as the gateway reports it: unreachable (try again, 108)
/// or anything else (100).
pub(crate) fn unavailable(error: redis::RedisError) -> BrokerError {
    // Failovers answer these for a while: a demoted primary, no replica in
    // reach (`min-replicas-to-write`), a shard without a master.
    let passing = matches!(error.code(), Some("READONLY" | "NOREPLICAS" | "MASTERDOWN" | "TRYAGAIN" | "CLUSTERDOWN"));
    if passing
        || error.is_io_error()
        || error.is_timeout()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
    {
        BrokerError::Unavailable(error.to_string())
    } else {
        BrokerError::Internal(error.to_string())
    }
}

#[async_trait]
impl Broker for RedisBroker {
    async fn subscribe(&self, channels: &[String]) -> Result<(), BrokerError> {
        let channels = channels.to_vec();
        self.request(|reply| Request::Subscribe(channels, reply)).await
    }

    async fn unsubscribe(&self, channels: &[String]) -> Result<(), BrokerError> {
        let channels = channels.to_vec();
        self.request(|reply| Request::Unsubscribe(channels, reply)).await
    }

    async fn publish(&self, envelope: Envelope, options: PublishOptions) -> Result<StreamPosition, BrokerError> {
        if options.history_size == 0 {
            return self.publish_plain(&envelope).await;
        }
        let (epoch, offset): (String, u64) = self.publish_with("switchyard_publish_envelope", &envelope, None).await?;
        Ok(StreamPosition { epoch, offset })
    }

    async fn publish_counted(
        &self,
        envelope: Envelope,
        _options: PublishOptions,
        key: Option<&str>,
    ) -> Result<(StreamPosition, Option<u64>), BrokerError> {
        let (epoch, offset, receivers): (String, u64, u64) =
            self.publish_with("switchyard_publish_counted", &envelope, key).await?;
        // SPUBLISH on a Cluster runs on the channel's shard, where every
        // node that listens to the channel is subscribed: the count holds
        // there too.
        Ok((StreamPosition { epoch, offset }, Some(receivers)))
    }

    async fn history(
        &self,
        channel: &str,
        since: Option<&StreamPosition>,
        limit: usize,
        _options: PublishOptions,
    ) -> Result<History, BrokerError> {
        let mut conn = self.commands.clone();
        let result = match history::read(&mut conn, channel, since, limit).await {
            Err(e) if library::is_missing(&e) => {
                self.load_library().await?;
                history::read(&mut conn, channel, since, limit).await
            }
            other => other,
        };
        let history = result.map_err(|e| {
            metric::broker_errors("history").increment(1);
            unavailable(e)
        })?;
        // A channel this node listens to starts its track where the stream
        // is (a subscribe reads it): its first live publication is checked
        // against it.
        if self.shared.channels.lock().unwrap_or_else(|e| e.into_inner()).contains(channel) {
            let position = &history.position;
            self.shared.order.lock().unwrap_or_else(|e| e.into_inner()).expect(
                channel,
                &position.epoch,
                position.offset,
            );
        }
        Ok(history)
    }

    async fn send_control(&self, to: Option<&str>, message: Control) -> Result<Option<u64>, BrokerError> {
        let mut conn = self.commands.clone();
        let name = match to {
            Some(node) => self.shared.keys.node_control(node),
            None => self.shared.keys.control(),
        };
        let receivers: u64 =
            redis::cmd("PUBLISH").arg(name).arg(message.encode_to_vec()).query_async(&mut conn).await.map_err(|e| {
                metric::broker_errors("control").increment(1);
                unavailable(e)
            })?;
        // On a Cluster, PUBLISH counts the receivers of the shard it ran on only.
        Ok((!self.settings.target.is_cluster()).then_some(receivers))
    }

    fn is_ready(&self) -> bool {
        self.shared.ready.load(Ordering::Acquire)
    }

    fn kind(&self) -> &'static str {
        if self.settings.target.is_cluster() { "redis-cluster" } else { "redis" }
    }
}

/// Publishes `payload` on `channel` the way a backend does:
/// `FCALL switchyard_publish 1 <channel> <payload>`. For operators' tools;
/// the library must be loaded (by a gateway, which knows the namespaces).
pub async fn publish_raw(settings: &RedisSettings, channel: &str, payload: &[u8]) -> redis::RedisResult<(String, u64)> {
    let mut conn = Commands::connect(&settings.target, &settings.tls).await?;
    redis::cmd("FCALL").arg("switchyard_publish").arg(1).arg(channel).arg(payload).query_async(&mut conn).await
}

/// The live nodes of the registry, for operators' tools.
pub async fn list_nodes(settings: &RedisSettings) -> redis::RedisResult<Vec<NodeInfo>> {
    let mut conn = Commands::connect(&settings.target, &settings.tls).await?;
    registry::nodes(&mut conn, &Keys::new(&settings.prefix)).await
}

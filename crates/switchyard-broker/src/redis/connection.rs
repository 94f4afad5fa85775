//! Connections to one Redis or to a Redis Cluster, behind one type each for
//! commands and for pub/sub. Both speak RESP3; both reconnect by themselves.

use super::client::{RedisTls, client, resp3};
use super::sentinel::{Followed, Sentinels};
use redis::aio::{AsyncPushSender, ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::Slot;
use redis::{Cmd, Pipeline, ProtocolVersion, RedisFuture, Value};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// Most channels in one SUBSCRIBE.
const SUBSCRIBE_CHUNK: usize = 512;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);

/// Where Redis is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisTarget {
    /// One Redis (or a primary behind a proxy): `redis://` or `rediss://`.
    Standalone(String),
    /// Seed nodes of a Redis Cluster; pub/sub is sharded (SSUBSCRIBE).
    Cluster(Vec<String>),
    /// A primary with replicas, managed by Redis Sentinel: the node
    /// follows the sentinels to whichever server is the primary.
    Sentinel(Sentinels),
}

impl RedisTarget {
    pub fn is_cluster(&self) -> bool {
        matches!(self, RedisTarget::Cluster(_))
    }
}

fn manager_config() -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(RESPONSE_TIMEOUT))
        .set_min_delay(Duration::from_millis(50))
        .set_max_delay(Duration::from_secs(2))
        .set_number_of_retries(3)
}

fn cluster_builder(urls: &[String], tls: &RedisTls) -> redis::RedisResult<ClusterClientBuilder> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let nodes = urls.iter().map(|u| resp3(u)).collect::<redis::RedisResult<Vec<_>>>()?;
    let builder = ClusterClientBuilder::new(nodes)
        .use_protocol(ProtocolVersion::RESP3)
        .connection_timeout(CONNECT_TIMEOUT)
        .response_timeout(RESPONSE_TIMEOUT)
        .retries(3);
    Ok(match tls.certificates() {
        Some(certificates) => builder.certs(certificates),
        None => builder,
    })
}

/// A connection for commands (FCALL, registry).
#[derive(Clone)]
pub enum Commands {
    Standalone(ConnectionManager),
    Cluster(ClusterConnection),
    Sentinel(Followed),
}

impl Commands {
    pub async fn connect(target: &RedisTarget, tls: &RedisTls) -> redis::RedisResult<Commands> {
        Ok(match target {
            RedisTarget::Standalone(url) => Commands::Standalone(commands_manager(url, tls).await?),
            RedisTarget::Cluster(urls) => {
                Commands::Cluster(cluster_builder(urls, tls)?.build()?.get_async_connection().await?)
            }
            RedisTarget::Sentinel(sentinels) => {
                let url = sentinels.primary_url(tls).await?;
                let manager = commands_manager(&url, tls).await?;
                Commands::Sentinel(Followed::new(url, manager))
            }
        })
    }
}

/// A command connection to one server.
pub async fn commands_manager(url: &str, tls: &RedisTls) -> redis::RedisResult<ConnectionManager> {
    client(url, tls)?.get_connection_manager_with_config(manager_config()).await
}

/// A pub/sub connection to one server, its pushes to `pushes`.
pub async fn pubsub_manager(
    url: &str,
    tls: &RedisTls,
    pushes: Arc<dyn AsyncPushSender>,
) -> redis::RedisResult<ConnectionManager> {
    let config = manager_config().set_push_sender(pushes).set_automatic_resubscription();
    client(url, tls)?.get_connection_manager_with_config(config).await
}

impl ConnectionLike for Commands {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Commands::Standalone(c) => c.req_packed_command(cmd),
            Commands::Cluster(c) => c.req_packed_command(cmd),
            Commands::Sentinel(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Commands::Standalone(c) => c.req_packed_commands(pipeline, offset, count),
            Commands::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
            Commands::Sentinel(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Commands::Standalone(c) => c.get_db(),
            Commands::Cluster(c) => c.get_db(),
            Commands::Sentinel(c) => c.get_db(),
        }
    }
}

/// The pub/sub connection: messages arrive as RESP3 pushes on the sender
/// given to [`PubSub::connect`]; subscriptions are restored by the driver
/// after a reconnect (and, on a Cluster, after slots move).
#[derive(Clone)]
pub enum PubSub {
    Standalone(ConnectionManager),
    Cluster(ClusterConnection),
    /// The primary's, swapped on a failover; the pushes' sender, for the
    /// next primary's connection.
    Sentinel(Followed, Arc<dyn AsyncPushSender>),
}

impl PubSub {
    pub async fn connect(
        target: &RedisTarget,
        tls: &RedisTls,
        pushes: Arc<dyn AsyncPushSender>,
    ) -> redis::RedisResult<PubSub> {
        Ok(match target {
            RedisTarget::Standalone(url) => PubSub::Standalone(pubsub_manager(url, tls, pushes).await?),
            RedisTarget::Cluster(urls) => {
                PubSub::Cluster(cluster_builder(urls, tls)?.push_sender(pushes).build()?.get_async_connection().await?)
            }
            RedisTarget::Sentinel(sentinels) => {
                let url = sentinels.primary_url(tls).await?;
                let manager = pubsub_manager(&url, tls, pushes.clone()).await?;
                PubSub::Sentinel(Followed::new(url, manager), pushes)
            }
        })
    }

    /// Subscribes to (or, with `subscribe` false, unsubscribes from)
    /// pub/sub names: in chunks with one round trip each on one Redis; per
    /// slot, all slots at once, on a Cluster.
    pub async fn change(&mut self, names: &[String], subscribe: bool) -> redis::RedisResult<()> {
        match self {
            PubSub::Standalone(c) => chunked(c, names, subscribe).await,
            PubSub::Cluster(c) => per_slot(c, names, subscribe).await,
            PubSub::Sentinel(c, _) => chunked(&mut c.manager(), names, subscribe).await,
        }
    }

    /// Listens to one plain (not sharded) pub/sub channel: on a Cluster,
    /// its messages reach every node of the cluster, whichever published.
    /// Restored by the driver after a reconnect like the others.
    pub async fn listen(&mut self, name: &str) -> redis::RedisResult<()> {
        match self {
            PubSub::Standalone(c) => c.subscribe(name).await,
            PubSub::Cluster(c) => c.subscribe(name).await,
            PubSub::Sentinel(c, _) => c.manager().subscribe(name).await,
        }
    }

    /// A round trip, which also makes a dropped connection reconnect.
    pub async fn ping(&mut self) -> redis::RedisResult<()> {
        let cmd = redis::cmd("PING");
        match self {
            PubSub::Standalone(c) => cmd.query_async::<()>(c).await,
            PubSub::Cluster(c) => cmd.query_async::<()>(c).await,
            PubSub::Sentinel(c, _) => cmd.query_async::<()>(&mut c.manager()).await,
        }
    }
}

async fn chunked(c: &mut ConnectionManager, names: &[String], subscribe: bool) -> redis::RedisResult<()> {
    for chunk in names.chunks(SUBSCRIBE_CHUNK) {
        if subscribe { c.subscribe(chunk).await? } else { c.unsubscribe(chunk).await? }
    }
    Ok(())
}

/// SSUBSCRIBE/SUNSUBSCRIBE take channels of one slot: one command per slot,
/// all in flight together on the multiplexed cluster connection.
async fn per_slot(conn: &ClusterConnection, names: &[String], subscribe: bool) -> redis::RedisResult<()> {
    let mut by_slot: HashMap<Slot, Vec<String>> = HashMap::new();
    for name in names {
        by_slot.entry(Slot::for_key(name)).or_default().push(name.clone());
    }
    let mut tasks = tokio::task::JoinSet::new();
    for (_, group) in by_slot {
        let mut conn = conn.clone();
        tasks.spawn(
            async move { if subscribe { conn.ssubscribe(&group).await } else { conn.sunsubscribe(&group).await } },
        );
    }
    let mut result = Ok(());
    while let Some(done) = tasks.join_next().await {
        if let Ok(Err(e)) = done
            && result.is_ok()
        {
            result = Err(e);
        }
    }
    result
}

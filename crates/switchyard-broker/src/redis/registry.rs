//! The cluster registry: one hash, a field per node holding its JSON
//! `NodeInfo`. Hash fields cannot expire in Redis 7.0, so an entry carries
//! its own expiry: readers skip expired ones, and every heartbeat removes
//! those that have been expired for a while.

use super::connection::Commands;
use super::keys::Keys;
use super::unavailable;
use crate::broker::BrokerError;
use crate::node_info::{NodeInfo, unix_seconds};
use crate::registry::NodeRegistry;
use async_trait::async_trait;
use redis::aio::ConnectionLike;
use std::collections::HashMap;
use switchyard_core::metric;

pub struct RedisRegistry {
    pub(super) commands: Commands,
    pub(super) keys: Keys,
}

#[async_trait]
impl NodeRegistry for RedisRegistry {
    async fn register(&self, info: &NodeInfo) -> Result<(), BrokerError> {
        let mut conn = self.commands.clone();
        register(&mut conn, &self.keys, info).await.map_err(|e| {
            metric::broker_errors("register").increment(1);
            unavailable(e)
        })
    }

    async fn nodes(&self) -> Result<Vec<NodeInfo>, BrokerError> {
        let mut conn = self.commands.clone();
        nodes(&mut conn, &self.keys).await.map_err(unavailable)
    }
}

/// Expired entries are removed this long after they expire.
const FORGET_AFTER_SECONDS: u64 = 60;

pub async fn register<C: ConnectionLike + Send>(conn: &mut C, keys: &Keys, info: &NodeInfo) -> redis::RedisResult<()> {
    let json = serde_json::to_string(info).expect("NodeInfo serializes");
    let _: () = redis::cmd("HSET").arg(keys.nodes()).arg(&info.name).arg(json).query_async(conn).await?;
    let now = unix_seconds();
    let stale: Vec<String> = all(conn, keys)
        .await?
        .into_iter()
        .filter(|n| n.expires_at + FORGET_AFTER_SECONDS < now)
        .map(|n| n.name)
        .collect();
    if !stale.is_empty() {
        let _: () = redis::cmd("HDEL").arg(keys.nodes()).arg(stale).query_async(conn).await?;
    }
    Ok(())
}

pub async fn nodes<C: ConnectionLike + Send>(conn: &mut C, keys: &Keys) -> redis::RedisResult<Vec<NodeInfo>> {
    let now = unix_seconds();
    let mut live: Vec<NodeInfo> = all(conn, keys).await?.into_iter().filter(|n| n.is_live(now)).collect();
    live.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(live)
}

async fn all<C: ConnectionLike + Send>(conn: &mut C, keys: &Keys) -> redis::RedisResult<Vec<NodeInfo>> {
    // Read as bytes: one entry that is not UTF-8 must not fail the whole
    // cluster's listing.
    let entries: HashMap<Vec<u8>, Vec<u8>> = redis::cmd("HGETALL").arg(keys.nodes()).query_async(conn).await?;
    let mut nodes = Vec::with_capacity(entries.len());
    for (field, value) in entries {
        // An entry that does not parse (another version, a hand edit,
        // garbage) is skipped, counted and logged.
        match serde_json::from_slice::<NodeInfo>(&value) {
            Ok(node) => nodes.push(node),
            Err(e) => {
                metric::broker_malformed().increment(1);
                tracing::warn!(field = %String::from_utf8_lossy(&field), error = %e, "a registry entry that is not a node's is skipped");
            }
        }
    }
    Ok(nodes)
}

//! What a node says about itself in the cluster registry.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One gateway node, as registered (`GET /api/nodes`, `switchyard nodes`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    pub name: String,
    /// The switchyard version it runs.
    pub version: String,
    /// Its public listener, as it sees it.
    pub address: String,
    pub connections: u64,
    pub subscriptions: u64,
    pub channels: u64,
    /// Unix seconds when it started.
    pub started_at: u64,
    /// Unix seconds of its last heartbeat.
    pub updated_at: u64,
    /// Unix seconds after which, without a new heartbeat, it counts as gone.
    pub expires_at: u64,
    /// Whether it accepts connections (not draining, broker reachable).
    /// Entries of earlier versions, without it, read as ready.
    #[serde(default = "ready_by_default")]
    pub ready: bool,
    /// Messages received from clients and written to them since it started.
    #[serde(default)]
    pub messages_in: u64,
    #[serde(default)]
    pub messages_out: u64,
    /// Whether its broker (Redis) answers.
    #[serde(default = "ready_by_default")]
    pub broker_up: bool,
    /// The consumers it works on, by name: partitions held, and their lag.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub consumers: BTreeMap<String, ConsumerShare>,
}

/// A node's part of one consumer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsumerShare {
    /// Partitions it holds.
    pub partitions: u32,
    /// Entries of those partitions not yet published.
    pub lag: u64,
}

fn ready_by_default() -> bool {
    true
}

impl NodeInfo {
    pub fn uptime_seconds(&self) -> u64 {
        self.updated_at.saturating_sub(self.started_at)
    }

    pub fn is_live(&self, now: u64) -> bool {
        self.expires_at > now
    }
}

pub use switchyard_core::clock::unix_seconds;

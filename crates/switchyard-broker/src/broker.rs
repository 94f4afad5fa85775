//! The Broker: the one door between a node and the rest of the cluster.

use crate::node_info::NodeInfo;
use async_trait::async_trait;
use std::time::Duration;
use switchyard_proto::v1::Envelope;

/// Where a publication landed in its channel's stream. Both fields are empty
/// (`""`, 0) for channels that keep no history.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamPosition {
    pub epoch: String,
    pub offset: u64,
}

/// How a channel keeps its publications.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PublishOptions {
    /// Publications kept; 0 = no history.
    pub history_size: usize,
    /// How long history lives after the last publication.
    pub history_ttl: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BrokerError {
    /// The broker cannot be reached now; the caller may retry later.
    #[error("broker unavailable: {0}")]
    Unavailable(String),
    #[error("broker error: {0}")]
    Internal(String),
}

/// Receives every publication on the channels a node listens to.
pub trait PublicationSink: Send + Sync + 'static {
    /// Called once per publication, in the order the broker received them
    /// for that channel. Must not block: it fans out into bounded queues.
    fn deliver(&self, envelope: Envelope);
}

/// A node's link to the other nodes.
///
/// Delivery guarantee: at most once. A publication reaches every node that
/// listens to its channel when it is published, in publish order per channel
/// for publications that took the same path (one node, or one backend
/// connection). Publications on channels whose namespace keeps history also
/// carry a stream position, from which a gap can be seen and repaired.
///
/// `subscribe` and `unsubscribe` take batches: a node calls them when its
/// first local subscriber joins a channel and when its last one leaves.
#[async_trait]
pub trait Broker: Send + Sync + 'static {
    /// Starts delivering `channels` to the sink.
    async fn subscribe(&self, channels: &[String]) -> Result<(), BrokerError>;

    /// Stops delivering `channels`.
    async fn unsubscribe(&self, channels: &[String]) -> Result<(), BrokerError>;

    /// Publishes to every listening node; returns once the broker has it.
    async fn publish(&self, envelope: Envelope, options: PublishOptions) -> Result<StreamPosition, BrokerError>;

    /// Records this node in the cluster registry until `info.expires_at`.
    async fn register(&self, info: &NodeInfo) -> Result<(), BrokerError>;

    /// The live nodes of the cluster registry.
    async fn nodes(&self) -> Result<Vec<NodeInfo>, BrokerError>;

    /// Whether the broker can be reached now (drives `/readyz`).
    fn is_ready(&self) -> bool;

    /// A short name for logs and the `/readyz` body.
    fn kind(&self) -> &'static str;
}

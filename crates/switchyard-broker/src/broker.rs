//! The Broker: publications and control messages between the nodes, and
//! channel history. The other kinds of shared state have traits of their
//! own: [`crate::SessionStore`], [`crate::NodeRegistry`],
//! [`crate::PresenceStore`].

use async_trait::async_trait;
use std::time::Duration;
pub use switchyard_core::position::StreamPosition;
use switchyard_proto::v1::{Control, Envelope};

impl History {
    /// What a read of a channel's history answers, whatever the broker:
    /// `publications` (oldest first, at most the read's limit) of a channel
    /// now at `position`, read after `since` (or the newest, without it).
    /// This is the one place that decides whether a read is complete.
    pub fn read(mut publications: Vec<Envelope>, position: StreamPosition, since: Option<&StreamPosition>) -> History {
        // Offset 0 is "before the first publication" in any epoch.
        let since = since.map(|s| {
            if s.offset == 0 { StreamPosition { epoch: position.epoch.clone(), offset: 0 } } else { s.clone() }
        });
        let complete = match &since {
            None => true,
            Some(since) if since.epoch != position.epoch || since.offset > position.offset => false,
            Some(since) => {
                let starts_right = publications.first().is_none_or(|e| e.offset == since.offset + 1);
                starts_right && publications.len() as u64 == position.offset - since.offset
            }
        };
        if since.is_some_and(|s| s.epoch != position.epoch) {
            // Offsets of another epoch mean nothing in this one.
            publications.clear();
        }
        History { publications, position, complete }
    }

    /// Whether publications that followed `since` are gone (another epoch,
    /// trimmed or expired): being short by a read's limit is not that.
    pub fn lost_after(&self, since: &StreamPosition) -> bool {
        (since.offset > 0 && since.epoch != self.position.epoch)
            || self.publications.first().is_some_and(|p| p.offset != since.offset + 1)
            || (self.publications.is_empty() && since.offset < self.position.offset)
    }
}

/// How a channel keeps its publications.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PublishOptions {
    /// Publications kept; 0 = no history.
    pub history_size: usize,
    /// How long publications live after the last publication.
    pub history_ttl: Duration,
    /// How long the channel's position (epoch, offset) lives after the last
    /// publication. Longer than `history_ttl`, so that a client that missed
    /// nothing can still be told so after the publications expired.
    pub history_meta_ttl: Duration,
}

impl PublishOptions {
    pub fn keeps_history(&self) -> bool {
        self.history_size > 0
    }
}

/// A channel's publications after a position, and where the channel is.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct History {
    /// Oldest first, each with its offset.
    pub publications: Vec<Envelope>,
    /// The channel's current epoch and last offset.
    pub position: StreamPosition,
    /// Whether `publications` are every publication after `since`: same
    /// epoch, nothing trimmed or expired in between, none over the limit.
    pub complete: bool,
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

    /// Called once per control message ([`Broker::send_control`]), on every
    /// node, in the order the broker received them. Must not block.
    fn control(&self, message: Control);
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

    /// [`Broker::publish`], also telling how many nodes received the
    /// publication where the broker can tell (`None` where it cannot); with
    /// `key`, idempotent: a repeat of the key on the channel within the
    /// idempotency window publishes nothing (0 nodes) and answers the
    /// first publish's position, atomically with the check.
    async fn publish_counted(
        &self,
        envelope: Envelope,
        options: PublishOptions,
        key: Option<&str>,
    ) -> Result<(StreamPosition, Option<u64>), BrokerError>;

    /// Publications of `channel` after `since` (exclusive), at most
    /// `limit`; without `since`, the newest `limit`.
    async fn history(
        &self,
        channel: &str,
        since: Option<&StreamPosition>,
        limit: usize,
        options: PublishOptions,
    ) -> Result<History, BrokerError>;

    /// Sends a control message to one node (by name), or with `to` None to
    /// every node of the cluster, this one included; returns once the
    /// broker has it, with how many nodes received it where the broker can
    /// tell (`None` where it cannot: a Redis Cluster counts only the
    /// receivers on the shard it ran on). At most once, like publications:
    /// a node that is not listening at that moment misses it.
    async fn send_control(&self, to: Option<&str>, message: Control) -> Result<Option<u64>, BrokerError>;

    /// Whether the broker can be reached now (drives `/readyz`).
    fn is_ready(&self) -> bool;

    /// A short name for logs and the `/readyz` body.
    fn kind(&self) -> &'static str;
}

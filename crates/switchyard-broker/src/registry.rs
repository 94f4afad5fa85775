//! The cluster's registry of live nodes.

use crate::broker::BrokerError;
use crate::node_info::NodeInfo;
use async_trait::async_trait;

/// Every node's heartbeat, readable by every node and operator tool.
///
/// Guarantee: a node that registered is listed until its `expires_at`,
/// and no longer after it unless it registers again; a node that dies is
/// gone from the list once its last entry expires. The list is a view at
/// the last heartbeats, not a membership protocol.
#[async_trait]
pub trait NodeRegistry: Send + Sync + 'static {
    /// Records (or refreshes) this node until `info.expires_at`.
    async fn register(&self, info: &NodeInfo) -> Result<(), BrokerError>;

    /// The live nodes, by name.
    async fn nodes(&self) -> Result<Vec<NodeInfo>, BrokerError>;
}

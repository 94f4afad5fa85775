//! The registry of a cluster of one: this process's node.

use crate::broker::BrokerError;
use crate::node_info::{NodeInfo, unix_seconds};
use crate::registry::NodeRegistry;
use async_trait::async_trait;
use std::collections::BTreeMap;
use std::sync::Mutex;

#[derive(Default)]
pub struct MemoryRegistry {
    /// By name; several only when several nodes share this process (tests).
    nodes: Mutex<BTreeMap<String, NodeInfo>>,
}

#[async_trait]
impl NodeRegistry for MemoryRegistry {
    async fn register(&self, info: &NodeInfo) -> Result<(), BrokerError> {
        self.nodes.lock().unwrap_or_else(|e| e.into_inner()).insert(info.name.clone(), info.clone());
        Ok(())
    }

    async fn nodes(&self) -> Result<Vec<NodeInfo>, BrokerError> {
        let now = unix_seconds();
        let nodes = self.nodes.lock().unwrap_or_else(|e| e.into_inner());
        Ok(nodes.values().filter(|n| n.is_live(now)).cloned().collect())
    }
}

//! The cluster's live nodes, as the API and the admin page show them.

use serde_json::{Value, json};
use switchyard_broker::NodeInfo;

/// Registry entries with their uptime.
pub fn to_json(nodes: Vec<NodeInfo>) -> Vec<Value> {
    nodes
        .into_iter()
        .map(|n| {
            let uptime = n.uptime_seconds();
            let mut value = serde_json::to_value(n).unwrap_or_default();
            value["uptime_seconds"] = json!(uptime);
            value
        })
        .collect()
}

//! The node's heartbeat: keeps its entry in the cluster registry fresh
//! (connections, channels, traffic, readiness), the
//! `switchyard_cluster_nodes` gauge with it, and trims the connect-rate
//! limiter's idle addresses.

use crate::node::Node;
use crate::traffic_tally;
use std::sync::Arc;
use switchyard_broker::{NodeInfo, unix_seconds};
use switchyard_core::metric;
use tokio_util::sync::CancellationToken;
use tracing::debug;

pub async fn run(node: Arc<Node>, address: String, stop: CancellationToken) {
    let every = node.config.broker.heartbeat_interval;
    let started_at = unix_seconds();
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        if let Some(limiter) = &node.connect_limiter {
            // Addresses whose bucket is full again hold no memory.
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
        let now = unix_seconds();
        let totals = traffic_tally::totals();
        let info = NodeInfo {
            name: node.name.clone(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            address: address.clone(),
            connections: node.connections.len() as u64,
            subscriptions: node.hub.subscription_count() as u64,
            channels: node.hub.channel_count() as u64,
            started_at,
            updated_at: now,
            expires_at: now + 3 * every.as_secs().max(1),
            ready: node.is_ready(),
            messages_in: totals.messages_in,
            messages_out: totals.frames,
            broker_up: node.stores.broker.is_ready(),
            consumers: node.consumer_shares.snapshot(),
        };
        if let Err(e) = node.stores.registry.register(&info).await {
            debug!(error = %e, "cannot refresh the registry entry");
            continue;
        }
        if let Ok(nodes) = node.stores.registry.nodes().await {
            metric::cluster_nodes().set(nodes.len() as f64);
        }
    }
}

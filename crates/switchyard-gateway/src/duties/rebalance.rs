//! Active rebalancing: a node added to a busy cluster would stay nearly
//! empty for hours (WebSocket clients never reconnect on their own, and a
//! least-connections balancer only places new ones). Each node compares
//! its connections with the cluster's mean (from the node registry); one
//! above it by more than `rebalance.tolerance` (or above it at all while
//! another node is below it by more than that) closes part of its excess
//! with 4012, slowly and at random, and clients reconnect through the
//! balancer to emptier nodes and resume there, missing nothing.
//!
//! Never below the mean, never while a node is draining or not ready, and
//! after a round that shed, two intervals of rest so the registry catches
//! up (no oscillation).

use crate::node::Node;
use rand::seq::index::sample;
use std::sync::Arc;
use std::time::Duration;
use switchyard_broker::NodeInfo;
use switchyard_core::codes::CloseCode;
use switchyard_core::config::RebalanceConfig;
use switchyard_core::metric;
use switchyard_core::outbound::Close;
use tokio_util::sync::CancellationToken;
use tracing::info;

/// Intervals of rest after a round that shed: the registry entries of the
/// other nodes are a heartbeat old, so the clients shed in this round show
/// in their counts only after one or two more.
const REST: u32 = 2;

/// How many connections to shed now: half the excess over the mean (the
/// other nodes' counts are a heartbeat old, and the clients this node
/// sheds land on them meanwhile: halving converges without overshooting),
/// when over the tolerance, at most what `max_per_second` allows in one
/// interval; none while a node of the cluster is not ready (draining, or
/// cut off).
pub fn plan(nodes: &[NodeInfo], me: &str, mine: usize, config: &RebalanceConfig) -> usize {
    if nodes.len() < 2 || nodes.iter().any(|n| !n.ready) || !nodes.iter().any(|n| n.name == me) {
        return 0;
    }
    // This node's own count is fresher than its registry entry.
    let count = |n: &NodeInfo| if n.name == me { mine as f64 } else { n.connections as f64 };
    let total: f64 = nodes.iter().map(count).sum();
    let mean = total / nodes.len() as f64;
    // Above the tolerance; or above the mean while another node is below
    // it by more than the tolerance (so every node ends within it, not
    // only the loaded ones).
    let high = mine as f64 > mean * (1.0 + config.tolerance);
    let starved = nodes.iter().any(|n| count(n) < mean * (1.0 - config.tolerance));
    if !(high || (starved && mine as f64 > mean)) {
        return 0;
    }
    let excess = ((mine as f64 - mean) / 2.0).ceil() as usize;
    let cap = (f64::from(config.max_per_second) * config.interval.as_secs_f64()).ceil().max(1.0) as usize;
    excess.min(cap)
}

pub async fn run(node: Arc<Node>, stop: CancellationToken) {
    let config = node.config.rebalance.clone();
    if !config.enabled {
        return;
    }
    let mut tick = tokio::time::interval(config.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    let mut rest = 0;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        metric::rebalance_checks().increment(1);
        if rest > 0 {
            rest -= 1;
            continue;
        }
        if node.is_draining() || !node.stores.broker.is_ready() {
            continue;
        }
        let Ok(nodes) = node.stores.registry.nodes().await else { continue };
        let count = plan(&nodes, &node.name, node.connections.len(), &config);
        if count == 0 {
            continue;
        }
        info!(count, nodes = nodes.len(), "rebalancing: shedding connections above the cluster's mean");
        shed(&node, count, config.interval, &stop).await;
        rest = REST;
    }
}

/// Closes `count` connections picked at random, spread over `over`.
async fn shed(node: &Node, count: usize, over: Duration, stop: &CancellationToken) {
    let open = node.connections.snapshot();
    let count = count.min(open.len());
    let picked = sample(&mut rand::rng(), open.len(), count);
    let pause = over / (count as u32).max(1);
    for index in picked.iter() {
        if stop.is_cancelled() || node.is_draining() {
            return;
        }
        if open[index].close(Close::Server(CloseCode::Rebalance)) {
            metric::rebalance_shed().increment(1);
        }
        tokio::time::sleep(pause).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, connections: u64, ready: bool) -> NodeInfo {
        NodeInfo {
            name: name.into(),
            version: "t".into(),
            address: String::new(),
            connections,
            subscriptions: 0,
            channels: 0,
            started_at: 0,
            updated_at: 0,
            expires_at: u64::MAX,
            ready,
            messages_in: 0,
            messages_out: 0,
            broker_up: true,
            consumers: Default::default(),
        }
    }

    fn config() -> RebalanceConfig {
        RebalanceConfig { enabled: true, tolerance: 0.1, max_per_second: 50, interval: Duration::from_secs(2) }
    }

    #[test]
    fn sheds_the_excess_over_the_mean_within_the_rate() {
        let nodes = [node("a", 500, true), node("b", 500, true), node("c", 0, true)];
        // Mean 333: a is 167 above it and sheds half, capped at 50/s × 2 s.
        let slow = RebalanceConfig { max_per_second: 20, ..config() };
        assert_eq!(plan(&nodes, "a", 500, &slow), 40);
        let fast = RebalanceConfig { max_per_second: 1000, ..config() };
        assert_eq!(plan(&nodes, "a", 500, &fast), 84);
        // Never the node below the mean, and not within the tolerance.
        assert_eq!(plan(&nodes, "c", 0, &fast), 0);
        let close = [node("a", 350, true), node("b", 330, true), node("c", 320, true)];
        assert_eq!(plan(&close, "a", 350, &fast), 0, "within 10 % of the mean");
        // Within the tolerance itself, but another node is starved.
        let starved = [node("a", 108, true), node("b", 108, true), node("c", 84, true)];
        assert_eq!(plan(&starved, "a", 108, &fast), 4);
        assert_eq!(plan(&starved, "c", 84, &fast), 0);
    }

    #[test]
    fn waits_while_a_node_is_not_ready_or_alone() {
        let draining = [node("a", 500, true), node("b", 500, false), node("c", 0, true)];
        assert_eq!(plan(&draining, "a", 500, &config()), 0);
        assert_eq!(plan(&[node("a", 500, true)], "a", 500, &config()), 0);
    }
}

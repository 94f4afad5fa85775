//! A node whose path to its broker stays broken past `broker.cutoff_after`
//! (a silent network, a Redis that does not answer) hands its clients back:
//! it closes them with 1001, paced and jittered like a drain, and refuses
//! new ones (503), so that they reconnect through the balancer to a node
//! that can serve them and recover there (or back off, if none can). Its
//! `/readyz` says 503 from the moment the health check sees the broker
//! gone. When the broker is back the node takes clients again; the broker
//! resubscribes and catches up by itself.

use crate::node::Node;
use crate::transport::drain;
use std::sync::Arc;
use std::time::Duration;
use switchyard_core::metric;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// How often the broker's state is looked at (its health check runs every
/// second too).
const EVERY: Duration = Duration::from_millis(250);

pub async fn run(node: Arc<Node>, stop: CancellationToken) {
    let after = node.config.broker.cutoff_after;
    if after.is_zero() {
        return;
    }
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut down_since: Option<Instant> = None;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        if node.stores.broker.is_ready() {
            if node.is_cut_off() {
                info!("the broker is back: taking clients again");
                node.set_cut_off(false);
            }
            down_since = None;
            continue;
        }
        let since = *down_since.get_or_insert_with(Instant::now);
        if node.is_cut_off() || since.elapsed() < after || node.is_draining() {
            continue;
        }
        warn!(connections = node.connections.len(), down_for = ?since.elapsed(),
            "the broker has been out of reach too long: handing the clients back");
        node.set_cut_off(true);
        metric::broker_cutoffs().increment(1);
        tokio::select! {
            () = stop.cancelled() => return,
            () = drain::close_all(&node, node.config.shutdown.drain_period) => {}
        }
    }
}

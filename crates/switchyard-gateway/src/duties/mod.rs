//! The node's background duties, each owned by one tracker that stops them
//! in a documented order:
//!
//! | duty | stops |
//! | --- | --- |
//! | [`heartbeat`]: the registry entry | when the drain starts |
//! | [`presence_refresh`]: this node's presence entries | when the drain starts |
//! | [`rebalance`]: shedding above the cluster's mean | when the drain starts |
//! | TLS reload ([`crate::tls::Tls::watch`]) | when the drain starts |
//! | [`jwks_refresh`]: the identity provider's keys | when the drain starts |
//! | [`cutoff`]: handing clients back when the broker is out of reach | when the drain starts |
//! | [`consumers`]: publishing from the application's queues | when the drain starts (their leases go to other nodes) |
//! | [`control_listener`]: control messages, and what they start | once the connections are gone |
//! | [`receipts`]: this node's parts of publish receipts | once the connections are gone |
//! | webhook senders ([`crate::webhooks`]): one per target | once the connections are gone (what is queued gets one more try) |
//! | the write clock ([`crate::node::write_clock`]) | once the connections are gone |
//! | the metrics recorder's upkeep ([`crate::recorder::upkeep`]) | once the connections are gone |
//!
//! Duties about the cluster stop first: a draining node takes no part in
//! rebalancing and lets its registry entry expire. What its connections
//! still need while they close (user operations, SSE commands, receipts,
//! the write clock) runs until the last one is gone.

pub mod consumers;
pub mod control_listener;
pub mod cutoff;
pub mod heartbeat;
pub mod jwks_refresh;
pub mod presence_refresh;
pub mod rebalance;
pub mod receipts;

use crate::node::Node;
use crate::recorder;
use metrics_exporter_prometheus::PrometheusHandle;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The running duties of one node.
pub struct Duties {
    tracker: TaskTracker,
    /// Heartbeat, presence refresh, rebalancing, TLS reload.
    cluster: CancellationToken,
    /// Control messages, receipts, the write clock, the recorder's upkeep.
    connections: CancellationToken,
}

impl Duties {
    /// Starts every duty of `node`, which serves on `address`.
    pub fn start(node: &Arc<Node>, address: String, metrics: PrometheusHandle) -> Duties {
        let duties = Duties {
            tracker: TaskTracker::new(),
            cluster: CancellationToken::new(),
            connections: CancellationToken::new(),
        };
        let tracker = &duties.tracker;
        tracker.spawn(recorder::upkeep(metrics, duties.connections.clone()));
        tracker.spawn(heartbeat::run(node.clone(), address, duties.cluster.clone()));
        tracker.spawn(presence_refresh::keep_fresh(node.clone(), duties.cluster.clone()));
        tracker.spawn(rebalance::run(node.clone(), duties.cluster.clone()));
        node.webhooks.start(tracker, duties.connections.clone());
        tracker.spawn(jwks_refresh::run(node.clone(), duties.cluster.clone()));
        tracker.spawn(cutoff::run(node.clone(), duties.cluster.clone()));
        consumers::start(node, tracker, &duties.cluster);
        if let Some(tls) = node.tls.clone() {
            tracker.spawn(tls.watch(node.config.tls.reload_interval, duties.cluster.clone()));
        }
        tracker.spawn(control_listener::listen(node.clone(), tracker.clone(), duties.connections.clone()));
        tracker.spawn(receipts::send(node.clone(), duties.connections.clone()));
        if let Some(clock) = node.write_clock.clone() {
            tracker.spawn(clock.run(duties.connections.clone()));
        }
        duties
    }

    /// The drain starts: the duties about the cluster stop.
    pub fn stop_cluster(&self) {
        self.cluster.cancel();
    }

    /// The connections are gone: every other duty stops, and this returns
    /// once all have (with what they started).
    pub async fn stop(self) {
        self.cluster.cancel();
        self.connections.cancel();
        self.tracker.close();
        self.tracker.wait().await;
    }
}

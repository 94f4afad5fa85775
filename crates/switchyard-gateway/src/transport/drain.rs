//! Closing every connection on shutdown, paced and jittered, so that the
//! clients of a draining node do not all reconnect to its peers at once.

use crate::node::Node;
use rand::Rng as _;
use rand::seq::SliceRandom as _;
use std::time::Duration;
use switchyard_core::codes::CloseCode;
use switchyard_core::outbound::Close;
use tokio::time::Instant;

/// Batches per drain: one every `drain_period / STEPS`. Twenty: each batch
/// is a twentieth of the node's clients reconnecting to the others at
/// once; fewer batches make bigger bursts there, more only add wake-ups.
const STEPS: u32 = 20;

/// Closes the node's connections with 1001 in `STEPS` batches over
/// `period`, each batch at a random moment within its step. Returns when the
/// last batch has been asked to close.
pub async fn close_all(node: &Node, period: Duration) {
    let mut connections = node.connections.snapshot();
    connections.shuffle(&mut rand::rng());
    if connections.is_empty() {
        return;
    }
    let step = period / STEPS;
    let per_step = connections.len().div_ceil(STEPS as usize);
    let start = Instant::now();
    for (i, batch) in connections.chunks(per_step).enumerate() {
        let jitter = if step.is_zero() { Duration::ZERO } else { rand::rng().random_range(Duration::ZERO..step) };
        tokio::time::sleep_until(start + step * i as u32 + jitter).await;
        for outbound in batch {
            outbound.close(Close::Server(CloseCode::GoingAway));
        }
    }
}

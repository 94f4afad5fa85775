//! Sends this node's parts of publish receipts (which the broker's sink
//! queued as publications with a receipt request arrived) to the
//! publishers' nodes.

use crate::node::Node;
use std::sync::Arc;
use switchyard_proto::v1::Control;
use switchyard_proto::v1::control::Op;
use tokio_util::sync::CancellationToken;

/// Sends this node's parts of publish receipts to the publishers' nodes,
/// until `stop`.
pub async fn send(node: Arc<Node>, stop: CancellationToken) {
    let Some(mut receipts) = node.take_receipts() else { return };
    loop {
        let (to, mut reply) = tokio::select! {
            () = stop.cancelled() => return,
            next = receipts.recv() => match next {
                Some(next) => next,
                None => return,
            },
        };
        reply.node = node.name.clone();
        let message = Control { op: Some(Op::ReceiptReply(reply)) };
        if let Err(e) = node.stores.broker.send_control(Some(&to), message).await {
            tracing::debug!(error = %e, "cannot answer a publish receipt");
        }
    }
}

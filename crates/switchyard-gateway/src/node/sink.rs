//! Where the broker hands what it receives: publications go to the hub,
//! which fans them out; control messages and this node's parts of publish
//! receipts go to queues that background duties drain.

use std::sync::Arc;
use switchyard_broker::PublicationSink;
use switchyard_core::hub::Hub;
use switchyard_core::metric;
use switchyard_proto::v1::{Control, Envelope, ReceiptReply};
use tokio::sync::mpsc;

/// Hands the broker's publications to the hub, and its control messages
/// to the node's control task.
pub(super) struct NodeSink {
    pub(super) hub: Arc<Hub>,
    pub(super) control: mpsc::Sender<Control>,
    /// This node's parts of publish receipts, to send (by the receipts task).
    pub(super) receipts: mpsc::Sender<(String, ReceiptReply)>,
}

impl PublicationSink for NodeSink {
    fn deliver(&self, envelope: Envelope) {
        metric::broker_received().increment(1);
        if envelope.receipt_to.is_empty() {
            self.hub.broadcast(&envelope);
            return;
        }
        // A publisher waits to hear where this one went.
        let had_subscribers = self.hub.subscriber_count(&envelope.channel) > 0;
        let fanout = self.hub.broadcast(&envelope);
        let reply = ReceiptReply {
            request_id: envelope.receipt_id,
            node: String::new(),
            had_subscribers,
            queued: fanout.queued as u32,
        };
        if self.receipts.try_send((envelope.receipt_to, reply)).is_err() {
            metric::control_dropped().increment(1);
        }
    }

    fn control(&self, message: Control) {
        if self.control.try_send(message).is_err() {
            metric::control_dropped().increment(1);
        }
    }
}

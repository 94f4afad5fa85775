//! Where the broker hands what it receives: publications go to the hub,
//! which fans them out; control messages and this node's parts of publish
//! receipts go to queues that background duties drain.

use std::sync::Arc;
use switchyard_broker::PublicationSink;
use switchyard_core::hub::{ConnId, Hub};
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
    /// This node's Pusher socket ids start with this.
    pub(super) socket_prefix: u32,
}

impl NodeSink {
    /// The connection of this node a publication must skip: the one its
    /// `except_socket` names, if that socket is this node's.
    fn except(&self, envelope: &Envelope) -> Option<ConnId> {
        if envelope.except_socket.is_empty() {
            return None;
        }
        let (prefix, conn) = envelope.except_socket.split_once('.')?;
        (prefix.parse::<u32>().ok()? == self.socket_prefix).then(|| conn.parse().ok()).flatten()
    }
}

impl PublicationSink for NodeSink {
    fn deliver(&self, envelope: Envelope) {
        metric::broker_received().increment(1);
        let except = self.except(&envelope);
        if envelope.receipt_to.is_empty() {
            self.hub.broadcast_except(&envelope, except);
            return;
        }
        // A publisher waits to hear where this one went.
        let had_subscribers = self.hub.subscriber_count(&envelope.channel) > 0;
        let fanout = self.hub.broadcast_except(&envelope, except);
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

//! The node's control task: takes the control messages the broker hands
//! the node and applies them ([`crate::command::control`]), one at a time,
//! in the broker's order.

use crate::command::control;
use crate::node::Node;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The node's control task: applies control messages from the broker, in
/// order, until `stop`; what it starts (an SSE client's commands, which
/// may wait on the broker) runs on `tasks`.
pub async fn listen(node: Arc<Node>, tasks: TaskTracker, stop: CancellationToken) {
    let Some(mut messages) = node.take_control() else { return };
    loop {
        let message = tokio::select! {
            () = stop.cancelled() => return,
            message = messages.recv() => match message {
                Some(message) => message,
                None => return,
            },
        };
        control::apply(&node, message, &tasks).await;
    }
}

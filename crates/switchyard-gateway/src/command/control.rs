//! Control messages from other nodes (and this one), applied to this
//! node: user operations to the sessions of the user, survey requests
//! answered, answers handed to the request waiting on them, an SSE
//! client's commands run on its stream.

use crate::node::{Node, ServerOp};
use std::sync::Arc;
use switchyard_core::codes::CloseCode;
use switchyard_core::metric;
use switchyard_proto::v1::control::Op;
use switchyard_proto::v1::{Control, UserChannel, UserDisconnect};
use tokio_util::task::TaskTracker;
use tracing::debug;

/// Applies a control message to this node's connections. Runs on the
/// node's control task, one message at a time, in the broker's order.
pub async fn apply(node: &Arc<Node>, message: Control, tasks: &TaskTracker) {
    let Some(op) = message.op else { return };
    match op {
        Op::SubscribeUser(UserChannel { user, channel }) => {
            metric::control_received("subscribe_user").increment(1);
            node.connections.to_user(&user, || ServerOp::Subscribe(channel.clone()));
        }
        Op::UnsubscribeUser(UserChannel { user, channel }) => {
            metric::control_received("unsubscribe_user").increment(1);
            node.connections.to_user(&user, || ServerOp::Unsubscribe(channel.clone()));
        }
        Op::DisconnectUser(UserDisconnect { user, code, reason }) => {
            metric::control_received("disconnect_user").increment(1);
            let code = super::users::close_code(code).unwrap_or(CloseCode::Unauthorized);
            node.connections.to_user(&user, || ServerOp::Disconnect { code, reason: reason.clone() });
        }
        Op::ChannelsRequest(request) => {
            metric::control_received("channels_request").increment(1);
            let reply = super::channels::local(node, &request);
            let to = request.reply_to.clone();
            let message = Control { op: Some(Op::ChannelsReply(reply)) };
            if let Err(e) = node.stores.broker.send_control(Some(&to), message).await {
                debug!(error = %e, "cannot answer a channels survey");
            }
        }
        Op::ChannelsReply(reply) => {
            metric::control_received("channels_reply").increment(1);
            node.requests.answer(reply.request_id, Op::ChannelsReply(reply));
        }
        Op::SseCommands(request) => {
            metric::control_received("sse_commands").increment(1);
            // Off the control task: the commands may wait on the broker.
            tasks.spawn(super::stream_commands::run_for(node.clone(), request));
        }
        Op::SseReplies(reply) => {
            metric::control_received("sse_replies").increment(1);
            node.requests.answer(reply.request_id, Op::SseReplies(reply));
        }
        Op::ReceiptReply(reply) => {
            metric::control_received("receipt_reply").increment(1);
            node.requests.answer(reply.request_id, Op::ReceiptReply(reply));
        }
    }
}

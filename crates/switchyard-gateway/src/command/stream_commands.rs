//! An SSE client's commands (`POST /sse/command`), run in order on the
//! session of its stream, on whichever node holds it.
//!
//! The session token is `<node>.<random>`: a node that does not hold the
//! stream sends the commands to that node's control channel and waits for
//! its answer.

use super::Refusal;
use crate::node::{Node, ServerOp};
use bytes::Bytes;
use std::sync::Arc;
use std::time::Duration;
use switchyard_core::metric;
use switchyard_proto::v1::control::Op;
use switchyard_proto::v1::{Control, SseCommands, SseReplies};
use tokio::sync::oneshot;

/// Commands in one request, at most: a page subscribing to its channels at
/// once fits; more would hold the stream's session away from its pushes
/// for one request.
pub const MAX_COMMANDS: usize = 100;

/// Why the commands got no answer.
#[derive(Debug)]
pub enum Unanswered {
    /// No node holds the stream (any more): the client reconnects and
    /// resumes.
    Gone,
    /// The broker could not carry the request.
    Broker(Refusal),
    /// The stream's node (named) did not answer in time.
    Timeout(String),
}

/// The node that holds the stream of `session`.
pub fn node_of(session: &str) -> Option<&str> {
    session.rsplit_once('.').map(|(node, _)| node).filter(|n| !n.is_empty())
}

/// How long the stream's session has to run the commands.
fn timeout(node: &Node) -> Duration {
    node.config.client.close_timeout.max(Duration::from_secs(10))
}

/// Runs `commands` (JSON client frames) on the stream `session`, here or on
/// its node; answers their replies, in order.
pub async fn run(node: &Node, session: &str, commands: Vec<Bytes>) -> Result<Vec<Bytes>, Unanswered> {
    let holder = node_of(session).ok_or(Unanswered::Gone)?;
    if holder == node.name {
        metric::sse_commands("local").increment(1);
        run_here(node, session, commands).await.ok_or(Unanswered::Gone)
    } else {
        metric::sse_commands("remote").increment(1);
        run_there(node, holder, session, commands).await
    }
}

/// Runs `commands` on this node's stream `session`; `None` if there is none.
async fn run_here(node: &Node, session: &str, commands: Vec<Bytes>) -> Option<Vec<Bytes>> {
    let ops = node.streams.get(session)?;
    let (reply, replies) = oneshot::channel();
    ops.send(ServerOp::Commands(commands, reply)).await.ok()?;
    tokio::time::timeout(timeout(node), replies).await.ok()?.ok()
}

/// Sends `commands` to `holder`, the node of the stream, and waits for its
/// answer.
async fn run_there(node: &Node, holder: &str, session: &str, commands: Vec<Bytes>) -> Result<Vec<Bytes>, Unanswered> {
    let broker = |e| Unanswered::Broker(Refusal::from(e));
    let live = node.stores.registry.nodes().await.map_err(broker)?;
    if !live.iter().any(|n| n.name == holder) {
        return Err(Unanswered::Gone);
    }
    let pending = node.requests.start(1);
    let request =
        SseCommands { request_id: pending.id, reply_to: node.name.clone(), session: session.to_owned(), commands };
    match node.stores.broker.send_control(Some(holder), Control { op: Some(Op::SseCommands(request)) }).await {
        // Nobody listens on its channel: the node is gone (its registry
        // entry lingers until it expires).
        Ok(Some(0)) => return Err(Unanswered::Gone),
        Ok(_) => {}
        Err(e) => return Err(broker(e)),
    }
    match pending.collect(1, timeout(node)).await.pop() {
        Some(Op::SseReplies(SseReplies { found: true, replies, .. })) => Ok(replies),
        Some(_) => Err(Unanswered::Gone),
        None => Err(Unanswered::Timeout(holder.to_owned())),
    }
}

/// On the stream's node: runs a request that came over the broker, and
/// answers on the asking node's control channel.
pub async fn run_for(node: Arc<Node>, request: SseCommands) {
    let replies = run_here(&node, &request.session, request.commands).await;
    let answer =
        SseReplies { request_id: request.request_id, found: replies.is_some(), replies: replies.unwrap_or_default() };
    let message = Control { op: Some(Op::SseReplies(answer)) };
    if let Err(e) = node.stores.broker.send_control(Some(&request.reply_to), message).await {
        tracing::debug!(error = %e, "cannot answer an SSE command request");
    }
}

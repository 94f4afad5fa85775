//! User operations (subscribe, unsubscribe, disconnect every connection of
//! a user, on every node), cluster-wide surveys (`channels`) and requests
//! to one node (an SSE client's commands): sent as [`Control`] messages
//! through the broker, and applied by each node to its own connections.

use super::session::ServerOp;
use super::{Refusal, resolve};
use crate::node::Node;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use switchyard_core::codes::{CloseCode, ErrorCode};
use switchyard_core::metric;
use switchyard_proto::v1::control::Op;
use switchyard_proto::v1::{ChannelsReply, ChannelsRequest, Control, UserChannel, UserDisconnect};
use tokio::sync::mpsc;
use tracing::debug;

/// Longest user id in a user operation (as in a channel name).
const MAX_USER: usize = 255;

fn check_user(user: &str) -> Result<(), Refusal> {
    if user.is_empty() || user.len() > MAX_USER {
        return Err(Refusal::new(ErrorCode::BadRequest, format!("user: 1 to {MAX_USER} bytes")));
    }
    Ok(())
}

/// Subscribes every connection of `user`, on every node, to `channel`.
pub async fn subscribe_user(node: &Node, user: &str, channel: &str) -> Result<(), Refusal> {
    user_channel(node, user, channel, Op::SubscribeUser).await
}

/// Unsubscribes every connection of `user`, on every node, from `channel`.
pub async fn unsubscribe_user(node: &Node, user: &str, channel: &str) -> Result<(), Refusal> {
    user_channel(node, user, channel, Op::UnsubscribeUser).await
}

async fn user_channel(node: &Node, user: &str, channel: &str, op: fn(UserChannel) -> Op) -> Result<(), Refusal> {
    check_user(user)?;
    resolve(node, channel)?;
    let op = op(UserChannel { user: user.to_owned(), channel: channel.to_owned() });
    node.stores.broker.send_control(None, Control { op: Some(op) }).await?;
    Ok(())
}

/// Disconnects every connection of `user`, on every node, with `code` (a
/// close code of the protocol's table; default 4003, no reconnect).
pub async fn disconnect_user(node: &Node, user: &str, code: Option<u32>, reason: &str) -> Result<(), Refusal> {
    check_user(user)?;
    let code = close_code(code.unwrap_or(0))
        .ok_or_else(|| Refusal::new(ErrorCode::BadRequest, "code: a close code of the protocol's table"))?;
    let op = Op::DisconnectUser(UserDisconnect {
        user: user.to_owned(),
        code: u32::from(code.code()),
        reason: reason.into(),
    });
    node.stores.broker.send_control(None, Control { op: Some(op) }).await?;
    Ok(())
}

fn close_code(code: u32) -> Option<CloseCode> {
    match code {
        0 => Some(CloseCode::Unauthorized),
        code => u16::try_from(code).ok().and_then(CloseCode::from_code),
    }
}

/// Requests this node sent to other nodes and waits on (surveys, SSE
/// commands), by request id: the answers come on its own control channel.
#[derive(Default)]
pub struct Requests {
    next: AtomicU64,
    pending: Mutex<HashMap<u64, mpsc::Sender<Op>>>,
}

/// A request in flight; forgotten when dropped.
pub struct Pending<'a> {
    requests: &'a Requests,
    pub id: u64,
    pub answers: mpsc::Receiver<Op>,
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        self.requests.pending.lock().unwrap_or_else(|e| e.into_inner()).remove(&self.id);
    }
}

impl Requests {
    /// A new request expecting up to `answers` answers.
    pub fn start(&self, answers: usize) -> Pending<'_> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(answers.clamp(1, 1024));
        self.pending.lock().unwrap_or_else(|e| e.into_inner()).insert(id, tx);
        Pending { requests: self, id, answers: rx }
    }

    /// Hands an answer to the request waiting on it, if it still is.
    fn answer(&self, id: u64, answer: Op) {
        let waiter = self.pending.lock().unwrap_or_else(|e| e.into_inner()).get(&id).cloned();
        if let Some(waiter) = waiter {
            let _ = waiter.try_send(answer);
        }
    }
}

/// The channels of the cluster with their subscribers on every node that
/// answered within `broker.survey_timeout`, by name; with `prefix`, only
/// those that start with it.
pub async fn channels(node: &Node, prefix: &str) -> Result<BTreeMap<String, u32>, Refusal> {
    let expected = node.stores.registry.nodes().await?.len().max(1);
    let mut pending = node.requests.start(expected);
    let request = ChannelsRequest { request_id: pending.id, reply_to: node.name.clone(), prefix: prefix.to_owned() };
    node.stores.broker.send_control(None, Control { op: Some(Op::ChannelsRequest(request)) }).await?;
    let mut merged = BTreeMap::new();
    let collect = async {
        let mut answered = 0;
        while let Some(answer) = pending.answers.recv().await {
            let Op::ChannelsReply(reply) = answer else { continue };
            for (channel, count) in reply.channels {
                *merged.entry(channel).or_insert(0) += count;
            }
            answered += 1;
            if answered >= expected {
                break;
            }
        }
    };
    // Nodes that do not answer in time are left out.
    let _ = tokio::time::timeout(node.config.broker.survey_timeout, collect).await;
    Ok(merged)
}

/// Applies a control message to this node's connections. Runs on the
/// node's control task, one message at a time, in the broker's order.
pub async fn apply(node: &Arc<Node>, message: Control) {
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
            let code = close_code(code).unwrap_or(CloseCode::Unauthorized);
            node.connections.to_user(&user, || ServerOp::Disconnect { code, reason: reason.clone() });
        }
        Op::ChannelsRequest(request) => {
            metric::control_received("channels_request").increment(1);
            let channels = node.hub.channels_with_prefix(&request.prefix);
            let reply = ChannelsReply {
                request_id: request.request_id,
                node: node.name.clone(),
                channels: channels.into_iter().map(|(c, n)| (c, n as u32)).collect(),
            };
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
            tokio::spawn(crate::sse::command::run_for(node.clone(), request));
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

/// The node's control task: applies control messages from the broker, in
/// order, until `stop`.
pub async fn listen(node: Arc<Node>, stop: tokio_util::sync::CancellationToken) {
    let Some(mut messages) = node.take_control() else { return };
    loop {
        let message = tokio::select! {
            () = stop.cancelled() => return,
            message = messages.recv() => match message {
                Some(message) => message,
                None => return,
            },
        };
        apply(&node, message).await;
    }
}

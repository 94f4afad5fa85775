//! User operations: subscribe, unsubscribe, or disconnect every
//! connection of a user, on every node. Sent as [`Control`] messages
//! through the broker to every node, and applied by each to its own
//! connections of that user ([`super::control`]).

use super::{Refusal, resolve};
use crate::auth::MAX_USER_ID;
use crate::node::Node;
use switchyard_core::codes::{CloseCode, ErrorCode};
use switchyard_proto::v1::control::Op;
use switchyard_proto::v1::{Control, UserChannel, UserDisconnect};

fn check_user(user: &str) -> Result<(), Refusal> {
    if user.is_empty() || user.len() > MAX_USER_ID {
        return Err(Refusal::new(ErrorCode::BadRequest, format!("user: 1 to {MAX_USER_ID} bytes")));
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

pub(super) fn close_code(code: u32) -> Option<CloseCode> {
    match code {
        0 => Some(CloseCode::Unauthorized),
        code => u16::try_from(code).ok().and_then(CloseCode::from_code),
    }
}

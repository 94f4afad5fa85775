//! Presence: who is subscribed to a channel, across every node; entering
//! and leaving it. This node's own entries are indexed on the node
//! ([`crate::node::presence`]) and kept fresh by a background duty.

use super::session::ClientSession;
use super::{Refusal, Reply, resolve};
use crate::node::{Node, membership};
use switchyard_broker::Announce;
use switchyard_broker::presence::stats;
use switchyard_core::codes::ErrorCode;
use switchyard_core::config::NamespaceConfig;
use switchyard_proto::v1::{
    ClientInfo, PresenceRequest, PresenceResult, PresenceStatsRequest, PresenceStatsResult, server_frame,
};
use tracing::debug;

/// Enters `member` in `channel`'s presence (announcing a join where the
/// namespace has `join_leave`).
pub async fn enter(node: &Node, channel: &str, namespace: &NamespaceConfig, member: ClientInfo) -> Result<(), Refusal> {
    // Local first: a refresh round must not miss an entry that is in the store.
    node.presence.insert(channel, member.clone());
    let ttl = node.config.broker.presence_ttl;
    let announce = Announce::clients(namespace.join_leave);
    match node.stores.presence.add(channel, std::slice::from_ref(&member), ttl, announce).await {
        Ok(changes) => {
            membership::report(node, channel, &changes);
            Ok(())
        }
        Err(e) => {
            node.presence.remove(channel, &member.client);
            Err(e.into())
        }
    }
}

/// Takes `client` out of `channel`'s presence (announcing a leave where
/// the namespace has `join_leave`). Best effort: an entry that stays for
/// want of Redis expires with its TTL.
pub async fn exit(node: &Node, channel: &str, namespace: &NamespaceConfig, client: &str) {
    node.presence.remove(channel, client);
    match node.stores.presence.remove(channel, client, Announce::clients(namespace.join_leave)).await {
        Ok(changes) => membership::report(node, channel, &changes),
        Err(e) => debug!(%channel, error = %e, "cannot remove a presence entry; it will expire"),
    }
}

/// Who is in `channel`, by client id. 107 for a namespace without
/// `presence`; 106 when the members would not fit one reply
/// (`client.max_reply_bytes`): `presence_stats` counts them instead.
pub async fn presence(node: &Node, channel: &str) -> Result<PresenceResult, Refusal> {
    let members = members(node, channel).await?;
    // Each member appears twice (its key and its entry), with the fields
    // around them.
    let size: usize = members.iter().map(|m| 2 * m.client.len() + m.user.len() + m.info.len() + 64).sum();
    if size > super::history::reply_budget(node) {
        let message = format!("{} members are more than one reply holds: ask presence_stats", members.len());
        return Err(Refusal::new(ErrorCode::LimitExceeded, message));
    }
    Ok(PresenceResult { clients: members.into_iter().map(|m| (m.client.clone(), m)).collect() })
}

/// How many are in `channel`: clients, and distinct users.
pub async fn presence_stats(node: &Node, channel: &str) -> Result<PresenceStatsResult, Refusal> {
    let (clients, users) = stats(&members(node, channel).await?);
    Ok(PresenceStatsResult { num_clients: clients as u32, num_users: users as u32 })
}

async fn members(node: &Node, channel: &str) -> Result<Vec<ClientInfo>, Refusal> {
    let (_, namespace) = resolve(node, channel)?;
    if !namespace.presence {
        return Err(Refusal::new(ErrorCode::BadRequest, "this channel's namespace keeps no presence"));
    }
    let (members, changes) = node.stores.presence.members(channel, Announce::clients(namespace.join_leave)).await?;
    membership::report(node, channel, &changes);
    Ok(members)
}

impl ClientSession {
    /// A client may ask presence of a channel it may subscribe to.
    pub(super) async fn presence(&mut self, request: PresenceRequest) -> Reply {
        self.check_may_subscribe(&request.channel)?;
        Ok(Some(server_frame::Message::Presence(presence(&self.node, &request.channel).await?)))
    }

    pub(super) async fn presence_stats(&mut self, request: PresenceStatsRequest) -> Reply {
        self.check_may_subscribe(&request.channel)?;
        Ok(Some(server_frame::Message::PresenceStats(presence_stats(&self.node, &request.channel).await?)))
    }
}

//! Presence: who is subscribed to a channel, across every node; and the
//! entries of this node's own clients, which it keeps fresh.

use super::session::ClientSession;
use super::{Refusal, Reply, resolve};
use crate::node::Node;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use switchyard_broker::presence::stats;
use switchyard_core::codes::ErrorCode;
use switchyard_core::config::NamespaceConfig;
use switchyard_core::metric;
use switchyard_proto::v1::{
    ClientInfo, PresenceRequest, PresenceResult, PresenceStatsRequest, PresenceStatsResult, server_frame,
};
use tokio_util::sync::CancellationToken;
use tracing::debug;

/// Channels refreshed at once, at most, in one round.
const REFRESH_CONCURRENCY: usize = 32;

/// This node's presence entries: its clients on channels that track
/// presence, by channel and client id. The refresher keeps them alive in
/// the store; a node that dies stops refreshing and its entries expire.
#[derive(Default)]
pub struct LocalPresence {
    channels: Mutex<HashMap<String, HashMap<String, ClientInfo>>>,
}

impl LocalPresence {
    fn insert(&self, channel: &str, member: ClientInfo) {
        let mut channels = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        if channels.entry(channel.to_owned()).or_default().insert(member.client.clone(), member).is_none() {
            metric::presence_members().increment(1.0);
        }
    }

    fn remove(&self, channel: &str, client: &str) {
        let mut channels = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        let Some(members) = channels.get_mut(channel) else { return };
        if members.remove(client).is_some() {
            metric::presence_members().decrement(1.0);
        }
        if members.is_empty() {
            channels.remove(channel);
        }
    }

    fn contains(&self, channel: &str, client: &str) -> Option<ClientInfo> {
        let channels = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        channels.get(channel)?.get(client).cloned()
    }

    fn snapshot(&self) -> Vec<(String, Vec<String>)> {
        let channels = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        channels.iter().map(|(channel, members)| (channel.clone(), members.keys().cloned().collect())).collect()
    }
}

/// Enters `member` in `channel`'s presence (announcing a join where the
/// namespace has `join_leave`).
pub async fn enter(node: &Node, channel: &str, namespace: &NamespaceConfig, member: ClientInfo) -> Result<(), Refusal> {
    // Local first: a refresh round must not miss an entry that is in the store.
    node.presence.insert(channel, member.clone());
    let ttl = node.config.broker.presence_ttl;
    if let Err(e) = node.stores.presence.add(channel, std::slice::from_ref(&member), ttl, namespace.join_leave).await {
        node.presence.remove(channel, &member.client);
        return Err(e.into());
    }
    Ok(())
}

/// Takes `client` out of `channel`'s presence (announcing a leave where
/// the namespace has `join_leave`). Best effort: an entry that stays for
/// want of Redis expires with its TTL.
pub async fn exit(node: &Node, channel: &str, namespace: &NamespaceConfig, client: &str) {
    node.presence.remove(channel, client);
    if let Err(e) = node.stores.presence.remove(channel, client, namespace.join_leave).await {
        debug!(%channel, error = %e, "cannot remove a presence entry; it will expire");
    }
}

/// Refreshes this node's entries every third of `broker.presence_ttl`,
/// until `stop`.
pub async fn keep_fresh(node: Arc<Node>, stop: CancellationToken) {
    let ttl = node.config.broker.presence_ttl;
    let mut tick = tokio::time::interval(ttl / 3);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await; // the first tick is immediate; entries were just added
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        refresh_all(&node, ttl).await;
    }
}

/// One refresh round: every channel with local entries, a few at a time.
pub async fn refresh_all(node: &Arc<Node>, ttl: Duration) {
    let mut rounds = tokio::task::JoinSet::new();
    for (channel, clients) in node.presence.snapshot() {
        if rounds.len() >= REFRESH_CONCURRENCY {
            rounds.join_next().await;
        }
        let node = node.clone();
        rounds.spawn(async move { refresh_channel(&node, &channel, &clients, ttl).await });
    }
    while rounds.join_next().await.is_some() {}
}

async fn refresh_channel(node: &Node, channel: &str, clients: &[String], ttl: Duration) {
    let Ok((_, namespace)) = resolve(node, channel) else { return };
    let announce = namespace.join_leave;
    let missing = match node.stores.presence.refresh(channel, clients, ttl, announce).await {
        Ok(missing) => missing,
        Err(e) => {
            metric::presence_refresh_errors().increment(1);
            debug!(%channel, error = %e, "cannot refresh presence");
            return;
        }
    };
    // Gone from the store but still here (the store lost it, or this node
    // stalled past the TTL): enter them again.
    let back: Vec<ClientInfo> = missing.iter().filter_map(|client| node.presence.contains(channel, client)).collect();
    if !back.is_empty()
        && let Err(e) = node.stores.presence.add(channel, &back, ttl, announce).await
    {
        metric::presence_refresh_errors().increment(1);
        debug!(%channel, error = %e, "cannot restore presence entries");
    }
}

/// Who is in `channel`, by client id. 107 for a namespace without `presence`.
pub async fn presence(node: &Node, channel: &str) -> Result<PresenceResult, Refusal> {
    let members = members(node, channel).await?;
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
    Ok(node.stores.presence.members(channel, namespace.join_leave).await?)
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

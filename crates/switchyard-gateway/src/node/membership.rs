//! Who is on a channel, cluster-wide, as webhooks see it: a channel's
//! occupancy (occupied when the cluster's first subscriber arrives, vacated
//! when its last leaves) and its members' arrivals and departures.
//!
//! Occupancy is kept in the presence store, on a companion channel
//! (`occupancy=<channel>`) with one entry per node that has subscribers,
//! counted per "user" (all entries share the empty user): the store reports
//! the first entry's arrival and the last one's departure to exactly one
//! caller, which queues the webhook. A node that dies stops refreshing
//! its entries; the node that finds them expired (refreshing the same
//! channel, or sweeping the store's index of overdue channels) reports the
//! departure, so a channel held only by a killed node is vacated once its
//! entry's TTL is over.

use super::Node;
use crate::webhooks::Hook;
use switchyard_broker::{Announce, Change};
use switchyard_core::channel::Channel;
use switchyard_core::clock::unix_micros;
use switchyard_core::pusher;
use switchyard_proto::v1::ClientInfo;
use tracing::debug;

const OCCUPANCY_PREFIX: &str = "occupancy=";

/// The companion channel that holds `channel`'s occupancy.
pub fn occupancy_channel(channel: &str) -> String {
    format!("{OCCUPANCY_PREFIX}{channel}")
}

/// How the presence store counts and announces `channel`'s entries: per
/// node for occupancy, per user on Pusher presence channels, per client
/// elsewhere (announced where the namespace has `join_leave`). None for a
/// channel that keeps no presence.
pub fn presence_mode(node: &Node, channel: &str) -> Option<Announce> {
    if channel.starts_with(OCCUPANCY_PREFIX) {
        return Some(Announce::UsersQuietly);
    }
    if let Some((_, name)) = pusher::app_channel(channel) {
        return name.starts_with("presence-").then_some(Announce::Users);
    }
    let parsed = Channel::parse(channel).ok()?;
    let namespace = node.config.namespace(parsed.namespace())?;
    namespace.tracks_presence().then_some(Announce::clients(namespace.join_leave))
}

/// Whether `channel`'s entries must be swept by the cluster when their
/// node dies (someone wants the webhooks that departure makes).
pub fn needs_sweeping(node: &Node, channel: &str) -> bool {
    match channel.strip_prefix(OCCUPANCY_PREFIX) {
        Some(_) => true,
        None => node.webhooks.wants(channel, "member_removed"),
    }
}

/// Queues the webhooks of `changes`, which the presence store reported
/// for `channel` (this node is the only one told of them).
pub fn report(node: &Node, channel: &str, changes: &[Change]) {
    if changes.is_empty() {
        return;
    }
    if let Some(watched) = channel.strip_prefix(OCCUPANCY_PREFIX) {
        for change in changes {
            node.webhooks.announce(watched, if change.joined { Hook::Occupied } else { Hook::Vacated });
        }
        return;
    }
    for change in changes {
        let user_id = change.member.user.clone();
        let hook = if change.joined { Hook::MemberAdded { user_id } } else { Hook::MemberRemoved { user_id } };
        node.webhooks.announce(channel, hook);
    }
}

/// Indexes `channel` for the cluster to sweep should this node die before
/// its next refresh round (which indexes it again).
pub async fn index(node: &Node, channel: &str) {
    let until = unix_micros() / 1000 + node.config.broker.presence_ttl.as_millis() as u64;
    if let Err(e) = node.stores.presence.index(&[channel.to_owned()], until).await {
        debug!(%channel, error = %e, "cannot index the channel for sweeping");
    }
}

/// This node's entry in a channel's occupancy.
fn node_entry(node: &Node) -> ClientInfo {
    ClientInfo { client: node.name.clone(), ..ClientInfo::default() }
}

/// The node's first subscriber of `channel` arrived: its occupancy entry,
/// where someone wants the webhooks.
pub async fn occupy(node: &Node, channel: &str) {
    if !node.webhooks.wants_occupancy(channel) {
        return;
    }
    let companion = occupancy_channel(channel);
    let entry = node_entry(node);
    node.presence.insert(&companion, entry.clone());
    let ttl = node.config.broker.presence_ttl;
    match node.stores.presence.add(&companion, &[entry], ttl, Announce::UsersQuietly).await {
        Ok(changes) => {
            report(node, &companion, &changes);
            index(node, &companion).await;
        }
        // The refresh round enters it again.
        Err(e) => debug!(%channel, error = %e, "cannot enter the channel's occupancy"),
    }
}

/// The node's last subscriber of `channel` left.
pub async fn vacate(node: &Node, channel: &str) {
    if !node.webhooks.wants_occupancy(channel) {
        return;
    }
    let companion = occupancy_channel(channel);
    node.presence.remove(&companion, &node.name);
    match node.stores.presence.remove(&companion, &node.name, Announce::UsersQuietly).await {
        Ok(changes) => report(node, &companion, &changes),
        // Its entry expires with its TTL, and a sweep reports it.
        Err(e) => debug!(%channel, error = %e, "cannot leave the channel's occupancy"),
    }
}

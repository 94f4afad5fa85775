//! Who is subscribed to which channel, across every node.

use crate::broker::BrokerError;
use async_trait::async_trait;
use std::time::Duration;
use switchyard_proto::v1::ClientInfo;

/// Presence of the channels of `presence` and `join_leave` namespaces.
///
/// Guarantees:
/// - an entry lives until `ttl` after it was last added; the node that
///   holds the client adds it again well within that (so a node that dies
///   leaves nothing behind once its entries expire);
/// - [`PresenceStore::remove`] takes an entry away at once;
/// - with `announce`, every entry that appears is announced once as a
///   `join`, and every entry that goes (removed, or found expired by any
///   node) once as a `leave`, to the channel's subscribers on every node,
///   through the broker's delivery of the channel (an Envelope with `join`
///   or `leave` set). The check and the announcement are one atomic step,
///   so two nodes never announce the same event.
#[async_trait]
pub trait PresenceStore: Send + Sync + 'static {
    /// Adds `members` to `channel`, or refreshes them, each until `ttl`
    /// from now. Expired entries of the channel are removed first.
    async fn add(
        &self,
        channel: &str,
        members: &[ClientInfo],
        ttl: Duration,
        announce: bool,
    ) -> Result<(), BrokerError>;

    /// Extends the entries of `clients` that are still there until `ttl`
    /// from now, after removing expired entries; returns the clients whose
    /// entry was gone (expired meanwhile, or lost by the store), for their
    /// node to add again if they are still subscribed. Never announces a
    /// join: a refresh racing a removal must not bring a member back.
    async fn refresh(
        &self,
        channel: &str,
        clients: &[String],
        ttl: Duration,
        announce: bool,
    ) -> Result<Vec<String>, BrokerError>;

    /// Removes `client`'s entry from `channel`, if there is one.
    async fn remove(&self, channel: &str, client: &str, announce: bool) -> Result<(), BrokerError>;

    /// The current members of `channel`, after removing expired entries.
    async fn members(&self, channel: &str, announce: bool) -> Result<Vec<ClientInfo>, BrokerError>;
}

/// The `presence_stats` of a member list: clients, and distinct users.
pub fn stats(members: &[ClientInfo]) -> (usize, usize) {
    let users: std::collections::HashSet<&str> = members.iter().map(|m| m.user.as_str()).collect();
    (members.len(), users.len())
}

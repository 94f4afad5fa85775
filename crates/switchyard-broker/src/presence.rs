//! Who is subscribed to which channel, across every node.

use crate::broker::BrokerError;
use async_trait::async_trait;
use std::time::Duration;
use switchyard_proto::v1::ClientInfo;

/// How presence changes are announced to a channel's subscribers (an
/// Envelope with `join` or `leave` set, through the broker's delivery of
/// the channel), and at which level they are reported back to the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Announce {
    /// Changes per client, reported to the caller only.
    Quietly,
    /// Each client that appears and goes, announced and reported.
    Clients,
    /// Each user whose first client appears and whose last client goes
    /// (Pusher's presence channels), announced and reported.
    Users,
    /// As `Users`, reported to the caller only (a channel's occupancy).
    UsersQuietly,
}

impl Announce {
    /// `Clients` where a namespace announces joins and leaves, else `Quietly`.
    pub fn clients(announce: bool) -> Self {
        if announce { Announce::Clients } else { Announce::Quietly }
    }
}

/// A change a call made (or found, sweeping expired entries): exactly one
/// caller in the cluster is told of each.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// It appeared (else it went).
    pub joined: bool,
    /// The entry (for user-level changes: the user's first or last one).
    pub member: ClientInfo,
}

/// What a refresh found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Refreshed {
    /// The clients whose entry was gone.
    pub missing: Vec<String>,
    /// Entries found expired meanwhile.
    pub changes: Vec<Change>,
}

/// Presence of the channels of `presence` and `join_leave` namespaces, and
/// of Pusher apps' channels.
///
/// Guarantees:
/// - an entry lives until `ttl` after it was last added; the node that
///   holds the client adds it again well within that (so a node that dies
///   leaves nothing behind once its entries expire);
/// - [`PresenceStore::remove`] takes an entry away at once;
/// - every entry that appears, and every entry that goes (removed, or
///   found expired by any node), is a [`Change`] reported to exactly one
///   caller (with `Users`, the user's first entry and last one); where
///   [`Announce`] says so, it is also announced once as a `join` or
///   `leave` to the channel's subscribers on every node. The check, the
///   announcement and the report are one atomic step, so two nodes never
///   see or announce the same change.
#[async_trait]
pub trait PresenceStore: Send + Sync + 'static {
    /// Adds `members` to `channel`, or refreshes them, each until `ttl`
    /// from now. Expired entries of the channel are removed first.
    async fn add(
        &self,
        channel: &str,
        members: &[ClientInfo],
        ttl: Duration,
        announce: Announce,
    ) -> Result<Vec<Change>, BrokerError>;

    /// Extends the entries of `clients` that are still there until `ttl`
    /// from now, after removing expired entries; reports the clients whose
    /// entry was gone (expired meanwhile, or lost by the store), for their
    /// node to add again if they are still subscribed. Never announces a
    /// join: a refresh racing a removal must not bring a member back.
    async fn refresh(
        &self,
        channel: &str,
        clients: &[String],
        ttl: Duration,
        announce: Announce,
    ) -> Result<Refreshed, BrokerError>;

    /// Removes `client`'s entry from `channel`, if there is one.
    async fn remove(&self, channel: &str, client: &str, announce: Announce) -> Result<Vec<Change>, BrokerError>;

    /// The current members of `channel`, after removing expired entries
    /// (whose changes are reported too).
    async fn members(&self, channel: &str, announce: Announce) -> Result<(Vec<ClientInfo>, Vec<Change>), BrokerError>;

    /// Notes that `channels` have entries that live until `until_ms` (Unix
    /// ms) unless refreshed: if their node dies, another sweeps them
    /// ([`PresenceStore::overdue`]). A store in one process has no other
    /// node to do it, and keeps no index.
    async fn index(&self, _channels: &[String], _until_ms: u64) -> Result<(), BrokerError> {
        Ok(())
    }

    /// Up to `limit` indexed channels whose entries were due by `now_ms`
    /// and that no node indexed again: to sweep ([`PresenceStore::members`]).
    async fn overdue(&self, _now_ms: u64, _limit: usize) -> Result<Vec<String>, BrokerError> {
        Ok(Vec::new())
    }

    /// Takes `channel` out of the index (found empty by a sweep at
    /// `now_ms`), unless a node indexed it again since.
    async fn unindex(&self, _channel: &str, _now_ms: u64) -> Result<(), BrokerError> {
        Ok(())
    }
}

/// The `presence_stats` of a member list: clients, and distinct users.
pub fn stats(members: &[ClientInfo]) -> (usize, usize) {
    let users: std::collections::HashSet<&str> = members.iter().map(|m| m.user.as_str()).collect();
    (members.len(), users.len())
}

//! Presence in this process: the single-node default, with the same
//! expiry and announcements as in Redis.

use crate::broker::{BrokerError, PublicationSink};
use crate::presence::{Announce, Change, PresenceStore, Refreshed};
use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use switchyard_core::clock::unix_micros;
use switchyard_proto::v1::{ClientInfo, Envelope};
use tokio::time::Instant;

type Entries = HashMap<String, (ClientInfo, Instant)>;

pub struct MemoryPresence {
    /// Announcements go where publications go.
    sink: Arc<dyn PublicationSink>,
    /// Per channel, per client: the member and when its entry expires.
    channels: Mutex<HashMap<String, Entries>>,
}

/// Whether `entries` holds another entry of `member`'s user.
fn user_present(entries: &Entries, member: &ClientInfo) -> bool {
    entries.values().any(|(m, _)| m.user == member.user && m.client != member.client)
}

impl MemoryPresence {
    pub fn new(sink: Arc<dyn PublicationSink>) -> Self {
        MemoryPresence { sink, channels: Mutex::default() }
    }

    /// Removes the expired entries of `channel`, returning the changes
    /// (to be announced once the lock is released).
    fn sweep(entries: &mut Entries, announce: Announce) -> Vec<Change> {
        let now = Instant::now();
        let expired: Vec<String> = entries.iter().filter(|(_, (_, at))| *at <= now).map(|(c, _)| c.clone()).collect();
        let mut changes = Vec::new();
        for client in expired {
            if let Some((member, _)) = entries.remove(&client) {
                changes.extend(Self::left(entries, member, announce));
            }
        }
        changes
    }

    /// The change `member`'s going makes, at `announce`'s level.
    fn left(entries: &Entries, member: ClientInfo, announce: Announce) -> Option<Change> {
        let per_user = matches!(announce, Announce::Users | Announce::UsersQuietly);
        (!per_user || !entries.values().any(|(m, _)| m.user == member.user)).then_some(Change { joined: false, member })
    }

    fn announce(&self, channel: &str, announce: Announce, changes: &[Change]) {
        if !matches!(announce, Announce::Clients | Announce::Users) {
            return;
        }
        for change in changes {
            let member = Some(change.member.clone());
            let (join, leave) = if change.joined { (member, None) } else { (None, member) };
            // A user's arrival is not announced to the connection that
            // brought it: it learns the members from its subscribe's answer.
            let except_socket = match (announce, change.joined) {
                (Announce::Users, true) => change.member.client.clone(),
                _ => String::new(),
            };
            self.sink.deliver(Envelope {
                channel: channel.to_owned(),
                published_at_us: unix_micros(),
                join,
                leave,
                except_socket,
                ..Default::default()
            });
        }
    }
}

#[async_trait]
impl PresenceStore for MemoryPresence {
    async fn add(
        &self,
        channel: &str,
        members: &[ClientInfo],
        ttl: Duration,
        announce: Announce,
    ) -> Result<Vec<Change>, BrokerError> {
        let per_user = matches!(announce, Announce::Users | Announce::UsersQuietly);
        let changes = {
            let mut channels = self.channels.lock().unwrap_or_else(|e| e.into_inner());
            let entries = channels.entry(channel.to_owned()).or_default();
            let mut changes = Self::sweep(entries, announce);
            let expires = Instant::now() + ttl;
            for member in members {
                let user_was_there = per_user && user_present(entries, member);
                if entries.insert(member.client.clone(), (member.clone(), expires)).is_none() && !user_was_there {
                    changes.push(Change { joined: true, member: member.clone() });
                }
            }
            changes
        };
        self.announce(channel, announce, &changes);
        Ok(changes)
    }

    async fn refresh(
        &self,
        channel: &str,
        clients: &[String],
        ttl: Duration,
        announce: Announce,
    ) -> Result<Refreshed, BrokerError> {
        let refreshed = {
            let mut channels = self.channels.lock().unwrap_or_else(|e| e.into_inner());
            let entries = channels.entry(channel.to_owned()).or_default();
            let changes = Self::sweep(entries, announce);
            let expires = Instant::now() + ttl;
            let mut missing = Vec::new();
            for client in clients {
                match entries.get_mut(client) {
                    Some((_, at)) => *at = expires,
                    None => missing.push(client.clone()),
                }
            }
            if entries.is_empty() {
                channels.remove(channel);
            }
            Refreshed { missing, changes }
        };
        self.announce(channel, announce, &refreshed.changes);
        Ok(refreshed)
    }

    async fn remove(&self, channel: &str, client: &str, announce: Announce) -> Result<Vec<Change>, BrokerError> {
        let changes = {
            let mut channels = self.channels.lock().unwrap_or_else(|e| e.into_inner());
            let Some(entries) = channels.get_mut(channel) else { return Ok(Vec::new()) };
            let changes: Vec<Change> = match entries.remove(client) {
                Some((member, _)) => Self::left(entries, member, announce).into_iter().collect(),
                None => Vec::new(),
            };
            if entries.is_empty() {
                channels.remove(channel);
            }
            changes
        };
        self.announce(channel, announce, &changes);
        Ok(changes)
    }

    async fn members(&self, channel: &str, announce: Announce) -> Result<(Vec<ClientInfo>, Vec<Change>), BrokerError> {
        let (members, changes) = {
            let mut channels = self.channels.lock().unwrap_or_else(|e| e.into_inner());
            let Some(entries) = channels.get_mut(channel) else { return Ok((Vec::new(), Vec::new())) };
            let changes = Self::sweep(entries, announce);
            let members: Vec<ClientInfo> = entries.values().map(|(m, _)| m.clone()).collect();
            if entries.is_empty() {
                channels.remove(channel);
            }
            (members, changes)
        };
        self.announce(channel, announce, &changes);
        Ok((members, changes))
    }
}

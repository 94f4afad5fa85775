//! Presence in this process: the single-node default, with the same
//! expiry and announcements as in Redis.

use crate::broker::{BrokerError, PublicationSink};
use crate::presence::PresenceStore;
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

impl MemoryPresence {
    pub fn new(sink: Arc<dyn PublicationSink>) -> Self {
        MemoryPresence { sink, channels: Mutex::default() }
    }

    /// Removes the expired entries of `channel`, returning them (to be
    /// announced once the lock is released).
    fn sweep(entries: &mut Entries) -> Vec<ClientInfo> {
        let now = Instant::now();
        let expired: Vec<String> = entries.iter().filter(|(_, (_, at))| *at <= now).map(|(c, _)| c.clone()).collect();
        expired.into_iter().filter_map(|c| entries.remove(&c)).map(|(member, _)| member).collect()
    }

    fn announce(&self, channel: &str, joins: Vec<ClientInfo>, leaves: Vec<ClientInfo>) {
        let event = |join: Option<ClientInfo>, leave: Option<ClientInfo>| Envelope {
            channel: channel.to_owned(),
            published_at_us: unix_micros(),
            join,
            leave,
            ..Default::default()
        };
        for member in leaves {
            self.sink.deliver(event(None, Some(member)));
        }
        for member in joins {
            self.sink.deliver(event(Some(member), None));
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
        announce: bool,
    ) -> Result<(), BrokerError> {
        let (joins, leaves) = {
            let mut channels = self.channels.lock().unwrap_or_else(|e| e.into_inner());
            let entries = channels.entry(channel.to_owned()).or_default();
            let leaves = Self::sweep(entries);
            let expires = Instant::now() + ttl;
            let mut joins = Vec::new();
            for member in members {
                if entries.insert(member.client.clone(), (member.clone(), expires)).is_none() {
                    joins.push(member.clone());
                }
            }
            (joins, leaves)
        };
        if announce {
            self.announce(channel, joins, leaves);
        }
        Ok(())
    }

    async fn refresh(
        &self,
        channel: &str,
        clients: &[String],
        ttl: Duration,
        announce: bool,
    ) -> Result<Vec<String>, BrokerError> {
        let (missing, leaves) = {
            let mut channels = self.channels.lock().unwrap_or_else(|e| e.into_inner());
            let entries = channels.entry(channel.to_owned()).or_default();
            let leaves = Self::sweep(entries);
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
            (missing, leaves)
        };
        if announce {
            self.announce(channel, Vec::new(), leaves);
        }
        Ok(missing)
    }

    async fn remove(&self, channel: &str, client: &str, announce: bool) -> Result<(), BrokerError> {
        let removed = {
            let mut channels = self.channels.lock().unwrap_or_else(|e| e.into_inner());
            let Some(entries) = channels.get_mut(channel) else { return Ok(()) };
            let removed = entries.remove(client);
            if entries.is_empty() {
                channels.remove(channel);
            }
            removed
        };
        if announce && let Some((member, _)) = removed {
            self.announce(channel, Vec::new(), vec![member]);
        }
        Ok(())
    }

    async fn members(&self, channel: &str, announce: bool) -> Result<Vec<ClientInfo>, BrokerError> {
        let (members, leaves) = {
            let mut channels = self.channels.lock().unwrap_or_else(|e| e.into_inner());
            let Some(entries) = channels.get_mut(channel) else { return Ok(Vec::new()) };
            let leaves = Self::sweep(entries);
            let members: Vec<ClientInfo> = entries.values().map(|(m, _)| m.clone()).collect();
            if entries.is_empty() {
                channels.remove(channel);
            }
            (members, leaves)
        };
        if announce {
            self.announce(channel, Vec::new(), leaves);
        }
        Ok(members)
    }
}

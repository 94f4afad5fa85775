//! Presence in Redis, through the function library (`library.lua`): per
//! channel a hash of members and a sorted set of their expiry times, in the
//! channel's slot. Expired entries are swept, and joins and leaves
//! announced, inside the same function call, so each is announced once.

use super::connection::Commands;
use super::library;
use super::unavailable;
use crate::broker::BrokerError;
use crate::presence::{Announce, Change, PresenceStore, Refreshed};
use async_trait::async_trait;
use bytes::Bytes;
use prost::Message as _;
use std::time::Duration;
use switchyard_core::metric;
use switchyard_proto::v1::ClientInfo;

pub struct RedisPresence {
    pub(super) commands: Commands,
    /// The key of the channels to sweep when their node dies.
    pub(super) index: String,
}

impl RedisPresence {
    async fn call<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, BrokerError> {
        let mut conn = self.commands.clone();
        cmd.query_async(&mut conn).await.map_err(|e| {
            metric::broker_errors("presence").increment(1);
            if library::is_missing(&e) {
                // The health loop reloads the library; until then: try again.
                BrokerError::Unavailable(e.to_string())
            } else {
                unavailable(e)
            }
        })
    }
}

fn mode(announce: Announce) -> &'static str {
    match announce {
        Announce::Quietly => "0",
        Announce::Clients => "1",
        Announce::Users => "2",
        Announce::UsersQuietly => "3",
    }
}

/// The changes a call reports: `j` or `l`, then the encoded member. An
/// entry that does not decode (written by hand, another version) is left
/// out rather than failing the whole answer.
fn changes(flat: Vec<Vec<u8>>) -> Vec<Change> {
    flat.chunks_exact(2)
        .filter_map(|pair| {
            let member = ClientInfo::decode(Bytes::from(pair[1].clone())).ok()?;
            Some(Change { joined: pair[0] == b"j", member })
        })
        .collect()
}

fn members(encoded: Vec<Vec<u8>>) -> Vec<ClientInfo> {
    encoded.into_iter().filter_map(|m| ClientInfo::decode(Bytes::from(m)).ok()).collect()
}

#[async_trait]
impl PresenceStore for RedisPresence {
    async fn add(
        &self,
        channel: &str,
        members: &[ClientInfo],
        ttl: Duration,
        announce: Announce,
    ) -> Result<Vec<Change>, BrokerError> {
        let mut cmd = redis::cmd("FCALL");
        cmd.arg("switchyard_presence_add").arg(1).arg(channel).arg(ttl.as_millis().max(1) as u64).arg(mode(announce));
        for member in members {
            cmd.arg(&member.client).arg(member.encode_to_vec());
        }
        let (_, flat): (i64, Vec<Vec<u8>>) = self.call(&cmd).await?;
        Ok(changes(flat))
    }

    async fn refresh(
        &self,
        channel: &str,
        clients: &[String],
        ttl: Duration,
        announce: Announce,
    ) -> Result<Refreshed, BrokerError> {
        if clients.is_empty() {
            return Ok(Refreshed::default());
        }
        let mut cmd = redis::cmd("FCALL");
        cmd.arg("switchyard_presence_refresh")
            .arg(1)
            .arg(channel)
            .arg(ttl.as_millis().max(1) as u64)
            .arg(mode(announce));
        cmd.arg(clients);
        let (missing, flat): (Vec<String>, Vec<Vec<u8>>) = self.call(&cmd).await?;
        Ok(Refreshed { missing, changes: changes(flat) })
    }

    async fn remove(&self, channel: &str, client: &str, announce: Announce) -> Result<Vec<Change>, BrokerError> {
        let mut cmd = redis::cmd("FCALL");
        cmd.arg("switchyard_presence_remove").arg(1).arg(channel).arg(client).arg(mode(announce));
        let (_, flat): (i64, Vec<Vec<u8>>) = self.call(&cmd).await?;
        Ok(changes(flat))
    }

    async fn members(&self, channel: &str, announce: Announce) -> Result<(Vec<ClientInfo>, Vec<Change>), BrokerError> {
        let mut cmd = redis::cmd("FCALL");
        cmd.arg("switchyard_presence_get").arg(1).arg(channel).arg(mode(announce));
        let (encoded, flat): (Vec<Vec<u8>>, Vec<Vec<u8>>) = self.call(&cmd).await?;
        Ok((members(encoded), changes(flat)))
    }

    async fn index(&self, channels: &[String], until_ms: u64) -> Result<(), BrokerError> {
        if channels.is_empty() {
            return Ok(());
        }
        let mut cmd = redis::cmd("ZADD");
        cmd.arg(&self.index).arg("GT");
        for channel in channels {
            cmd.arg(until_ms).arg(channel);
        }
        self.call::<()>(&cmd).await
    }

    async fn overdue(&self, now_ms: u64, limit: usize) -> Result<Vec<String>, BrokerError> {
        let mut cmd = redis::cmd("ZRANGEBYSCORE");
        cmd.arg(&self.index).arg("-inf").arg(now_ms).arg("LIMIT").arg(0).arg(limit);
        self.call(&cmd).await
    }

    async fn unindex(&self, channel: &str, now_ms: u64) -> Result<(), BrokerError> {
        let mut cmd = redis::cmd("FCALL");
        cmd.arg("switchyard_presence_unindex").arg(1).arg(&self.index).arg(channel).arg(now_ms);
        self.call::<()>(&cmd).await
    }
}

//! Presence in Redis, through the function library (`library.lua`): per
//! channel a hash of members and a sorted set of their expiry times, in the
//! channel's slot. Expired entries are swept, and joins and leaves
//! announced, inside the same function call, so each is announced once.

use super::connection::Commands;
use super::library;
use super::unavailable;
use crate::broker::BrokerError;
use crate::presence::PresenceStore;
use async_trait::async_trait;
use bytes::Bytes;
use prost::Message as _;
use std::time::Duration;
use switchyard_core::metric;
use switchyard_proto::v1::ClientInfo;

pub struct RedisPresence {
    pub(super) commands: Commands,
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

fn flag(announce: bool) -> &'static str {
    if announce { "1" } else { "0" }
}

#[async_trait]
impl PresenceStore for RedisPresence {
    async fn add(
        &self,
        channel: &str,
        members: &[ClientInfo],
        ttl: Duration,
        announce: bool,
    ) -> Result<(), BrokerError> {
        let mut cmd = redis::cmd("FCALL");
        cmd.arg("switchyard_presence_add").arg(1).arg(channel).arg(ttl.as_millis().max(1) as u64).arg(flag(announce));
        for member in members {
            cmd.arg(&member.client).arg(member.encode_to_vec());
        }
        self.call::<()>(&cmd).await
    }

    async fn refresh(
        &self,
        channel: &str,
        clients: &[String],
        ttl: Duration,
        announce: bool,
    ) -> Result<Vec<String>, BrokerError> {
        if clients.is_empty() {
            return Ok(Vec::new());
        }
        let mut cmd = redis::cmd("FCALL");
        cmd.arg("switchyard_presence_refresh")
            .arg(1)
            .arg(channel)
            .arg(ttl.as_millis().max(1) as u64)
            .arg(flag(announce));
        cmd.arg(clients);
        self.call(&cmd).await
    }

    async fn remove(&self, channel: &str, client: &str, announce: bool) -> Result<(), BrokerError> {
        let mut cmd = redis::cmd("FCALL");
        cmd.arg("switchyard_presence_remove").arg(1).arg(channel).arg(client).arg(flag(announce));
        self.call::<()>(&cmd).await
    }

    async fn members(&self, channel: &str, announce: bool) -> Result<Vec<ClientInfo>, BrokerError> {
        let mut cmd = redis::cmd("FCALL");
        cmd.arg("switchyard_presence_get").arg(1).arg(channel).arg(flag(announce));
        let encoded: Vec<Vec<u8>> = self.call(&cmd).await?;
        // An entry that does not decode (written by hand, another version)
        // is left out rather than failing the whole answer.
        Ok(encoded.into_iter().filter_map(|m| ClientInfo::decode(Bytes::from(m)).ok()).collect())
    }
}

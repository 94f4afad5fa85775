//! Leases on Redis: one key per lease holding its holder, with the lease's
//! expiry; taken, renewed and released by the function library, so that
//! checking the holder and changing the key are one step.

use super::connection::Commands;
use super::keys::Keys;
use super::unavailable;
use crate::broker::BrokerError;
use crate::leases::LeaseStore;
use async_trait::async_trait;
use std::time::Duration;

pub struct RedisLeases {
    pub(super) commands: Commands,
    pub(super) keys: Keys,
}

#[async_trait]
impl LeaseStore for RedisLeases {
    async fn acquire(&self, name: &str, holder: &str, ttl: Duration) -> Result<bool, BrokerError> {
        let mut conn = self.commands.clone();
        let taken: i64 = redis::cmd("FCALL")
            .arg("switchyard_lease")
            .arg(1)
            .arg(self.keys.lease(name))
            .arg(holder)
            .arg(ttl.as_millis().max(1) as u64)
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(taken == 1)
    }

    async fn release(&self, name: &str, holder: &str) -> Result<(), BrokerError> {
        let mut conn = self.commands.clone();
        let _: i64 = redis::cmd("FCALL")
            .arg("switchyard_lease_release")
            .arg(1)
            .arg(self.keys.lease(name))
            .arg(holder)
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(())
    }
}

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

impl RedisLeases {
    /// `FCALL <function> 1 <the lease's key> <args…>`: 1 or 0.
    async fn call(&self, function: &str, name: &str, args: &[&str]) -> Result<i64, BrokerError> {
        let mut conn = self.commands.clone();
        let mut cmd = redis::cmd("FCALL");
        cmd.arg(function).arg(1).arg(self.keys.lease(name)).arg(args);
        cmd.query_async(&mut conn).await.map_err(unavailable)
    }
}

#[async_trait]
impl LeaseStore for RedisLeases {
    async fn acquire(&self, name: &str, holder: &str, ttl: Duration) -> Result<bool, BrokerError> {
        let ttl = ttl.as_millis().max(1).to_string();
        Ok(self.call("switchyard_lease", name, &[holder, &ttl]).await? == 1)
    }

    async fn release(&self, name: &str, holder: &str) -> Result<(), BrokerError> {
        self.call("switchyard_lease_release", name, &[holder]).await.map(|_| ())
    }
}

//! Saved sessions in Redis: one string key per token, with a TTL.

use super::connection::Commands;
use super::keys::Keys;
use super::unavailable;
use crate::broker::BrokerError;
use crate::sessions::SessionStore;
use async_trait::async_trait;
use std::time::Duration;
use switchyard_core::metric;

pub struct RedisSessions {
    pub(super) commands: Commands,
    pub(super) keys: Keys,
}

#[async_trait]
impl SessionStore for RedisSessions {
    async fn save(&self, token: &str, state: &[u8], ttl: Duration, update_only: bool) -> Result<(), BrokerError> {
        let mut conn = self.commands.clone();
        let ttl_ms = ttl.as_millis().max(1) as u64;
        let mut set = redis::cmd("SET");
        set.arg(self.keys.session(token)).arg(state).arg("PX").arg(ttl_ms);
        if update_only {
            set.arg("XX");
        }
        // With XX, a missing key answers nil: not an error.
        set.query_async::<Option<String>>(&mut conn).await.map(|_| ()).map_err(|e| {
            metric::broker_errors("session").increment(1);
            unavailable(e)
        })
    }

    async fn take(&self, token: &str) -> Result<Option<Vec<u8>>, BrokerError> {
        let mut conn = self.commands.clone();
        redis::cmd("GETDEL").arg(self.keys.session(token)).query_async(&mut conn).await.map_err(unavailable)
    }

    async fn get(&self, token: &str) -> Result<Option<Vec<u8>>, BrokerError> {
        let mut conn = self.commands.clone();
        redis::cmd("GET").arg(self.keys.session(token)).query_async(&mut conn).await.map_err(unavailable)
    }
}

//! Saved client sessions, for `connect.resume` on any node.

use crate::broker::BrokerError;
use async_trait::async_trait;
use std::time::Duration;

/// Where sessions wait between a connection and its resume.
///
/// Guarantee: a saved session can be taken once, from any node, until its
/// `ttl` runs out; a second take finds nothing. A save with `update_only`
/// never brings back a session that was taken (a late save of the
/// connection a client already resumed from must not revive it). Saves are
/// best effort: after a broker outage a session may be gone, and the client
/// subscribes again with `recover`.
#[async_trait]
pub trait SessionStore: Send + Sync + 'static {
    /// Stores `state` under `token` for `ttl`. With `update_only`, only if
    /// it is still there.
    async fn save(&self, token: &str, state: &[u8], ttl: Duration, update_only: bool) -> Result<(), BrokerError>;

    /// Takes (reads and deletes) a stored session.
    async fn take(&self, token: &str) -> Result<Option<Vec<u8>>, BrokerError>;

    /// Reads a stored session and leaves it there (a resume checks whose it
    /// is before it takes it: a refused resume must not spend the token).
    async fn get(&self, token: &str) -> Result<Option<Vec<u8>>, BrokerError>;
}

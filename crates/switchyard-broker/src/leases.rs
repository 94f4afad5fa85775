//! Leases: which node holds a piece of cluster-wide work (a consumer's
//! partition of the application's queue) right now.

use crate::broker::BrokerError;
use async_trait::async_trait;
use std::time::Duration;

/// Named leases, each held by at most one holder at a time.
///
/// Guarantee: `acquire` answers true to one holder at a time for a name:
/// a lease taken (or renewed) by `holder` for `ttl` is refused to every
/// other holder until `ttl` has passed since that call reached the store,
/// or until `holder` releases it. A holder that stops renewing loses it
/// after `ttl`; it must itself stop working before that (it cannot be told).
#[async_trait]
pub trait LeaseStore: Send + Sync + 'static {
    /// Takes the lease `name` for `holder`, or renews it if `holder` has it,
    /// for `ttl`. False if another holder has it.
    async fn acquire(&self, name: &str, holder: &str, ttl: Duration) -> Result<bool, BrokerError>;

    /// Gives the lease up, if `holder` has it.
    async fn release(&self, name: &str, holder: &str) -> Result<(), BrokerError>;
}

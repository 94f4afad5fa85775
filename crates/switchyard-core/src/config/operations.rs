//! How the node behaves in a cluster's life: rebalancing (`[rebalance]`),
//! shutting down (`[shutdown]`), and what only tests turn on
//! (`[testing]`).

use super::{ConfigError, problem};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Active rebalancing: a node that holds more than its share of the
/// cluster's connections sheds the excess, slowly, with close 4012, so that
/// clients reconnect (through the balancer, to emptier nodes) and resume.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RebalanceConfig {
    /// Off by default: it closes live connections, which only clients that
    /// resume at once on 4012 (the SDKs) ride out unnoticed; turn it on
    /// where clients do, behind a least-connections balancer. Default: `false`.
    pub enabled: bool,
    /// How far above the cluster's mean a node may be before it sheds, as
    /// a fraction (0.1: 10 %). Default: `0.1`.
    pub tolerance: f64,
    /// Connections shed per second at most. Default: 50.
    pub max_per_second: u32,
    /// How often a node compares itself with the cluster; after a round
    /// that shed, it waits two of these for the registry to catch up
    /// (hysteresis). Default: `5s`.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
}

impl Default for RebalanceConfig {
    fn default() -> Self {
        RebalanceConfig { enabled: false, tolerance: 0.1, max_per_second: 50, interval: Duration::from_secs(5) }
    }
}

impl RebalanceConfig {
    pub(super) fn check(&self) -> Result<(), ConfigError> {
        if !(0.0..=10.0).contains(&self.tolerance) {
            return Err(problem("rebalance.tolerance", "a fraction between 0 and 10"));
        }
        if self.max_per_second == 0 || self.interval.is_zero() {
            return Err(problem("rebalance.max_per_second", "max_per_second and interval must be more than 0"));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ShutdownConfig {
    /// On SIGTERM/SIGINT, connections are closed with 1001 in paced batches
    /// spread over this period. Default: `10s`.
    #[serde(with = "humantime_serde")]
    pub drain_period: Duration,
    /// The process exits at the latest this long after the signal, whatever
    /// is left. Must be longer than `drain_period`. Default: `30s`.
    #[serde(with = "humantime_serde")]
    pub grace_period: Duration,
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        ShutdownConfig { drain_period: Duration::from_secs(10), grace_period: Duration::from_secs(30) }
    }
}

impl ShutdownConfig {
    pub(super) fn check(&self) -> Result<(), ConfigError> {
        if self.grace_period <= self.drain_period {
            return Err(problem("shutdown.grace_period", "must be longer than shutdown.drain_period"));
        }
        Ok(())
    }
}

/// Switches for conformance testing. Never on in production.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TestingConfig {
    /// Serves `GET /echo`: a WebSocket that echoes every message back, over
    /// the same frame, reassembly, limit and close code as `/ws`, for
    /// WebSocket conformance suites (Autobahn). Default: `false`.
    pub echo: bool,
}

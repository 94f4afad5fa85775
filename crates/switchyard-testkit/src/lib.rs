//! Test harness for switchyard: real gateway nodes on 127.0.0.1 (in this
//! process, or as `switchyard` processes), raw WebSocket peers for hostile
//! input, and readers for the HTTP endpoints.
//!
//! Everything a test starts is stopped when its handle drops, pass or fail.
//!
//! # Layout
//! - [`node`]: [`TestNode`], a node served in-process on port 0.
//! - [`process`]: [`GatewayProcess`], the `switchyard` binary as a child.
//! - [`fault`]: a TCP proxy that makes a path silent or slow.
//! - [`follower`]: clients that resume across restarts and record what they saw.
//! - [`http`]: plain HTTP GETs and Prometheus text parsing.
//! - [`raw`]: raw WebSocket connections that can send anything.
//! - [`redis`]: real `redis-server`s: one, or a 3-master Cluster (with replicas or not).
//! - [`sentinel`]: a primary and a replica under three sentinels.
//! - [`token`]: HS256 connect tokens.
//! - [`haproxy`]: a real haproxy in front of nodes.
//! - [`sse`]: Server-Sent Events streams and their commands.

pub mod fault;
pub mod follower;
pub mod haproxy;
pub mod http;
pub mod nats;
pub mod node;
pub mod postgres;
pub mod process;
pub mod raw;
pub mod redis;
pub mod scratch;
pub mod sentinel;
pub mod sse;
pub mod token;

pub use node::{TestNode, test_config, with_history};
pub use process::GatewayProcess;
pub use redis::{RedisCluster, RedisServer};

use std::time::Duration;

/// How long a test waits for an event before it fails. Generous: machines
/// here are noisy, and a deadline is a failure report, not a measurement.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// Awaits `future`, failing the test with `what` if it takes past [`DEADLINE`].
pub async fn within<F: std::future::Future>(what: &str, future: F) -> F::Output {
    match tokio::time::timeout(DEADLINE, future).await {
        Ok(output) => output,
        Err(_) => panic!("timed out after {DEADLINE:?} waiting for {what}"),
    }
}

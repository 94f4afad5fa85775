//! How gateway nodes exchange publications.
//!
//! # Layout
//! - [`Broker`]: the small trait the gateway sees, and its guarantees.
//! - [`memory`]: [`MemoryBroker`], one node, no Redis: the embedded default.
//! - [`redis`]: [`RedisBroker`], many nodes over one Redis or a Redis Cluster.
//! - [`NodeInfo`]: what a node says about itself in the cluster registry.

mod broker;
mod history_memory;
pub mod memory;
mod node_info;
pub mod redis;

pub use broker::{Broker, BrokerError, History, PublicationSink, PublishOptions, StreamPosition};
pub use memory::MemoryBroker;
pub use node_info::{NodeInfo, unix_seconds};
pub use redis::{RedisBroker, RedisSettings, RedisTarget, RedisTls};

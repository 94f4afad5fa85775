//! What gateway nodes share: publications, history, sessions, the node
//! registry and presence, each behind a trait that states its guarantee,
//! each with an in-memory and a Redis implementation.
//!
//! # Layout
//! - [`Broker`] (`broker`): publications, control messages and history
//!   between nodes; [`MemoryBroker`] (`memory`, `history_memory`) and
//!   [`RedisBroker`] (`redis`).
//! - [`SessionStore`] (`sessions`): saved sessions for `connect.resume`;
//!   `sessions_memory`, `redis::sessions`.
//! - [`NodeRegistry`] (`registry`): the live nodes; `registry_memory`,
//!   `redis::registry`.
//! - [`PresenceStore`] (`presence`): who is subscribed where;
//!   `presence_memory`, `redis::presence`.
//! - [`LeaseStore`] (`leases`): who holds a piece of cluster-wide work;
//!   `leases_memory`, `redis::leases`.
//! - [`Stores`] (`stores`): one of each, on the same backend.
//! - [`NodeInfo`]: what a node says about itself in the cluster registry.

mod broker;
mod history_memory;
mod leases;
mod leases_memory;
pub mod memory;
mod node_info;
pub mod presence;
mod presence_memory;
pub mod redis;
mod registry;
mod registry_memory;
mod sessions;
mod sessions_memory;
mod stores;

pub use broker::{Broker, BrokerError, History, PublicationSink, PublishOptions, StreamPosition};
pub use leases::LeaseStore;
pub use leases_memory::MemoryLeases;
pub use memory::MemoryBroker;
pub use node_info::{ConsumerShare, NodeInfo, unix_seconds};
pub use presence::{Announce, Change, PresenceStore, Refreshed};
pub use presence_memory::MemoryPresence;
pub use redis::{RedisBroker, RedisSettings, RedisTarget, RedisTls, Sentinels};
pub use registry::NodeRegistry;
pub use registry_memory::MemoryRegistry;
pub use sessions::SessionStore;
pub use sessions_memory::MemorySessions;
pub use stores::Stores;

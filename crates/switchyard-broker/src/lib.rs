//! How gateway nodes exchange publications.
//!
//! # Layout
//! - [`Broker`]: the small trait the gateway sees, and its guarantees.
//! - [`memory`]: [`MemoryBroker`], one node, no Redis: the embedded default.

mod broker;
pub mod memory;

pub use broker::{Broker, BrokerError, PublicationSink, PublishOptions, StreamPosition};
pub use memory::MemoryBroker;

//! The shared state of a node, one implementation of each trait, on the
//! same backend: all in memory (one node), or all on one Redis or Cluster.

use crate::broker::{Broker, BrokerError, PublicationSink};
use crate::leases::LeaseStore;
use crate::leases_memory::MemoryLeases;
use crate::memory::MemoryBroker;
use crate::presence::PresenceStore;
use crate::presence_memory::MemoryPresence;
use crate::redis::{RedisBroker, RedisSettings};
use crate::registry::NodeRegistry;
use crate::registry_memory::MemoryRegistry;
use crate::sessions::SessionStore;
use crate::sessions_memory::MemorySessions;
use std::sync::Arc;

/// What a node shares with the rest of the cluster.
#[derive(Clone)]
pub struct Stores {
    pub broker: Arc<dyn Broker>,
    pub sessions: Arc<dyn SessionStore>,
    pub registry: Arc<dyn NodeRegistry>,
    pub presence: Arc<dyn PresenceStore>,
    pub leases: Arc<dyn LeaseStore>,
}

impl Stores {
    /// Everything in this process: a single node, no Redis.
    pub fn memory(sink: Arc<dyn PublicationSink>, idempotency_window: std::time::Duration) -> Stores {
        Stores {
            broker: Arc::new(MemoryBroker::with_idempotency_window(sink.clone(), idempotency_window)),
            sessions: Arc::new(MemorySessions::default()),
            registry: Arc::new(MemoryRegistry::default()),
            presence: Arc::new(MemoryPresence::new(sink)),
            leases: Arc::new(MemoryLeases::default()),
        }
    }

    /// Everything on the Redis `settings` name, over one commands
    /// connection and one pub/sub connection.
    pub async fn redis(settings: RedisSettings, sink: Arc<dyn PublicationSink>) -> Result<Stores, BrokerError> {
        let broker = RedisBroker::connect(settings, sink).await?;
        Ok(Stores {
            sessions: Arc::new(broker.sessions()),
            registry: Arc::new(broker.registry()),
            presence: Arc::new(broker.presence()),
            leases: Arc::new(broker.leases()),
            broker: Arc::new(broker),
        })
    }
}

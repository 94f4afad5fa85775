//! The in-memory broker: a single node with no Redis. Publications go
//! straight to the node's sink, so it is always ready and never loses one.

use crate::broker::{Broker, BrokerError, PublicationSink, PublishOptions, StreamPosition};
use crate::node_info::{NodeInfo, unix_seconds};
use async_trait::async_trait;
use std::sync::{Arc, Mutex};
use switchyard_proto::v1::Envelope;

pub struct MemoryBroker {
    sink: Arc<dyn PublicationSink>,
    /// The one node there is.
    node: Mutex<Option<NodeInfo>>,
}

impl MemoryBroker {
    pub fn new(sink: Arc<dyn PublicationSink>) -> Self {
        MemoryBroker { sink, node: Mutex::new(None) }
    }
}

#[async_trait]
impl Broker for MemoryBroker {
    async fn subscribe(&self, _channels: &[String]) -> Result<(), BrokerError> {
        // Every publication reaches the one sink; the hub filters by channel.
        Ok(())
    }

    async fn unsubscribe(&self, _channels: &[String]) -> Result<(), BrokerError> {
        Ok(())
    }

    async fn publish(&self, envelope: Envelope, _options: PublishOptions) -> Result<StreamPosition, BrokerError> {
        self.sink.deliver(envelope);
        Ok(StreamPosition::default())
    }

    async fn register(&self, info: &NodeInfo) -> Result<(), BrokerError> {
        *self.node.lock().unwrap_or_else(|e| e.into_inner()) = Some(info.clone());
        Ok(())
    }

    async fn nodes(&self) -> Result<Vec<NodeInfo>, BrokerError> {
        let node = self.node.lock().unwrap_or_else(|e| e.into_inner()).clone();
        Ok(node.into_iter().filter(|n| n.is_live(unix_seconds())).collect())
    }

    fn is_ready(&self) -> bool {
        true
    }

    fn kind(&self) -> &'static str {
        "memory"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Collect(Mutex<Vec<Envelope>>);
    impl PublicationSink for Collect {
        fn deliver(&self, envelope: Envelope) {
            self.0.lock().unwrap().push(envelope);
        }
    }

    #[tokio::test]
    async fn publishes_reach_the_sink_in_order() {
        let sink = Arc::new(Collect::default());
        let broker = MemoryBroker::new(sink.clone());
        for i in 0..3 {
            let envelope = Envelope { channel: "news".into(), data: format!("{i}").into(), ..Default::default() };
            assert_eq!(broker.publish(envelope, PublishOptions::default()).await, Ok(StreamPosition::default()));
        }
        let got: Vec<_> = sink.0.lock().unwrap().iter().map(|e| e.data.clone()).collect();
        assert_eq!(got, vec!["0", "1", "2"]);
    }
}

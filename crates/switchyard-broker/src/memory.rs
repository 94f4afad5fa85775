//! The in-memory broker: a single node with no Redis. Publications go
//! straight to the node's sink, so it is always ready and never loses one.

use crate::broker::{Broker, BrokerError, History, PublicationSink, PublishOptions, StreamPosition};
use crate::history_memory::MemoryHistory;
use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use switchyard_proto::v1::{Control, Envelope};
use tokio::time::Instant;

pub struct MemoryBroker {
    sink: Arc<dyn PublicationSink>,
    history: MemoryHistory,
    /// Idempotency keys seen, by (channel, key): the first answer and when
    /// the key is forgotten.
    seen: Mutex<HashMap<(String, String), (StreamPosition, Instant)>>,
    idempotency_window: Duration,
}

impl MemoryBroker {
    pub fn new(sink: Arc<dyn PublicationSink>) -> Self {
        Self::with_idempotency_window(sink, Duration::from_secs(300))
    }

    pub fn with_idempotency_window(sink: Arc<dyn PublicationSink>, idempotency_window: Duration) -> Self {
        MemoryBroker { sink, history: MemoryHistory::default(), seen: Mutex::default(), idempotency_window }
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

    async fn publish(&self, mut envelope: Envelope, options: PublishOptions) -> Result<StreamPosition, BrokerError> {
        let position = if options.keeps_history() {
            self.history.append(&mut envelope, options)
        } else {
            StreamPosition::default()
        };
        self.sink.deliver(envelope);
        Ok(position)
    }

    async fn publish_counted(
        &self,
        envelope: Envelope,
        options: PublishOptions,
        key: Option<&str>,
    ) -> Result<(StreamPosition, Option<u64>), BrokerError> {
        let Some(key) = key else {
            // The one node there is gets every publication.
            return Ok((self.publish(envelope, options).await?, Some(1)));
        };
        let seen_key = (envelope.channel.clone(), key.to_owned());
        // The lock is held across the publish (no await in it) so that two
        // publishes of one key cannot both miss it.
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        seen.retain(|_, (_, expires)| *expires > now);
        if let Some((position, _)) = seen.get(&seen_key) {
            return Ok((position.clone(), Some(0)));
        }
        let mut envelope = envelope;
        let position = if options.keeps_history() {
            self.history.append(&mut envelope, options)
        } else {
            StreamPosition::default()
        };
        seen.insert(seen_key, (position.clone(), now + self.idempotency_window));
        drop(seen);
        self.sink.deliver(envelope);
        Ok((position, Some(1)))
    }

    async fn history(
        &self,
        channel: &str,
        since: Option<&StreamPosition>,
        limit: usize,
        options: PublishOptions,
    ) -> Result<History, BrokerError> {
        Ok(self.history.read(channel, since, limit, options))
    }

    async fn send_control(&self, _to: Option<&str>, message: Control) -> Result<Option<u64>, BrokerError> {
        // The one node there is: every message is for it.
        self.sink.control(message);
        Ok(Some(1))
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

    #[derive(Default)]
    struct Collect(Mutex<Vec<Envelope>>);
    impl PublicationSink for Collect {
        fn deliver(&self, envelope: Envelope) {
            self.0.lock().unwrap().push(envelope);
        }
        fn control(&self, _message: Control) {}
    }

    fn history_options() -> PublishOptions {
        PublishOptions {
            history_size: 3,
            history_ttl: Duration::from_secs(60),
            history_meta_ttl: Duration::from_secs(600),
        }
    }

    fn envelope(data: &str) -> Envelope {
        Envelope { channel: "chat:x".into(), data: data.to_owned().into(), ..Default::default() }
    }

    #[tokio::test(start_paused = true)]
    async fn history_assigns_offsets_and_trims() {
        let broker = MemoryBroker::new(Arc::new(Collect::default()));
        let options = history_options();
        let mut last = StreamPosition::default();
        for i in 1..=5 {
            last = broker.publish(envelope(&i.to_string()), options).await.unwrap();
            assert_eq!(last.offset, i);
        }
        let all = broker.history("chat:x", None, 10, options).await.unwrap();
        assert_eq!(all.publications.iter().map(|e| e.offset).collect::<Vec<_>>(), vec![3, 4, 5]);
        assert_eq!(all.position, last);
        let since = StreamPosition { epoch: last.epoch.clone(), offset: 3 };
        let recent = broker.history("chat:x", Some(&since), 10, options).await.unwrap();
        assert!(recent.complete);
        assert_eq!(recent.publications.iter().map(|e| e.offset).collect::<Vec<_>>(), vec![4, 5]);
        // Offset 1 is trimmed: what is left is not complete.
        let since = StreamPosition { epoch: last.epoch.clone(), offset: 1 };
        assert!(!broker.history("chat:x", Some(&since), 10, options).await.unwrap().complete);
        // Another epoch: not complete either.
        let since = StreamPosition { epoch: "other".into(), offset: 4 };
        assert!(!broker.history("chat:x", Some(&since), 10, options).await.unwrap().complete);
        // Caught up: complete and empty.
        let recent = broker.history("chat:x", Some(&last), 10, options).await.unwrap();
        assert!(recent.complete && recent.publications.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn history_expires_then_the_epoch_changes() {
        let broker = MemoryBroker::new(Arc::new(Collect::default()));
        let options = history_options();
        let first = broker.publish(envelope("a"), options).await.unwrap();
        tokio::time::advance(Duration::from_secs(61)).await;
        // Publications gone, position kept: a caught-up client missed nothing.
        let h = broker.history("chat:x", Some(&first), 10, options).await.unwrap();
        assert!(h.complete && h.publications.is_empty());
        tokio::time::advance(Duration::from_secs(600)).await;
        let second = broker.publish(envelope("b"), options).await.unwrap();
        assert_ne!(second.epoch, first.epoch);
        assert_eq!(second.offset, 1);
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

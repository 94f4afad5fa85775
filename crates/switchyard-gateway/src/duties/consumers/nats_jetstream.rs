//! `kind = "nats_jetstream"`: messages of a JetStream stream, read through
//! a durable pull consumer by the node that holds the consumer's lease. A
//! message names its channel in the `Switchyard-Channel` header, or else by
//! its subject without the first token (`events.orders:42` is
//! `orders:42`); `Switchyard-Tags` (a JSON object of strings) and
//! `Switchyard-Idempotency-Key` are optional. Messages are acknowledged once
//! published; one that cannot be published is republished to
//! `switchyard.dead.<consumer>` with a `Switchyard-Reason` header and
//! terminated.

use super::entry::Entry;
use async_nats::HeaderMap;
use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, PullConsumer, pull};
use async_nats::jetstream::{AckKind, Message};
use futures_util::StreamExt as _;
use std::collections::HashMap;
use std::time::Duration;
use switchyard_core::config::ConsumerConfig;

pub struct NatsJetstream {
    client: async_nats::Client,
    consumer: PullConsumer,
    dead_subject: String,
    /// The messages handed out and not yet acknowledged, by stream sequence.
    taken: HashMap<String, Message>,
}

impl NatsJetstream {
    /// Connects and (re)makes the durable consumer from its acknowledged
    /// floor: what the last holder took and did not acknowledge comes again
    /// at once, in order.
    pub async fn open(config: &ConsumerConfig, batch: usize) -> Result<NatsJetstream, String> {
        let url = config.nats_url.as_deref().ok_or("no nats_url")?;
        let client = async_nats::ConnectOptions::new()
            .connection_timeout(Duration::from_secs(5))
            .connect(url)
            .await
            .map_err(|e| format!("cannot connect to NATS: {e}"))?;
        let js = async_nats::jetstream::new(client.clone());
        let stream = js.get_stream(config.stream()).await.map_err(|e| format!("no stream {}: {e}", config.stream()))?;
        let durable = config.durable.as_str();
        let floor = match stream.get_consumer::<pull::Config>(durable).await {
            Ok(mut existing) => {
                let floor = existing.info().await.map(|i| i.ack_floor.stream_sequence).unwrap_or(0);
                stream.delete_consumer(durable).await.map_err(|e| format!("cannot reset the consumer: {e}"))?;
                floor
            }
            Err(_) => 0,
        };
        let deliver_policy = match floor {
            0 => DeliverPolicy::All,
            floor => DeliverPolicy::ByStartSequence { start_sequence: floor + 1 },
        };
        let consumer = stream
            .create_consumer(pull::Config {
                durable_name: Some(durable.to_owned()),
                ack_policy: AckPolicy::Explicit,
                deliver_policy,
                max_ack_pending: (batch * 2) as i64,
                // Longer than any holder keeps a message: a redelivery comes
                // from the next holder's reset, not from the server's clock.
                ack_wait: Duration::from_secs(300),
                ..Default::default()
            })
            .await
            .map_err(|e| format!("cannot make the durable consumer: {e}"))?;
        Ok(NatsJetstream {
            client,
            consumer,
            dead_subject: format!("switchyard.dead.{}", config.name),
            taken: HashMap::new(),
        })
    }

    pub async fn next(&mut self, max: usize, wait: Duration) -> Result<Vec<Entry>, String> {
        let mut batch = self
            .consumer
            .fetch()
            .max_messages(max)
            .expires(wait.max(Duration::from_millis(100)))
            .messages()
            .await
            .map_err(|e| format!("cannot fetch: {e}"))?;
        let mut entries = Vec::new();
        while let Some(message) = batch.next().await {
            let message = message.map_err(|e| format!("cannot fetch: {e}"))?;
            let entry = entry(&message);
            self.taken.insert(entry.position.clone(), message);
            entries.push(entry);
        }
        Ok(entries)
    }

    /// Acknowledged, sent together: an acknowledgement lost on the way
    /// brings the message back to the next holder, whose publish of it
    /// repeats nothing (its idempotency key).
    pub async fn confirm(&mut self, entries: &[Entry]) -> Result<(), String> {
        for entry in entries {
            if let Some(message) = self.taken.remove(&entry.position) {
                message.ack().await.map_err(|e| format!("cannot acknowledge: {e}"))?;
            }
        }
        self.client.flush().await.map_err(|e| format!("cannot acknowledge: {e}"))
    }

    pub async fn set_aside(&mut self, entry: &Entry, why: &str) -> Result<(), String> {
        let Some(message) = self.taken.remove(&entry.position) else { return Ok(()) };
        let mut headers = message.headers.clone().unwrap_or_default();
        headers.insert("Switchyard-Reason", why);
        headers.insert("Switchyard-Source-Subject", message.subject.as_str());
        headers.insert("Switchyard-Source-Sequence", entry.position.as_str());
        self.client
            .publish_with_headers(self.dead_subject.clone(), headers, message.payload.clone())
            .await
            .map_err(|e| format!("cannot set the message aside: {e}"))?;
        self.client.flush().await.map_err(|e| format!("cannot set the message aside: {e}"))?;
        message.ack_with(AckKind::Term).await.map_err(|e| format!("cannot terminate: {e}"))?;
        Ok(())
    }

    pub async fn lag(&mut self) -> Result<u64, String> {
        let info = self.consumer.info().await.map_err(|e| e.to_string())?;
        Ok(info.num_pending + info.num_ack_pending as u64)
    }
}

fn header(headers: Option<&HeaderMap>, name: &str) -> Option<String> {
    headers?.get(name).map(|v| v.as_str().to_owned())
}

/// An entry from a message: its stream sequence, channel, data and headers.
fn entry(message: &Message) -> Entry {
    let info = message.info().ok();
    let headers = message.headers.as_ref();
    let channel = header(headers, "Switchyard-Channel").or_else(|| {
        let subject = message.subject.as_str();
        subject.split_once('.').map(|(_, rest)| rest.to_owned())
    });
    let mut entry = Entry {
        position: info.as_ref().map_or(0, |i| i.stream_sequence).to_string(),
        channel: channel.unwrap_or_default(),
        data: message.payload.clone(),
        idempotency_key: header(headers, "Switchyard-Idempotency-Key").filter(|k| !k.is_empty()),
        created_at_us: info.map(|i| (i.published.unix_timestamp_nanos() / 1000).max(0) as u64),
        ..Entry::default()
    };
    if entry.channel.is_empty() {
        entry.malformed = Some("no channel (Switchyard-Channel header, or a subject of two tokens)".into());
    } else if entry.data.is_empty() {
        entry.malformed = Some("no data".into());
    }
    if let Some(tags) = header(headers, "Switchyard-Tags") {
        match Entry::tags_from_json(tags.as_bytes()) {
            Ok(tags) => entry.tags = tags,
            Err(why) => entry.malformed = Some(why),
        }
    }
    entry
}

//! `kind = "redis_stream"`: entries of a Redis stream, read through a
//! consumer group by the node that holds the stream's lease. Fields:
//! `channel`, `data`, and optionally `idempotency_key` and `tags` (a JSON
//! object of strings). Entries are acknowledged once published; ones that
//! cannot be published go to `<stream>:dead` with a `reason`.

use super::entry::Entry;
use std::collections::HashMap;
use std::time::Duration;
use switchyard_broker::redis::{StreamEntry, StreamReader};
use switchyard_core::config::ConsumerConfig;

pub struct RedisStream {
    reader: StreamReader,
    /// The entries handed out and not yet confirmed or set aside, as read.
    taken: HashMap<String, StreamEntry>,
}

impl RedisStream {
    /// Joins the consumer group as `node_name`, on the consumer's Redis or
    /// the broker's.
    pub async fn open(
        config: &ConsumerConfig,
        broker_url: Option<&str>,
        node_name: &str,
        block: Duration,
    ) -> Result<RedisStream, String> {
        let url = config.redis_url.as_deref().or(broker_url).ok_or("no Redis to read the stream from")?;
        let reader = StreamReader::open(url, config.stream(), &config.group, node_name, block)
            .await
            .map_err(|e| format!("cannot join the stream's group: {e}"))?;
        Ok(RedisStream { reader, taken: HashMap::new() })
    }

    pub async fn next(&mut self, max: usize, wait: Duration) -> Result<Vec<Entry>, String> {
        let read = self.reader.next(max, wait).await.map_err(|e| format!("cannot read the stream: {e}"))?;
        Ok(read
            .into_iter()
            .map(|raw| {
                let entry = entry(&raw);
                self.taken.insert(raw.id.clone(), raw);
                entry
            })
            .collect())
    }

    pub async fn confirm(&mut self, entries: &[Entry]) -> Result<(), String> {
        let ids: Vec<&str> = entries.iter().map(|e| e.position.as_str()).collect();
        self.reader.ack(&ids).await.map_err(|e| format!("cannot acknowledge: {e}"))?;
        for entry in entries {
            self.taken.remove(&entry.position);
        }
        Ok(())
    }

    pub async fn set_aside(&mut self, entry: &Entry, why: &str) -> Result<(), String> {
        let raw = self
            .taken
            .get(&entry.position)
            .cloned()
            .unwrap_or_else(|| StreamEntry { id: entry.position.clone(), fields: HashMap::new() });
        self.reader.dead_letter(&raw, why).await.map_err(|e| format!("cannot set the entry aside: {e}"))?;
        self.taken.remove(&entry.position);
        Ok(())
    }

    pub async fn lag(&mut self) -> Result<u64, String> {
        self.reader.lag().await.map_err(|e| format!("cannot read the group's lag: {e}"))
    }
}

/// An entry from a stream entry's fields.
fn entry(raw: &StreamEntry) -> Entry {
    let text = |name: &str| raw.fields.get(name).map(|v| String::from_utf8_lossy(v).into_owned());
    let mut entry = Entry {
        position: raw.id.clone(),
        channel: text("channel").unwrap_or_default(),
        data: raw.fields.get("data").cloned().unwrap_or_default().into(),
        idempotency_key: text("idempotency_key").filter(|k| !k.is_empty()),
        created_at_us: raw.added_at_ms().map(|ms| ms * 1000),
        ..Entry::default()
    };
    if entry.channel.is_empty() {
        entry.malformed = Some("no channel field".into());
    } else if entry.data.is_empty() {
        entry.malformed = Some("no data field".into());
    }
    if let Some(tags) = raw.fields.get("tags") {
        match Entry::tags_from_json(tags) {
            Ok(tags) => entry.tags = tags,
            Err(why) => entry.malformed = Some(why),
        }
    }
    entry
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(fields: &[(&str, &str)]) -> StreamEntry {
        StreamEntry {
            id: "1700000000123-0".into(),
            fields: fields.iter().map(|(k, v)| (k.to_string(), v.as_bytes().to_vec())).collect(),
        }
    }

    #[test]
    fn reads_the_fields_and_marks_what_is_missing() {
        let e = entry(&raw(&[("channel", "orders"), ("data", "{\"id\":1}"), ("tags", "{\"k\":\"v\"}")]));
        assert_eq!((e.channel.as_str(), &e.data[..], e.malformed), ("orders", &b"{\"id\":1}"[..], None));
        assert_eq!(e.tags["k"], "v");
        assert_eq!(e.created_at_us, Some(1_700_000_000_123_000));
        assert!(entry(&raw(&[("data", "1")])).malformed.is_some());
        assert!(entry(&raw(&[("channel", "c")])).malformed.is_some());
        assert!(entry(&raw(&[("channel", "c"), ("data", "1"), ("tags", "[1]")])).malformed.is_some());
    }
}

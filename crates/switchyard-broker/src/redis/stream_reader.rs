//! Reading a Redis stream of the application's publications through a
//! consumer group (the `redis_stream` consumer): first the entries a
//! previous reader took and did not acknowledge (claimed from whoever has
//! them), then new ones. Entries are acknowledged one by one once
//! published, or moved to `<stream>:dead` with the reason.

use redis::aio::MultiplexedConnection;
use redis::streams::{StreamAutoClaimReply, StreamId, StreamReadOptions, StreamReadReply};
use redis::{AsyncCommands as _, RedisResult, Value};
use std::collections::HashMap;
use std::time::Duration;

/// One entry: its id, and its fields as bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamEntry {
    pub id: String,
    pub fields: HashMap<String, Vec<u8>>,
}

impl StreamEntry {
    fn from_id(entry: StreamId) -> StreamEntry {
        let fields = entry
            .map
            .into_iter()
            .filter_map(|(k, v)| match v {
                Value::BulkString(bytes) => Some((k, bytes)),
                Value::SimpleString(text) => Some((k, text.into_bytes())),
                Value::Int(n) => Some((k, n.to_string().into_bytes())),
                _ => None,
            })
            .collect();
        StreamEntry { id: entry.id, fields }
    }

    /// When the entry was added: its id's milliseconds.
    pub fn added_at_ms(&self) -> Option<u64> {
        self.id.split('-').next()?.parse().ok()
    }
}

/// Where the reader is: taking over what others left, reading its own
/// unacknowledged entries after a position, or reading new entries.
enum Phase {
    Claim { cursor: String },
    Pending { after: String },
    New,
}

pub struct StreamReader {
    conn: MultiplexedConnection,
    stream: String,
    group: String,
    consumer: String,
    phase: Phase,
}

impl StreamReader {
    /// Connects to `url` and joins (creating it, from the stream's start,
    /// if it is new) `group` of `stream` as `consumer`. `block` is the
    /// longest a read waits for new entries.
    pub async fn open(
        url: &str,
        stream: &str,
        group: &str,
        consumer: &str,
        block: Duration,
    ) -> RedisResult<StreamReader> {
        let client = redis::Client::open(url)?;
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(5)))
            .set_response_timeout(Some(block + Duration::from_secs(5)));
        let mut conn = client.get_multiplexed_async_connection_with_config(&config).await?;
        let created: RedisResult<()> = conn.xgroup_create_mkstream(stream, group, "0").await;
        if let Err(e) = created
            && e.code() != Some("BUSYGROUP")
        {
            return Err(e);
        }
        Ok(StreamReader {
            conn,
            stream: stream.to_owned(),
            group: group.to_owned(),
            consumer: consumer.to_owned(),
            phase: Phase::Claim { cursor: "0-0".to_owned() },
        })
    }

    /// The next entries, oldest first, at most `count`: what earlier
    /// readers left unacknowledged first, then new entries (waiting up to
    /// `block` for some). Empty when there are none yet.
    pub async fn next(&mut self, count: usize, block: Duration) -> RedisResult<Vec<StreamEntry>> {
        loop {
            match &self.phase {
                Phase::Claim { cursor } => {
                    // Every pending entry becomes this reader's: it holds the
                    // stream's lease, so their readers are gone.
                    let reply: StreamAutoClaimReply = redis::cmd("XAUTOCLAIM")
                        .arg(&self.stream)
                        .arg(&self.group)
                        .arg(&self.consumer)
                        .arg(0)
                        .arg(cursor)
                        .arg("COUNT")
                        .arg(count)
                        .arg("JUSTID")
                        .query_async(&mut self.conn)
                        .await?;
                    self.phase = match reply.next_stream_id.as_str() {
                        "0-0" => Phase::Pending { after: "0-0".to_owned() },
                        next => Phase::Claim { cursor: next.to_owned() },
                    };
                }
                Phase::Pending { after } => {
                    let options = StreamReadOptions::default().group(&self.group, &self.consumer).count(count);
                    let reply: StreamReadReply =
                        self.conn.xread_options(&[&self.stream], &[after.as_str()], &options).await?;
                    let entries: Vec<StreamEntry> =
                        reply.keys.into_iter().flat_map(|k| k.ids).map(StreamEntry::from_id).collect();
                    match entries.last() {
                        None => self.phase = Phase::New,
                        Some(last) => {
                            self.phase = Phase::Pending { after: last.id.clone() };
                            return Ok(entries);
                        }
                    }
                }
                Phase::New => {
                    let options = StreamReadOptions::default()
                        .group(&self.group, &self.consumer)
                        .count(count)
                        .block(block.as_millis().max(1) as usize);
                    let reply: Option<StreamReadReply> =
                        self.conn.xread_options(&[&self.stream], &[">"], &options).await?;
                    let entries =
                        reply.into_iter().flat_map(|r| r.keys).flat_map(|k| k.ids).map(StreamEntry::from_id).collect();
                    return Ok(entries);
                }
            }
        }
    }

    /// The entries are published: acknowledged, in one call.
    pub async fn ack(&mut self, ids: &[&str]) -> RedisResult<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let _: i64 = self.conn.xack(&self.stream, &self.group, ids).await?;
        Ok(())
    }

    /// The entry cannot be published: copied to `<stream>:dead` with the
    /// reason and its id, and acknowledged, in one transaction.
    pub async fn dead_letter(&mut self, entry: &StreamEntry, why: &str) -> RedisResult<()> {
        let mut fields: Vec<(&str, &[u8])> = entry.fields.iter().map(|(k, v)| (k.as_str(), v.as_slice())).collect();
        fields.push(("reason", why.as_bytes()));
        fields.push(("source_id", entry.id.as_bytes()));
        let dead = format!("{}:dead", self.stream);
        let mut pipe = redis::pipe();
        pipe.atomic().xadd(&dead, "*", &fields).ignore().xack(&self.stream, &self.group, &[&entry.id]).ignore();
        pipe.query_async::<()>(&mut self.conn).await
    }

    /// Entries not yet acknowledged: waiting in the stream, and taken but
    /// not acknowledged.
    pub async fn lag(&mut self) -> RedisResult<u64> {
        let groups: Vec<HashMap<String, Value>> =
            redis::cmd("XINFO").arg("GROUPS").arg(&self.stream).query_async(&mut self.conn).await?;
        let group = groups.into_iter().find(|g| {
            matches!(g.get("name"), Some(Value::BulkString(n)) if n == self.group.as_bytes())
                || matches!(g.get("name"), Some(Value::SimpleString(n)) if n == &self.group)
        });
        let number = |v: Option<&Value>| match v {
            Some(Value::Int(n)) => (*n).max(0) as u64,
            _ => 0,
        };
        Ok(group.map_or(0, |g| number(g.get("lag")) + number(g.get("pending"))))
    }
}

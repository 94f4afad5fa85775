//! `[[consumers]]`: queues of the application's that the cluster publishes
//! from (docs/consumers.md).

use super::{ConfigError, check_name, problem};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Where a consumer reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConsumerKind {
    /// Rows of an outbox table in PostgreSQL.
    PostgresOutbox,
    /// Entries of a Redis stream, through a consumer group.
    RedisStream,
    /// Messages of a NATS JetStream stream, through a durable consumer.
    NatsJetstream,
}

/// One `[[consumers]]` table. Which fields apply depends on `kind`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsumerConfig {
    /// Names the consumer in metrics, leases and idempotency keys: 1 to 40
    /// letters, digits, `_` or `-`. Required.
    pub name: String,
    pub kind: ConsumerKind,
    /// `postgres_outbox`: the database. Required there.
    #[serde(default)]
    pub postgres_url: Option<String>,
    /// `postgres_outbox`: the outbox table. Default: `switchyard_outbox`.
    #[serde(default = "default_table")]
    pub table: String,
    /// `postgres_outbox`: partitions (a row's `partition` column, 0 to
    /// N - 1); each is held by one node at a time. Default: 1.
    #[serde(default = "one")]
    pub partitions: u32,
    /// `postgres_outbox`: how often the table is read when no notification
    /// came (LISTEN/NOTIFY wakes it sooner). Default: `1s`.
    #[serde(default = "default_poll_interval", with = "humantime_serde")]
    pub poll_interval: Duration,
    /// `redis_stream`: the stream. Default: `switchyard:publish`.
    /// `nats_jetstream`: the JetStream stream. Required there.
    #[serde(default)]
    pub stream: Option<String>,
    /// `redis_stream`: the consumer group. Default: `switchyard`.
    #[serde(default = "default_group")]
    pub group: String,
    /// `redis_stream`: a Redis of its own; default: the broker's
    /// (`broker.redis_url`; required with a Redis Cluster broker).
    #[serde(default)]
    pub redis_url: Option<String>,
    /// `nats_jetstream`: the server. Required there.
    #[serde(default)]
    pub nats_url: Option<String>,
    /// `nats_jetstream`: the durable consumer the nodes share. Default:
    /// `switchyard`.
    #[serde(default = "default_group")]
    pub durable: String,
    /// How long the share of a node that stopped answering waits before
    /// another node takes it over (the lease's time to live). Default: `10s`.
    #[serde(default = "default_claim_after", with = "humantime_serde")]
    pub claim_after: Duration,
    /// Entries read from the source at a time. Default: 100.
    #[serde(default = "default_batch")]
    pub batch: usize,
}

fn default_table() -> String {
    "switchyard_outbox".to_owned()
}
fn one() -> u32 {
    1
}
fn default_poll_interval() -> Duration {
    Duration::from_secs(1)
}
fn default_group() -> String {
    "switchyard".to_owned()
}
fn default_claim_after() -> Duration {
    Duration::from_secs(10)
}
fn default_batch() -> usize {
    100
}

/// The stream a `redis_stream` consumer reads when none is named.
pub const DEFAULT_REDIS_STREAM: &str = "switchyard:publish";

impl ConsumerConfig {
    /// The stream this consumer reads (`redis_stream`, `nats_jetstream`).
    pub fn stream(&self) -> &str {
        self.stream.as_deref().unwrap_or(DEFAULT_REDIS_STREAM)
    }

    pub(super) fn check(&self, index: usize) -> Result<(), ConfigError> {
        let key = |field: &str| format!("consumers[{index}].{field}");
        check_name(key("name"), &self.name, 40)?;
        if self.claim_after < Duration::from_millis(300) {
            return Err(problem(key("claim_after"), "at least 300ms"));
        }
        if self.batch == 0 || self.batch > 10_000 {
            return Err(problem(key("batch"), "1 to 10000"));
        }
        match self.kind {
            ConsumerKind::PostgresOutbox => {
                if self.postgres_url.is_none() {
                    return Err(problem(key("postgres_url"), "required for kind = \"postgres_outbox\""));
                }
                if self.partitions == 0 || self.partitions > 1024 {
                    return Err(problem(key("partitions"), "1 to 1024"));
                }
                let table_ok = !self.table.is_empty()
                    && self
                        .table
                        .split('.')
                        .all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'));
                if !table_ok {
                    return Err(problem(key("table"), "a table name ([schema.]name of letters, digits and '_')"));
                }
            }
            ConsumerKind::RedisStream => {}
            ConsumerKind::NatsJetstream => {
                if self.nats_url.is_none() {
                    return Err(problem(key("nats_url"), "required for kind = \"nats_jetstream\""));
                }
                if self.stream.is_none() {
                    return Err(problem(key("stream"), "required for kind = \"nats_jetstream\""));
                }
            }
        }
        Ok(())
    }
}

//! Consumers of the application's own queues (`[[consumers]]`,
//! docs/consumers.md): the cluster's nodes share the work, and every entry
//! reaches its channel once, in the source's order.
//!
//! - **One holder per partition.** A consumer has partitions (a Redis
//!   stream has one); each is worked by the node that holds its lease
//!   (`consumer:<name>:<partition>` in the broker). Every node tries to
//!   take the partitions it has no more than its share of (partitions over
//!   live nodes, rounded up), and gives back what it holds beyond it, so the
//!   work spreads; a node that dies loses its leases after `claim_after`
//!   and the others take its partitions.
//! - **In order, once.** The holder publishes its partition's entries one
//!   at a time in source order, and confirms each (acknowledge, delete)
//!   only after the broker has it. An entry read again after a crash
//!   carries the same idempotency key (the consumer's name and the entry's
//!   position), so its second publish publishes nothing. A holder checks
//!   its lease before every publication and stops before a successor can
//!   start.
//! - **Nothing stops the queue.** An entry that can never be published is
//!   set aside (the source's dead letters) and counted; the next one goes
//!   on. When the broker is out of reach the entry waits and is tried
//!   again, with backoff, while the lease holds.

mod entry;
mod lease;
mod nats_jetstream;
mod postgres_outbox;
mod redis_stream;

use crate::node::Node;
use entry::{Entry, Outcome, publish_entry};
use lease::HeldLease;
use nats_jetstream::NatsJetstream;
use postgres_outbox::PostgresOutbox;
use redis_stream::RedisStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use switchyard_core::clock::unix_micros;
use switchyard_core::config::{ConsumerConfig, ConsumerKind};
use switchyard_core::metric;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

/// Starts a task per partition of every configured consumer.
pub fn start(node: &Arc<Node>, tracker: &TaskTracker, stop: &CancellationToken) {
    for config in &node.config.consumers {
        let config = Arc::new(config.clone());
        let share = Arc::new(Share { held: AtomicUsize::new(0), nodes: AtomicUsize::new(1) });
        tracker.spawn(count_nodes(node.clone(), share.clone(), config.claim_after, stop.clone()));
        let partitions = match config.kind {
            ConsumerKind::PostgresOutbox => config.partitions,
            ConsumerKind::RedisStream | ConsumerKind::NatsJetstream => 1,
        };
        for partition in 0..partitions {
            let work =
                Partition { node: node.clone(), config: config.clone(), partition, partitions, share: share.clone() };
            tracker.spawn(work.run(stop.clone()));
        }
    }
}

/// How much of one consumer this node holds, and how many nodes share it.
struct Share {
    held: AtomicUsize,
    nodes: AtomicUsize,
}

impl Share {
    /// Partitions this node should hold at most.
    fn fair(&self, partitions: u32) -> usize {
        (partitions as usize).div_ceil(self.nodes.load(Ordering::Relaxed).max(1))
    }
}

/// Keeps the count of live nodes current, for the fair share.
async fn count_nodes(node: Arc<Node>, share: Arc<Share>, every: Duration, stop: CancellationToken) {
    loop {
        if let Ok(nodes) = node.stores.registry.nodes().await {
            share.nodes.store(nodes.len().max(1), Ordering::Relaxed);
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(every / 2) => {}
        }
    }
}

/// Entries of one partition where the source has them.
enum Source {
    RedisStream(RedisStream),
    PostgresOutbox(PostgresOutbox),
    NatsJetstream(Box<NatsJetstream>),
}

impl Source {
    async fn open(node: &Node, config: &ConsumerConfig, partition: u32, wait: Duration) -> Result<Source, String> {
        match config.kind {
            ConsumerKind::RedisStream => {
                let broker = node.config.broker.redis_url.as_deref();
                Ok(Source::RedisStream(RedisStream::open(config, broker, &node.name, wait).await?))
            }
            ConsumerKind::PostgresOutbox => Ok(Source::PostgresOutbox(PostgresOutbox::open(config, partition).await?)),
            ConsumerKind::NatsJetstream => {
                Ok(Source::NatsJetstream(Box::new(NatsJetstream::open(config, config.batch).await?)))
            }
        }
    }

    async fn next(&mut self, max: usize, wait: Duration) -> Result<Vec<Entry>, String> {
        match self {
            Source::RedisStream(s) => s.next(max, wait).await,
            Source::PostgresOutbox(s) => s.next(max, wait).await,
            Source::NatsJetstream(s) => s.next(max, wait).await,
        }
    }

    /// The entries are published: the source forgets them.
    async fn confirm(&mut self, entries: &[Entry]) -> Result<(), String> {
        match self {
            Source::RedisStream(s) => s.confirm(entries).await,
            Source::PostgresOutbox(s) => s.confirm(entries).await,
            Source::NatsJetstream(s) => s.confirm(entries).await,
        }
    }

    async fn set_aside(&mut self, entry: &Entry, why: &str) -> Result<(), String> {
        match self {
            Source::RedisStream(s) => s.set_aside(entry, why).await,
            Source::PostgresOutbox(s) => s.set_aside(entry, why).await,
            Source::NatsJetstream(s) => s.set_aside(entry, why).await,
        }
    }

    async fn lag(&mut self) -> Result<u64, String> {
        match self {
            Source::RedisStream(s) => s.lag().await,
            Source::PostgresOutbox(s) => s.lag().await,
            Source::NatsJetstream(s) => s.lag().await,
        }
    }
}

/// One partition of one consumer, as this node works it.
struct Partition {
    node: Arc<Node>,
    config: Arc<ConsumerConfig>,
    partition: u32,
    partitions: u32,
    share: Arc<Share>,
}

/// The longest a read waits for entries: the work under a lease looks at
/// the lease (and at the stop) at least this often.
const MAX_WAIT: Duration = Duration::from_secs(1);

impl Partition {
    async fn run(self, stop: CancellationToken) {
        let name = &self.config.name;
        let lease_name = format!("consumer:{name}:{}", self.partition);
        let errors = metric::consumer_errors(name);
        let mut failures = 0u32;
        while !stop.is_cancelled() {
            let room = self.share.held.load(Ordering::Relaxed) < self.share.fair(self.partitions);
            let lease = match room {
                true => {
                    let leases = self.node.stores.leases.clone();
                    HeldLease::acquire(leases, lease_name.clone(), self.node.name.clone(), self.config.claim_after)
                        .await
                }
                false => None,
            };
            let Some(lease) = lease else {
                // Someone has it (or this node has its share): look again
                // within the time its holder has to renew it.
                let pause = self.config.claim_after / 3 + jitter(self.config.claim_after / 10);
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(pause) => continue,
                }
            };
            info!(consumer = %name, partition = self.partition, "took the partition");
            self.share.held.fetch_add(1, Ordering::Relaxed);
            metric::consumer_partitions(name).increment(1.0);
            self.node.consumer_shares.holding(name, self.partition, 0);
            let worked = self.work(&lease, &stop).await;
            self.share.held.fetch_sub(1, Ordering::Relaxed);
            metric::consumer_partitions(name).decrement(1.0);
            metric::consumer_lag(name, self.partition).set(0.0);
            self.node.consumer_shares.released(name, self.partition);
            lease.release().await;
            match worked {
                Ok(()) => failures = 0,
                Err(why) => {
                    errors.increment(1);
                    failures = (failures + 1).min(6);
                    warn!(consumer = %name, partition = self.partition, %why, "the consumer stopped; trying again");
                    let pause = Duration::from_millis(100) * 2u32.pow(failures);
                    tokio::select! {
                        () = stop.cancelled() => return,
                        () = tokio::time::sleep(pause) => {}
                    }
                }
            }
        }
    }

    /// Publishes the partition's entries while the lease holds; returns
    /// when it is lost, when this node holds more than its share, or on
    /// stop (Ok), or when the source fails (Err).
    async fn work(&self, lease: &HeldLease, stop: &CancellationToken) -> Result<(), String> {
        let name = &self.config.name;
        let wait = (self.config.claim_after / 3).min(MAX_WAIT);
        let mut source = Source::open(&self.node, &self.config, self.partition, wait).await?;
        let published = metric::consumer_entries(name, "published");
        let (latency, lag) = (metric::consumer_latency(name), metric::consumer_lag(name, self.partition));
        let mut lag_read = tokio::time::Instant::now();
        loop {
            if lag_read.elapsed() >= wait {
                if let Ok(n) = source.lag().await {
                    lag.set(n as f64);
                    self.node.consumer_shares.holding(name, self.partition, n);
                }
                lag_read = tokio::time::Instant::now();
            }
            if self.share.held.load(Ordering::Relaxed) > self.share.fair(self.partitions) {
                // Another node came: leave it this partition.
                info!(consumer = %name, partition = self.partition, "giving the partition to another node");
                return Ok(());
            }
            let entries = tokio::select! {
                () = stop.cancelled() => return Ok(()),
                () = lease.lost() => return Ok(()),
                read = source.next(self.config.batch, wait) => read?,
            };
            // Published entries are confirmed together, once the batch is
            // through (or the work stops): one statement per batch, not per
            // entry. A crash in between repeats at most a batch, which the
            // entries' idempotency keys make publish nothing again.
            let mut done = Vec::with_capacity(entries.len());
            let stopped = self.publish_batch(entries, &mut done, lease, stop, &mut source).await;
            source.confirm(&done).await?;
            published.increment(done.len() as u64);
            for entry in &done {
                if let Some(at) = entry.created_at_us {
                    latency.record(unix_micros().saturating_sub(at) as f64 / 1e6);
                }
            }
            if stopped? {
                return Ok(());
            }
        }
    }

    /// Publishes `entries` in order into `done`; true when it stopped
    /// before the end (lease lost, or stop): the rest is the next holder's.
    async fn publish_batch(
        &self,
        entries: Vec<Entry>,
        done: &mut Vec<Entry>,
        lease: &HeldLease,
        stop: &CancellationToken,
        source: &mut Source,
    ) -> Result<bool, String> {
        let name = &self.config.name;
        let (set_aside, errors) = (metric::consumer_entries(name, "set_aside"), metric::consumer_errors(name));
        for entry in entries {
            let mut backoff = Duration::from_millis(50);
            loop {
                // Unconfirmed entries are the next holder's to publish.
                if !lease.is_valid() || stop.is_cancelled() {
                    return Ok(true);
                }
                match publish_entry(&self.node, name, &entry).await {
                    Outcome::Published => {
                        done.push(entry);
                        break;
                    }
                    Outcome::SetAside(why) => {
                        warn!(consumer = %name, position = %entry.position, channel = %entry.channel, %why,
                            "an entry that cannot be published was set aside");
                        source.set_aside(&entry, &why).await?;
                        set_aside.increment(1);
                        break;
                    }
                    Outcome::Retry(why) => {
                        errors.increment(1);
                        tracing::debug!(consumer = %name, %why, "publishing failed; trying again");
                        tokio::select! {
                            () = stop.cancelled() => return Ok(true),
                            () = tokio::time::sleep(backoff) => {}
                        }
                        backoff = (backoff * 2).min(Duration::from_secs(2));
                    }
                }
            }
        }
        Ok(false)
    }
}

/// A random pause below `most`, so that nodes do not ask in step.
fn jitter(most: Duration) -> Duration {
    most.mul_f64(rand::random::<f64>())
}

//! The open-loop publisher: `rate` publications per second in 1 ms ticks,
//! each stamped with the time its tick was due, however late the loop runs.

use crate::backend::{BackendPublisher, Via};
use crate::connection::{self, Publisher};
use crate::{Args, progress, schedule, stamp};
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};

/// Where publications come from: a client's WebSocket, or a backend
/// (Redis `FCALL`, the HTTP API).
pub enum Source {
    Client {
        publisher: Publisher,
        replies: JoinHandle<()>,
    },
    Backend(BackendPublisher),
    /// Rows in a PostgreSQL outbox, each its own transaction, pipelined.
    Outbox {
        client: std::sync::Arc<tokio_postgres::Client>,
        failed: std::sync::Arc<std::sync::atomic::AtomicU64>,
    },
    /// Messages on a NATS subject a JetStream stream captures.
    Jetstream(async_nats::Client),
    /// Batches of events through the Pusher HTTP API.
    PusherApi(crate::backend::PusherApiPublisher),
}

impl Source {
    /// The source `--publish-via` asks for: a client on `--publish-url`
    /// (else `--url`), or a backend connection to `--publish-to`.
    pub async fn open(args: &Args) -> anyhow::Result<Source> {
        match args.publish_via {
            Via::Client => {
                let url = args.publish_url.as_deref().unwrap_or(&args.url);
                let (reader, writer) = connection::connect(url, args.target, &[]).await?;
                let (publisher, replies) = Publisher::new(reader, writer, args.target);
                Ok(Source::Client { publisher, replies })
            }
            Via::Outbox => {
                let to = args.publish_to.as_deref().ok_or_else(|| anyhow::anyhow!("--publish-to is needed"))?;
                let (client, connection) = tokio_postgres::connect(to, tokio_postgres::NoTls).await?;
                tokio::spawn(connection);
                Ok(Source::Outbox { client: std::sync::Arc::new(client), failed: Default::default() })
            }
            Via::Jetstream => {
                let to = args.publish_to.as_deref().ok_or_else(|| anyhow::anyhow!("--publish-to is needed"))?;
                Ok(Source::Jetstream(async_nats::connect(to).await?))
            }
            Via::PusherApi => {
                let to = args.publish_to.as_deref().ok_or_else(|| anyhow::anyhow!("--publish-to is needed"))?;
                Ok(Source::PusherApi(crate::backend::PusherApiPublisher::new(to)))
            }
            via => {
                let to = args.publish_to.as_deref().ok_or_else(|| anyhow::anyhow!("--publish-to is needed"))?;
                Ok(Source::Backend(BackendPublisher::connect(via, to, &args.api_key).await?))
            }
        }
    }

    async fn publish(&mut self, channel: &str, payload: &str) -> anyhow::Result<()> {
        match self {
            Source::Client { publisher, .. } => publisher.publish(channel, payload).await,
            Source::Backend(backend) => backend.publish(channel, payload).await,
            Source::Outbox { client, failed } => {
                // Each row its own transaction; the client pipelines them.
                let (client, failed) = (client.clone(), failed.clone());
                let (channel, payload) = (channel.to_owned(), payload.to_owned());
                tokio::spawn(async move {
                    let insert = "INSERT INTO switchyard_outbox (channel, data) VALUES ($1, $2::text::jsonb)";
                    if client.execute(insert, &[&channel, &payload]).await.is_err() {
                        failed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                });
                Ok(())
            }
            Source::Jetstream(client) => {
                client.publish(format!("events.{channel}"), payload.to_owned().into()).await?;
                Ok(())
            }
            Source::PusherApi(api) => {
                api.publish(channel, payload);
                Ok(())
            }
        }
    }

    /// After each tick: a backend sends the tick's requests in one write.
    async fn end_tick(&mut self) -> anyhow::Result<()> {
        match self {
            Source::Client { .. } | Source::Outbox { .. } => Ok(()),
            Source::Backend(backend) => backend.flush().await,
            Source::Jetstream(client) => Ok(client.flush().await?),
            Source::PusherApi(api) => api.flush().await,
        }
    }

    /// Tags publication j with `k` = `v<j % cycle>` (switchyard clients; 0: none).
    pub fn tag(&mut self, cycle: usize) {
        if let Source::Client { publisher, .. } = self {
            publisher.tag_cycle = cycle;
        }
    }

    /// Publications answered with an error (refused: not published).
    /// Peers give no answers: 0.
    pub fn errors(&self) -> u64 {
        match self {
            Source::Client { publisher, .. } => publisher.refused(),
            Source::Backend(backend) => backend.failed.load(std::sync::atomic::Ordering::Relaxed),
            Source::Outbox { failed, .. } => failed.load(std::sync::atomic::Ordering::Relaxed),
            Source::Jetstream(_) => 0,
            Source::PusherApi(api) => api.failed.load(std::sync::atomic::Ordering::Relaxed),
        }
    }
}

impl Drop for Source {
    fn drop(&mut self) {
        if let Source::Client { replies, .. } = self {
            replies.abort();
        }
    }
}

/// Publishes for `duration`; publication `k` goes to `channel_for(k)`.
/// Returns how many were sent and how long that took.
pub async fn open_loop(
    publisher: &mut Source,
    rate: u64,
    duration: Duration,
    payload_bytes: usize,
    payload_kind: stamp::PayloadKind,
    mut channel_for: impl FnMut(u64) -> String,
) -> anyhow::Result<(u64, Duration)> {
    let started = Instant::now();
    let ticks = duration.as_millis() as u64;
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(MissedTickBehavior::Burst);
    let origin_us = stamp::now_us();
    let mut sent = 0u64;
    let mut payloads = stamp::Payloads::new(payload_kind, payload_bytes);
    let progress = progress::bar(ticks, "publishing");
    for n in 0..ticks {
        tick.tick().await;
        if n % 100 == 0 {
            progress.set_position(n);
        }
        let due = origin_us + n * 1000;
        for _ in 0..schedule::due_in_tick(rate, n) {
            publisher.publish(&channel_for(sent), &payloads.next(due)).await?;
            sent += 1;
        }
        publisher.end_tick().await?;
    }
    progress.finish_and_clear();
    Ok((sent, started.elapsed()))
}

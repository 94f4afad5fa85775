//! Keeps this node's presence entries alive in the store: every third of
//! `broker.presence_ttl`, each channel with local entries is refreshed, and
//! entries the store lost (or let expire while this node stalled) are
//! entered again.

use crate::command::resolve;
use crate::node::Node;
use std::sync::Arc;
use std::time::Duration;
use switchyard_core::metric;
use switchyard_proto::v1::ClientInfo;
use tokio_util::sync::CancellationToken;
use tracing::debug;

/// Channels refreshed at once, at most, in one round: enough to hide a
/// round trip to Redis, few enough that a round does not flood it.
const REFRESH_CONCURRENCY: usize = 32;

/// Refreshes this node's entries every third of `broker.presence_ttl`,
/// until `stop`.
pub async fn keep_fresh(node: Arc<Node>, stop: CancellationToken) {
    let ttl = node.config.broker.presence_ttl;
    let mut tick = tokio::time::interval(ttl / 3);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await; // the first tick is immediate; entries were just added
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        refresh_all(&node, ttl).await;
    }
}

/// One refresh round: every channel with local entries, a few at a time.
pub async fn refresh_all(node: &Arc<Node>, ttl: Duration) {
    let mut rounds = tokio::task::JoinSet::new();
    for (channel, clients) in node.presence.snapshot() {
        if rounds.len() >= REFRESH_CONCURRENCY {
            rounds.join_next().await;
        }
        let node = node.clone();
        rounds.spawn(async move { refresh_channel(&node, &channel, &clients, ttl).await });
    }
    while rounds.join_next().await.is_some() {}
}

async fn refresh_channel(node: &Node, channel: &str, clients: &[String], ttl: Duration) {
    let Ok((_, namespace)) = resolve(node, channel) else { return };
    let announce = namespace.join_leave;
    let missing = match node.stores.presence.refresh(channel, clients, ttl, announce).await {
        Ok(missing) => missing,
        Err(e) => {
            metric::presence_refresh_errors().increment(1);
            debug!(%channel, error = %e, "cannot refresh presence");
            return;
        }
    };
    // Gone from the store but still here (the store lost it, or this node
    // stalled past the TTL): enter them again.
    let back: Vec<ClientInfo> = missing.iter().filter_map(|client| node.presence.get(channel, client)).collect();
    if !back.is_empty()
        && let Err(e) = node.stores.presence.add(channel, &back, ttl, announce).await
    {
        metric::presence_refresh_errors().increment(1);
        debug!(%channel, error = %e, "cannot restore presence entries");
    }
}

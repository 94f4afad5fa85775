//! Keeps this node's presence entries alive in the store: every third of
//! `broker.presence_ttl`, each channel with local entries is refreshed, and
//! entries the store lost (or let expire while this node stalled) are
//! entered again.

use crate::node::Node;
use crate::node::membership;
use std::sync::Arc;
use std::time::Duration;
use switchyard_core::clock::unix_micros;
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
        sweep_overdue(&node).await;
    }
}

/// One refresh round: every channel with local entries, a few at a time.
pub async fn refresh_all(node: &Arc<Node>, ttl: Duration) {
    let mut rounds = tokio::task::JoinSet::new();
    let snapshot = node.presence.snapshot();
    // Channels whose departures someone wants told, should this node die.
    let swept: Vec<String> =
        snapshot.iter().map(|(c, _)| c).filter(|c| membership::needs_sweeping(node, c)).cloned().collect();
    let until = unix_micros() / 1000 + ttl.as_millis() as u64;
    if let Err(e) = node.stores.presence.index(&swept, until).await {
        debug!(error = %e, "cannot index presence channels");
    }
    for (channel, clients) in snapshot {
        if rounds.len() >= REFRESH_CONCURRENCY {
            rounds.join_next().await;
        }
        let node = node.clone();
        rounds.spawn(async move { refresh_channel(&node, &channel, &clients, ttl).await });
    }
    while rounds.join_next().await.is_some() {}
}

async fn refresh_channel(node: &Node, channel: &str, clients: &[String], ttl: Duration) {
    let Some(announce) = membership::presence_mode(node, channel) else { return };
    let refreshed = match node.stores.presence.refresh(channel, clients, ttl, announce).await {
        Ok(refreshed) => refreshed,
        Err(e) => {
            metric::presence_refresh_errors().increment(1);
            debug!(%channel, error = %e, "cannot refresh presence");
            return;
        }
    };
    membership::report(node, channel, &refreshed.changes);
    // Gone from the store but still here (the store lost it, or this node
    // stalled past the TTL): enter them again.
    let back: Vec<ClientInfo> =
        refreshed.missing.iter().filter_map(|client| node.presence.get(channel, client)).collect();
    if !back.is_empty() {
        match node.stores.presence.add(channel, &back, ttl, announce).await {
            Ok(changes) => membership::report(node, channel, &changes),
            Err(e) => {
                metric::presence_refresh_errors().increment(1);
                debug!(%channel, error = %e, "cannot restore presence entries");
            }
        }
    }
}

/// Channels swept at once, at most, per round.
const SWEEP_LIMIT: usize = 100;

/// Sweeps the channels whose entries were due and that no node refreshed
/// (their node died): the store reports what expired to the one node whose
/// sweep found it, which queues the webhooks.
pub async fn sweep_overdue(node: &Node) {
    let now = unix_micros() / 1000;
    let overdue = match node.stores.presence.overdue(now, SWEEP_LIMIT).await {
        Ok(overdue) => overdue,
        Err(e) => {
            debug!(error = %e, "cannot read the presence index");
            return;
        }
    };
    for channel in overdue {
        let Some(announce) = membership::presence_mode(node, &channel) else {
            let _ = node.stores.presence.unindex(&channel, now).await;
            continue;
        };
        match node.stores.presence.members(&channel, announce).await {
            Ok((members, changes)) => {
                membership::report(node, &channel, &changes);
                if members.is_empty() {
                    let _ = node.stores.presence.unindex(&channel, now).await;
                }
            }
            Err(e) => debug!(%channel, error = %e, "cannot sweep presence"),
        }
    }
}

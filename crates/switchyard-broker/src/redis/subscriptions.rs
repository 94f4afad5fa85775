//! The one task that changes this node's Redis subscriptions.
//!
//! Requests from many sessions queue up while a command is in flight; the
//! next command takes all of them (up to a bound) at once, so 10,000 clients
//! joining 10,000 channels cost a handful of round trips, not 10,000. Runs
//! of the same kind are merged; order between subscribes and unsubscribes of
//! a channel is kept.

use super::Shared;
use super::connection::PubSub;
use crate::broker::BrokerError;
use std::sync::Arc;
use switchyard_core::metric;
use tokio::sync::{mpsc, oneshot};

/// Requests taken into one batch at most.
const MAX_BATCH: usize = 4096;

pub enum Request {
    Subscribe(Vec<String>, oneshot::Sender<Result<(), BrokerError>>),
    Unsubscribe(Vec<String>, oneshot::Sender<Result<(), BrokerError>>),
    /// Redis dropped a subscription we still want (a slot moved).
    Restore(String),
    /// Subscribe again to everything wanted: the Cluster's masters changed
    /// (a replica took over), and sharded subscriptions stay with the old one.
    RestoreAll,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Subscribe,
    Unsubscribe,
}

pub async fn run(mut pubsub: PubSub, shared: Arc<Shared>, mut requests: mpsc::Receiver<Request>) {
    let mut batch = Vec::with_capacity(64);
    while requests.recv_many(&mut batch, MAX_BATCH).await > 0 {
        while let Some(first) = batch.first() {
            let kind = kind_of(first);
            let end = batch.iter().position(|r| kind_of(r) != kind).unwrap_or(batch.len());
            apply(&mut pubsub, &shared, kind, batch.drain(..end).collect()).await;
        }
    }
}

fn kind_of(request: &Request) -> Kind {
    match request {
        Request::Subscribe(..) | Request::Restore(_) | Request::RestoreAll => Kind::Subscribe,
        Request::Unsubscribe(..) => Kind::Unsubscribe,
    }
}

async fn apply(pubsub: &mut PubSub, shared: &Shared, kind: Kind, run: Vec<Request>) {
    let mut channels: Vec<String> = Vec::new();
    let mut replies = Vec::new();
    let mut restores = 0;
    for request in run {
        match request {
            Request::Subscribe(c, reply) | Request::Unsubscribe(c, reply) => {
                channels.extend(c);
                replies.push(reply);
            }
            Request::RestoreAll => {
                let wanted = shared.channels.lock().unwrap_or_else(|e| e.into_inner());
                restores += wanted.len() as u64;
                channels.extend(wanted.iter().cloned());
            }
            Request::Restore(channel) => {
                // Only if it is still wanted by the time we get to it.
                if shared.channels.lock().unwrap_or_else(|e| e.into_inner()).contains(&channel) {
                    channels.push(channel);
                    restores += 1;
                }
            }
        }
    }
    channels.sort_unstable();
    channels.dedup();
    if channels.is_empty() {
        for reply in replies {
            let _ = reply.send(Ok(()));
        }
        return;
    }
    if kind == Kind::Unsubscribe {
        // Forget first: the confirmations that come back are then ours, and
        // not taken for Redis dropping a subscription.
        let mut wanted = shared.channels.lock().unwrap_or_else(|e| e.into_inner());
        let mut order = shared.order.lock().unwrap_or_else(|e| e.into_inner());
        for channel in &channels {
            wanted.remove(channel);
            order.forget(channel);
        }
    }
    let names: Vec<String> = channels.iter().map(|c| shared.keys.pubsub(c)).collect();
    let result = pubsub.change(&names, kind == Kind::Subscribe).await;
    let result = match result {
        Ok(()) => {
            if kind == Kind::Subscribe {
                let mut wanted = shared.channels.lock().unwrap_or_else(|e| e.into_inner());
                wanted.extend(channels.iter().cloned());
                metric::broker_subscriptions().set(wanted.len() as f64);
                metric::broker_resubscribes().increment(restores);
            } else {
                let wanted = shared.channels.lock().unwrap_or_else(|e| e.into_inner());
                metric::broker_subscriptions().set(wanted.len() as f64);
            }
            Ok(())
        }
        Err(e) => {
            metric::broker_errors(if kind == Kind::Subscribe { "subscribe" } else { "unsubscribe" }).increment(1);
            Err(super::unavailable(e))
        }
    };
    for reply in replies {
        let _ = reply.send(result.clone());
    }
}

//! What Redis pushes to the pub/sub connection: publications, subscription
//! confirmations, and the driver's word that the connection was lost.
//!
//! Publications of channels with history carry offsets, and this task keeps
//! the last one it delivered per channel. When one arrives past a gap (after
//! a reconnect, a dropped message, a slot migration), it reads the missing
//! ones from the channel's stream and delivers them first, in order;
//! duplicates are dropped. After a reconnect it checks every such channel
//! for publications it missed, without waiting for the next one to arrive.

use super::Shared;
use super::connection::Commands;
use super::history;
use super::subscriptions::Request;
use crate::broker::{PublicationSink, StreamPosition};
use bytes::Bytes;
use prost::Message as _;
use redis::{PushInfo, PushKind, Value};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use switchyard_core::metric;
use switchyard_proto::v1::{Control, Envelope};
use tokio::sync::mpsc;
use tracing::{debug, warn};

/// At most one log line about malformed messages per this period.
const MALFORMED_LOG_EVERY: Duration = Duration::from_secs(10);
/// Most publications read to fill one gap.
const MAX_REPAIR: usize = 10_000;

pub async fn run(
    mut pushes: mpsc::UnboundedReceiver<PushInfo>,
    mut repairs: mpsc::Receiver<()>,
    mut commands: Commands,
    shared: Arc<Shared>,
    sink: Arc<dyn PublicationSink>,
    requests: mpsc::Sender<Request>,
) {
    let mut last_malformed_log: Option<Instant> = None;
    loop {
        let push = tokio::select! {
            push = pushes.recv() => match push {
                Some(push) => push,
                None => return,
            },
            Some(()) = repairs.recv() => {
                catch_up(&mut commands, &shared, sink.as_ref()).await;
                continue;
            }
        };
        match push.kind {
            PushKind::Message | PushKind::SMessage => {
                let mut data = push.data.into_iter();
                let (Some(name), Some(payload)) = (data.next(), data.next()) else { continue };
                let decoded = if text(&name).is_some_and(|n| shared.keys.is_control(&n)) {
                    control(payload).map(|message| sink.control(message))
                } else {
                    match envelope(&shared, name, payload) {
                        Ok(envelope) => {
                            deliver_in_order(&mut commands, &shared, sink.as_ref(), envelope).await;
                            Ok(())
                        }
                        Err(why) => Err(why),
                    }
                };
                match decoded {
                    Ok(()) => {}
                    Err(why) => {
                        metric::broker_malformed().increment(1);
                        if last_malformed_log.is_none_or(|t| t.elapsed() >= MALFORMED_LOG_EVERY) {
                            last_malformed_log = Some(Instant::now());
                            warn!(%why, "dropped a malformed message from Redis (logged at most every 10 s)");
                        }
                    }
                }
            }
            PushKind::Disconnection => {
                shared.lost.store(true, Ordering::Release);
                shared.ready.store(false, Ordering::Release);
                metric::broker_up().set(0.0);
            }
            PushKind::Subscribe | PushKind::SSubscribe if shared.lost.load(Ordering::Acquire) => {
                // The driver restoring our subscriptions on a new connection.
                metric::broker_resubscribes().increment(1);
            }
            PushKind::SUnsubscribe | PushKind::Unsubscribe => {
                // Ours are forgotten before they are sent; one we still want
                // was dropped by Redis (its slot moved): take it again.
                let Some(channel) =
                    push.data.first().and_then(text).and_then(|n| shared.keys.channel_of(&n).map(str::to_owned))
                else {
                    continue;
                };
                let wanted = shared.channels.lock().unwrap_or_else(|e| e.into_inner()).contains(&channel);
                if wanted {
                    let _ = requests.send(Request::Restore(channel)).await;
                }
            }
            _ => {}
        }
    }
}

/// Delivers `envelope` after any publications missing before it.
async fn deliver_in_order(commands: &mut Commands, shared: &Shared, sink: &dyn PublicationSink, envelope: Envelope) {
    if envelope.offset == 0 {
        sink.deliver(envelope);
        return;
    }
    let last = shared.delivered.lock().unwrap_or_else(|e| e.into_inner()).get(&envelope.channel).cloned();
    match last {
        Some((epoch, last)) if epoch == envelope.epoch => {
            if envelope.offset <= last {
                return; // delivered already (a repair got there first)
            }
            if envelope.offset > last + 1 {
                let since = StreamPosition { epoch, offset: last };
                repair(commands, shared, sink, &envelope.channel, &since, envelope.offset - 1).await;
            }
        }
        // First on this node, or a new epoch (history was lost): nothing to repair from.
        _ => {}
    }
    remember(shared, &envelope);
    sink.deliver(envelope);
}

fn remember(shared: &Shared, envelope: &Envelope) {
    // Only for channels still subscribed, so the map stays bounded by them.
    if shared.channels.lock().unwrap_or_else(|e| e.into_inner()).contains(&envelope.channel) {
        shared
            .delivered
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(envelope.channel.clone(), (envelope.epoch.clone(), envelope.offset));
    }
}

/// Reads and delivers the publications after `since` up to `until`.
async fn repair(
    commands: &mut Commands,
    shared: &Shared,
    sink: &dyn PublicationSink,
    channel: &str,
    since: &StreamPosition,
    until: u64,
) {
    let limit = ((until - since.offset) as usize).min(MAX_REPAIR);
    match history::read(commands, channel, Some(since), limit).await {
        Ok(history) => {
            metric::gap_repairs().increment(1);
            if !history.complete && history.position.offset <= until {
                metric::gap_unrepaired().increment(1);
            }
            for envelope in history.publications.into_iter().filter(|e| e.offset <= until) {
                remember(shared, &envelope);
                sink.deliver(envelope);
            }
        }
        Err(e) => {
            metric::gap_unrepaired().increment(1);
            debug!(%channel, error = %e, "cannot read the stream to fill a gap");
        }
    }
}

/// After a reconnect: delivers what each channel with history got while
/// this node was not listening.
async fn catch_up(commands: &mut Commands, shared: &Shared, sink: &dyn PublicationSink) {
    let tracked: Vec<(String, (String, u64))> = shared
        .delivered
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .map(|(c, p)| (c.clone(), p.clone()))
        .collect();
    for (channel, (epoch, last)) in tracked {
        let since = StreamPosition { epoch, offset: last };
        match history::read(commands, &channel, Some(&since), MAX_REPAIR).await {
            Ok(history) if !history.publications.is_empty() => {
                metric::gap_repairs().increment(1);
                for envelope in history.publications {
                    let current =
                        shared.delivered.lock().unwrap_or_else(|e| e.into_inner()).get(&channel).map(|(_, o)| *o);
                    if current.is_some_and(|c| envelope.offset <= c) {
                        continue;
                    }
                    remember(shared, &envelope);
                    sink.deliver(envelope);
                }
            }
            Ok(_) => {}
            Err(e) => debug!(%channel, error = %e, "cannot catch up after a reconnect"),
        }
    }
}

fn text(value: &Value) -> Option<String> {
    match value {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}

/// Decodes one control message.
fn control(payload: Value) -> Result<Control, String> {
    let Value::BulkString(payload) = payload else { return Err("the payload is not a bulk string".into()) };
    let message = Control::decode(Bytes::from(payload)).map_err(|e| format!("not a Control message: {e}"))?;
    if message.op.is_none() {
        return Err("a Control message without an operation".into());
    }
    Ok(message)
}

/// Decodes one message; the channel comes from the pub/sub name, which
/// Redis vouches for, whatever the Envelope says.
fn envelope(shared: &Shared, name: Value, payload: Value) -> Result<Envelope, String> {
    let name = text(&name).ok_or("the pub/sub name is not text")?;
    let channel = shared.keys.channel_of(&name).ok_or_else(|| format!("not a switchyard channel: {name}"))?;
    let Value::BulkString(payload) = payload else { return Err("the payload is not a bulk string".into()) };
    let mut envelope = Envelope::decode(Bytes::from(payload)).map_err(|e| format!("not an Envelope: {e}"))?;
    if !envelope.channel.is_empty() && envelope.channel != channel {
        return Err(format!("an Envelope for {} on {channel}", envelope.channel));
    }
    envelope.channel = channel.to_owned();
    Ok(envelope)
}

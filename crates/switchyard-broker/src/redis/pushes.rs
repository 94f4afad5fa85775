//! What Redis pushes to the pub/sub connection: publications, subscription
//! confirmations, and the driver's word that the connection was lost.

use super::Shared;
use super::subscriptions::Request;
use crate::broker::PublicationSink;
use bytes::Bytes;
use prost::Message as _;
use redis::{PushInfo, PushKind, Value};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use switchyard_core::metric;
use switchyard_proto::v1::Envelope;
use tokio::sync::mpsc;
use tracing::warn;

/// At most one log line about malformed messages per this period.
const MALFORMED_LOG_EVERY: Duration = Duration::from_secs(10);

pub async fn run(
    mut pushes: mpsc::UnboundedReceiver<PushInfo>,
    shared: Arc<Shared>,
    sink: Arc<dyn PublicationSink>,
    requests: mpsc::Sender<Request>,
) {
    let mut last_malformed_log: Option<Instant> = None;
    while let Some(push) = pushes.recv().await {
        match push.kind {
            PushKind::Message | PushKind::SMessage => {
                let mut data = push.data.into_iter();
                let (Some(name), Some(payload)) = (data.next(), data.next()) else { continue };
                match envelope(&shared, name, payload) {
                    Ok(envelope) => sink.deliver(envelope),
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

fn text(value: &Value) -> Option<String> {
    match value {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
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

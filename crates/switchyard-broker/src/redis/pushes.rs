//! What Redis pushes to the pub/sub connection: publications, subscription
//! confirmations, and the driver's word that the connection was lost.
//!
//! This task never waits on Redis. Publications of history channels go
//! through [`Order`], which delivers, holds or drops each; the reads of a
//! channel's stream it asks for (gap repairs, the catch-up after a
//! reconnect, moving a regressed channel to a new epoch) run beside it, at
//! most [`MAX_READS`] at once on the multiplexed command connection (so
//! they are pipelined), and their answers come back here. One channel's
//! repair thus holds back that channel alone.
//!
//! The queue from the driver to this task is bounded ([`MAX_QUEUED`]
//! publications): a node that cannot keep up drops what comes past it and
//! counts it (`switchyard_broker_pushes_dropped_total`); a history
//! channel's dropped publications are repaired from its stream when the
//! next one arrives, others are lost (at most once, as documented).
//! Confirmations and disconnections take a lane of their own, never dropped.

use super::Shared;
use super::connection::Commands;
use super::history;
use super::order::{Action, StreamRead};
use super::subscriptions::Request;
use crate::broker::{History, PublicationSink, StreamPosition};
use bytes::Bytes;
use prost::Message as _;
use redis::{PushInfo, PushKind, Value};
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use switchyard_core::metric;
use switchyard_proto::v1::{Control, Envelope};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tracing::{debug, info, warn};

/// At most one log line about malformed messages per this period.
const MALFORMED_LOG_EVERY: Duration = Duration::from_secs(10);
/// Most publications read to fill one gap.
const MAX_REPAIR: usize = 10_000;
/// Stream reads in flight at once.
pub const MAX_READS: usize = 64;
/// Publications queued from the driver to this task, at most.
pub const MAX_QUEUED: usize = 65_536;
/// A failed rebase is tried again after this.
const REBASE_RETRY: Duration = Duration::from_secs(1);

/// The two lanes from the driver: publications (bounded) and the rest.
pub struct Lanes {
    pub messages: mpsc::Receiver<PushInfo>,
    pub other: mpsc::UnboundedReceiver<PushInfo>,
}

/// The driver's push sender over [`Lanes`]: never blocks, never fails (a
/// failing sender would be dropped by the driver).
pub fn lanes() -> (impl Fn(PushInfo) -> Result<(), ()> + Send + Sync + Clone + 'static, Lanes) {
    let (messages_tx, messages) = mpsc::channel(MAX_QUEUED);
    let (other_tx, other) = mpsc::unbounded_channel();
    let send = move |push: PushInfo| {
        if matches!(push.kind, PushKind::Message | PushKind::SMessage) {
            if messages_tx.try_send(push).is_err() {
                metric::broker_pushes_dropped().increment(1);
            }
        } else {
            let _ = other_tx.send(push);
        }
        Ok(())
    };
    (send, Lanes { messages, other })
}

/// A stream read and what it is for.
enum Job {
    Read(StreamRead),
    /// `after`: a pause first (a retry).
    Rebase {
        channel: String,
        epoch: String,
        envelope: Option<Box<Envelope>>,
        after: Option<Duration>,
    },
}

struct Retry {
    why: String,
    envelope: Option<Box<Envelope>>,
}

enum Done {
    Read(StreamRead, Result<History, String>),
    /// Ok: the channel's epoch and offset now; Err: why not, and the
    /// Envelope to publish on the next try.
    Rebase {
        channel: String,
        epoch: String,
        result: Result<StreamPosition, Retry>,
    },
}

pub async fn run(
    mut lanes: Lanes,
    mut repairs: mpsc::Receiver<()>,
    commands: Commands,
    shared: Arc<Shared>,
    sink: Arc<dyn PublicationSink>,
    requests: mpsc::Sender<Request>,
) {
    let mut last_malformed_log: Option<Instant> = None;
    let mut queued: VecDeque<Job> = VecDeque::new();
    let mut running: JoinSet<Done> = JoinSet::new();
    let mut actions = Vec::new();
    // The catch-up under way: when it started and how many reads it has left.
    let mut catching_up: Option<(Instant, usize)> = None;
    loop {
        tokio::select! {
            push = lanes.other.recv() => match push {
                Some(push) => other(&shared, push, &requests).await,
                None => return,
            },
            push = lanes.messages.recv() => match push {
                Some(push) => {
                    if let Err(why) = message(&shared, sink.as_ref(), push, &mut actions) {
                        metric::broker_malformed().increment(1);
                        if last_malformed_log.is_none_or(|t| t.elapsed() >= MALFORMED_LOG_EVERY) {
                            last_malformed_log = Some(Instant::now());
                            warn!(%why, "dropped a malformed message from Redis (logged at most every 10 s)");
                        }
                    }
                }
                None => return,
            },
            Some(done) = running.join_next(), if !running.is_empty() => {
                let Ok(done) = done else { continue };
                if let Done::Read(asked, _) = &done
                    && !asked.since.held
                    && let Some((started, left)) = &mut catching_up
                {
                    *left = left.saturating_sub(1);
                    if *left == 0 {
                        let took = started.elapsed();
                        metric::broker_catch_up().record(took.as_secs_f64());
                        info!(took_ms = took.as_millis() as u64, "caught up every history channel");
                        catching_up = None;
                    }
                }
                finished(&shared, done, &mut actions, &mut queued);
            }
            Some(()) = repairs.recv() => {
                let mut order = shared.order.lock().unwrap_or_else(|e| e.into_inner());
                let before = actions.len();
                order.catch_up(&mut actions);
                let reads = actions.len() - before;
                if reads > 0 {
                    catching_up = Some((Instant::now(), reads + catching_up.map_or(0, |(_, left)| left)));
                }
            }
        }
        for action in actions.drain(..) {
            match action {
                Action::Deliver(envelope) => sink.deliver(envelope),
                Action::Read(asked) => queued.push_back(Job::Read(asked)),
                Action::Rebase { channel, epoch, envelope } => {
                    let envelope = envelope.map(Box::new);
                    queued.push_back(Job::Rebase { channel, epoch, envelope, after: None });
                }
            }
        }
        while running.len() < MAX_READS
            && let Some(job) = queued.pop_front()
        {
            let mut commands = commands.clone();
            running.spawn(async move { job.run(&mut commands).await });
        }
        metric::broker_repairs_queued().set((queued.len() + running.len()) as f64);
    }
}

impl Job {
    async fn run(self, commands: &mut Commands) -> Done {
        match self {
            Job::Read(asked) => {
                // From the offset before `since`, to check the one at `since`.
                let since = &asked.since;
                let from = StreamPosition { epoch: since.epoch.clone(), offset: since.offset.saturating_sub(1) };
                let room = |u: u64| (u.saturating_sub(since.offset) as usize).min(MAX_REPAIR);
                let limit = asked.until.map_or(MAX_REPAIR, room) + 1;
                let read = history::read(commands, &asked.channel, Some(&from), limit).await.map_err(|e| e.to_string());
                Done::Read(asked, read)
            }
            Job::Rebase { channel, epoch, envelope, after } => {
                if let Some(pause) = after {
                    tokio::time::sleep(pause).await;
                }
                let mut cmd = redis::cmd("FCALL");
                cmd.arg("switchyard_rebase").arg(1).arg(&channel).arg(&epoch);
                if let Some(envelope) = &envelope {
                    cmd.arg(envelope.encode_to_vec());
                }
                let result = match cmd.query_async::<(String, u64)>(commands).await {
                    Ok((epoch, offset)) => Ok(StreamPosition { epoch, offset }),
                    Err(e) => Err(Retry { why: e.to_string(), envelope }),
                };
                Done::Rebase { channel, epoch, result }
            }
        }
    }
}

fn finished(shared: &Shared, done: Done, actions: &mut Vec<Action>, queued: &mut VecDeque<Job>) {
    match done {
        Done::Read(asked, read) => {
            let mut order = shared.order.lock().unwrap_or_else(|e| e.into_inner());
            order.repaired(&asked, read, actions);
        }
        Done::Rebase { channel, epoch, result: Ok(now) } => {
            info!(%channel, old_epoch = %epoch, epoch = %now.epoch, offset = now.offset, "channel moved to a new epoch");
        }
        Done::Rebase { channel, epoch, result: Err(Retry { why, envelope }) } => {
            // Until it is done this node drops the channel's publications:
            // try again (after a pause, in the job itself) while it still
            // wants the channel.
            if shared.order.lock().unwrap_or_else(|e| e.into_inner()).is_retired(&channel, &epoch) {
                debug!(%channel, %why, "cannot move the channel to a new epoch yet; trying again");
                queued.push_back(Job::Rebase { channel, epoch, envelope, after: Some(REBASE_RETRY) });
            }
        }
    }
}

/// A publication or a control message.
fn message(
    shared: &Shared,
    sink: &dyn PublicationSink,
    push: PushInfo,
    actions: &mut Vec<Action>,
) -> Result<(), String> {
    let mut data = push.data.into_iter();
    let (Some(name), Some(payload)) = (data.next(), data.next()) else { return Ok(()) };
    if text(&name).is_some_and(|n| shared.keys.is_control(&n)) {
        sink.control(control(payload)?);
        return Ok(());
    }
    let envelope = envelope(shared, name, payload)?;
    if envelope.offset == 0 {
        sink.deliver(envelope);
        return Ok(());
    }
    let subscribed = shared.channels.lock().unwrap_or_else(|e| e.into_inner()).contains(&envelope.channel);
    shared.order.lock().unwrap_or_else(|e| e.into_inner()).live(envelope, subscribed, actions);
    Ok(())
}

/// Confirmations and the driver's news about the connection.
async fn other(shared: &Shared, push: PushInfo, requests: &mpsc::Sender<Request>) {
    match push.kind {
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
                return;
            };
            let wanted = shared.channels.lock().unwrap_or_else(|e| e.into_inner()).contains(&channel);
            if wanted {
                let _ = requests.send(Request::Restore(channel)).await;
            }
        }
        _ => {}
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

//! The Hub: this node's subscriptions, and fan-out to their connections.
//!
//! A publication is encoded once per protocol that has a subscriber on its
//! channel and framed once, and a reference to that one frame is pushed
//! into every subscriber's outbound queue. Pushing never waits: a full queue applies the
//! namespace's slow-consumer policy to that subscriber alone.
//!
//! A subscriber with a filter gets only the publications whose tags pass
//! it; each distinct filter of a channel is evaluated once per publication,
//! however many subscribers share it. A subscriber with delta compression
//! gets, after its first full publication, Fossil deltas against the
//! previous one it received; the delta too is made once per publication and
//! encoding for all the subscribers that received the same previous one
//! (those without a filter, or those sharing a filter).
//!
//! The map is sharded by channel so that subscribes on one channel do not
//! stall fan-out on another. No lock is held across an await (there are none
//! here).

use crate::codes::CloseCode;
use crate::config::SlowConsumerPolicy;
use crate::filter::Filter;
use crate::metric;
use crate::outbound::{Close, OutFrame, Outbound, PushError};
use crate::position::StreamPosition;
use crate::protocol::Protocol;
use crate::wsframe;
use bytes::Bytes;
use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex, RwLock};
use switchyard_proto::fossil;
use switchyard_proto::v1::{ClientInfo, Envelope, MemberEvent, Publication, ServerFrame, server_frame};

/// Identifies a connection on this node.
pub type ConnId = u64;

const SHARDS: usize = 64;

/// Frames a recovering subscriber may have held for it at most; past
/// that it is closed as a slow consumer.
const MAX_HELD: usize = 100_000;

/// One subscription of one connection.
pub struct Subscriber {
    pub protocol: Protocol,
    /// The connection negotiated permessage-deflate: it gets the
    /// publication's compressed frame (made once for all such subscribers).
    pub deflate: bool,
    pub outbound: Outbound,
    /// Publications of this epoch up to this offset reached the subscriber
    /// another way (its subscribe reply, recovery): skip them. Only within
    /// the epoch: after history is lost, offsets start again from 1.
    pub delivered_through: Option<Box<StreamPosition>>,
    /// Only publications whose tags pass it.
    filter: Option<Arc<Filter>>,
    /// Its filter's place in the channel's distinct filters.
    filter_slot: usize,
    /// Gets Fossil deltas once it has a full publication to apply them to.
    delta: bool,
    /// It received the channel's previous publication here, in full or as
    /// a delta it could apply: the next may be a delta.
    has_base: AtomicBool,
}

impl Subscriber {
    pub fn new(protocol: Protocol, outbound: Outbound) -> Self {
        Subscriber {
            protocol,
            deflate: false,
            outbound,
            delivered_through: None,
            filter: None,
            filter_slot: 0,
            delta: false,
            has_base: AtomicBool::new(false),
        }
    }

    /// A subscriber that gets compressed frames (permessage-deflate).
    pub fn deflated(mut self, deflate: bool) -> Self {
        self.deflate = deflate;
        self
    }

    /// A subscriber that gets only the publications passing `filter`.
    pub fn filtered(mut self, filter: Option<Filter>) -> Self {
        self.filter = filter.map(Arc::new);
        self
    }

    /// A subscriber that gets deltas (a filtered one against the previous
    /// publication its filter passed).
    pub fn with_delta(mut self, delta: bool) -> Self {
        self.delta = delta;
        self
    }

    fn passes(&self, verdicts: &[bool]) -> bool {
        self.filter.is_none() || verdicts[self.filter_slot]
    }

    /// The subscribers that received the same publications as this one:
    /// 0 for those without a filter, 1 + the slot for those of a filter.
    fn group(&self) -> usize {
        if self.filter.is_some() { self.filter_slot + 1 } else { 0 }
    }

    /// Which of a publication's frames this subscriber gets.
    fn kind(&self) -> usize {
        let protocol = match self.protocol {
            Protocol::Json => 0,
            Protocol::Protobuf => 1,
            Protocol::Pusher => 2,
        };
        2 * protocol + usize::from(self.deflate)
    }
}

/// The frames a publication may need, one per kind of subscriber: JSON,
/// protobuf, Pusher, and each compressed.
const KINDS: usize = 6;

/// A subscriber whose publications are held while it recovers from
/// history, so that what it gets live follows what it recovers, with no gap
/// and no duplicate.
struct Recovering {
    subscriber: Subscriber,
    /// With the position of each, to drop what recovery delivered already.
    held: Vec<(StreamPosition, OutFrame)>,
}

struct ChannelSubscribers {
    subscribers: ConnMap<Subscriber>,
    recovering: std::sync::Mutex<ConnMap<Recovering>>,
    /// `recovering.len()`, readable under the shard's read lock without
    /// taking the mutex on every publication.
    recovering_count: usize,
    /// Subscribers by the kind of frame they get (see [`Subscriber::kind`]).
    kinds: [usize; KINDS],
    policy: SlowConsumerPolicy,
    /// The distinct filters of the channel's subscribers, with how many
    /// use each; a slot whose count fell to zero is reused.
    filters: Vec<(Arc<Filter>, usize)>,
    /// Subscribers that take deltas, in all and by group (see
    /// [`Subscriber::group`]), and for each group that has any, the data
    /// of the last publication it received here, the base of its next delta.
    delta_subscribers: usize,
    delta_groups: Vec<usize>,
    delta_bases: Mutex<Vec<Option<Bytes>>>,
}

impl ChannelSubscribers {
    /// Shares an equal filter already in use, or takes a slot for it.
    fn add_filter(&mut self, subscriber: &mut Subscriber) {
        let Some(filter) = subscriber.filter.take() else { return };
        let slot = match self.filters.iter().position(|(f, n)| *n > 0 && **f == *filter) {
            Some(slot) => slot,
            None => match self.filters.iter().position(|(_, n)| *n == 0) {
                Some(free) => {
                    self.filters[free].0 = filter;
                    free
                }
                None => {
                    self.filters.push((filter, 0));
                    self.filters.len() - 1
                }
            },
        };
        if self.filters[slot].1 == 0 {
            // A slot taken by another filter: its group's base is not this one's.
            let group = slot + 1;
            let bases = self.delta_bases.get_mut().unwrap_or_else(|e| e.into_inner());
            if let Some(base) = bases.get_mut(group) {
                *base = None;
            }
        }
        self.filters[slot].1 += 1;
        subscriber.filter = Some(self.filters[slot].0.clone());
        subscriber.filter_slot = slot;
    }

    fn added(&mut self, subscriber: &mut Subscriber) {
        self.kinds[subscriber.kind()] += 1;
        self.add_filter(subscriber);
        if subscriber.delta {
            let group = subscriber.group();
            if self.delta_groups.len() <= group {
                self.delta_groups.resize(group + 1, 0);
                self.delta_bases.get_mut().unwrap_or_else(|e| e.into_inner()).resize(group + 1, None);
            }
            self.delta_groups[group] += 1;
            self.delta_subscribers += 1;
        }
    }

    fn removed(&mut self, subscriber: &Subscriber) {
        self.kinds[subscriber.kind()] -= 1;
        if subscriber.filter.is_some() {
            self.filters[subscriber.filter_slot].1 -= 1;
        }
        if subscriber.delta {
            let group = subscriber.group();
            self.delta_subscribers -= 1;
            self.delta_groups[group] -= 1;
            if self.delta_groups[group] == 0 {
                self.delta_bases.get_mut().unwrap_or_else(|e| e.into_inner())[group] = None;
            }
        }
    }
}

/// A map keyed by connection id.
type ConnMap<V> = HashMap<ConnId, V, BuildHasherDefault<ConnIdHasher>>;

/// Hashes connection ids. The node hands them out in sequence and nobody
/// chooses them, so the resistance to chosen keys that SipHash pays for is
/// not needed: one odd multiplication spreads them over the whole table (a
/// bijection, so sequential ids fill the low bits evenly, and it mixes them
/// into the high bits the table's tags come from). In a storm of
/// subscribes to one channel, SipHash cost more than the rest of the insert.
#[derive(Default, Clone, Copy)]
struct ConnIdHasher(u64);

impl Hasher for ConnIdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(byte)).wrapping_mul(FIBONACCI);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0 ^ n).wrapping_mul(FIBONACCI);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// 2^64 divided by the golden ratio, odd.
const FIBONACCI: u64 = 0x9E37_79B9_7F4A_7C15;

/// What a subscribe did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subscribed {
    /// The first local subscriber: the node must now listen to the channel.
    First,
    /// The channel already had local subscribers.
    Joined,
    /// This connection was subscribed already; nothing changed.
    Already,
}

/// What an unsubscribe did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unsubscribed {
    /// The last local subscriber left: the node may stop listening.
    Last,
    Left,
    /// This connection was not subscribed.
    NotSubscribed,
}

/// Counts of one fan-out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Fanout {
    pub queued: usize,
    pub slow_disconnects: usize,
    pub dropped: usize,
    /// Subscribers that got a delta, and those whose filter left it out.
    pub deltas: usize,
    pub filtered_out: usize,
}

/// One shard of the channel map.
type Shard = RwLock<HashMap<Box<str>, ChannelSubscribers>>;

/// This node's subscriptions.
pub struct Hub {
    shards: Box<[Shard]>,
    hasher: RandomState,
    /// Publications shorter than this (encoded) go uncompressed to
    /// compressing subscribers too (`client.compression_min_size`).
    deflate_min_size: usize,
}

impl Default for Hub {
    fn default() -> Self {
        Hub {
            shards: (0..SHARDS).map(|_| RwLock::new(HashMap::new())).collect(),
            hasher: RandomState::new(),
            deflate_min_size: 0,
        }
    }
}

impl Hub {
    pub fn new() -> Self {
        Self::default()
    }

    /// A hub whose compressing subscribers get publications shorter than
    /// `min_size` uncompressed.
    pub fn with_deflate_min_size(min_size: usize) -> Self {
        Hub { deflate_min_size: min_size, ..Self::default() }
    }

    fn shard(&self, channel: &str) -> &Shard {
        &self.shards[self.hasher.hash_one(channel) as usize % SHARDS]
    }

    /// Adds `conn` to `channel`'s subscribers. A `recovering` subscriber
    /// gets nothing until [`Hub::finish_recovery`]; its publications are
    /// held until then.
    pub fn subscribe(
        &self,
        channel: &str,
        conn: ConnId,
        subscriber: Subscriber,
        policy: SlowConsumerPolicy,
        recovering: bool,
    ) -> Subscribed {
        let mut shard = self.shard(channel).write().unwrap_or_else(|e| e.into_inner());
        let mut outcome = Subscribed::Joined;
        let entry = shard.entry(channel.into()).or_insert_with(|| {
            outcome = Subscribed::First;
            ChannelSubscribers {
                subscribers: ConnMap::default(),
                recovering: std::sync::Mutex::new(ConnMap::default()),
                recovering_count: 0,
                kinds: [0; KINDS],
                policy,
                filters: Vec::new(),
                delta_subscribers: 0,
                delta_groups: Vec::new(),
                delta_bases: Mutex::new(Vec::new()),
            }
        });
        let mut subscriber = subscriber;
        let recovering_map = entry.recovering.get_mut().unwrap_or_else(|e| e.into_inner());
        if entry.subscribers.contains_key(&conn) || recovering_map.contains_key(&conn) {
            return Subscribed::Already;
        }
        entry.added(&mut subscriber);
        let recovering_map = entry.recovering.get_mut().unwrap_or_else(|e| e.into_inner());
        if recovering {
            recovering_map.insert(conn, Recovering { subscriber, held: Vec::new() });
            entry.recovering_count += 1;
        } else {
            entry.subscribers.insert(conn, subscriber);
        }
        metric::subscriptions().increment(1.0);
        if outcome == Subscribed::First {
            metric::channels().increment(1.0);
        }
        outcome
    }

    /// Removes `conn` from `channel`'s subscribers.
    pub fn unsubscribe(&self, channel: &str, conn: ConnId) -> Unsubscribed {
        let mut shard = self.shard(channel).write().unwrap_or_else(|e| e.into_inner());
        let Some(entry) = shard.get_mut(channel) else {
            return Unsubscribed::NotSubscribed;
        };
        let removed = match entry.subscribers.remove(&conn) {
            Some(removed) => removed,
            None => match entry.recovering.get_mut().unwrap_or_else(|e| e.into_inner()).remove(&conn) {
                Some(recovering) => {
                    entry.recovering_count -= 1;
                    recovering.subscriber
                }
                None => return Unsubscribed::NotSubscribed,
            },
        };
        entry.removed(&removed);
        metric::subscriptions().decrement(1.0);
        if entry.subscribers.is_empty() && entry.recovering_count == 0 {
            shard.remove(channel);
            metric::channels().decrement(1.0);
            Unsubscribed::Last
        } else {
            Unsubscribed::Left
        }
    }

    /// Local subscribers of `channel`.
    pub fn subscriber_count(&self, channel: &str) -> usize {
        let shard = self.shard(channel).read().unwrap_or_else(|e| e.into_inner());
        shard.get(channel).map_or(0, |c| c.subscribers.len() + c.recovering_count)
    }

    /// Ends `conn`'s recovery on `channel`: queues `head` (its subscribe
    /// reply, recovered publications), then what was held for it past
    /// `through` (same epoch and not after it are dropped), and from then on
    /// delivers live. Returns false if it is no longer subscribed.
    pub fn finish_recovery(
        &self,
        channel: &str,
        conn: ConnId,
        head: Vec<OutFrame>,
        through: Option<StreamPosition>,
    ) -> bool {
        let mut shard = self.shard(channel).write().unwrap_or_else(|e| e.into_inner());
        let Some(entry) = shard.get_mut(channel) else { return false };
        let Some(Recovering { mut subscriber, held }) =
            entry.recovering.get_mut().unwrap_or_else(|e| e.into_inner()).remove(&conn)
        else {
            return false;
        };
        entry.recovering_count -= 1;
        let mut delivered = through;
        let mut frames = head;
        for (position, frame) in held {
            let seen = delivered.as_ref().is_some_and(|d| d.covers_position(&position.epoch, position.offset));
            if !seen {
                if position.offset > 0 {
                    delivered = Some(position);
                }
                frames.push(frame);
            }
        }
        for frame in frames {
            if subscriber.outbound.push(frame).is_err() {
                if subscriber.outbound.close(Close::Server(CloseCode::SlowConsumer)) {
                    metric::slow_consumer_disconnects().increment(1);
                }
                break;
            }
        }
        subscriber.delivered_through = delivered.map(Box::new);
        // What it got so far came another way: the next is full.
        *subscriber.has_base.get_mut() = false;
        entry.subscribers.insert(conn, subscriber);
        true
    }

    /// Subscriptions of all local connections.
    pub fn subscription_count(&self) -> usize {
        self.shards
            .iter()
            .map(|s| {
                s.read()
                    .unwrap_or_else(|e| e.into_inner())
                    .values()
                    .map(|c| c.subscribers.len() + c.recovering_count)
                    .sum::<usize>()
            })
            .sum()
    }

    /// The channels whose name starts with `prefix`, with their local
    /// subscribers.
    pub fn channels_with_prefix(&self, prefix: &str) -> Vec<(String, usize)> {
        let mut channels = Vec::new();
        for shard in self.shards.iter() {
            let shard = shard.read().unwrap_or_else(|e| e.into_inner());
            channels.extend(
                shard
                    .iter()
                    .filter(|(name, _)| name.starts_with(prefix))
                    .map(|(name, c)| (name.to_string(), c.subscribers.len() + c.recovering_count)),
            );
        }
        channels
    }

    /// Channels with at least one local subscriber.
    pub fn channel_count(&self) -> usize {
        self.shards.iter().map(|s| s.read().unwrap_or_else(|e| e.into_inner()).len()).sum()
    }

    /// Delivers one publication to every local subscriber of its channel.
    pub fn broadcast(&self, envelope: &Envelope) -> Fanout {
        self.broadcast_except(envelope, None)
    }

    /// Delivers one publication to every local subscriber of its channel
    /// but `except` (a Pusher event's sender, or the connection an API
    /// trigger excluded).
    pub fn broadcast_except(&self, envelope: &Envelope, except: Option<ConnId>) -> Fanout {
        let shard = self.shard(&envelope.channel).read().unwrap_or_else(|e| e.into_inner());
        let Some(entry) = shard.get(envelope.channel.as_str()) else {
            return Fanout::default();
        };
        let message = push_message(envelope);
        let is_publication = matches!(message, server_frame::Message::Pub(_));
        // Each distinct filter, evaluated once; presence events pass all.
        let verdicts: Vec<bool> = match is_publication {
            true => entry.filters.iter().map(|(f, n)| *n > 0 && f.matches(&envelope.tags)).collect(),
            false => vec![true; entry.filters.len()],
        };
        // For each group of delta subscribers this publication reaches, the
        // delta against the group's previous publication, made once for all
        // of them.
        let mut deltas: Vec<Option<(Frames, bool)>> = Vec::new();
        if is_publication && entry.delta_subscribers > 0 {
            let mut bases = entry.delta_bases.lock().unwrap_or_else(|e| e.into_inner());
            deltas = (0..entry.delta_groups.len())
                .map(|group| {
                    let reached = group == 0 || verdicts.get(group - 1).copied().unwrap_or(false);
                    if entry.delta_groups[group] == 0 || !reached {
                        return None;
                    }
                    let base = bases[group].replace(envelope.data.clone());
                    let delta = Delta::between(base.as_deref()?, &envelope.data)?;
                    let mut publication = publication(envelope);
                    publication.data = delta.bytes;
                    publication.delta = true;
                    let frame = ServerFrame { id: 0, message: Some(server_frame::Message::Pub(publication)) };
                    Some((Frames::new(frame, envelope), delta.is_text))
                })
                .collect();
        }
        let mut full = Frames::new(ServerFrame { id: 0, message: Some(message) }, envelope);
        let mut fanout = Fanout::default();
        if entry.recovering_count > 0 {
            let mut recovering = entry.recovering.lock().unwrap_or_else(|e| e.into_inner());
            for (conn, r) in recovering.iter_mut() {
                if except == Some(*conn) {
                    continue;
                }
                if !r.subscriber.passes(&verdicts) {
                    fanout.filtered_out += 1;
                    continue;
                }
                if r.held.len() >= MAX_HELD {
                    if r.subscriber.outbound.close(Close::Server(CloseCode::SlowConsumer)) {
                        fanout.slow_disconnects += 1;
                    }
                    continue;
                }
                let position = StreamPosition::of(envelope);
                r.held.push((position, full.get(&r.subscriber, self.deflate_min_size)));
                fanout.queued += 1;
            }
        }
        for (conn, subscriber) in entry.subscribers.iter() {
            if except == Some(*conn) {
                continue;
            }
            if !subscriber.passes(&verdicts) {
                fanout.filtered_out += 1;
                continue;
            }
            if subscriber.delivered_through.as_ref().is_some_and(|d| d.covers(envelope)) {
                subscriber.has_base.store(false, Relaxed);
                continue;
            }
            let as_delta = subscriber.delta && subscriber.has_base.load(Relaxed);
            let frame = match deltas.get_mut(subscriber.group()).and_then(Option::as_mut) {
                // A JSON subscriber gets a delta only if it is text.
                Some((frames, is_text)) if as_delta && (*is_text || subscriber.protocol == Protocol::Protobuf) => {
                    fanout.deltas += 1;
                    frames.get(subscriber, self.deflate_min_size)
                }
                _ => full.get(subscriber, self.deflate_min_size),
            };
            let queued = subscriber.outbound.push(frame);
            if subscriber.delta && is_publication {
                subscriber.has_base.store(queued.is_ok(), Relaxed);
            }
            match queued {
                Ok(()) => fanout.queued += 1,
                Err(PushError::Closed) => {}
                Err(PushError::Full) => match entry.policy {
                    SlowConsumerPolicy::Disconnect => {
                        if subscriber.outbound.close(Close::Server(CloseCode::SlowConsumer)) {
                            fanout.slow_disconnects += 1;
                        }
                    }
                    SlowConsumerPolicy::Drop => fanout.dropped += 1,
                },
            }
        }
        drop(shard);
        if fanout.slow_disconnects > 0 {
            metric::slow_consumer_disconnects().increment(fanout.slow_disconnects as u64);
        }
        if fanout.dropped > 0 {
            metric::slow_consumer_drops().increment(fanout.dropped as u64);
        }
        if fanout.deltas > 0 {
            metric::delta_deliveries().increment(fanout.deltas as u64);
        }
        if fanout.filtered_out > 0 {
            metric::filtered_out().increment(fanout.filtered_out as u64);
        }
        fanout
    }
}

/// A delta worth sending.
struct Delta {
    bytes: Bytes,
    /// Valid UTF-8: a JSON subscriber can take it (as a JSON string).
    is_text: bool,
}

impl Delta {
    /// The delta from `base` to `data`, if it is smaller than `data`.
    fn between(base: &[u8], data: &Bytes) -> Option<Delta> {
        let delta = fossil::create(base, data);
        if delta.len() >= data.len() {
            return None;
        }
        // A JSON subscriber's base must be what it parsed as data: both
        // sides JSON values.
        let is_text = std::str::from_utf8(&delta).is_ok()
            && switchyard_proto::json::raw::as_json(base).is_some()
            && switchyard_proto::json::raw::as_json(data).is_some();
        Some(Delta { bytes: Bytes::from(delta), is_text })
    }
}

/// One push frame, encoded (and compressed) at most once per kind of
/// subscriber, when the first subscriber of that kind needs it.
struct Frames<'a> {
    frame: ServerFrame,
    /// Pusher subscribers' frames are made from the Envelope (the event's
    /// name is there, not in the push frame).
    envelope: &'a Envelope,
    encoded: [Option<OutFrame>; KINDS],
}

impl<'a> Frames<'a> {
    fn new(frame: ServerFrame, envelope: &'a Envelope) -> Self {
        Frames { frame, envelope, encoded: Default::default() }
    }

    fn get(&mut self, subscriber: &Subscriber, min_size: usize) -> OutFrame {
        let kind = subscriber.kind();
        let (frame, envelope) = (&self.frame, self.envelope);
        let encoded = self.encoded[kind].get_or_insert_with(|| {
            let deflate = subscriber.deflate;
            let bytes = match subscriber.protocol {
                Protocol::Pusher => {
                    let json = crate::pusher::envelope_json(envelope);
                    match deflate && json.len() >= min_size {
                        true => wsframe::compressed(wsframe::OPCODE_TEXT, &crate::deflate::compress(json.as_bytes())),
                        false => wsframe::text(json.as_bytes()),
                    }
                }
                protocol if deflate => protocol.encode_deflated(frame, min_size),
                protocol => protocol.encode(frame),
            };
            OutFrame::publication(bytes, envelope.published_at_us)
        });
        encoded.clone()
    }
}

/// What an Envelope is for a subscriber: a publication, or a presence
/// event (`join`, `leave`) of a `join_leave` namespace.
fn push_message(envelope: &Envelope) -> server_frame::Message {
    let event = |info: &ClientInfo| MemberEvent { channel: envelope.channel.clone(), info: Some(info.clone()) };
    match (&envelope.join, &envelope.leave) {
        (Some(info), _) => server_frame::Message::Join(event(info)),
        (None, Some(info)) => server_frame::Message::Leave(event(info)),
        (None, None) => server_frame::Message::Pub(publication(envelope)),
    }
}

/// The client-facing publication of an Envelope. Offset and epoch are set
/// only where the channel keeps history (offset 0 means it does not).
pub fn publication(envelope: &Envelope) -> Publication {
    let history = envelope.offset > 0;
    Publication {
        channel: envelope.channel.clone(),
        data: envelope.data.clone(),
        offset: history.then_some(envelope.offset),
        epoch: history.then(|| envelope.epoch.clone()),
        info: envelope.publisher.clone(),
        tags: envelope.tags.clone(),
        delta: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outbound::{OutboundQueue, outbound};
    use bytes::Bytes;
    use prost::Message as _;

    fn subscriber(protocol: Protocol, max: usize) -> (Subscriber, OutboundQueue) {
        let (tx, rx) = outbound(max);
        (Subscriber::new(protocol, tx), rx)
    }

    fn envelope(channel: &str, data: &str) -> Envelope {
        Envelope { channel: channel.into(), data: Bytes::copy_from_slice(data.as_bytes()), ..Default::default() }
    }

    #[tokio::test]
    async fn reference_counts_channels() {
        let hub = Hub::new();
        let (a, _qa) = subscriber(Protocol::Json, 1024);
        let (b, _qb) = subscriber(Protocol::Json, 1024);
        let policy = SlowConsumerPolicy::Disconnect;
        let again = Subscriber::new(Protocol::Json, a.outbound.clone());
        assert_eq!(hub.subscribe("news", 1, again, policy, false), Subscribed::First);
        assert_eq!(hub.subscribe("news", 1, a, policy, false), Subscribed::Already);
        assert_eq!(hub.subscribe("news", 2, b, policy, false), Subscribed::Joined);
        assert_eq!(hub.channel_count(), 1);
        assert_eq!(hub.unsubscribe("news", 1), Unsubscribed::Left);
        assert_eq!(hub.unsubscribe("news", 1), Unsubscribed::NotSubscribed);
        assert_eq!(hub.unsubscribe("news", 2), Unsubscribed::Last);
        assert_eq!(hub.channel_count(), 0);
    }

    #[tokio::test]
    async fn encodes_once_and_shares_the_bytes() {
        let hub = Hub::new();
        let (a, mut qa) = subscriber(Protocol::Json, 1024);
        let (b, mut qb) = subscriber(Protocol::Json, 1024);
        let (c, mut qc) = subscriber(Protocol::Protobuf, 1024);
        let policy = SlowConsumerPolicy::Disconnect;
        hub.subscribe("news", 1, a, policy, false);
        hub.subscribe("news", 2, b, policy, false);
        hub.subscribe("news", 3, c, policy, false);
        assert_eq!(hub.broadcast(&envelope("news", r#"{"text": "hi"}"#)).queued, 3);
        let (mut fa, mut fb, mut fc) = (Vec::new(), Vec::new(), Vec::new());
        qa.recv_many(&mut fa, 10).await;
        qb.recv_many(&mut fb, 10).await;
        qc.recv_many(&mut fc, 10).await;
        // The very same allocation, not equal copies.
        assert_eq!(fa[0].bytes().as_ptr(), fb[0].bytes().as_ptr());
        assert_eq!(&fa[0].bytes()[2..], br#"{"pub":{"channel":"news","data":{"text": "hi"}}}"#);
        let decoded = ServerFrame::decode(&fc[0].bytes()[2..]).unwrap();
        let Some(server_frame::Message::Pub(p)) = decoded.message else { panic!("not a pub") };
        assert_eq!(&p.data[..], br#"{"text": "hi"}"#);
    }

    #[tokio::test]
    async fn a_full_queue_closes_only_that_subscriber() {
        let hub = Hub::new();
        let (slow, slow_q) = subscriber(Protocol::Json, 256);
        let (fast, mut fast_q) = subscriber(Protocol::Json, 1 << 20);
        hub.subscribe("news", 1, slow, SlowConsumerPolicy::Disconnect, false);
        hub.subscribe("news", 2, fast, SlowConsumerPolicy::Disconnect, false);
        let mut slow_disconnects = 0;
        for _ in 0..20 {
            slow_disconnects +=
                hub.broadcast(&envelope("news", "\"0123456789012345678901234567890123456789\"")).slow_disconnects;
        }
        assert_eq!(slow_disconnects, 1);
        assert_eq!(slow_q.close(), Some(Close::Server(CloseCode::SlowConsumer)));
        let mut batch = Vec::new();
        fast_q.recv_many(&mut batch, 100).await;
        assert_eq!(batch.len(), 20);
    }

    #[tokio::test]
    async fn recovery_holds_live_publications_and_drops_the_overlap() {
        let hub = Hub::new();
        let (sub, mut queue) = subscriber(Protocol::Json, 1 << 20);
        hub.subscribe("chat:x", 7, sub, SlowConsumerPolicy::Disconnect, true);
        let at = |offset: u64| Envelope { offset, epoch: "e".into(), ..envelope("chat:x", &offset.to_string()) };
        // Live publications 4 and 5 arrive while history is read up to 4.
        hub.broadcast(&at(4));
        hub.broadcast(&at(5));
        let mut batch = Vec::new();
        assert!(tokio::time::timeout(std::time::Duration::ZERO, queue.recv_many(&mut batch, 10)).await.is_err());
        let head = vec![OutFrame::control(Bytes::from_static(b"reply"))];
        assert!(hub.finish_recovery("chat:x", 7, head, Some(StreamPosition::new("e", 4))));
        hub.broadcast(&at(5)); // a duplicate now: skipped
        hub.broadcast(&at(6));
        queue.recv_many(&mut batch, 10).await;
        let got: Vec<String> = batch.iter().map(|f| String::from_utf8_lossy(f.bytes()).into_owned()).collect();
        assert_eq!(got.len(), 3, "{got:?}");
        assert_eq!(got[0], "reply");
        assert!(got[1].contains(r#""offset":5"#) && got[2].contains(r#""offset":6"#), "{got:?}");
    }

    #[tokio::test]
    async fn after_history_is_lost_a_new_epoch_is_delivered_from_offset_one() {
        let hub = Hub::new();
        let (sub, mut queue) = subscriber(Protocol::Json, 1 << 20);
        hub.subscribe("chat:x", 7, sub, SlowConsumerPolicy::Disconnect, true);
        let at = |epoch: &str, offset: u64| Envelope { offset, epoch: epoch.into(), ..envelope("chat:x", "1") };
        // Held during recovery: the old epoch's 9, then the new epoch's 1.
        hub.broadcast(&at("old", 9));
        hub.broadcast(&at("new", 1));
        let through = Some(StreamPosition::new("old", 9));
        assert!(hub.finish_recovery("chat:x", 7, Vec::new(), through));
        // Live, in the new epoch: 1 again is a duplicate, 2 and 3 are not,
        // although the old epoch had reached 9.
        for offset in [1, 2, 3] {
            hub.broadcast(&at("new", offset));
        }
        let mut batch = Vec::new();
        queue.recv_many(&mut batch, 10).await;
        let got: Vec<String> = batch.iter().map(|f| String::from_utf8_lossy(f.bytes()).into_owned()).collect();
        assert_eq!(got.len(), 3, "{got:?}");
        for (frame, offset) in got.iter().zip([1, 2, 3]) {
            assert!(frame.contains(&format!(r#""offset":{offset},"epoch":"new""#)), "{frame}");
        }
    }

    #[tokio::test]
    async fn the_drop_policy_skips_without_closing() {
        let hub = Hub::new();
        let (slow, slow_q) = subscriber(Protocol::Json, 256);
        hub.subscribe("feed:x", 1, slow, SlowConsumerPolicy::Drop, false);
        let dropped: usize = (0..20)
            .map(|_| hub.broadcast(&envelope("feed:x", "\"0123456789012345678901234567890123456789\"")).dropped)
            .sum();
        assert!(dropped > 0);
        assert_eq!(slow_q.close(), None);
    }

    fn tagged(channel: &str, data: &str, tags: &[(&str, &str)]) -> Envelope {
        let tags = tags.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Envelope { tags, ..envelope(channel, data) }
    }

    fn filter(json: &str) -> Option<Filter> {
        let message: switchyard_proto::v1::Filter = serde_json::from_str(json).unwrap();
        Some(Filter::compile(&message).unwrap())
    }

    async fn drain(queue: &mut OutboundQueue) -> Vec<String> {
        let mut batch = Vec::new();
        while tokio::time::timeout(std::time::Duration::ZERO, queue.recv_many(&mut batch, 100))
            .await
            .is_ok_and(|n| n > 0)
        {}
        batch.iter().map(|f| String::from_utf8_lossy(payload(f.bytes())).into_owned()).collect()
    }

    /// A WebSocket frame's payload (unmasked, as the server sends them).
    fn payload(frame: &[u8]) -> &[u8] {
        match frame[1] & 0x7f {
            126 => &frame[4..],
            127 => &frame[10..],
            _ => &frame[2..],
        }
    }

    #[tokio::test]
    async fn filters_pass_only_matching_publications_and_are_shared() {
        let hub = Hub::new();
        let policy = SlowConsumerPolicy::Disconnect;
        let btc = r#"{"key":"ticker","cmp":"in","vals":["BTC"]}"#;
        let (a, mut qa) = subscriber(Protocol::Json, 1 << 20);
        let (b, mut qb) = subscriber(Protocol::Json, 1 << 20);
        let (c, mut qc) = subscriber(Protocol::Json, 1 << 20);
        hub.subscribe("prices", 1, a.filtered(filter(btc)), policy, false);
        hub.subscribe("prices", 2, b.filtered(filter(btc)), policy, false);
        hub.subscribe("prices", 3, c, policy, false);
        {
            let shard = hub.shard("prices").read().unwrap();
            assert_eq!(shard["prices"].filters.len(), 1, "equal filters share one slot");
        }
        hub.broadcast(&tagged("prices", "1", &[("ticker", "BTC")]));
        hub.broadcast(&tagged("prices", "2", &[("ticker", "ETH")]));
        hub.broadcast(&envelope("prices", "3"));
        let (ga, gb, gc) = (drain(&mut qa).await, drain(&mut qb).await, drain(&mut qc).await);
        assert_eq!(ga, [r#"{"pub":{"channel":"prices","data":1,"tags":{"ticker":"BTC"}}}"#]);
        assert_eq!(ga, gb);
        assert_eq!(gc.len(), 3);
        // The slot is freed with its last subscriber and taken by the next.
        hub.unsubscribe("prices", 1);
        hub.unsubscribe("prices", 2);
        let (d, mut qd) = subscriber(Protocol::Json, 1 << 20);
        hub.subscribe("prices", 4, d.filtered(filter(r#"{"key":"ticker","cmp":"eq","val":"ETH"}"#)), policy, false);
        assert_eq!(hub.shard("prices").read().unwrap()["prices"].filters.len(), 1);
        hub.broadcast(&tagged("prices", "4", &[("ticker", "ETH")]));
        hub.broadcast(&tagged("prices", "5", &[("ticker", "BTC")]));
        assert_eq!(drain(&mut qd).await.len(), 1);
    }

    fn pub_of(frame: &str) -> Publication {
        let frame = switchyard_proto::json::decode_server_frame(frame).unwrap();
        match frame.message {
            Some(server_frame::Message::Pub(p)) => p,
            other => panic!("not a pub: {other:?}"),
        }
    }

    #[tokio::test]
    async fn delta_subscribers_get_one_full_publication_then_deltas() {
        let hub = Hub::new();
        let policy = SlowConsumerPolicy::Disconnect;
        let doc = |n: u32| {
            format!(
                r#"{{"rows":[{}],"n":{n}}}"#,
                (0..30).map(|i| format!(r#"{{"i":{i},"v":"row {i}"}}"#)).collect::<Vec<_>>().join(",")
            )
        };
        let (a, mut qa) = subscriber(Protocol::Json, 1 << 20);
        let (p, mut qp) = subscriber(Protocol::Protobuf, 1 << 20);
        let (plain, mut qplain) = subscriber(Protocol::Json, 1 << 20);
        hub.subscribe("state:x", 1, a.with_delta(true), policy, false);
        hub.subscribe("state:x", 2, p.with_delta(true), policy, false);
        hub.subscribe("state:x", 3, plain, policy, false);
        for n in 0..3 {
            hub.broadcast(&envelope("state:x", &doc(n)));
        }
        // A subscriber joining mid-stream starts from a full publication.
        let (late, mut qlate) = subscriber(Protocol::Json, 1 << 20);
        hub.subscribe("state:x", 4, late.with_delta(true), policy, false);
        hub.broadcast(&envelope("state:x", &doc(3)));
        hub.broadcast(&envelope("state:x", &doc(4)));

        let got = drain(&mut qa).await;
        let mut previous = Bytes::new();
        for (n, frame) in got.iter().enumerate() {
            let p = pub_of(frame);
            assert_eq!(p.delta, n > 0, "{frame}");
            let data = if p.delta { Bytes::from(fossil::apply(&previous, &p.data, 1 << 20).unwrap()) } else { p.data };
            assert_eq!(data, doc(n as u32).as_bytes());
            previous = data;
        }
        assert!(got[1].len() < got[0].len() / 4);
        let mut batch = Vec::new();
        qp.recv_many(&mut batch, 10).await;
        let second = ServerFrame::decode(payload(batch[1].bytes())).unwrap();
        let Some(server_frame::Message::Pub(second)) = second.message else { panic!() };
        assert!(second.delta);
        assert_eq!(fossil::apply(doc(0).as_bytes(), &second.data, 1 << 20).unwrap(), doc(1).as_bytes());
        assert!(drain(&mut qplain).await.iter().all(|f| !pub_of(f).delta));
        let late: Vec<bool> = drain(&mut qlate).await.iter().map(|f| pub_of(f).delta).collect();
        assert_eq!(late, [false, true]);
    }

    #[tokio::test]
    async fn a_filtered_delta_subscriber_gets_deltas_against_what_its_filter_passed() {
        let hub = Hub::new();
        let policy = SlowConsumerPolicy::Disconnect;
        let doc = |side: &str, n: u32| {
            let rows: Vec<String> = (0..30).map(|i| format!(r#"{{"i":{i},"side":"{side}"}}"#)).collect();
            format!(r#"{{"side":"{side}","n":{n},"rows":[{}]}}"#, rows.join(","))
        };
        let (a, mut qa) = subscriber(Protocol::Json, 1 << 20);
        let (all, mut qall) = subscriber(Protocol::Json, 1 << 20);
        let only_a = filter(r#"{"key":"side","cmp":"eq","val":"a"}"#);
        hub.subscribe("state:x", 1, a.filtered(only_a).with_delta(true), policy, false);
        hub.subscribe("state:x", 2, all.with_delta(true), policy, false);
        let mut sent = Vec::new();
        for n in 0..6 {
            let side = if n % 2 == 0 { "a" } else { "b" };
            hub.broadcast(&tagged("state:x", &doc(side, n), &[("side", side)]));
            sent.push((side, doc(side, n)));
        }
        let rebuild = |frames: Vec<String>| {
            let mut previous = Bytes::new();
            frames
                .iter()
                .map(|f| {
                    let p = pub_of(f);
                    let data =
                        if p.delta { Bytes::from(fossil::apply(&previous, &p.data, 1 << 20).unwrap()) } else { p.data };
                    previous = data.clone();
                    (p.delta, String::from_utf8(data.to_vec()).unwrap())
                })
                .collect::<Vec<_>>()
        };
        let got_a = rebuild(drain(&mut qa).await);
        let expected_a: Vec<String> = sent.iter().filter(|(s, _)| *s == "a").map(|(_, d)| d.clone()).collect();
        assert_eq!(got_a.iter().map(|(_, d)| d.clone()).collect::<Vec<_>>(), expected_a);
        assert_eq!(got_a.iter().map(|(delta, _)| *delta).collect::<Vec<_>>(), [false, true, true]);
        let got_all = rebuild(drain(&mut qall).await);
        assert_eq!(
            got_all.iter().map(|(_, d)| d.clone()).collect::<Vec<_>>(),
            sent.iter().map(|(_, d)| d.clone()).collect::<Vec<_>>()
        );
        assert!(got_all[1..].iter().all(|(delta, _)| *delta));
    }
}

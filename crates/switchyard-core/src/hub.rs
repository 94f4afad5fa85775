//! The Hub: this node's subscriptions, and fan-out to their connections.
//!
//! A publication is encoded once per protocol that has a subscriber on its
//! channel and framed once, and a reference to that one frame is pushed
//! into every subscriber's outbound queue. Pushing never waits: a full queue applies the
//! namespace's slow-consumer policy to that subscriber alone.
//!
//! The map is sharded by channel so that subscribes on one channel do not
//! stall fan-out on another. No lock is held across an await (there are none
//! here).

use crate::codes::CloseCode;
use crate::config::SlowConsumerPolicy;
use crate::metric;
use crate::outbound::{Close, OutFrame, Outbound, PushError};
use crate::position::StreamPosition;
use crate::protocol::Protocol;
use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState};
use std::sync::RwLock;
use switchyard_proto::v1::{ClientInfo, Envelope, MemberEvent, Publication, ServerFrame, server_frame};

/// Identifies a connection on this node.
pub type ConnId = u64;

const SHARDS: usize = 64;

/// Frames a recovering subscriber may have held for it at most; past
/// that it is closed as a slow consumer.
const MAX_HELD: usize = 100_000;

/// One subscription of one connection.
#[derive(Clone)]
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
}

impl Subscriber {
    pub fn new(protocol: Protocol, outbound: Outbound) -> Self {
        Subscriber { protocol, deflate: false, outbound, delivered_through: None }
    }

    /// A subscriber that gets compressed frames (permessage-deflate).
    pub fn deflated(mut self, deflate: bool) -> Self {
        self.deflate = deflate;
        self
    }

    /// Which of a publication's frames this subscriber gets.
    fn kind(&self) -> usize {
        let protocol = match self.protocol {
            Protocol::Json => 0,
            Protocol::Protobuf => 1,
        };
        protocol + 2 * usize::from(self.deflate)
    }
}

/// The frames a publication may need, one per kind of subscriber: JSON,
/// protobuf, and each compressed.
const KINDS: usize = 4;

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
            }
        });
        let kind = subscriber.kind();
        let recovering_map = entry.recovering.get_mut().unwrap_or_else(|e| e.into_inner());
        if entry.subscribers.contains_key(&conn) || recovering_map.contains_key(&conn) {
            return Subscribed::Already;
        }
        if recovering {
            recovering_map.insert(conn, Recovering { subscriber, held: Vec::new() });
            entry.recovering_count += 1;
        } else {
            entry.subscribers.insert(conn, subscriber);
        }
        entry.kinds[kind] += 1;
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
        entry.kinds[removed.kind()] -= 1;
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
        let shard = self.shard(&envelope.channel).read().unwrap_or_else(|e| e.into_inner());
        let Some(entry) = shard.get(envelope.channel.as_str()) else {
            return Fanout::default();
        };
        let frame = ServerFrame { id: 0, message: Some(push_message(envelope)) };
        let at = envelope.published_at_us;
        // Each frame a subscriber here needs, made once: the compressed ones
        // are compressed once, however many subscribers share them.
        let frames: [Option<OutFrame>; KINDS] = std::array::from_fn(|kind| {
            (entry.kinds[kind] > 0).then(|| {
                let protocol = if kind % 2 == 0 { Protocol::Json } else { Protocol::Protobuf };
                let bytes = match kind >= 2 {
                    false => protocol.encode(&frame),
                    true => protocol.encode_deflated(&frame, self.deflate_min_size),
                };
                OutFrame::publication(bytes, at)
            })
        });
        let frame_for = |subscriber: &Subscriber| -> OutFrame {
            frames[subscriber.kind()].clone().expect("a frame is made for every kind with a subscriber")
        };
        let mut fanout = Fanout::default();
        if entry.recovering_count > 0 {
            let mut recovering = entry.recovering.lock().unwrap_or_else(|e| e.into_inner());
            for r in recovering.values_mut() {
                if r.held.len() >= MAX_HELD {
                    if r.subscriber.outbound.close(Close::Server(CloseCode::SlowConsumer)) {
                        fanout.slow_disconnects += 1;
                    }
                    continue;
                }
                let position = StreamPosition::of(envelope);
                r.held.push((position, frame_for(&r.subscriber)));
                fanout.queued += 1;
            }
        }
        for subscriber in entry.subscribers.values() {
            if subscriber.delivered_through.as_ref().is_some_and(|d| d.covers(envelope)) {
                continue;
            }
            let frame = frame_for(subscriber);
            match subscriber.outbound.push(frame) {
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
        fanout
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
        assert_eq!(hub.subscribe("news", 1, a.clone(), policy, false), Subscribed::First);
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
}

//! The order of a history channel's publications on this node, decided
//! without waiting on Redis: what to deliver now, what to hold while the
//! channel's gap is repaired, what to drop as a duplicate, and when the
//! channel's history went back in time.
//!
//! Pub/sub carries each channel's publications in offset order. A
//! publication past a gap (after a reconnect, a dropped push, a slot
//! move) starts a repair of that channel alone: its live publications are
//! held until the stream has filled the gap, while every other channel
//! keeps flowing. A repair reads the stream from the last offset delivered,
//! and checks that the publication there is still the one delivered.
//!
//! **Regressions.** Redis replication is asynchronous: a promoted replica
//! may lack the last publications of a channel, and its next publications
//! then reuse their offsets under the same epoch. A client holding offset N
//! would take the new N for the one it has: a silent loss. This node
//! remembers a fingerprint ([`stamp`]) of the last few publications it
//! delivered per channel; an offset that comes again with another
//! fingerprint, or a stream that ends before (or holds another publication
//! at) the last offset delivered, is a regression. The node then retires
//! the epoch (drops its publications from then on) and asks Redis to move
//! the channel to a new one (`switchyard_rebase`), so that clients see a
//! new epoch (the SDKs' gap event, `recovered: false`) instead of wrong data.

use crate::broker::History;
use std::collections::{HashMap, VecDeque};
use switchyard_core::metric;
use switchyard_proto::v1::Envelope;

/// Recent (offset, stamp) pairs kept per channel to tell a duplicate from
/// a reused offset: a regression of up to this many publications is seen
/// on the live path; a longer one by the next repair's check.
const RECENT: usize = 8;
/// Live publications held for one channel while it is repaired, at most.
pub const MAX_HELD: usize = 10_000;
/// Live publications held for all channels together, at most; past it (or
/// [`MAX_HELD`]) the channel drops what comes and reads it all from its
/// stream once the repair is done.
pub const MAX_HELD_TOTAL: usize = 200_000;

/// A fingerprint of a publication: its data and publish time. The stream
/// keeps the same bytes as pub/sub carried, so both give the same stamp.
pub fn stamp(envelope: &Envelope) -> u64 {
    // FNV-1a: cheap, deterministic, good enough to tell two publications apart.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in envelope.data.iter().chain(envelope.published_at_us.to_le_bytes().iter()) {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// What this node knows of one history channel.
#[derive(Debug, Default)]
pub struct Track {
    epoch: String,
    /// The last offset delivered.
    offset: u64,
    recent: [(u64, u64); RECENT],
    /// An epoch found to have gone back in time: its publications are dropped.
    retired: Option<String>,
    /// A read of the stream is out for this channel.
    repairing: bool,
    held: VecDeque<Envelope>,
    /// Live publications were dropped while held ones filled up.
    overflowed: bool,
}

impl Track {
    fn delivered(&mut self, envelope: &Envelope) {
        self.epoch.clone_from(&envelope.epoch);
        self.offset = envelope.offset;
        self.recent[(envelope.offset as usize) % RECENT] = (envelope.offset, stamp(envelope));
    }

    /// The stamp of `offset`, if it is among the recent ones.
    fn stamp_of(&self, offset: u64) -> Option<u64> {
        self.recent.iter().find(|(o, _)| *o == offset && offset != 0).map(|(_, s)| *s)
    }

    fn position(&self, held: bool) -> Checked {
        Checked { epoch: self.epoch.clone(), offset: self.offset, stamp: self.stamp_of(self.offset), held }
    }
}

/// Where a read of the stream starts: the last offset delivered, and its
/// stamp if known, to check that the stream still holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    pub epoch: String,
    pub offset: u64,
    pub stamp: Option<u64>,
    /// Whether the channel's live publications wait for this read (a
    /// repair), or flow meanwhile (the check after a reconnect: a live
    /// publication that follows the last delivered one misses nothing).
    pub held: bool,
}

/// A read of `channel`'s stream after `since`, up to `until` (or all of it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamRead {
    pub channel: String,
    pub since: Checked,
    pub until: Option<u64>,
}

/// What the pushes task is to do.
#[derive(Debug)]
pub enum Action {
    Deliver(Envelope),
    /// Read the stream and hand the result to [`Order::repaired`].
    Read(StreamRead),
    /// Move `channel` off `epoch` (and publish `envelope` in the new one).
    Rebase {
        channel: String,
        epoch: String,
        envelope: Option<Envelope>,
    },
}

/// The tracks of every history channel this node delivers, and the count
/// of held publications.
#[derive(Debug, Default)]
pub struct Order {
    tracks: HashMap<String, Track>,
    held: usize,
}

impl Order {
    /// Forgets a channel this node no longer subscribes to.
    pub fn forget(&mut self, channel: &str) {
        if let Some(track) = self.tracks.remove(channel) {
            self.held -= track.held.len();
        }
    }

    /// Where `channel`'s stream stands, as a read of it found (a subscribe
    /// reads it): a channel not tracked yet starts there, so that its first
    /// live publication is checked against it like any other.
    pub fn expect(&mut self, channel: &str, epoch: &str, offset: u64) {
        self.tracks.entry(channel.to_owned()).or_insert_with(|| Track {
            epoch: epoch.to_owned(),
            offset,
            ..Track::default()
        });
    }

    /// Whether this node retired `epoch` of `channel` (and still tracks it).
    pub fn is_retired(&self, channel: &str, epoch: &str) -> bool {
        self.tracks.get(channel).is_some_and(|t| t.retired.as_deref() == Some(epoch))
    }

    /// A publication of a history channel from pub/sub. `subscribed`: whether
    /// the node still wants the channel (only those are tracked).
    pub fn live(&mut self, envelope: Envelope, subscribed: bool, actions: &mut Vec<Action>) {
        let Some(track) = self.tracks.get_mut(&envelope.channel) else {
            if subscribed {
                let mut track = Track::default();
                track.delivered(&envelope);
                self.tracks.insert(envelope.channel.clone(), track);
            }
            actions.push(Action::Deliver(envelope));
            return;
        };
        if track.retired.as_deref() == Some(envelope.epoch.as_str()) {
            return;
        }
        if track.repairing {
            if track.held.len() < MAX_HELD && self.held < MAX_HELD_TOTAL {
                track.held.push_back(envelope);
                self.held += 1;
            } else {
                track.overflowed = true;
                metric::broker_held_dropped().increment(1);
            }
            return;
        }
        if Self::next(track, envelope, actions) {
            self.held += 1;
        }
    }

    /// One publication in turn (the track is not repairing); true when it
    /// starts a repair and is held behind it.
    fn next(track: &mut Track, envelope: Envelope, actions: &mut Vec<Action>) -> bool {
        if envelope.epoch != track.epoch {
            // Another epoch (history lost, or moved on), or one that is not
            // the channel's at all (a raw Envelope with a made-up epoch): it
            // is believed once the stream says the channel is in it. Held
            // behind a read of the new epoch from its start, which also
            // brings its first offsets if they went by while this node was
            // not listening (Redis came back empty and the node resubscribed
            // a moment later).
            track.repairing = true;
            let since = Checked { epoch: envelope.epoch.clone(), offset: 0, stamp: None, held: true };
            let (channel, until) = (envelope.channel.clone(), envelope.offset.saturating_sub(1));
            track.held.push_back(envelope);
            actions.push(Action::Read(StreamRead { channel, since, until: Some(until) }));
            return true;
        }
        if envelope.offset <= track.offset {
            if let Some(seen) = track.stamp_of(envelope.offset)
                && seen != stamp(&envelope)
            {
                // Another publication at an offset delivered already: a
                // failover that lost the channel's tail, or a raw Envelope
                // with a made-up offset. The stream tells which: held behind
                // a read that checks what it holds there.
                track.repairing = true;
                let since =
                    Checked { epoch: track.epoch.clone(), offset: envelope.offset, stamp: Some(seen), held: true };
                let (channel, until) = (envelope.channel.clone(), track.offset);
                track.held.push_back(envelope);
                actions.push(Action::Read(StreamRead { channel, since, until: Some(until) }));
                return true;
            }
            // Otherwise delivered already (a repair got there first).
            return false;
        }
        if envelope.offset > track.offset + 1 {
            track.repairing = true;
            let since = track.position(true);
            let (channel, until) = (envelope.channel.clone(), envelope.offset - 1);
            track.held.push_back(envelope);
            actions.push(Action::Read(StreamRead { channel, since, until: Some(until) }));
            return true;
        }
        track.delivered(&envelope);
        actions.push(Action::Deliver(envelope));
        false
    }

    /// Delivers what `history` holds right after the track's offset, up to
    /// `until`, in the track's epoch.
    fn fill(track: &mut Track, history: History, until: Option<u64>, actions: &mut Vec<Action>) {
        let mut filled = false;
        for envelope in history.publications {
            if until.is_some_and(|u| envelope.offset > u) || envelope.epoch != track.epoch {
                break;
            }
            if envelope.offset == track.offset + 1 {
                track.delivered(&envelope);
                actions.push(Action::Deliver(envelope));
                filled = true;
            }
        }
        if filled {
            metric::gap_repairs().increment(1);
        }
    }

    fn regressed(track: &mut Track, channel: &str, envelope: Option<Envelope>, actions: &mut Vec<Action>) {
        metric::broker_regressions().increment(1);
        tracing::warn!(%channel, epoch = %track.epoch, offset = track.offset,
            "the channel's history went back in time (a failover lost its tail): moving it to a new epoch");
        let epoch = std::mem::take(&mut track.epoch);
        track.retired = Some(epoch.clone());
        track.offset = 0;
        track.recent = Default::default();
        let envelope = envelope.map(|e| Envelope {
            epoch: String::new(),
            offset: 0,
            receipt_to: String::new(),
            receipt_id: 0,
            ..e
        });
        actions.push(Action::Rebase { channel: channel.to_owned(), epoch, envelope });
    }

    /// After a reconnect: read every tracked channel's stream from where
    /// this node is, to deliver what it missed and to check that its
    /// history did not go back. Live publications are not held meanwhile:
    /// one that follows the last delivered offset misses nothing, and one
    /// past a gap starts a repair as always.
    pub fn catch_up(&mut self, actions: &mut Vec<Action>) {
        for (channel, track) in &mut self.tracks {
            if track.offset == 0 {
                continue;
            }
            actions.push(Action::Read(StreamRead {
                channel: channel.clone(),
                since: track.position(false),
                until: None,
            }));
        }
    }

    /// The answer to an [`Action::Read`]: the stream after `since.offset - 1`
    /// (so that the first publication is the one at `since`, to check), or
    /// the read's error.
    pub fn repaired(&mut self, asked: &StreamRead, read: Result<History, String>, actions: &mut Vec<Action>) {
        let StreamRead { channel, since, until } = asked;
        let (channel, until) = (channel.as_str(), *until);
        let Some(track) = self.tracks.get_mut(channel) else { return };
        if since.held {
            track.repairing = false;
        }
        // The stream's epoch and top, where the read found them: what is held
        // past them is not the channel's.
        let mut stream: Option<(String, u64)> = None;
        match read {
            Err(why) => tracing::debug!(%channel, %why, "cannot read the stream to fill a gap"),
            // A check of another epoch (see `next`) that the stream confirms:
            // the channel is in it now, from its start.
            Ok(history) if since.epoch != track.epoch && history.position.epoch == since.epoch => {
                stream = Some((history.position.epoch.clone(), history.position.offset));
                track.epoch.clone_from(&since.epoch);
                track.offset = 0;
                track.recent = Default::default();
                Self::fill(track, history, until, actions);
            }
            // The channel is in another epoch now: what it had is gone.
            Ok(history) if history.position.epoch != since.epoch => {
                stream = Some((history.position.epoch, history.position.offset));
            }
            Ok(history) => {
                stream = Some((history.position.epoch.clone(), history.position.offset));
                let verified = history.publications.first().filter(|e| e.offset == since.offset);
                let behind = history.position.offset < since.offset;
                let other = match (verified, since.stamp) {
                    (Some(e), Some(s)) => stamp(e) != s,
                    _ => false,
                };
                if since.offset > 0 && (behind || other) && track.epoch == since.epoch {
                    // The publication that showed it (one at an offset
                    // delivered already) goes out in the new epoch.
                    let showed = track.held.iter().position(|e| e.offset <= track.offset && e.epoch == since.epoch);
                    let envelope = showed.and_then(|at| track.held.remove(at));
                    Self::regressed(track, channel, envelope, actions);
                    let held = std::mem::take(&mut track.held);
                    self.held -= held.len() + usize::from(showed.is_some());
                    track.repairing = false;
                    // The retired epoch's held publications go with it. A
                    // later epoch's are taken in turn: another node may have
                    // moved the channel first, and its new epoch's first
                    // publication came while this read was out.
                    let retired = track.retired.clone();
                    for envelope in held.into_iter().filter(|e| retired.as_deref() != Some(e.epoch.as_str())) {
                        if track.repairing {
                            self.held += 1;
                            track.held.push_back(envelope);
                        } else if Self::next(track, envelope, actions) {
                            self.held += 1;
                        }
                    }
                    return;
                }
                if !since.held && track.repairing {
                    return; // a repair is out for this channel: it delivers
                }
                Self::fill(track, history, until, actions);
            }
        }
        if !since.held {
            return;
        }
        // What the stream does not hold is no publication of the channel: a
        // raw Envelope with an epoch it is not in, or an offset past its top.
        // Dropped and counted; it must not hold back the real ones.
        if let Some((epoch, top)) = &stream {
            let before = track.held.len();
            // An offset delivered already with other data, which the stream
            // did not confirm (no regression was found above), is not the
            // channel's either.
            let (delivered, recent) = (track.offset, track.recent);
            let reused =
                |e: &Envelope| e.offset <= delivered && recent.iter().any(|(o, s)| *o == e.offset && *s != stamp(e));
            track.held.retain(|e| e.epoch == *epoch && e.offset <= *top && !reused(e));
            let forged = before - track.held.len();
            if forged > 0 {
                self.held -= forged;
                metric::broker_malformed().increment(forged as u64);
                tracing::warn!(%channel, forged, stream_epoch = %epoch, stream_top = top,
                    "publications the channel's stream does not hold were dropped");
            }
        } else if since.epoch != track.epoch {
            // Another epoch that could not be checked: not believed.
            let before = track.held.len();
            track.held.retain(|e| e.epoch == track.epoch);
            self.held -= before - track.held.len();
        }
        // What could not be filled stays a gap: go on after it (never past
        // the stream's top).
        let until = until.map(|u| stream.as_ref().map_or(u, |(_, top)| u.min(*top)));
        if let Some(until) = until
            && since.epoch == track.epoch
            && track.offset < until
        {
            metric::gap_unrepaired().increment(1);
            track.offset = until;
        }
        let held = std::mem::take(&mut track.held);
        self.held -= held.len();
        let overflowed = std::mem::take(&mut track.overflowed);
        let mut held = held.into_iter();
        while let Some(envelope) = held.next() {
            if track.repairing {
                // Another gap among the held ones: keep the rest held behind it.
                self.held += 1 + held.len();
                track.held.push_back(envelope);
                track.held.extend(held);
                break;
            }
            if Self::next(track, envelope, actions) {
                self.held += 1;
            }
        }
        if overflowed && !track.repairing {
            // Some were dropped: the stream has them.
            track.repairing = true;
            actions.push(Action::Read(StreamRead {
                channel: channel.to_owned(),
                since: track.position(true),
                until: None,
            }));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::StreamPosition;
    use bytes::Bytes;

    fn publication(epoch: &str, offset: u64, data: &str) -> Envelope {
        Envelope {
            channel: "c".into(),
            epoch: epoch.into(),
            offset,
            data: Bytes::copy_from_slice(data.as_bytes()),
            published_at_us: 1_000 + offset,
            ..Default::default()
        }
    }

    /// What a read of a stream answers: its publications and position.
    fn stream(publications: Vec<Envelope>, epoch: &str, offset: u64) -> History {
        History { publications, position: StreamPosition { epoch: epoch.into(), offset }, complete: true }
    }

    fn delivered(actions: &[Action]) -> Vec<u64> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Deliver(e) => Some(e.offset),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_gap_holds_its_channel_until_the_stream_fills_it() {
        let mut order = Order::default();
        let mut actions = Vec::new();
        order.live(publication("e", 1, "a"), true, &mut actions);
        order.live(publication("e", 4, "d"), true, &mut actions);
        order.live(publication("e", 5, "e"), true, &mut actions);
        assert_eq!(delivered(&actions), [1]);
        let Some(Action::Read(asked)) = actions.pop() else { panic!("{actions:?}") };
        assert_eq!((asked.since.offset, asked.until), (1, Some(3)));
        // Another channel is not held meanwhile.
        let mut other = Vec::new();
        order.live(Envelope { channel: "d".into(), ..publication("x", 9, "z") }, true, &mut other);
        assert_eq!(delivered(&other), [9]);
        let history =
            stream(vec![publication("e", 1, "a"), publication("e", 2, "b"), publication("e", 3, "c")], "e", 5);
        let mut actions = Vec::new();
        order.repaired(&asked, Ok(history), &mut actions);
        assert_eq!(delivered(&actions), [2, 3, 4, 5]);
    }

    #[test]
    fn a_reused_offset_is_a_regression_and_a_repeat_is_not() {
        let mut order = Order::default();
        let mut actions = Vec::new();
        for (offset, data) in [(1, "a"), (2, "b"), (3, "c")] {
            order.live(publication("e", offset, data), true, &mut actions);
        }
        // The same publication again (a repair got there first): dropped.
        order.live(publication("e", 2, "b"), true, &mut actions);
        assert_eq!(delivered(&actions), [1, 2, 3]);
        assert!(actions.iter().all(|a| matches!(a, Action::Deliver(_))));
        // Offset 2 with other data: checked against the stream, which holds
        // the new one there: the history went back.
        let mut actions = Vec::new();
        let reused = Envelope { published_at_us: 7, ..publication("e", 2, "B") };
        order.live(reused.clone(), true, &mut actions);
        let Some(Action::Read(asked)) = actions.pop() else { panic!("{actions:?}") };
        assert_eq!((asked.since.offset, asked.until), (2, Some(3)));
        order.repaired(&asked, Ok(stream(vec![reused], "e", 2)), &mut actions);
        let [Action::Rebase { epoch, envelope: Some(envelope), .. }] = &actions[..] else { panic!("{actions:?}") };
        assert_eq!((epoch.as_str(), &envelope.data[..], envelope.offset), ("e", &b"B"[..], 0));
        // The retired epoch's publications are dropped; the new one flows,
        // once the stream says the channel is in it.
        let mut actions = Vec::new();
        order.live(publication("e", 3, "C"), true, &mut actions);
        order.live(publication("f", 1, "B"), true, &mut actions);
        let Some(Action::Read(asked)) = actions.pop() else { panic!("{actions:?}") };
        assert_eq!((asked.since.epoch.as_str(), asked.since.offset), ("f", 0));
        order.repaired(&asked, Ok(stream(vec![publication("f", 1, "B")], "f", 1)), &mut actions);
        assert_eq!(delivered(&actions), [1]);
    }

    #[test]
    fn a_new_epoch_that_came_while_the_regression_was_checked_is_kept() {
        // Two nodes find the same regression; the other one moved the
        // channel first, and its new epoch's first publication arrives here
        // while this node's check of the old epoch is out.
        let mut order = Order::default();
        let mut actions = Vec::new();
        for (offset, data) in [(1, "a"), (2, "b"), (3, "c")] {
            order.live(publication("e", offset, data), true, &mut actions);
        }
        let mut actions = Vec::new();
        let reused = Envelope { published_at_us: 7, ..publication("e", 2, "B") };
        order.live(reused.clone(), true, &mut actions);
        let Some(Action::Read(asked)) = actions.pop() else { panic!("{actions:?}") };
        order.live(publication("f", 1, "B"), true, &mut actions);
        assert!(actions.is_empty(), "held behind the check: {actions:?}");
        order.repaired(&asked, Ok(stream(vec![reused], "e", 2)), &mut actions);
        let [Action::Rebase { .. }, Action::Read(check)] = &actions[..] else { panic!("{actions:?}") };
        assert_eq!((check.since.epoch.as_str(), check.since.offset), ("f", 0));
        let check = check.clone();
        let mut actions = Vec::new();
        order.repaired(&check, Ok(stream(vec![publication("f", 1, "B")], "f", 1)), &mut actions);
        assert_eq!(delivered(&actions), [1]);
        assert_eq!(order.held, 0);
    }

    #[test]
    fn a_stream_behind_the_last_delivered_offset_is_a_regression() {
        let mut order = Order::default();
        let mut actions = Vec::new();
        for offset in 1..=5 {
            order.live(publication("e", offset, "x"), true, &mut actions);
        }
        let mut actions = Vec::new();
        order.catch_up(&mut actions);
        let Some(Action::Read(asked)) = actions.pop() else { panic!() };
        assert_eq!(asked.until, None);
        assert_eq!(asked.since.offset, 5);
        // A promoted replica that had only up to 3.
        let history = stream(vec![], "e", 3);
        order.repaired(&asked, Ok(history), &mut actions);
        assert!(matches!(&actions[..], [Action::Rebase { envelope: None, .. }]), "{actions:?}");
    }

    #[test]
    fn live_publications_flow_during_a_catch_up() {
        let mut order = Order::default();
        let mut actions = Vec::new();
        order.live(publication("e", 1, "a"), true, &mut actions);
        let mut actions = Vec::new();
        order.catch_up(&mut actions);
        let Some(Action::Read(asked)) = actions.pop() else { panic!() };
        assert_eq!(asked.until, None);
        assert!(!asked.since.held);
        // The next one comes live before the check is answered: delivered.
        order.live(publication("e", 2, "b"), true, &mut actions);
        assert_eq!(delivered(&actions), [2]);
        // The check finds 1 and 2 (and 3, which pub/sub had not brought yet).
        let history =
            stream(vec![publication("e", 1, "a"), publication("e", 2, "b"), publication("e", 3, "c")], "e", 3);
        let mut actions = Vec::new();
        order.repaired(&asked, Ok(history), &mut actions);
        assert_eq!(delivered(&actions), [3]);
    }

    #[test]
    fn a_new_epoch_seen_past_its_start_is_repaired_from_its_start() {
        let mut order = Order::default();
        let mut actions = Vec::new();
        order.live(publication("e", 5, "a"), true, &mut actions);
        // Redis came back empty; the node heard the new epoch from offset 3.
        order.live(publication("f", 3, "c"), true, &mut actions);
        let Some(Action::Read(asked)) = actions.pop() else { panic!("{actions:?}") };
        assert_eq!((asked.since.epoch.as_str(), asked.since.offset, asked.until), ("f", 0, Some(2)));
        let history = stream(vec![publication("f", 1, "a"), publication("f", 2, "b")], "f", 3);
        let mut actions = Vec::new();
        order.repaired(&asked, Ok(history), &mut actions);
        assert_eq!(delivered(&actions), [1, 2, 3]);
    }

    #[test]
    fn held_publications_are_bounded_and_the_overflow_is_read_again() {
        let mut order = Order::default();
        let mut actions = Vec::new();
        order.live(publication("e", 1, "a"), true, &mut actions);
        order.live(publication("e", 3, "c"), true, &mut actions);
        for offset in 4..(4 + MAX_HELD as u64 + 5) {
            order.live(publication("e", offset, "x"), true, &mut actions);
        }
        assert_eq!(order.held, MAX_HELD);
        let Some(Action::Read(asked)) = actions.pop() else { panic!() };
        let top = 4 + MAX_HELD as u64 + 5;
        let history = stream(vec![publication("e", 1, "a"), publication("e", 2, "b")], "e", top);
        let mut actions = Vec::new();
        order.repaired(&asked, Ok(history), &mut actions);
        assert_eq!(delivered(&actions).len(), 1 + MAX_HELD);
        assert!(
            matches!(actions.last(), Some(Action::Read(StreamRead { until: None, .. }))),
            "the dropped ones are read"
        );
        assert_eq!(order.held, 0);
    }

    #[test]
    fn an_offset_past_the_streams_top_is_dropped_and_holds_nothing_back() {
        let mut order = Order::default();
        let mut actions = Vec::new();
        order.live(publication("e", 1, "a"), true, &mut actions);
        // A raw Envelope with the channel's epoch, 100 ahead.
        order.live(publication("e", 101, "forged"), true, &mut actions);
        let Some(Action::Read(asked)) = actions.pop() else { panic!("{actions:?}") };
        // The real next one comes while the read is out.
        order.live(publication("e", 2, "b"), true, &mut actions);
        let history = stream(vec![publication("e", 1, "a"), publication("e", 2, "b")], "e", 2);
        let mut actions = Vec::new();
        order.repaired(&asked, Ok(history), &mut actions);
        assert_eq!(delivered(&actions), [2]);
        // The ones after it flow as always.
        let mut actions = Vec::new();
        order.live(publication("e", 3, "c"), true, &mut actions);
        assert_eq!(delivered(&actions), [3]);
        assert_eq!(order.held, 0);
    }

    #[test]
    fn an_epoch_the_stream_is_not_in_is_dropped() {
        let mut order = Order::default();
        let mut actions = Vec::new();
        order.expect("c", "e", 4);
        // A made-up epoch at offset 1: checked before it is believed.
        order.live(publication("x", 1, "forged"), true, &mut actions);
        assert!(delivered(&actions).is_empty());
        let Some(Action::Read(asked)) = actions.pop() else { panic!("{actions:?}") };
        order.live(publication("e", 5, "e"), true, &mut actions);
        let mut actions = Vec::new();
        order.repaired(&asked, Ok(stream(vec![], "e", 5)), &mut actions);
        assert_eq!(delivered(&actions), [5]);
        // No offset twice afterwards.
        let mut actions = Vec::new();
        order.live(publication("e", 6, "f"), true, &mut actions);
        assert_eq!(delivered(&actions), [6]);
    }

    #[test]
    fn a_first_live_publication_is_checked_against_the_position_read() {
        let mut order = Order::default();
        let mut actions = Vec::new();
        order.expect("c", "e", 7);
        order.live(publication("e", 50, "forged"), true, &mut actions);
        let Some(Action::Read(asked)) = actions.pop() else { panic!("{actions:?}") };
        assert_eq!((asked.since.offset, asked.until), (7, Some(49)));
        let mut actions = Vec::new();
        order.repaired(&asked, Ok(stream(vec![publication("e", 7, "g")], "e", 7)), &mut actions);
        order.live(publication("e", 8, "h"), true, &mut actions);
        assert_eq!(delivered(&actions), [8]);
    }

    #[test]
    fn a_made_up_offset_behind_is_checked_and_dropped() {
        let mut order = Order::default();
        let mut actions = Vec::new();
        for offset in 1..=3 {
            order.live(publication("e", offset, "x"), true, &mut actions);
        }
        let mut actions = Vec::new();
        order.live(publication("e", 2, "forged"), true, &mut actions);
        let Some(Action::Read(asked)) = actions.pop() else { panic!("{actions:?}") };
        order.live(publication("e", 4, "x"), true, &mut actions);
        // The stream still holds what was delivered at 2: no regression.
        let history =
            stream(vec![publication("e", 2, "x"), publication("e", 3, "x"), publication("e", 4, "x")], "e", 4);
        let mut actions = Vec::new();
        order.repaired(&asked, Ok(history), &mut actions);
        assert_eq!(delivered(&actions), [4]);
        assert!(actions.iter().all(|a| matches!(a, Action::Deliver(_))), "{actions:?}");
        assert_eq!(order.held, 0);
    }
}

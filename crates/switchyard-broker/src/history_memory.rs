//! Channel history for the in-memory broker: the same semantics as the
//! Redis function library (epoch per channel, offsets from 1 with no holes,
//! capped by size, publications expiring after `history_ttl`, the position
//! after `history_meta_ttl`).

use crate::broker::{History, PublishOptions, StreamPosition};
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use switchyard_proto::v1::Envelope;
use tokio::time::Instant;

struct ChannelHistory {
    epoch: String,
    offset: u64,
    publications: VecDeque<Envelope>,
    publications_expire: Instant,
    position_expires: Instant,
}

#[derive(Default)]
pub struct MemoryHistory {
    channels: Mutex<HashMap<String, ChannelHistory>>,
}

fn new_epoch() -> String {
    format!("{:016x}", rand::random::<u64>())
}

impl ChannelHistory {
    /// A channel with a new epoch and no publications, its position kept
    /// until `position_expires`.
    fn new(now: Instant, position_expires: Instant) -> Self {
        ChannelHistory {
            epoch: new_epoch(),
            offset: 0,
            publications: VecDeque::new(),
            publications_expire: now,
            position_expires,
        }
    }
}

impl MemoryHistory {
    /// Gives `envelope` the channel's next offset, keeps it, and returns
    /// the position.
    pub fn append(&self, envelope: &mut Envelope, options: PublishOptions) -> StreamPosition {
        let now = Instant::now();
        let mut channels = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        let fresh = || ChannelHistory::new(now, now);
        let channel = channels.entry(envelope.channel.clone()).or_insert_with(fresh);
        if channel.position_expires <= now {
            // The position expired: a new epoch, as on a Redis that lost it.
            *channel = fresh();
        }
        if channel.publications_expire <= now {
            channel.publications.clear();
        }
        channel.offset += 1;
        envelope.epoch = channel.epoch.clone();
        envelope.offset = channel.offset;
        channel.publications.push_back(envelope.clone());
        while channel.publications.len() > options.history_size {
            channel.publications.pop_front();
        }
        channel.publications_expire = now + options.history_ttl;
        channel.position_expires = now + options.history_meta_ttl.max(options.history_ttl);
        StreamPosition { epoch: channel.epoch.clone(), offset: channel.offset }
    }

    /// A channel with history gets its epoch here if it has none yet, so
    /// that a subscriber's position always names one.
    pub fn read(
        &self,
        channel: &str,
        since: Option<&StreamPosition>,
        limit: usize,
        options: PublishOptions,
    ) -> History {
        let now = Instant::now();
        let mut channels = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        let fresh = || ChannelHistory::new(now, now + options.history_meta_ttl.max(options.history_ttl));
        let state = channels.entry(channel.to_owned()).or_insert_with(fresh);
        if state.position_expires <= now {
            *state = fresh();
        }
        if state.publications_expire <= now {
            state.publications.clear();
        }
        let position = StreamPosition { epoch: state.epoch.clone(), offset: state.offset };
        let kept = &state.publications;
        let publications: Vec<Envelope> = match since {
            None => kept.iter().skip(kept.len().saturating_sub(limit)).cloned().collect(),
            Some(since) => kept.iter().filter(|e| e.offset > since.offset).take(limit).cloned().collect(),
        };
        History::read(publications, position, since)
    }
}

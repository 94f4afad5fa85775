//! The channels one session is subscribed to, and its state in each.
//!
//! A list, not a hash map: a session has a few channels (at most
//! `client.max_channels`), so a scan costs less than hashing, and the list
//! holds exactly its entries where a hash map's smallest table is four
//! (about 280 bytes on every connection with one channel).

use switchyard_broker::StreamPosition;
use switchyard_proto::v1::Filter;

/// A channel this session is subscribed to.
#[derive(Debug, Clone, Default)]
pub struct Joined {
    /// For channels with history: the position acked by the client (at
    /// first, the one it subscribed at).
    pub position: Option<StreamPosition>,
    /// Whether this session has an entry in the channel's presence.
    pub in_presence: bool,
    /// What the client asked of the channel's publications (kept for a
    /// resume, which must deliver them the same way).
    pub delivery: Delivery,
}

/// How a subscriber gets a channel's publications: those its filter
/// passes, and as deltas where it asked and the namespace allows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Delivery {
    pub filter: Option<Box<Filter>>,
    pub delta: bool,
}

#[derive(Debug, Default)]
pub struct JoinedChannels {
    entries: Vec<(Box<str>, Joined)>,
}

impl JoinedChannels {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn contains_key(&self, channel: &str) -> bool {
        self.entries.iter().any(|(name, _)| &**name == channel)
    }

    pub fn get_mut(&mut self, channel: &str) -> Option<&mut Joined> {
        self.entries.iter_mut().find(|(name, _)| &**name == channel).map(|(_, joined)| joined)
    }

    /// Adds `channel`, or replaces what it had.
    pub fn insert(&mut self, channel: &str, joined: Joined) {
        if let Some(existing) = self.get_mut(channel) {
            *existing = joined;
            return;
        }
        if self.entries.len() == self.entries.capacity() && self.entries.len() < 4 {
            // Grown one at a time while small: most sessions stop at one or two.
            self.entries.reserve_exact(1);
        }
        self.entries.push((channel.into(), joined));
    }

    pub fn remove(&mut self, channel: &str) -> Option<Joined> {
        let at = self.entries.iter().position(|(name, _)| &**name == channel)?;
        let (_, joined) = self.entries.swap_remove(at);
        if self.entries.is_empty() {
            self.entries = Vec::new();
        }
        Some(joined)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &Joined)> {
        self.entries.iter().map(|(name, joined)| (&**name, joined))
    }

    /// Empties the list, giving its entries.
    pub fn drain(&mut self) -> impl Iterator<Item = (String, Joined)> {
        std::mem::take(&mut self.entries).into_iter().map(|(name, joined)| (name.into(), joined))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn behaves_as_a_map() {
        let mut channels = JoinedChannels::default();
        channels.insert("a", Joined::default());
        channels.insert("b", Joined { in_presence: true, ..Joined::default() });
        channels.insert("a", Joined { in_presence: true, ..Joined::default() });
        assert_eq!(channels.len(), 2);
        assert!(channels.contains_key("a") && channels.get_mut("a").is_some_and(|j| j.in_presence));
        assert!(channels.remove("a").is_some() && channels.remove("a").is_none());
        assert_eq!(channels.iter().map(|(name, _)| name).collect::<Vec<_>>(), ["b"]);
        assert_eq!(channels.drain().map(|(name, _)| name).collect::<Vec<_>>(), ["b"]);
        assert!(channels.is_empty());
    }
}

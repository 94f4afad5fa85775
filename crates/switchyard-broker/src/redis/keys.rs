//! Every Redis name switchyard uses, in one place (docs/redis.md lists them).
//!
//! A channel's names carry the channel as a hash tag, `{<channel>}`, so that
//! on a Redis Cluster its pub/sub name (and, with history, its stream and
//! meta keys) live in the slot of the channel name itself: the slot that
//! `FCALL switchyard_publish 1 <channel> ...` is routed to.

/// Names under one prefix (`broker.prefix`, default `switchyard`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(prefix: &str) -> Self {
        Keys { prefix: prefix.to_owned() }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The pub/sub channel of a switchyard channel: `<prefix>:{<channel>}`.
    pub fn pubsub(&self, channel: &str) -> String {
        format!("{}:{{{channel}}}", self.prefix)
    }

    /// The switchyard channel of a pub/sub name, if it is one of ours.
    pub fn channel_of<'a>(&self, pubsub: &'a str) -> Option<&'a str> {
        pubsub.strip_prefix(self.prefix.as_str())?.strip_prefix(":{")?.strip_suffix('}')
    }

    /// A saved client session (for `connect.resume`).
    pub fn session(&self, token: &str) -> String {
        format!("{}:session:{token}", self.prefix)
    }

    /// The hash of live gateway nodes (one field per node).
    pub fn nodes(&self) -> String {
        format!("{}:{{nodes}}", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        let keys = Keys::new("switchyard");
        assert_eq!(keys.pubsub("chat:room1"), "switchyard:{chat:room1}");
        assert_eq!(keys.channel_of("switchyard:{chat:room1}"), Some("chat:room1"));
        assert_eq!(keys.channel_of("other:{x}"), None);
        assert_eq!(keys.nodes(), "switchyard:{nodes}");
    }
}

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

    /// A channel's presence: a hash of members by client id, and a sorted
    /// set of the same clients scored by when their entry expires (Redis
    /// 7.0 hash fields cannot expire by themselves).
    pub fn presence(&self, channel: &str) -> (String, String) {
        let base = self.pubsub(channel);
        (format!("{base}:presence"), format!("{base}:presence:exp"))
    }

    /// The pub/sub channel every node listens to for [`Control`] messages
    /// (user operations). Plain pub/sub on a Redis Cluster too: it must
    /// reach every node, whichever shard a backend's `FCALL` ran on.
    ///
    /// [`Control`]: switchyard_proto::v1::Control
    /// The channels whose presence entries the cluster sweeps when their
    /// node dies, scored by when their last entry expires (ms).
    pub fn presence_index(&self) -> String {
        format!("{}:presence-index", self.prefix)
    }

    pub fn control(&self) -> String {
        format!("{}:control", self.prefix)
    }

    /// Whether a pub/sub name is the control channel or a node's own.
    pub fn is_control(&self, name: &str) -> bool {
        name.strip_prefix(self.prefix.as_str())
            .and_then(|r| r.strip_prefix(":control"))
            .is_some_and(|r| r.is_empty() || r.starts_with(':'))
    }

    /// One node's own control channel, for answers meant for it alone.
    pub fn node_control(&self, node: &str) -> String {
        format!("{}:control:{node}", self.prefix)
    }

    /// The hash of live gateway nodes (one field per node).
    pub fn nodes(&self) -> String {
        format!("{}:{{nodes}}", self.prefix)
    }

    /// A lease (its holder, expiring with the lease).
    pub fn lease(&self, name: &str) -> String {
        format!("{}:lease:{{{name}}}", self.prefix)
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
        assert_eq!(keys.control(), "switchyard:control");
        assert_eq!(keys.channel_of(&keys.control()), None);
        let (members, expiry) = keys.presence("chat:r1");
        assert_eq!(members, "switchyard:{chat:r1}:presence");
        assert_eq!(expiry, "switchyard:{chat:r1}:presence:exp");
    }
}

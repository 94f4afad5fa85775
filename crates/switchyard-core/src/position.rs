//! A place in a channel's history: the one type for it, in the hub, the
//! brokers, saved sessions and the command layer.

use serde::{Deserialize, Serialize};
use switchyard_proto::v1::Envelope;

/// Where a publication sits in its channel's stream: the epoch names one
/// unbroken run of offsets (a new one starts when history is lost), the
/// offset counts publications within it from 1. Both are empty (`""`, 0)
/// for channels that keep no history.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct StreamPosition {
    pub epoch: String,
    pub offset: u64,
}

impl StreamPosition {
    pub fn new(epoch: impl Into<String>, offset: u64) -> Self {
        StreamPosition { epoch: epoch.into(), offset }
    }

    /// The position of a publication.
    pub fn of(envelope: &Envelope) -> Self {
        StreamPosition { epoch: envelope.epoch.clone(), offset: envelope.offset }
    }

    /// Whether `envelope` is at or before this position, in the same epoch:
    /// whoever stands here has it already. Only within the epoch: after
    /// history is lost, offsets start again from 1.
    pub fn covers(&self, envelope: &Envelope) -> bool {
        self.covers_position(&envelope.epoch, envelope.offset)
    }

    /// [`StreamPosition::covers`] for a bare epoch and offset.
    pub fn covers_position(&self, epoch: &str, offset: u64) -> bool {
        offset > 0 && offset <= self.offset && epoch == self.epoch
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn covers_only_within_its_epoch() {
        let here = StreamPosition::new("e1", 5);
        assert!(here.covers_position("e1", 5));
        assert!(here.covers_position("e1", 1));
        assert!(!here.covers_position("e1", 6));
        assert!(!here.covers_position("e2", 1));
        assert!(!here.covers_position("e1", 0), "offset 0 is no publication of a history channel");
    }
}

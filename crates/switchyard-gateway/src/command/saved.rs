//! What is kept of a session for `connect.resume`: who it was, and where
//! it was in each channel.

use serde::{Deserialize, Serialize};
use switchyard_broker::StreamPosition;
use switchyard_proto::v1::Filter;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SavedSession {
    /// The user it was authenticated as; a resume must be by the same one.
    pub user: String,
    pub channels: Vec<SavedChannel>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SavedChannel {
    pub channel: String,
    /// For channels with history: the position the client has acked (or
    /// was subscribed at). Replay starts after it. Stored as `epoch` and
    /// `offset` beside `channel`, as sessions saved by earlier versions are.
    #[serde(default, flatten, skip_serializing_if = "Option::is_none")]
    pub position: Option<StreamPosition>,
    /// The subscription's filter, as the client gave it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<Box<Filter>>,
    /// Whether it was granted deltas.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub delta: bool,
}

impl SavedSession {
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a saved session serializes")
    }

    /// None for anything that is not a saved session (it is dropped).
    pub fn decode(bytes: &[u8]) -> Option<SavedSession> {
        serde_json::from_slice(bytes).ok()
    }
}

/// A new resume token: 128 random bits, unguessable.
pub fn new_token() -> String {
    format!("{:032x}", rand::random::<u128>())
}

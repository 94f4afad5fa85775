//! The SSE streams of this node, by their session token: where the
//! commands a stream's client posts (`POST /sse/command`) are queued.

use super::server_ops::OpSender;
use std::collections::HashMap;
use std::sync::Mutex;

#[derive(Default)]
pub struct Streams {
    by_token: Mutex<HashMap<String, OpSender>>,
}

/// A stream's entry in the index; leaves it when dropped.
pub struct StreamEntry<'a> {
    streams: &'a Streams,
    token: String,
}

impl Drop for StreamEntry<'_> {
    fn drop(&mut self) {
        self.streams.by_token.lock().unwrap_or_else(|e| e.into_inner()).remove(&self.token);
    }
}

impl Streams {
    /// Enters the stream of session `token`, whose commands go to `ops`.
    pub fn insert(&self, token: &str, ops: OpSender) -> StreamEntry<'_> {
        self.by_token.lock().unwrap_or_else(|e| e.into_inner()).insert(token.to_owned(), ops);
        StreamEntry { streams: self, token: token.to_owned() }
    }

    /// Where the commands of the stream `token` go, if this node holds it.
    pub fn get(&self, token: &str) -> Option<OpSender> {
        self.by_token.lock().unwrap_or_else(|e| e.into_inner()).get(token).cloned()
    }
}

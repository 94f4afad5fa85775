//! One entry of an application's queue, and what publishing it did.

use crate::command::publish::publish;
use crate::node::Node;
use bytes::Bytes;
use std::collections::HashMap;
use switchyard_core::codes::ErrorCode;

/// An entry read from a source.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Entry {
    /// Its place in the source (a row id, a stream entry id, a sequence):
    /// what makes its idempotency key, and what the source confirms.
    pub position: String,
    pub channel: String,
    pub data: Bytes,
    /// The application's own key, if it gave one.
    pub idempotency_key: Option<String>,
    pub tags: HashMap<String, String>,
    /// When it was made, in µs since the Unix epoch, where the source says.
    pub created_at_us: Option<u64>,
    /// Why it cannot be published as it came (read, but not an entry).
    pub malformed: Option<String>,
}

/// What became of an entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The broker has it (now, or from an earlier try: its key made the
    /// repeat publish nothing).
    Published,
    /// It can never be published: to the dead letters, with why.
    SetAside(String),
    /// Not now (the broker is out of reach): try again later.
    Retry(String),
}

impl Entry {
    /// The idempotency key its publication carries: the application's, or
    /// one made of the consumer and the entry's position, so that an entry
    /// read again after a crash publishes nothing the second time.
    pub fn key(&self, consumer: &str) -> String {
        match &self.idempotency_key {
            Some(key) => key.clone(),
            None => format!("{consumer}:{}", self.position),
        }
    }

    /// Tags from a JSON object of strings.
    pub fn tags_from_json(json: &[u8]) -> Result<HashMap<String, String>, String> {
        serde_json::from_slice(json).map_err(|e| format!("tags: not a JSON object of strings: {e}"))
    }
}

/// Publishes `entry` for `consumer`.
pub async fn publish_entry(node: &Node, consumer: &str, entry: &Entry) -> Outcome {
    if let Some(why) = &entry.malformed {
        return Outcome::SetAside(why.clone());
    }
    let key = entry.key(consumer);
    let published =
        publish(node, &entry.channel, entry.data.clone(), entry.tags.clone(), None, false, Some(&key)).await;
    match published {
        Ok(_) => Outcome::Published,
        Err(refusal) => match refusal.code {
            ErrorCode::NotAvailable | ErrorCode::Internal | ErrorCode::TooManyRequests => {
                Outcome::Retry(refusal.message.clone())
            }
            code => Outcome::SetAside(format!("{} {}", code.code(), refusal.message)),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_come_from_the_position_unless_the_application_gave_one() {
        let entry = Entry { position: "1700000000000-3".into(), ..Entry::default() };
        assert_eq!(entry.key("events"), "events:1700000000000-3");
        let own = Entry { idempotency_key: Some("order-7".into()), ..entry };
        assert_eq!(own.key("events"), "order-7");
        assert!(Entry::tags_from_json(br#"{"k":"v"}"#).is_ok());
        assert!(Entry::tags_from_json(br#"{"k":1}"#).is_err());
        assert!(Entry::tags_from_json(b"[]").is_err());
    }
}

//! `bytes data` in JSON: the payload is a JSON value, carried verbatim.
//!
//! A publisher's `data` is kept as the exact text it sent (no re-encoding,
//! no reordering of keys, no loss of number precision), and subscribers get
//! those same bytes back.

use bytes::Bytes;
use serde::{Deserialize, Deserializer, Serialize, Serializer, de::Error as _, ser::Error as _};
use serde_json::value::RawValue;

/// Writes `data` as the JSON value it holds (`null` when empty); fails if it
/// is not valid JSON.
pub fn serialize<S: Serializer>(data: &Bytes, serializer: S) -> Result<S::Ok, S::Error> {
    if data.is_empty() {
        // proto3's default for bytes; in JSON, the absent value.
        return serializer.serialize_unit();
    }
    match as_json(data) {
        Some(raw) => raw.serialize(serializer),
        None => Err(S::Error::custom("data is not a JSON value")),
    }
}

/// Reads any JSON value and keeps its text.
pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Bytes, D::Error> {
    // Borrowing fails for input that is not a &str (e.g. a reader); fall back
    // to an owned copy there.
    let raw = Box::<RawValue>::deserialize(deserializer).map_err(D::Error::custom)?;
    Ok(Bytes::copy_from_slice(raw.get().as_bytes()))
}

/// The payload as a JSON value, if it is one.
pub fn as_json(data: &[u8]) -> Option<&RawValue> {
    let text = std::str::from_utf8(data).ok()?;
    serde_json::from_str::<&RawValue>(text).ok()
}

/// How deep the arrays and objects of a JSON text nest (0 for a scalar),
/// by one scan that skips strings; for text that is not JSON, the same
/// count of its brackets.
pub fn nesting(data: &[u8]) -> usize {
    let (mut depth, mut deepest, mut in_string, mut escaped) = (0usize, 0usize, false, false);
    for &byte in data {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

#[cfg(test)]
mod tests {
    use super::nesting;

    #[test]
    fn counts_nesting_outside_strings() {
        assert_eq!(nesting(b"1"), 0);
        assert_eq!(nesting(br#"{"a":[1,{"b":2}]}"#), 3);
        assert_eq!(nesting(br#"["[[[[", "\\\"{{"]"#), 1);
        assert_eq!(nesting("[".repeat(100).as_bytes()), 100);
    }
}

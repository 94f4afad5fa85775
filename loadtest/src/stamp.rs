//! Publications carry the time they were meant to be sent, so latency is
//! measured from the intended send time (no coordinated omission).

use std::time::{SystemTime, UNIX_EPOCH};

/// Microseconds since the Unix epoch.
pub fn now_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64)
}

/// A JSON payload of exactly `size` bytes (at least 32) that carries `at`:
/// `{"t":<at>,"p":"xxx..."}`.
pub fn payload(at: u64, size: usize) -> String {
    let head = format!("{{\"t\":{at},\"p\":\"");
    let pad = size.saturating_sub(head.len() + 2);
    let mut out = String::with_capacity(size.max(head.len() + 2));
    out.push_str(&head);
    out.extend(std::iter::repeat_n('x', pad));
    out.push_str("\"}");
    out
}

/// The stamp in a message that holds a payload somewhere in it (a bare
/// payload, or a switchyard `pub` frame around it; protobuf frames carry the
/// JSON bytes verbatim too).
pub fn read(message: &[u8]) -> Option<u64> {
    let at = message.windows(5).position(|w| w == b"{\"t\":")? + 5;
    let digits = message[at..].iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&message[at..at + digits]).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_have_the_size_and_the_stamp() {
        for size in [32, 128, 1024] {
            let p = payload(1_700_000_000_123_456, size);
            assert_eq!(p.len(), size);
            assert!(serde_json::from_str::<serde_json::Value>(&p).is_ok());
            assert_eq!(read(p.as_bytes()), Some(1_700_000_000_123_456));
        }
        let framed = format!(r#"{{"pub":{{"channel":"bench","data":{}}}}}"#, payload(42, 64));
        assert_eq!(read(framed.as_bytes()), Some(42));
        assert_eq!(read(b"no stamp"), None);
    }
}

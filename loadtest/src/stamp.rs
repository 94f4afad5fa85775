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

/// What the generator publishes (`--payload-kind`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum PayloadKind {
    /// `{"t":<at>,"p":"xxx..."}`: a stamp and filler, exactly `--payload` bytes.
    Padding,
    /// An order-book update of about `--payload` bytes: field names, words
    /// and numbers as a real document has them, different every time.
    Document,
    /// A document of about `--payload` bytes that stays the same but for
    /// about 5 % of it (a few rows' prices, and the stamp) each time: what
    /// delta compression is for.
    State,
}

const SYMBOLS: [&str; 12] =
    ["VOD.L", "BP.L", "HSBA.L", "AZN.L", "ULVR.L", "RIO.L", "GSK.L", "BARC.L", "LLOY.L", "TSCO.L", "SHEL.L", "BATS.L"];
const STATUSES: [&str; 3] = ["open", "partially_filled", "filled"];

/// Payloads of one kind, in sequence.
pub struct Payloads {
    kind: PayloadKind,
    size: usize,
    seq: u64,
    random: u64,
    /// `State`: the rows (bid, ask, quantity per symbol row).
    rows: Vec<(u32, u32, u32)>,
}

impl Payloads {
    pub fn new(kind: PayloadKind, size: usize) -> Payloads {
        Payloads { kind, size, seq: 0, random: 0x9E37_79B9_7F4A_7C15, rows: Vec::new() }
    }

    fn next_random(&mut self) -> u32 {
        // xorshift64*: cheap, and enough to keep documents apart.
        self.random ^= self.random >> 12;
        self.random ^= self.random << 25;
        self.random ^= self.random >> 27;
        (self.random.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 32) as u32
    }

    /// The next payload, stamped with `at`.
    pub fn next(&mut self, at: u64) -> String {
        self.seq += 1;
        match self.kind {
            PayloadKind::Padding => payload(at, self.size),
            PayloadKind::Document => self.document(at),
            PayloadKind::State => self.state(at),
        }
    }

    fn document(&mut self, at: u64) -> String {
        let mut out = format!(r#"{{"t":{at},"type":"order_book_update","venue":"XLON","seq":{},"orders":["#, self.seq);
        let mut first = true;
        while out.len() + 160 < self.size {
            let r = self.next_random();
            let symbol = SYMBOLS[r as usize % SYMBOLS.len()];
            let side = if r & 1 == 0 { "buy" } else { "sell" };
            let status = STATUSES[(r >> 3) as usize % STATUSES.len()];
            let price = 1000 + r % 90_000;
            let qty = 100 * (1 + (r >> 8) % 50);
            if !first {
                out.push(',');
            }
            first = false;
            out.push_str(&format!(
                r#"{{"id":"ord-{}","symbol":"{symbol}","side":"{side}","price":{}.{:02},"qty":{qty},"trader":"desk-{}","status":"{status}"}}"#,
                r % 10_000_000,
                price / 100,
                price % 100,
                (r >> 16) % 40
            ));
        }
        out.push_str(r#"],"note":""#);
        let words = ["market", "open", "auction", "closing", "price", "update", "session", "continuous"];
        while out.len() + 2 < self.size {
            let word = words[self.next_random() as usize % words.len()];
            let room = self.size - 2 - out.len();
            out.push_str(&word[..word.len().min(room)]);
            if out.len() + 2 < self.size {
                out.push(' ');
            }
        }
        out.push_str("\"}");
        out
    }

    fn state(&mut self, at: u64) -> String {
        if self.rows.is_empty() {
            for i in 0..self.size / 80 {
                self.rows.push((10_000 + i as u32 * 37, 10_010 + i as u32 * 37, 1000 + i as u32 * 10));
            }
        }
        // About 5 % of the bytes: a stamp, and one row in twenty repriced.
        let changes = (self.rows.len() / 20).max(1);
        for _ in 0..changes {
            let r = self.next_random();
            let i = r as usize % self.rows.len();
            let row = &mut self.rows[i];
            row.0 = row.0 - 5 + r % 11;
            row.1 = row.0 + 1 + (r >> 8) % 20;
            row.2 = 100 * (1 + (r >> 12) % 90);
        }
        let rows: Vec<String> = self
            .rows
            .iter()
            .enumerate()
            .map(|(i, (bid, ask, qty))| {
                let symbol = SYMBOLS[i % SYMBOLS.len()];
                format!(r#"{{"row":{i},"symbol":"{symbol}","bid":{bid},"ask":{ask},"qty":{qty},"venue":"XLON"}}"#)
            })
            .collect();
        format!(r#"{{"t":{at},"seq":{},"book":[{}]}}"#, self.seq, rows.join(","))
    }
}

/// The stamp in a message that holds a payload somewhere in it (a bare
/// payload, or a switchyard `pub` frame around it; protobuf frames carry the
/// JSON bytes verbatim too).
/// The stamp may follow a space and stand after other keys: a payload that
/// went through PostgreSQL's `jsonb` comes back with its keys reordered.
pub fn read(message: &[u8]) -> Option<u64> {
    // In a JSON object, or escaped in a JSON string (Pusher's `data`).
    let mut at = match message.windows(4).position(|w| w == b"\"t\":") {
        Some(found) => found + 4,
        None => message.windows(6).position(|w| w == b"\\\"t\\\":").map(|found| found + 6)?,
    };
    if message.get(at) == Some(&b' ') {
        at += 1;
    }
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
        let pusher = r#"{"event":"bench","channel":"bench","data":"{\"t\":42,\"p\":\"xx\"}"}"#;
        assert_eq!(read(pusher.as_bytes()), Some(42));
        assert_eq!(read(br#"{"pub":{"data":{"p": "xxx", "t": 42}}}"#), Some(42));
    }

    #[test]
    fn documents_are_json_of_about_the_size_asked_and_stamped() {
        for kind in [PayloadKind::Document, PayloadKind::State] {
            let mut payloads = Payloads::new(kind, 1024);
            let (a, b) = (payloads.next(7), payloads.next(8));
            for p in [&a, &b] {
                assert!(serde_json::from_str::<serde_json::Value>(p).is_ok(), "{p}");
                assert!(p.len() > 900 && p.len() < 1200, "{} bytes", p.len());
            }
            assert_eq!(read(b.as_bytes()), Some(8));
            assert_ne!(a[10..], b[10..]);
        }
        assert_eq!(Payloads::new(PayloadKind::Document, 1024).next(1).len(), 1024);
    }
}

//! permessage-deflate (RFC 7692) payloads, without context takeover in
//! either direction: every message is compressed and inflated on its own,
//! so a publication is compressed once and the same bytes go to every
//! subscriber that negotiated it, and no connection keeps a window while
//! it is idle. flate2 on zlib-rs: a maintained deflate, in Rust, as fast
//! as zlib.

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

/// The tail a sync flush ends a deflate block with, which RFC 7692 §7.2.1
/// takes off the message and §7.2.2 puts back before inflating.
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// `payload` deflated, as a compressed message's payload.
pub fn compress(payload: &[u8]) -> Vec<u8> {
    // Level 1: a publication is compressed once for every subscriber, and
    // the higher levels cost several times the CPU for a few per cent.
    let mut deflate = Compress::new(Compression::fast(), false);
    let mut out = Vec::with_capacity(payload.len() / 2 + 64);
    loop {
        let consumed = deflate.total_in() as usize;
        if out.capacity() - out.len() < 64 {
            out.reserve(out.capacity().max(64));
        }
        let status = deflate.compress_vec(&payload[consumed..], &mut out, FlushCompress::Sync);
        let done = deflate.total_in() as usize == payload.len() && out.len() < out.capacity();
        if matches!(status, Ok(Status::Ok | Status::BufError)) && done && out.ends_with(&TAIL) {
            break;
        }
        if status.is_err() {
            // Compressing into a vector cannot fail; keep the message whole.
            return payload.to_vec();
        }
    }
    out.truncate(out.len() - TAIL.len());
    out
}

/// Why a compressed message was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InflateError {
    /// It inflates past the limit (close 1009): inflating stopped there.
    TooBig,
    /// It is not deflate data (close 1007).
    Malformed,
}

/// A compressed message's payload inflated, at most `max` bytes: past them
/// inflating stops at once, so a small message that would inflate to
/// gigabytes costs no more than `max`.
pub fn inflate(data: &[u8], max: usize) -> Result<Vec<u8>, InflateError> {
    let mut inflate = Decompress::new(false);
    let mut out = Vec::with_capacity((data.len() * 4).max(64).min(max.saturating_add(1)));
    for input in [data, &TAIL[..]] {
        let mut offset = 0;
        while offset < input.len() || out.len() == out.capacity() {
            if out.len() > max {
                return Err(InflateError::TooBig);
            }
            if out.len() == out.capacity() {
                // One byte past the limit is enough to know it is over.
                let room = out.capacity().max(64).min(max + 1 - out.len());
                out.reserve(room.max(1));
            }
            let before = inflate.total_in();
            let status = inflate
                .decompress_vec(&input[offset..], &mut out, FlushDecompress::Sync)
                .map_err(|_| InflateError::Malformed)?;
            offset += (inflate.total_in() - before) as usize;
            if status == Status::StreamEnd || (offset == input.len() && out.len() < out.capacity()) {
                break;
            }
        }
    }
    if out.len() > max {
        return Err(InflateError::TooBig);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_drops_the_tail() {
        for payload in [&b""[..], b"a", br#"{"pub":{"channel":"news","data":{"price":101.5}}}"#, &[7u8; 100_000]] {
            let compressed = compress(payload);
            assert!(!compressed.ends_with(&TAIL) || payload.is_empty());
            assert_eq!(inflate(&compressed, payload.len()).unwrap(), payload);
        }
        let text = "switchyard ".repeat(1000);
        assert!(compress(text.as_bytes()).len() < text.len() / 10);
    }

    #[test]
    fn a_bomb_stops_at_the_limit_and_garbage_is_malformed() {
        let bomb = compress(&vec![0u8; 100 << 20]);
        assert!(bomb.len() < 1 << 20, "{}", bomb.len());
        assert_eq!(inflate(&bomb, 64 * 1024), Err(InflateError::TooBig));
        assert_eq!(inflate(&[0xff, 0xfe, 0xfd, 0x00, 0x13], 1024), Err(InflateError::Malformed));
    }
}

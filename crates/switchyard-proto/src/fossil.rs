//! Fossil deltas (the format of the Fossil SCM, `www/delta_format.wiki`):
//! what publication deltas are made of, on the node and in the Rust client.
//!
//! A delta is a header (the target's length), then commands that copy a
//! range of the source or insert literal bytes, then a checksum of the
//! target. Integers are written in Fossil's base-64 digits. Of two texts the
//! delta is text too: inserted bytes are the target's own.
//!
//! Written here rather than taken from a crate: the published Rust crate
//! panics on malformed input and reads out of bounds, and a client applies
//! deltas that arrive from the network.

use std::fmt;

/// Bytes per hashed block of the source; a match shorter than this is not
/// looked for.
const BLOCK: usize = 16;

const DIGITS: &[u8; 64] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz~";

/// Why a delta could not be applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeltaError {
    /// Not a delta: bad digits or commands, or a range outside the source.
    Malformed,
    /// The target would be longer than the caller allows.
    TooLarge,
    /// The result does not have the length or checksum the delta states.
    Mismatch,
}

impl fmt::Display for DeltaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DeltaError::Malformed => "malformed delta",
            DeltaError::TooLarge => "delta target too large",
            DeltaError::Mismatch => "delta does not match its source",
        })
    }
}

impl std::error::Error for DeltaError {}

/// The delta that turns `source` into `target`.
pub fn create(source: &[u8], target: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(target.len() / 4 + 16);
    put_int(&mut out, target.len() as u64);
    out.push(b'\n');
    if source.len() < BLOCK || target.len() < BLOCK {
        put_insert(&mut out, target);
    } else {
        encode(source, target, &mut out);
    }
    put_int(&mut out, u64::from(checksum(target)));
    out.push(b';');
    out
}

/// Applies `delta` to `source`; the result may be at most `max_len` bytes.
pub fn apply(source: &[u8], delta: &[u8], max_len: usize) -> Result<Vec<u8>, DeltaError> {
    let mut reader = Reader { bytes: delta, at: 0 };
    let len = usize::try_from(reader.int()?).map_err(|_| DeltaError::TooLarge)?;
    if len > max_len {
        return Err(DeltaError::TooLarge);
    }
    reader.expect(b'\n')?;
    let mut out = Vec::with_capacity(len);
    loop {
        let count = reader.int()?;
        match reader.next()? {
            b'@' => {
                let offset = reader.int()?;
                reader.expect(b',')?;
                let range = range(offset, count, source.len())?;
                if out.len() + range.len() > len {
                    return Err(DeltaError::Mismatch);
                }
                out.extend_from_slice(&source[range]);
            }
            b':' => {
                let literal = reader.take(count)?;
                if out.len() + literal.len() > len {
                    return Err(DeltaError::Mismatch);
                }
                out.extend_from_slice(literal);
            }
            b';' => {
                if out.len() != len || u64::from(checksum(&out)) != count {
                    return Err(DeltaError::Mismatch);
                }
                return Ok(out);
            }
            _ => return Err(DeltaError::Malformed),
        }
    }
}

fn range(offset: u64, count: u64, len: usize) -> Result<std::ops::Range<usize>, DeltaError> {
    let start = usize::try_from(offset).map_err(|_| DeltaError::Malformed)?;
    let count = usize::try_from(count).map_err(|_| DeltaError::Malformed)?;
    let end = start.checked_add(count).filter(|&end| end <= len).ok_or(DeltaError::Malformed)?;
    Ok(start..end)
}

/// The copy and insert commands for `target`, matching blocks of `source`.
fn encode(source: &[u8], target: &[u8], out: &mut Vec<u8>) {
    // Each source block, by its hash: a bucket head per hash slot and a
    // chain through the blocks that share it.
    let blocks = source.len() / BLOCK;
    let slots = blocks.next_power_of_two();
    let mut heads = vec![u32::MAX; slots];
    let mut chain = vec![u32::MAX; blocks];
    for block in 0..blocks {
        let slot = RollingHash::new(&source[block * BLOCK..]).value() as usize & (slots - 1);
        chain[block] = heads[slot];
        heads[slot] = block as u32;
    }
    // `base`: where the pending literal starts; `at`: the window's start.
    let mut base = 0;
    let mut at = 0;
    let mut hash = RollingHash::new(&target[at..]);
    while at + BLOCK <= target.len() {
        let mut best: Option<(usize, usize, usize)> = None; // (target start, source start, len)
        let mut block = heads[hash.value() as usize & (slots - 1)];
        let mut probes = 0;
        while block != u32::MAX && probes < 64 {
            probes += 1;
            let src = block as usize * BLOCK;
            block = chain[block as usize];
            if source[src..src + BLOCK] != target[at..at + BLOCK] {
                continue;
            }
            let forward = source[src + BLOCK..].iter().zip(&target[at + BLOCK..]).take_while(|(a, b)| a == b).count();
            let back =
                source[..src].iter().rev().zip(target[base..at].iter().rev()).take_while(|(a, b)| a == b).count();
            let len = back + BLOCK + forward;
            if best.is_none_or(|(_, _, best_len)| len > best_len) {
                best = Some((at - back, src - back, len));
            }
        }
        match best {
            // Worth a copy command only when it is shorter than the bytes.
            Some((start, src, len)) if len > int_len(len as u64) + int_len(src as u64) + 2 => {
                if start > base {
                    put_insert(out, &target[base..start]);
                }
                put_int(out, len as u64);
                out.push(b'@');
                put_int(out, src as u64);
                out.push(b',');
                base = start + len;
                at = base;
                if at + BLOCK <= target.len() {
                    hash = RollingHash::new(&target[at..]);
                }
            }
            _ => {
                if at + BLOCK < target.len() {
                    hash.roll(target[at], target[at + BLOCK]);
                }
                at += 1;
            }
        }
    }
    if base < target.len() {
        put_insert(out, &target[base..]);
    }
}

/// Fossil's rolling hash of a `BLOCK`-byte window.
struct RollingHash {
    a: u32,
    b: u32,
}

impl RollingHash {
    fn new(window: &[u8]) -> Self {
        let (mut a, mut b) = (0u32, 0u32);
        for (i, &byte) in window[..BLOCK].iter().enumerate() {
            a = a.wrapping_add(u32::from(byte));
            b = b.wrapping_add(((BLOCK - i) as u32).wrapping_mul(u32::from(byte)));
        }
        RollingHash { a, b }
    }

    fn roll(&mut self, out: u8, into: u8) {
        self.a = self.a.wrapping_sub(u32::from(out)).wrapping_add(u32::from(into));
        self.b = self.b.wrapping_sub((BLOCK as u32).wrapping_mul(u32::from(out))).wrapping_add(self.a);
    }

    fn value(&self) -> u32 {
        (self.a & 0xffff) | (self.b << 16)
    }
}

/// Fossil's checksum: the sum of the big-endian 32-bit words, the last one
/// padded with zeros.
fn checksum(bytes: &[u8]) -> u32 {
    let mut chunks = bytes.chunks_exact(4);
    let mut sum = chunks
        .by_ref()
        .fold(0u32, |sum, word| sum.wrapping_add(u32::from_be_bytes(word.try_into().expect("four bytes"))));
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut word = [0u8; 4];
        word[..rest.len()].copy_from_slice(rest);
        sum = sum.wrapping_add(u32::from_be_bytes(word));
    }
    sum
}

fn put_insert(out: &mut Vec<u8>, literal: &[u8]) {
    put_int(out, literal.len() as u64);
    out.push(b':');
    out.extend_from_slice(literal);
}

fn put_int(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 11];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = DIGITS[(n & 63) as usize];
        n >>= 6;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

fn int_len(n: u64) -> usize {
    let bits = 64 - n.leading_zeros() as usize;
    bits.div_ceil(6).max(1)
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn next(&mut self) -> Result<u8, DeltaError> {
        let byte = *self.bytes.get(self.at).ok_or(DeltaError::Malformed)?;
        self.at += 1;
        Ok(byte)
    }

    fn expect(&mut self, byte: u8) -> Result<(), DeltaError> {
        if self.next()? == byte { Ok(()) } else { Err(DeltaError::Malformed) }
    }

    /// A base-64 integer: one digit at least, at most 64 bits.
    fn int(&mut self) -> Result<u64, DeltaError> {
        let mut n: u64 = 0;
        let start = self.at;
        while let Some(digit) = self.bytes.get(self.at).and_then(|&b| DIGITS.iter().position(|&d| d == b)) {
            if n >> 58 != 0 {
                return Err(DeltaError::Malformed);
            }
            n = (n << 6) | digit as u64;
            self.at += 1;
        }
        if self.at == start { Err(DeltaError::Malformed) } else { Ok(n) }
    }

    fn take(&mut self, count: u64) -> Result<&'a [u8], DeltaError> {
        let range = range(self.at as u64, count, self.bytes.len())?;
        self.at = range.end;
        Ok(&self.bytes[range])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn document(price: u32) -> Vec<u8> {
        let rows: Vec<String> = (0..40)
            .map(|i| format!(r#"{{"id":{i},"name":"instrument-{i}","bid":{},"ask":{}}}"#, 1000 + i, 1001 + i))
            .collect();
        format!(r#"{{"book":[{}],"last":{price}}}"#, rows.join(",")).into_bytes()
    }

    #[test]
    fn a_small_change_makes_a_small_delta() {
        let (a, b) = (document(1), document(2));
        let delta = create(&a, &b);
        assert!(delta.len() < b.len() / 10, "{} of {}", delta.len(), b.len());
        assert_eq!(apply(&a, &delta, usize::MAX).unwrap(), b);
        assert!(std::str::from_utf8(&delta).is_ok());
    }

    #[test]
    fn applies_a_delta_made_elsewhere() {
        // Made by the `fossil-delta` npm package (which the TypeScript SDK
        // applies ours with).
        let source = b"hello, world of deltas! hello, world of deltas!";
        let target = b"hello, brave world of deltas! hello, world of deltas, again!";
        let delta = b"x\nC:hello, braved@6,8:, again!ZvaMz;";
        assert_eq!(apply(source, delta, usize::MAX).unwrap(), target);
        assert_eq!(apply(source, &create(source, target), usize::MAX).unwrap(), target);
    }

    #[test]
    fn refuses_what_is_not_a_delta() {
        let a = document(1);
        let delta = create(&a, &document(2));
        for bad in [&b""[..], b"zz", b"5\n3@9999,", b"5\n9:ab", b"2\n2:ab1;", b"A\n"] {
            assert!(apply(&a, bad, usize::MAX).is_err(), "{}", String::from_utf8_lossy(bad));
        }
        assert_eq!(apply(&a, &delta, 10), Err(DeltaError::TooLarge));
        let mut changed_source = a.clone();
        changed_source[30] ^= 1;
        assert!(apply(&changed_source, &delta, usize::MAX).is_err());
        for cut in 0..delta.len() {
            assert!(apply(&a, &delta[..cut], usize::MAX).is_err());
        }
    }

    proptest! {
        #[test]
        fn round_trips(source in proptest::collection::vec(any::<u8>(), 0..600),
                       edits in proptest::collection::vec((any::<u16>(), any::<u8>()), 0..8)) {
            let mut target = source.clone();
            for (at, byte) in edits {
                if target.is_empty() { target.push(byte); continue; }
                let at = usize::from(at) % target.len();
                target[at] = byte;
            }
            target.extend_from_slice(&source[..source.len() / 3]);
            let delta = create(&source, &target);
            prop_assert_eq!(apply(&source, &delta, usize::MAX).unwrap(), target);
        }

        #[test]
        fn never_panics_on_garbage(source in proptest::collection::vec(any::<u8>(), 0..64),
                                   delta in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = apply(&source, &delta, 1 << 20);
        }
    }
}

//! A final, unmasked WebSocket frame, as the two broadcast peers send it:
//! built once, the same bytes for every receiver. Included by
//! `bin/bare_broadcast.rs` and `bin/raw_broadcast.rs` (`#[path]`): the peers are
//! binaries of their own.

use bytes::{BufMut, Bytes, BytesMut};

pub fn frame(opcode: u8, payload: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(payload.len() + 10);
    out.put_u8(0x80 | opcode);
    match payload.len() {
        n if n < 126 => out.put_u8(n as u8),
        n if n <= usize::from(u16::MAX) => {
            out.put_u8(126);
            out.put_u16(n as u16);
        }
        n => {
            out.put_u8(127);
            out.put_u64(n as u64);
        }
    }
    out.put_slice(payload);
    out.freeze()
}

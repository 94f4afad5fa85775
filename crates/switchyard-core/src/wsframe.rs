//! WebSocket frames as the server sends them: unmasked, so a frame's bytes
//! are the same for every connection. A publication is framed once and the
//! same [`Bytes`] are written to every subscriber.

use bytes::{BufMut, Bytes, BytesMut};

pub const OPCODE_TEXT: u8 = 0x1;
pub const OPCODE_BINARY: u8 = 0x2;
pub const OPCODE_CLOSE: u8 = 0x8;
pub const OPCODE_PING: u8 = 0x9;
pub const OPCODE_PONG: u8 = 0xA;

/// RSV1 on the first frame of a message: it is compressed (RFC 7692).
const RSV1: u8 = 0x40;

/// The header of a final, unmasked frame.
fn put_header(out: &mut BytesMut, opcode: u8, len: usize) {
    out.put_u8(0x80 | opcode);
    if len < 126 {
        out.put_u8(len as u8);
    } else if let Ok(len) = u16::try_from(len) {
        out.put_u8(126);
        out.put_u16(len);
    } else {
        out.put_u8(127);
        out.put_u64(len as u64);
    }
}

/// One complete frame: header and payload in one buffer.
pub fn frame(opcode: u8, payload: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(payload.len() + 10);
    put_header(&mut out, opcode, payload.len());
    out.put_slice(payload);
    out.freeze()
}

/// A final frame whose payload is compressed with permessage-deflate
/// (`deflated`: what [`crate::deflate::compress`] made of the message).
pub fn compressed(opcode: u8, deflated: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(deflated.len() + 10);
    put_header(&mut out, RSV1 | opcode, deflated.len());
    out.put_slice(deflated);
    out.freeze()
}

/// A text frame; `payload` must be UTF-8 (it is: it comes from serde_json).
pub fn text(payload: &[u8]) -> Bytes {
    frame(OPCODE_TEXT, payload)
}

pub fn binary(payload: &[u8]) -> Bytes {
    frame(OPCODE_BINARY, payload)
}

/// A close frame. The reason is cut to fit the 125-byte control frame limit.
pub fn close(code: u16, reason: &str) -> Bytes {
    let mut cut = reason.len().min(123);
    while !reason.is_char_boundary(cut) {
        cut -= 1;
    }
    let mut payload = Vec::with_capacity(2 + cut);
    payload.extend_from_slice(&code.to_be_bytes());
    payload.extend_from_slice(&reason.as_bytes()[..cut]);
    frame(OPCODE_CLOSE, &payload)
}

/// The payload of a frame made here (final, unmasked): what other
/// transports (Server-Sent Events) carry of the same encoded message.
pub fn payload(frame: &Bytes) -> Bytes {
    let header = match frame.get(1).map(|b| b & 0x7f) {
        Some(126) => 4,
        Some(127) => 10,
        Some(_) => 2,
        None => return Bytes::new(),
    };
    frame.slice(header.min(frame.len())..)
}

/// A ping or pong; payloads over 125 bytes are not allowed by RFC 6455.
pub fn control(opcode: u8, payload: &[u8]) -> Bytes {
    frame(opcode, &payload[..payload.len().min(125)])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_lengths() {
        assert_eq!(&text(b"hi")[..], &[0x81, 2, b'h', b'i']);
        let f = binary(&[0u8; 126]);
        assert_eq!(&f[..4], &[0x82, 126, 0, 126]);
        let f = binary(&vec![0u8; 70_000]);
        assert_eq!(&f[..2], &[0x82, 127]);
        assert_eq!(u64::from_be_bytes(f[2..10].try_into().unwrap()), 70_000);
        assert_eq!(f.len(), 70_010);
    }

    #[test]
    fn payloads_come_back_whatever_the_header() {
        for n in [0, 5, 125, 126, 65_535, 65_536, 70_000] {
            let body = vec![7u8; n];
            assert_eq!(&payload(&text(&body))[..], &body[..], "{n} bytes");
        }
    }

    #[test]
    fn close_reason_is_cut_on_a_char_boundary() {
        let f = close(4008, &"é".repeat(100));
        assert_eq!(f[0], 0x88);
        assert!(f[1] as usize <= 125);
        assert!(std::str::from_utf8(&f[4..]).is_ok());
        assert_eq!(u16::from_be_bytes([f[2], f[3]]), 4008);
    }
}

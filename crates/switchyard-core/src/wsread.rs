//! Reads client WebSocket frames (RFC 6455 §5) from a stream, with a read
//! buffer that starts small and follows the traffic.
//!
//! A gateway holds many more idle connections than busy ones, so the read
//! buffer is the biggest per-connection cost it controls. A connection with
//! nothing of a frame pending holds no buffer at all: it reads into its
//! worker thread's scratch buffer and keeps only the bytes that came. Only
//! a frame that arrives in pieces gets a buffer of its own, which starts at
//! [`MIN_READ`] bytes, doubles while reads fill it, halves while they do
//! not, and for a frame larger than it has exactly the room it needs. Reassembly of
//! fragmented messages, UTF-8 of text and close codes are the session's:
//! this module checks what a single frame must satisfy.

use bytes::{Buf, BytesMut};
use std::cell::RefCell;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};

/// The smallest read, and the buffer an idle connection settles on.
pub const MIN_READ: usize = 512;
/// The largest read a busy connection grows to, and the size of a worker
/// thread's scratch buffer.
pub const MAX_READ: usize = 64 * 1024;

thread_local! {
    /// Where a connection with nothing pending reads. Borrowed only within
    /// one poll of the stream, never across an await.
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// What a frame carries (RFC 6455 §5.2; no extensions are negotiated).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opcode {
    Continuation,
    Text,
    Binary,
    Close,
    Ping,
    Pong,
}

impl Opcode {
    fn from_bits(bits: u8) -> Option<Opcode> {
        Some(match bits {
            0x0 => Opcode::Continuation,
            0x1 => Opcode::Text,
            0x2 => Opcode::Binary,
            0x8 => Opcode::Close,
            0x9 => Opcode::Ping,
            0xA => Opcode::Pong,
            _ => return None,
        })
    }

    pub fn is_control(self) -> bool {
        matches!(self, Opcode::Close | Opcode::Ping | Opcode::Pong)
    }
}

/// One frame, unmasked.
#[derive(Debug)]
pub struct Frame {
    pub fin: bool,
    pub opcode: Opcode,
    /// RSV1: the message this frame starts is compressed (permessage-deflate).
    pub compressed: bool,
    pub payload: BytesMut,
}

/// Why no frame could be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// Against RFC 6455: reserved bits, unknown opcode, unmasked client
    /// frame, fragmented or oversize control frame.
    Protocol,
    /// The payload is larger than the limit.
    TooBig,
    /// The stream ended or failed.
    Closed,
}

/// Takes one complete frame off the front of `buf`, unmasking it in place.
/// `Ok(None)` means more bytes are needed, and `buf` has been given room
/// for the rest of the frame when its size is known.
pub fn parse(buf: &mut BytesMut, max_payload: usize) -> Result<Option<Frame>, FrameError> {
    parse_with(buf, max_payload, false)
}

/// [`parse`], where permessage-deflate was negotiated (`deflate`): RSV1 may
/// then mark the first frame of a data message as compressed (RFC 7692
/// §6), never a control frame or a continuation.
pub fn parse_with(buf: &mut BytesMut, max_payload: usize, deflate: bool) -> Result<Option<Frame>, FrameError> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let (b0, b1) = (buf[0], buf[1]);
    let compressed = b0 & 0x40 != 0;
    if b0 & 0x30 != 0 || (compressed && !deflate) {
        return Err(FrameError::Protocol);
    }
    let fin = b0 & 0x80 != 0;
    let opcode = Opcode::from_bits(b0 & 0x0F).ok_or(FrameError::Protocol)?;
    if compressed && !matches!(opcode, Opcode::Text | Opcode::Binary) {
        return Err(FrameError::Protocol);
    }
    if b1 & 0x80 == 0 {
        // §5.1: a server closes on an unmasked client frame.
        return Err(FrameError::Protocol);
    }
    let (len_bytes, short_len) = match b1 & 0x7F {
        126 => (2, None),
        127 => (8, None),
        n => (0, Some(n as u64)),
    };
    let header = 2 + len_bytes + 4;
    if buf.len() < header {
        return Ok(None);
    }
    let len = match short_len {
        Some(n) => n,
        None if len_bytes == 2 => u16::from_be_bytes([buf[2], buf[3]]) as u64,
        None => u64::from_be_bytes(buf[2..10].try_into().expect("8 bytes")),
    };
    if opcode.is_control() && (!fin || len > 125) {
        return Err(FrameError::Protocol);
    }
    if len > max_payload as u64 {
        return Err(FrameError::TooBig);
    }
    let len = len as usize;
    if buf.len() < header + len {
        buf.reserve(header + len - buf.len());
        return Ok(None);
    }
    let mask: [u8; 4] = buf[header - 4..header].try_into().expect("4 bytes");
    buf.advance(header);
    let mut payload = buf.split_to(len);
    unmask(&mut payload, mask);
    Ok(Some(Frame { fin, opcode, compressed, payload }))
}

/// XORs `payload` with the repeating 4-byte `mask`, eight bytes at a time.
fn unmask(payload: &mut [u8], mask: [u8; 4]) {
    let wide = u64::from_ne_bytes([mask[0], mask[1], mask[2], mask[3], mask[0], mask[1], mask[2], mask[3]]);
    let mut chunks = payload.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let word = u64::from_ne_bytes((&*chunk).try_into().expect("8 bytes")) ^ wide;
        chunk.copy_from_slice(&word.to_ne_bytes());
    }
    // The remainder starts at a multiple of 8, so the mask starts over.
    for (i, byte) in chunks.into_remainder().iter_mut().enumerate() {
        *byte ^= mask[i % 4];
    }
}

/// Reads frames from the client's half of a connection.
pub struct FrameReader<R> {
    io: R,
    buf: BytesMut,
    max_payload: usize,
    read_size: usize,
    /// permessage-deflate was negotiated: RSV1 is allowed (see [`parse_with`]).
    deflate: bool,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// `max_payload`: the largest frame payload accepted ([`FrameError::TooBig`] above).
    pub fn new(io: R, max_payload: usize) -> Self {
        FrameReader { io, buf: BytesMut::new(), max_payload, read_size: MIN_READ, deflate: false }
    }

    /// Takes compressed messages too (permessage-deflate was negotiated).
    pub fn with_deflate(mut self, deflate: bool) -> Self {
        self.deflate = deflate;
        self
    }

    /// The next frame. Cancel-safe: bytes read are kept in the reader's own
    /// buffer before its await returns, so they stay there for the next call.
    pub async fn read_frame(&mut self) -> Result<Frame, FrameError> {
        loop {
            if let Some(frame) = parse_with(&mut self.buf, self.max_payload, self.deflate)? {
                return Ok(frame);
            }
            let n = if self.buf.is_empty() {
                // Also lets go of the block that frames taken from it share.
                self.buf = BytesMut::new();
                std::future::poll_fn(|cx| self.poll_read_scratch(cx)).await
            } else {
                if self.buf.capacity() > 2 * self.read_size.max(self.buf.len()) {
                    // A burst is over: give its buffer back.
                    self.buf = BytesMut::from(&self.buf[..]);
                }
                self.buf.reserve(self.read_size);
                let n = self.io.read_buf(&mut self.buf).await;
                if let Ok(n) = n {
                    if n >= self.read_size {
                        self.read_size = (self.read_size * 2).min(MAX_READ);
                    } else if n < self.read_size / 4 {
                        self.read_size = (self.read_size / 2).max(MIN_READ);
                    }
                }
                n
            };
            match n {
                Ok(0) | Err(_) => return Err(FrameError::Closed),
                Ok(_) => {}
            }
        }
    }

    /// One read into the thread's scratch buffer; what came is copied into
    /// the reader's own (empty) buffer.
    fn poll_read_scratch(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<usize>> {
        SCRATCH.with_borrow_mut(|scratch| {
            scratch.resize(MAX_READ, 0);
            let mut read = ReadBuf::new(scratch);
            match Pin::new(&mut self.io).poll_read(cx, &mut read) {
                Poll::Ready(Ok(())) => {
                    self.buf.extend_from_slice(read.filled());
                    Poll::Ready(Ok(read.filled().len()))
                }
                other => other.map_ok(|()| 0),
            }
        })
    }

    /// Bytes the read buffer holds room for.
    pub fn buffer_capacity(&self) -> usize {
        self.buf.capacity()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client frame as a browser would send it.
    fn masked(first: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
        let mut out = vec![first];
        match payload.len() {
            n if n < 126 => out.push(0x80 | n as u8),
            n if n <= u16::MAX as usize => {
                out.push(0x80 | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(0x80 | 127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        out
    }

    #[test]
    fn unmasks_every_length_form() {
        for len in [0, 1, 7, 8, 9, 125, 126, 127, 1000, 65_535, 65_536, 70_001] {
            let payload: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
            let mut buf = BytesMut::from(&masked(0x82, &payload, [1, 2, 3, 250])[..]);
            let frame = parse(&mut buf, 1 << 20).unwrap().unwrap();
            assert!(frame.fin);
            assert_eq!(frame.opcode, Opcode::Binary);
            assert_eq!(&frame.payload[..], &payload[..], "length {len}");
            assert!(buf.is_empty());
        }
    }

    #[test]
    fn waits_for_the_whole_frame_byte_by_byte() {
        let mut bytes = masked(0x01, b"hello", [9, 8, 7, 6]);
        bytes.extend(masked(0x80, b" world", [1, 1, 1, 1]));
        let mut buf = BytesMut::new();
        let mut frames = Vec::new();
        for b in bytes {
            buf.extend_from_slice(&[b]);
            if let Some(frame) = parse(&mut buf, 100).unwrap() {
                frames.push(frame);
            }
        }
        assert_eq!(frames.len(), 2);
        assert_eq!((frames[0].fin, frames[0].opcode, &frames[0].payload[..]), (false, Opcode::Text, &b"hello"[..]));
        assert_eq!(
            (frames[1].fin, frames[1].opcode, &frames[1].payload[..]),
            (true, Opcode::Continuation, &b" world"[..])
        );
    }

    #[test]
    fn refuses_what_a_client_must_not_send() {
        let cases: [(Vec<u8>, FrameError); 6] = [
            (masked(0xC1, b"x", [0; 4]), FrameError::Protocol), // RSV1 without an extension
            (masked(0x83, b"x", [0; 4]), FrameError::Protocol), // reserved opcode
            (vec![0x81, 0x01, b'x'], FrameError::Protocol),     // unmasked
            (masked(0x09, b"", [0; 4]), FrameError::Protocol),  // fragmented ping
            (masked(0x8A, &[0; 126], [0; 4]), FrameError::Protocol), // control frame over 125 bytes
            (masked(0x82, &[0; 101], [0; 4]), FrameError::TooBig), // over the limit
        ];
        for (bytes, error) in cases {
            assert_eq!(parse(&mut BytesMut::from(&bytes[..]), 100).unwrap_err(), error, "{bytes:02x?}");
        }
    }

    #[test]
    fn refuses_an_oversize_length_before_its_payload_arrives() {
        let header = [0x82, 0x80 | 127, 0, 0, 0, 1, 0, 0, 0, 0, 1, 2, 3, 4];
        assert_eq!(parse(&mut BytesMut::from(&header[..]), 1 << 20).unwrap_err(), FrameError::TooBig);
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_are_refused_or_read_never_a_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let mut buf = BytesMut::from(&bytes[..]);
            while let Ok(Some(frame)) = parse(&mut buf, 256) {
                proptest::prop_assert!(frame.payload.len() <= 256);
            }
        }

        #[test]
        fn frames_split_anywhere_come_out_whole(
            payloads in proptest::collection::vec(proptest::collection::vec(proptest::num::u8::ANY, 0..300), 1..5),
            mask in proptest::array::uniform4(proptest::num::u8::ANY),
            cut in 0usize..2000,
        ) {
            let wire: Vec<u8> = payloads.iter().flat_map(|p| masked(0x82, p, mask)).collect();
            let cut = cut.min(wire.len());
            let mut buf = BytesMut::from(&wire[..cut]);
            let mut got = Vec::new();
            while let Some(frame) = parse(&mut buf, 1 << 16).unwrap() {
                got.push(frame.payload.to_vec());
            }
            buf.extend_from_slice(&wire[cut..]);
            while let Some(frame) = parse(&mut buf, 1 << 16).unwrap() {
                got.push(frame.payload.to_vec());
            }
            proptest::prop_assert_eq!(got, payloads);
        }
    }

    #[tokio::test]
    async fn the_buffer_grows_for_a_burst_and_shrinks_back_when_idle() {
        let (mut client, server) = tokio::io::duplex(1 << 20);
        let mut reader = FrameReader::new(server, 1 << 20);
        use tokio::io::AsyncWriteExt;
        client.write_all(&masked(0x82, &[5; 200_000], [1, 2, 3, 4])).await.unwrap();
        assert_eq!(reader.read_frame().await.unwrap().payload.len(), 200_000);
        for _ in 0..4 {
            client.write_all(&masked(0x81, b"{}", [1, 2, 3, 4])).await.unwrap();
            assert_eq!(&reader.read_frame().await.unwrap().payload[..], b"{}");
        }
        assert!(reader.buffer_capacity() <= 4 * MIN_READ, "capacity {}", reader.buffer_capacity());
        drop(client);
        assert_eq!(reader.read_frame().await.unwrap_err(), FrameError::Closed);
    }
}

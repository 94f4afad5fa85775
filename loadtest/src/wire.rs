//! What a subscriber's socket carries, under the WebSocket reader: it
//! counts the bytes that cross the wire, and inflates permessage-deflate
//! messages (RSV1), which the generator's WebSocket library does not, into
//! plain frames for the reader above. One inflater per connection, fed
//! every compressed message with the RFC 7692 tail: right for servers that
//! keep their window between messages (Node `ws` by default) and for those
//! that do not (switchyard).

use bytes::{Buf, BytesMut};
use flate2::{Decompress, FlushDecompress};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

pub struct Wire<S> {
    inner: S,
    /// Read from the socket, not yet a whole frame.
    raw: BytesMut,
    /// Whole frames for the reader above.
    ready: BytesMut,
    inflate: Decompress,
    /// Bytes read from the socket, shared by the run's subscribers.
    bytes: Arc<AtomicU64>,
}

impl<S> Wire<S> {
    pub fn new(inner: S, bytes: Arc<AtomicU64>) -> Self {
        Wire { inner, raw: BytesMut::new(), ready: BytesMut::new(), inflate: Decompress::new(false), bytes }
    }

    /// Moves every whole frame from `raw` to `ready`, inflated.
    fn frames(&mut self) -> std::io::Result<()> {
        loop {
            let Some((header, len)) = header_len(&self.raw) else { return Ok(()) };
            if self.raw.len() < header + len {
                return Ok(());
            }
            let first = self.raw[0];
            if first & 0x40 == 0 {
                let frame = self.raw.split_to(header + len);
                self.ready.extend_from_slice(&frame);
                continue;
            }
            self.raw.advance(header);
            let compressed = self.raw.split_to(len);
            let message = self.inflated(&compressed)?;
            self.ready.extend_from_slice(&frame_header(first & !0x40, message.len()));
            self.ready.extend_from_slice(&message);
        }
    }

    fn inflated(&mut self, compressed: &[u8]) -> std::io::Result<Vec<u8>> {
        let mut out = Vec::with_capacity(compressed.len() * 4 + 64);
        for input in [compressed, &TAIL[..]] {
            let mut offset = 0;
            loop {
                if out.len() == out.capacity() {
                    out.reserve(out.capacity());
                }
                let before = self.inflate.total_in();
                self.inflate
                    .decompress_vec(&input[offset..], &mut out, FlushDecompress::Sync)
                    .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
                offset += (self.inflate.total_in() - before) as usize;
                if offset == input.len() && out.len() < out.capacity() {
                    break;
                }
            }
        }
        Ok(out)
    }
}

/// The length of a server frame's header and of its payload, once the
/// header is there (server frames are not masked).
fn header_len(raw: &[u8]) -> Option<(usize, usize)> {
    let short = *raw.get(1)? & 0x7f;
    match short {
        126 => Some((4, u16::from_be_bytes(raw.get(2..4)?.try_into().ok()?) as usize)),
        127 => Some((10, u64::from_be_bytes(raw.get(2..10)?.try_into().ok()?) as usize)),
        n => Some((2, n as usize)),
    }
}

fn frame_header(first: u8, len: usize) -> Vec<u8> {
    match len {
        n if n < 126 => vec![first, n as u8],
        n if n <= 0xffff => {
            let mut h = vec![first, 126];
            h.extend_from_slice(&(n as u16).to_be_bytes());
            h
        }
        n => {
            let mut h = vec![first, 127];
            h.extend_from_slice(&(n as u64).to_be_bytes());
            h
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Wire<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        loop {
            if !this.ready.is_empty() {
                let n = this.ready.len().min(buf.remaining());
                buf.put_slice(&this.ready.split_to(n));
                return Poll::Ready(Ok(()));
            }
            if this.raw.capacity() - this.raw.len() < 16 * 1024 {
                this.raw.reserve(64 * 1024);
            }
            let mut chunk = [0u8; 64 * 1024];
            let mut read = ReadBuf::new(&mut chunk);
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut read))?;
            let got = read.filled();
            if got.is_empty() {
                return Poll::Ready(Ok(())); // end of stream
            }
            this.bytes.fetch_add(got.len() as u64, Ordering::Relaxed);
            this.raw.extend_from_slice(got);
            this.frames()?;
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Wire<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::{Compress, Compression, FlushCompress};
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn inflates_compressed_frames_and_counts_the_wire() {
        let message = br#"{"pub":{"channel":"bench","data":{"t":1,"items":[1,2,3,1,2,3,1,2,3]}}}"#;
        let mut deflate = Compress::new(Compression::fast(), false);
        let mut compressed = Vec::with_capacity(256);
        deflate.compress_vec(message, &mut compressed, FlushCompress::Sync).unwrap();
        compressed.truncate(compressed.len() - 4);
        let mut stream = frame_header(0x81 | 0x40, compressed.len());
        stream.extend_from_slice(&compressed);
        stream.extend_from_slice(&frame_header(0x81, 2));
        stream.extend_from_slice(b"hi");
        let bytes = Arc::new(AtomicU64::new(0));
        let mut wire = Wire::new(&stream[..], bytes.clone());
        let mut out = Vec::new();
        wire.read_to_end(&mut out).await.unwrap();
        let mut expected = frame_header(0x81, message.len());
        expected.extend_from_slice(message);
        expected.extend_from_slice(&frame_header(0x81, 2));
        expected.extend_from_slice(b"hi");
        assert_eq!(out, expected);
        assert_eq!(bytes.load(Ordering::Relaxed), stream.len() as u64);
    }
}

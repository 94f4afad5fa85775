//! `raw-broadcast`: a broadcast server on tokio alone, the floor of what a
//! Rust WebSocket fan-out can cost: no hyper, no fastwebsockets (the
//! handshake and the framing are written here), one
//! `tokio::sync::broadcast` ring for everyone, and per client a writer that
//! copies whatever is queued into one contiguous buffer and issues one plain
//! `write`. Every message a client sends is framed once and goes to every
//! other client. No protocol, channels, limits, heartbeats or metrics.
//!
//!     raw-broadcast 127.0.0.1:9100
//!     raw-broadcast 127.0.0.1:9100 --envelope
//!     raw-broadcast 127.0.0.1:9100 --envelope --work-ns 500
//!
//! With `--envelope`, each message goes out wrapped the way switchyard
//! frames a client's publication of it in JSON (`{"pub":{"channel":...,
//! "data":...,"info":{...}}}`, byte for byte the same size), so that a run
//! can tell the cost of the protocol's bytes on the wire from the cost of
//! the stack.
//!
//! With `--work-ns N`, each writer spins N ns before each write: user work
//! between sends, as a server with more to do per write has, so that a run
//! can tell what that work costs beyond itself (the kernel's cost per send
//! depends on how closely the sends follow one another).

use base64::Engine as _;
use bytes::Bytes;
use sha1::{Digest, Sha1};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast;

/// Messages the ring holds; a writer further behind skips ahead.
const RING: usize = 16_384;
/// Largest message accepted from a client.
const MAX_MESSAGE: usize = 1 << 20;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

#[path = "../peer_frame.rs"]
mod peer_frame;
use peer_frame::frame;

/// Reads the HTTP upgrade request and answers 101; the rest of what was read.
async fn handshake(stream: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(1024);
    let end = loop {
        let mut chunk = [0u8; 1024];
        let n = stream.read(&mut chunk).await?;
        if n == 0 || buf.len() > 16 * 1024 {
            return Err(std::io::ErrorKind::InvalidData.into());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..end]);
    let key = head
        .lines()
        .find_map(|l| l.split_once(':').filter(|(k, _)| k.trim().eq_ignore_ascii_case("sec-websocket-key")))
        .map(|(_, v)| v.trim().to_owned())
        .ok_or(std::io::ErrorKind::InvalidData)?;
    let mut sha = Sha1::new();
    sha.update(key.as_bytes());
    sha.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    let accept = base64::engine::general_purpose::STANDARD.encode(sha.finalize());
    let response = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
    );
    stream.write_all(response.as_bytes()).await?;
    Ok(buf[end..].to_vec())
}

/// Client frames, unmasked, one message at a time (no fragmentation: the
/// generator sends whole messages).
async fn read_messages(
    mut read: OwnedReadHalf,
    mut buf: Vec<u8>,
    id: u64,
    ring: broadcast::Sender<(u64, Bytes)>,
    envelope: bool,
) {
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        // Parse every whole frame in the buffer.
        let mut at = 0;
        while buf.len() - at >= 2 {
            let (b0, b1) = (buf[at], buf[at + 1]);
            let (mut len, mut head) = (u64::from(b1 & 0x7f), 2usize);
            if len == 126 {
                if buf.len() - at < 4 {
                    break;
                }
                len = u64::from(u16::from_be_bytes([buf[at + 2], buf[at + 3]]));
                head = 4;
            } else if len == 127 {
                if buf.len() - at < 10 {
                    break;
                }
                len = u64::from_be_bytes(buf[at + 2..at + 10].try_into().expect("8 bytes"));
                head = 10;
            }
            let masked = b1 & 0x80 != 0;
            let mask_len = if masked { 4 } else { 0 };
            if len as usize > MAX_MESSAGE {
                return;
            }
            let total = head + mask_len + len as usize;
            if buf.len() - at < total {
                break;
            }
            let mut payload = buf[at + head + mask_len..at + total].to_vec();
            if masked {
                let mask = [buf[at + head], buf[at + head + 1], buf[at + head + 2], buf[at + head + 3]];
                for (i, byte) in payload.iter_mut().enumerate() {
                    *byte ^= mask[i % 4];
                }
            }
            at += total;
            match b0 & 0x0f {
                opcode @ (0x1 | 0x2) => {
                    let message = if envelope { enveloped(&payload, id) } else { payload };
                    let _ = ring.send((id, frame(opcode, &message)));
                }
                0x8 => return,
                _ => {}
            }
        }
        buf.drain(..at);
        match read.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// `payload` as switchyard's JSON `pub` push of a client's publication on
/// the load generator's channel.
fn enveloped(payload: &[u8], id: u64) -> Vec<u8> {
    let head = br#"{"pub":{"channel":"bench","data":"#;
    let tail = format!(r#","info":{{"client":"{:016x}-{id}","user":""}}}}}}"#, 0x6c53_556a_cf3c_bc33_u64);
    [&head[..], payload, tail.as_bytes()].concat()
}

/// Copies whatever the ring holds for this client into one buffer, and
/// writes it with one call.
async fn write_messages(
    mut write: OwnedWriteHalf,
    id: u64,
    mut ring: broadcast::Receiver<(u64, Bytes)>,
    work: Duration,
) {
    let mut out = Vec::with_capacity(64 * 1024);
    loop {
        match ring.recv().await {
            Ok((from, bytes)) if from != id => out.extend_from_slice(&bytes),
            Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
            Err(broadcast::error::RecvError::Closed) => return,
        }
        loop {
            match ring.try_recv() {
                Ok((from, bytes)) if from != id => out.extend_from_slice(&bytes),
                Ok(_) | Err(broadcast::error::TryRecvError::Lagged(_)) => {}
                Err(_) => break,
            }
            if out.len() >= 256 * 1024 {
                break;
            }
        }
        if out.is_empty() {
            continue;
        }
        if !work.is_zero() {
            let start = Instant::now();
            while start.elapsed() < work {
                std::hint::spin_loop();
            }
        }
        if write.write_all(&out).await.is_err() {
            return;
        }
        out.clear();
    }
}

async fn client(mut stream: TcpStream, ring: broadcast::Sender<(u64, Bytes)>, envelope: bool, work: Duration) {
    let _ = stream.set_nodelay(true);
    let Ok(rest) = handshake(&mut stream).await else { return };
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let (read, write) = stream.into_split();
    let writer = tokio::spawn(write_messages(write, id, ring.subscribe(), work));
    read_messages(read, rest, id, ring, envelope).await;
    writer.abort();
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:9100".into());
    let args: Vec<String> = std::env::args().collect();
    let envelope = args.iter().any(|a| a == "--envelope");
    let work = match args.iter().position(|a| a == "--work-ns") {
        Some(at) => Duration::from_nanos(args.get(at + 1).and_then(|n| n.parse().ok()).unwrap_or(0)),
        None => Duration::ZERO,
    };
    let listener = TcpListener::bind(&addr).await?;
    eprintln!("raw-broadcast listening on ws://{}/", listener.local_addr()?);
    let (ring, _) = broadcast::channel(RING);
    loop {
        let (stream, _) = listener.accept().await?;
        tokio::spawn(client(stream, ring.clone(), envelope, work));
    }
}

//! A connection's outbound queue: bounded in bytes, filled without waiting
//! (fan-out never waits on a socket), drained by the connection's one writer.
//!
//! The queue holds complete WebSocket frames. It also carries the request to
//! close the connection, so that whoever decides to close (the hub on a slow
//! consumer, the reader on bad input, the drain on shutdown) goes through the
//! one writer that owns the socket.

use crate::codes::CloseCode;
use bytes::Bytes;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// A frame waiting to be written.
#[derive(Debug, Clone)]
pub struct OutFrame {
    /// The whole frame, header included.
    pub bytes: Bytes,
    /// For publications: when it was published (µs since the Unix epoch),
    /// for the delivery latency metric; 0 for anything else.
    pub published_at_us: u64,
}

impl OutFrame {
    pub fn control(bytes: Bytes) -> Self {
        OutFrame { bytes, published_at_us: 0 }
    }
}

/// How a connection ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Close {
    /// The server closes: a `disconnect` push, then a close frame, both
    /// with this code.
    Server(CloseCode),
    /// The peer sent a close frame (with this code, if any): echo it.
    Peer(Option<u16>),
    /// The socket is gone (end of stream, I/O error): write nothing more.
    Dropped,
}

/// Why a frame was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushError {
    /// The queue holds its byte bound already: the reader is too slow.
    Full,
    /// The connection is closing; nothing more will be written.
    Closed,
}

struct Shared {
    queued_bytes: AtomicUsize,
    max_bytes: usize,
    close: OnceLock<Close>,
    closing: CancellationToken,
}

/// The filling end: cheap to clone, held by the hub and the session.
#[derive(Clone)]
pub struct Outbound {
    tx: mpsc::UnboundedSender<OutFrame>,
    shared: Arc<Shared>,
}

/// The draining end, owned by the connection's writer.
pub struct OutboundQueue {
    rx: mpsc::UnboundedReceiver<OutFrame>,
    shared: Arc<Shared>,
}

/// A queue that holds at most `max_bytes` of frames. The channel itself is
/// unbounded because the byte count bounds it (every frame is ≥ 2 bytes).
pub fn outbound(max_bytes: usize) -> (Outbound, OutboundQueue) {
    let (tx, rx) = mpsc::unbounded_channel();
    let shared = Arc::new(Shared {
        queued_bytes: AtomicUsize::new(0),
        max_bytes,
        close: OnceLock::new(),
        closing: CancellationToken::new(),
    });
    (Outbound { tx, shared: shared.clone() }, OutboundQueue { rx, shared })
}

impl Outbound {
    /// Queues a frame unless that would pass the byte bound.
    pub fn push(&self, frame: OutFrame) -> Result<(), PushError> {
        if self.shared.close.get().is_some() {
            return Err(PushError::Closed);
        }
        let len = frame.bytes.len();
        let before = self.shared.queued_bytes.fetch_add(len, Ordering::Relaxed);
        if before + len > self.shared.max_bytes {
            self.shared.queued_bytes.fetch_sub(len, Ordering::Relaxed);
            return Err(PushError::Full);
        }
        self.tx.send(frame).map_err(|_| {
            self.shared.queued_bytes.fetch_sub(len, Ordering::Relaxed);
            PushError::Closed
        })
    }

    /// Asks the writer to close the connection. The first request wins;
    /// returns whether this one did.
    pub fn close(&self, close: Close) -> bool {
        let won = self.shared.close.set(close).is_ok();
        if won {
            self.shared.closing.cancel();
        }
        won
    }

    /// How the connection is closing, once that has been decided.
    pub fn closing(&self) -> Option<Close> {
        self.shared.close.get().copied()
    }

    /// Resolves once a close has been requested.
    pub async fn closed(&self) {
        self.shared.closing.cancelled().await
    }

    /// Bytes waiting in the queue.
    pub fn queued_bytes(&self) -> usize {
        self.shared.queued_bytes.load(Ordering::Relaxed)
    }
}

impl OutboundQueue {
    /// Waits for frames and moves up to `limit` of them into `batch`.
    /// Returns 0 once every [`Outbound`] is gone.
    pub async fn recv_many(&mut self, batch: &mut Vec<OutFrame>, limit: usize) -> usize {
        let n = self.rx.recv_many(batch, limit).await;
        let bytes: usize = batch[batch.len() - n..].iter().map(|f| f.bytes.len()).sum();
        self.shared.queued_bytes.fetch_sub(bytes, Ordering::Relaxed);
        n
    }

    /// Resolves once a close has been requested. Owns what it waits on, so
    /// it can sit in a `select!` beside [`OutboundQueue::recv_many`].
    pub fn closing(&self) -> impl Future<Output = ()> + Send + 'static {
        self.shared.closing.clone().cancelled_owned()
    }

    pub fn close(&self) -> Option<Close> {
        self.shared.close.get().copied()
    }

    /// Asks for a close from the writer's side (e.g. a heartbeat timeout).
    /// The first request wins; returns whether this one did.
    pub fn request_close(&self, close: Close) -> bool {
        let won = self.shared.close.set(close).is_ok();
        if won {
            self.shared.closing.cancel();
        }
        won
    }

    /// Takes whatever is queued already, without waiting.
    pub fn take_queued(&mut self, batch: &mut Vec<OutFrame>, limit: usize) {
        while batch.len() < limit {
            match self.rx.try_recv() {
                Ok(frame) => {
                    self.shared.queued_bytes.fetch_sub(frame.bytes.len(), Ordering::Relaxed);
                    batch.push(frame);
                }
                Err(_) => break,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(n: usize) -> OutFrame {
        OutFrame::control(Bytes::from(vec![0u8; n]))
    }

    #[tokio::test]
    async fn bounded_by_bytes_and_drained() {
        let (tx, mut rx) = outbound(100);
        tx.push(frame(60)).unwrap();
        assert_eq!(tx.push(frame(50)), Err(PushError::Full));
        tx.push(frame(40)).unwrap();
        assert_eq!(tx.queued_bytes(), 100);
        let mut batch = Vec::new();
        assert_eq!(rx.recv_many(&mut batch, 10).await, 2);
        assert_eq!(tx.queued_bytes(), 0);
        tx.push(frame(50)).unwrap();
    }

    #[tokio::test]
    async fn first_close_wins_and_stops_pushes() {
        let (tx, rx) = outbound(100);
        assert!(tx.close(Close::Server(CloseCode::SlowConsumer)));
        assert!(!tx.close(Close::Server(CloseCode::GoingAway)));
        rx.closing().await;
        assert_eq!(rx.close(), Some(Close::Server(CloseCode::SlowConsumer)));
        assert_eq!(tx.push(frame(1)), Err(PushError::Closed));
    }
}

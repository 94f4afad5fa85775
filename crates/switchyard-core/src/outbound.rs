//! A connection's outbound queue: bounded in bytes, filled without waiting
//! (fan-out never waits on a socket), drained by the connection's one writer.
//!
//! The queue holds complete WebSocket frames. It also carries the request to
//! close the connection, so that whoever decides to close (the hub on a slow
//! consumer, the reader on bad input, the drain on shutdown) goes through the
//! one writer that owns the socket.

use crate::codes::CloseCode;
use bytes::Bytes;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use tokio::sync::Notify;
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
    /// The server closes, and its `disconnect` push (with a reason of its
    /// own) is queued already: only the close frame follows.
    Announced(CloseCode),
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
    /// Frames waiting, oldest first. A plain deque under a short lock (never
    /// held across an await) rather than a channel: it allocates nothing
    /// until the first frame, which matters for idle connections.
    frames: Mutex<VecDeque<OutFrame>>,
    /// Wakes the writer when frames arrive in an empty queue, or when the
    /// last filling end goes away.
    ready: Notify,
    queued_bytes: AtomicUsize,
    max_bytes: usize,
    /// Filling ends alive; the writer stops once it is 0 and the queue is empty.
    senders: AtomicUsize,
    /// Set when the draining end is gone: pushes are refused.
    receiver_gone: AtomicBool,
    close: OnceLock<Close>,
    closing: CancellationToken,
}

impl Shared {
    fn frames(&self) -> MutexGuard<'_, VecDeque<OutFrame>> {
        // A panic while holding this lock leaves a valid deque behind.
        self.frames.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The filling end: cheap to clone, held by the hub and the session.
pub struct Outbound {
    shared: Arc<Shared>,
}

/// The draining end, owned by the connection's writer.
pub struct OutboundQueue {
    shared: Arc<Shared>,
}

/// Above this many slots, a drained deque gives its memory back (a burst
/// should not leave an idle connection holding it).
const KEEP_CAPACITY: usize = 1024;

/// A queue that holds at most `max_bytes` of frames.
pub fn outbound(max_bytes: usize) -> (Outbound, OutboundQueue) {
    let shared = Arc::new(Shared {
        frames: Mutex::new(VecDeque::new()),
        ready: Notify::new(),
        queued_bytes: AtomicUsize::new(0),
        max_bytes,
        senders: AtomicUsize::new(1),
        receiver_gone: AtomicBool::new(false),
        close: OnceLock::new(),
        closing: CancellationToken::new(),
    });
    (Outbound { shared: shared.clone() }, OutboundQueue { shared })
}

impl Clone for Outbound {
    fn clone(&self) -> Self {
        self.shared.senders.fetch_add(1, Ordering::Relaxed);
        Outbound { shared: self.shared.clone() }
    }
}

impl Drop for Outbound {
    fn drop(&mut self) {
        if self.shared.senders.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.shared.ready.notify_one();
        }
    }
}

impl Outbound {
    /// Queues a frame unless that would pass the byte bound.
    pub fn push(&self, frame: OutFrame) -> Result<(), PushError> {
        if self.shared.close.get().is_some() || self.shared.receiver_gone.load(Ordering::Relaxed) {
            return Err(PushError::Closed);
        }
        let len = frame.bytes.len();
        let before = self.shared.queued_bytes.fetch_add(len, Ordering::Relaxed);
        if before + len > self.shared.max_bytes {
            self.shared.queued_bytes.fetch_sub(len, Ordering::Relaxed);
            return Err(PushError::Full);
        }
        let was_empty = {
            let mut frames = self.shared.frames();
            let was_empty = frames.is_empty();
            frames.push_back(frame);
            was_empty
        };
        // A non-empty queue has had its wake-up already: the writer takes
        // everything that is queued when it runs.
        if was_empty {
            self.shared.ready.notify_one();
        }
        Ok(())
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
    /// Returns 0 once every [`Outbound`] is gone and nothing is queued.
    /// Cancel-safe: frames are only taken once the wait is over.
    pub async fn recv_many(&mut self, batch: &mut Vec<OutFrame>, limit: usize) -> usize {
        loop {
            let n = self.take_queued(batch, limit);
            if n > 0 {
                return n;
            }
            if self.shared.senders.load(Ordering::Acquire) == 0 {
                // The last sender may have pushed right before it went.
                return self.take_queued(batch, limit);
            }
            self.shared.ready.notified().await;
        }
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

    /// Moves up to `limit` queued frames into `batch` without waiting;
    /// returns how many.
    pub fn take_queued(&mut self, batch: &mut Vec<OutFrame>, limit: usize) -> usize {
        let mut frames = self.shared.frames();
        let n = frames.len().min(limit);
        if n == 0 {
            return 0;
        }
        let before = batch.len();
        batch.extend(frames.drain(..n));
        if frames.is_empty() && frames.capacity() > KEEP_CAPACITY {
            *frames = VecDeque::new();
        }
        drop(frames);
        let bytes: usize = batch[before..].iter().map(|f| f.bytes.len()).sum();
        self.shared.queued_bytes.fetch_sub(bytes, Ordering::Relaxed);
        n
    }
}

impl Drop for OutboundQueue {
    fn drop(&mut self) {
        self.shared.receiver_gone.store(true, Ordering::Relaxed);
        // Frames (and the publications they share) are freed now, not when
        // the last hub entry lets go of its sender.
        let dropped = std::mem::take(&mut *self.shared.frames());
        drop(dropped);
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

    #[tokio::test]
    async fn writer_wakes_for_frames_and_ends_after_the_last_sender() {
        let (tx, mut rx) = outbound(1000);
        let second = tx.clone();
        let writer = tokio::spawn(async move {
            let mut got = Vec::new();
            while rx.recv_many(&mut got, 2).await > 0 {}
            got.len()
        });
        for _ in 0..5 {
            tx.push(frame(10)).unwrap();
            tokio::task::yield_now().await;
        }
        drop(tx);
        second.push(frame(10)).unwrap();
        drop(second);
        assert_eq!(writer.await.unwrap(), 6);
    }

    #[tokio::test]
    async fn pushes_are_refused_once_the_writer_is_gone() {
        let (tx, rx) = outbound(1000);
        tx.push(frame(10)).unwrap();
        drop(rx);
        assert_eq!(tx.push(frame(10)), Err(PushError::Closed));
    }
}

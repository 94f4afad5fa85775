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
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::task::{Context, Poll, Waker};
use tokio::sync::Notify;

/// A frame waiting to be written. One pointer: a publication's frame is
/// made once and every subscriber's queue holds a reference to it, so a
/// queue's slots stay small (fan-out writes one slot per subscriber, and
/// the writer reads it back, on every publication).
#[derive(Debug, Clone)]
pub struct OutFrame(Arc<FrameData>);

#[derive(Debug)]
struct FrameData {
    /// The whole frame, header included.
    bytes: Bytes,
    /// For publications: when it was published (µs since the Unix epoch),
    /// for the delivery latency metric; 0 for anything else.
    published_at_us: u64,
    /// A reply to the client's own request (or a push its session makes):
    /// counted against the queue's reply budget, not the publications'.
    reply: bool,
}

impl OutFrame {
    /// A frame that is not a publication (a reply, a ping, a close).
    pub fn control(bytes: Bytes) -> Self {
        Self::publication(bytes, 0)
    }

    /// A publication's frame, published at `published_at_us`.
    pub fn publication(bytes: Bytes, published_at_us: u64) -> Self {
        OutFrame(Arc::new(FrameData { bytes, published_at_us, reply: false }))
    }

    /// A frame the client's session made for it (a reply, a push, what a
    /// recovery replays): queued within the reply budget, so that a large
    /// answer the client asked for is never taken for a slow reader.
    pub fn reply(bytes: Bytes) -> Self {
        OutFrame(Arc::new(FrameData { bytes, published_at_us: 0, reply: true }))
    }

    /// Whether this frame counts against the reply budget.
    pub fn is_reply(&self) -> bool {
        self.0.reply
    }

    /// The whole frame, header included.
    pub fn bytes(&self) -> &Bytes {
        &self.0.bytes
    }

    /// When the publication was published (µs since the Unix epoch); 0
    /// for frames that are not publications.
    pub fn published_at_us(&self) -> u64 {
        self.0.published_at_us
    }

    pub fn len(&self) -> usize {
        self.0.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.bytes.is_empty()
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

/// The frames waiting, their size in bytes, and the writer waiting for
/// them, under one lock: a push then costs the lock and nothing else
/// shared, and finding the queue empty and registering is one lock.
struct Queue {
    frames: VecDeque<OutFrame>,
    /// Bytes of frames that are not replies (publications, pings).
    bytes: usize,
    /// Bytes of replies.
    reply_bytes: usize,
    /// The writer, waiting for frames or a close (one waiter only). Taken
    /// by whoever wakes it.
    writer: Option<Waker>,
}

impl Queue {
    /// Registers `waker` as the writer's, unless it is registered already.
    fn register(&mut self, waker: &Waker) {
        if !self.writer.as_ref().is_some_and(|w| w.will_wake(waker)) {
            self.writer = Some(waker.clone());
        }
    }
}

struct Shared {
    /// Frames waiting, oldest first. A plain deque under a short lock (never
    /// held across an await) rather than a channel: it allocates nothing
    /// until the first frame, which matters for idle connections.
    queue: Mutex<Queue>,
    max_bytes: usize,
    max_reply_bytes: usize,
    /// Filling ends alive; the writer stops once it is 0 and the queue is empty.
    senders: AtomicUsize,
    /// Set when the draining end is gone: pushes are refused.
    receiver_gone: AtomicBool,
    /// Frames written so far, counted by the writer alone: the heartbeat
    /// reads it to know whether anything but its own pings went out.
    written: AtomicU64,
    close: OnceLock<Close>,
    /// Wakes whoever waits for the close besides the writer (the session's
    /// teardown, the SSE stream).
    closed: Notify,
}

impl Shared {
    fn queue(&self) -> MutexGuard<'_, Queue> {
        // A panic while holding this lock leaves a valid deque behind.
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Wakes the writer if it waits. Taken under the lock it registers
    /// under: a writer registering after this sees what was changed before.
    fn wake_writer(&self) {
        let writer = self.queue().writer.take();
        if let Some(writer) = writer {
            writer.wake();
        }
    }

    fn request_close(&self, close: Close) -> bool {
        let won = self.close.set(close).is_ok();
        if won {
            self.closed.notify_waiters();
            self.wake_writer();
        }
        won
    }

    async fn closed(&self) {
        loop {
            let notified = self.closed.notified();
            tokio::pin!(notified);
            // Registered before the check, so a close in between is not missed.
            notified.as_mut().enable();
            if self.close.get().is_some() {
                return;
            }
            notified.await;
        }
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

/// What the writer is to do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Frames are waiting.
    Frames,
    /// A close was requested; the frames still queued are left for the
    /// close to take or drop.
    Close(Close),
    /// Every filling end is gone and nothing is queued.
    Ended,
}

/// Above this many slots, a drained deque gives its memory back (a burst
/// should not leave an idle connection holding it).
const KEEP_CAPACITY: usize = 1024;

/// A queue that holds at most `max_bytes` of frames, and as much again of
/// replies.
pub fn outbound(max_bytes: usize) -> (Outbound, OutboundQueue) {
    outbound_with_replies(max_bytes, max_bytes)
}

/// A queue that holds at most `max_bytes` of publications (and other
/// frames that are not replies) and, apart, at most `max_reply_bytes` of
/// replies: a slow reader is one that lets publications pile up, never one
/// that asked for a large answer.
pub fn outbound_with_replies(max_bytes: usize, max_reply_bytes: usize) -> (Outbound, OutboundQueue) {
    let shared = Arc::new(Shared {
        queue: Mutex::new(Queue { frames: VecDeque::new(), bytes: 0, reply_bytes: 0, writer: None }),
        max_bytes,
        max_reply_bytes,
        senders: AtomicUsize::new(1),
        receiver_gone: AtomicBool::new(false),
        written: AtomicU64::new(0),
        close: OnceLock::new(),
        closed: Notify::new(),
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
            self.shared.wake_writer();
        }
    }
}

impl Outbound {
    /// Queues a frame unless that would pass its byte bound (the reply
    /// budget for replies, the queue's bound for the rest).
    pub fn push(&self, frame: OutFrame) -> Result<(), PushError> {
        if self.shared.close.get().is_some() || self.shared.receiver_gone.load(Ordering::Relaxed) {
            return Err(PushError::Closed);
        }
        let len = frame.len();
        let writer = {
            let mut queue = self.shared.queue();
            if frame.is_reply() {
                if queue.reply_bytes + len > self.shared.max_reply_bytes {
                    return Err(PushError::Full);
                }
                queue.reply_bytes += len;
            } else {
                if queue.bytes + len > self.shared.max_bytes {
                    return Err(PushError::Full);
                }
                queue.bytes += len;
            }
            // A non-empty queue has had its wake-up already: the writer
            // takes everything that is queued when it runs.
            let writer = if queue.frames.is_empty() { queue.writer.take() } else { None };
            queue.frames.push_back(frame);
            writer
        };
        if let Some(writer) = writer {
            writer.wake();
        }
        Ok(())
    }

    /// Asks the writer to close the connection. The first request wins;
    /// returns whether this one did.
    pub fn close(&self, close: Close) -> bool {
        self.shared.request_close(close)
    }

    /// How the connection is closing, once that has been decided.
    pub fn closing(&self) -> Option<Close> {
        self.shared.close.get().copied()
    }

    /// Resolves once a close has been requested.
    pub async fn closed(&self) {
        self.shared.closed().await
    }

    /// Bytes waiting in the queue, replies included.
    pub fn queued_bytes(&self) -> usize {
        let queue = self.shared.queue();
        queue.bytes + queue.reply_bytes
    }

    /// Frames the writer has written so far.
    pub fn frames_written(&self) -> u64 {
        self.shared.written.load(Ordering::Relaxed)
    }
}

impl OutboundQueue {
    /// Waits for frames and moves up to `limit` of them into `batch`.
    /// Returns 0 once every [`Outbound`] is gone and nothing is queued.
    /// Cancel-safe: frames are only taken once the wait is over.
    pub async fn recv_many(&mut self, batch: &mut Vec<OutFrame>, limit: usize) -> usize {
        std::future::poll_fn(|cx| self.poll_frames(cx, batch, limit)).await
    }

    fn poll_frames(&mut self, cx: &mut Context<'_>, batch: &mut Vec<OutFrame>, limit: usize) -> Poll<usize> {
        {
            let mut queue = self.shared.queue();
            let n = take(&mut queue, batch, limit);
            if n > 0 {
                return Poll::Ready(n);
            }
            // Registered under the lock: a push after this finds the queue
            // empty and wakes this waker; one before was taken.
            queue.register(cx.waker());
        }
        if self.shared.senders.load(Ordering::Acquire) == 0 {
            // The last sender may have pushed right before it went.
            return Poll::Ready(self.take_queued(batch, limit));
        }
        Poll::Pending
    }

    /// Waits until frames are queued or a close is requested, whichever
    /// comes first (a close first, when both are there); takes nothing.
    /// Cancel-safe.
    pub async fn ready(&self) -> Next {
        std::future::poll_fn(|cx| {
            if let Some(close) = self.close() {
                return Poll::Ready(Next::Close(close));
            }
            {
                let mut queue = self.shared.queue();
                if !queue.frames.is_empty() {
                    return Poll::Ready(Next::Frames);
                }
                // Registered under the lock: a push after this finds the
                // queue empty and wakes this waker; one before was seen.
                queue.register(cx.waker());
            }
            // Checked again once registered: a close in between woke nobody.
            if let Some(close) = self.close() {
                return Poll::Ready(Next::Close(close));
            }
            if self.shared.senders.load(Ordering::Acquire) == 0 {
                // The last sender may have pushed right before it went.
                return Poll::Ready(if self.shared.queue().frames.is_empty() { Next::Ended } else { Next::Frames });
            }
            Poll::Pending
        })
        .await
    }

    /// Resolves once a close has been requested. Owns what it waits on, so
    /// it can sit in a `select!` beside [`OutboundQueue::recv_many`].
    pub fn closing(&self) -> impl Future<Output = ()> + Send + 'static {
        let shared = self.shared.clone();
        async move { shared.closed().await }
    }

    pub fn close(&self) -> Option<Close> {
        self.shared.close.get().copied()
    }

    /// Asks for a close from the writer's side (e.g. a heartbeat timeout).
    /// The first request wins; returns whether this one did.
    pub fn request_close(&self, close: Close) -> bool {
        self.shared.request_close(close)
    }

    /// Counts `n` frames written (see [`Outbound::frames_written`]).
    pub fn count_written(&self, n: usize) {
        // The writer is the only one to change it: no read-modify-write.
        let written = self.shared.written.load(Ordering::Relaxed);
        self.shared.written.store(written + n as u64, Ordering::Relaxed);
    }

    /// Moves up to `limit` queued frames into `batch` without waiting;
    /// returns how many.
    pub fn take_queued(&mut self, batch: &mut Vec<OutFrame>, limit: usize) -> usize {
        take(&mut self.shared.queue(), batch, limit)
    }
}

/// Moves up to `limit` frames of `queue` into `batch`; how many.
fn take(queue: &mut Queue, batch: &mut Vec<OutFrame>, limit: usize) -> usize {
    let n = queue.frames.len().min(limit);
    if n == 0 {
        return 0;
    }
    let before = batch.len();
    batch.extend(queue.frames.drain(..n));
    for frame in &batch[before..] {
        if frame.is_reply() {
            queue.reply_bytes -= frame.len();
        } else {
            queue.bytes -= frame.len();
        }
    }
    if queue.frames.is_empty() && queue.frames.capacity() > KEEP_CAPACITY {
        queue.frames = VecDeque::new();
    }
    n
}

impl Drop for OutboundQueue {
    fn drop(&mut self) {
        self.shared.receiver_gone.store(true, Ordering::Relaxed);
        // Frames (and the publications they share) are freed now, not when
        // the last hub entry lets go of its sender.
        let dropped = std::mem::take(&mut self.shared.queue().frames);
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
    async fn replies_have_a_budget_of_their_own() {
        let (tx, mut rx) = outbound_with_replies(100, 300);
        let reply = |n| OutFrame::reply(Bytes::from(vec![0u8; n]));
        // A large answer does not make room short for publications, nor
        // the other way round.
        tx.push(reply(250)).unwrap();
        tx.push(frame(100)).unwrap();
        assert_eq!(tx.push(frame(1)), Err(PushError::Full));
        assert_eq!(tx.push(reply(51)), Err(PushError::Full));
        tx.push(reply(50)).unwrap();
        assert_eq!(tx.queued_bytes(), 400);
        let mut batch = Vec::new();
        assert_eq!(rx.recv_many(&mut batch, 10).await, 3);
        assert_eq!(tx.queued_bytes(), 0);
        tx.push(reply(300)).unwrap();
        tx.push(frame(100)).unwrap();
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

    /// A writer waiting in `ready` on a task of its own; gives back what it
    /// got, and the queue.
    fn waiting_ready(rx: OutboundQueue) -> tokio::task::JoinHandle<(Next, OutboundQueue)> {
        tokio::spawn(async move { (rx.ready().await, rx) })
    }

    #[tokio::test]
    async fn ready_wakes_for_frames_and_closes_and_puts_the_close_first() {
        let (tx, mut rx) = outbound(1000);
        let mut batch = Vec::new();
        tx.push(frame(10)).unwrap();
        assert_eq!(rx.ready().await, Next::Frames);
        assert_eq!(rx.take_queued(&mut batch, 10), 1);
        let waiting = waiting_ready(rx);
        tokio::task::yield_now().await;
        tx.push(frame(10)).unwrap();
        let (got, mut rx) = waiting.await.unwrap();
        assert_eq!(got, Next::Frames);
        assert_eq!(rx.take_queued(&mut batch, 10), 1);
        let waiting = waiting_ready(rx);
        tokio::task::yield_now().await;
        tx.push(frame(10)).unwrap();
        assert!(tx.close(Close::Server(CloseCode::GoingAway)));
        let (got, mut rx) = waiting.await.unwrap();
        // Woken by the push or the close: either way the close comes first,
        // and the frame is still there for it to take.
        assert_eq!(got, Next::Close(Close::Server(CloseCode::GoingAway)));
        batch.clear();
        assert_eq!(rx.take_queued(&mut batch, 10), 1);
        let (tx, rx) = outbound(1000);
        drop(tx);
        assert_eq!(rx.ready().await, Next::Ended);
    }

    #[tokio::test]
    async fn pushes_are_refused_once_the_writer_is_gone() {
        let (tx, rx) = outbound(1000);
        tx.push(frame(10)).unwrap();
        drop(rx);
        assert_eq!(tx.push(frame(10)), Err(PushError::Closed));
    }
}

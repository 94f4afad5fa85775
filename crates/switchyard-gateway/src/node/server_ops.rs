//! What the server does to one client's session on its own (user
//! operations, the refresh timer) or on the client's behalf from elsewhere
//! (an SSE client's command posts), and the session's queue of them:
//! bounded, drained by the session between its frames.
//!
//! Most connections never get one, so the queue costs nothing until used:
//! a channel would allocate its first block of slots with every connection
//! (tokio's: 32 slots, 800 bytes with its state), where an empty deque
//! allocates nothing.

use atomic_waker::AtomicWaker;
use bytes::Bytes;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Poll;
use switchyard_core::codes::CloseCode;
use tokio::sync::{Notify, oneshot};

/// One operation for a session.
#[derive(Debug)]
pub enum ServerOp {
    Subscribe(String),
    Unsubscribe(String),
    Disconnect {
        code: CloseCode,
        reason: String,
    },
    /// The expiry the connect proxy set has come: ask the refresh proxy.
    ProxyRefresh,
    /// Client frames (JSON, as the client sent them) to run in order; the
    /// replies go back on the sender, as JSON (and, as always, into the
    /// outbound queue).
    Commands(Vec<Bytes>, oneshot::Sender<Vec<Bytes>>),
}

/// Why an operation was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpRefused {
    /// The queue holds its bound already.
    Full,
    /// The session is gone.
    Gone,
}

struct Shared {
    ops: Mutex<VecDeque<Box<ServerOp>>>,
    capacity: usize,
    /// The session, waiting for an operation.
    session: AtomicWaker,
    /// Senders waiting for room.
    room: Notify,
    receiver_gone: AtomicBool,
}

impl Shared {
    fn ops(&self) -> MutexGuard<'_, VecDeque<Box<ServerOp>>> {
        self.ops.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Where a session's server operations are sent; cheap to clone.
#[derive(Clone)]
pub struct OpSender {
    shared: Arc<Shared>,
}

/// The session's end.
pub struct OpReceiver {
    shared: Arc<Shared>,
}

/// A queue of at most `capacity` operations.
pub fn op_queue(capacity: usize) -> (OpSender, OpReceiver) {
    let shared = Arc::new(Shared {
        ops: Mutex::new(VecDeque::new()),
        capacity,
        session: AtomicWaker::new(),
        room: Notify::new(),
        receiver_gone: AtomicBool::new(false),
    });
    (OpSender { shared: shared.clone() }, OpReceiver { shared })
}

impl OpSender {
    /// Queues `op` unless the queue is full or the session gone.
    pub fn try_send(&self, op: ServerOp) -> Result<(), OpRefused> {
        self.push(Box::new(op)).map_err(|(refused, _)| refused)
    }

    /// Queues `op`, waiting for room; fails only once the session is gone.
    pub async fn send(&self, op: ServerOp) -> Result<(), OpRefused> {
        let mut op = Box::new(op);
        loop {
            let room = self.shared.room.notified();
            tokio::pin!(room);
            // Registered before trying, so room made in between is not missed.
            room.as_mut().enable();
            match self.push(op) {
                Ok(()) => return Ok(()),
                Err((OpRefused::Gone, _)) => return Err(OpRefused::Gone),
                Err((OpRefused::Full, back)) => op = back,
            }
            room.await;
        }
    }

    fn push(&self, op: Box<ServerOp>) -> Result<(), (OpRefused, Box<ServerOp>)> {
        if self.shared.receiver_gone.load(Ordering::Acquire) {
            return Err((OpRefused::Gone, op));
        }
        {
            let mut ops = self.shared.ops();
            if ops.len() >= self.shared.capacity {
                return Err((OpRefused::Full, op));
            }
            ops.push_back(op);
        }
        self.shared.session.wake();
        Ok(())
    }
}

impl OpReceiver {
    /// The next operation. Cancel-safe.
    pub async fn recv(&mut self) -> Box<ServerOp> {
        std::future::poll_fn(|cx| {
            if let Some(op) = self.take() {
                return Poll::Ready(op);
            }
            self.shared.session.register(cx.waker());
            match self.take() {
                Some(op) => Poll::Ready(op),
                None => Poll::Pending,
            }
        })
        .await
    }

    fn take(&self) -> Option<Box<ServerOp>> {
        let op = self.shared.ops().pop_front();
        if op.is_some() {
            self.shared.room.notify_one();
        }
        op
    }
}

impl Drop for OpReceiver {
    fn drop(&mut self) {
        self.shared.receiver_gone.store(true, Ordering::Release);
        drop(std::mem::take(&mut *self.shared.ops()));
        self.shared.room.notify_waiters();
    }
}

//! Publishes a WebSocket session has handed to the broker and not yet
//! heard back about.
//!
//! A client that publishes a stream of messages would otherwise wait for
//! each one's broker round trip (an `FCALL` on Redis) before the next is
//! read: one publishing connection could not go faster than one
//! publication per round trip, and every publication cost the node a
//! wake-up and a write of its own. Plain publishes (no receipt, no
//! idempotency key, no backend to ask first) are instead handed to the
//! broker in the order they came and answered when the broker has them:
//! several ride one round trip, and the broker's connection writes them
//! together. The answer keeps its meaning (the broker has the
//! publication); answers come in the order the publishes came.
//!
//! Handing over in order: a publish's future is polled once as soon as it
//! is queued, which puts its command in the broker connection's queue
//! (Redis runs one connection's commands in the order it gets them), so
//! publications of one client on one channel keep their order.

use futures_util::stream::{FuturesOrdered, StreamExt as _};
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll};
use switchyard_broker::{BrokerError, StreamPosition};

/// Publishes in flight per session, at most: past it the session waits
/// for the oldest answer before it reads on (the client's socket then
/// fills, as it did when every publish waited).
pub const MAX_IN_FLIGHT: usize = 64;

/// The broker's answer to one publish.
pub struct Answered {
    pub id: u32,
    /// Whether the channel keeps history (the answer then has a position).
    pub history: bool,
    pub result: Result<StreamPosition, BrokerError>,
}

type Publishing = Pin<Box<dyn Future<Output = Answered> + Send>>;

/// A session's publishes in flight, answered in order.
#[derive(Default)]
pub struct InFlight {
    /// Behind a mutex only to make the session `Sync` (its futures are
    /// not); the session owns it and never locks it (`get_mut`).
    publishes: Mutex<FuturesOrdered<Publishing>>,
}

impl InFlight {
    fn publishes(&mut self) -> &mut FuturesOrdered<Publishing> {
        self.publishes.get_mut().unwrap_or_else(|e| e.into_inner())
    }

    pub fn len(&mut self) -> usize {
        self.publishes().len()
    }

    /// Queues one publish (polled by the next [`InFlight::poll_answered`]).
    pub fn push(&mut self, publishing: impl Future<Output = Answered> + Send + 'static) {
        self.publishes().push_back(Box::pin(publishing));
    }

    /// Polls every publish in flight (handing new ones to the broker) and
    /// returns the oldest answer if it came. Pending when there is none to
    /// wait for.
    pub fn poll_answered(&mut self, cx: &mut Context<'_>) -> Poll<Option<Answered>> {
        let publishes = self.publishes();
        if publishes.is_empty() {
            return Poll::Pending;
        }
        publishes.poll_next_unpin(cx)
    }
}

//! Requests this node sent to other nodes and waits on (publish receipts,
//! channel surveys, an SSE client's commands), by request id. The answers
//! come back on this node's own control channel; the control task hands
//! each to the request waiting on it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use switchyard_proto::v1::control::Op;
use tokio::sync::mpsc;

/// Answers buffered per request, at most: a survey of a large cluster
/// waits on one answer per node, and a node never answers twice.
const MAX_ANSWERS: usize = 1024;

#[derive(Default)]
pub struct Requests {
    next: AtomicU64,
    pending: Mutex<HashMap<u64, mpsc::Sender<Op>>>,
}

/// A request in flight; forgotten when dropped.
pub struct Pending<'a> {
    requests: &'a Requests,
    /// Goes into the request's control message; answers carry it back.
    pub id: u64,
    answers: mpsc::Receiver<Op>,
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        self.requests.pending.lock().unwrap_or_else(|e| e.into_inner()).remove(&self.id);
    }
}

impl Requests {
    /// A new request expecting up to `answers` answers.
    pub fn start(&self, answers: usize) -> Pending<'_> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(answers.clamp(1, MAX_ANSWERS));
        self.pending.lock().unwrap_or_else(|e| e.into_inner()).insert(id, tx);
        Pending { requests: self, id, answers: rx }
    }

    /// Hands an answer to the request waiting on it, if it still is.
    pub fn answer(&self, id: u64, answer: Op) {
        let waiter = self.pending.lock().unwrap_or_else(|e| e.into_inner()).get(&id).cloned();
        if let Some(waiter) = waiter {
            let _ = waiter.try_send(answer);
        }
    }
}

impl Pending<'_> {
    /// The answers that came within `timeout`, stopping early once
    /// `expected` came. Each node answers once: how many did not is
    /// `expected` less the answers.
    pub async fn collect(mut self, expected: u64, timeout: Duration) -> Vec<Op> {
        let mut answers = Vec::new();
        let gather = async {
            while (answers.len() as u64) < expected {
                match self.answers.recv().await {
                    Some(answer) => answers.push(answer),
                    None => break,
                }
            }
        };
        // Nodes that do not answer in time are left out.
        let _ = tokio::time::timeout(timeout, gather).await;
        answers
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_proto::v1::ChannelsReply;

    fn reply(id: u64) -> Op {
        Op::ChannelsReply(ChannelsReply { request_id: id, ..Default::default() })
    }

    #[tokio::test(start_paused = true)]
    async fn collects_until_every_answer_came_or_the_deadline() {
        let requests = Requests::default();
        let pending = requests.start(3);
        let id = pending.id;
        requests.answer(id, reply(id));
        requests.answer(id, reply(id));
        requests.answer(id + 1, reply(id + 1)); // another request's: not ours
        let answers = pending.collect(3, Duration::from_secs(1)).await;
        assert_eq!(answers.len(), 2, "the third never came: the deadline ended it");
        // Forgotten once dropped: a late answer goes nowhere.
        requests.answer(id, reply(id));
        assert!(requests.pending.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn stops_as_soon_as_the_expected_answers_came() {
        let requests = Requests::default();
        let pending = requests.start(1);
        requests.answer(pending.id, reply(pending.id));
        let answers = pending.collect(1, Duration::from_secs(3600)).await;
        assert_eq!(answers.len(), 1);
    }
}

//! A stream's writer: the only task that writes to it. Takes frames from
//! the session's outbound queue (the same queue, bounds and slow-consumer
//! policy as a WebSocket's), writes each as one event
//! (`data: <JSON>\n\n`), sends a `ping` frame when the stream was quiet
//! for a ping interval (proxies keep it open, clients see a live server),
//! and ends it with a `disconnect` frame. With `client.write_delay`, it
//! waits for the node's write clock as a WebSocket's writer does, and
//! sends what came meanwhile in the same chunk.

use crate::codec;
use crate::command::liveness::Liveness;
use crate::node::write_clock::WriteClock;
use crate::traffic_tally;
use crate::transport::lifecycle;
use bytes::{BufMut, Bytes, BytesMut};
use std::sync::Arc;
use switchyard_core::config::Config;
use switchyard_core::outbound::{Close, OutFrame, OutboundQueue};
use switchyard_core::protocol::Protocol;
use switchyard_core::wsframe;
use tokio::sync::mpsc;
use tokio::time::{Instant, MissedTickBehavior, interval_at};

/// Frames taken from the queue at once.
const BATCH: usize = lifecycle::WRITE_BATCH;

/// The events of `frames` in one chunk.
fn events(frames: &[OutFrame]) -> Bytes {
    let mut out = BytesMut::new();
    for frame in frames {
        event(&mut out, &wsframe::payload(frame.bytes()));
    }
    out.freeze()
}

/// One event: the JSON has no newline (serde_json writes none), so one
/// `data:` line holds it.
fn event(out: &mut BytesMut, json: &[u8]) {
    out.put_slice(b"data: ");
    out.put_slice(json);
    out.put_slice(b"\n\n");
}

pub async fn run(
    mut queue: OutboundQueue,
    chunks: mpsc::Sender<Bytes>,
    liveness: Arc<Liveness>,
    config: Arc<Config>,
    write_clock: Option<Arc<WriteClock>>,
) {
    let ping_interval = config.client.ping_interval;
    let mut heartbeat = interval_at(Instant::now() + ping_interval, ping_interval);
    heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut batch: Vec<OutFrame> = Vec::new();
    let mut wrote_since_tick = false;
    let closing = queue.closing();
    tokio::pin!(closing);
    loop {
        tokio::select! {
            biased;
            () = &mut closing => break,
            n = queue.recv_many(&mut batch, BATCH) => {
                if n == 0 {
                    return;
                }
                if let Some(clock) = &write_clock {
                    // A close requested meanwhile is seen on the next turn,
                    // after this chunk: what was queued before it goes first.
                    clock.next_tick().await;
                    // Everything queued by the tick, in one chunk: the
                    // queue's byte bound bounds it.
                    queue.take_queued(&mut batch, usize::MAX);
                }
                let sent_at = switchyard_core::clock::unix_micros();
                let chunk = events(&batch);
                let bytes = chunk.len();
                if chunks.send(chunk).await.is_err() {
                    queue.request_close(Close::Dropped);
                    return;
                }
                let oldest = batch.iter().map(OutFrame::published_at_us).filter(|&t| t > 0).min();
                traffic_tally::record_write(batch.len(), bytes, oldest.map(|t| sent_at.saturating_sub(t)));
                batch.clear();
                wrote_since_tick = true;
            }
            _ = heartbeat.tick() => {
                if let Some(close) = lifecycle::expiry(&liveness, Instant::now()) {
                    queue.request_close(close);
                    continue;
                }
                if !wrote_since_tick {
                    let mut out = BytesMut::new();
                    event(&mut out, &wsframe::payload(&codec::ping(Protocol::Json)));
                    if chunks.send(out.freeze()).await.is_err() {
                        queue.request_close(Close::Dropped);
                        return;
                    }
                }
                wrote_since_tick = false;
            }
        }
    }
    let Some(close) = queue.close() else { return };
    batch.clear();
    let Some((_, last)) = lifecycle::last_frames(close, &mut queue, Some(Protocol::Json)) else { return };
    let _ = chunks.send(events(&last)).await;
    // Dropping the sender ends the response: the client sees the stream end.
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use switchyard_core::codes::CloseCode;
    use switchyard_core::outbound::{Outbound, outbound};

    #[test]
    fn a_frame_is_one_event() {
        let frames = [OutFrame::control(wsframe::text(br#"{"pub":{"channel":"a","data":1}}"#))];
        assert_eq!(&events(&frames)[..], b"data: {\"pub\":{\"channel\":\"a\",\"data\":1}}\n\n");
    }

    /// A stream's writer on the write clock `clock` (none: at once), its
    /// queue, and the chunks it sends.
    fn start(clock: Option<Arc<WriteClock>>) -> (Outbound, mpsc::Receiver<Bytes>, tokio::task::JoinHandle<()>) {
        let (tx, rx) = outbound(1 << 20);
        let (chunks, sent) = mpsc::channel(16);
        let writer = tokio::spawn(run(rx, chunks, Arc::new(Liveness::new()), Arc::new(Config::default()), clock));
        (tx, sent, writer)
    }

    /// A write clock, ticking until the test ends.
    fn ticking(period: Duration) -> Arc<WriteClock> {
        let clock = WriteClock::new(period);
        tokio::spawn(clock.clone().run(tokio_util::sync::CancellationToken::new()));
        clock
    }

    /// Queues the JSON `json` and lets the writer run as far as it can
    /// (the clock is paused: no time passes).
    async fn queue(tx: &Outbound, json: &'static str) {
        tx.push(OutFrame::control(wsframe::text(json.as_bytes()))).unwrap();
        settle().await;
    }

    async fn settle() {
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    }

    async fn pass(ms: u64) {
        tokio::time::advance(Duration::from_millis(ms)).await;
        settle().await;
    }

    #[tokio::test(start_paused = true)]
    async fn without_a_delay_each_frame_is_sent_when_it_comes() {
        let (tx, mut sent, _writer) = start(None);
        queue(&tx, "1").await;
        queue(&tx, "2").await;
        assert_eq!(&sent.try_recv().unwrap()[..], b"data: 1\n\n");
        assert_eq!(&sent.try_recv().unwrap()[..], b"data: 2\n\n");
    }

    #[tokio::test(start_paused = true)]
    async fn a_write_delay_sends_what_comes_meanwhile_in_one_chunk() {
        let (tx, mut sent, _writer) = start(Some(ticking(Duration::from_millis(10))));
        queue(&tx, "1").await;
        pass(5).await;
        assert!(sent.try_recv().is_err(), "nothing is sent before the tick");
        queue(&tx, "2").await;
        pass(5).await;
        assert_eq!(&sent.try_recv().unwrap()[..], b"data: 1\n\ndata: 2\n\n");
        assert!(sent.try_recv().is_err(), "both went in the one chunk");
    }

    #[tokio::test(start_paused = true)]
    async fn a_close_during_the_delay_still_sends_what_was_queued_first() {
        let (tx, mut sent, writer) = start(Some(ticking(Duration::from_millis(10))));
        queue(&tx, "1").await;
        tx.close(Close::Server(CloseCode::GoingAway));
        writer.await.unwrap();
        let mut all = Vec::new();
        while let Ok(chunk) = sent.try_recv() {
            all.extend_from_slice(&chunk);
        }
        let all = String::from_utf8(all).unwrap();
        assert!(all.starts_with("data: 1\n\n"), "the queued frame goes first: {all}");
        let code = CloseCode::GoingAway.code().to_string();
        assert!(all.contains("\"disconnect\"") && all.contains(&code), "then the disconnect: {all}");
    }
}

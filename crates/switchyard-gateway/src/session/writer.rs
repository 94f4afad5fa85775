//! The one writer of a connection: drains the outbound queue into vectored
//! writes, sends heartbeats, and writes the close.

use super::liveness::Liveness;
use crate::codec;
use metrics::{Counter, Histogram};
use std::io::IoSlice;
use std::sync::Arc;
use switchyard_core::clock::unix_micros;
use switchyard_core::codes::CloseCode;
use switchyard_core::config::Config;
use switchyard_core::metric;
use switchyard_core::outbound::{Close, OutFrame, OutboundQueue};
use switchyard_core::protocol::Protocol;
use switchyard_core::wsframe;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::time::{Duration, Instant, MissedTickBehavior, interval_at};

/// Frames taken from the queue per write.
const BATCH: usize = 256;
/// Most slices per `writev` (Linux' IOV_MAX is 1024).
const MAX_SLICES: usize = 512;
/// A batch of frames up to this size in all is copied into one buffer and
/// sent with one `write`: for small frames the kernel's cost per `writev`
/// segment is more than the copy. Larger batches go by `writev` of the
/// frames as they are.
const COPY_UP_TO: usize = 64 * 1024;
/// Batches written back to back after a wake-up before the writer looks at
/// its timers and the close again.
const DRAIN_ROUNDS: usize = 8;

/// `protocol` is None for echo connections: they get no `ping` messages
/// and no `disconnect` push, only WebSocket frames.
pub async fn run<W>(
    mut io: W,
    mut queue: OutboundQueue,
    protocol: Option<Protocol>,
    liveness: Arc<Liveness>,
    config: Arc<Config>,
) where
    W: AsyncWrite + Unpin,
{
    let ping_interval = config.client.ping_interval;
    let silence_limit = ping_interval + config.client.pong_timeout;
    let mut heartbeat = interval_at(Instant::now() + ping_interval, ping_interval);
    heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
    // Grows with the first frames; an idle connection keeps it small.
    let mut batch: Vec<OutFrame> = Vec::new();
    let sent = Sent::new();
    let mut wrote_since_tick = false;
    let connect_deadline = tokio::time::sleep(config.client.connect_timeout);
    tokio::pin!(connect_deadline);
    let mut awaiting_connect = !liveness.is_connected();
    // Far off until a token sets it (`Liveness::expire_at`).
    let expiry = tokio::time::sleep(Duration::from_secs(365 * 24 * 3600));
    tokio::pin!(expiry);
    // Made once and re-armed only when they fire: a fresh waiter per wake-up
    // would take the token's and the notifier's locks on every batch.
    let closing = queue.closing();
    tokio::pin!(closing);
    let expiry_changed = liveness.expiry_changed();
    tokio::pin!(expiry_changed);
    loop {
        tokio::select! {
            biased;
            () = &mut closing => break,
            () = &mut expiry_changed => {
                expiry_changed.set(liveness.expiry_changed());
                if let Some(at) = liveness.expires_at() {
                    expiry.as_mut().reset(at);
                }
            }
            () = &mut expiry => {
                match liveness.expires_at() {
                    Some(at) if at > Instant::now() => expiry.as_mut().reset(at),
                    Some(_) => {
                        metric::token_expirations().increment(1);
                        queue.request_close(Close::Server(CloseCode::Unauthorized));
                    }
                    None => expiry.as_mut().reset(Instant::now() + Duration::from_secs(365 * 24 * 3600)),
                }
            }
            () = &mut connect_deadline, if awaiting_connect => {
                awaiting_connect = false;
                if !liveness.is_connected() {
                    // Opened a WebSocket and said nothing: do not hold a place for it.
                    metric::connect_timeouts().increment(1);
                    queue.request_close(Close::Server(CloseCode::Unauthorized));
                }
            }
            n = queue.recv_many(&mut batch, BATCH) => {
                if n == 0 {
                    return;
                }
                if write_batch(&mut io, &batch, &sent).await.is_err() {
                    return;
                }
                batch.clear();
                // What came while writing goes now, without a wake-up (a few
                // rounds at most: heartbeats, expiry and closes are seen
                // between them).
                let mut rounds = 0;
                while rounds < DRAIN_ROUNDS && queue.take_queued(&mut batch, BATCH) > 0 {
                    rounds += 1;
                    if write_batch(&mut io, &batch, &sent).await.is_err() {
                        return;
                    }
                    batch.clear();
                }
                wrote_since_tick = true;
            }
            _ = heartbeat.tick() => {
                if liveness.silent_for() > silence_limit {
                    metric::heartbeat_timeouts().increment(1);
                    // Lost if another close won first; that one is then written.
                    queue.request_close(Close::Server(CloseCode::HeartbeatTimeout));
                    continue;
                }
                batch.push(OutFrame::control(wsframe::control(wsframe::OPCODE_PING, b"")));
                if !wrote_since_tick && let Some(protocol) = protocol {
                    // Browsers cannot see WebSocket pings: tell them we are alive.
                    batch.push(OutFrame::control(codec::ping(protocol)));
                }
                if write_batch(&mut io, &batch, &sent).await.is_err() {
                    return;
                }
                batch.clear();
                wrote_since_tick = false;
            }
        }
    }
    let close = queue.close().expect("the loop ends on a close");
    batch.clear();
    match close {
        Close::Server(code) | Close::Announced(code) => {
            if code != CloseCode::SlowConsumer || matches!(close, Close::Announced(_)) {
                // What was queued before the close still goes out first
                // (with an announced close, its `disconnect` push); a slow
                // consumer's backlog is dropped.
                queue.take_queued(&mut batch, usize::MAX);
            }
            if let Some(protocol) = protocol
                && matches!(close, Close::Server(_))
            {
                batch.push(OutFrame::control(codec::disconnect(protocol, code)));
            }
            batch.push(OutFrame::control(wsframe::close(code.code(), code.reason())));
        }
        Close::Peer(code) => {
            let echo = match code {
                Some(code) => wsframe::close(code, ""),
                None => wsframe::frame(wsframe::OPCODE_CLOSE, b""),
            };
            batch.push(OutFrame::control(echo));
        }
        Close::Dropped => return,
    }
    if write_batch(&mut io, &batch, &sent).await.is_ok() {
        let _ = io.shutdown().await;
    }
}

/// What a writer counts, looked up once per connection rather than per write.
struct Sent {
    messages: Counter,
    bytes: Counter,
    latency: Histogram,
}

impl Sent {
    fn new() -> Self {
        Sent { messages: metric::messages_sent(), bytes: metric::bytes_sent(), latency: metric::delivery_latency() }
    }
}

/// Writes every frame of `batch`, in order, in as few syscalls as the socket
/// allows; then records what was sent.
async fn write_batch<W: AsyncWrite + Unpin>(io: &mut W, batch: &[OutFrame], sent: &Sent) -> std::io::Result<()> {
    let total: usize = batch.iter().map(|f| f.bytes.len()).sum();
    if batch.len() > 1 && total <= COPY_UP_TO {
        let mut buffer = Vec::with_capacity(total);
        for frame in batch {
            buffer.extend_from_slice(&frame.bytes);
        }
        io.write_all(&buffer).await?;
    } else {
        write_vectored(io, batch).await?;
    }
    io.flush().await?;
    sent.messages.increment(batch.len() as u64);
    metric::MESSAGES_OUT.fetch_add(batch.len() as u64, std::sync::atomic::Ordering::Relaxed);
    sent.bytes.increment(total as u64);
    // One sample per write, for its oldest publication: the others in the
    // same write waited less. Recording every delivery would cost more than
    // the delivery itself at high fan-out.
    if let Some(oldest) = batch.iter().map(|f| f.published_at_us).filter(|&t| t > 0).min() {
        sent.latency.record(unix_micros().saturating_sub(oldest) as f64 / 1e6);
    }
    Ok(())
}

/// Writes every frame of `batch`, in order, by `writev` of the frames.
async fn write_vectored<W: AsyncWrite + Unpin>(io: &mut W, batch: &[OutFrame]) -> std::io::Result<()> {
    // The frame not yet fully written, and how much of it is.
    let (mut index, mut offset) = (0, 0);
    while index < batch.len() {
        let end = batch.len().min(index + MAX_SLICES);
        let slices: Vec<IoSlice<'_>> = std::iter::once(&batch[index].bytes[offset..])
            .chain(batch[index + 1..end].iter().map(|f| &f.bytes[..]))
            .map(IoSlice::new)
            .collect();
        let mut written = io.write_vectored(&slices).await?;
        if written == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        while written > 0 {
            let left = batch[index].bytes.len() - offset;
            if written >= left {
                written -= left;
                index += 1;
                offset = 0;
            } else {
                offset += written;
                written = 0;
            }
        }
    }
    Ok(())
}

//! The one writer of a connection: drains the outbound queue into as few
//! writes as it can, and writes the close. It waits on the queue alone: the
//! heartbeat and the other timed duties push their frames into the queue
//! from the session task ([`super::timers`]).
//!
//! A batch is gathered and copied in its worker thread's scratch buffers
//! and written at once without waiting; only what the socket did not take
//! is copied out and awaited. So a writer between batches holds no buffer:
//! an idle connection costs its task and nothing more.

use crate::node::write_clock::WriteClock;
use crate::traffic_tally;
use crate::transport::lifecycle;
use std::cell::RefCell;
use std::io::IoSlice;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use switchyard_core::clock::unix_micros;
use switchyard_core::outbound::{Close, Next, OutFrame, OutboundQueue};
use switchyard_core::protocol::Protocol;
use switchyard_core::wsframe;
use tokio::io::{AsyncWrite, AsyncWriteExt};

/// Frames taken from the queue per write.
const BATCH: usize = lifecycle::WRITE_BATCH;
/// Most slices per `writev` (Linux' IOV_MAX is 1024).
const MAX_SLICES: usize = 512;
/// A batch of frames up to this size in all is copied into one buffer and
/// sent with one `write`: for small frames the kernel's cost per `writev`
/// segment is more than the copy. Larger batches go by `writev` of the
/// frames as they are.
const COPY_UP_TO: usize = 64 * 1024;
/// Batches written back to back after a tick of the write clock, at most,
/// before the writer waits again. What comes while a batch is written
/// goes without another wait. The number is a bound, not a tuned value:
/// the writer is back at the queue's lock between rounds anyway, and what
/// the bound buys is that a writer whose queue never empties gives its
/// worker thread up after at most nine batches of [`BATCH`] (the first and
/// eight that came meanwhile).
const DRAIN_ROUNDS: usize = 9;

/// A worker thread's buffers for gathering a batch. Borrowed only while a
/// batch is taken and tried, never across an await.
struct Scratch {
    frames: Vec<OutFrame>,
    bytes: Vec<u8>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = const { RefCell::new(Scratch { frames: Vec::new(), bytes: Vec::new() }) };
}

/// `protocol` is None for echo connections: they get no `disconnect`
/// push, only WebSocket frames. With a `write_clock` (`client.write_delay`),
/// the writer waits for its next tick once frames are there.
pub async fn run<W>(
    mut io: W,
    mut queue: OutboundQueue,
    protocol: Option<Protocol>,
    write_clock: Option<Arc<WriteClock>>,
) where
    W: AsyncWrite + Unpin,
{
    let close = loop {
        match (queue.ready().await, &write_clock) {
            (Next::Frames, None) => {
                // One batch per wake-up: what comes while writing is seen
                // by the next `ready`, which locks the queue anyway.
                if write_queued(&mut io, &mut queue).await.is_err() {
                    return;
                }
            }
            (Next::Frames, Some(clock)) => {
                // A close requested meanwhile is seen after the wait, by
                // the rounds below and the next `ready`.
                clock.next_tick().await;
                // What comes while writing goes too, without waiting again
                // (a few rounds at most; a close is seen between them).
                for _ in 0..DRAIN_ROUNDS {
                    match write_queued(&mut io, &mut queue).await {
                        Ok(true) if queue.close().is_none() => {}
                        Ok(_) => break,
                        Err(_) => return,
                    }
                }
            }
            (Next::Close(close), _) => break close,
            (Next::Ended, _) => return,
        }
    };
    let last = match close {
        Close::Peer(code) => {
            let echo = match code {
                Some(code) => wsframe::close(code, ""),
                None => wsframe::frame(wsframe::OPCODE_CLOSE, b""),
            };
            vec![OutFrame::control(echo)]
        }
        close => {
            let Some((code, mut last)) = lifecycle::last_frames(close, &mut queue, protocol) else { return };
            // Pusher clients act on the close code by Pusher's classes.
            let number = match protocol {
                Some(Protocol::Pusher) => switchyard_core::pusher::close_code(code),
                _ => code.code(),
            };
            last.push(OutFrame::control(wsframe::close(number, code.reason())));
            last
        }
    };
    let counted = Counted::of(&last);
    let bytes: Vec<u8> = last.iter().flat_map(|f| f.bytes().iter().copied()).collect();
    if io.write_all(&bytes).await.is_ok() && io.flush().await.is_ok() {
        counted.record();
        let _ = io.shutdown().await;
    }
}

/// The frames, bytes and oldest publication of one write.
struct Counted {
    frames: usize,
    bytes: usize,
    oldest_published_us: Option<u64>,
}

impl Counted {
    fn of(frames: &[OutFrame]) -> Self {
        Counted {
            frames: frames.len(),
            bytes: frames.iter().map(OutFrame::len).sum(),
            oldest_published_us: frames.iter().map(OutFrame::published_at_us).filter(|&t| t > 0).min(),
        }
    }

    /// Counts the write. One latency sample per write, for its oldest
    /// publication: the others in the same write waited less. Recording
    /// every delivery would cost more than the delivery itself at high
    /// fan-out.
    fn record(&self) {
        let latency_us = self.oldest_published_us.map(|oldest| unix_micros().saturating_sub(oldest));
        traffic_tally::record_write(self.frames, self.bytes, latency_us);
    }
}

/// What is left of a batch after its first try.
enum Rest {
    Nothing,
    /// The end of the copied batch, which the socket did not take.
    Bytes(Vec<u8>),
    /// A batch too large to copy, to go by `writev`.
    Frames(Vec<OutFrame>),
}

/// Writes one batch of what is queued; false if nothing was.
async fn write_queued<W: AsyncWrite + Unpin>(io: &mut W, queue: &mut OutboundQueue) -> std::io::Result<bool> {
    let Some((counted, rest)) = take_and_try(io, queue)? else { return Ok(false) };
    match rest {
        Rest::Nothing => {}
        Rest::Bytes(bytes) => io.write_all(&bytes).await?,
        Rest::Frames(frames) => write_vectored(io, &frames).await?,
    }
    io.flush().await?;
    queue.count_written(counted.frames);
    counted.record();
    Ok(true)
}

/// Takes a batch from the queue into the thread's scratch buffers and, if
/// it is small enough to copy, writes it once without waiting.
fn take_and_try<W: AsyncWrite + Unpin>(
    io: &mut W,
    queue: &mut OutboundQueue,
) -> std::io::Result<Option<(Counted, Rest)>> {
    SCRATCH.with_borrow_mut(|scratch| {
        let Scratch { frames, bytes } = scratch;
        if queue.take_queued(frames, BATCH) == 0 {
            return Ok(None);
        }
        let counted = Counted::of(frames);
        if counted.bytes > COPY_UP_TO {
            return Ok(Some((counted, Rest::Frames(std::mem::take(frames)))));
        }
        bytes.clear();
        for frame in frames.drain(..) {
            bytes.extend_from_slice(frame.bytes());
        }
        let written = write_now(io, bytes)?;
        let rest = if written < bytes.len() { Rest::Bytes(bytes[written..].to_vec()) } else { Rest::Nothing };
        Ok(Some((counted, rest)))
    })
}

/// One write of `buf`, without waiting: how much the stream took (0 if it
/// would have to wait; the caller's next await registers its waker then).
fn write_now<W: AsyncWrite + Unpin>(io: &mut W, buf: &[u8]) -> std::io::Result<usize> {
    let mut cx = Context::from_waker(Waker::noop());
    match Pin::new(io).poll_write(&mut cx, buf) {
        Poll::Ready(Ok(0)) if !buf.is_empty() => Err(std::io::ErrorKind::WriteZero.into()),
        Poll::Ready(result) => result,
        Poll::Pending => Ok(0),
    }
}

/// Writes every frame of `batch`, in order, by `writev` of the frames.
async fn write_vectored<W: AsyncWrite + Unpin>(io: &mut W, batch: &[OutFrame]) -> std::io::Result<()> {
    // The frame not yet fully written, and how much of it is.
    let (mut index, mut offset) = (0, 0);
    while index < batch.len() {
        let end = batch.len().min(index + MAX_SLICES);
        let slices: Vec<IoSlice<'_>> = std::iter::once(&batch[index].bytes()[offset..])
            .chain(batch[index + 1..end].iter().map(|f| &f.bytes()[..]))
            .map(IoSlice::new)
            .collect();
        let mut written = io.write_vectored(&slices).await?;
        if written == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        while written > 0 {
            let left = batch[index].len() - offset;
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

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use std::sync::Mutex;
    use std::time::Duration;
    use switchyard_core::codes::CloseCode;
    use switchyard_core::outbound::{Outbound, outbound};
    use tokio_util::sync::CancellationToken;

    /// A socket that takes everything and keeps each write apart.
    #[derive(Clone, Default)]
    struct Writes(Arc<Mutex<Vec<Vec<u8>>>>);

    impl Writes {
        fn taken(&self) -> Vec<Vec<u8>> {
            self.0.lock().unwrap().clone()
        }
    }

    impl AsyncWrite for Writes {
        fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
            self.0.lock().unwrap().push(buf.to_vec());
            Poll::Ready(Ok(buf.len()))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    fn frame(text: &'static str) -> OutFrame {
        OutFrame::control(Bytes::from_static(text.as_bytes()))
    }

    /// A writer on a recording socket, with `write_delay` (a write clock of
    /// its own unless it is 0), and its queue.
    fn start(write_delay: Duration) -> (Outbound, Writes, tokio::task::JoinHandle<()>) {
        start_on((!write_delay.is_zero()).then(|| ticking(write_delay)))
    }

    /// A write clock, ticking until the test ends.
    fn ticking(period: Duration) -> Arc<WriteClock> {
        let clock = WriteClock::new(period);
        tokio::spawn(clock.clone().run(CancellationToken::new()));
        clock
    }

    fn start_on(clock: Option<Arc<WriteClock>>) -> (Outbound, Writes, tokio::task::JoinHandle<()>) {
        let (tx, rx) = outbound(1 << 20);
        let writes = Writes::default();
        let writer = tokio::spawn(run(writes.clone(), rx, None, clock));
        (tx, writes, writer)
    }

    /// Lets the writer run as far as it can (the clock is paused: no time passes).
    async fn settle() {
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    }

    /// Queues the frame `text` and lets the writer see it.
    async fn queue(tx: &Outbound, text: &'static str) {
        tx.push(frame(text)).unwrap();
        settle().await;
    }

    /// Lets `ms` milliseconds of the paused clock pass, then settles.
    async fn pass(ms: u64) {
        tokio::time::advance(Duration::from_millis(ms)).await;
        settle().await;
    }

    #[tokio::test(start_paused = true)]
    async fn without_a_delay_each_frame_is_written_when_it_comes() {
        let (tx, writes, _writer) = start(Duration::ZERO);
        queue(&tx, "a").await;
        queue(&tx, "b").await;
        assert_eq!(writes.taken(), vec![b"a".to_vec(), b"b".to_vec()]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_write_delay_gathers_what_comes_meanwhile_into_one_write() {
        let (tx, writes, _writer) = start(Duration::from_millis(10));
        queue(&tx, "a").await;
        pass(5).await;
        assert!(writes.taken().is_empty(), "nothing is written before the delay is over");
        tx.push(frame("b")).unwrap();
        pass(6).await;
        assert_eq!(writes.taken(), vec![b"ab".to_vec()]);
        // The next batch waits its own delay.
        queue(&tx, "c").await;
        assert_eq!(writes.taken().len(), 1);
        pass(10).await;
        assert_eq!(writes.taken(), vec![b"ab".to_vec(), b"c".to_vec()]);
    }

    #[tokio::test(start_paused = true)]
    async fn writers_on_one_clock_write_at_its_tick_however_long_each_waited() {
        let clock = ticking(Duration::from_millis(10));
        let (first, first_writes, _a) = start_on(Some(clock.clone()));
        let (second, second_writes, _b) = start_on(Some(clock));
        queue(&first, "a").await;
        pass(7).await;
        queue(&second, "b").await;
        pass(2).await;
        assert!(first_writes.taken().is_empty() && second_writes.taken().is_empty());
        pass(1).await;
        // The second waited 3 ms of the 10: the tick was already running.
        assert_eq!(first_writes.taken(), vec![b"a".to_vec()]);
        assert_eq!(second_writes.taken(), vec![b"b".to_vec()]);
    }

    #[tokio::test(start_paused = true)]
    async fn after_a_quiet_spell_the_first_frame_waits_the_whole_delay() {
        let (tx, writes, _writer) = start(Duration::from_millis(10));
        queue(&tx, "a").await;
        pass(10).await;
        assert_eq!(writes.taken().len(), 1);
        // Nobody waits: the clock stops after its next tick.
        pass(53).await;
        queue(&tx, "b").await;
        // Had it ticked on, its next tick would be 7 ms away.
        pass(9).await;
        assert_eq!(writes.taken().len(), 1);
        pass(1).await;
        assert_eq!(writes.taken(), vec![b"a".to_vec(), b"b".to_vec()]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_close_during_the_delay_still_writes_what_was_queued_first() {
        let (tx, writes, writer) = start(Duration::from_millis(10));
        queue(&tx, "a").await;
        tx.close(Close::Server(CloseCode::GoingAway));
        tokio::time::advance(Duration::from_millis(10)).await;
        writer.await.unwrap();
        let written: Vec<u8> = writes.taken().concat();
        let close = wsframe::close(CloseCode::GoingAway.code(), CloseCode::GoingAway.reason());
        assert!(written.starts_with(b"a"), "the queued frame goes first");
        assert!(written.ends_with(&close), "then the close frame");
    }
}

//! The one writer of a connection: drains the outbound queue into as few
//! writes as it can, and writes the close. It waits on the queue alone: the
//! heartbeat and the other timed duties push their frames into the queue
//! from the session task ([`super::duties`]).
//!
//! A batch is gathered and copied in its worker thread's scratch buffers
//! and written at once without waiting; only what the socket did not take
//! is copied out and awaited. So a writer between batches holds no buffer:
//! an idle connection costs its task and nothing more.

use crate::codec;
use crate::delivery_tally;
use std::cell::RefCell;
use std::io::IoSlice;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use switchyard_core::clock::unix_micros;
use switchyard_core::codes::CloseCode;
use switchyard_core::outbound::{Close, Next, OutFrame, OutboundQueue};
use switchyard_core::protocol::Protocol;
use switchyard_core::wsframe;
use tokio::io::{AsyncWrite, AsyncWriteExt};

/// Frames taken from the queue per write.
const BATCH: usize = 256;
/// Most slices per `writev` (Linux' IOV_MAX is 1024).
const MAX_SLICES: usize = 512;
/// A batch of frames up to this size in all is copied into one buffer and
/// sent with one `write`: for small frames the kernel's cost per `writev`
/// segment is more than the copy. Larger batches go by `writev` of the
/// frames as they are.
const COPY_UP_TO: usize = 64 * 1024;
/// Batches written back to back after a wake-up, at most, before the
/// writer waits again.
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
/// push, only WebSocket frames.
pub async fn run<W>(mut io: W, mut queue: OutboundQueue, protocol: Option<Protocol>)
where
    W: AsyncWrite + Unpin,
{
    let close = loop {
        match queue.ready().await {
            Next::Frames => {
                // What comes while writing goes too, without a wake-up (a
                // few rounds at most; a close is seen between them).
                for _ in 0..DRAIN_ROUNDS {
                    match write_queued(&mut io, &mut queue).await {
                        Ok(true) if queue.close().is_none() => {}
                        Ok(_) => break,
                        Err(_) => return,
                    }
                }
            }
            Next::Close(close) => break close,
            Next::Ended => return,
        }
    };
    let mut last = Vec::new();
    match close {
        Close::Server(code) | Close::Announced(code) => {
            if code != CloseCode::SlowConsumer || matches!(close, Close::Announced(_)) {
                // What was queued before the close still goes out first
                // (with an announced close, its `disconnect` push); a slow
                // consumer's backlog is dropped.
                queue.take_queued(&mut last, usize::MAX);
            }
            if let Some(protocol) = protocol
                && matches!(close, Close::Server(_))
            {
                last.push(OutFrame::control(codec::disconnect(protocol, code)));
            }
            last.push(OutFrame::control(wsframe::close(code.code(), code.reason())));
        }
        Close::Peer(code) => {
            let echo = match code {
                Some(code) => wsframe::close(code, ""),
                None => wsframe::frame(wsframe::OPCODE_CLOSE, b""),
            };
            last.push(OutFrame::control(echo));
        }
        Close::Dropped => return,
    }
    let counted = Counted::of(&last);
    let bytes: Vec<u8> = last.iter().flat_map(|f| f.bytes.iter().copied()).collect();
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
            bytes: frames.iter().map(|f| f.bytes.len()).sum(),
            oldest_published_us: frames.iter().map(|f| f.published_at_us).filter(|&t| t > 0).min(),
        }
    }

    /// Counts the write. One latency sample per write, for its oldest
    /// publication: the others in the same write waited less. Recording
    /// every delivery would cost more than the delivery itself at high
    /// fan-out.
    fn record(&self) {
        let latency_us = self.oldest_published_us.map(|oldest| unix_micros().saturating_sub(oldest));
        delivery_tally::record_write(self.frames, self.bytes, latency_us);
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
            bytes.extend_from_slice(&frame.bytes);
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

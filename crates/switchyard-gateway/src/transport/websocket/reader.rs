//! Reads frames, reassembles messages and enforces the WebSocket rules above
//! the frame ([`wsread`] checks each frame): the size of a reassembled
//! message, UTF-8 of text, close frame payloads. Runs whole messages, in
//! order, through the connection's handler, and between them the server's
//! operations for this connection.

use super::handler::Handler;
use super::timers::Timers;
use crate::command::liveness::Liveness;
use crate::node::OpReceiver;

use crate::traffic_tally;
use bytes::BytesMut;
use switchyard_core::codes::CloseCode;
use switchyard_core::config::ClientConfig;
use switchyard_core::deflate::{self, InflateError};
use switchyard_core::metric;
use switchyard_core::outbound::{Close, OutFrame};
use switchyard_core::wsframe;
use switchyard_core::wsread::{Frame, FrameError, FrameReader, Opcode};
use tokio::io::AsyncRead;

/// A message being reassembled from fragments.
struct Partial {
    is_text: bool,
    /// Its first frame had RSV1: inflate it once it is whole.
    compressed: bool,
    payload: BytesMut,
}

/// Reads until the connection ends; returns how it ended.
/// Messages run inline, one after the other: while the handler is busy
/// the reader waits, and so does the client's socket (plain publishes are
/// the exception: handed to the broker, they are answered later, between
/// messages, and the reader reads on; `command::in_flight`). A burst of messages
/// runs in one go, so what they publish reaches the writers together.
/// Between them run the server's operations and the connection's timed
/// duties ([`Timers`]).
pub async fn run<R>(
    read: R,
    deflate: bool,
    handler: &mut Handler,
    ops: &mut OpReceiver,
    liveness: &Liveness,
    config: &ClientConfig,
) -> Close
where
    R: AsyncRead + Unpin,
{
    let max_message_size = config.max_message_size;
    let mut frames = FrameReader::new(read, max_message_size).with_deflate(deflate);
    let mut partial: Option<Partial> = None;
    let mut timers = Timers::new(config, liveness);
    let timer = tokio::time::sleep_until(timers.due(liveness));
    tokio::pin!(timer);
    loop {
        // A command or an operation may have moved the token's expiry.
        let due = timers.due(liveness);
        if due != timer.deadline() {
            timer.as_mut().reset(due);
        }
        // `read_frame` is cancel-safe (bytes read stay in its buffer), so an
        // operation may come between two frames, or in the middle of one.
        let read = tokio::select! {
            read = frames.read_frame() => read,
            op = ops.recv() => {
                // Boxed, like every command below: the futures of the
                // commands are large (a proxy call is kilobytes), and held
                // in place they would size every idle connection's task.
                Box::pin(handler.apply(*op)).await;
                continue;
            }
            () = &mut timer => {
                timers.run(tokio::time::Instant::now(), liveness, handler.outbound(), handler.protocol());
                continue;
            }
            // Publishes the broker has now: their answers go out.
            () = std::future::poll_fn(|cx| handler.poll_answered(cx)) => continue,
        };
        let frame = match read {
            Ok(frame) => frame,
            Err(FrameError::Protocol) => return Close::Server(CloseCode::ProtocolError),
            Err(FrameError::TooBig) => return Close::Server(CloseCode::MessageTooBig),
            Err(FrameError::Closed) => return Close::Dropped,
        };
        traffic_tally::record_read(0, frame.payload.len() as u64);
        liveness.touch();
        if handler.is_closing() {
            // A close is under way: wait for the peer's close frame (or the
            // teardown timeout) and run nothing more.
            if frame.opcode == Opcode::Close {
                return peer_close(&frame);
            }
            continue;
        }
        match frame.opcode {
            Opcode::Text | Opcode::Binary => {
                if partial.is_some() {
                    return Close::Server(CloseCode::ProtocolError);
                }
                let is_text = frame.opcode == Opcode::Text;
                if frame.fin {
                    let payload = match message(frame.payload, frame.compressed, max_message_size) {
                        Ok(payload) => payload,
                        Err(close) => return close,
                    };
                    if is_text && is_invalid_utf8(&payload) {
                        return Close::Server(CloseCode::InvalidPayload);
                    }
                    Box::pin(handler.on_message(&payload, is_text)).await;
                } else {
                    partial = Some(Partial { is_text, compressed: frame.compressed, payload: frame.payload });
                }
            }
            Opcode::Continuation => {
                let Some(p) = partial.as_mut() else {
                    return Close::Server(CloseCode::ProtocolError);
                };
                if p.payload.len() + frame.payload.len() > max_message_size {
                    return Close::Server(CloseCode::MessageTooBig);
                }
                p.payload.extend_from_slice(&frame.payload);
                if frame.fin {
                    let Partial { is_text, compressed, payload } = partial.take().expect("checked above");
                    let payload = match message(payload, compressed, max_message_size) {
                        Ok(payload) => payload,
                        Err(close) => return close,
                    };
                    if is_text && is_invalid_utf8(&payload) {
                        return Close::Server(CloseCode::InvalidPayload);
                    }
                    Box::pin(handler.on_message(&payload, is_text)).await;
                }
            }
            Opcode::Ping => {
                // A pong goes through the queue like every other frame; a full
                // queue is handled by the slow-consumer logic of the pushes.
                let _ =
                    handler.outbound().push(OutFrame::control(wsframe::control(wsframe::OPCODE_PONG, &frame.payload)));
            }
            Opcode::Pong => {}
            Opcode::Close => return peer_close(&frame),
        }
    }
}

/// A whole message as it was sent: a compressed one inflated, at most
/// `max` bytes (past them inflating stops: 1009), or 1007 for data that is
/// not deflate; both counted.
fn message(payload: BytesMut, compressed: bool, max: usize) -> Result<BytesMut, Close> {
    if !compressed {
        return Ok(payload);
    }
    match deflate::inflate(&payload, max) {
        Ok(inflated) => Ok(BytesMut::from(&inflated[..])),
        Err(InflateError::TooBig) => {
            metric::inflate_refusals("too_big").increment(1);
            Err(Close::Server(CloseCode::MessageTooBig))
        }
        Err(InflateError::Malformed) => {
            metric::inflate_refusals("malformed").increment(1);
            Err(Close::Server(CloseCode::InvalidPayload))
        }
    }
}

/// The peer's close frame, checked as RFC 6455 §5.5.1 and §7.4 ask.
fn peer_close(frame: &Frame) -> Close {
    let payload: &[u8] = &frame.payload;
    match payload.len() {
        0 => Close::Peer(None),
        1 => Close::Server(CloseCode::ProtocolError),
        _ => {
            let code = u16::from_be_bytes([payload[0], payload[1]]);
            if !fastwebsockets::CloseCode::from(code).is_allowed() || !(1000..5000).contains(&code) {
                return Close::Server(CloseCode::ProtocolError);
            }
            if std::str::from_utf8(&payload[2..]).is_err() {
                return Close::Server(CloseCode::InvalidPayload);
            }
            Close::Peer(Some(code))
        }
    }
}

fn is_invalid_utf8(payload: &[u8]) -> bool {
    std::str::from_utf8(payload).is_err()
}

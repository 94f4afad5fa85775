//! Reads frames, reassembles messages and enforces the WebSocket rules that
//! fastwebsockets leaves to us: the size of a reassembled message, UTF-8 of
//! fragmented text, close frame payloads. Runs commands in order.

use super::handler::Handler;
use super::liveness::Liveness;
use bytes::BytesMut;
use fastwebsockets::{Frame, OpCode, Role, WebSocketError, WebSocketRead};
use switchyard_core::codes::CloseCode;
use switchyard_core::metric;
use switchyard_core::outbound::{Close, OutFrame};
use switchyard_core::wsframe;
use tokio::io::AsyncRead;

/// A message being reassembled from fragments.
struct Partial {
    is_text: bool,
    payload: BytesMut,
}

/// Reads until the connection ends; returns how it ended.
pub async fn run<R>(read: R, handler: &mut Handler, liveness: &Liveness, max_message_size: usize) -> Close
where
    R: AsyncRead + Unpin,
{
    // The write half is ours (see `writer`): fastwebsockets gets a sink that
    // is never used, because auto-pong and auto-close are off.
    let (mut ws, _) = fastwebsockets::after_handshake_split(read, tokio::io::sink(), Role::Server);
    ws.set_auto_close(false);
    ws.set_auto_pong(false);
    // One byte more than we allow, so that our own check (which knows the
    // reassembled size) is the one that fires, with the documented code.
    ws.set_max_message_size(max_message_size + 1);
    let mut partial: Option<Partial> = None;
    loop {
        let frame = match read_frame(&mut ws).await {
            Ok(frame) => frame,
            Err(close) => return close,
        };
        liveness.touch();
        if matches!(frame.opcode, OpCode::Close | OpCode::Ping | OpCode::Pong) && frame.payload.len() > 125 {
            // RFC 6455 §5.5: control frames carry at most 125 bytes
            // (fastwebsockets checks pings only).
            return Close::Server(CloseCode::ProtocolError);
        }
        if handler.is_closing() {
            // A close is under way: wait for the peer's close frame (or the
            // teardown timeout) and run nothing more.
            if frame.opcode == OpCode::Close {
                return peer_close(&frame);
            }
            continue;
        }
        match frame.opcode {
            OpCode::Text | OpCode::Binary => {
                if partial.is_some() {
                    return Close::Server(CloseCode::ProtocolError);
                }
                let is_text = frame.opcode == OpCode::Text;
                if frame.fin {
                    if frame.payload.len() > max_message_size {
                        return Close::Server(CloseCode::MessageTooBig);
                    }
                    handler.on_message(&frame.payload, is_text).await;
                } else {
                    let mut payload = BytesMut::with_capacity(frame.payload.len());
                    payload.extend_from_slice(&frame.payload);
                    if payload.len() > max_message_size {
                        return Close::Server(CloseCode::MessageTooBig);
                    }
                    partial = Some(Partial { is_text, payload });
                }
            }
            OpCode::Continuation => {
                let Some(p) = partial.as_mut() else {
                    return Close::Server(CloseCode::ProtocolError);
                };
                if p.payload.len() + frame.payload.len() > max_message_size {
                    return Close::Server(CloseCode::MessageTooBig);
                }
                p.payload.extend_from_slice(&frame.payload);
                if frame.fin {
                    let Partial { is_text, payload } = partial.take().expect("checked above");
                    if is_text && is_invalid_utf8(&payload) {
                        return Close::Server(CloseCode::InvalidPayload);
                    }
                    handler.on_message(&payload, is_text).await;
                }
            }
            OpCode::Ping => {
                // A pong goes through the queue like every other frame; a full
                // queue is handled by the slow-consumer logic of the pushes.
                let _ =
                    handler.outbound().push(OutFrame::control(wsframe::control(wsframe::OPCODE_PONG, &frame.payload)));
            }
            OpCode::Pong => {}
            OpCode::Close => return peer_close(&frame),
        }
    }
}

async fn read_frame<R: AsyncRead + Unpin>(ws: &mut WebSocketRead<R>) -> Result<Frame<'_>, Close> {
    let mut never_called = |_: Frame<'_>| async { Ok::<(), std::io::Error>(()) };
    match ws.read_frame(&mut never_called).await {
        Ok(frame) => {
            metric::bytes_received().increment(frame.payload.len() as u64);
            Ok(frame)
        }
        Err(e) => Err(match e {
            WebSocketError::FrameTooLarge => Close::Server(CloseCode::MessageTooBig),
            WebSocketError::InvalidUTF8 => Close::Server(CloseCode::InvalidPayload),
            WebSocketError::UnexpectedEOF | WebSocketError::IoError(_) | WebSocketError::ConnectionClosed => {
                Close::Dropped
            }
            _ => Close::Server(CloseCode::ProtocolError),
        }),
    }
}

/// The peer's close frame, checked as RFC 6455 §5.5.1 and §7.4 ask.
fn peer_close(frame: &Frame<'_>) -> Close {
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

//! Client frames in, server frames out, in either encoding.

use bytes::Bytes;
use prost::Message as _;
use switchyard_core::codes::{CloseCode, ErrorCode};
use switchyard_core::protocol::Protocol;
use switchyard_proto::json::{self, FrameError};
use switchyard_proto::v1::{ClientFrame, Disconnect, Error, Ping, ServerFrame, server_frame};

/// Why a message from a client was not a usable frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// Nothing in it can be trusted: close the connection.
    Close(CloseCode, String),
    /// The frame was readable enough to answer with an error reply.
    Reply { id: u32, code: ErrorCode, message: String },
}

/// Decodes one client message (a whole, reassembled WebSocket message).
pub fn decode(protocol: Protocol, payload: &[u8], is_text: bool) -> Result<ClientFrame, DecodeError> {
    match protocol {
        Protocol::Json => {
            if !is_text {
                return Err(DecodeError::Close(CloseCode::Malformed, "expected a text frame".into()));
            }
            // The reader has checked UTF-8 already; check again rather than trust it.
            let text = std::str::from_utf8(payload)
                .map_err(|_| DecodeError::Close(CloseCode::InvalidPayload, "invalid UTF-8".into()))?;
            json::decode_client_frame(text).map_err(|e| match e {
                FrameError::Malformed(m) => DecodeError::Close(CloseCode::Malformed, m),
                FrameError::Unknown { id, .. } => {
                    DecodeError::Reply { id, code: ErrorCode::UnknownCommand, message: e.to_string() }
                }
                FrameError::Shape { id, .. } | FrameError::Invalid { id, .. } => {
                    DecodeError::Reply { id, code: ErrorCode::BadRequest, message: e.to_string() }
                }
            })
        }
        Protocol::Protobuf => {
            if is_text {
                return Err(DecodeError::Close(CloseCode::Malformed, "expected a binary frame".into()));
            }
            ClientFrame::decode(payload).map_err(|e| DecodeError::Close(CloseCode::Malformed, e.to_string()))
        }
        // Pusher connections have their own session and never come here.
        Protocol::Pusher => Err(DecodeError::Close(CloseCode::Malformed, "not a switchyard connection".into())),
    }
}

/// One server frame as a complete WebSocket frame.
pub fn encode(protocol: Protocol, frame: &ServerFrame) -> Bytes {
    protocol.encode(frame)
}

pub fn error_reply(protocol: Protocol, id: u32, code: ErrorCode, message: &str) -> Bytes {
    let error = Error { code: code.code(), message: message.to_owned() };
    encode(protocol, &ServerFrame { id, message: Some(server_frame::Message::Error(error)) })
}

/// The `disconnect` push that precedes a server's close: with `reason`,
/// or the code's own where it is empty.
pub fn disconnect(protocol: Protocol, code: CloseCode, reason: &str) -> Bytes {
    let reason = if reason.is_empty() { code.reason() } else { reason };
    let disconnect =
        Disconnect { code: u32::from(code.code()), reason: reason.to_owned(), reconnect: code.reconnect() };
    encode(protocol, &ServerFrame { id: 0, message: Some(server_frame::Message::Disconnect(disconnect)) })
}

/// The `ping` message sent on idle connections.
pub fn ping(protocol: Protocol) -> Bytes {
    encode(protocol, &ServerFrame { id: 0, message: Some(server_frame::Message::Ping(Ping {})) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(frame: &Bytes) -> &[u8] {
        &frame[2..]
    }

    #[test]
    fn fixed_json_shapes() {
        let p = Protocol::Json;
        assert_eq!(payload(&ping(p)), br#"{"ping":{}}"#);
        assert_eq!(
            payload(&disconnect(p, CloseCode::SlowConsumer, "")),
            br#"{"disconnect":{"code":4008,"reason":"slow consumer","reconnect":true}}"#
        );
        assert_eq!(
            payload(&error_reply(p, 5, ErrorCode::PermissionDenied, "permission denied")),
            br#"{"id":5,"error":{"code":103,"message":"permission denied"}}"#
        );
    }

    #[test]
    fn decode_errors_map_to_codes() {
        let p = Protocol::Json;
        assert!(matches!(decode(p, b"{nope", true), Err(DecodeError::Close(CloseCode::Malformed, _))));
        assert!(matches!(decode(p, b"[1]", true), Err(DecodeError::Close(CloseCode::Malformed, _))));
        assert!(matches!(
            decode(p, br#"{"id":3,"frobnicate":{}}"#, true),
            Err(DecodeError::Reply { id: 3, code: ErrorCode::UnknownCommand, .. })
        ));
        assert!(matches!(
            decode(p, br#"{"id":4,"subscribe":{"channel":5}}"#, true),
            Err(DecodeError::Reply { id: 4, code: ErrorCode::BadRequest, .. })
        ));
        assert!(matches!(decode(p, b"{}", false), Err(DecodeError::Close(CloseCode::Malformed, _))));
        assert!(matches!(
            decode(Protocol::Protobuf, &[0xff, 0xff, 0xff], false),
            Err(DecodeError::Close(CloseCode::Malformed, _))
        ));
    }
}

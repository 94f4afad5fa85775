//! The two encodings of the client protocol, chosen per connection by
//! `Sec-WebSocket-Protocol`, and the one place a server frame is encoded
//! into a WebSocket frame (publications by the hub, everything else by the
//! gateway's codec).

use crate::codes::CloseCode;
use crate::pusher;
use crate::wsframe;
use bytes::Bytes;
use prost::Message as _;
use switchyard_proto::json;
use switchyard_proto::v1::ServerFrame;

/// How a connection's frames are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// `switchyard.v1.json`: one JSON object per text frame (the default).
    Json,
    /// `switchyard.v1.proto`: one protobuf message per binary frame.
    Protobuf,
    /// The Pusher Channels protocol (version 7), at `/app/{key}`: JSON
    /// events in text frames ([`crate::pusher`]). Never negotiated by
    /// subprotocol.
    Pusher,
}

impl Protocol {
    pub const JSON_NAME: &'static str = "switchyard.v1.json";
    pub const PROTOBUF_NAME: &'static str = "switchyard.v1.proto";

    pub const fn name(self) -> &'static str {
        match self {
            Protocol::Json => Self::JSON_NAME,
            Protocol::Protobuf => Self::PROTOBUF_NAME,
            Protocol::Pusher => "pusher",
        }
    }

    /// Picks the first protocol we speak from a `Sec-WebSocket-Protocol`
    /// header value (comma-separated, in the client's order of preference).
    pub fn negotiate(offered: &str) -> Option<Protocol> {
        offered.split(',').map(str::trim).find_map(|name| match name {
            Self::JSON_NAME => Some(Protocol::Json),
            Self::PROTOBUF_NAME => Some(Protocol::Protobuf),
            _ => None,
        })
    }

    /// `frame` as one complete WebSocket frame: a text frame of JSON, or a
    /// binary frame of protobuf.
    pub fn encode(self, frame: &ServerFrame) -> Bytes {
        match self {
            Protocol::Json => wsframe::text(&json::encode_server_frame(frame)),
            Protocol::Protobuf => wsframe::binary(&frame.encode_to_vec()),
            Protocol::Pusher => wsframe::text(pusher_json(frame).as_bytes()),
        }
    }

    /// `frame` as one compressed WebSocket frame (permessage-deflate), or
    /// as a plain one when it is shorter than `min_size`: RSV1 is per
    /// message, and compressing a short message costs more than it saves.
    pub fn encode_deflated(self, frame: &ServerFrame, min_size: usize) -> Bytes {
        let (opcode, message) = match self {
            Protocol::Json => (wsframe::OPCODE_TEXT, json::encode_server_frame(frame)),
            Protocol::Protobuf => (wsframe::OPCODE_BINARY, frame.encode_to_vec()),
            Protocol::Pusher => (wsframe::OPCODE_TEXT, pusher_json(frame).into_bytes()),
        };
        if message.len() < min_size {
            return wsframe::frame(opcode, &message);
        }
        crate::metric::deflated_frames(self.label()).increment(1);
        wsframe::compressed(opcode, &crate::deflate::compress(&message))
    }

    /// A bounded metric label.
    pub const fn label(self) -> &'static str {
        match self {
            Protocol::Json => "json",
            Protocol::Protobuf => "protobuf",
            Protocol::Pusher => "pusher",
        }
    }
}

/// A server frame in Pusher's terms. The hub makes Pusher subscribers'
/// events from the Envelope itself ([`pusher::envelope_frame`], which knows
/// the event's name); this covers the frames the connection makes.
fn pusher_json(frame: &ServerFrame) -> String {
    use switchyard_proto::v1::Envelope;
    use switchyard_proto::v1::server_frame::Message;
    match &frame.message {
        Some(Message::Ping(_)) => r#"{"event":"pusher:ping","data":{}}"#.to_owned(),
        Some(Message::Disconnect(d)) => {
            let code = CloseCode::from_code(d.code as u16).map_or(4200, pusher::close_code);
            pusher::error_json(Some(code), &d.reason)
        }
        Some(Message::Error(e)) => pusher::error_json(None, &e.message),
        Some(Message::Pub(p)) => pusher::envelope_json(&Envelope {
            channel: p.channel.clone(),
            data: p.data.clone(),
            event: p.tags.get("event").cloned().unwrap_or_default(),
            ..Envelope::default()
        }),
        Some(Message::Join(m)) | Some(Message::Leave(m)) => {
            let joined = matches!(frame.message, Some(Message::Join(_)));
            let name = pusher::app_channel(&m.channel).map(|(_, n)| n).unwrap_or_default();
            pusher::member_json(&name, &m.info.clone().unwrap_or_default(), joined)
        }
        _ => pusher::error_json(None, "unsupported"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiates_in_client_order() {
        assert_eq!(Protocol::negotiate("switchyard.v1.proto, switchyard.v1.json"), Some(Protocol::Protobuf));
        assert_eq!(Protocol::negotiate("mqtt,switchyard.v1.json"), Some(Protocol::Json));
        assert_eq!(Protocol::negotiate("mqtt"), None);
    }
}

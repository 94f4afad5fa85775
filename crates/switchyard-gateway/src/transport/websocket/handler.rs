//! What a connection does with the messages the reader assembles: run the
//! switchyard protocol or the Pusher protocol, or (for conformance suites
//! only) echo them.

use crate::command::ClientSession;
use crate::command::session::Malformed;
use crate::node::ServerOp;
use crate::pusher_session::PusherSession;
use switchyard_core::codes::CloseCode;
use switchyard_core::outbound::{Close, OutFrame, Outbound};
use switchyard_core::protocol::Protocol;
use switchyard_core::wsframe;

/// What speaks on a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Speaks {
    /// The switchyard protocol in one of its encodings.
    Protocol(Protocol),
    /// Echo every message back as it came (`testing.echo`, at `/echo`).
    Echo,
    /// The Pusher protocol, for the app at this place in `pusher.apps`.
    Pusher(usize),
}

pub enum Handler {
    Session(Box<ClientSession>),
    Pusher(Box<PusherSession>),
    /// With whether to compress what it echoes (permessage-deflate).
    Echo(Outbound, bool),
}

impl Handler {
    pub fn outbound(&self) -> &Outbound {
        match self {
            Handler::Session(session) => session.outbound(),
            Handler::Pusher(session) => session.outbound(),
            Handler::Echo(outbound, _) => outbound,
        }
    }

    /// The protocol spoken, None for echo connections.
    pub fn protocol(&self) -> Option<Protocol> {
        match self {
            Handler::Session(session) => Some(session.protocol()),
            Handler::Pusher(session) => Some(session.protocol()),
            Handler::Echo(..) => None,
        }
    }

    pub fn is_closing(&self) -> bool {
        self.outbound().closing().is_some()
    }

    /// Queues the answers of publishes in flight that came; pending while
    /// none came (and always for connections that keep none in flight).
    pub fn poll_answered(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        match self {
            Handler::Session(session) => session.poll_answered(cx),
            Handler::Pusher(_) | Handler::Echo(..) => std::task::Poll::Pending,
        }
    }

    /// Runs an operation the server decided on for this connection.
    pub async fn apply(&mut self, op: ServerOp) {
        match self {
            Handler::Session(session) => session.apply(op).await,
            Handler::Pusher(session) => session.apply(op).await,
            Handler::Echo(..) => {}
        }
    }

    /// Handles one whole, valid message.
    pub async fn on_message(&mut self, payload: &[u8], is_text: bool) {
        match self {
            Handler::Session(session) => {
                session.receive(payload, is_text, Malformed::Close).await;
            }
            Handler::Pusher(session) => session.receive(payload, is_text).await,
            Handler::Echo(outbound, compress) => {
                let opcode = if is_text { wsframe::OPCODE_TEXT } else { wsframe::OPCODE_BINARY };
                let frame = match compress {
                    true => wsframe::compressed(opcode, &switchyard_core::deflate::compress(payload)),
                    false => wsframe::frame(opcode, payload),
                };
                if outbound.push(OutFrame::control(frame)).is_err() {
                    outbound.close(Close::Server(CloseCode::SlowConsumer));
                }
            }
        }
    }

    /// Called once the connection is closed.
    pub async fn end(&mut self) {
        match self {
            Handler::Session(session) => session.end().await,
            Handler::Pusher(session) => session.end().await,
            Handler::Echo(..) => {}
        }
    }
}

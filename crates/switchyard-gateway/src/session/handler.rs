//! What a connection does with the messages the reader assembles: run the
//! switchyard protocol, or (for conformance suites only) echo them.

use super::commands::Session;
use switchyard_core::outbound::{OutFrame, Outbound};
use switchyard_core::protocol::Protocol;
use switchyard_core::wsframe;

/// What speaks on a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Speaks {
    /// The switchyard protocol in one of its encodings.
    Protocol(Protocol),
    /// Echo every message back as it came (`testing.echo`, at `/echo`).
    Echo,
}

pub enum Handler {
    Session(Box<Session>),
    Echo(Outbound),
}

impl Handler {
    pub fn outbound(&self) -> &Outbound {
        match self {
            Handler::Session(session) => session.outbound(),
            Handler::Echo(outbound) => outbound,
        }
    }

    pub fn is_closing(&self) -> bool {
        self.outbound().closing().is_some()
    }

    /// Handles one whole, valid message.
    pub async fn on_message(&mut self, payload: &[u8], is_text: bool) {
        match self {
            Handler::Session(session) => session.handle_message(payload, is_text).await,
            Handler::Echo(outbound) => {
                let frame = if is_text { wsframe::text(payload) } else { wsframe::binary(payload) };
                if outbound.push(OutFrame::control(frame)).is_err() {
                    outbound.close(switchyard_core::outbound::Close::Server(
                        switchyard_core::codes::CloseCode::SlowConsumer,
                    ));
                }
            }
        }
    }

    /// Called once the connection is closed.
    pub async fn end(&mut self) {
        if let Handler::Session(session) = self {
            session.end().await;
        }
    }
}

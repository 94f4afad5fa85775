//! Why a command or a request failed: the protocol's error code and a
//! message, and for a client, whether its connection ends. The command
//! layer answers with it; WebSocket and SSE sessions turn it into an error
//! reply, HTTP routes into a status and a JSON error ([`crate::http`]).

use switchyard_broker::BrokerError;
use switchyard_core::codes::{CloseCode, ErrorCode};

/// Why a command failed: the error reply, and whether the connection ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: ErrorCode,
    pub message: String,
    /// For clients: the close that follows the error reply.
    pub close: Option<CloseCode>,
}

impl Refusal {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Refusal { code, message: message.into(), close: None }
    }

    pub fn plain(code: ErrorCode) -> Self {
        Refusal::new(code, code.message())
    }

    pub fn closing(mut self, close: CloseCode) -> Self {
        self.close = Some(close);
        self
    }
}

impl From<BrokerError> for Refusal {
    /// Unreachable: try again (108); anything else: 100. The broker's own
    /// text (a Redis error, an address) goes to the log, never to a client.
    fn from(error: BrokerError) -> Self {
        match error {
            BrokerError::Unavailable(m) => {
                tracing::debug!(error = %m, "broker unavailable");
                Refusal::new(ErrorCode::NotAvailable, "the broker is unavailable: try again")
            }
            BrokerError::Internal(m) => {
                tracing::warn!(error = %m, "broker error");
                Refusal::new(ErrorCode::Internal, "internal error")
            }
        }
    }
}

//! The command layer: the rules of every command, in one place, whatever
//! the entry point. WebSocket sessions, the HTTP API and the control
//! channel translate their input into calls here and the results back into
//! their own shapes; they hold no rules of their own.
//!
//! # Layout
//! - [`session`]: [`ClientSession`], one client's protocol state and the
//!   dispatch of its commands, for any transport.
//! - [`connect`]: connect, tokens, refresh and resume.
//! - [`subscribe`]: subscribe, recovery, unsubscribe, and server-side
//!   subscriptions (the `subs` claim, user operations).
//! - [`publish`]: publish, from a client or a backend.
//! - [`history`]: reading a channel's history.
//! - [`presence`]: presence and presence stats, and this node's entries.
//! - [`users`]: user operations and cluster-wide surveys, sent and applied.
//! - [`proxy`]: what the application's backend is asked (connect, refresh,
//!   subscribe, publish) and how its answers become results or refusals.
//! - [`rpc`]: the `rpc` command, answered by the backend.
//! - [`saved`]: what a session leaves behind for `connect.resume`.

pub mod connect;
pub mod history;
pub mod joined;
pub mod ops;
pub mod presence;
pub mod proxy;
pub mod publish;
pub mod rpc;
pub mod saved;
pub mod session;
pub mod subscribe;
pub mod users;

pub use session::{ClientSession, OpReceiver, OpSender, ServerOp};

use crate::node::Node;
use switchyard_broker::BrokerError;
use switchyard_core::channel::Channel;
use switchyard_core::codes::{CloseCode, ErrorCode};
use switchyard_core::config::NamespaceConfig;
use switchyard_proto::v1::server_frame;

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
    /// Unreachable: try again (108); anything else: 100.
    fn from(error: BrokerError) -> Self {
        match error {
            BrokerError::Unavailable(m) => Refusal::new(ErrorCode::NotAvailable, m),
            BrokerError::Internal(m) => Refusal::new(ErrorCode::Internal, m),
        }
    }
}

/// A reply to send, or `None` when the command queued its reply itself
/// (behind recovered publications, or ahead of `sub` pushes).
pub type Reply = Result<Option<server_frame::Message>, Refusal>;

/// The channel named `name` and its namespace's options, if the name is
/// valid (107 otherwise) and the namespace configured (102 otherwise).
pub fn resolve<'c, 'n>(node: &'n Node, name: &'c str) -> Result<(Channel<'c>, &'n NamespaceConfig), Refusal> {
    let channel = Channel::parse(name).map_err(|e| Refusal::new(ErrorCode::BadRequest, e.to_string()))?;
    let namespace = node.config.namespace(channel.namespace()).ok_or_else(|| {
        Refusal::new(ErrorCode::UnknownChannel, format!("unknown namespace `{}`", channel.namespace()))
    })?;
    Ok((channel, namespace))
}

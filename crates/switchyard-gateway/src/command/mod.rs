//! The command layer: the rules of every command, in one place, whatever
//! the entry point. WebSocket sessions, the HTTP API and the control
//! channel translate their input into calls here and the results back into
//! their own shapes; they hold no rules of their own.
//!
//! Commands know the node ([`crate::node`]) and never a transport or an
//! HTTP route: those stand above and call in.
//!
//! # Layout
//! - [`session`]: [`ClientSession`], one client's protocol session (the
//!   one thing "session" names here): its identity, channels and
//!   positions, command rate, and the dispatch of its commands.
//! - [`liveness`]: when a session's peer was last heard from, and until
//!   when its token holds; the session sets it, transports act on it.
//! - [`connect`]: connect, tokens, refresh and resume.
//! - [`subscribe`]: subscribe, recovery, unsubscribe, and server-side
//!   subscriptions (the `subs` claim, user operations).
//! - [`joined`]: the channels of one session.
//! - [`publish`]: publish, from a client or a backend; [`in_flight`]:
//!   a session's plain publishes answered when the broker has them, while
//!   it reads on.
//! - [`history`]: reading a channel's history.
//! - [`presence`]: presence and presence stats; entering and leaving.
//! - [`users`]: user operations (subscribe, unsubscribe, disconnect every
//!   connection of a user, on every node).
//! - [`channels`]: the cluster-wide survey of channels.
//! - [`stream_commands`]: an SSE client's commands, run on the node that
//!   holds its stream.
//! - [`control`]: control messages from other nodes, applied here.
//! - [`proxy`]: what the application's backend is asked (connect, refresh,
//!   subscribe, publish) and how its answers become results or refusals.
//! - [`rpc`]: the `rpc` command, answered by the backend.
//! - [`saved`]: what a session leaves behind for `connect.resume`.

pub mod channels;
pub mod connect;
pub mod control;
pub mod history;
pub mod in_flight;
pub mod joined;
pub mod liveness;
pub mod presence;
pub mod proxy;
pub mod publish;
pub mod rpc;
pub mod saved;
pub mod session;
pub mod stream_commands;
pub mod subscribe;
pub mod users;

pub use session::ClientSession;

pub use crate::refusal::Refusal;

use crate::node::Node;
use switchyard_core::channel::Channel;
use switchyard_core::codes::ErrorCode;
use switchyard_core::config::NamespaceConfig;
use switchyard_proto::v1::server_frame;

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

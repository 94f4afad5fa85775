//! switchyard without sockets.
//!
//! # Layout
//! - [`channel`]: channel names, namespaces and user channels.
//! - [`position`]: a place in a channel's history (epoch, offset).
//! - [`clock`]: Unix time in the units the protocol uses.
//! - [`codes`]: the error codes of replies and the close codes of connections.
//! - [`config`]: the configuration tree, its defaults and its validation.
//! - [`protocol`]: the encodings a connection may speak: switchyard's two,
//!   and Pusher's.
//! - [`pusher`]: the Pusher protocol's channels, events and close codes.
//! - [`wsframe`]: WebSocket frames encoded once, ready for any connection.
//! - [`deflate`]: permessage-deflate payloads, compressed once, inflated
//!   with a bound.
//! - [`outbound`]: a connection's bounded outbound queue.
//! - [`hub`]: local subscriptions and fan-out into outbound queues.
//! - [`metric`]: the names and help of every metric, in one place.

pub mod channel;
pub mod clock;
pub mod codes;
pub mod config;
pub mod deflate;
pub mod filter;
pub mod hub;
pub mod metric;
pub mod outbound;
pub mod position;
pub mod protocol;
pub mod pusher;
pub mod wsframe;
pub mod wsread;

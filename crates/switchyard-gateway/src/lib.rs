//! The switchyard gateway node.
//!
//! # Layout, bottom to top (each floor imports only the floors below it)
//! - Leaves, which import nothing of this crate but each other's plain
//!   types: [`settings`] (configuration layering), `auth` (who a token
//!   says a client is), `tls`, `origin`, `query`, [`probe`], `handshake`
//!   (what the request that opened a connection leaves to its session),
//!   [`codec`] (client frames in, server frames out), `refusal` (why a
//!   command failed), `http` (one body reader, response type and
//!   error-to-status table), `recorder` (the Prometheus recorder),
//!   `traffic_tally` (per-thread counts of what connections read and
//!   write), `outgoing` (the node's own HTTP client connector), `proxy`
//!   (the application's backend, over HTTP), [`pusher`] (the Pusher
//!   Channels protocol's signatures), `webhooks` (what happened on the
//!   cluster's channels, POSTed to the application).
//! - `node`: the node's shared state: connections and permits, the index
//!   by user, SSE streams, server operations, requests to other nodes,
//!   local presence, the write clock.
//! - `command`: the command layer: every rule of the protocol, for every
//!   entry point. Knows the node, never a transport.
//! - `pusher_session`: the Pusher door's session, beside the command
//!   layer and on the same node.
//! - `transport`: WebSocket and SSE, on one connection lifecycle.
//! - `routes`: the HTTP routes (the API, the admin page, SSE commands,
//!   health, metrics).
//! - `duties`: background work (heartbeat, presence refresh, rebalancing,
//!   control messages, receipts, consumers of the application's queues),
//!   each stopped by its owner.
//! - `server`: the accept loops and the shutdown order; [`serve`].
//!
//! docs/architecture.md walks a publication and a `subscribe` through
//! these files.

mod auth;
pub mod codec;
mod command;
mod duties;
mod handshake;
mod http;
mod node;
mod origin;
mod outgoing;
pub mod probe;
mod proxy;
pub mod pusher;
mod pusher_session;
mod query;
mod recorder;
mod refusal;
mod routes;
mod server;
pub mod settings;
mod tls;
mod traffic_tally;
mod transport;
mod webhooks;

pub use duties::presence_refresh::refresh_all as refresh_presence;
pub use node::{Node, StartError};
pub use server::serve;

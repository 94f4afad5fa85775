//! The switchyard gateway node.
//!
//! # Layout
//! - [`settings`]: configuration layering (defaults → file → env → flags).
//! - [`node`]: what one node shares between its connections.
//! - [`server`]: the accept loop and HTTP routes (`/ws`, `/metrics`,
//!   `/healthz`, `/readyz`), and [`server::serve`], the entry point.
//! - [`connections`]: the live connections of this node and the limit.
//! - [`command`]: the command layer: the rules of every command, for every
//!   entry point (WebSocket sessions, the HTTP API, the control channel).
//! - [`session`]: one WebSocket connection: reader, handler, writer.
//! - [`sse`]: the fallback transport: Server-Sent Events and their commands.
//! - [`codec`]: client frames in and server frames out, per encoding.
//! - [`admin`]: the admin page and its JSON endpoints.
//! - [`api`]: the HTTP API (publish, history, presence, user operations,
//!   channels, nodes).
//! - [`auth`]: who a connecting client is.
//! - [`proxy`]: the application's backend, asked over HTTP (connect,
//!   refresh, subscribe, publish, rpc).
//! - [`upgrade`]: what the request that opened a connection leaves to it.
//! - [`origin`]: which browser origins may connect.
//! - [`registry`]: this node's heartbeat in the cluster registry.
//! - [`rebalance`]: shedding connections above the cluster's mean (4012).
//! - [`drain`]: closing every connection, paced, on shutdown.
//! - [`tls`]: TLS on the public listener, reloaded when its files change.
//! - [`metrics`]: the Prometheus recorder, its rendering and its upkeep.
//! - [`delivery_tally`]: what the writers count per write, kept per thread.
//! - [`probe`]: a one-shot HTTP GET, for health checks without curl.
//! - [`query`]: query strings of HTTP requests.

pub mod admin;
pub mod api;
pub mod auth;
pub mod codec;
pub mod command;
pub mod connections;
pub mod delivery_tally;
pub mod drain;
pub mod metrics;
pub mod node;
pub mod origin;
pub mod probe;
pub mod proxy;
pub mod query;
pub mod rebalance;
pub mod registry;
pub mod server;
pub mod session;
pub mod settings;
pub mod sse;
pub mod tls;
pub mod upgrade;

pub use node::Node;
pub use server::serve;

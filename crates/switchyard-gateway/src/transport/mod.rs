//! The transports that carry a client's protocol session: WebSocket and
//! Server-Sent Events. Each translates bytes on its connection into the
//! session's messages and the session's outbound queue into bytes; both
//! share one lifecycle ([`lifecycle`]). Transports know the command layer;
//! the command layer never knows them.
//!
//! # Layout
//! - [`lifecycle`]: admission (origin, draining, connect rate, permit),
//!   registration, the session, and the last frames on close: written once.
//! - [`websocket`]: `/ws`: the upgrade, reader, writer and timed duties.
//! - [`sse`]: `/sse`: the stream and its writer.
//! - [`drain`]: closing every connection, paced, on shutdown.

pub mod drain;
pub mod lifecycle;
pub mod sse;
pub mod websocket;

//! One WebSocket connection, from the upgrade to the close.
//!
//! Two tasks per connection: this one reads frames and runs the client's
//! commands and, between them, the server's operations for this
//! connection, in order (the command layer's [`ClientSession`]), and the
//! connection's timed duties ([`duties`]: heartbeats, deadlines); the writer
//! ([`writer`]) owns the write half and is the only one to write, so pings,
//! pongs, replies, publications and close frames all go through the
//! connection's outbound queue.

mod duties;
mod handler;
pub mod liveness;
mod reader;
pub mod write_clock;
mod writer;

use crate::command::ClientSession;
use crate::connections::Permit;
use crate::node::Node;
use crate::upgrade::Upgrade;
use handler::Handler;
pub use handler::Speaks;
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use liveness::Liveness;
use std::sync::Arc;
use switchyard_core::codes::CloseCode;
use switchyard_core::metric;
use switchyard_core::outbound::{Close, Outbound, outbound};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite};
use tokio::net::TcpStream;

/// Server operations (user operations) waiting for a session, at most.
const OPS_QUEUE: usize = 64;

/// Serves one upgraded connection until it closes. A plain TCP connection
/// is taken back from hyper and split into its owned halves: reads and
/// writes then go straight to the socket, not through hyper's boxed stream
/// and a split's lock on every call (a TLS one keeps the generic path).
/// `upgrade`: what the upgrade request said (a connect token, headers).
pub async fn run_upgraded(node: Arc<Node>, upgraded: Upgraded, speaks: Speaks, upgrade: Upgrade, permit: Permit) {
    match upgraded.downcast::<TokioIo<TcpStream>>() {
        Ok(parts) => {
            let (read, write) = parts.io.into_inner().into_split();
            // What the client sent right behind its handshake, hyper read
            // already: copied out, since `read_buf` shares hyper's whole read
            // buffer (kilobytes a connection would keep for nothing).
            let early = bytes::Bytes::copy_from_slice(&parts.read_buf);
            drop(parts.read_buf);
            let read = std::io::Cursor::new(early).chain(read);
            run(node, read, write, speaks, upgrade, permit).await
        }
        Err(upgraded) => {
            let (read, write) = tokio::io::split(TokioIo::new(upgraded));
            // Boxed: held in place, this second form of the session would
            // add its size to the task of every plain connection too.
            Box::pin(run(node, read, write, speaks, upgrade, permit)).await
        }
    }
}

/// Serves one connection, given its two halves, until it closes.
pub async fn run<R, W>(node: Arc<Node>, read: R, write: W, speaks: Speaks, upgrade: Upgrade, permit: Permit)
where
    R: AsyncRead + Send + Unpin + 'static,
    W: AsyncWrite + Send + Unpin + 'static,
{
    let _permit = permit;
    let config = node.config.clone();
    let id = node.next_conn_id();
    let (outbound, queue) = outbound(config.client.max_queue_bytes);
    let _registration = node.connections.register(id, outbound.clone());
    metric::transport_connections("websocket").increment(1.0);
    let liveness = Arc::new(Liveness::new());
    if speaks == Speaks::Echo {
        liveness.mark_connected(); // echo connections have no connect step
    }
    let protocol = match speaks {
        Speaks::Protocol(protocol) => Some(protocol),
        Speaks::Echo => None,
    };
    let mut writer = tokio::spawn(writer::run(write, queue, protocol, node.write_clock.clone()));

    if node.is_draining() {
        // The drain took its list of connections before this one was in it.
        outbound.close(Close::Server(CloseCode::GoingAway));
    }
    let (ops, mut ops_rx) = crate::command::ops::op_queue(OPS_QUEUE);
    let mut handler = match protocol {
        Some(protocol) => {
            let session =
                ClientSession::new(node.clone(), id, protocol, outbound.clone(), liveness.clone(), upgrade, ops);
            Handler::Session(Box::new(session))
        }
        None => Handler::Echo(outbound.clone()),
    };
    // Once a close is decided, the peer has `close_timeout` to answer it
    // before the socket is dropped. (Both futures are made in place: bound
    // to a local first, each would take its room in this task twice.)
    tokio::select! {
        close = reader::run(read, &mut handler, &mut ops_rx, &liveness, &config.client) => { outbound.close(close); }
        () = teardown(&outbound, config.client.close_timeout) => {}
    }
    if tokio::time::timeout(config.client.close_timeout, &mut writer).await.is_err() {
        writer.abort();
    }
    Box::pin(handler.end()).await;
    metric::transport_connections("websocket").decrement(1.0);
    metric::connections_closed(close_label(outbound.closing())).increment(1);
}

/// Resolves `close_timeout` after a close was requested.
async fn teardown(outbound: &Outbound, close_timeout: std::time::Duration) {
    outbound.closed().await;
    tokio::time::sleep(close_timeout).await;
}

/// The `code` label of `switchyard_connections_closed_total`: the close
/// code, `1005` when the peer gave none, `1006` when the socket just went
/// away, `other` for peer codes outside the protocol's table.
pub(crate) fn close_label(close: Option<Close>) -> &'static str {
    match close {
        Some(Close::Server(code) | Close::Announced(code)) => code.label(),
        Some(Close::Peer(None)) => "1005",
        Some(Close::Peer(Some(code))) => CloseCode::from_code(code).map_or("other", CloseCode::label),
        Some(Close::Dropped) | None => "1006",
    }
}

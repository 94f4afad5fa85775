//! One client connection's lifecycle, the same for every transport:
//!
//! 1. admission ([`admit`]): the browser origin, the drain, the address's
//!    connect rate, and a [`Permit`] under the node's and the address's
//!    connection limits, each refused with its status and metric;
//! 2. registration ([`Connection::open`]): an id, the outbound queue, an
//!    entry among the node's connections (which the drain and the
//!    rebalancer reach), and a close at once if the node started draining
//!    meanwhile;
//! 3. the protocol session ([`Connection::session`]) with its liveness,
//!    which the transport's timers act on (the token's [`expiry`] the same
//!    way for both);
//! 4. the last frames ([`last_frames`]): what was queued before the
//!    close goes out first (a slow consumer's backlog does not, unless the
//!    close was announced), then the `disconnect` push where the session
//!    did not send one itself;
//! 5. the end ([`Connection::finish`]): the close counted by its code.

use crate::codec;
use crate::command::ClientSession;
use crate::command::liveness::Liveness;
use crate::handshake::Handshake;
use crate::http::{self, Body};
use crate::node::connections::{NoRoom, Permit, Registration};
use crate::node::server_ops::op_queue;
use crate::node::{Node, OpReceiver, OpSender};
use crate::origin;
use hyper::body::Incoming;
use hyper::header::{HOST, ORIGIN};
use hyper::{Request, Response, StatusCode};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use switchyard_core::codes::CloseCode;
use switchyard_core::config::LimitsConfig;
use switchyard_core::hub::ConnId;
use switchyard_core::metric;
use switchyard_core::outbound::{Close, OutFrame, Outbound, OutboundQueue, outbound_with_replies};
use switchyard_core::protocol::Protocol;

/// Frames a connection's writer takes from its queue at once, whatever the
/// transport. With the usual publications (100-200 bytes) a batch stays
/// under 64 KiB and goes in one write (one chunk for a stream); the bound
/// keeps one writer from copying a whole backlog into its thread's buffer
/// before anything is written.
pub const WRITE_BATCH: usize = 256;

/// Server operations waiting for a session, at most: a burst of user
/// operations for one user, or an SSE client's command posts, fit; past
/// it, user operations are dropped and counted and posters wait for room,
/// rather than a busy session holding an unbounded backlog.
const OPS_QUEUE: usize = 64;

/// A session's queue of server operations.
pub fn ops_queue() -> (OpSender, OpReceiver) {
    op_queue(OPS_QUEUE)
}

/// Checks a request that would open a client connection, in order: its
/// browser origin, the drain, its address's connect rate, and a place
/// under the connection limits. The refusal is the response to send.
pub fn admit(req: &Request<Incoming>, peer: SocketAddr, node: &Node) -> Result<Permit, Box<Response<Body>>> {
    if let Some(refused) = refuse_origin(req, node) {
        return Err(Box::new(refused));
    }
    if node.is_draining() {
        metric::connections_refused("draining").increment(1);
        return Err(Box::new(http::text(StatusCode::SERVICE_UNAVAILABLE, "draining: connect to another node\n")));
    }
    if node.is_cut_off() {
        metric::connections_refused("cut_off").increment(1);
        let message = "this node cannot reach its broker: connect to another node\n";
        return Err(Box::new(http::text(StatusCode::SERVICE_UNAVAILABLE, message)));
    }
    let ip = client_ip(req, peer, &node.config.limits);
    if let Some(limiter) = &node.connect_limiter
        && limiter.check_key(&ip).is_err()
    {
        metric::connections_refused("connect_rate").increment(1);
        return Err(Box::new(http::text(
            StatusCode::TOO_MANY_REQUESTS,
            "too many new connections from this address\n",
        )));
    }
    node.connections.try_permit(ip).map_err(|no_room| {
        Box::new(match no_room {
            NoRoom::Node => {
                metric::connections_refused("limit").increment(1);
                http::text(StatusCode::SERVICE_UNAVAILABLE, "connection limit reached\n")
            }
            NoRoom::Address => {
                metric::connections_refused("ip_limit").increment(1);
                http::text(StatusCode::TOO_MANY_REQUESTS, "too many connections from this address\n")
            }
        })
    })
}

/// Whether the request's browser origin may use this node (requests
/// without one pass): one of `limits.allowed_origins`; with none listed,
/// any, unless cookies carry credentials ([`switchyard_core::config::Config::credentials_from_cookies`]):
/// then only the node's own origin, so another site's page cannot connect
/// as the logged-in user (cross-site WebSocket hijacking).
pub fn origin_allowed(req: &Request<Incoming>, node: &Node) -> bool {
    let Some(origin) = req.headers().get(ORIGIN) else { return true };
    let origin = origin.to_str().unwrap_or("");
    let allowed = &node.config.limits.allowed_origins;
    if !allowed.is_empty() || !node.config.credentials_from_cookies() {
        return origin::is_allowed(allowed, origin);
    }
    let host = req.headers().get(HOST).and_then(|h| h.to_str().ok()).unwrap_or("");
    origin::is_same_origin(origin, host)
}

/// The refusal of a connection from a browser origin that is not allowed.
fn refuse_origin(req: &Request<Incoming>, node: &Node) -> Option<Response<Body>> {
    if origin_allowed(req, node) {
        return None;
    }
    metric::connections_refused("origin").increment(1);
    Some(http::text(StatusCode::FORBIDDEN, "origin not allowed\n"))
}

/// The client's address: the peer's, or, when the peer is a trusted proxy,
/// the last one in the trusted header (the one that proxy added).
pub fn client_ip(req: &Request<Incoming>, peer: SocketAddr, limits: &LimitsConfig) -> IpAddr {
    let peer_ip = peer.ip().to_canonical();
    let Some(header) = &limits.trusted_proxy_header else { return peer_ip };
    if !limits.trusted_proxies.iter().any(|p| p.to_canonical() == peer_ip) {
        return peer_ip;
    }
    req.headers()
        .get_all(header.as_str())
        .iter()
        .next_back()
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.rsplit(',').next())
        .and_then(|v| v.trim().parse::<IpAddr>().ok())
        .unwrap_or(peer_ip)
}

/// A registered connection, from its registration to its end.
pub struct Connection {
    pub node: Arc<Node>,
    pub id: ConnId,
    pub outbound: Outbound,
    pub liveness: Arc<Liveness>,
    /// `websocket` or `sse`: the label of its gauge.
    transport: &'static str,
    // Dropped with the connection, in this order: out of the node's list,
    // then its place under the limits given back.
    _registration: Registration,
    _permit: Permit,
}

impl Connection {
    /// Registers a connection in the place `permit` holds; returns it and
    /// the writer's end of its outbound queue.
    pub fn open(node: &Arc<Node>, permit: Permit, transport: &'static str) -> (Connection, OutboundQueue) {
        let id = node.next_conn_id();
        let client = &node.config.client;
        let (outbound, queue) = outbound_with_replies(client.max_queue_bytes, client.max_reply_bytes);
        let registration = node.connections.register(id, outbound.clone());
        metric::transport_connections(transport).increment(1.0);
        if node.is_draining() {
            // The drain took its list of connections before this one was in it.
            outbound.close(Close::Server(CloseCode::GoingAway));
        }
        let connection = Connection {
            node: node.clone(),
            id,
            outbound,
            liveness: Arc::new(Liveness::new()),
            transport,
            _registration: registration,
            _permit: permit,
        };
        (connection, queue)
    }

    /// The protocol session this connection carries; its server operations
    /// come through `ops`.
    pub fn session(&self, protocol: Protocol, handshake: Handshake, ops: OpSender) -> ClientSession {
        let (node, outbound, liveness) = (self.node.clone(), self.outbound.clone(), self.liveness.clone());
        ClientSession::new(node, self.id, protocol, outbound, liveness, handshake, ops)
    }

    /// Counts the end of the connection, by how it closed.
    pub fn finish(self) {
        metric::transport_connections(self.transport).decrement(1.0);
        metric::connections_closed(close_label(self.outbound.closing())).increment(1);
    }
}

/// The close of a connection whose token expired (`liveness` says until
/// when it holds; a refresh moves it): 4001, counted. Both transports'
/// timers ask it.
pub fn expiry(liveness: &Liveness, now: tokio::time::Instant) -> Option<Close> {
    if liveness.expires_at().is_none_or(|at| at > now) {
        return None;
    }
    metric::token_expirations().increment(1);
    Some(Close::Server(CloseCode::Unauthorized))
}

/// Runs a closed connection's session end (saving it for resume, leaving
/// its channels and presence) for at most `bound`: that work goes to the
/// broker, and a broker that does not answer must not keep the tasks of
/// every connection it closed (what is left undone expires by TTL, and the
/// broker's own queue still unsubscribes).
pub async fn end_within(bound: std::time::Duration, end: impl Future<Output = ()>) {
    if tokio::time::timeout(bound, end).await.is_err() {
        metric::session_end_timeouts().increment(1);
    }
}

/// The frames that end a connection the server closed (`Close::Server` or
/// `Close::Announced`, with its code): what was queued before the close
/// (a slow consumer's backlog is dropped, unless the session announced the
/// close with a `disconnect` of its own), then the `disconnect` push where
/// the session did not send one and the connection speaks the protocol
/// (`protocol` is None for echo connections). `None` for a close that was
/// not the server's: the transport answers the peer, or writes nothing.
pub fn last_frames(
    close: Close,
    queue: &mut OutboundQueue,
    protocol: Option<Protocol>,
) -> Option<(CloseCode, Vec<OutFrame>)> {
    let (code, announced) = match close {
        Close::Server(code) => (code, false),
        Close::Announced(code) => (code, true),
        Close::Peer(_) | Close::Dropped => return None,
    };
    let mut last = Vec::new();
    if code != CloseCode::SlowConsumer || announced {
        queue.take_queued(&mut last, usize::MAX);
    }
    if let Some(protocol) = protocol
        && !announced
    {
        last.push(OutFrame::control(codec::disconnect(protocol, code, "")));
    }
    Some((code, last))
}

/// The `code` label of `switchyard_connections_closed_total`: the close
/// code, `1005` when the peer gave none, `1006` when the socket just went
/// away, `other` for peer codes outside the protocol's table.
fn close_label(close: Option<Close>) -> &'static str {
    match close {
        Some(Close::Server(code) | Close::Announced(code)) => code.label(),
        Some(Close::Peer(None)) => "1005",
        Some(Close::Peer(Some(code))) => CloseCode::from_code(code).map_or("other", CloseCode::label),
        Some(Close::Dropped) | None => "1006",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use switchyard_core::outbound::outbound;

    fn queued(text: &'static str) -> OutFrame {
        OutFrame::control(Bytes::from_static(text.as_bytes()))
    }

    /// The last frames of a queue holding one frame, closed with `close`.
    fn ending(close: Close, protocol: Option<Protocol>) -> Option<(CloseCode, Vec<Bytes>)> {
        let (tx, mut rx) = outbound(1 << 20);
        tx.push(queued("backlog")).unwrap();
        last_frames(close, &mut rx, protocol)
            .map(|(code, frames)| (code, frames.iter().map(|f| f.bytes().clone()).collect()))
    }

    #[test]
    fn the_backlog_goes_first_then_the_disconnect() {
        let (code, frames) = ending(Close::Server(CloseCode::GoingAway), Some(Protocol::Json)).unwrap();
        assert_eq!(code, CloseCode::GoingAway);
        assert_eq!(frames, [Bytes::from_static(b"backlog"), codec::disconnect(Protocol::Json, code, "")]);
    }

    #[test]
    fn a_slow_consumer_loses_its_backlog_unless_the_close_was_announced() {
        let (_, frames) = ending(Close::Server(CloseCode::SlowConsumer), Some(Protocol::Json)).unwrap();
        assert_eq!(frames, [codec::disconnect(Protocol::Json, CloseCode::SlowConsumer, "")]);
        let (_, frames) = ending(Close::Announced(CloseCode::SlowConsumer), Some(Protocol::Json)).unwrap();
        assert_eq!(frames, [Bytes::from_static(b"backlog")], "announced: its disconnect was queued already");
    }

    #[test]
    fn echo_connections_get_no_disconnect_and_peer_closes_nothing() {
        let (_, frames) = ending(Close::Server(CloseCode::GoingAway), None).unwrap();
        assert_eq!(frames, [Bytes::from_static(b"backlog")]);
        assert!(ending(Close::Peer(Some(1000)), Some(Protocol::Json)).is_none());
        assert!(ending(Close::Dropped, Some(Protocol::Json)).is_none());
    }
}

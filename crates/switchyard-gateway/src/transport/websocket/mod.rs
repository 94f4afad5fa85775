//! `/ws`: one WebSocket connection, from the upgrade to the close.
//!
//! Two tasks per connection: this one reads frames and runs the client's
//! messages and, between them, the server's operations for this
//! connection, in order (through [`Handler`]), and the connection's timed
//! duties ([`timers`]: heartbeats, deadlines); the writer ([`writer`]) owns
//! the write half and is the only one to write, so pings, pongs, replies,
//! publications and close frames all go through the connection's outbound
//! queue.
//!
//! # Layout
//! - [`upgrade`] (here): the HTTP upgrade, admitted by the lifecycle;
//!   [`upgrade_pusher`] for Pusher clients at `/app/{key}`.
//! - [`reader`]: frames in, messages reassembled and checked.
//! - [`handler`]: what speaks on the connection: the protocol, or echo.
//! - [`timers`]: heartbeat, the deadline to connect, the token's expiry.
//! - [`writer`]: the outbound queue out, batched; the close.

mod extension;
mod handler;
mod reader;
mod timers;
mod writer;

use super::lifecycle::{self, Connection};
use crate::handshake::Handshake;
use crate::http::{self, Body};
use crate::node::Node;
use crate::node::connections::Permit;
use crate::pusher_session::PusherSession;
use crate::query;
use extension::Deflate;
use handler::Handler;
pub use handler::Speaks;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, SEC_WEBSOCKET_EXTENSIONS, SEC_WEBSOCKET_PROTOCOL};
use hyper::upgrade::Upgraded;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::sync::Arc;
use switchyard_core::config::AuthConfig;
use switchyard_core::metric;
use switchyard_core::protocol::Protocol;
use switchyard_core::wsframe;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite};
use tokio::net::TcpStream;
use tokio_util::task::TaskTracker;
use tracing::debug;

/// Upgrades to a WebSocket speaking `speaks` (the protocol of the
/// subprotocol negotiated, or echo), admitted by the lifecycle; the
/// connection runs on `tasks`.
pub fn upgrade(
    mut req: Request<Incoming>,
    peer: SocketAddr,
    node: &Arc<Node>,
    tasks: &TaskTracker,
    echo: bool,
) -> Response<Body> {
    if req.method() != Method::GET {
        return http::text(StatusCode::METHOD_NOT_ALLOWED, "GET /ws with a WebSocket upgrade\n");
    }
    if !fastwebsockets::upgrade::is_upgrade_request(&req) {
        return upgrade_required();
    }
    let permit = match lifecycle::admit(&req, peer, node) {
        Ok(permit) => permit,
        Err(refused) => return *refused,
    };
    let offered = if echo { None } else { req.headers().get(SEC_WEBSOCKET_PROTOCOL).map(|v| v.to_str().unwrap_or("")) };
    let protocol = match offered {
        None => Protocol::Json,
        Some(offered) => match Protocol::negotiate(offered) {
            Some(protocol) => protocol,
            None => {
                metric::connections_refused("bad_request").increment(1);
                return http::text(
                    StatusCode::BAD_REQUEST,
                    format!("no supported subprotocol: use {} or {}\n", Protocol::JSON_NAME, Protocol::PROTOBUF_NAME),
                );
            }
        },
    };
    let negotiated = offered.is_some();
    let (mut response, upgraded, deflate) = match accept(&mut req, node.config.client.compression) {
        Ok(accepted) => accepted,
        Err(refused) => return *refused,
    };
    let token = handshake_token(&req, &node.config.auth);
    let handshake = crate::proxy::handshake(&node.proxies, "websocket", token, req.headers());
    let node = node.clone();
    tasks.spawn(async move {
        match upgraded.await {
            Ok(ws) => {
                let speaks = if echo { Speaks::Echo } else { Speaks::Protocol(protocol) };
                run_upgraded(node, ws.into_inner().into_inner(), speaks, deflate, handshake, permit).await
            }
            Err(e) => debug!(error = %e, "upgrade did not complete"),
        }
    });
    if negotiated {
        response.headers_mut().insert(SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static(protocol.name()));
    }
    response
}

/// The answer to a request for a WebSocket endpoint that is no upgrade.
fn upgrade_required() -> Response<Body> {
    let mut response = http::text(StatusCode::UPGRADE_REQUIRED, "this endpoint speaks WebSocket only\n");
    response.headers_mut().insert("upgrade", HeaderValue::from_static("websocket"));
    response
}

/// An accepted handshake: the response to send, the upgrade to await, and
/// the compression negotiated.
type Accepted = (Response<Body>, fastwebsockets::upgrade::UpgradeFut, Option<Deflate>);

/// The handshake both doors share: permessage-deflate where `compress` is
/// on and the client offers it, then the upgrade. The response carries the
/// extension's answer (the caller adds what else it negotiated); a request
/// that is no valid handshake gets 400, counted.
fn accept(req: &mut Request<Incoming>, compress: bool) -> Result<Accepted, Box<Response<Body>>> {
    let offers = req.headers().get_all(SEC_WEBSOCKET_EXTENSIONS);
    let deflate = match compress {
        true => Deflate::negotiate(offers.iter().map(|v| v.to_str().unwrap_or(""))),
        false => None,
    };
    let (response, upgraded) = fastwebsockets::upgrade::upgrade(req).map_err(|e| {
        metric::connections_refused("bad_request").increment(1);
        Box::new(http::text(StatusCode::BAD_REQUEST, format!("bad WebSocket handshake: {e}\n")))
    })?;
    let (mut parts, _) = response.into_parts();
    if let Some(deflate) = deflate {
        parts.headers.insert(SEC_WEBSOCKET_EXTENSIONS, deflate.response());
    }
    Ok((Response::from_parts(parts, Body::default()), upgraded, deflate))
}

/// `GET /app/{key}`: a Pusher client's WebSocket, admitted by the
/// lifecycle like any other. An unknown key (4001), a protocol version we
/// do not speak (4007, or 4008 when none is given) and an app over its
/// `max_connections` (4004) are told in `pusher:error` and closed, as
/// Pusher's clients expect, once the upgrade is done.
pub fn upgrade_pusher(
    mut req: Request<Incoming>,
    peer: SocketAddr,
    node: &Arc<Node>,
    tasks: &TaskTracker,
) -> Response<Body> {
    if req.method() != Method::GET || !fastwebsockets::upgrade::is_upgrade_request(&req) {
        return upgrade_required();
    }
    let key = req.uri().path().strip_prefix("/app/").unwrap_or("").to_owned();
    let version = query::param(req.uri().query(), "protocol").and_then(|v| v.parse::<u32>().ok());
    let app = node.config.pusher.apps.iter().position(|a| a.key == key);
    let refusal = match (app, version) {
        (None, _) => Some((4001, format!("app key {:?} does not exist", key.chars().take(64).collect::<String>()))),
        (_, None) => Some((4008, "no protocol version given (protocol=7)".to_owned())),
        (_, Some(v)) if !(5..=7).contains(&v) => {
            Some((4007, format!("protocol version {v} is not supported (5 to 7)")))
        }
        (Some(app), _) => {
            let max = node.config.pusher.apps[app].max_connections;
            (max > 0 && node.pusher_connections(app) >= max)
                .then(|| (4004, "the app is over its connection quota".to_owned()))
        }
    };
    let permit = match refusal {
        Some(_) => None,
        None => match lifecycle::admit(&req, peer, node) {
            Ok(permit) => Some(permit),
            Err(refused) => return *refused,
        },
    };
    // A refused client is told why in one frame: nothing worth compressing.
    let (response, upgraded, deflate) = match accept(&mut req, node.config.client.compression && refusal.is_none()) {
        Ok(accepted) => accepted,
        Err(refused) => return *refused,
    };
    let handshake = crate::proxy::handshake(&node.proxies, "websocket", None, req.headers());
    let node = node.clone();
    tasks.spawn(async move {
        let ws = match upgraded.await {
            Ok(ws) => ws,
            Err(e) => return debug!(error = %e, "upgrade did not complete"),
        };
        match (refusal, permit, app) {
            (Some((code, message)), _, _) => refuse_pusher(ws.into_inner().into_inner(), code, &message).await,
            (None, Some(permit), Some(app)) => {
                run_upgraded(node, ws.into_inner().into_inner(), Speaks::Pusher(app), deflate, handshake, permit).await
            }
            _ => {}
        }
    });
    response
}

/// Tells a Pusher client why it cannot stay (`pusher:error` with `code`)
/// and closes with that code.
async fn refuse_pusher(upgraded: Upgraded, code: u16, message: &str) {
    use tokio::io::AsyncWriteExt as _;
    metric::pusher_errors(match code {
        4001 => "4001",
        4004 => "4004",
        4007 => "4007",
        _ => "4008",
    })
    .increment(1);
    let mut io = TokioIo::new(upgraded);
    let mut bytes = wsframe::text(switchyard_core::pusher::error_json(Some(code), message).as_bytes()).to_vec();
    bytes.extend_from_slice(&wsframe::close(code, ""));
    if io.write_all(&bytes).await.is_ok() {
        let _ = io.flush().await;
        let _ = io.shutdown().await;
    }
}

/// A connect token in the request that opens a connection: the configured
/// query parameter, else the configured cookie.
pub fn handshake_token(req: &Request<Incoming>, auth: &AuthConfig) -> Option<String> {
    let from_query = auth.token_query_param.as_ref().and_then(|name| query::param(req.uri().query(), name));
    let from_cookie = || query::cookie(req.headers(), auth.token_cookie.as_ref()?).map(std::borrow::Cow::Borrowed);
    from_query.or_else(from_cookie).filter(|t| !t.is_empty()).map(|t| t.into_owned())
}

/// Serves one upgraded connection until it closes. A plain TCP connection
/// is taken back from hyper and split into its owned halves: reads and
/// writes then go straight to the socket, not through hyper's boxed stream
/// and a split's lock on every call (a TLS one keeps the generic path).
async fn run_upgraded(
    node: Arc<Node>,
    upgraded: Upgraded,
    speaks: Speaks,
    deflate: Option<Deflate>,
    handshake: Handshake,
    permit: Permit,
) {
    match upgraded.downcast::<TokioIo<TcpStream>>() {
        Ok(parts) => {
            let (read, write) = parts.io.into_inner().into_split();
            // What the client sent right behind its handshake, hyper read
            // already: copied out, since `read_buf` shares hyper's whole read
            // buffer (kilobytes a connection would keep for nothing).
            let early = bytes::Bytes::copy_from_slice(&parts.read_buf);
            drop(parts.read_buf);
            let read = std::io::Cursor::new(early).chain(read);
            run(node, read, write, speaks, deflate, handshake, permit).await
        }
        Err(upgraded) => {
            let (read, write) = tokio::io::split(TokioIo::new(upgraded));
            // Boxed: held in place, this second form of the session would
            // add its size to the task of every plain connection too.
            Box::pin(run(node, read, write, speaks, deflate, handshake, permit)).await
        }
    }
}

/// Serves one connection, given its two halves, until it closes.
async fn run<R, W>(
    node: Arc<Node>,
    read: R,
    write: W,
    speaks: Speaks,
    deflate: Option<Deflate>,
    handshake: Handshake,
    permit: Permit,
) where
    R: AsyncRead + Send + Unpin + 'static,
    W: AsyncWrite + Send + Unpin + 'static,
{
    let config = node.config.clone();
    let (connection, queue) = Connection::open(&node, permit, "websocket");
    let protocol = match speaks {
        Speaks::Protocol(protocol) => Some(protocol),
        Speaks::Pusher(_) => Some(Protocol::Pusher),
        Speaks::Echo => {
            connection.liveness.mark_connected(); // echo connections have no connect step
            None
        }
    };
    let mut writer = tokio::spawn(writer::run(write, queue, protocol, node.write_clock.clone()));
    let (ops, mut ops_rx) = lifecycle::ops_queue();
    let compresses = deflate.is_some_and(|d| d.compresses());
    let mut handler = match speaks {
        Speaks::Protocol(protocol) => {
            Handler::Session(Box::new(connection.session(protocol, handshake, ops).with_deflate(compresses)))
        }
        Speaks::Pusher(app) => {
            let (outbound, liveness) = (connection.outbound.clone(), connection.liveness.clone());
            Handler::Pusher(Box::new(PusherSession::new(
                node.clone(),
                connection.id,
                app,
                outbound,
                liveness,
                ops,
                compresses,
            )))
        }
        Speaks::Echo => Handler::Echo(connection.outbound.clone(), deflate.filter(Deflate::compresses).is_some()),
    };
    let outbound = &connection.outbound;
    // Once a close is decided, the peer has `close_timeout` to answer it
    // before the socket is dropped. (Both futures are made in place: bound
    // to a local first, each would take its room in this task twice.)
    tokio::select! {
        close = reader::run(read, deflate.is_some(), &mut handler, &mut ops_rx, &connection.liveness, &config.client) => { outbound.close(close); }
        () = teardown(outbound, config.client.close_timeout) => {}
    }
    if tokio::time::timeout(config.client.close_timeout, &mut writer).await.is_err() {
        writer.abort();
    }
    // The connection is over: counted as closed now, whatever the session's
    // last broker calls take.
    connection.finish();
    lifecycle::end_within(config.client.close_timeout, Box::pin(handler.end())).await;
}

/// Resolves `close_timeout` after a close was requested.
async fn teardown(outbound: &switchyard_core::outbound::Outbound, close_timeout: std::time::Duration) {
    outbound.closed().await;
    tokio::time::sleep(close_timeout).await;
}

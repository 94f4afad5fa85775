//! The accept loop and the HTTP routes of a node.

use crate::admin;
use crate::api;
use crate::command;
use crate::connections::NoRoom;
use crate::connections::Permit;
use crate::drain;
use crate::metrics as recorder;
use crate::node::Node;
use crate::origin;
use crate::query;
use crate::registry;
use crate::session::{self, Speaks};
use crate::sse;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ORIGIN, SEC_WEBSOCKET_PROTOCOL};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use metrics_exporter_prometheus::PrometheusHandle;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use switchyard_core::config::{AuthConfig, LimitsConfig};
use switchyard_core::metric;
use switchyard_core::protocol::Protocol;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

type Body = sse::Body;

/// What a listener serves.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    /// `/ws`, `/healthz`, `/readyz`, and `/metrics` when there is no internal listener.
    Public { metrics: bool },
    /// `/metrics`, `/healthz`, `/readyz`.
    Internal,
}

/// Serves `node` on `public` (and `internal`, if given) until `shutdown`
/// resolves, then drains: `/readyz` turns 503 and upgrades are refused
/// (plain HTTP is still served, on both listeners), connections are closed
/// with 1001 over the drain period, and this returns once they are gone or
/// the grace period is over.
pub async fn serve(
    node: Arc<Node>,
    public: TcpListener,
    internal: Option<TcpListener>,
    shutdown: impl Future<Output = ()>,
) {
    let handle = recorder::install();
    let stop_upkeep = CancellationToken::new();
    tokio::spawn(recorder::upkeep(handle.clone(), stop_upkeep.clone()));
    metric::ready().set(1.0);
    metric::connections_limit().set(node.config.limits.max_connections as f64);

    let sessions = TaskTracker::new();
    let stop_public = CancellationToken::new();
    let stop_internal = CancellationToken::new();
    let role = Role::Public { metrics: internal.is_none() };
    let address = public.local_addr().map(|a| a.to_string()).unwrap_or_default();
    let public_loop =
        tokio::spawn(accept_loop(public, role, node.clone(), handle.clone(), sessions.clone(), stop_public.clone()));
    if let Some(internal) = internal {
        tokio::spawn(accept_loop(
            internal,
            Role::Internal,
            node.clone(),
            handle.clone(),
            sessions.clone(),
            stop_internal.clone(),
        ));
    }

    let stop_heartbeat = CancellationToken::new();
    tokio::spawn(registry::heartbeat(node.clone(), address, stop_heartbeat.clone()));
    tokio::spawn(command::presence::keep_fresh(node.clone(), stop_heartbeat.clone()));
    tokio::spawn(crate::rebalance::run(node.clone(), stop_heartbeat.clone()));
    tokio::spawn(command::users::listen(node.clone(), stop_internal.clone()));
    tokio::spawn(command::publish::send_receipts(node.clone(), stop_internal.clone()));
    if let Some(tls) = node.tls.clone() {
        tokio::spawn(tls.watch(node.config.tls.reload_interval, stop_heartbeat.clone()));
    }

    shutdown.await;
    stop_heartbeat.cancel();
    let shutdown = &node.config.shutdown;
    info!(connections = node.connections.len(), drain_period = ?shutdown.drain_period, "draining");
    let deadline = tokio::time::Instant::now() + shutdown.grace_period;
    node.start_draining();
    // The public listener keeps answering plain HTTP while the node drains:
    // `/readyz` says 503 and upgrades are refused, so balancers that probe
    // the public port see the drain, and `/metrics` stays readable.
    drain::close_all(&node, shutdown.drain_period).await;
    sessions.close();
    if tokio::time::timeout_at(deadline, sessions.wait()).await.is_err() {
        warn!(left = node.connections.len(), "grace period over with connections still open");
    }
    stop_public.cancel();
    let _ = public_loop.await;
    stop_internal.cancel();
    stop_upkeep.cancel();
    info!("stopped");
}

async fn accept_loop(
    listener: TcpListener,
    role: Role,
    node: Arc<Node>,
    handle: PrometheusHandle,
    sessions: TaskTracker,
    stop: CancellationToken,
) {
    loop {
        let (stream, peer) = tokio::select! {
            () = stop.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let node = node.clone();
        let handle = handle.clone();
        let sessions = sessions.clone();
        tokio::spawn(async move {
            let tls = match role {
                Role::Public { .. } => node.tls.clone(),
                Role::Internal => None,
            };
            match tls {
                None => serve_http(stream, peer, role, node, handle, sessions).await,
                Some(tls) => {
                    // The TLS handshake counts against the same timeout as the HTTP one.
                    let timeout = node.config.limits.handshake_timeout;
                    match tokio::time::timeout(timeout, tls.acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => serve_http(stream, peer, role, node, handle, sessions).await,
                        Ok(Err(e)) => {
                            metric::tls_handshake_failures().increment(1);
                            debug!(%peer, error = %e, "TLS handshake failed");
                        }
                        Err(_) => {
                            metric::tls_handshake_failures().increment(1);
                            debug!(%peer, "TLS handshake timed out");
                        }
                    }
                }
            }
        });
    }
}

/// Serves HTTP/1.1 (and WebSocket upgrades) on one accepted connection.
async fn serve_http<I>(
    io: I,
    peer: SocketAddr,
    role: Role,
    node: Arc<Node>,
    handle: PrometheusHandle,
    sessions: TaskTracker,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let timeout = node.config.limits.handshake_timeout;
    let service = service_fn(move |req| {
        let node = node.clone();
        let handle = handle.clone();
        let sessions = sessions.clone();
        async move { Ok::<_, std::convert::Infallible>(route(req, peer, role, &node, &handle, &sessions).await) }
    });
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(timeout)
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    if let Err(e) = connection.await {
        debug!(%peer, error = %e, "http connection ended with an error");
    }
}

async fn route(
    req: Request<Incoming>,
    peer: SocketAddr,
    role: Role,
    node: &Arc<Node>,
    handle: &PrometheusHandle,
    sessions: &TaskTracker,
) -> Response<Body> {
    match (req.uri().path(), role) {
        ("/ws", Role::Public { .. }) => upgrade(req, peer, node, sessions, false),
        ("/echo", Role::Public { .. }) if node.config.testing.echo => upgrade(req, peer, node, sessions, true),
        (path, Role::Public { .. }) if path.starts_with("/api/") => match api::handle(req, node).await {
            Some(response) => response.map(|body| body.boxed()),
            None => text(StatusCode::NOT_FOUND, "not found\n"),
        },
        (path, role) if path == "/admin" || path.starts_with("/admin/") => {
            let served = matches!(role, Role::Internal) || node.config.admin.public;
            let answer = if served { admin::handle(req, node).await } else { None };
            answer.unwrap_or_else(|| text(StatusCode::NOT_FOUND, "not found\n"))
        }
        ("/sse", Role::Public { .. }) => open_stream(req, peer, node, sessions),
        ("/sse/command", Role::Public { .. }) => stream_command(req, node).await,
        ("/healthz", _) => text(StatusCode::OK, "ok\n"),
        ("/readyz", _) => readiness(node),
        ("/metrics", Role::Internal | Role::Public { metrics: true }) => {
            let mut response = text(StatusCode::OK, crate::metrics::render(handle));
            response
                .headers_mut()
                .insert("content-type", HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"));
            response
        }
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

fn readiness(node: &Node) -> Response<Body> {
    if node.is_draining() {
        text(StatusCode::SERVICE_UNAVAILABLE, "draining\n")
    } else if !node.stores.broker.is_ready() {
        text(StatusCode::SERVICE_UNAVAILABLE, format!("{} broker unreachable\n", node.stores.broker.kind()))
    } else {
        text(StatusCode::OK, "ready\n")
    }
}

/// Upgrades to a WebSocket speaking the switchyard protocol, or, with
/// `echo`, echoing (see `testing.echo`).
fn upgrade(
    mut req: Request<Incoming>,
    peer: SocketAddr,
    node: &Arc<Node>,
    sessions: &TaskTracker,
    echo: bool,
) -> Response<Body> {
    if req.method() != Method::GET {
        return text(StatusCode::METHOD_NOT_ALLOWED, "GET /ws with a WebSocket upgrade\n");
    }
    if !fastwebsockets::upgrade::is_upgrade_request(&req) {
        let mut response = text(StatusCode::UPGRADE_REQUIRED, "this endpoint speaks WebSocket only\n");
        response.headers_mut().insert("upgrade", HeaderValue::from_static("websocket"));
        return response;
    }
    if let Some(refused) = refuse_origin(&req, node).or_else(|| refuse_draining(node)) {
        return refused;
    }
    let offered = if echo { None } else { req.headers().get(SEC_WEBSOCKET_PROTOCOL).map(|v| v.to_str().unwrap_or("")) };
    let protocol = match offered {
        None => Protocol::Json,
        Some(offered) => match Protocol::negotiate(offered) {
            Some(protocol) => protocol,
            None => {
                metric::connections_refused("bad_request").increment(1);
                return text(
                    StatusCode::BAD_REQUEST,
                    format!("no supported subprotocol: use {} or {}\n", Protocol::JSON_NAME, Protocol::PROTOBUF_NAME),
                );
            }
        },
    };
    let negotiated = offered.is_some();
    let permit = match take_permit(&req, peer, node) {
        Ok(permit) => permit,
        Err(refused) => return *refused,
    };
    let (response, upgraded) = match fastwebsockets::upgrade::upgrade(&mut req) {
        Ok(pair) => pair,
        Err(e) => {
            metric::connections_refused("bad_request").increment(1);
            return text(StatusCode::BAD_REQUEST, format!("bad WebSocket handshake: {e}\n"));
        }
    };
    let token = upgrade_token(&req, &node.config.auth);
    let upgrade = crate::proxy::upgrade(&node.proxies, "websocket", token, req.headers());
    let node = node.clone();
    sessions.spawn(async move {
        match upgraded.await {
            Ok(ws) => {
                let speaks = if echo { Speaks::Echo } else { Speaks::Protocol(protocol) };
                session::run_upgraded(node, ws.into_inner().into_inner(), speaks, upgrade, permit).await
            }
            Err(e) => debug!(error = %e, "upgrade did not complete"),
        }
    });
    let (mut parts, _) = response.into_parts();
    if negotiated {
        parts.headers.insert(SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static(protocol.name()));
    }
    Response::from_parts(parts, Body::default())
}

/// The refusal of a browser origin that is not allowed (requests without
/// one pass).
fn refuse_origin(req: &Request<Incoming>, node: &Node) -> Option<Response<Body>> {
    let origin = req.headers().get(ORIGIN)?;
    if origin::is_allowed(&node.config.limits.allowed_origins, origin.to_str().unwrap_or("")) {
        return None;
    }
    metric::connections_refused("origin").increment(1);
    Some(text(StatusCode::FORBIDDEN, "origin not allowed\n"))
}

fn refuse_draining(node: &Node) -> Option<Response<Body>> {
    if !node.is_draining() {
        return None;
    }
    metric::connections_refused("draining").increment(1);
    Some(text(StatusCode::SERVICE_UNAVAILABLE, "draining: connect to another node\n"))
}

/// A place for a new client connection (WebSocket or stream): within the
/// address's connect rate and the node's and address's limits.
fn take_permit(req: &Request<Incoming>, peer: SocketAddr, node: &Node) -> Result<Permit, Box<Response<Body>>> {
    let ip = client_ip(req, peer, &node.config.limits);
    if let Some(limiter) = &node.connect_limiter
        && limiter.check_key(&ip).is_err()
    {
        metric::connections_refused("connect_rate").increment(1);
        return Err(Box::new(text(StatusCode::TOO_MANY_REQUESTS, "too many new connections from this address\n")));
    }
    node.connections.try_permit(ip).map_err(|no_room| {
        Box::new(match no_room {
            NoRoom::Node => {
                metric::connections_refused("limit").increment(1);
                text(StatusCode::SERVICE_UNAVAILABLE, "connection limit reached\n")
            }
            NoRoom::Address => {
                metric::connections_refused("ip_limit").increment(1);
                text(StatusCode::TOO_MANY_REQUESTS, "too many connections from this address\n")
            }
        })
    })
}

/// Lets a page of an allowed origin read the answer (CORS): streams and
/// their commands are plain HTTP, unlike WebSockets.
fn allow_origin(req_origin: Option<HeaderValue>, mut response: Response<Body>) -> Response<Body> {
    if let Some(origin) = req_origin {
        let headers = response.headers_mut();
        headers.insert("access-control-allow-origin", origin);
        headers.insert("access-control-allow-credentials", HeaderValue::from_static("true"));
        headers.insert("vary", HeaderValue::from_static("origin"));
    }
    response
}

/// `GET /sse`: checked like an upgrade, then the stream.
fn open_stream(req: Request<Incoming>, peer: SocketAddr, node: &Arc<Node>, sessions: &TaskTracker) -> Response<Body> {
    let origin = req.headers().get(ORIGIN).cloned();
    if req.method() != Method::GET {
        return text(StatusCode::METHOD_NOT_ALLOWED, "GET /sse\n");
    }
    if let Some(refused) = refuse_origin(&req, node).or_else(|| refuse_draining(node)) {
        return refused;
    }
    let permit = match take_permit(&req, peer, node) {
        Ok(permit) => permit,
        Err(refused) => return allow_origin(origin, *refused),
    };
    // The `token` parameter always works here: EventSource cannot send headers.
    let token =
        query::param(req.uri().query(), "token").map(str::to_owned).or_else(|| upgrade_token(&req, &node.config.auth));
    allow_origin(origin, sse::open(&req, node, token, permit, sessions))
}

/// `POST /sse/command` (and its CORS preflight).
async fn stream_command(req: Request<Incoming>, node: &Arc<Node>) -> Response<Body> {
    let origin = req.headers().get(ORIGIN).cloned();
    if let Some(refused) = refuse_origin(&req, node) {
        metric::sse_command_errors("origin").increment(1);
        return refused;
    }
    let response = match *req.method() {
        Method::POST => sse::command::handle(req, node).await,
        Method::OPTIONS => {
            let mut response = text(StatusCode::NO_CONTENT, "");
            let headers = response.headers_mut();
            headers.insert("access-control-allow-methods", HeaderValue::from_static("POST"));
            headers.insert("access-control-allow-headers", HeaderValue::from_static("content-type"));
            response
        }
        _ => text(StatusCode::METHOD_NOT_ALLOWED, "POST /sse/command\n"),
    };
    allow_origin(origin, response)
}

/// A connect token in the upgrade request: the configured query parameter,
/// else the configured cookie.
fn upgrade_token(req: &Request<Incoming>, auth: &AuthConfig) -> Option<String> {
    let from_query = auth.token_query_param.as_ref().and_then(|name| query::param(req.uri().query(), name));
    let from_cookie = || query::cookie(req.headers(), auth.token_cookie.as_ref()?);
    // JWTs are base64url and dots: nothing to percent-decode.
    from_query.or_else(from_cookie).filter(|t| !t.is_empty()).map(str::to_owned)
}

/// The client's address: the peer's, or, when the peer is a trusted proxy,
/// the last one in the trusted header (the one that proxy added).
fn client_ip(req: &Request<Incoming>, peer: SocketAddr, limits: &LimitsConfig) -> IpAddr {
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

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    let mut response = Response::new(Full::new(body.into()).boxed());
    *response.status_mut() = status;
    response
}

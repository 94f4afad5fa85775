//! The fallback transport: Server-Sent Events for clients that cannot hold
//! a WebSocket, with no sticky sessions.
//!
//! `GET /sse` opens a stream that carries the same JSON server frames as a
//! `/ws` connection, one per event; its session is a
//! [`crate::command::ClientSession`] like any other, on the same
//! connection lifecycle. The client's commands come by `POST /sse/command`
//! ([`crate::routes::sse_command`]) and reach the session through its queue
//! of server operations, on whichever node holds the stream.
//!
//! # Layout
//! - [`open`] (here): `GET /sse`, admitted like an upgrade, and the stream's session.
//! - [`writer`]: the stream's writer: outbound queue to events, heartbeats, close.

mod writer;

use super::lifecycle::{self, Connection};
use super::websocket::handshake_token;
use crate::http::{self, Body};
use crate::node::Node;
use crate::node::connections::Permit;
use crate::query;
use bytes::Bytes;
use http_body_util::BodyExt as _;
use hyper::body::{Frame, Incoming};
use hyper::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue, ORIGIN};
use hyper::{Method, Request, Response, StatusCode};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use switchyard_broker::StreamPosition;
use switchyard_core::metric;
use switchyard_core::protocol::Protocol;
use tokio::sync::mpsc;
use tokio_util::task::TaskTracker;

/// Chunks handed to hyper ahead of the socket, at most: enough that the
/// writer gathers the next batch while hyper writes the last; the outbound
/// queue, bounded in bytes like a WebSocket's, holds the rest.
const CHUNKS_AHEAD: usize = 4;

/// A response body fed by a channel: the stream's events as they come.
pub struct ChannelBody(mpsc::Receiver<Bytes>);

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|chunk| chunk.map(|bytes| Ok(Frame::data(bytes))))
    }
}

/// What the URL of `GET /sse` asks for.
struct StreamRequest {
    resume: String,
    channels: Vec<(String, Option<StreamPosition>)>,
}

/// `channel=NAME` (repeated) and `recover=EPOCH:OFFSET:NAME` (repeated:
/// subscribe recovering after that position), `resume=TOKEN`.
fn parse(query: Option<&str>) -> Result<StreamRequest, String> {
    let mut request =
        StreamRequest { resume: query::param(query, "resume").unwrap_or_default().into_owned(), channels: Vec::new() };
    for (key, value) in query.unwrap_or("").split('&').filter_map(|kv| kv.split_once('=')) {
        let value = query::decode(value);
        match key {
            "channel" => request.channels.push((value, None)),
            "recover" => {
                let mut parts = value.splitn(3, ':');
                let (Some(epoch), Some(offset), Some(channel)) = (parts.next(), parts.next(), parts.next()) else {
                    return Err(format!("recover={value}: EPOCH:OFFSET:CHANNEL"));
                };
                let offset =
                    offset.parse::<u64>().map_err(|_| format!("recover={value}: the offset is not a number"))?;
                request.channels.push((channel.to_owned(), Some(StreamPosition::new(epoch, offset))));
            }
            _ => {}
        }
    }
    Ok(request)
}

/// Lets a page of an allowed origin read the answer (CORS): streams and
/// their commands are plain HTTP, unlike WebSockets.
pub fn allow_origin(req_origin: Option<HeaderValue>, mut response: Response<Body>) -> Response<Body> {
    if let Some(origin) = req_origin {
        let headers = response.headers_mut();
        headers.insert("access-control-allow-origin", origin);
        headers.insert("access-control-allow-credentials", HeaderValue::from_static("true"));
        headers.insert("vary", HeaderValue::from_static("origin"));
    }
    response
}

/// `GET /sse`: admitted like an upgrade, then the stream and its session,
/// which runs on `tasks`.
pub fn open(req: Request<Incoming>, peer: SocketAddr, node: &Arc<Node>, tasks: &TaskTracker) -> Response<Body> {
    let origin = req.headers().get(ORIGIN).cloned();
    if req.method() != Method::GET {
        return http::text(StatusCode::METHOD_NOT_ALLOWED, "GET /sse\n");
    }
    let permit = match lifecycle::admit(&req, peer, node) {
        Ok(permit) => permit,
        // A refused origin is told so without CORS headers: its page may
        // not read the answer.
        Err(refused) if refused.status() == StatusCode::FORBIDDEN => return *refused,
        Err(refused) => return allow_origin(origin, *refused),
    };
    let request = match parse(req.uri().query()) {
        Ok(request) => request,
        Err(why) => {
            metric::connections_refused("bad_request").increment(1);
            return allow_origin(origin, http::text(StatusCode::BAD_REQUEST, format!("{why}\n")));
        }
    };
    // The `token` parameter always works here: EventSource cannot send headers.
    let token = query::param(req.uri().query(), "token")
        .map(|t| t.into_owned())
        .or_else(|| handshake_token(&req, &node.config.auth));
    let (chunks, body) = mpsc::channel(CHUNKS_AHEAD);
    // The token goes to the stream's connect; the headers to the proxies.
    let handshake = crate::proxy::handshake(&node.proxies, "sse", None, req.headers());
    tasks.spawn(run(node.clone(), token.unwrap_or_default(), handshake, request, chunks, permit));
    let mut response = Response::new(ChannelBody(body).boxed());
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // Proxies that buffer (nginx) must pass events through at once.
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    allow_origin(origin, response)
}

/// One stream, from its first event to its end.
async fn run(
    node: Arc<Node>,
    token: String,
    handshake: crate::handshake::Handshake,
    request: StreamRequest,
    chunks: mpsc::Sender<Bytes>,
    permit: Permit,
) {
    let (connection, queue) = Connection::open(&node, permit, "sse");
    connection.liveness.mark_connected();
    let config = node.config.clone();
    let writer =
        tokio::spawn(writer::run(queue, chunks, connection.liveness.clone(), config.clone(), node.write_clock.clone()));
    let (ops, mut ops_rx) = lifecycle::ops_queue();
    let mut session = connection.session(Protocol::Json, handshake, ops.clone());
    let entry = node.streams.insert(session.token(), ops);
    session.open_stream(token, request.resume, request.channels).await;
    loop {
        tokio::select! {
            // A close ends the stream at once: commands still queued are
            // answered 410 by their poster's wait.
            biased;
            () = connection.outbound.closed() => break,
            // The session holds a sender itself: the queue never ends first.
            op = ops_rx.recv() => session.apply(*op).await,
        }
    }
    drop(entry);
    let _ = tokio::time::timeout(config.client.close_timeout, writer).await;
    connection.finish();
    lifecycle::end_within(config.client.close_timeout, session.end()).await;
}

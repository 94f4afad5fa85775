//! The fallback transport: Server-Sent Events for clients that cannot hold
//! a WebSocket, with no sticky sessions.
//!
//! `GET /sse` opens a stream that carries the same JSON server frames as a
//! `/ws` connection, one per event; its session is a [`ClientSession`] like
//! any other. `POST /sse/command` runs the client's commands on whichever
//! node holds its stream: the session token names that node, and a node
//! that does not hold it asks that one over the broker.
//!
//! # Layout
//! - [`open`]: `GET /sse`, checked like an upgrade, and the stream's session.
//! - [`stream`]: the stream's writer: outbound queue to events, heartbeats, close.
//! - [`command`]: `POST /sse/command`, here or on the stream's node.

pub mod command;
pub mod stream;

use crate::command::{ClientSession, OpSender};
use crate::connections::Permit;
use crate::node::Node;
use crate::query;
use crate::session::liveness::Liveness;
use bytes::Bytes;
use http_body_util::BodyExt as _;
use http_body_util::combinators::BoxBody;
use hyper::body::{Frame, Incoming};
use hyper::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use hyper::{Request, Response, StatusCode};
use std::collections::HashMap;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use switchyard_broker::StreamPosition;
use switchyard_core::metric;
use switchyard_core::outbound::outbound;
use switchyard_core::protocol::Protocol;
use tokio::sync::mpsc;
use tokio_util::task::TaskTracker;

/// Events written ahead of the socket, at most (the outbound queue holds
/// the rest, bounded in bytes like a WebSocket's).
const CHUNKS_AHEAD: usize = 4;
/// Server operations waiting for a stream's session, at most.
const OPS_QUEUE: usize = 64;

/// The streams of this node, by session token: where their commands go.
#[derive(Default)]
pub struct SseSessions {
    streams: Mutex<HashMap<String, OpSender>>,
}

impl SseSessions {
    fn insert(&self, token: &str, ops: OpSender) {
        self.streams.lock().unwrap_or_else(|e| e.into_inner()).insert(token.to_owned(), ops);
    }

    fn remove(&self, token: &str) {
        self.streams.lock().unwrap_or_else(|e| e.into_inner()).remove(token);
    }

    /// Where the commands of the stream `token` go, if this node holds it.
    pub fn get(&self, token: &str) -> Option<OpSender> {
        self.streams.lock().unwrap_or_else(|e| e.into_inner()).get(token).cloned()
    }
}

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
        StreamRequest { resume: query::param(query, "resume").unwrap_or("").to_owned(), channels: Vec::new() };
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

pub type Body = BoxBody<Bytes, Infallible>;

fn plain(status: StatusCode, text: &str) -> Response<Body> {
    let mut response = Response::new(http_body_util::Full::new(Bytes::from(text.to_owned())).boxed());
    *response.status_mut() = status;
    response
}

/// `GET /sse`: the checks of an upgrade were made by the caller (origin,
/// rates, `permit`); this opens the stream and its session.
pub fn open(
    req: &Request<Incoming>,
    node: &Arc<Node>,
    token: Option<String>,
    permit: Permit,
    tasks: &TaskTracker,
) -> Response<Body> {
    let request = match parse(req.uri().query()) {
        Ok(request) => request,
        Err(why) => {
            metric::connections_refused("bad_request").increment(1);
            return plain(StatusCode::BAD_REQUEST, &format!("{why}\n"));
        }
    };
    let (chunks, body) = mpsc::channel(CHUNKS_AHEAD);
    // The token goes to the stream's connect; the headers to the proxies.
    let upgrade = crate::proxy::upgrade(&node.proxies, "sse", None, req.headers());
    let node = node.clone();
    tasks.spawn(run(node, token.unwrap_or_default(), upgrade, request, chunks, permit));
    let mut response = Response::new(ChannelBody(body).boxed());
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // Proxies that buffer (nginx) must pass events through at once.
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

/// One stream, from its first event to its end.
async fn run(
    node: Arc<Node>,
    token: String,
    upgrade: crate::upgrade::Upgrade,
    request: StreamRequest,
    chunks: mpsc::Sender<Bytes>,
    permit: Permit,
) {
    let _permit = permit;
    let config = node.config.clone();
    let id = node.next_conn_id();
    let (outbound, queue) = outbound(config.client.max_queue_bytes);
    let _registration = node.connections.register(id, outbound.clone());
    metric::transport_connections("sse").increment(1.0);
    let liveness = Arc::new(Liveness::new());
    liveness.mark_connected();
    if node.is_draining() {
        outbound.close(switchyard_core::outbound::Close::Server(switchyard_core::codes::CloseCode::GoingAway));
    }
    let writer = tokio::spawn(stream::run(queue, chunks, liveness.clone(), config.clone(), node.write_clock.clone()));
    let (ops, mut ops_rx) = crate::command::ops::op_queue(OPS_QUEUE);
    let mut session =
        ClientSession::new(node.clone(), id, Protocol::Json, outbound.clone(), liveness, upgrade, ops.clone());
    let session_token = session.token().to_owned();
    node.sse.insert(&session_token, ops);
    session.open_stream(token, request.resume, request.channels).await;
    loop {
        tokio::select! {
            () = outbound.closed() => break,
            // The session holds a sender itself: the queue never ends first.
            op = ops_rx.recv() => session.apply(*op).await,
        }
    }
    node.sse.remove(&session_token);
    let _ = tokio::time::timeout(config.client.close_timeout, writer).await;
    session.end().await;
    metric::transport_connections("sse").decrement(1.0);
    metric::connections_closed(crate::session::close_label(outbound.closing())).increment(1);
}

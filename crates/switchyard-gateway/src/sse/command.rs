//! `POST /sse/command` with `{"session": "<token>", "commands": [<client
//! frames>]}`: runs the commands, in order, on the session of the stream,
//! on whichever node holds it, and answers `{"result": {"replies": [...]}}`
//! (the replies also go down the stream, in their place among the pushes).
//!
//! The token is `<node>.<random>`: a node that does not hold the stream
//! sends the commands to that node's control channel and waits for its
//! answer. A stream that is gone (its node too) answers HTTP 410 with error
//! 108: the client reconnects and resumes.

use super::{Body, plain};
use crate::command::users::Pending;
use crate::command::{Refusal, ServerOp};
use crate::node::Node;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Request, Response, StatusCode};
use serde::Deserialize;
use serde_json::json;
use serde_json::value::RawValue;
use std::sync::Arc;
use std::time::Duration;
use switchyard_core::codes::ErrorCode;
use switchyard_core::metric;
use switchyard_proto::json::{FrameError, decode_client_frame};
use switchyard_proto::v1::control::Op;
use switchyard_proto::v1::{Control, SseCommands, SseReplies};
use tokio::sync::oneshot;

/// Commands in one request, at most.
const MAX_COMMANDS: usize = 100;

#[derive(Deserialize)]
struct CommandsBody<'a> {
    session: String,
    #[serde(borrow)]
    commands: Vec<&'a RawValue>,
}

fn error(status: StatusCode, code: ErrorCode, message: &str, reason: &'static str) -> Response<Body> {
    metric::sse_command_errors(reason).increment(1);
    let body = json!({"error": {"code": code.code(), "message": message}});
    json_response(status, body.to_string().into())
}

fn json_response(status: StatusCode, body: Bytes) -> Response<Body> {
    let mut response = Response::new(Full::new(body).boxed());
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// The node that holds the stream of `session`.
pub fn node_of(session: &str) -> Option<&str> {
    session.rsplit_once('.').map(|(node, _)| node).filter(|n| !n.is_empty())
}

pub async fn handle(req: Request<Incoming>, node: &Arc<Node>) -> Response<Body> {
    // A command is at most a client message; a request holds up to a hundred.
    let limit = node.config.client.max_message_size * 4;
    let bytes = match Limited::new(req.into_body(), limit).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            let message = format!("body over {limit} bytes");
            return error(StatusCode::PAYLOAD_TOO_LARGE, ErrorCode::LimitExceeded, &message, "too_large");
        }
        Err(_) => return plain(StatusCode::BAD_REQUEST, "cannot read the body\n"),
    };
    let body: CommandsBody<'_> = match serde_json::from_slice(&bytes) {
        Ok(body) => body,
        Err(e) => {
            let message = format!("invalid body: {e}");
            return error(StatusCode::BAD_REQUEST, ErrorCode::BadRequest, &message, "bad_request");
        }
    };
    if body.commands.is_empty() || body.commands.len() > MAX_COMMANDS {
        let message = format!("commands: 1 to {MAX_COMMANDS} frames");
        return error(StatusCode::BAD_REQUEST, ErrorCode::BadRequest, &message, "bad_request");
    }
    let Some(holder) = node_of(&body.session) else {
        return gone();
    };
    let commands: Vec<Bytes> = body.commands.iter().map(|c| Bytes::copy_from_slice(c.get().as_bytes())).collect();
    let replies = if holder == node.name {
        metric::sse_commands("local").increment(1);
        run_here(node, &body.session, commands).await
    } else {
        metric::sse_commands("remote").increment(1);
        match run_there(node, holder, &body.session, commands).await {
            Ok(replies) => replies,
            Err(response) => return response,
        }
    };
    let Some(replies) = replies else { return gone() };
    let mut out = Vec::with_capacity(64 + replies.iter().map(Bytes::len).sum::<usize>());
    out.extend_from_slice(b"{\"result\":{\"replies\":[");
    for (i, reply) in replies.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(reply);
    }
    out.extend_from_slice(b"]}}");
    json_response(StatusCode::OK, out.into())
}

fn gone() -> Response<Body> {
    let message = "no stream with this session: reconnect (and resume)";
    error(StatusCode::GONE, ErrorCode::NotAvailable, message, "unknown_session")
}

/// Runs `commands` on this node's stream `session`; `None` if there is none.
/// A command that is not a command is answered like on a WebSocket (107,
/// 104), in its place, and counts against the rate like any other.
async fn run_here(node: &Node, session: &str, commands: Vec<Bytes>) -> Option<Vec<Bytes>> {
    let ops = node.sse.get(session)?;
    let frames = commands
        .iter()
        .map(|command| {
            let text = std::str::from_utf8(command).unwrap_or("");
            decode_client_frame(text).map_err(|e| {
                let code = match e {
                    FrameError::Unknown { .. } => ErrorCode::UnknownCommand,
                    _ => ErrorCode::BadRequest,
                };
                (e.id(), Refusal::new(code, e.to_string()))
            })
        })
        .collect();
    let (reply, replies) = oneshot::channel();
    ops.send(ServerOp::Commands(frames, reply)).await.ok()?;
    let timeout = node.config.client.close_timeout.max(Duration::from_secs(10));
    tokio::time::timeout(timeout, replies).await.ok()?.ok()
}

/// Sends `commands` to `holder`, the node of the stream, and waits for its
/// answer.
async fn run_there(
    node: &Node,
    holder: &str,
    session: &str,
    commands: Vec<Bytes>,
) -> Result<Option<Vec<Bytes>>, Response<Body>> {
    let live = node
        .stores
        .registry
        .nodes()
        .await
        .map_err(|e| error(StatusCode::SERVICE_UNAVAILABLE, ErrorCode::NotAvailable, &e.to_string(), "broker"))?;
    if !live.iter().any(|n| n.name == holder) {
        return Ok(None);
    }
    let mut pending: Pending<'_> = node.requests.start(1);
    let request =
        SseCommands { request_id: pending.id, reply_to: node.name.clone(), session: session.to_owned(), commands };
    let sent = node.stores.broker.send_control(Some(holder), Control { op: Some(Op::SseCommands(request)) }).await;
    match sent {
        // Nobody listens on its channel: the node is gone (its registry
        // entry lingers until it expires).
        Ok(Some(0)) => return Ok(None),
        Ok(_) => {}
        Err(e) => {
            return Err(error(StatusCode::SERVICE_UNAVAILABLE, ErrorCode::NotAvailable, &e.to_string(), "broker"));
        }
    }
    let timeout = node.config.client.close_timeout.max(Duration::from_secs(10));
    match tokio::time::timeout(timeout, pending.answers.recv()).await {
        Ok(Some(Op::SseReplies(SseReplies { found: true, replies, .. }))) => Ok(Some(replies)),
        Ok(Some(_)) => Ok(None),
        _ => Err(error(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::NotAvailable,
            "the stream's node did not answer in time",
            "timeout",
        )),
    }
}

/// On the stream's node: runs a request that came over the broker, and
/// answers on the asking node's control channel.
pub async fn run_for(node: Arc<Node>, request: SseCommands) {
    let replies = run_here(&node, &request.session, request.commands).await;
    let answer =
        SseReplies { request_id: request.request_id, found: replies.is_some(), replies: replies.unwrap_or_default() };
    let message = Control { op: Some(Op::SseReplies(answer)) };
    if let Err(e) = node.stores.broker.send_control(Some(&request.reply_to), message).await {
        tracing::debug!(error = %e, "cannot answer an SSE command request");
    }
}

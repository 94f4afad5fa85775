//! `POST /sse/command` with `{"session": "<token>", "commands": [<client
//! frames>]}`: runs the commands, in order, on the session of the stream,
//! on whichever node holds it ([`crate::command::stream_commands`]), and
//! answers `{"result": {"replies": [...]}}` (the replies also go down the
//! stream, in their place among the pushes). A stream that is gone (its
//! node too) answers HTTP 410 with error 108: the client reconnects and
//! resumes.

use crate::command::Refusal;
use crate::command::stream_commands::{self, MAX_COMMANDS, Unanswered};
use crate::http::{self, Body};
use crate::node::Node;
use crate::transport::{lifecycle, sse};
use bytes::Bytes;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ORIGIN};
use hyper::{Method, Request, Response, StatusCode};
use serde::Deserialize;
use serde_json::value::RawValue;
use switchyard_core::codes::ErrorCode;
use switchyard_core::metric;

#[derive(Deserialize)]
struct CommandsBody<'a> {
    session: String,
    #[serde(borrow)]
    commands: Vec<&'a RawValue>,
}

/// `POST /sse/command`, and its CORS preflight.
pub async fn handle(req: Request<Incoming>, node: &Node) -> Response<Body> {
    let origin = req.headers().get(ORIGIN).cloned();
    if !lifecycle::origin_allowed(&req, node) {
        // A refused command, not a refused connection: counted here alone.
        metric::sse_command_errors("origin").increment(1);
        return http::text(StatusCode::FORBIDDEN, "origin not allowed\n");
    }
    let response = match *req.method() {
        Method::POST => run(req, node).await,
        Method::OPTIONS => {
            let mut response = http::text(StatusCode::NO_CONTENT, "");
            let headers = response.headers_mut();
            headers.insert("access-control-allow-methods", HeaderValue::from_static("POST"));
            headers.insert("access-control-allow-headers", HeaderValue::from_static("content-type"));
            response
        }
        _ => http::text(StatusCode::METHOD_NOT_ALLOWED, "POST /sse/command\n"),
    };
    sse::allow_origin(origin, response)
}

/// A refusal counted under `reason`.
fn error(refusal: &Refusal, reason: &'static str) -> Response<Body> {
    metric::sse_command_errors(reason).increment(1);
    http::refused(refusal)
}

async fn run(req: Request<Incoming>, node: &Node) -> Response<Body> {
    // A command is at most a client message; a request holds up to a hundred.
    let limit = node.config.client.max_message_size * 4;
    let bytes = match http::read_body(req, limit, node.config.limits.body_timeout).await {
        Ok(bytes) => bytes,
        Err(refusal) if refusal.code == ErrorCode::LimitExceeded => return error(&refusal, "too_large"),
        Err(refusal) => return error(&refusal, "bad_request"),
    };
    let body: CommandsBody<'_> = match http::parse(&bytes) {
        Ok(body) => body,
        Err(refusal) => return error(&refusal, "bad_request"),
    };
    if body.commands.is_empty() || body.commands.len() > MAX_COMMANDS {
        let refusal = Refusal::new(ErrorCode::BadRequest, format!("commands: 1 to {MAX_COMMANDS} frames"));
        return error(&refusal, "bad_request");
    }
    // Each command is a client message: the same limit as on a WebSocket.
    let max = node.config.client.max_message_size;
    if body.commands.iter().any(|c| c.get().len() > max) {
        let refusal = Refusal::new(ErrorCode::LimitExceeded, format!("a command over {max} bytes"));
        return error(&refusal, "too_large");
    }
    let commands: Vec<Bytes> = body.commands.iter().map(|c| Bytes::copy_from_slice(c.get().as_bytes())).collect();
    let replies = match stream_commands::run(node, &body.session, commands).await {
        Ok(replies) => replies,
        Err(Unanswered::Gone) => {
            metric::sse_command_errors("unknown_session").increment(1);
            let message = "no stream with this session: reconnect (and resume)";
            return http::refused_with(StatusCode::GONE, &Refusal::new(ErrorCode::NotAvailable, message));
        }
        Err(Unanswered::Broker(refusal)) => return error(&refusal, "broker"),
        Err(Unanswered::Timeout(holder)) => {
            let message = format!("the stream's node {holder} did not answer in time");
            return error(&Refusal::new(ErrorCode::NotAvailable, message), "timeout");
        }
    };
    let mut out = Vec::with_capacity(64 + replies.iter().map(Bytes::len).sum::<usize>());
    out.extend_from_slice(b"{\"result\":{\"replies\":[");
    for (i, reply) in replies.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(reply);
    }
    out.extend_from_slice(b"]}}");
    http::json_bytes(StatusCode::OK, out.into())
}

//! The HTTP API, for backends that would rather not talk to Redis:
//! `POST /api/publish`, `POST /api/broadcast`, `GET /api/history`,
//! `GET /api/nodes`.
//!
//! Off unless `api.key` is set; every request carries
//! `Authorization: apikey <key>`, compared in constant time. Answers are
//! `{"result": ...}` or `{"error": {"code", "message"}}` with the protocol's
//! error codes.

use crate::node::Node;
use crate::node::publish_options;
use crate::session::unix_micros;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};
use subtle::ConstantTimeEq as _;
use switchyard_broker::{BrokerError, StreamPosition};
use switchyard_core::channel::Channel;
use switchyard_core::codes::ErrorCode;
use switchyard_core::metric;
use switchyard_proto::v1::Envelope;

/// Most channels in one broadcast.
const MAX_BROADCAST: usize = 1000;

type Body = Full<Bytes>;

struct ApiError {
    status: StatusCode,
    code: ErrorCode,
    message: String,
}

impl ApiError {
    fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        let status = match code {
            ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorCode::NotAvailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::LimitExceeded => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::PermissionDenied => StatusCode::FORBIDDEN,
            ErrorCode::UnknownCommand => StatusCode::NOT_FOUND,
            _ => StatusCode::BAD_REQUEST,
        };
        ApiError { status, code, message: message.into() }
    }

    fn body(&self) -> Value {
        json!({"error": {"code": self.code.code(), "message": self.message}})
    }
}

impl From<BrokerError> for ApiError {
    fn from(error: BrokerError) -> Self {
        match error {
            BrokerError::Unavailable(m) => ApiError::new(ErrorCode::NotAvailable, m),
            BrokerError::Internal(m) => ApiError::new(ErrorCode::Internal, m),
        }
    }
}

#[derive(Deserialize)]
struct PublishBody<'a> {
    channel: String,
    #[serde(borrow)]
    data: &'a RawValue,
}

#[derive(Deserialize)]
struct BroadcastBody<'a> {
    channels: Vec<String>,
    #[serde(borrow)]
    data: &'a RawValue,
}

/// Serves `/api/...`; `None` when the API is off (the caller answers 404).
pub async fn handle(req: Request<Incoming>, node: &Node) -> Option<Response<Body>> {
    let key = node.config.api.key.as_deref()?;
    let endpoint = match (req.method(), req.uri().path()) {
        (&Method::POST, "/api/publish") => "publish",
        (&Method::POST, "/api/broadcast") => "broadcast",
        (&Method::GET, "/api/nodes") => "nodes",
        (&Method::GET, "/api/history") => "history",
        _ => return Some(answer("other", Err(ApiError::new(ErrorCode::UnknownCommand, "no such API endpoint")))),
    };
    let result = match authorized(&req, key) {
        Err(e) => Err(e),
        Ok(()) => match endpoint {
            "publish" => publish(req, node).await,
            "broadcast" => broadcast(req, node).await,
            "history" => history(&req, node).await,
            _ => nodes(node).await,
        },
    };
    Some(answer(endpoint, result))
}

fn authorized(req: &Request<Incoming>, key: &str) -> Result<(), ApiError> {
    let given = req.headers().get(AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("apikey "));
    match given {
        Some(given) if bool::from(given.as_bytes().ct_eq(key.as_bytes())) => Ok(()),
        _ => Err(ApiError::new(ErrorCode::Unauthorized, "missing or wrong API key (Authorization: apikey <key>)")),
    }
}

async fn body(req: Request<Incoming>, node: &Node) -> Result<Bytes, ApiError> {
    // A broadcast may name many channels; the data is bounded like a client's.
    let limit = node.config.client.max_message_size + MAX_BROADCAST * 260;
    match Limited::new(req.into_body(), limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            Err(ApiError::new(ErrorCode::LimitExceeded, format!("body over {limit} bytes")))
        }
        Err(e) => Err(ApiError::new(ErrorCode::BadRequest, format!("cannot read the body: {e}"))),
    }
}

async fn publish(req: Request<Incoming>, node: &Node) -> Result<Value, ApiError> {
    let bytes = body(req, node).await?;
    let body: PublishBody<'_> = serde_json::from_slice(&bytes).map_err(bad_json)?;
    let position = publish_one(node, &body.channel, body.data).await?;
    Ok(position_json(&position))
}

async fn broadcast(req: Request<Incoming>, node: &Node) -> Result<Value, ApiError> {
    let bytes = body(req, node).await?;
    let body: BroadcastBody<'_> = serde_json::from_slice(&bytes).map_err(bad_json)?;
    if body.channels.is_empty() || body.channels.len() > MAX_BROADCAST {
        return Err(ApiError::new(ErrorCode::BadRequest, format!("channels: 1 to {MAX_BROADCAST} names")));
    }
    let mut responses = Vec::with_capacity(body.channels.len());
    for channel in &body.channels {
        responses.push(match publish_one(node, channel, body.data).await {
            Ok(position) => json!({"channel": channel, "result": position_json(&position)}),
            Err(e) => {
                let mut error = e.body();
                error["channel"] = json!(channel);
                error
            }
        });
    }
    Ok(json!({"responses": responses}))
}

/// `GET /api/history?channel=C[&epoch=E&offset=N][&limit=L]`: the
/// publications after (E, N), or the newest L. 112 when history no longer
/// holds what follows (E, N).
async fn history(req: &Request<Incoming>, node: &Node) -> Result<Value, ApiError> {
    let query = req.uri().query().unwrap_or("");
    let param =
        |name: &str| query.split('&').filter_map(|kv| kv.split_once('=')).find(|(k, _)| *k == name).map(|(_, v)| v);
    let channel = param("channel").ok_or_else(|| ApiError::new(ErrorCode::BadRequest, "channel is required"))?;
    let parsed = Channel::parse(channel).map_err(|e| ApiError::new(ErrorCode::BadRequest, e.to_string()))?;
    let namespace = node.config.namespace(parsed.namespace()).ok_or_else(|| {
        ApiError::new(ErrorCode::UnknownChannel, format!("unknown namespace `{}`", parsed.namespace()))
    })?;
    if !namespace.keeps_history() {
        return Err(ApiError::new(ErrorCode::BadRequest, "this channel's namespace keeps no history"));
    }
    let number = |name: &str| -> Result<Option<u64>, ApiError> {
        param(name)
            .map(|v| {
                v.parse::<u64>().map_err(|_| ApiError::new(ErrorCode::BadRequest, format!("{name}: not a number")))
            })
            .transpose()
    };
    let limit = number("limit")?.map_or(namespace.history_size, |l| (l as usize).clamp(1, namespace.history_size));
    let since =
        number("offset")?.map(|offset| StreamPosition { epoch: param("epoch").unwrap_or("").to_owned(), offset });
    let history = node.broker.history(channel, since.as_ref(), limit, publish_options(namespace)).await?;
    if since.as_ref().is_some_and(|s| history.lost_after(s)) {
        return Err(ApiError::new(ErrorCode::Unrecoverable, ErrorCode::Unrecoverable.message()));
    }
    let publications: Vec<Value> = history
        .publications
        .iter()
        .map(|e| serde_json::to_value(switchyard_core::hub::publication(e)).unwrap_or_default())
        .collect();
    Ok(json!({"publications": publications, "epoch": history.position.epoch, "offset": history.position.offset}))
}

async fn nodes(node: &Node) -> Result<Value, ApiError> {
    let nodes = node.broker.nodes().await?;
    let nodes: Vec<Value> = nodes
        .into_iter()
        .map(|n| {
            let uptime = n.uptime_seconds();
            let mut value = serde_json::to_value(n).unwrap_or_default();
            value["uptime_seconds"] = json!(uptime);
            value
        })
        .collect();
    Ok(json!({"nodes": nodes}))
}

async fn publish_one(node: &Node, channel: &str, data: &RawValue) -> Result<StreamPosition, ApiError> {
    let parsed = Channel::parse(channel).map_err(|e| ApiError::new(ErrorCode::BadRequest, e.to_string()))?;
    let namespace = node.config.namespace(parsed.namespace()).ok_or_else(|| {
        ApiError::new(ErrorCode::UnknownChannel, format!("unknown namespace `{}`", parsed.namespace()))
    })?;
    let envelope = Envelope {
        channel: channel.to_owned(),
        data: Bytes::copy_from_slice(data.get().as_bytes()),
        published_at_us: unix_micros(),
        origin_node: node.name.clone(),
        ..Default::default()
    };
    let options = publish_options(namespace);
    let position = node.broker.publish(envelope, options).await?;
    metric::broker_published().increment(1);
    Ok(position)
}

fn position_json(position: &StreamPosition) -> Value {
    json!({"epoch": position.epoch, "offset": position.offset})
}

fn bad_json(error: serde_json::Error) -> ApiError {
    ApiError::new(ErrorCode::BadRequest, format!("invalid body: {error}"))
}

fn answer(endpoint: &'static str, result: Result<Value, ApiError>) -> Response<Body> {
    let (status, body) = match result {
        Ok(result) => (StatusCode::OK, json!({ "result": result })),
        Err(e) => (e.status, e.body()),
    };
    metric::api_requests(endpoint, status_label(status)).increment(1);
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// A bounded label for the statuses the API answers with.
fn status_label(status: StatusCode) -> &'static str {
    match status.as_u16() {
        200 => "200",
        400 => "400",
        401 => "401",
        403 => "403",
        404 => "404",
        413 => "413",
        503 => "503",
        _ => "500",
    }
}

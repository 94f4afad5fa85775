//! The HTTP API, for backends that would rather not talk to Redis:
//! `POST /api/publish`, `/api/broadcast`, `/api/presence`,
//! `/api/presence_stats`, `/api/channels`, `/api/subscribe`,
//! `/api/unsubscribe`, `/api/disconnect`; `GET /api/history`,
//! `/api/nodes`. Each translates JSON into a call of the command layer.
//!
//! Off unless `api.key` is set; every request carries
//! `Authorization: apikey <key>`, compared in constant time. Answers are
//! `{"result": ...}` or `{"error": {"code", "message"}}` with the protocol's
//! error codes.

use crate::command::{Refusal, channels, history, presence, publish, users};
use crate::http::{self, Body, parse};
use crate::node::Node;
use crate::query;
use bytes::Bytes;
use hyper::body::Incoming;
use hyper::header::AUTHORIZATION;
use hyper::{Request, Response};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};
use std::collections::HashMap;
use subtle::ConstantTimeEq as _;
use switchyard_broker::StreamPosition;
use switchyard_core::codes::ErrorCode;
use switchyard_core::metric;

/// Every endpoint (`/api/<name>`), and whether it takes `POST` (else `GET`).
const ENDPOINTS: &[(&str, bool)] = &[
    ("publish", true),
    ("broadcast", true),
    ("presence", true),
    ("presence_stats", true),
    ("channels", true),
    ("subscribe", true),
    ("unsubscribe", true),
    ("disconnect", true),
    ("nodes", false),
    ("history", false),
];

/// Most channels in one broadcast.
const MAX_BROADCAST: usize = 1000;

#[derive(Deserialize)]
struct PublishBody<'a> {
    channel: String,
    #[serde(borrow)]
    data: &'a RawValue,
    #[serde(default)]
    receipt: bool,
    #[serde(default)]
    idempotency_key: Option<String>,
    #[serde(default)]
    tags: HashMap<String, String>,
}

#[derive(Deserialize)]
struct BroadcastBody<'a> {
    channels: Vec<String>,
    #[serde(borrow)]
    data: &'a RawValue,
    #[serde(default)]
    tags: HashMap<String, String>,
}

#[derive(Deserialize)]
struct ChannelBody {
    channel: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ChannelsBody {
    prefix: String,
}

#[derive(Deserialize)]
struct UserChannelBody {
    user: String,
    channel: String,
}

#[derive(Deserialize)]
struct DisconnectBody {
    user: String,
    #[serde(default)]
    code: Option<u32>,
    #[serde(default)]
    reason: String,
}

/// Serves `/api/...`; `None` when the API is off (the caller answers 404).
pub async fn handle(req: Request<Incoming>, node: &Node) -> Option<Response<Body>> {
    let key = node.config.api.key.as_deref()?;
    let path = req.uri().path().strip_prefix("/api/").unwrap_or("");
    let Some(&(endpoint, post)) = ENDPOINTS.iter().find(|(name, _)| *name == path) else {
        let refusal = Refusal::new(ErrorCode::UnknownCommand, "no such API endpoint");
        return Some(answer("other", Err(refusal)));
    };
    let method = if post { "POST" } else { "GET" };
    if req.method().as_str() != method {
        let mut response = answer(endpoint, Err(Refusal::new(ErrorCode::BadRequest, format!("use {method}"))));
        *response.status_mut() = hyper::StatusCode::METHOD_NOT_ALLOWED;
        response.headers_mut().insert(hyper::header::ALLOW, hyper::header::HeaderValue::from_static(method));
        return Some(response);
    }
    let result = match authorized(&req, key) {
        Err(e) => Err(e),
        Ok(()) => run(endpoint, req, node).await,
    };
    Some(answer(endpoint, result))
}

async fn run(endpoint: &str, req: Request<Incoming>, node: &Node) -> Result<Value, Refusal> {
    match endpoint {
        "history" => history(&req, node).await,
        "nodes" => nodes(node).await,
        _ => {
            let bytes = body(req, node).await?;
            match endpoint {
                "publish" => {
                    let body: PublishBody<'_> = parse(&bytes)?;
                    let data = Bytes::copy_from_slice(body.data.get().as_bytes());
                    let (position, receipt) = publish::publish(
                        node,
                        &body.channel,
                        data,
                        body.tags,
                        None,
                        body.receipt,
                        body.idempotency_key.as_deref(),
                    )
                    .await?;
                    let mut answer = position_json(&position);
                    if let Some(receipt) = receipt {
                        answer["receipt"] = http::to_json(&receipt)?;
                    }
                    Ok(answer)
                }
                "broadcast" => broadcast(&bytes, node).await,
                "presence" => {
                    let body: ChannelBody = parse(&bytes)?;
                    http::to_json(&presence::presence(node, &body.channel).await?)
                }
                "presence_stats" => {
                    let body: ChannelBody = parse(&bytes)?;
                    http::to_json(&presence::presence_stats(node, &body.channel).await?)
                }
                "channels" => {
                    let body: ChannelsBody = if bytes.is_empty() { ChannelsBody::default() } else { parse(&bytes)? };
                    let survey = channels::channels(node, &body.prefix).await?;
                    let channels: serde_json::Map<String, Value> =
                        survey.channels.into_iter().map(|(c, n)| (c, json!({"num_clients": n}))).collect();
                    Ok(json!({"channels": channels, "unanswered": survey.unanswered}))
                }
                "subscribe" => {
                    let body: UserChannelBody = parse(&bytes)?;
                    users::subscribe_user(node, &body.user, &body.channel).await?;
                    Ok(json!({}))
                }
                "unsubscribe" => {
                    let body: UserChannelBody = parse(&bytes)?;
                    users::unsubscribe_user(node, &body.user, &body.channel).await?;
                    Ok(json!({}))
                }
                _ => {
                    let body: DisconnectBody = parse(&bytes)?;
                    users::disconnect_user(node, &body.user, body.code, &body.reason).await?;
                    Ok(json!({}))
                }
            }
        }
    }
}

fn authorized(req: &Request<Incoming>, key: &str) -> Result<(), Refusal> {
    let given = req.headers().get(AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("apikey "));
    match given {
        Some(given) if bool::from(given.as_bytes().ct_eq(key.as_bytes())) => Ok(()),
        _ => Err(Refusal::new(ErrorCode::Unauthorized, "missing or wrong API key (Authorization: apikey <key>)")),
    }
}

/// The body of an API request: the data is bounded like a client's
/// message, and a broadcast may add up to `MAX_BROADCAST` channel names
/// (255 bytes at most, 260 with their quotes and comma).
async fn body(req: Request<Incoming>, node: &Node) -> Result<Bytes, Refusal> {
    let limit = node.config.client.max_message_size + MAX_BROADCAST * 260;
    http::read_body(req, limit, node.config.limits.body_timeout).await
}

async fn broadcast(bytes: &[u8], node: &Node) -> Result<Value, Refusal> {
    let body: BroadcastBody<'_> = parse(bytes)?;
    if body.channels.is_empty() || body.channels.len() > MAX_BROADCAST {
        return Err(Refusal::new(ErrorCode::BadRequest, format!("channels: 1 to {MAX_BROADCAST} names")));
    }
    let data = Bytes::copy_from_slice(body.data.get().as_bytes());
    let mut responses = Vec::with_capacity(body.channels.len());
    for channel in &body.channels {
        responses.push(
            match publish::publish(node, channel, data.clone(), body.tags.clone(), None, false, None).await {
                Ok((position, _)) => json!({"channel": channel, "result": position_json(&position)}),
                Err(e) => {
                    let mut error = http::error_body(&e);
                    error["channel"] = json!(channel);
                    error
                }
            },
        );
    }
    Ok(json!({"responses": responses}))
}

/// `GET /api/history?channel=C[&epoch=E&offset=N][&limit=L]`: the
/// publications after (E, N), or the newest L. 112 when history no longer
/// holds what follows (E, N).
async fn history(req: &Request<Incoming>, node: &Node) -> Result<Value, Refusal> {
    let query = req.uri().query();
    let channel =
        query::param(query, "channel").ok_or_else(|| Refusal::new(ErrorCode::BadRequest, "channel is required"))?;
    let number = |name: &str| -> Result<Option<u64>, Refusal> {
        query::param(query, name)
            .map(|v| v.parse::<u64>().map_err(|_| Refusal::new(ErrorCode::BadRequest, format!("{name}: not a number"))))
            .transpose()
    };
    let limit = number("limit")?.unwrap_or(0) as usize;
    let epoch = query::param(query, "epoch").unwrap_or_default();
    let since = number("offset")?.map(|offset| StreamPosition::new(epoch.as_ref(), offset));
    let result = history::history(node, &channel, since, limit).await?;
    http::to_json(&result)
}

async fn nodes(node: &Node) -> Result<Value, Refusal> {
    Ok(json!({"nodes": super::nodes::to_json(node.stores.registry.nodes().await?)}))
}

fn position_json(position: &StreamPosition) -> Value {
    json!({"epoch": position.epoch, "offset": position.offset})
}

fn answer(endpoint: &'static str, result: Result<Value, Refusal>) -> Response<Body> {
    let response = http::answer(&result);
    metric::api_requests(endpoint, http::status_label(response.status())).increment(1);
    response
}

//! The Pusher HTTP API (`/apps/{app_id}/...`), signed as Pusher signs it
//! (`auth_key`, `auth_timestamp` within 600 s, `auth_version`, `body_md5`,
//! `auth_signature`), answered as Pusher answers, cluster-wide:
//!
//! - `POST events`, `POST batch_events`: events to every subscriber on
//!   every node (but the `socket_id` given);
//! - `GET channels` (`filter_by_prefix`, `info=user_count`),
//!   `GET channels/{name}` (`info=subscription_count,user_count`),
//!   `GET channels/{name}/users`: the survey of every node, and the
//!   presence store;
//! - `POST users/{id}/terminate_connections`: every connection of a
//!   signed-in user, on every node.
//!
//! Errors are plain text with Pusher's statuses: 400 malformed, 401 a bad
//! signature, 404 an unknown app or path, 413 a body or event over the
//! limit, 503 when the broker cannot be reached.

use crate::command::{channels, users};
use crate::http::{self, Body};
use crate::node::{Node, membership};
use crate::pusher::signing;
use crate::pusher_session::channels::presence_data;
use crate::pusher_session::publish::publish_event;
use crate::pusher_session::user_key;
use crate::query;
use crate::refusal::Refusal;
use bytes::Bytes;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use switchyard_broker::Announce;
use switchyard_core::clock::unix_seconds;
use switchyard_core::codes::ErrorCode;
use switchyard_core::config::PusherAppConfig;
use switchyard_core::{metric, pusher};

/// Channels one event may go to, at most (Pusher's limit).
const MAX_CHANNELS_PER_EVENT: usize = 100;
/// Events one batch may hold, at most (Pusher's limit).
const MAX_BATCH: usize = 10;

/// An API failure: its status and message.
struct Failure(StatusCode, String);

impl Failure {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Failure(status, message.into())
    }
}

impl From<Refusal> for Failure {
    fn from(refusal: Refusal) -> Self {
        let status = match refusal.code {
            ErrorCode::LimitExceeded => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::BadRequest | ErrorCode::UnknownChannel => StatusCode::BAD_REQUEST,
            _ => http::status_of(refusal.code),
        };
        Failure(status, refusal.message)
    }
}

/// Serves one request under `/apps/`.
pub async fn handle(req: Request<Incoming>, node: &Node) -> Response<Body> {
    let path = req.uri().path().to_owned();
    let rest = path.strip_prefix("/apps/").unwrap_or("");
    let (app_id, endpoint_path) = rest.split_once('/').unwrap_or((rest, ""));
    let endpoint = endpoint_label(req.method(), endpoint_path);
    let result = match node.config.pusher.app_by_id(app_id) {
        None => Err(Failure::new(StatusCode::NOT_FOUND, format!("unknown app {:?}", short(app_id)))),
        Some(app) => serve(req, node, app, &path, endpoint_path).await,
    };
    let (status, body) = match result {
        Ok(value) => (StatusCode::OK, value),
        Err(Failure(status, message)) => {
            metric::pusher_api_requests(endpoint, status.as_u16()).increment(1);
            return http::text(status, format!("{message}\n"));
        }
    };
    metric::pusher_api_requests(endpoint, status.as_u16()).increment(1);
    http::json(status, &body)
}

/// A bounded metric label for the endpoint a request asked for.
fn endpoint_label(method: &Method, path: &str) -> &'static str {
    let parts: Vec<&str> = path.split('/').collect();
    match (method, parts.as_slice()) {
        (&Method::POST, ["events"]) => "events",
        (&Method::POST, ["batch_events"]) => "batch_events",
        (&Method::GET, ["channels"]) => "channels",
        (&Method::GET, ["channels", _]) => "channel",
        (&Method::GET, ["channels", _, "users"]) => "users",
        (&Method::POST, ["users", _, "terminate_connections"]) => "terminate_connections",
        _ => "other",
    }
}

fn short(text: &str) -> String {
    text.chars().take(64).collect()
}

async fn serve(
    req: Request<Incoming>,
    node: &Node,
    app: &PusherAppConfig,
    path: &str,
    endpoint_path: &str,
) -> Result<Value, Failure> {
    let method = req.method().clone();
    let params: Vec<(String, String)> = req
        .uri()
        .query()
        .unwrap_or("")
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (query::decode(k), query::decode(v)))
        .collect();
    let limit = node.config.pusher.max_event_bytes * (MAX_BATCH + 1) + 4096;
    let body = http::read_body(req, limit, node.config.limits.handshake_timeout).await.map_err(|refusal| {
        let status = if refusal.code == ErrorCode::LimitExceeded {
            StatusCode::PAYLOAD_TOO_LARGE
        } else {
            StatusCode::BAD_REQUEST
        };
        Failure(status, refusal.message)
    })?;
    signing::check_request(&app.key, &app.secret, method.as_str(), path, &params, &body, unix_seconds())
        .map_err(|e| Failure::new(StatusCode::UNAUTHORIZED, e.to_string()))?;
    let param = |name: &str| params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    let parts: Vec<&str> = endpoint_path.split('/').collect();
    match (&method, parts.as_slice()) {
        (&Method::POST, ["events"]) => events(node, app, &body).await,
        (&Method::POST, ["batch_events"]) => batch_events(node, app, &body).await,
        (&Method::GET, ["channels"]) => list_channels(node, app, param("filter_by_prefix"), param("info")).await,
        (&Method::GET, ["channels", name]) => channel_info(node, app, &query::decode(name), param("info")).await,
        (&Method::GET, ["channels", name, "users"]) => channel_users(node, app, &query::decode(name)).await,
        (&Method::POST, ["users", user, "terminate_connections"]) => {
            let user = query::decode(user);
            users::disconnect_user(node, &user_key(&app.id, &user), Some(4003), "terminated by the application")
                .await?;
            Ok(json!({}))
        }
        _ => Err(Failure::new(StatusCode::NOT_FOUND, "no such endpoint")),
    }
}

/// One event as the API takes it. `data` is a string (the server libraries
/// encode objects into one).
#[derive(Deserialize)]
struct EventBody {
    name: String,
    data: Value,
    #[serde(default)]
    channels: Vec<String>,
    #[serde(default)]
    channel: Option<String>,
    #[serde(default)]
    socket_id: Option<String>,
}

#[derive(Deserialize)]
struct BatchBody {
    batch: Vec<EventBody>,
}

fn parse<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, Failure> {
    serde_json::from_slice(body).map_err(|e| Failure::new(StatusCode::BAD_REQUEST, format!("invalid body: {e}")))
}

async fn events(node: &Node, app: &PusherAppConfig, body: &[u8]) -> Result<Value, Failure> {
    let event: EventBody = parse(body)?;
    trigger(node, app, event).await?;
    Ok(json!({}))
}

async fn batch_events(node: &Node, app: &PusherAppConfig, body: &[u8]) -> Result<Value, Failure> {
    let batch: BatchBody = parse(body)?;
    if batch.batch.len() > MAX_BATCH {
        return Err(Failure::new(StatusCode::BAD_REQUEST, format!("at most {MAX_BATCH} events in a batch")));
    }
    // Checked whole before any is published: a batch is taken or refused.
    for event in &batch.batch {
        check_event(node, event)?;
    }
    for event in batch.batch {
        trigger(node, app, event).await?;
    }
    Ok(json!({ "batch": [] }))
}

/// The event's channels, checked, with its data as raw JSON.
fn check_event(node: &Node, event: &EventBody) -> Result<(Vec<String>, Bytes), Failure> {
    let bad = |message: String| Failure::new(StatusCode::BAD_REQUEST, message);
    if event.name.is_empty() || event.name.len() > 200 {
        return Err(bad("name: 1 to 200 characters".into()));
    }
    let mut channels = event.channels.clone();
    channels.extend(event.channel.clone());
    if channels.is_empty() || channels.len() > MAX_CHANNELS_PER_EVENT {
        return Err(bad(format!("channels: 1 to {MAX_CHANNELS_PER_EVENT}")));
    }
    if let Some(invalid) = channels.iter().find(|c| !pusher::is_valid_channel(c)) {
        return Err(bad(format!("invalid channel name {:?}", short(invalid))));
    }
    let data = match &event.data {
        Value::String(text) => Value::String(text.clone()).to_string(),
        other => Value::String(other.to_string()).to_string(),
    };
    // The limit is on the data as the application sent it.
    if data.len() > node.config.pusher.max_event_bytes + 2 {
        return Err(Failure::new(StatusCode::PAYLOAD_TOO_LARGE, "event data over the size limit"));
    }
    if event.socket_id.as_deref().is_some_and(|s| !is_socket_id(s)) {
        return Err(bad("socket_id: of the form 123.456".into()));
    }
    Ok((channels, Bytes::from(data)))
}

fn is_socket_id(text: &str) -> bool {
    text.split_once('.').is_some_and(|(a, b)| {
        !a.is_empty() && !b.is_empty() && a.bytes().all(|c| c.is_ascii_digit()) && b.bytes().all(|c| c.is_ascii_digit())
    })
}

async fn trigger(node: &Node, app: &PusherAppConfig, event: EventBody) -> Result<(), Failure> {
    let (channels, data) = check_event(node, &event)?;
    for channel in channels {
        let cluster = pusher::cluster_channel(&app.id, &channel);
        publish_event(node, &cluster, &event.name, data.clone(), event.socket_id.as_deref(), None).await?;
    }
    Ok(())
}

/// `info` as a list of attributes.
fn attributes(info: Option<&str>) -> Vec<&str> {
    info.map(|i| i.split(',').map(str::trim).filter(|a| !a.is_empty()).collect()).unwrap_or_default()
}

/// The app's occupied channels across the cluster, by Pusher name, with
/// their subscriptions.
async fn occupied(node: &Node, app: &PusherAppConfig, prefix: &str) -> Result<BTreeMap<String, u32>, Failure> {
    let mut found = BTreeMap::new();
    for cluster_prefix in pusher::app_prefixes(&app.id) {
        let survey = channels::channels(node, &format!("{cluster_prefix}{}", prefix.replace(';', "/"))).await?;
        for (cluster, count) in survey.channels {
            if let Some((_, name)) = pusher::app_channel(&cluster)
                && count > 0
            {
                found.insert(name, count);
            }
        }
    }
    Ok(found)
}

async fn user_count(node: &Node, app: &PusherAppConfig, name: &str) -> Result<usize, Failure> {
    let cluster = pusher::cluster_channel(&app.id, name);
    let (members, changes) = node.stores.presence.members(&cluster, Announce::Users).await.map_err(Refusal::from)?;
    membership::report(node, &cluster, &changes);
    let users: std::collections::HashSet<&str> = members.iter().map(|m| m.user.as_str()).collect();
    Ok(users.len())
}

async fn list_channels(
    node: &Node,
    app: &PusherAppConfig,
    prefix: Option<&str>,
    info: Option<&str>,
) -> Result<Value, Failure> {
    let prefix = prefix.unwrap_or("");
    let wants_users = attributes(info).contains(&"user_count");
    if wants_users && !prefix.starts_with("presence-") {
        return Err(Failure::new(StatusCode::BAD_REQUEST, "info=user_count needs filter_by_prefix=presence-"));
    }
    let mut channels = serde_json::Map::new();
    for name in occupied(node, app, prefix).await?.into_keys() {
        let mut attributes = serde_json::Map::new();
        if wants_users {
            attributes.insert("user_count".into(), json!(user_count(node, app, &name).await?));
        }
        channels.insert(name, Value::Object(attributes));
    }
    Ok(json!({ "channels": channels }))
}

async fn channel_info(node: &Node, app: &PusherAppConfig, name: &str, info: Option<&str>) -> Result<Value, Failure> {
    if !pusher::is_valid_channel(name) {
        return Err(Failure::new(StatusCode::BAD_REQUEST, "invalid channel name"));
    }
    let attributes = attributes(info);
    if attributes.contains(&"user_count") && !name.starts_with("presence-") {
        return Err(Failure::new(StatusCode::BAD_REQUEST, "user_count is for presence channels"));
    }
    let subscriptions = occupied(node, app, name).await?.get(name).copied().unwrap_or(0);
    let mut answer = json!({ "occupied": subscriptions > 0 });
    if attributes.contains(&"subscription_count") {
        answer["subscription_count"] = json!(subscriptions);
    }
    if attributes.contains(&"user_count") {
        answer["user_count"] = json!(user_count(node, app, name).await?);
    }
    Ok(answer)
}

async fn channel_users(node: &Node, app: &PusherAppConfig, name: &str) -> Result<Value, Failure> {
    if !name.starts_with("presence-") || !pusher::is_valid_channel(name) {
        return Err(Failure::new(StatusCode::BAD_REQUEST, "users are listed for presence channels only"));
    }
    let cluster = pusher::cluster_channel(&app.id, name);
    let (members, changes) = node.stores.presence.members(&cluster, Announce::Users).await.map_err(Refusal::from)?;
    membership::report(node, &cluster, &changes);
    let data: Value = serde_json::from_str(&presence_data(&members)).unwrap_or(Value::Null);
    let ids = data["presence"]["ids"].as_array().cloned().unwrap_or_default();
    let users: Vec<Value> = ids.into_iter().map(|id| json!({ "id": id })).collect();
    Ok(json!({ "users": users }))
}

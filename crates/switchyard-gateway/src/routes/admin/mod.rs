//! The admin page: `GET /admin` (on the internal listener, or on the public
//! one with `admin.public`), behind `admin.password`; off without one.
//!
//! A single page with no build step (`page.html`) reads `GET /admin/state`
//! (the cluster from the node registry, the busiest channels from a
//! survey), `GET /admin/channel?name=` (presence and the last
//! publications), and acts with `POST /admin/publish` and
//! `POST /admin/disconnect`. `POST /admin/login` checks the password
//! (constant time; wrong ones are rate limited) and sets an `HttpOnly`,
//! `SameSite=Strict` session cookie that every other request must carry.

use crate::command::{Refusal, channels, history, presence, publish, users};
use crate::http::{self, Body, parse};
use crate::node::Node;
use crate::query;
use bytes::Bytes;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue, SET_COOKIE};
use hyper::{Method, Request, Response, StatusCode};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::Duration;
use subtle::ConstantTimeEq as _;
use switchyard_core::codes::ErrorCode;
use switchyard_core::metric;
use tokio::time::Instant;

const PAGE: &str = include_str!("page.html");
const COOKIE_NAME: &str = "switchyard_admin";
/// How long a login lasts.
const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// Channels shown, the busiest first.
const TOP_CHANNELS: usize = 20;
/// Wrong passwords from one address, a minute: the fifth within a minute
/// locks that address's logins for [`LOCKOUT`]. Per address, so that a
/// stranger's guesses never lock the operator out.
const WRONG_PER_MINUTE: u32 = 5;
/// How long an address that guessed too often waits.
const LOCKOUT: Duration = Duration::from_secs(60);

/// Largest request body the admin page sends (a publication, a login).
const MAX_BODY: usize = 64 * 1024;

/// The operators logged in to this node's admin page, by cookie, and the
/// rate of wrong passwords.
pub struct Logins {
    tokens: Mutex<HashMap<String, Instant>>,
    /// Wrong passwords by address, `WRONG_PER_MINUTE` a minute; past
    /// that, that address's logins (right or wrong) are refused until its
    /// `locked_until`.
    failures: DefaultKeyedRateLimiter<IpAddr>,
    locked_until: Mutex<HashMap<IpAddr, Instant>>,
}

impl Default for Logins {
    fn default() -> Self {
        let rate = NonZeroU32::new(WRONG_PER_MINUTE).unwrap_or(NonZeroU32::MIN);
        // The burst is one less than the rate: the fifth wrong password
        // within a minute is the one refused.
        let burst = NonZeroU32::new(WRONG_PER_MINUTE - 1).unwrap_or(NonZeroU32::MIN);
        Logins {
            tokens: Mutex::default(),
            failures: RateLimiter::keyed(Quota::per_minute(rate).allow_burst(burst)),
            locked_until: Mutex::default(),
        }
    }
}

impl Logins {
    fn open(&self) -> String {
        let token = format!("{:032x}", rand::random::<u128>());
        let mut tokens = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        tokens.retain(|_, expires| *expires > now);
        tokens.insert(token.clone(), now + SESSION_TTL);
        token
    }

    fn valid(&self, token: &str) -> bool {
        let tokens = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        tokens.get(token).is_some_and(|expires| *expires > Instant::now())
    }

    fn close(&self, token: &str) {
        self.tokens.lock().unwrap_or_else(|e| e.into_inner()).remove(token);
    }
}

fn json_response(status: StatusCode, body: Value) -> Response<Body> {
    let mut response = http::json(status, &body);
    response.headers_mut().insert("cache-control", HeaderValue::from_static("no-store"));
    response
}

fn refused(refusal: &Refusal) -> Response<Body> {
    json_response(http::status_of(refusal.code), http::error_body(refusal))
}

/// Whether a request comes from the admin page itself: no `Origin` (not a
/// browser's cross-site request), or the node's own.
fn from_own_page(req: &Request<Incoming>) -> bool {
    let Some(origin) = req.headers().get(hyper::header::ORIGIN) else { return true };
    let host = req.headers().get(hyper::header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("");
    crate::origin::is_same_origin(origin.to_str().unwrap_or(""), host)
}

fn session_cookie(req: &Request<Incoming>) -> Option<String> {
    query::cookie(req.headers(), COOKIE_NAME).map(str::to_owned)
}

/// Serves `/admin` and `/admin/...`; `None` when the admin page is off.
/// `from`: the client's address (behind a trusted proxy, the one it names).
pub async fn handle(req: Request<Incoming>, from: IpAddr, node: &Node, logins: &Logins) -> Option<Response<Body>> {
    let password = node.config.admin.password.as_deref()?;
    let path = req.uri().path().to_owned();
    if req.method() == Method::POST && !from_own_page(&req) {
        // The cookie is `SameSite=Strict`; the origin is checked as well, so
        // that no other page can make an operator's browser act.
        metric::admin_logins("cross_origin").increment(1);
        return Some(refused(&Refusal::new(ErrorCode::PermissionDenied, "not from the admin page's own origin")));
    }
    let response = match (req.method().clone(), path.as_str()) {
        (Method::GET, "/admin" | "/admin/") => {
            let mut response = Response::new(Full::new(Bytes::from_static(PAGE.as_bytes())).boxed());
            let headers = response.headers_mut();
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
            // Everything it needs is inline: nothing from elsewhere may run.
            headers.insert(
                "content-security-policy",
                HeaderValue::from_static("default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src data:; frame-ancestors 'none'"),
            );
            response
        }
        (Method::POST, "/admin/login") => login(req, from, node, logins, password).await,
        (method, _) => {
            let Some(token) = session_cookie(&req).filter(|t| logins.valid(t)) else {
                return Some(refused(&Refusal::new(ErrorCode::Unauthorized, "log in first")));
            };
            match (method, path.as_str()) {
                (Method::POST, "/admin/logout") => {
                    logins.close(&token);
                    let mut response = json_response(StatusCode::OK, json!({"result": {}}));
                    let expired = format!("{COOKIE_NAME}=; HttpOnly; SameSite=Strict; Path=/admin; Max-Age=0");
                    if let Ok(value) = HeaderValue::from_str(&expired) {
                        response.headers_mut().insert(SET_COOKIE, value);
                    }
                    response
                }
                (Method::GET, "/admin/state") => answer(state(node).await),
                (Method::GET, "/admin/channel") => {
                    answer(channel(node, query::param(req.uri().query(), "name").map(|n| n.into_owned())).await)
                }
                (Method::POST, "/admin/publish") => answer(publish_from(req, node).await),
                (Method::POST, "/admin/disconnect") => answer(disconnect(req, node).await),
                _ => json_response(
                    StatusCode::NOT_FOUND,
                    json!({"error": {"code": 104, "message": "no such admin endpoint"}}),
                ),
            }
        }
    };
    Some(response)
}

fn answer(result: Result<Value, Refusal>) -> Response<Body> {
    match result {
        Ok(value) => json_response(StatusCode::OK, json!({ "result": value })),
        Err(refusal) => refused(&refusal),
    }
}

async fn body(req: Request<Incoming>, timeout: Duration) -> Result<Bytes, Refusal> {
    http::read_body(req, MAX_BODY, timeout).await
}

#[derive(Deserialize)]
struct Login {
    password: String,
}

async fn login(req: Request<Incoming>, from: IpAddr, node: &Node, logins: &Logins, password: &str) -> Response<Body> {
    let bytes = match body(req, node.config.limits.body_timeout).await {
        Ok(bytes) => bytes,
        Err(refusal) => return refused(&refusal),
    };
    let given: Login = match parse(&bytes) {
        Ok(login) => login,
        Err(refusal) => return refused(&refusal),
    };
    let now = Instant::now();
    let locked = logins.locked_until.lock().unwrap_or_else(|e| e.into_inner()).get(&from).is_some_and(|u| *u > now);
    if locked {
        metric::admin_logins("locked").increment(1);
        return refused(&Refusal::new(ErrorCode::TooManyRequests, "too many wrong passwords: try again in a minute"));
    }
    if !bool::from(given.password.as_bytes().ct_eq(password.as_bytes())) {
        metric::admin_logins("refused").increment(1);
        // Wrong passwords spend the address's allowance; past it, its
        // logins wait.
        if logins.failures.check_key(&from).is_err() {
            let mut locked = logins.locked_until.lock().unwrap_or_else(|e| e.into_inner());
            locked.retain(|_, until| *until > now);
            locked.insert(from, now + LOCKOUT);
            logins.failures.retain_recent();
        }
        return refused(&Refusal::new(ErrorCode::Unauthorized, "wrong password"));
    }
    metric::admin_logins("accepted").increment(1);
    let token = logins.open();
    let mut response = json_response(StatusCode::OK, json!({"result": {}}));
    let cookie =
        format!("{COOKIE_NAME}={token}; HttpOnly; SameSite=Strict; Path=/admin; Max-Age={}", SESSION_TTL.as_secs());
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(SET_COOKIE, value);
    }
    response
}

/// The cluster at a glance.
async fn state(node: &Node) -> Result<Value, Refusal> {
    let nodes = super::nodes::to_json(node.stores.registry.nodes().await?);
    let mut channels: Vec<(String, u32)> = channels::channels(node, "").await?.channels.into_iter().collect();
    channels.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    channels.truncate(TOP_CHANNELS);
    let channels: Vec<Value> = channels.into_iter().map(|(c, n)| json!({"channel": c, "num_clients": n})).collect();
    Ok(json!({"node": node.name, "nodes": nodes, "channels": channels, "broker": node.stores.broker.kind()}))
}

/// A channel's presence (where kept) and last publications (where kept).
async fn channel(node: &Node, name: Option<String>) -> Result<Value, Refusal> {
    let name = name.ok_or_else(|| Refusal::new(ErrorCode::BadRequest, "name is required"))?;
    let presence = match presence::presence(node, &name).await {
        Ok(result) => http::to_json(&result)?,
        Err(e) if e.code == ErrorCode::BadRequest => Value::Null,
        Err(e) => return Err(e),
    };
    let history = match history::history(node, &name, None, 10).await {
        Ok(result) => http::to_json(&result)?,
        Err(e) if e.code == ErrorCode::BadRequest => Value::Null,
        Err(e) => return Err(e),
    };
    Ok(json!({"channel": name, "presence": presence, "history": history}))
}

#[derive(Deserialize)]
struct PublishBody<'a> {
    channel: String,
    #[serde(borrow)]
    data: &'a RawValue,
}

async fn publish_from(req: Request<Incoming>, node: &Node) -> Result<Value, Refusal> {
    let bytes = body(req, node.config.limits.body_timeout).await?;
    let body: PublishBody<'_> = parse(&bytes)?;
    let data = Bytes::copy_from_slice(body.data.get().as_bytes());
    let (position, receipt) = publish::publish(node, &body.channel, data, Default::default(), None, true, None).await?;
    Ok(json!({"epoch": position.epoch, "offset": position.offset, "receipt": receipt}))
}

#[derive(Deserialize)]
struct DisconnectBody {
    user: String,
    #[serde(default)]
    code: Option<u32>,
}

async fn disconnect(req: Request<Incoming>, node: &Node) -> Result<Value, Refusal> {
    let bytes = body(req, node.config.limits.body_timeout).await?;
    let body: DisconnectBody = parse(&bytes)?;
    users::disconnect_user(node, &body.user, body.code, "disconnected by an operator").await?;
    Ok(json!({}))
}

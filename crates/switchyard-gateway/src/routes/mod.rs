//! The HTTP routes of a node: they know the command layer and the
//! transports, and nothing below calls back up into them.
//!
//! # Layout
//! - [`Routes`] (here): which listener serves what, and the health,
//!   readiness and metrics answers.
//! - [`api`]: the HTTP API for backends (`/api/...`).
//! - [`admin`]: the admin page and its JSON endpoints (`/admin...`).
//! - [`sse_command`]: `POST /sse/command`, an SSE client's commands.
//! - [`nodes`]: registry entries as the API and the admin page show them.
//! - [`pusher_api`]: the Pusher HTTP API (`/apps/{id}/...`).

pub mod admin;
pub mod api;
pub mod nodes;
pub mod pusher_api;
pub mod sse_command;

use crate::http::{self, Body};
use crate::node::Node;
use crate::recorder;
use crate::transport::{lifecycle, sse, websocket};
use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper::{Request, Response, StatusCode};
use metrics_exporter_prometheus::PrometheusHandle;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio_util::task::TaskTracker;

/// What a listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    /// `/ws`, `/sse`, `/api`, `/healthz`, `/readyz`, and `/metrics` when
    /// there is no internal listener.
    Public { metrics: bool },
    /// `/metrics`, `/admin`, `/healthz`, `/readyz`.
    Internal,
}

/// Everything a request may need, shared by every connection of a node.
pub struct Routes {
    pub node: Arc<Node>,
    metrics: PrometheusHandle,
    /// Where client connections run (WebSocket sessions, SSE streams): the
    /// shutdown waits for them.
    connections: TaskTracker,
    /// Logged-in operators of the admin page.
    logins: admin::Logins,
}

impl Routes {
    pub fn new(node: Arc<Node>, metrics: PrometheusHandle, connections: TaskTracker) -> Routes {
        Routes { node, metrics, connections, logins: admin::Logins::default() }
    }

    pub async fn route(&self, req: Request<Incoming>, peer: SocketAddr, listener: Listener) -> Response<Body> {
        let node = &self.node;
        let public = matches!(listener, Listener::Public { .. });
        match req.uri().path() {
            "/ws" if public => websocket::upgrade(req, peer, node, &self.connections, false),
            path if public && path.starts_with("/app/") && !node.config.pusher.apps.is_empty() => {
                websocket::upgrade_pusher(req, peer, node, &self.connections)
            }
            path if public && path.starts_with("/apps/") && !node.config.pusher.apps.is_empty() => {
                pusher_api::handle(req, node).await
            }
            "/echo" if public && node.config.testing.echo => {
                websocket::upgrade(req, peer, node, &self.connections, true)
            }
            path if public && path.starts_with("/api/") => match api::handle(req, node).await {
                Some(response) => response,
                None => not_found(),
            },
            path if path == "/admin" || path.starts_with("/admin/") => {
                let served = !public || node.config.admin.public;
                let from = lifecycle::client_ip(&req, peer, &node.config.limits);
                let answer = if served { admin::handle(req, from, node, &self.logins).await } else { None };
                answer.unwrap_or_else(not_found)
            }
            "/sse" if public => sse::open(req, peer, node, &self.connections),
            "/sse/command" if public => sse_command::handle(req, node).await,
            "/healthz" => http::text(StatusCode::OK, "ok\n"),
            "/readyz" => self.readiness(),
            "/metrics" if listener != (Listener::Public { metrics: false }) => {
                let mut response = http::text(StatusCode::OK, recorder::render(&self.metrics));
                response
                    .headers_mut()
                    .insert("content-type", HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"));
                response
            }
            _ => not_found(),
        }
    }

    fn readiness(&self) -> Response<Body> {
        let node = &self.node;
        if node.is_draining() {
            http::text(StatusCode::SERVICE_UNAVAILABLE, "draining\n")
        } else if !node.stores.broker.is_ready() {
            http::text(StatusCode::SERVICE_UNAVAILABLE, format!("{} broker unreachable\n", node.stores.broker.kind()))
        } else {
            http::text(StatusCode::OK, "ready\n")
        }
    }
}

fn not_found() -> Response<Body> {
    http::text(StatusCode::NOT_FOUND, "not found\n")
}

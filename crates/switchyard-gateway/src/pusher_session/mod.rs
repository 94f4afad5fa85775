//! One Pusher Channels connection (protocol 7, at `/app/{key}`): the
//! Pusher protocol's rules on top of the node's fan-out, broker and
//! presence store, as [`crate::command`] holds switchyard's own.
//!
//! A Pusher app's channel is a cluster channel of its own
//! ([`switchyard_core::pusher::cluster_channel`]): subscribers join the hub
//! like any other (as [`Protocol::Pusher`] subscribers, whose frames the
//! hub makes once per event), events cross nodes in Envelopes that carry
//! their name, and presence members are presence entries counted per user.
//!
//! # Layout
//! - [`PusherSession`] (here): the connection's state, the dispatch of its
//!   events, its end.
//! - [`channels`]: subscribe (public, private, presence, encrypted, cache),
//!   and unsubscribe.
//! - [`client_events`]: `client-*` events and `pusher:signin`.
//! - [`publish`]: an event into the cluster, from a client or the API.

pub mod channels;
mod client_events;
pub mod publish;

use crate::command::liveness::Liveness;
use crate::node::connections::UserRegistration;
use crate::node::{Node, OpSender, ServerOp};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Arc;
use switchyard_core::codes::CloseCode;
use switchyard_core::config::PusherAppConfig;
use switchyard_core::hub::ConnId;
use switchyard_core::outbound::{Close, OutFrame, Outbound};
use switchyard_core::protocol::Protocol;
use switchyard_core::{metric, pusher, wsframe};
use switchyard_proto::v1::ClientInfo;

/// A message from a Pusher client.
#[derive(Deserialize)]
struct Incoming<'a> {
    event: String,
    #[serde(borrow, default)]
    data: Option<&'a RawValue>,
    #[serde(default)]
    channel: Option<String>,
}

/// A channel this connection is subscribed to.
struct Joined {
    /// Its cluster channel.
    cluster: String,
    /// Its presence entry, on presence channels.
    member: Option<ClientInfo>,
}

/// One Pusher connection's session.
pub struct PusherSession {
    node: Arc<Node>,
    id: ConnId,
    socket_id: String,
    /// The app's place in `pusher.apps`.
    app: usize,
    outbound: Outbound,
    liveness: Arc<Liveness>,
    ops: OpSender,
    deflate: bool,
    /// By Pusher channel name.
    channels: HashMap<String, Joined>,
    /// The signed-in user, in the node's index of users (for
    /// `terminate_connections`).
    user: Option<(String, UserRegistration)>,
    /// `client-*` events per second.
    client_events: DefaultDirectRateLimiter,
}

/// The key of a Pusher app's user in the node's index of users: apart from
/// switchyard's own users and from other apps'.
pub fn user_key(app: &str, user: &str) -> String {
    format!("{}{user}", pusher::app_prefixes(app)[0])
}

impl PusherSession {
    /// A session for app `app` (its place in `pusher.apps`); queues
    /// `pusher:connection_established`.
    pub fn new(
        node: Arc<Node>,
        id: ConnId,
        app: usize,
        outbound: Outbound,
        liveness: Arc<Liveness>,
        ops: OpSender,
        deflate: bool,
    ) -> Self {
        let rate = NonZeroU32::new(node.config.pusher.client_events_per_second).unwrap_or(NonZeroU32::MIN);
        let client_events = RateLimiter::direct_with_clock(Quota::per_second(rate), node.rate_clock.clone());
        let socket_id = node.socket_id(id);
        metric::pusher_connections(&node.config.pusher.apps[app].id).increment(1.0);
        node.count_pusher_connection(app, true);
        let session = PusherSession {
            node,
            id,
            socket_id,
            app,
            outbound,
            liveness,
            ops,
            deflate,
            channels: HashMap::new(),
            user: None,
            client_events,
        };
        let data = serde_json::json!({
            "socket_id": session.socket_id,
            "activity_timeout": session.node.config.pusher.activity_timeout.as_secs(),
        });
        session.send(&pusher::string_event_json("pusher:connection_established", None, &data.to_string()));
        session.liveness.mark_connected();
        session
    }

    fn app(&self) -> &PusherAppConfig {
        &self.node.config.pusher.apps[self.app]
    }

    pub fn outbound(&self) -> &Outbound {
        &self.outbound
    }

    /// Queues one JSON message; a connection whose queue is full is a slow
    /// consumer.
    fn send(&self, json: &str) {
        if self.outbound.push(OutFrame::reply(wsframe::text(json.as_bytes()))).is_err() {
            self.outbound.close(Close::Server(CloseCode::SlowConsumer));
        }
    }

    /// `pusher:error`, counted by its code (`label`).
    fn error(&self, code: Option<u16>, label: &'static str, message: &str) {
        metric::pusher_errors(label).increment(1);
        self.send(&pusher::error_json(code, message));
    }

    /// Handles one whole message. Binary frames, text that is not a JSON
    /// event, and unknown events get a `pusher:error` (4300-class, counted)
    /// and change nothing.
    pub async fn receive(&mut self, payload: &[u8], is_text: bool) {
        if !is_text {
            self.error(Some(4300), "4300", "binary frames are not part of the Pusher protocol");
            return;
        }
        let message: Incoming<'_> = match serde_json::from_slice(payload) {
            Ok(message) => message,
            Err(e) => {
                self.error(Some(4300), "4300", &format!("not a Pusher event: {e}"));
                return;
            }
        };
        match message.event.as_str() {
            "pusher:ping" => self.send(r#"{"event":"pusher:pong","data":{}}"#),
            "pusher:pong" => {}
            "pusher:subscribe" => self.subscribe(message.data).await,
            "pusher:unsubscribe" => self.unsubscribe(message.data).await,
            "pusher:signin" => self.signin(message.data).await,
            event if event.starts_with("client-") => {
                let channel = message.channel.unwrap_or_default();
                self.client_event(event.to_owned(), channel, message.data).await
            }
            other => {
                let shown: String = other.chars().take(64).collect();
                self.error(Some(4300), "4300", &format!("unknown event {shown:?}"))
            }
        }
    }

    /// Runs an operation the server decided on for this connection: a
    /// disconnect (`terminate_connections`, user operations); the others
    /// are switchyard's own and do not apply.
    pub async fn apply(&mut self, op: ServerOp) {
        if let ServerOp::Disconnect { code, reason } = op {
            let _ = self.outbound.push(OutFrame::reply(pusher::close_error_frame(code, &reason)));
            self.outbound.close(Close::Announced(code));
        }
    }

    /// The connection closed: leave every channel.
    pub async fn end(&mut self) {
        let names: Vec<String> = self.channels.keys().cloned().collect();
        for name in names {
            self.leave(&name).await;
        }
        self.user = None;
    }

    /// The protocol the hub encodes this connection's frames in.
    pub fn protocol(&self) -> Protocol {
        Protocol::Pusher
    }
}

impl Drop for PusherSession {
    fn drop(&mut self) {
        metric::pusher_connections(&self.app().id).decrement(1.0);
        self.node.count_pusher_connection(self.app, false);
    }
}

/// `data` of a message as an object: Pusher clients send it as an object,
/// some as a string holding one.
fn data_object<T: serde::de::DeserializeOwned>(data: Option<&RawValue>) -> Option<T> {
    let raw = data?.get();
    serde_json::from_str::<T>(raw)
        .ok()
        .or_else(|| serde_json::from_str::<String>(raw).ok().and_then(|s| serde_json::from_str(&s).ok()))
}

//! `pusher:subscribe` and `pusher:unsubscribe`: public channels, `private-`
//! and `private-encrypted-` (an authorization signed with the app's
//! secret; encrypted events are relayed as they come, the server never
//! needs their payload), `presence-` (with `channel_data`, members counted
//! once per user across the cluster), cache channels (the last event on
//! subscribe, or `pusher:cache_miss`), and a signed-in user's
//! `#server-to-user-<id>`.

use super::{Joined, PusherSession, data_object};
use crate::node::{membership, publish_options};
use crate::pusher::signing;
use crate::webhooks::Hook;
use serde::Deserialize;
use serde_json::value::RawValue;
use std::collections::BTreeMap;
use switchyard_broker::{Announce, StreamPosition};
use switchyard_core::config::SlowConsumerPolicy;
use switchyard_core::hub::{Subscribed, Subscriber, Unsubscribed};
use switchyard_core::outbound::OutFrame;
use switchyard_core::protocol::Protocol;
use switchyard_core::{pusher, wsframe};
use switchyard_proto::v1::ClientInfo;
use tracing::debug;

#[derive(Deserialize)]
struct SubscribeData {
    channel: String,
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    channel_data: Option<String>,
}

#[derive(Deserialize)]
struct UnsubscribeData {
    channel: String,
}

/// A presence channel's `channel_data`.
#[derive(Deserialize)]
struct ChannelData<'a> {
    user_id: UserId,
    #[serde(borrow, default)]
    user_info: Option<&'a RawValue>,
}

/// Pusher's server libraries send `user_id` as a string; some apps as a
/// number.
#[derive(Deserialize)]
#[serde(untagged)]
enum UserId {
    Text(String),
    Number(serde_json::Number),
}

impl UserId {
    fn into_string(self) -> String {
        match self {
            UserId::Text(text) => text,
            UserId::Number(number) => number.to_string(),
        }
    }
}

/// The longest `user_id` a presence member may have.
const MAX_USER_ID: usize = 128;

impl PusherSession {
    /// `pusher:subscription_error` for `channel`, with Pusher's `type`.
    fn subscription_error(&self, channel: &str, kind: &'static str, error: &str, status: u16) {
        switchyard_core::metric::pusher_errors(kind).increment(1);
        let data = serde_json::json!({ "type": kind, "error": error, "status": status }).to_string();
        self.send(&pusher::string_event_json("pusher:subscription_error", Some(channel), &data));
    }

    pub(super) async fn subscribe(&mut self, data: Option<&RawValue>) {
        let Some(request) = data_object::<SubscribeData>(data) else {
            self.error(Some(4300), "4300", "pusher:subscribe: data must hold a channel");
            return;
        };
        let name = request.channel;
        if !pusher::is_valid_channel(&name) {
            self.subscription_error(&name, "InvalidChannel", "invalid channel name", 400);
            return;
        }
        if self.channels.contains_key(&name) {
            // pusher-js subscribes again after a reconnect only; answer as
            // the first time, with nothing changed.
            self.send(&pusher::string_event_json("pusher_internal:subscription_succeeded", Some(&name), "{}"));
            return;
        }
        if self.channels.len() >= self.node.config.client.max_channels {
            self.subscription_error(&name, "LimitReached", "too many channels on this connection", 429);
            return;
        }
        if let Some(user) = name.strip_prefix("#server-to-user-") {
            if self.user.as_ref().map(|(id, _)| id.as_str()) != Some(user) {
                self.subscription_error(&name, "AuthError", "sign in as this user first", 401);
                return;
            }
        } else if name.starts_with("private-") || name.starts_with("presence-") {
            let message = signing::channel_auth_message(&self.socket_id, &name, request.channel_data.as_deref());
            let app = self.app();
            let authorized =
                request.auth.as_deref().is_some_and(|auth| signing::check_auth(&app.key, &app.secret, &message, auth));
            if !authorized {
                self.subscription_error(&name, "AuthError", "invalid signature", 401);
                return;
            }
        }
        let member = match name.starts_with("presence-") {
            false => None,
            true => match self.presence_member(request.channel_data.as_deref()) {
                Ok(member) => Some(member),
                Err(why) => {
                    self.subscription_error(&name, "InvalidChannelData", why, 400);
                    return;
                }
            },
        };
        self.join(name, member).await;
    }

    /// The presence entry `channel_data` describes.
    fn presence_member(&self, channel_data: Option<&str>) -> Result<ClientInfo, &'static str> {
        let text = channel_data.ok_or("presence channels need channel_data")?;
        let data: ChannelData<'_> =
            serde_json::from_str(text).map_err(|_| "channel_data: a JSON object with user_id")?;
        let user = data.user_id.into_string();
        if user.is_empty() || user.len() > MAX_USER_ID {
            return Err("channel_data: user_id of 1 to 128 characters");
        }
        let info = data.user_info.map(|i| bytes::Bytes::copy_from_slice(i.get().as_bytes())).unwrap_or_default();
        Ok(ClientInfo { client: self.socket_id.clone(), user, info })
    }

    /// Joins `name` on this node (and in the broker, for its first local
    /// subscriber), enters presence, and answers. Presence and cache
    /// channels hold live events until the answer is queued, so that the
    /// member list or the cached event comes first and nothing is lost or
    /// repeated.
    async fn join(&mut self, name: String, member: Option<ClientInfo>) {
        let node = self.node.clone();
        let cluster = pusher::cluster_channel(&self.app().id, &name);
        let cache = pusher::is_cache(&name);
        let held = cache || member.is_some();
        let subscriber = Subscriber::new(Protocol::Pusher, self.outbound.clone()).deflated(self.deflate);
        match node.hub.subscribe(&cluster, self.id, subscriber, SlowConsumerPolicy::Disconnect, held) {
            Subscribed::First => {
                if let Err(e) = node.stores.broker.subscribe(std::slice::from_ref(&cluster)).await {
                    node.hub.unsubscribe(&cluster, self.id);
                    debug!(channel = %cluster, error = %e, "broker subscribe failed");
                    self.subscription_error(&name, "ServiceUnavailable", "try again", 503);
                    return;
                }
                membership::occupy(&node, &cluster).await;
            }
            Subscribed::Joined => {}
            Subscribed::Already => return,
        }
        self.channels.insert(name.clone(), Joined { cluster: cluster.clone(), member: member.clone() });
        let mut head = Vec::new();
        let mut position: Option<StreamPosition> = None;
        let succeeded = match &member {
            None => pusher::string_event_json("pusher_internal:subscription_succeeded", Some(&name), "{}"),
            Some(member) => match self.enter_presence(&cluster, member).await {
                Ok(data) => pusher::string_event_json("pusher_internal:subscription_succeeded", Some(&name), &data),
                Err(()) => {
                    self.leave(&name).await;
                    self.subscription_error(&name, "ServiceUnavailable", "try again", 503);
                    return;
                }
            },
        };
        head.push(OutFrame::reply(wsframe::text(succeeded.as_bytes())));
        if cache {
            let (_, namespace) = match crate::command::resolve(&node, &cluster) {
                Ok(found) => found,
                Err(_) => return,
            };
            match node.stores.broker.history(&cluster, None, 1, publish_options(namespace)).await {
                Ok(history) => {
                    match history.publications.last() {
                        Some(last) => head.push(OutFrame::reply(pusher::envelope_frame(last))),
                        None => {
                            let miss = format!(r#"{{"event":"pusher:cache_miss","channel":{}}}"#, json_string(&name));
                            head.push(OutFrame::reply(wsframe::text(miss.as_bytes())));
                            node.webhooks.announce(&cluster, Hook::CacheMiss);
                        }
                    }
                    position = Some(history.position);
                }
                Err(e) => debug!(channel = %cluster, error = %e, "cannot read the cache channel's last event"),
            }
        }
        if held {
            node.hub.finish_recovery(&cluster, self.id, head, position);
        } else {
            for frame in head {
                if self.outbound.push(frame).is_err() {
                    self.outbound.close(switchyard_core::outbound::Close::Server(
                        switchyard_core::codes::CloseCode::SlowConsumer,
                    ));
                }
            }
        }
    }

    /// Enters `member` in the presence of `cluster`; answers the
    /// subscription's data: the members, once per user.
    async fn enter_presence(&self, cluster: &str, member: &ClientInfo) -> Result<String, ()> {
        let node = &self.node;
        node.presence.insert(cluster, member.clone());
        let ttl = node.config.broker.presence_ttl;
        let added = node.stores.presence.add(cluster, std::slice::from_ref(member), ttl, Announce::Users).await;
        match added {
            Ok(changes) => membership::report(node, cluster, &changes),
            Err(e) => {
                node.presence.remove(cluster, &member.client);
                debug!(channel = %cluster, error = %e, "cannot enter presence");
                return Err(());
            }
        }
        if membership::needs_sweeping(node, cluster) {
            membership::index(node, cluster).await;
        }
        let (members, changes) = node.stores.presence.members(cluster, Announce::Users).await.map_err(|_| ())?;
        membership::report(node, cluster, &changes);
        Ok(presence_data(&members))
    }

    pub(super) async fn unsubscribe(&mut self, data: Option<&RawValue>) {
        let Some(request) = data_object::<UnsubscribeData>(data) else {
            self.error(Some(4300), "4300", "pusher:unsubscribe: data must hold a channel");
            return;
        };
        self.leave(&request.channel).await;
    }

    /// Leaves `name`: the hub (and the broker, after the node's last
    /// subscriber), and presence.
    pub(super) async fn leave(&mut self, name: &str) {
        let Some(joined) = self.channels.remove(name) else { return };
        let node = self.node.clone();
        let last = node.hub.unsubscribe(&joined.cluster, self.id) == Unsubscribed::Last;
        if last && let Err(e) = node.stores.broker.unsubscribe(std::slice::from_ref(&joined.cluster)).await {
            debug!(channel = %joined.cluster, error = %e, "broker unsubscribe failed");
        }
        if let Some(member) = joined.member {
            node.presence.remove(&joined.cluster, &member.client);
            match node.stores.presence.remove(&joined.cluster, &member.client, Announce::Users).await {
                Ok(changes) => membership::report(&node, &joined.cluster, &changes),
                Err(e) => debug!(channel = %joined.cluster, error = %e, "cannot leave presence; it will expire"),
            }
        }
        // After the presence: a member leaves before the channel is vacated.
        if last {
            membership::vacate(&node, &joined.cluster).await;
        }
    }
}

/// The `presence` object of a presence channel's subscription: `count`,
/// `ids` and `hash` (user id to `user_info`), each user once.
pub fn presence_data(members: &[ClientInfo]) -> String {
    let mut users: BTreeMap<&str, serde_json::Value> = BTreeMap::new();
    for member in members {
        let info = serde_json::from_slice(&member.info).unwrap_or(serde_json::Value::Null);
        users.entry(member.user.as_str()).or_insert(info);
    }
    let ids: Vec<&str> = users.keys().copied().collect();
    serde_json::json!({ "presence": { "count": ids.len(), "ids": ids, "hash": users } }).to_string()
}

fn json_string(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

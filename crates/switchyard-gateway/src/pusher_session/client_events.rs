//! What a Pusher client sends besides subscriptions: `client-*` events on
//! its private and presence channels (when the app enables them; never
//! echoed to the sender; rate limited per connection), and `pusher:signin`
//! (user authentication, which opens the user's `#server-to-user-<id>`).

use super::publish::publish_event;
use super::{PusherSession, data_object, user_key};
use crate::pusher::signing;
use crate::webhooks::Hook;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;
use switchyard_core::codes::CloseCode;
use switchyard_core::metric;
use switchyard_core::outbound::{Close, OutFrame};
use switchyard_core::pusher;
use switchyard_proto::v1::ClientInfo;

/// The longest event name Pusher takes.
const MAX_EVENT_NAME: usize = 200;

#[derive(Deserialize)]
struct SigninData {
    auth: String,
    user_data: String,
}

#[derive(Deserialize)]
struct UserData {
    id: String,
}

impl PusherSession {
    pub(super) async fn client_event(&mut self, event: String, channel: String, data: Option<&RawValue>) {
        let refuse = |session: &Self, message: &str| {
            metric::pusher_client_events("refused").increment(1);
            session.error(None, "client_event", message);
        };
        if !self.app().enable_client_messages {
            return refuse(self, "client events are not enabled for this app");
        }
        if !(channel.starts_with("private-") || channel.starts_with("presence-")) {
            return refuse(self, "client events go on private and presence channels only");
        }
        let Some(joined) = self.channels.get(&channel) else {
            return refuse(self, "subscribe to the channel before sending client events on it");
        };
        if event.len() > MAX_EVENT_NAME {
            return refuse(self, "event name longer than 200 characters");
        }
        let data = data.map_or("null", RawValue::get);
        if data.len() > self.node.config.pusher.max_event_bytes {
            return refuse(self, "event data over the size limit");
        }
        if self.client_events.check().is_err() {
            metric::pusher_client_events("rate_limited").increment(1);
            self.error(Some(4301), "4301", "client event rejected: rate limit exceeded");
            return;
        }
        let user_id = joined.member.as_ref().map(|m| m.user.clone());
        let cluster = joined.cluster.clone();
        let publisher = ClientInfo {
            client: self.socket_id.clone(),
            user: user_id.clone().unwrap_or_default(),
            info: Bytes::new(),
        };
        let published = publish_event(
            &self.node,
            &cluster,
            &event,
            Bytes::copy_from_slice(data.as_bytes()),
            Some(&self.socket_id),
            Some(publisher),
        )
        .await;
        match published {
            Ok(()) => {
                metric::pusher_client_events("relayed").increment(1);
                let hook =
                    Hook::ClientEvent { event, data: data.to_owned(), socket_id: self.socket_id.clone(), user_id };
                self.node.webhooks.announce(&cluster, hook);
            }
            Err(refusal) => self.error(None, "client_event", &refusal.message),
        }
    }

    pub(super) async fn signin(&mut self, data: Option<&RawValue>) {
        let Some(request) = data_object::<SigninData>(data) else {
            return self.refuse_signin("pusher:signin: data must hold auth and user_data");
        };
        let message = signing::user_auth_message(&self.socket_id, &request.user_data);
        let app = self.app();
        if !signing::check_auth(&app.key, &app.secret, &message, &request.auth) {
            return self.refuse_signin("invalid signature");
        }
        let user = match serde_json::from_str::<UserData>(&request.user_data) {
            Ok(user) if !user.id.is_empty() && user.id.len() <= 128 => user.id,
            _ => return self.refuse_signin("user_data must hold an id of 1 to 128 characters"),
        };
        let key = user_key(&app.id, &user);
        let Some(registration) = self.node.connections.register_user(&key, self.id, self.ops.clone(), 0) else {
            return self.refuse_signin("cannot register the user");
        };
        self.user = Some((user, registration));
        let data = serde_json::json!({ "user_data": request.user_data }).to_string();
        self.send(&pusher::string_event_json("pusher:signin_success", None, &data));
    }

    /// A failed sign-in: `pusher:error` 4009, and the close.
    fn refuse_signin(&self, message: &str) {
        metric::pusher_errors("4009").increment(1);
        let _ = self.outbound.push(OutFrame::reply(pusher::close_error_frame(CloseCode::Unauthorized, message)));
        self.outbound.close(Close::Announced(CloseCode::Unauthorized));
    }
}

//! The Pusher Channels protocol's wire, as far as the hub and the
//! connection lifecycle need it: where a Pusher app's channel lives among
//! the cluster's channels, the frames of its events, and its close codes.
//!
//! An app's channel `private-orders` is the cluster channel
//! `pusher:<app id>/private-orders` (cache channels are in the
//! `pusher-cache` namespace, which keeps each one's last event). Pusher
//! names may hold `;`, which cluster names may not: it is carried as `/`,
//! which Pusher names may not hold.

use crate::codes::CloseCode;
use crate::wsframe;
use bytes::Bytes;
use serde_json::value::RawValue;
use switchyard_proto::v1::{ClientInfo, Envelope};

/// The namespace of Pusher apps' channels.
pub const NAMESPACE: &str = "pusher";
/// The namespace of Pusher apps' cache channels.
pub const CACHE_NAMESPACE: &str = "pusher-cache";
/// The longest Pusher channel name we take (Pusher's own limit).
pub const MAX_CHANNEL_LEN: usize = 164;

/// Whether `name` is a Pusher channel name a client or the API may use:
/// 1 to 164 of `[A-Za-z0-9_\-=@,.;]`, or a user's `#server-to-user-<id>`.
pub fn is_valid_channel(name: &str) -> bool {
    if let Some(user) = name.strip_prefix("#server-to-user-") {
        return !user.is_empty() && user.len() <= 128 && user.bytes().all(is_channel_byte);
    }
    !name.is_empty() && name.len() <= MAX_CHANNEL_LEN && name.bytes().all(is_channel_byte)
}

fn is_channel_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'=' | b'@' | b',' | b'.' | b';')
}

/// Whether a Pusher channel keeps its last event (`cache-`,
/// `private-cache-`, `presence-cache-`, `private-encrypted-cache-`).
pub fn is_cache(name: &str) -> bool {
    ["cache-", "private-cache-", "presence-cache-", "private-encrypted-cache-"].iter().any(|p| name.starts_with(p))
}

/// The cluster channel of app `app`'s channel `name` (a valid one).
pub fn cluster_channel(app: &str, name: &str) -> String {
    let namespace = if is_cache(name) { CACHE_NAMESPACE } else { NAMESPACE };
    format!("{namespace}:{app}/{}", name.replace(';', "/"))
}

/// The app and Pusher name of a cluster channel, if it is a Pusher one.
pub fn app_channel(cluster: &str) -> Option<(&str, String)> {
    let rest = cluster.strip_prefix("pusher:").or_else(|| cluster.strip_prefix("pusher-cache:"))?;
    let (app, name) = rest.split_once('/')?;
    Some((app, name.replace('/', ";")))
}

/// The cluster channels of app `app` start with one of these.
pub fn app_prefixes(app: &str) -> [String; 2] {
    [format!("{NAMESPACE}:{app}/"), format!("{CACHE_NAMESPACE}:{app}/")]
}

/// One event frame's JSON: `{"event":…,"channel":…,"data":…}` (and
/// `user_id`). `data` is raw JSON: a string for events from the API, a
/// client's value as it sent it for client events.
pub fn event_json(event: &str, channel: Option<&str>, data: &RawValue, user_id: Option<&str>) -> String {
    #[derive(serde::Serialize)]
    struct Event<'a> {
        event: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        channel: Option<&'a str>,
        data: &'a RawValue,
        #[serde(skip_serializing_if = "Option::is_none")]
        user_id: Option<&'a str>,
    }
    serde_json::to_string(&Event { event, channel, data, user_id }).unwrap_or_default()
}

/// An event whose `data` is the JSON string of `data` (what Pusher's
/// server sends for its own events).
pub fn string_event_json(event: &str, channel: Option<&str>, data: &str) -> String {
    let quoted = serde_json::to_string(data).unwrap_or_default();
    let raw = RawValue::from_string(quoted).unwrap_or_else(|_| null());
    event_json(event, channel, &raw, None)
}

fn null() -> Box<RawValue> {
    RawValue::from_string("null".to_owned()).expect("null is JSON")
}

/// What a Pusher subscriber gets for an Envelope of its channel: the
/// event, or a member's arrival or departure on a presence channel.
pub fn envelope_json(envelope: &Envelope) -> String {
    let channel = app_channel(&envelope.channel).map(|(_, name)| name).unwrap_or_default();
    match (&envelope.join, &envelope.leave) {
        (Some(member), _) => member_json(&channel, member, true),
        (None, Some(member)) => member_json(&channel, member, false),
        (None, None) => {
            let data = std::str::from_utf8(&envelope.data)
                .ok()
                .and_then(|d| RawValue::from_string(d.to_owned()).ok())
                .unwrap_or_else(null);
            // Client events on presence channels say who sent them.
            let user = envelope.publisher.as_ref().map(|p| p.user.as_str()).filter(|u| !u.is_empty());
            let user = user.filter(|_| envelope.event.starts_with("client-") && channel.starts_with("presence-"));
            event_json(&envelope.event, Some(&channel), &data, user)
        }
    }
}

/// `pusher_internal:member_added` (with the member's `user_info`) or
/// `member_removed`.
pub fn member_json(channel: &str, member: &ClientInfo, added: bool) -> String {
    let info = std::str::from_utf8(&member.info).ok().filter(|i| !i.is_empty());
    let data = match (added, info) {
        (true, Some(info)) => format!("{{\"user_id\":{},\"user_info\":{info}}}", json_string(&member.user)),
        _ => format!("{{\"user_id\":{}}}", json_string(&member.user)),
    };
    let event = if added { "pusher_internal:member_added" } else { "pusher_internal:member_removed" };
    string_event_json(event, Some(channel), &data)
}

fn json_string(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

/// The WebSocket frame of an Envelope for Pusher subscribers.
pub fn envelope_frame(envelope: &Envelope) -> Bytes {
    wsframe::text(envelope_json(envelope).as_bytes())
}

/// `pusher:ping`, sent on quiet connections.
pub fn ping_frame() -> Bytes {
    wsframe::text(br#"{"event":"pusher:ping","data":{}}"#)
}

/// `pusher:error` with `code` (None for errors Pusher gives no code).
pub fn error_json(code: Option<u16>, message: &str) -> String {
    let data = serde_json::json!({ "code": code, "message": message });
    serde_json::json!({ "event": "pusher:error", "data": data }).to_string()
}

/// Pusher's code for a close of ours. 4000-4099: do not reconnect;
/// 4100-4199: reconnect after a while; 4200-4299: reconnect now. WebSocket
/// codes below 4000 are kept.
pub const fn close_code(code: CloseCode) -> u16 {
    match code {
        CloseCode::GoingAway | CloseCode::Rebalance | CloseCode::InternalError => 4200,
        CloseCode::HeartbeatTimeout => 4201,
        CloseCode::SlowConsumer | CloseCode::ConnectionLimit | CloseCode::RateLimited => 4100,
        CloseCode::Unauthorized => 4009,
        CloseCode::Malformed => 4000,
        CloseCode::Normal | CloseCode::ProtocolError | CloseCode::InvalidPayload | CloseCode::MessageTooBig => {
            code.code()
        }
    }
}

/// The `pusher:error` that precedes a close of ours.
pub fn close_error_frame(code: CloseCode, reason: &str) -> Bytes {
    let reason = if reason.is_empty() { code.reason() } else { reason };
    wsframe::text(error_json(Some(close_code(code)), reason).as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_names_round_trip_through_the_cluster() {
        for name in ["private-orders", "presence-room;1", "cache-x", "a=b@c,d.e", "#server-to-user-42"] {
            assert!(is_valid_channel(name), "{name}");
            let cluster = cluster_channel("1001", name);
            assert!(crate::channel::Channel::parse(&cluster).is_ok(), "{cluster}");
            assert_eq!(app_channel(&cluster), Some(("1001", name.to_owned())));
        }
        assert!(cluster_channel("1", "private-cache-x").starts_with("pusher-cache:1/"));
        for bad in ["", "a b", "a/b", "a:b", "é", "#server-to-user-", &"x".repeat(165)] {
            assert!(!is_valid_channel(bad), "{bad}");
        }
    }

    #[test]
    fn events_keep_their_data_as_sent() {
        let envelope = Envelope {
            channel: cluster_channel("1", "presence-room"),
            data: Bytes::from_static(br#"{"a": [1, 2]}"#),
            event: "client-typing".into(),
            publisher: Some(ClientInfo { client: "1.2".into(), user: "u7".into(), info: Bytes::new() }),
            ..Envelope::default()
        };
        assert_eq!(
            envelope_json(&envelope),
            r#"{"event":"client-typing","channel":"presence-room","data":{"a": [1, 2]},"user_id":"u7"}"#
        );
        let api = Envelope { data: Bytes::from_static(br#""{\"x\":1}""#), event: "update".into(), ..envelope };
        assert_eq!(envelope_json(&api), r#"{"event":"update","channel":"presence-room","data":"{\"x\":1}"}"#);
    }

    #[test]
    fn members_come_and_go_with_their_info() {
        let member = ClientInfo { client: "1.2".into(), user: "u1".into(), info: Bytes::from_static(br#"{"n":"A"}"#) };
        let added: serde_json::Value = serde_json::from_str(&member_json("presence-r", &member, true)).unwrap();
        assert_eq!(added["event"], "pusher_internal:member_added");
        let data: serde_json::Value = serde_json::from_str(added["data"].as_str().unwrap()).unwrap();
        assert_eq!(data, serde_json::json!({"user_id": "u1", "user_info": {"n": "A"}}));
        let removed: serde_json::Value = serde_json::from_str(&member_json("presence-r", &member, false)).unwrap();
        assert_eq!(removed["data"], r#"{"user_id":"u1"}"#);
    }

    #[test]
    fn closes_say_what_to_do_in_pusher_terms() {
        assert_eq!(close_code(CloseCode::GoingAway), 4200);
        assert_eq!(close_code(CloseCode::HeartbeatTimeout), 4201);
        assert!((4100..4200).contains(&close_code(CloseCode::SlowConsumer)));
        assert_eq!(close_code(CloseCode::MessageTooBig), 1009);
    }
}

//! The signatures of the Pusher Channels protocol: a private or presence
//! channel's authorization, a user's sign-in, an HTTP API request, a
//! webhook body. HMAC-SHA256 with the app's secret, hex; checked in
//! constant time.

use hmac::{Hmac, KeyInit, Mac};
use md5::{Digest, Md5};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// How far an API request's `auth_timestamp` may be from the node's clock.
pub const MAX_CLOCK_SKEW_SECONDS: u64 = 600;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || !text.is_ascii() {
        return None;
    }
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok()).collect()
}

fn mac(secret: &str, message: &str) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC takes a key of any size");
    mac.update(message.as_bytes());
    mac
}

/// The hex HMAC-SHA256 of `message` with `secret`.
pub fn sign(secret: &str, message: &str) -> String {
    hex(&mac(secret, message).finalize().into_bytes())
}

/// Whether `signature` (hex) is `message`'s, in constant time.
pub fn verify(secret: &str, message: &str, signature: &str) -> bool {
    unhex(signature).is_some_and(|bytes| mac(secret, message).verify_slice(&bytes).is_ok())
}

/// What a `pusher:subscribe` to a private or presence channel carries in
/// `auth`: `key:signature` of `socket_id:channel` (and `:channel_data` for
/// presence).
pub fn channel_auth_message(socket_id: &str, channel: &str, channel_data: Option<&str>) -> String {
    match channel_data {
        Some(data) => format!("{socket_id}:{channel}:{data}"),
        None => format!("{socket_id}:{channel}"),
    }
}

/// What a `pusher:signin` signs: `socket_id::user::user_data`.
pub fn user_auth_message(socket_id: &str, user_data: &str) -> String {
    format!("{socket_id}::user::{user_data}")
}

/// Checks an `auth` value (`key:signature`) for `message`.
pub fn check_auth(key: &str, secret: &str, message: &str, auth: &str) -> bool {
    match auth.split_once(':') {
        Some((given_key, signature)) => given_key == key && verify(secret, message, signature),
        None => false,
    }
}

/// Why an HTTP API request's signature was refused (401).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestError {
    Missing(&'static str),
    UnknownKey,
    Expired,
    BodyMd5,
    Signature,
}

impl std::fmt::Display for RequestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RequestError::Missing(what) => write!(f, "missing {what}"),
            RequestError::UnknownKey => f.write_str("unknown auth_key"),
            RequestError::Expired => {
                write!(f, "auth_timestamp not within {MAX_CLOCK_SKEW_SECONDS} s of the server's clock")
            }
            RequestError::BodyMd5 => f.write_str("body_md5 does not match the body"),
            RequestError::Signature => f.write_str("invalid signature"),
        }
    }
}

/// Checks an HTTP API request signed as Pusher's server libraries sign
/// them: the query's parameters but `auth_signature`, sorted by name and
/// joined as `k=v&…`, after the method and the path, one per line; a
/// `body_md5` for a body; `auth_timestamp` within ten minutes of `now`.
pub fn check_request(
    key: &str,
    secret: &str,
    method: &str,
    path: &str,
    query: &[(String, String)],
    body: &[u8],
    now: u64,
) -> Result<(), RequestError> {
    let param = |name: &'static str| query.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    let given_key = param("auth_key").ok_or(RequestError::Missing("auth_key"))?;
    if given_key != key {
        return Err(RequestError::UnknownKey);
    }
    let timestamp: u64 =
        param("auth_timestamp").and_then(|t| t.parse().ok()).ok_or(RequestError::Missing("auth_timestamp"))?;
    if timestamp.abs_diff(now) > MAX_CLOCK_SKEW_SECONDS {
        return Err(RequestError::Expired);
    }
    if !body.is_empty() {
        let md5 = param("body_md5").ok_or(RequestError::Missing("body_md5"))?;
        if md5 != hex(&Md5::digest(body)) {
            return Err(RequestError::BodyMd5);
        }
    }
    let signature = param("auth_signature").ok_or(RequestError::Missing("auth_signature"))?;
    let mut signed: Vec<&(String, String)> = query.iter().filter(|(k, _)| k != "auth_signature").collect();
    signed.sort();
    let joined: Vec<String> = signed.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let message = format!("{}\n{path}\n{}", method.to_ascii_uppercase(), joined.join("&"));
    if verify(secret, &message, signature) { Ok(()) } else { Err(RequestError::Signature) }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Made by the official `pusher` npm server library (5.x) for the app
    // key "app-key", secret "app-secret": authorizeChannel,
    // authenticateUser, and the request signing of a trigger.
    const SECRET: &str = "app-secret";

    #[test]
    fn channel_and_user_signatures_match_the_server_library() {
        let private = channel_auth_message("1234.5678", "private-orders", None);
        let auth = "app-key:2d1e5109f17c93a347d0a52f060df3a517761ce1ddcd7bce2998c4f1925a7cab";
        assert!(check_auth("app-key", SECRET, &private, auth));
        assert_eq!(format!("app-key:{}", sign(SECRET, &private)), auth);
        let data = r#"{"user_id":"42","user_info":{"name":"Ada"}}"#;
        let presence = channel_auth_message("1234.5678", "presence-room", Some(data));
        let auth = "app-key:7eae5778a7edfe839d7a03f042293004e8cc0798fcf98a63b02be7f19f8bef86";
        assert!(check_auth("app-key", SECRET, &presence, auth));
        let user = user_auth_message("1234.5678", r#"{"id":"42","name":"Ada"}"#);
        let auth = "app-key:301c617063a9befe3888bef787d0293388621da80385924cc3b7231582f595e3";
        assert!(check_auth("app-key", SECRET, &user, auth));
        // Another socket, channel, key or a bent signature: refused.
        assert!(!check_auth("app-key", SECRET, &channel_auth_message("1234.5679", "private-orders", None), auth));
        assert!(!check_auth("other-key", SECRET, &user, auth));
        assert!(!check_auth("app-key", SECRET, &user, "app-key:zz"));
        assert!(!check_auth("app-key", SECRET, &user, "no colon"));
    }

    #[test]
    fn api_requests_are_checked_as_the_server_library_signs_them() {
        let body = br#"{"name":"created","channels":["orders"],"data":"{\"id\":1}"}"#;
        let query = |signature: &str, timestamp: &str| -> Vec<(String, String)> {
            [
                ("auth_key", "app-key"),
                ("auth_timestamp", timestamp),
                ("auth_version", "1.0"),
                ("body_md5", "a08cf6ae4307ade8029c7c90f2bbe8c9"),
                ("auth_signature", signature),
            ]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
        };
        let good = query("4129931540fb99bc6f16ad936093fdf4e9904079898d5cf5e329c4ed4fcf0299", "1700000000");
        let check = |q: &[(String, String)], body: &[u8], now: u64| {
            check_request("app-key", SECRET, "POST", "/apps/1001/events", q, body, now)
        };
        assert_eq!(check(&good, body, 1_700_000_100), Ok(()));
        assert_eq!(check(&good, body, 1_700_000_601), Err(RequestError::Expired));
        assert_eq!(check(&good, b"{}", 1_700_000_000), Err(RequestError::BodyMd5));
        let bent = query("4129931540fb99bc6f16ad936093fdf4e9904079898d5cf5e329c4ed4fcf0298", "1700000000");
        assert_eq!(check(&bent, body, 1_700_000_000), Err(RequestError::Signature));
        let other_key: Vec<(String, String)> =
            good.iter().map(|(k, v)| (k.clone(), if k == "auth_key" { "x".into() } else { v.clone() })).collect();
        assert_eq!(check(&other_key, body, 1_700_000_000), Err(RequestError::UnknownKey));
        assert_eq!(check(&[], body, 1_700_000_000), Err(RequestError::Missing("auth_key")));
    }

    #[test]
    fn webhook_bodies_are_signed_with_the_secret() {
        let body = r#"{"time_ms":1700000000000,"events":[{"name":"channel_occupied","channel":"orders"}]}"#;
        assert_eq!(sign(SECRET, body), "c1b112fcc5fc333a8453bb4b62c1a43094f2126d3c3f4ed442a92f5cda54f8e4");
    }
}

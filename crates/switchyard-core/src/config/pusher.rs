//! `[pusher]` and `[[pusher.apps]]`: the Pusher Channels door
//! (docs/pusher.md), and `[[webhooks]]`, the webhooks of switchyard's own
//! protocol. Both doors announce through the one webhook mechanism.

use super::{ConfigError, NamespaceConfig, SubscribePermission, check_name, problem};
use crate::pusher;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// `[pusher]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PusherConfig {
    /// The apps this cluster serves. Default: none (the door is closed).
    pub apps: Vec<PusherAppConfig>,
    /// Seconds of silence after which a client pings, told in
    /// `pusher:connection_established`. Default: `120s`.
    #[serde(with = "humantime_serde")]
    pub activity_timeout: Duration,
    /// Client events a connection may send per second (Pusher's limit is
    /// 10); past it each is refused with a `pusher:error` 4301. Default: 10.
    pub client_events_per_second: u32,
    /// How long a cache channel keeps its last event. Default: `30m`.
    #[serde(with = "humantime_serde")]
    pub cache_ttl: Duration,
    /// The largest body the HTTP API takes, in bytes (413 past it), and
    /// the largest event `data`. Default: 10240 (Pusher's 10 KB).
    pub max_event_bytes: usize,
}

impl Default for PusherConfig {
    fn default() -> Self {
        PusherConfig {
            apps: Vec::new(),
            activity_timeout: Duration::from_secs(120),
            client_events_per_second: 10,
            cache_ttl: Duration::from_secs(30 * 60),
            max_event_bytes: 10 * 1024,
        }
    }
}

/// One `[[pusher.apps]]` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PusherAppConfig {
    /// The app id of the HTTP API's paths (`/apps/{id}/...`): 1 to 64
    /// letters, digits, `_` or `-`. Required.
    pub id: String,
    /// The key clients connect with (`/app/{key}`). Required.
    pub key: String,
    /// Signs channel authorizations, API requests and webhooks. Required.
    pub secret: String,
    /// Whether clients may send `client-*` events on private and presence
    /// channels. Default: false.
    #[serde(default)]
    pub enable_client_messages: bool,
    /// Connections of this app on one node at most; 0 = no limit.
    /// Default: 0.
    #[serde(default)]
    pub max_connections: usize,
    /// Where this app's webhooks go. Default: none.
    #[serde(default)]
    pub webhooks: Vec<WebhookConfig>,
}

/// The events a webhook can announce.
pub const WEBHOOK_EVENTS: [&str; 6] =
    ["channel_occupied", "channel_vacated", "member_added", "member_removed", "client_event", "cache_miss"];

/// One webhook target: `[[webhooks]]` (switchyard's own protocol) or
/// `[[pusher.apps.webhooks]]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Where events are POSTed. Required.
    pub url: String,
    /// Signs the body (`X-Switchyard-Signature: sha256=<hex>`). Required
    /// for `[[webhooks]]`; a Pusher app's webhooks are signed with the
    /// app's secret and ignore it.
    #[serde(default)]
    pub secret: Option<String>,
    /// Which events go to this target. Default: all of [`WEBHOOK_EVENTS`].
    #[serde(default = "all_events")]
    pub event_types: Vec<String>,
    /// Events in one request, at most. Default: 50.
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// How long an event may wait for others to share its request.
    /// Default: `50ms`.
    #[serde(default = "default_batch_delay", with = "humantime_serde")]
    pub batch_delay: Duration,
    /// A request with no answer within this counts as failed. Default: `5s`.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Attempts of one request before its events are dropped (counted).
    /// Default: 8 (with backoff from 100ms, doubling, up to 10s).
    #[serde(default = "default_attempts")]
    pub max_attempts: u32,
    /// Events waiting on this node, at most; past it new ones are dropped
    /// and counted. Default: 10000.
    #[serde(default = "default_queue")]
    pub max_queue: usize,
}

fn all_events() -> Vec<String> {
    WEBHOOK_EVENTS.iter().map(|e| (*e).to_owned()).collect()
}
fn default_batch_size() -> usize {
    50
}
fn default_batch_delay() -> Duration {
    Duration::from_millis(50)
}
fn default_timeout() -> Duration {
    Duration::from_secs(5)
}
fn default_attempts() -> u32 {
    8
}
fn default_queue() -> usize {
    10_000
}

impl WebhookConfig {
    /// Whether this target takes `event`.
    pub fn wants(&self, event: &str) -> bool {
        self.event_types.iter().any(|e| e == event)
    }

    pub(super) fn check(&self, key: &str, needs_secret: bool) -> Result<(), ConfigError> {
        let at = |field: &str| format!("{key}.{field}");
        if !(self.url.starts_with("http://") || self.url.starts_with("https://")) {
            return Err(problem(at("url"), "an http:// or https:// URL"));
        }
        if needs_secret && self.secret.as_deref().is_none_or(str::is_empty) {
            return Err(problem(at("secret"), "required: the receiver checks the signature with it"));
        }
        if let Some(unknown) = self.event_types.iter().find(|e| !WEBHOOK_EVENTS.contains(&e.as_str())) {
            return Err(problem(at("event_types"), format!("{unknown:?} is not one of {WEBHOOK_EVENTS:?}")));
        }
        if self.batch_size == 0 || self.batch_size > 1000 {
            return Err(problem(at("batch_size"), "1 to 1000"));
        }
        if self.max_attempts == 0 {
            return Err(problem(at("max_attempts"), "at least 1"));
        }
        if self.max_queue == 0 {
            return Err(problem(at("max_queue"), "at least 1"));
        }
        if self.timeout.is_zero() {
            return Err(problem(at("timeout"), "more than 0"));
        }
        Ok(())
    }
}

impl PusherConfig {
    /// The namespaces the door keeps its apps' channels in: clients of
    /// switchyard's own protocol cannot subscribe to them without a
    /// subscription token, nor publish; cache channels keep their last
    /// event for `cache_ttl`.
    pub fn namespaces(&self) -> [(&'static str, NamespaceConfig); 2] {
        let closed = NamespaceConfig {
            allow_publish: false,
            subscribe: SubscribePermission::Token,
            ..NamespaceConfig::default()
        };
        let meta_ttl = closed.history_meta_ttl.max(self.cache_ttl);
        let cache = NamespaceConfig {
            history_size: 1,
            history_ttl: self.cache_ttl,
            history_meta_ttl: meta_ttl,
            ..closed.clone()
        };
        [(pusher::NAMESPACE, closed), (pusher::CACHE_NAMESPACE, cache)]
    }

    /// The app whose clients connect with `key`.
    pub fn app_by_key(&self, key: &str) -> Option<&PusherAppConfig> {
        self.apps.iter().find(|a| a.key == key)
    }

    /// The app of the HTTP API's `/apps/{id}`.
    pub fn app_by_id(&self, id: &str) -> Option<&PusherAppConfig> {
        self.apps.iter().find(|a| a.id == id)
    }

    pub(super) fn check(&self) -> Result<(), ConfigError> {
        if self.client_events_per_second == 0 {
            return Err(problem("pusher.client_events_per_second", "at least 1"));
        }
        if self.activity_timeout < Duration::from_secs(1) {
            return Err(problem("pusher.activity_timeout", "at least 1s"));
        }
        if self.max_event_bytes < 256 {
            return Err(problem("pusher.max_event_bytes", "at least 256"));
        }
        for (index, app) in self.apps.iter().enumerate() {
            let key = |field: &str| format!("pusher.apps[{index}].{field}");
            check_name(key("id"), &app.id, 64)?;
            let key_ok = !app.key.is_empty() && app.key.len() <= 128 && app.key.bytes().all(|b| b.is_ascii_graphic());
            if !key_ok {
                return Err(problem(key("key"), "1 to 128 printable characters, no spaces"));
            }
            if app.secret.is_empty() {
                return Err(problem(key("secret"), "required"));
            }
            if self.apps[..index].iter().any(|a| a.id == app.id) {
                return Err(problem(key("id"), "another app has this id"));
            }
            if self.apps[..index].iter().any(|a| a.key == app.key) {
                return Err(problem(key("key"), "another app has this key"));
            }
            for (w, webhook) in app.webhooks.iter().enumerate() {
                webhook.check(&format!("pusher.apps[{index}].webhooks[{w}]"), false)?;
            }
        }
        Ok(())
    }
}

/// Checks `[[webhooks]]`.
pub(super) fn check_webhooks(webhooks: &[WebhookConfig]) -> Result<(), ConfigError> {
    for (index, webhook) in webhooks.iter().enumerate() {
        webhook.check(&format!("webhooks[{index}]"), true)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn parse(text: &str) -> Result<Config, String> {
        let config: Config = toml::from_str(text).map_err(|e| e.to_string())?;
        config.validate().map_err(|e| e.to_string())
    }

    #[test]
    fn apps_and_webhooks_parse_with_their_defaults() {
        let config = parse(
            r#"
            [[pusher.apps]]
            id = "1001"
            key = "app-key"
            secret = "app-secret"
            [[pusher.apps.webhooks]]
            url = "http://127.0.0.1:9/hooks"
            event_types = ["channel_occupied"]

            [[webhooks]]
            url = "http://127.0.0.1:9/own"
            secret = "s"
            "#,
        )
        .unwrap();
        let app = config.pusher.app_by_key("app-key").unwrap();
        assert!(!app.enable_client_messages);
        assert_eq!(app.max_connections, 0);
        assert!(app.webhooks[0].wants("channel_occupied"));
        assert!(!app.webhooks[0].wants("member_added"));
        assert_eq!(config.webhooks[0].event_types.len(), WEBHOOK_EVENTS.len());
        assert_eq!(config.pusher.app_by_id("1001").map(|a| a.key.as_str()), Some("app-key"));
    }

    #[test]
    fn mistakes_name_their_key() {
        let twice = r#"
            [[pusher.apps]]
            id = "1"
            key = "k"
            secret = "s"
            [[pusher.apps]]
            id = "2"
            key = "k"
            secret = "s"
        "#;
        assert!(parse(twice).unwrap_err().starts_with("pusher.apps[1].key"));
        let unsigned = "[[webhooks]]\nurl = \"http://x/\"\n";
        assert!(parse(unsigned).unwrap_err().starts_with("webhooks[0].secret"));
        let unknown = "[[webhooks]]\nurl = \"http://x/\"\nsecret = \"s\"\nevent_types = [\"channel_exploded\"]\n";
        assert!(parse(unknown).unwrap_err().starts_with("webhooks[0].event_types"));
    }
}

//! What a namespace of channels allows and keeps (`[namespaces.NAME]`).

use super::proxy::ProxyConfig;
use super::{ConfigError, problem};
use crate::channel;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// What happens to a subscriber whose outbound queue is full.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SlowConsumerPolicy {
    /// Close the connection with 4008; the client reconnects (and, on
    /// history channels, recovers).
    #[default]
    Disconnect,
    /// Skip this publication for this subscriber and count the drop.
    Drop,
}

/// Who may subscribe to the channels of a namespace.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubscribePermission {
    /// Anyone connected, anonymous clients included.
    #[default]
    All,
    /// Clients that connected with a token.
    Authenticated,
    /// Only with a subscription token: a JWT naming the channel (private
    /// channels).
    Token,
}

/// Options of the channels in one namespace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NamespaceConfig {
    /// Whether clients may publish. Default: `true`.
    pub allow_publish: bool,
    /// Who may subscribe: `all`, `authenticated`, or `token` (a
    /// subscription token per channel). Default: `all`.
    pub subscribe: SubscribePermission,
    /// Publications kept per channel; 0 = no history. Default: 0.
    pub history_size: usize,
    /// How long a channel's publications live after its last publication.
    /// Required when `history_size` > 0. Default: `0s`.
    #[serde(with = "humantime_serde")]
    pub history_ttl: Duration,
    /// How long a channel's position (epoch, offset) lives after its last
    /// publication; when it is gone the channel starts a new epoch. At least
    /// `history_ttl`. Default: `24h`.
    #[serde(with = "humantime_serde")]
    pub history_meta_ttl: Duration,
    /// See [`SlowConsumerPolicy`]. Default: `disconnect`.
    pub slow_consumer: SlowConsumerPolicy,
    /// Whether the cluster keeps who is subscribed to each channel (the
    /// `presence` and `presence_stats` commands). Default: `false`.
    pub presence: bool,
    /// Whether subscribers get a `join` when a client subscribes and a
    /// `leave` when it goes. Default: `false`.
    pub join_leave: bool,
    /// Whether the backend decides each `subscribe` (`proxy.subscribe`),
    /// in place of the `subscribe` permission. Default: `false`.
    pub proxy_subscribe: bool,
    /// Whether the backend sees each client `publish` first
    /// (`proxy.publish`): it may refuse it or rewrite its data.
    /// Default: `false`.
    pub proxy_publish: bool,
    /// Whether subscribers may ask for Fossil deltas (`"delta": "fossil"`
    /// in `subscribe`): after a full publication, each next one as a delta
    /// against the previous. Default: `false`.
    pub delta: bool,
}

impl Default for NamespaceConfig {
    fn default() -> Self {
        NamespaceConfig {
            allow_publish: true,
            subscribe: SubscribePermission::All,
            history_size: 0,
            history_ttl: Duration::ZERO,
            history_meta_ttl: Duration::from_secs(24 * 3600),
            slow_consumer: SlowConsumerPolicy::Disconnect,
            presence: false,
            join_leave: false,
            proxy_subscribe: false,
            proxy_publish: false,
            delta: false,
        }
    }
}

impl NamespaceConfig {
    pub fn keeps_history(&self) -> bool {
        self.history_size > 0
    }

    /// Whether subscribers are entered in presence: for `presence`, and for
    /// `join_leave`, whose leaves (of a node that died, too) come from it.
    pub fn tracks_presence(&self) -> bool {
        self.presence || self.join_leave
    }
}

impl NamespaceConfig {
    /// Checks the namespace `name` against the proxies it relies on.
    pub(super) fn check(&self, name: &str, proxy: &ProxyConfig) -> Result<(), ConfigError> {
        let key = format!("namespaces.{name}");
        if self.proxy_subscribe && proxy.subscribe.url.is_none() {
            return Err(problem(format!("{key}.proxy_subscribe"), "needs proxy.subscribe.url"));
        }
        if self.proxy_publish && proxy.publish.url.is_none() {
            return Err(problem(format!("{key}.proxy_publish"), "needs proxy.publish.url"));
        }
        if !channel::is_namespace_name(name) {
            return Err(problem(key, "is not a valid namespace name"));
        }
        if self.keeps_history() && self.history_ttl.is_zero() {
            return Err(problem(format!("{key}.history_ttl"), "must be set when history_size > 0"));
        }
        if self.history_meta_ttl < self.history_ttl {
            return Err(problem(format!("{key}.history_meta_ttl"), "must be at least history_ttl"));
        }
        Ok(())
    }
}

//! How the node treats each client connection (`[client]`) and how many it
//! takes (`[limits]`).

use super::{ConfigError, problem};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Per-connection settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClientConfig {
    /// Time between server pings (a WebSocket ping, and `{"ping":{}}` when
    /// nothing else was sent). Default: `25s`.
    #[serde(with = "humantime_serde")]
    pub ping_interval: Duration,
    /// How long past a ping interval a client may stay silent before it is
    /// closed with 4011. Default: `10s`.
    #[serde(with = "humantime_serde")]
    pub pong_timeout: Duration,
    /// Largest message a client may send, in bytes, after reassembling
    /// fragments; larger ones close the connection with 1009. Default: 65536.
    pub max_message_size: usize,
    /// Bytes a connection's outbound queue may hold before the namespace's
    /// slow-consumer policy applies. Default: 1048576 (1 MiB).
    pub max_queue_bytes: usize,
    /// The most a connection's replies may hold in its outbound queue, apart
    /// from publications: a recovery, a `history` or a `presence` answer is
    /// made to fit (what fits with a way to page on, `recovered: false`, or
    /// error 106 for presence), and a reader is never taken for slow because
    /// of an answer it asked for. Default: 1048576 (1 MiB).
    pub max_reply_bytes: usize,
    /// permessage-deflate (RFC 7692) on `/ws`, where a client offers it:
    /// each publication is compressed once and shared by every compressing
    /// subscriber, neither side keeps a window between messages
    /// (`server_no_context_takeover`, `client_no_context_takeover`). On by
    /// default: fanning a 1 KiB document out compressed costs the node the
    /// same CPU per delivery as plain (0.97-1.09x) for half the bytes, and
    /// an idle compressing connection holds nothing more (docs/benchmarks.md).
    /// Default: `true`.
    pub compression: bool,
    /// Messages shorter than this (bytes, encoded) go uncompressed even to
    /// compressing clients. Default: `256`.
    pub compression_min_size: usize,
    /// The period of the node's write clock: a connection (WebSocket or SSE
    /// stream) with frames queued writes them at the clock's next tick, so what comes
    /// meanwhile goes in the same write. A frame waits up to this long (the
    /// first after a quiet spell, the whole of it). At high fan-out the cost
    /// of a node is mostly its socket writes, so this trades that latency
    /// for fewer of them. Ticks fall on the runtime's millisecond timer.
    /// Default: `0s` (write at once, no clock).
    #[serde(with = "humantime_serde")]
    pub write_delay: Duration,
    /// Channels one connection may subscribe to; more get error 106.
    /// Default: 128.
    pub max_channels: usize,
    /// How long a closing connection may take to flush its last frames
    /// before its socket is dropped. Default: `5s`.
    #[serde(with = "humantime_serde")]
    pub close_timeout: Duration,
    /// Messages a connection may send per second, on average; a message
    /// over the rate gets error 109, and a client that keeps going past
    /// `commands_burst` refusals in a row is closed with 4029.
    /// Default: 100.
    pub commands_per_second: u32,
    /// Messages a connection may send at once above the rate. Default: 200.
    pub commands_burst: u32,
    /// How long a new connection may stay without its first command
    /// (`connect`, or any other where anonymous access is allowed) before
    /// it is closed with 4003. Default: `10s`.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// How long a connection's session (user, subscriptions, acked
    /// offsets) is kept for `connect.resume` after it ends. Default: `2m`.
    #[serde(with = "humantime_serde")]
    pub session_ttl: Duration,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            ping_interval: Duration::from_secs(25),
            pong_timeout: Duration::from_secs(10),
            max_message_size: 64 * 1024,
            max_queue_bytes: 1024 * 1024,
            max_reply_bytes: 1024 * 1024,
            compression: true,
            compression_min_size: 256,
            write_delay: Duration::ZERO,
            max_channels: 128,
            close_timeout: Duration::from_secs(5),
            session_ttl: Duration::from_secs(120),
            commands_per_second: 100,
            commands_burst: 200,
            connect_timeout: Duration::from_secs(10),
        }
    }
}

/// The longest `client.write_delay`: past it the delay would be a stall,
/// not a gathering of frames.
const MAX_WRITE_DELAY: Duration = Duration::from_secs(1);

impl ClientConfig {
    pub(super) fn check(&self) -> Result<(), ConfigError> {
        if self.ping_interval.is_zero() {
            return Err(problem("client.ping_interval", "must be more than 0s"));
        }
        if self.pong_timeout.is_zero() {
            return Err(problem("client.pong_timeout", "must be more than 0s"));
        }
        if self.max_message_size < 256 {
            return Err(problem("client.max_message_size", "must be at least 256 bytes"));
        }
        if self.write_delay > MAX_WRITE_DELAY {
            return Err(problem("client.write_delay", "must be at most 1s"));
        }
        if self.max_queue_bytes < self.max_message_size {
            return Err(problem("client.max_queue_bytes", "must be at least client.max_message_size"));
        }
        if self.max_reply_bytes < 2 * self.max_message_size {
            // Room for the largest publication with its reply around it.
            return Err(problem("client.max_reply_bytes", "must be at least twice client.max_message_size"));
        }
        if self.commands_per_second == 0 || self.commands_burst == 0 {
            return Err(problem(
                "client.commands_per_second",
                "commands_per_second and commands_burst must be at least 1",
            ));
        }
        if self.connect_timeout.is_zero() {
            return Err(problem("client.connect_timeout", "must be more than 0s"));
        }
        if self.session_ttl.is_zero() {
            return Err(problem("client.session_ttl", "must be more than 0s"));
        }
        if self.max_channels == 0 {
            return Err(problem("client.max_channels", "must be at least 1"));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Open WebSocket connections this node accepts; further upgrade
    /// requests get HTTP 503. Default: 100000.
    pub max_connections: usize,
    /// Open WebSocket connections from one client IP address; further
    /// upgrades get HTTP 429. 0 = no limit. Default: 0.
    pub max_connections_per_ip: usize,
    /// A header that carries the client's address when the peer is a
    /// trusted proxy (`X-Forwarded-For`: the last address is used).
    /// Default: unset (the peer address is the client's).
    pub trusted_proxy_header: Option<String>,
    /// Peer addresses whose `trusted_proxy_header` is believed (a load
    /// balancer's). Default: empty.
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// Browser origins allowed to open WebSockets: exact
    /// (`https://app.example.com`) or with a leading wildcard label
    /// (`https://*.example.com`); others get HTTP 403 before the upgrade.
    /// Requests without an `Origin` header (non-browser clients) pass.
    /// Default: empty, every origin allowed.
    pub allowed_origins: Vec<String>,
    /// How long a client may take to send its HTTP request head after
    /// opening TCP (slow handshakes are dropped). Default: `10s`.
    #[serde(with = "humantime_serde")]
    pub handshake_timeout: Duration,
    /// How long a client may take to send a request's body (the HTTP API,
    /// `POST /sse/command`, the admin page); a body trickled slower is
    /// refused (400) and its connection closed. Default: `10s`.
    #[serde(with = "humantime_serde")]
    pub body_timeout: Duration,
    /// New connections one client address may open per second, on
    /// average (a token bucket); upgrades over it get HTTP 429. 0 = no
    /// limit. Off by default: behind a load balancer every client has the
    /// balancer's address unless `trusted_proxy_header` is set. Default: 0.
    pub connects_per_second_per_ip: u32,
    /// Connections one address may open at once above that rate.
    /// Default: 50.
    pub connects_burst_per_ip: u32,
    /// Open connections one user (a token's `sub`) may hold on this node;
    /// a further `connect` gets error 106 and close 4009. Anonymous clients
    /// are not counted. 0 = no limit. Default: 0.
    pub max_connections_per_user: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_connections: 100_000,
            max_connections_per_ip: 0,
            trusted_proxy_header: None,
            trusted_proxies: Vec::new(),
            allowed_origins: Vec::new(),
            handshake_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(10),
            connects_per_second_per_ip: 0,
            connects_burst_per_ip: 50,
            max_connections_per_user: 0,
        }
    }
}

impl LimitsConfig {
    pub(super) fn check(&self) -> Result<(), ConfigError> {
        for origin in &self.allowed_origins {
            if origin != "*" && !origin.contains("://") {
                return Err(problem("limits.allowed_origins", format!("{origin:?} is not scheme://host[:port]")));
            }
        }
        if self.max_connections == 0 {
            return Err(problem("limits.max_connections", "must be at least 1"));
        }
        if self.connects_per_second_per_ip > 0 && self.connects_burst_per_ip == 0 {
            return Err(problem(
                "limits.connects_burst_per_ip",
                "must be at least 1 when connects_per_second_per_ip is set",
            ));
        }
        Ok(())
    }
}

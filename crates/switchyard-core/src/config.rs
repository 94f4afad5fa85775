//! The configuration tree. Every field says its unit and default; the
//! loader (defaults → TOML file → `SWITCHYARD_*` environment → flags) lives in
//! the gateway binary. docs/configuration.md lists the same, for operators.

use crate::channel::{self, DEFAULT_NAMESPACE};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// The whole configuration of a node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Public listener: WebSocket at `/ws`, plus health and metrics unless
    /// `internal_listen` is set. Default: `0.0.0.0:8080`.
    pub listen: SocketAddr,
    /// Optional second listener for `/metrics`, `/healthz` and `/readyz`
    /// only, e.g. `127.0.0.1:9090`. Default: unset (served on `listen`).
    pub internal_listen: Option<SocketAddr>,
    /// This node's name in logs and in the cluster. Default: a random id.
    pub node_name: Option<String>,
    pub broker: BrokerConfig,
    pub api: ApiConfig,
    pub auth: AuthConfig,
    pub client: ClientConfig,
    pub limits: LimitsConfig,
    pub shutdown: ShutdownConfig,
    pub tls: TlsConfig,
    pub testing: TestingConfig,
    pub rebalance: RebalanceConfig,
    pub admin: AdminConfig,
    pub proxy: ProxyConfig,
    /// Namespaces by name; `default` holds channels with no `:`.
    /// Default: only `default`, with its defaults.
    pub namespaces: BTreeMap<String, NamespaceConfig>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
            internal_listen: None,
            node_name: None,
            broker: BrokerConfig::default(),
            api: ApiConfig::default(),
            auth: AuthConfig::default(),
            client: ClientConfig::default(),
            limits: LimitsConfig::default(),
            shutdown: ShutdownConfig::default(),
            tls: TlsConfig::default(),
            testing: TestingConfig::default(),
            rebalance: RebalanceConfig::default(),
            admin: AdminConfig::default(),
            proxy: ProxyConfig::default(),
            namespaces: BTreeMap::from([(DEFAULT_NAMESPACE.to_owned(), NamespaceConfig::default())]),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BrokerConfig {
    /// Redis URL (`redis://[user:password@]host:port[/db]`, `rediss://` for
    /// TLS). Default: unset, which runs the in-memory broker: one node, no
    /// Redis.
    pub redis_url: Option<String>,
    /// Seed nodes of a Redis Cluster (URLs as above); pub/sub is sharded
    /// (SSUBSCRIBE/SPUBLISH). Default: empty. Exclusive with `redis_url`.
    pub redis_cluster: Vec<String>,
    /// Redis Sentinel: URLs of the sentinels (`redis://host:26379`, with the
    /// sentinels' own password if they need one). The primary they name is
    /// reached with the scheme, credentials and database of `redis_url` if
    /// it is set (its host and port are not used). Default: empty.
    pub sentinels: Vec<String>,
    /// The name of the group the sentinels monitor (`sentinel monitor
    /// <name> ...`); needed with `sentinels`. Default: unset.
    pub sentinel_master: Option<String>,
    /// Prefix of every Redis key and pub/sub name. Default: `switchyard`.
    pub prefix: String,
    /// For `rediss://`: a PEM file of the CA that signed Redis' certificate,
    /// instead of the system's trust store. Default: unset.
    pub tls_ca_file: Option<PathBuf>,
    /// For `rediss://` with client certificates (mutual TLS): this node's
    /// PEM certificate and key. Default: unset.
    pub tls_cert_file: Option<PathBuf>,
    pub tls_key_file: Option<PathBuf>,
    /// How often a node refreshes its entry in the cluster registry; the
    /// entry expires after three times this. Default: `5s`.
    #[serde(with = "humantime_serde")]
    pub heartbeat_interval: Duration,
    /// How long a presence entry lives unless its node refreshes it (every
    /// third of it): the longest a client of a node that died stays in
    /// presence, and the latest its `leave` comes. Default: `60s`.
    #[serde(with = "humantime_serde")]
    pub presence_ttl: Duration,
    /// How long a cluster-wide survey (`POST /api/channels`) waits for the
    /// nodes' answers; nodes that do not answer in time are left out.
    /// Default: `1s`.
    #[serde(with = "humantime_serde")]
    pub survey_timeout: Duration,
    /// How long a publish with `receipt` waits for the nodes' answers;
    /// nodes that do not answer in time are left out (and counted as
    /// unanswered). Default: `1s`.
    #[serde(with = "humantime_serde")]
    pub receipt_timeout: Duration,
    /// How long a publish's `idempotency_key` is remembered per channel: a
    /// repeat within it publishes nothing and answers what the first
    /// answered. Default: `5m`.
    #[serde(with = "humantime_serde")]
    pub idempotency_window: Duration,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            redis_url: None,
            redis_cluster: Vec::new(),
            sentinels: Vec::new(),
            sentinel_master: None,
            prefix: "switchyard".to_owned(),
            tls_ca_file: None,
            tls_cert_file: None,
            tls_key_file: None,
            heartbeat_interval: Duration::from_secs(5),
            presence_ttl: Duration::from_secs(60),
            survey_timeout: Duration::from_secs(1),
            receipt_timeout: Duration::from_secs(1),
            idempotency_window: Duration::from_secs(300),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiConfig {
    /// Key for the HTTP API (`Authorization: apikey <key>`). Default: unset,
    /// which turns the HTTP API off.
    pub key: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Secret for HS256 tokens. Default: unset.
    pub hmac_secret: Option<String>,
    /// PEM files of RSA or EC (P-256) public keys for RS256/ES256 tokens.
    /// Default: empty.
    pub public_key_files: Vec<PathBuf>,
    /// A JWKS file (`{"keys": [...]}`) of RSA and EC public keys, matched
    /// by the token's `kid`. Default: unset.
    pub jwks_file: Option<PathBuf>,
    /// Whether a client may connect without a token. Default: `true`.
    pub allow_anonymous: bool,
    /// A query parameter of the `/ws` URL that may carry the connect token,
    /// for clients that cannot send `connect` first. Default: unset.
    pub token_query_param: Option<String>,
    /// A cookie that may carry the connect token. Default: unset.
    pub token_cookie: Option<String>,
    /// How long past its token's `exp` a connection may stay without a
    /// `refresh` before it is closed with 4003. Default: `30s`.
    #[serde(with = "humantime_serde")]
    pub refresh_grace: Duration,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            hmac_secret: None,
            public_key_files: Vec::new(),
            jwks_file: None,
            allow_anonymous: true,
            token_query_param: None,
            token_cookie: None,
            refresh_grace: Duration::from_secs(30),
        }
    }
}

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
            connects_per_second_per_ip: 0,
            connects_burst_per_ip: 50,
            max_connections_per_user: 0,
        }
    }
}

/// The admin page (`GET /admin`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminConfig {
    /// Its password; unset: no admin page. Default: unset.
    pub password: Option<String>,
    /// Also serve it on the public listener (it is on the internal one,
    /// or on the public one when there is no internal one, only with
    /// this). Default: `false`.
    pub public: bool,
}

/// The application's backend, asked over HTTP about connections,
/// subscriptions, publications and RPC calls (docs/proxy.md). Each proxy
/// is off until its `url` is set.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProxyConfig {
    /// A client that connects without a token: the backend names its user
    /// from the upgrade's cookies and headers.
    pub connect: ProxyEndpointConfig,
    /// A connection whose expiry the connect proxy set: the backend
    /// extends it, or lets it end (4003).
    pub refresh: ProxyEndpointConfig,
    /// `subscribe` in namespaces with `proxy_subscribe = true`.
    pub subscribe: ProxyEndpointConfig,
    /// Client `publish` in namespaces with `proxy_publish = true`.
    pub publish: ProxyEndpointConfig,
    /// The client's `rpc` command.
    pub rpc: ProxyEndpointConfig,
    /// A PEM file of the CA that signed the backends' certificates
    /// (`https://` URLs), instead of the system's trust store.
    /// Default: unset.
    pub tls_ca_file: Option<PathBuf>,
}

impl ProxyConfig {
    /// Every proxy by its name (the `proxy` label of its metrics).
    pub fn endpoints(&self) -> [(&'static str, &ProxyEndpointConfig); 5] {
        [
            ("connect", &self.connect),
            ("refresh", &self.refresh),
            ("subscribe", &self.subscribe),
            ("publish", &self.publish),
            ("rpc", &self.rpc),
        ]
    }
}

/// One proxy: where it POSTs, and how long and how much it waits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProxyEndpointConfig {
    /// `http://` or `https://` URL the node POSTs JSON to. Default: unset
    /// (this proxy is off).
    pub url: Option<String>,
    /// How long a request may take, connecting included; past it the
    /// client gets error 108. Default: `1s`.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Headers of the client's upgrade (or stream) request forwarded with
    /// every request of this proxy, as HTTP headers. Default: `Cookie`,
    /// `Authorization`, `Origin`, `User-Agent`, `X-Forwarded-For`,
    /// `X-Real-Ip`.
    pub headers: Vec<String>,
    /// Requests in flight from this node at most; one more gets error 108
    /// at once (no queue). Also bounds the connections to the backend.
    /// Default: 256.
    pub max_in_flight: usize,
    /// Failed requests in a row (timeouts, refused connections, 5xx,
    /// garbage) after which the circuit opens: requests fail at once with
    /// 108 until `circuit_open_for` has passed and a probe succeeds.
    /// Default: 5.
    pub circuit_failures: u32,
    /// How long an open circuit stays open before one request probes the
    /// backend again. Default: `5s`.
    #[serde(with = "humantime_serde")]
    pub circuit_open_for: Duration,
    /// Largest answer read from the backend, in bytes; a larger one counts
    /// as garbage. Default: 65536.
    pub max_response_size: usize,
}

/// Headers forwarded by default: what a backend needs to recognise its
/// own session and the client's address.
pub const DEFAULT_PROXY_HEADERS: &[&str] =
    &["Cookie", "Authorization", "Origin", "User-Agent", "X-Forwarded-For", "X-Real-Ip"];

/// Headers that describe one hop of HTTP and never go to a backend.
const HOP_HEADERS: &[&str] = &[
    "connection",
    "content-length",
    "content-type",
    "host",
    "keep-alive",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "x-request-id",
];

impl Default for ProxyEndpointConfig {
    fn default() -> Self {
        ProxyEndpointConfig {
            url: None,
            timeout: Duration::from_secs(1),
            headers: DEFAULT_PROXY_HEADERS.iter().map(|h| (*h).to_owned()).collect(),
            max_in_flight: 256,
            circuit_failures: 5,
            circuit_open_for: Duration::from_secs(5),
            max_response_size: 64 * 1024,
        }
    }
}

/// Active rebalancing: a node that holds more than its share of the
/// cluster's connections sheds the excess, slowly, with close 4012, so that
/// clients reconnect (through the balancer, to emptier nodes) and resume.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RebalanceConfig {
    /// Off by default: it closes live connections, which only clients that
    /// resume at once on 4012 (the SDKs) ride out unnoticed; turn it on
    /// where clients do, behind a least-connections balancer. Default: `false`.
    pub enabled: bool,
    /// How far above the cluster's mean a node may be before it sheds, as
    /// a fraction (0.1: 10 %). Default: `0.1`.
    pub tolerance: f64,
    /// Connections shed per second at most. Default: 50.
    pub max_per_second: u32,
    /// How often a node compares itself with the cluster; after a round
    /// that shed, it waits two of these for the registry to catch up
    /// (hysteresis). Default: `5s`.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
}

impl Default for RebalanceConfig {
    fn default() -> Self {
        RebalanceConfig { enabled: false, tolerance: 0.1, max_per_second: 50, interval: Duration::from_secs(5) }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ShutdownConfig {
    /// On SIGTERM/SIGINT, connections are closed with 1001 in paced batches
    /// spread over this period. Default: `10s`.
    #[serde(with = "humantime_serde")]
    pub drain_period: Duration,
    /// The process exits at the latest this long after the signal, whatever
    /// is left. Must be longer than `drain_period`. Default: `30s`.
    #[serde(with = "humantime_serde")]
    pub grace_period: Duration,
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        ShutdownConfig { drain_period: Duration::from_secs(10), grace_period: Duration::from_secs(30) }
    }
}

/// TLS on the public listener (`wss://`). Off unless both files are set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain, leaf first. Default: unset.
    pub cert: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1). Default: unset.
    pub key: Option<PathBuf>,
    /// How often the files are checked for a change; a changed pair is
    /// loaded without a restart (a broken one is logged and skipped).
    /// Default: `10s`.
    #[serde(with = "humantime_serde")]
    pub reload_interval: Duration,
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig { cert: None, key: None, reload_interval: Duration::from_secs(10) }
    }
}

/// Switches for conformance testing. Never on in production.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TestingConfig {
    /// Serves `GET /echo`: a WebSocket that echoes every message back, over
    /// the same frame, reassembly, limit and close code as `/ws`, for
    /// WebSocket conformance suites (Autobahn). Default: `false`.
    pub echo: bool,
}

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

/// The longest `client.write_delay`: past it the delay would be a stall,
/// not a gathering of frames.
const MAX_WRITE_DELAY: Duration = Duration::from_secs(1);

/// A configuration that cannot run, with the key at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {problem}")]
pub struct ConfigError {
    pub key: String,
    pub problem: String,
}

fn problem(key: impl Into<String>, problem: impl Into<String>) -> ConfigError {
    ConfigError { key: key.into(), problem: problem.into() }
}

impl Config {
    /// Checks what serde cannot: ranges and relations between fields. Adds
    /// the `default` namespace when it is missing.
    pub fn validate(mut self) -> Result<Config, ConfigError> {
        self.namespaces.entry(DEFAULT_NAMESPACE.to_owned()).or_default();
        let c = &self.client;
        if c.ping_interval.is_zero() {
            return Err(problem("client.ping_interval", "must be more than 0s"));
        }
        if c.pong_timeout.is_zero() {
            return Err(problem("client.pong_timeout", "must be more than 0s"));
        }
        if c.max_message_size < 256 {
            return Err(problem("client.max_message_size", "must be at least 256 bytes"));
        }
        if c.write_delay > MAX_WRITE_DELAY {
            return Err(problem("client.write_delay", "must be at most 1s"));
        }
        if c.max_queue_bytes < c.max_message_size {
            return Err(problem("client.max_queue_bytes", "must be at least client.max_message_size"));
        }
        if c.commands_per_second == 0 || c.commands_burst == 0 {
            return Err(problem(
                "client.commands_per_second",
                "commands_per_second and commands_burst must be at least 1",
            ));
        }
        if c.connect_timeout.is_zero() {
            return Err(problem("client.connect_timeout", "must be more than 0s"));
        }
        if c.session_ttl.is_zero() {
            return Err(problem("client.session_ttl", "must be more than 0s"));
        }
        if c.max_channels == 0 {
            return Err(problem("client.max_channels", "must be at least 1"));
        }
        for origin in &self.limits.allowed_origins {
            if origin != "*" && !origin.contains("://") {
                return Err(problem("limits.allowed_origins", format!("{origin:?} is not scheme://host[:port]")));
            }
        }
        if self.limits.max_connections == 0 {
            return Err(problem("limits.max_connections", "must be at least 1"));
        }
        if self.shutdown.grace_period <= self.shutdown.drain_period {
            return Err(problem("shutdown.grace_period", "must be longer than shutdown.drain_period"));
        }
        if self.broker.redis_url.is_some() && !self.broker.redis_cluster.is_empty() {
            return Err(problem(
                "broker.redis_cluster",
                "set either broker.redis_url or broker.redis_cluster, not both",
            ));
        }
        if self.broker.sentinels.is_empty() != self.broker.sentinel_master.is_none() {
            return Err(problem(
                "broker.sentinel_master",
                "set both broker.sentinels and broker.sentinel_master, or neither",
            ));
        }
        if !self.broker.sentinels.is_empty() && !self.broker.redis_cluster.is_empty() {
            return Err(problem("broker.sentinels", "set either broker.sentinels or broker.redis_cluster, not both"));
        }
        if self.broker.prefix.is_empty() || self.broker.prefix.contains(['{', '}']) {
            return Err(problem("broker.prefix", "must be non-empty, without { or }"));
        }
        if self.tls.cert.is_some() != self.tls.key.is_some() {
            return Err(problem("tls.key", "set both tls.cert and tls.key, or neither"));
        }
        if self.tls.reload_interval.is_zero() {
            return Err(problem("tls.reload_interval", "must be more than 0s"));
        }
        if self.broker.tls_cert_file.is_some() != self.broker.tls_key_file.is_some() {
            return Err(problem(
                "broker.tls_key_file",
                "set both broker.tls_cert_file and broker.tls_key_file, or neither",
            ));
        }
        if self.broker.presence_ttl < Duration::from_secs(1) {
            return Err(problem("broker.presence_ttl", "must be at least 1s"));
        }
        if !(0.0..=10.0).contains(&self.rebalance.tolerance) {
            return Err(problem("rebalance.tolerance", "a fraction between 0 and 10"));
        }
        if self.rebalance.max_per_second == 0 || self.rebalance.interval.is_zero() {
            return Err(problem("rebalance.max_per_second", "max_per_second and interval must be more than 0"));
        }
        if self.broker.idempotency_window < Duration::from_millis(1) {
            return Err(problem("broker.idempotency_window", "must be at least 1ms"));
        }
        if self.broker.receipt_timeout.is_zero() {
            return Err(problem("broker.receipt_timeout", "must be more than 0s"));
        }
        if self.broker.survey_timeout.is_zero() {
            return Err(problem("broker.survey_timeout", "must be more than 0s"));
        }
        if self.limits.connects_per_second_per_ip > 0 && self.limits.connects_burst_per_ip == 0 {
            return Err(problem(
                "limits.connects_burst_per_ip",
                "must be at least 1 when connects_per_second_per_ip is set",
            ));
        }
        if self.broker.heartbeat_interval.is_zero() {
            return Err(problem("broker.heartbeat_interval", "must be more than 0s"));
        }
        if self.api.key.as_deref() == Some("") {
            return Err(problem("api.key", "must not be empty (leave it unset to turn the API off)"));
        }
        for (name, endpoint) in self.proxy.endpoints() {
            let key = format!("proxy.{name}");
            if let Some(url) = &endpoint.url
                && !(url.starts_with("http://") || url.starts_with("https://"))
            {
                return Err(problem(format!("{key}.url"), format!("{url:?} is not an http:// or https:// URL")));
            }
            if endpoint.timeout.is_zero() {
                return Err(problem(format!("{key}.timeout"), "must be more than 0s"));
            }
            if endpoint.max_in_flight == 0 || endpoint.circuit_failures == 0 {
                return Err(problem(
                    format!("{key}.max_in_flight"),
                    "max_in_flight and circuit_failures must be at least 1",
                ));
            }
            if endpoint.max_response_size < 256 {
                return Err(problem(format!("{key}.max_response_size"), "must be at least 256 bytes"));
            }
            for header in &endpoint.headers {
                let lower = header.to_ascii_lowercase();
                if HOP_HEADERS.contains(&lower.as_str()) || lower.starts_with("sec-websocket-") {
                    return Err(problem(format!("{key}.headers"), format!("{header} is not forwarded")));
                }
            }
        }
        for (name, ns) in &self.namespaces {
            let key = format!("namespaces.{name}");
            if ns.proxy_subscribe && self.proxy.subscribe.url.is_none() {
                return Err(problem(format!("{key}.proxy_subscribe"), "needs proxy.subscribe.url"));
            }
            if ns.proxy_publish && self.proxy.publish.url.is_none() {
                return Err(problem(format!("{key}.proxy_publish"), "needs proxy.publish.url"));
            }
            if !channel::is_namespace_name(name) {
                return Err(problem(key, "is not a valid namespace name"));
            }
            if ns.keeps_history() && ns.history_ttl.is_zero() {
                return Err(problem(format!("{key}.history_ttl"), "must be set when history_size > 0"));
            }
            if ns.history_meta_ttl < ns.history_ttl {
                return Err(problem(format!("{key}.history_meta_ttl"), "must be at least history_ttl"));
            }
        }
        Ok(self)
    }

    /// The namespace of a channel, if it is configured.
    pub fn namespace(&self, name: &str) -> Option<&NamespaceConfig> {
        self.namespaces.get(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_file_shape_parses() {
        let config: Config = toml::from_str(
            r#"
            listen = "0.0.0.0:8080"
            [broker]
            redis_url = "redis://127.0.0.1:6379"
            [namespaces.default]
            allow_publish = true
            [namespaces.chat]
            history_size = 100
            history_ttl = "10m"
            allow_publish = true
            "#,
        )
        .unwrap();
        let config = config.validate().unwrap();
        assert_eq!(config.namespaces["chat"].history_ttl, Duration::from_secs(600));
        assert_eq!(config.broker.redis_url.as_deref(), Some("redis://127.0.0.1:6379"));
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused() {
        assert!(toml::from_str::<Config>("lisen = \"0.0.0.0:1\"").is_err());
        let config: Config = toml::from_str("[namespaces.chat]\nhistory_size = 10").unwrap();
        assert_eq!(config.validate().unwrap_err().key, "namespaces.chat.history_ttl");
        let config: Config = toml::from_str("[namespaces.\"a:b\"]").unwrap();
        assert_eq!(config.validate().unwrap_err().key, "namespaces.a:b");
    }

    #[test]
    fn default_namespace_is_always_there() {
        let config: Config = toml::from_str("[namespaces.chat]").unwrap();
        assert!(config.validate().unwrap().namespace("default").is_some());
    }
}

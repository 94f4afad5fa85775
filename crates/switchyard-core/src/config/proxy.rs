//! The application's backend, asked over HTTP (`[proxy.*]`).

use super::{ConfigError, problem};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

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

impl ProxyConfig {
    pub(super) fn check(&self) -> Result<(), ConfigError> {
        for (name, endpoint) in self.endpoints() {
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
        Ok(())
    }
}

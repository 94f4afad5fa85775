//! The backend proxy: the node asks the application's backend, by an HTTP
//! POST with a JSON body, who a client without a token is (`connect`),
//! whether its connection may go on (`refresh`), whether it may subscribe
//! (`subscribe`), what it may publish (`publish`), and what its `rpc`
//! calls answer. docs/proxy.md is the backend's side of it.
//!
//! A backend that is down, slow, overloaded or answering garbage costs the
//! client an error 108 within the proxy's `timeout`, never a hang; each
//! proxy bounds its requests in flight and opens a circuit after repeated
//! failures.
//!
//! # Layout
//! - [`endpoint`]: one proxy: HTTP client and pool, bounds, timeout, metrics.
//! - [`breaker`]: the circuit breaker.
//! - [`bodies`]: the request and answer bodies.

pub mod bodies;
pub mod breaker;
pub mod endpoint;

pub use bodies::Caller;
pub use endpoint::Endpoint;

use crate::handshake::Handshake;
use hyper::header::HeaderName;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use std::sync::atomic::{AtomicU64, Ordering};
use switchyard_core::codes::{CloseCode, ErrorCode};
use switchyard_core::config::ProxyConfig;

/// What the backend answered.
#[derive(Debug)]
pub enum Outcome<R> {
    Result(R),
    /// Passed to the client as its error reply.
    Error(ErrorCode, String),
    /// The client is to be disconnected with this code.
    Disconnect(CloseCode, String),
}

/// Why no answer came from the backend. Every kind gives the client 108;
/// the kind is the `kind` label of `switchyard_proxy_errors_total`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProxyError {
    #[error("the backend did not answer in time")]
    Timeout,
    #[error("the backend is unreachable: {0}")]
    Unavailable(String),
    #[error("the backend answered HTTP {0}")]
    Status(u16),
    #[error("the backend's answer is unusable: {0}")]
    Malformed(String),
    #[error("too many requests to the backend in flight")]
    Overloaded,
    #[error("the backend is failing (circuit open)")]
    CircuitOpen,
}

impl ProxyError {
    pub fn kind(&self) -> &'static str {
        match self {
            ProxyError::Timeout => "timeout",
            ProxyError::Unavailable(_) => "unavailable",
            ProxyError::Status(_) => "status",
            ProxyError::Malformed(_) => "malformed",
            ProxyError::Overloaded => "overloaded",
            ProxyError::CircuitOpen => "circuit_open",
        }
    }
}

/// The proxies this node is configured with.
pub struct Proxies {
    pub connect: Option<Endpoint>,
    pub refresh: Option<Endpoint>,
    pub subscribe: Option<Endpoint>,
    pub publish: Option<Endpoint>,
    pub rpc: Option<Endpoint>,
    /// Every header some proxy forwards: what an upgrade keeps.
    forwarded: Vec<HeaderName>,
    next_request: AtomicU64,
}

impl Proxies {
    pub fn new(config: &ProxyConfig) -> Result<Proxies, String> {
        let mut tls = None;
        let mut endpoint = |name: &'static str| -> Result<Option<Endpoint>, String> {
            let (_, settings) = config.endpoints().into_iter().find(|(n, _)| *n == name).expect("a proxy's name");
            let Some(url) = &settings.url else { return Ok(None) };
            if tls.is_none() {
                tls = Some(tls_config(config)?);
            }
            let tls = tls.clone().expect("made above");
            Endpoint::new(name, settings, url, tls).map(Some)
        };
        let (connect, refresh, subscribe, publish, rpc) = (
            endpoint("connect")?,
            endpoint("refresh")?,
            endpoint("subscribe")?,
            endpoint("publish")?,
            endpoint("rpc")?,
        );
        let mut forwarded: Vec<HeaderName> = Vec::new();
        for e in [&connect, &refresh, &subscribe, &publish, &rpc].into_iter().flatten() {
            for name in e.forwarded() {
                if !forwarded.contains(name) {
                    forwarded.push(name.clone());
                }
            }
        }
        Ok(Proxies { connect, refresh, subscribe, publish, rpc, forwarded, next_request: AtomicU64::new(1) })
    }

    /// The headers an upgrade keeps for the proxies.
    pub fn forwarded(&self) -> &[HeaderName] {
        &self.forwarded
    }

    /// A request id, unique on this node (and, with its name, in the cluster).
    pub fn request_id(&self, node: &str) -> String {
        format!("{node}-{}", self.next_request.fetch_add(1, Ordering::Relaxed))
    }
}

/// rustls for `https://` backends: the system's roots, or `tls_ca_file`.
fn tls_config(config: &ProxyConfig) -> Result<rustls::ClientConfig, String> {
    // rustls needs a process-wide crypto provider; the first install wins.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut roots = rustls::RootCertStore::empty();
    match &config.tls_ca_file {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .map_err(|e| format!("proxy.tls_ca_file: {}: {e}", path.display()))?;
            let (added, _) = roots.add_parsable_certificates(certs);
            if added == 0 {
                return Err(format!("proxy.tls_ca_file: {}: no certificate in it", path.display()));
            }
        }
        None => {
            roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
        }
    }
    Ok(rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth())
}

/// What the request that opened a connection leaves to its session: the
/// token, and the headers the proxies forward.
pub fn handshake(
    proxies: &Proxies,
    transport: &'static str,
    token: Option<String>,
    headers: &hyper::HeaderMap,
) -> Handshake {
    Handshake::new(transport, token, headers, proxies.forwarded())
}

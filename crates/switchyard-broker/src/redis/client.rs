//! A Redis client for one URL: RESP3 (for push messages), and TLS with
//! the configured certificates for `rediss://`. Every connection the
//! broker makes starts here: to servers, to a Cluster's seeds, and to
//! sentinels.

use redis::{ClientTlsConfig, ConnectionInfo, IntoConnectionInfo, ProtocolVersion, TlsCertificates};

/// PEM material for `rediss://` connections.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RedisTls {
    /// The CA to trust instead of the system's roots.
    pub ca: Option<Vec<u8>>,
    /// A client certificate and key, for mutual TLS.
    pub client: Option<(Vec<u8>, Vec<u8>)>,
}

impl RedisTls {
    pub(super) fn certificates(&self) -> Option<TlsCertificates> {
        if self.ca.is_none() && self.client.is_none() {
            return None;
        }
        Some(TlsCertificates {
            client_tls: self
                .client
                .clone()
                .map(|(client_cert, client_key)| ClientTlsConfig { client_cert, client_key }),
            root_cert: self.ca.clone(),
        })
    }
}

pub(super) fn resp3(url: &str) -> redis::RedisResult<ConnectionInfo> {
    let info = url.into_connection_info()?;
    let settings = info.redis_settings().clone().set_protocol(ProtocolVersion::RESP3);
    Ok(info.set_redis_settings(settings))
}

pub(super) fn client(url: &str, tls: &RedisTls) -> redis::RedisResult<redis::Client> {
    // rustls needs a process-wide crypto provider; the first install wins.
    let _ = rustls::crypto::ring::default_provider().install_default();
    match tls.certificates() {
        Some(certificates) => redis::Client::build_with_tls(resp3(url)?, certificates),
        None => redis::Client::open(resp3(url)?),
    }
}

//! The node's own HTTP requests to services it calls (the application's
//! backend, the identity provider's keys): HTTP/1.1 over plain TCP or TLS
//! (rustls), one connector for all.

use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;

/// A connector for `http://` and `https://` URLs, trusting `tls`'s roots.
pub fn connector(tls: rustls::ClientConfig) -> HttpsConnector<HttpConnector> {
    let mut http = HttpConnector::new();
    // Requests are small and answered at once: no Nagle delay.
    http.set_nodelay(true);
    http.enforce_http(false);
    hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(tls).https_or_http().enable_http1().wrap_connector(http)
}

/// TLS trusting the system's roots.
pub fn system_roots() -> rustls::ClientConfig {
    // rustls needs a process-wide crypto provider; the first install wins.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut roots = rustls::RootCertStore::empty();
    roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth()
}

//! TLS on the public listener, with certificates reloaded when their files
//! change (no restart, no dropped connections: new handshakes get the new
//! certificate).

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// Reads a certificate chain and its key.
pub fn load(cert: &Path, key: &Path) -> Result<Arc<CertifiedKey>, String> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<_, _>>())
        .map_err(|e| format!("tls.cert: {}: {e}", cert.display()))?;
    if chain.is_empty() {
        return Err(format!("tls.cert: {}: no certificate", cert.display()));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("tls.key: {}: {e}", key.display()))?;
    let signing = rustls::crypto::ring::sign::any_supported_type(&key).map_err(|e| format!("tls.key: {e}"))?;
    Ok(Arc::new(CertifiedKey::new(chain, signing)))
}

/// Serves whichever certificate was loaded last.
#[derive(Debug)]
struct Current(RwLock<Arc<CertifiedKey>>);

impl ResolvesServerCert for Current {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.read().unwrap_or_else(|e| e.into_inner()).clone())
    }
}

/// The acceptor for the public listener, and the watcher that reloads it.
pub struct Tls {
    pub acceptor: TlsAcceptor,
    current: Arc<Current>,
    cert: PathBuf,
    key: PathBuf,
}

impl Tls {
    pub fn new(cert: &Path, key: &Path) -> Result<Tls, String> {
        // rustls needs a process-wide crypto provider; the first install wins.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let current = Arc::new(Current(RwLock::new(load(cert, key)?)));
        let mut config = ServerConfig::builder().with_no_client_auth().with_cert_resolver(current.clone());
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Tls { acceptor: TlsAcceptor::from(Arc::new(config)), current, cert: cert.to_owned(), key: key.to_owned() })
    }

    /// Checks the files every `every`; loads a changed pair.
    pub async fn watch(self: Arc<Self>, every: Duration, stop: CancellationToken) {
        let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
        let mut seen: (Option<SystemTime>, Option<SystemTime>) = (modified(&self.cert), modified(&self.key));
        let mut tick = tokio::time::interval(every);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            let now = (modified(&self.cert), modified(&self.key));
            if now == seen {
                continue;
            }
            seen = now;
            match load(&self.cert, &self.key) {
                Ok(key) => {
                    *self.current.0.write().unwrap_or_else(|e| e.into_inner()) = key;
                    info!(cert = %self.cert.display(), "reloaded the TLS certificate");
                }
                Err(e) => warn!(error = %e, "kept the old TLS certificate"),
            }
        }
    }
}

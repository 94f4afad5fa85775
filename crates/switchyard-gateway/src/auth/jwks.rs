//! The identity provider's key set (`auth.jwks_url`): fetched over HTTPS
//! or HTTP when the node starts, kept, fetched again every
//! `auth.jwks_refresh_interval` and when a token names a `kid` the set
//! does not hold (at most once per [`REFETCH_AFTER`], so tokens with made-up
//! `kid`s cannot make the node hammer the provider). A failed fetch keeps
//! the keys it had.

use super::keys::{Family, KeySet, key_set};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty, Limited};
use hyper::Uri;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use jsonwebtoken::DecodingKey;
use std::sync::{Mutex, RwLock};
use std::time::Duration;
use switchyard_core::metric;
use tokio::time::Instant;
use tracing::{info, warn};

/// The shortest time between two fetches asked for by unknown `kid`s.
pub const REFETCH_AFTER: Duration = Duration::from_secs(10);
/// How long one fetch may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest key set taken (a provider's holds a few keys).
const MAX_SIZE: usize = 1024 * 1024;

pub struct RemoteKeys {
    uri: Uri,
    client: Client<HttpsConnector<HttpConnector>, Empty<Bytes>>,
    keys: RwLock<KeySet>,
    /// When the last fetch for an unknown `kid` started.
    last_refetch: Mutex<Option<Instant>>,
    /// One fetch at a time: those who come meanwhile wait for its keys.
    fetching: tokio::sync::Mutex<()>,
}

impl RemoteKeys {
    pub fn new(url: &str) -> Result<RemoteKeys, String> {
        let uri: Uri = url.parse().map_err(|e| format!("auth.jwks_url: {url:?}: {e}"))?;
        if !matches!(uri.scheme_str(), Some("http" | "https")) {
            return Err(format!("auth.jwks_url: {url:?}: an http:// or https:// URL"));
        }
        let connector = crate::outgoing::connector(crate::outgoing::system_roots());
        Ok(RemoteKeys {
            uri,
            client: Client::builder(TokioExecutor::new()).build(connector),
            keys: RwLock::default(),
            last_refetch: Mutex::new(None),
            fetching: tokio::sync::Mutex::new(()),
        })
    }

    /// The key `kid`, if the last set held it.
    pub(super) fn key(&self, kid: &str) -> Option<(Family, DecodingKey)> {
        self.keys.read().unwrap_or_else(|e| e.into_inner()).get(kid).cloned()
    }

    /// Fetches the key set and takes it in place of the last one; a failure
    /// keeps the last one.
    pub async fn fetch(&self) -> Result<usize, String> {
        let _one_at_a_time = self.fetching.lock().await;
        let result = tokio::time::timeout(FETCH_TIMEOUT, self.get()).await.unwrap_or_else(|_| Err("timed out".into()));
        match result {
            Ok(keys) => {
                let count = keys.len();
                *self.keys.write().unwrap_or_else(|e| e.into_inner()) = keys;
                metric::jwks_fetches("ok").increment(1);
                info!(keys = count, url = %self.uri, "fetched the identity provider's keys");
                Ok(count)
            }
            Err(e) => {
                metric::jwks_fetches("error").increment(1);
                warn!(url = %self.uri, error = %e, "cannot fetch the identity provider's keys; keeping the last ones");
                Err(e)
            }
        }
    }

    async fn get(&self) -> Result<KeySet, String> {
        let response = self.client.get(self.uri.clone()).await.map_err(|e| e.to_string())?;
        if !response.status().is_success() {
            return Err(format!("HTTP {}", response.status()));
        }
        let body = Limited::new(response.into_body(), MAX_SIZE).collect().await.map_err(|e| e.to_string())?;
        key_set(&body.to_bytes(), "auth.jwks_url")
    }

    /// A token named a `kid` the set does not hold: fetch again, unless
    /// that was done less than [`REFETCH_AFTER`] ago.
    pub(super) async fn refetch_for_unknown_kid(&self) {
        {
            let mut last = self.last_refetch.lock().unwrap_or_else(|e| e.into_inner());
            let now = Instant::now();
            if last.is_some_and(|at| now.duration_since(at) < REFETCH_AFTER) {
                return;
            }
            *last = Some(now);
        }
        let _ = self.fetch().await;
    }
}

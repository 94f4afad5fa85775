//! Who may do what: the HTTP API's key (`[api]`), client tokens
//! (`[auth]`), the admin page (`[admin]`), and TLS on the public listener
//! (`[tls]`).

use super::{ConfigError, problem};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiConfig {
    /// Key for the HTTP API (`Authorization: apikey <key>`). Default: unset,
    /// which turns the HTTP API off.
    pub key: Option<String>,
}

impl ApiConfig {
    pub(super) fn check(&self) -> Result<(), ConfigError> {
        if self.key.as_deref() == Some("") {
            return Err(problem("api.key", "must not be empty (leave it unset to turn the API off)"));
        }
        Ok(())
    }
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
    /// The identity provider's key set (JWKS), by `https://` or `http://`
    /// URL: fetched at start, every `jwks_refresh_interval`, and when a
    /// token names a `kid` it does not hold (at most every 10 s). Default:
    /// unset.
    pub jwks_url: Option<String>,
    /// How often the key set of `jwks_url` is fetched again. Default: `5m`.
    #[serde(with = "humantime_serde")]
    pub jwks_refresh_interval: Duration,
    /// When set, a token's `aud` must name it. Default: unset (not checked).
    pub audience: Option<String>,
    /// When set, a token's `iss` must be it. Default: unset (not checked).
    pub issuer: Option<String>,
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
            jwks_url: None,
            jwks_refresh_interval: Duration::from_secs(300),
            audience: None,
            issuer: None,
            allow_anonymous: true,
            token_query_param: None,
            token_cookie: None,
            refresh_grace: Duration::from_secs(30),
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

impl TlsConfig {
    pub(super) fn check(&self) -> Result<(), ConfigError> {
        if self.cert.is_some() != self.key.is_some() {
            return Err(problem("tls.key", "set both tls.cert and tls.key, or neither"));
        }
        if self.reload_interval.is_zero() {
            return Err(problem("tls.reload_interval", "must be more than 0s"));
        }
        Ok(())
    }
}

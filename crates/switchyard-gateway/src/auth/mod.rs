//! Who a connecting client is, and whether a subscription token opens a
//! channel.
//!
//! Tokens are JWTs: HS256 with `auth.hmac_secret`, RS256/ES256 with the
//! public keys of `auth.public_key_files`, `auth.jwks_file`, or the key set
//! an identity provider serves at `auth.jwks_url` ([`jwks`]: fetched,
//! cached, fetched again on a schedule and on an unknown `kid`, so keys
//! rotate without a restart). `auth.audience` and `auth.issuer`, when set,
//! must match the token's `aud` and `iss`. The token's
//! `alg` picks among the keys configured for it, never the other way round:
//! `none` is refused, and an HS256 token is never checked against a public
//! key (no algorithm confusion). `sub` (1 to [`MAX_USER_ID`] bytes) and
//! `exp` are required; `nbf` is honoured where present.

pub mod jwks;
mod keys;

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use jwks::RemoteKeys;
use keys::{Family, KeySet, key_set};
use serde::Deserialize;
use std::collections::HashMap;
use switchyard_core::config::AuthConfig;

/// The longest user id, wherever one comes from (a token's `sub`, the
/// connect proxy) or is named (user operations, the admin page): one limit,
/// so that every user who can connect can also be disconnected.
pub const MAX_USER_ID: usize = 255;

/// An authenticated (or anonymous) client.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Identity {
    /// The user id (`sub`); empty for anonymous clients.
    pub user: String,
    /// When the token expires (Unix seconds); None for anonymous clients.
    pub expires_at: Option<u64>,
    /// Channel patterns the token allows (`channels` claim): exact names, or
    /// prefixes ending in `*`. None: no restriction.
    pub channels: Option<Vec<String>>,
    /// Public information about the user (`info` claim).
    pub info: Option<serde_json::Value>,
    /// Channels the connection is subscribed to at connect, by the server
    /// (`subs` claim).
    pub subs: Vec<String>,
}

impl Identity {
    /// Whether the token's `channels` claim lets this client at `channel`.
    pub fn may_use(&self, channel: &str) -> bool {
        self.channels.as_ref().is_none_or(|patterns| {
            patterns.iter().any(|p| match p.strip_suffix('*') {
                Some(prefix) => channel.starts_with(prefix),
                None => p == channel,
            })
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("a token is required")]
    TokenRequired,
    #[error("tokens are not accepted: no keys are configured")]
    TokensNotConfigured,
    #[error("invalid token: {0}")]
    InvalidToken(String),
}

#[derive(Deserialize)]
struct Claims {
    sub: String,
    exp: u64,
    #[serde(default)]
    channels: Option<Vec<String>>,
    #[serde(default)]
    info: Option<serde_json::Value>,
    #[serde(default)]
    subs: Vec<String>,
    /// In subscription tokens: the channel they open.
    #[serde(default)]
    channel: Option<String>,
}

/// Checks tokens with the node's keys.
pub struct Authenticator {
    allow_anonymous: bool,
    hs256: Option<DecodingKey>,
    /// Public keys from PEM files, tried in turn.
    public: Vec<(Family, DecodingKey)>,
    /// Public keys from the JWKS file, by `kid`.
    jwks: KeySet,
    /// The identity provider's key set, where `auth.jwks_url` is set.
    pub remote: Option<RemoteKeys>,
    audience: Option<String>,
    issuer: Option<String>,
}

impl Authenticator {
    /// Loads the configured keys; an unreadable or invalid key file is an
    /// error, said for a person.
    pub fn new(config: &AuthConfig) -> Result<Self, String> {
        let mut public = Vec::new();
        for path in &config.public_key_files {
            let pem = std::fs::read(path).map_err(|e| format!("auth.public_key_files: {}: {e}", path.display()))?;
            let key = DecodingKey::from_rsa_pem(&pem)
                .map(|k| (Family::Rsa, k))
                .or_else(|_| DecodingKey::from_ec_pem(&pem).map(|k| (Family::Ec, k)))
                .map_err(|e| format!("auth.public_key_files: {}: not an RSA or EC public key: {e}", path.display()))?;
            public.push(key);
        }
        let mut jwks = HashMap::new();
        if let Some(path) = &config.jwks_file {
            let text = std::fs::read(path).map_err(|e| format!("auth.jwks_file: {}: {e}", path.display()))?;
            jwks = key_set(&text, &format!("auth.jwks_file: {}", path.display()))?;
        }
        let remote = match &config.jwks_url {
            Some(url) => Some(RemoteKeys::new(url)?),
            None => None,
        };
        Ok(Authenticator {
            allow_anonymous: config.allow_anonymous,
            hs256: config.hmac_secret.as_deref().map(|s| DecodingKey::from_secret(s.as_bytes())),
            public,
            jwks,
            remote,
            audience: config.audience.clone(),
            issuer: config.issuer.clone(),
        })
    }

    /// Makes sure the key `token` names is known: a `kid` that neither the
    /// key files nor the identity provider's last key set hold has the set
    /// fetched again (at most once per [`jwks::REFETCH_AFTER`]), for keys
    /// rotated since the last fetch.
    pub async fn ensure_key(&self, token: &str) {
        let Some(remote) = &self.remote else { return };
        let Ok(header) = jsonwebtoken::decode_header(token) else { return };
        let Some(kid) = header.kid else { return };
        if header.alg == Algorithm::HS256 || self.jwks.contains_key(&kid) || remote.key(&kid).is_some() {
            return;
        }
        remote.refetch_for_unknown_kid().await;
    }

    /// Decides who presents `token` (empty for none).
    pub fn authenticate(&self, token: &str) -> Result<Identity, AuthError> {
        if token.is_empty() {
            return if self.allow_anonymous { Ok(Identity::default()) } else { Err(AuthError::TokenRequired) };
        }
        let claims = self.decode(token)?;
        Ok(Identity {
            user: claims.sub,
            expires_at: Some(claims.exp),
            channels: claims.channels,
            info: claims.info,
            subs: claims.subs,
        })
    }

    /// Whether `token` is a subscription token of `user` for `channel`.
    pub fn check_subscription(&self, token: &str, user: &str, channel: &str) -> Result<(), AuthError> {
        if token.is_empty() {
            return Err(AuthError::TokenRequired);
        }
        let claims = self.decode(token)?;
        if claims.sub != user || claims.channel.as_deref() != Some(channel) {
            return Err(AuthError::InvalidToken("the token is for another user or channel".into()));
        }
        Ok(())
    }

    fn decode(&self, token: &str) -> Result<Claims, AuthError> {
        let invalid = |e: jsonwebtoken::errors::Error| AuthError::InvalidToken(e.to_string());
        let header = jsonwebtoken::decode_header(token).map_err(invalid)?;
        let family = match header.alg {
            Algorithm::HS256 => None,
            Algorithm::RS256 => Some(Family::Rsa),
            Algorithm::ES256 => Some(Family::Ec),
            other => return Err(AuthError::InvalidToken(format!("algorithm {other:?} is not accepted"))),
        };
        let mut validation = Validation::new(header.alg);
        // `aud` and `iss` are required where they are checked: a token
        // without them is not for this audience, nor from this issuer.
        let mut required = vec!["exp", "sub"];
        required.extend(self.audience.as_ref().map(|_| "aud"));
        required.extend(self.issuer.as_ref().map(|_| "iss"));
        validation.set_required_spec_claims(&required);
        // A token is not good before its `nbf`, where it has one.
        validation.validate_nbf = true;
        match &self.audience {
            Some(audience) => validation.set_audience(&[audience]),
            // Without `auth.audience`, a token's `aud` is not checked.
            None => validation.validate_aud = false,
        }
        if let Some(issuer) = &self.issuer {
            validation.set_issuer(&[issuer]);
        }
        // The identity provider's keys are copied out of their lock (a
        // decoding key is a few hundred bytes, and this is one per token).
        let remote = match (family, &header.kid, &self.remote) {
            (Some(family), Some(kid), Some(remote)) => remote.key(kid).filter(|(f, _)| *f == family),
            _ => None,
        };
        let keys: Vec<&DecodingKey> = match (family, &remote) {
            (None, _) => self.hs256.iter().collect(),
            (Some(_), Some((_, key))) => vec![key],
            (Some(family), None) => match header.kid.as_ref().and_then(|kid| self.jwks.get(kid)) {
                Some((f, key)) if *f == family => vec![key],
                _ => self.public.iter().filter(|(f, _)| *f == family).map(|(_, k)| k).collect(),
            },
        };
        if keys.is_empty() {
            return Err(AuthError::TokensNotConfigured);
        }
        let mut last = None;
        for key in keys {
            match jsonwebtoken::decode::<Claims>(token, key, &validation) {
                Ok(data) if data.claims.sub.is_empty() => return Err(AuthError::InvalidToken("empty sub".into())),
                Ok(data) if data.claims.sub.len() > MAX_USER_ID => {
                    return Err(AuthError::InvalidToken(format!("sub over {MAX_USER_ID} bytes")));
                }
                Ok(data) => return Ok(data.claims),
                Err(e) => last = Some(e),
            }
        }
        Err(invalid(last.expect("at least one key was tried")))
    }
}

//! Who a connecting client is.
//!
//! A client without a token is anonymous, which `auth.allow_anonymous`
//! allows or not. A token is a JWT signed with HS256 and `auth.hmac_secret`,
//! with `sub` (the user) and `exp` required; any other algorithm (including
//! `none`) is refused, so a token cannot pick how it is checked.

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use switchyard_core::config::AuthConfig;

/// An authenticated (or anonymous) client.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    /// The user id (`sub`); empty for anonymous clients.
    pub user: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("a token is required")]
    TokenRequired,
    #[error("tokens are not accepted: auth.hmac_secret is not configured")]
    TokensNotConfigured,
    #[error("invalid token: {0}")]
    InvalidToken(String),
}

/// The claims switchyard reads; others are ignored.
#[derive(Deserialize)]
struct Claims {
    sub: String,
}

/// Checks connect tokens with the node's keys.
pub struct Authenticator {
    allow_anonymous: bool,
    hs256: Option<DecodingKey>,
    validation: Validation,
}

impl Authenticator {
    pub fn new(config: &AuthConfig) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_required_spec_claims(&["exp", "sub"]);
        // No clock skew allowance beyond the library's default of 60 s.
        Authenticator {
            allow_anonymous: config.allow_anonymous,
            hs256: config.hmac_secret.as_deref().map(|s| DecodingKey::from_secret(s.as_bytes())),
            validation,
        }
    }

    /// Decides who presents `token` (empty for none).
    pub fn authenticate(&self, token: &str) -> Result<Identity, AuthError> {
        if token.is_empty() {
            return if self.allow_anonymous { Ok(Identity::default()) } else { Err(AuthError::TokenRequired) };
        }
        let key = self.hs256.as_ref().ok_or(AuthError::TokensNotConfigured)?;
        let data = jsonwebtoken::decode::<Claims>(token, key, &self.validation)
            .map_err(|e| AuthError::InvalidToken(e.to_string()))?;
        if data.claims.sub.is_empty() {
            return Err(AuthError::InvalidToken("empty sub".into()));
        }
        Ok(Identity { user: data.claims.sub })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header, encode};
    use std::time::{SystemTime, UNIX_EPOCH};

    fn now() -> u64 {
        SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
    }

    fn token(secret: &str, claims: serde_json::Value) -> String {
        encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(secret.as_bytes())).unwrap()
    }

    fn authenticator(secret: Option<&str>, allow_anonymous: bool) -> Authenticator {
        Authenticator::new(&AuthConfig { hmac_secret: secret.map(str::to_owned), allow_anonymous })
    }

    #[test]
    fn anonymous_only_when_allowed() {
        assert_eq!(authenticator(None, true).authenticate(""), Ok(Identity::default()));
        assert_eq!(authenticator(None, false).authenticate(""), Err(AuthError::TokenRequired));
        assert_eq!(authenticator(None, true).authenticate("x.y.z"), Err(AuthError::TokensNotConfigured));
    }

    #[test]
    fn hs256_tokens() {
        let auth = authenticator(Some("s3cret"), false);
        let good = token("s3cret", serde_json::json!({"sub": "42", "exp": now() + 600}));
        assert_eq!(auth.authenticate(&good), Ok(Identity { user: "42".into() }));
        let expired = token("s3cret", serde_json::json!({"sub": "42", "exp": now() - 3600}));
        assert!(matches!(auth.authenticate(&expired), Err(AuthError::InvalidToken(_))));
        let wrong_key = token("other", serde_json::json!({"sub": "42", "exp": now() + 600}));
        assert!(matches!(auth.authenticate(&wrong_key), Err(AuthError::InvalidToken(_))));
        let no_exp = token("s3cret", serde_json::json!({"sub": "42"}));
        assert!(matches!(auth.authenticate(&no_exp), Err(AuthError::InvalidToken(_))));
        // alg: none, unsigned.
        let none = format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{}.", {
            use base64::Engine as _;
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!(r#"{{"sub":"42","exp":{}}}"#, now() + 600))
        });
        assert!(matches!(auth.authenticate(&none), Err(AuthError::InvalidToken(_))));
    }
}

//! Who a connecting client is.
//!
//! Today: anonymous access, allowed or refused by `auth.allow_anonymous`.
//! Connect tokens (JWT) are verified here too once token support lands; until
//! then a connect that carries a token is refused rather than trusted.

use switchyard_core::config::AuthConfig;

/// An authenticated (or anonymous) client.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    /// The user id (`sub`); empty for anonymous clients.
    pub user: String,
}

impl Identity {
    pub fn is_anonymous(&self) -> bool {
        self.user.is_empty()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("a token is required")]
    TokenRequired,
    #[error("token verification is not configured on this node")]
    TokensUnsupported,
}

/// Decides who presents `token` (empty for none).
pub fn authenticate(config: &AuthConfig, token: &str) -> Result<Identity, AuthError> {
    if !token.is_empty() {
        return Err(AuthError::TokensUnsupported);
    }
    if config.allow_anonymous { Ok(Identity::default()) } else { Err(AuthError::TokenRequired) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anonymous_only_when_allowed() {
        let mut config = AuthConfig::default();
        assert_eq!(authenticate(&config, ""), Ok(Identity::default()));
        config.allow_anonymous = false;
        assert_eq!(authenticate(&config, ""), Err(AuthError::TokenRequired));
        assert_eq!(authenticate(&config, "x.y.z"), Err(AuthError::TokensUnsupported));
    }
}

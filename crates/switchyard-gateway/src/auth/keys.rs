//! Public keys by `kid`, as a JWKS document gives them (a file, or an
//! identity provider's URL).

use jsonwebtoken::DecodingKey;
use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet};
use std::collections::HashMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    Rsa,
    Ec,
}

/// Public keys by `kid`.
pub type KeySet = HashMap<String, (Family, DecodingKey)>;

/// The RSA and EC keys of a JWKS document, by `kid`; `what` names its
/// source in errors.
pub fn key_set(text: &[u8], what: &str) -> Result<KeySet, String> {
    let set: JwkSet = serde_json::from_slice(text).map_err(|e| format!("{what}: {e}"))?;
    let mut keys = HashMap::new();
    for jwk in &set.keys {
        let family = match jwk.algorithm {
            AlgorithmParameters::RSA(_) => Family::Rsa,
            AlgorithmParameters::EllipticCurve(_) => Family::Ec,
            _ => continue,
        };
        let kid = jwk.common.key_id.clone().unwrap_or_default();
        let key = DecodingKey::from_jwk(jwk).map_err(|e| format!("{what}: key {kid:?}: {e}"))?;
        keys.insert(kid, (family, key));
    }
    Ok(keys)
}

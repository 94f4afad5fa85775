//! Connect tokens for tests: HS256 JWTs for a node whose
//! `auth.hmac_secret` is [`SECRET`].

use jsonwebtoken::{EncodingKey, Header, encode};
use serde_json::{Value, json};

/// The secret of [`hs256`] tokens.
pub const SECRET: &str = "test-secret-of-thirty-two-bytes!";

/// A token for `user`, valid for an hour, with `claims` added (`info`,
/// `subs`, `channels`...).
pub fn hs256(user: &str, claims: Value) -> String {
    let exp = switchyard_core::clock::unix_seconds() + 3600;
    let mut all = json!({"sub": user, "exp": exp});
    if let (Some(all), Some(extra)) = (all.as_object_mut(), claims.as_object()) {
        all.extend(extra.clone());
    }
    encode(&Header::default(), &all, &EncodingKey::from_secret(SECRET.as_bytes())).expect("a token")
}

//! Connect tokens beyond HS256: RS256 and ES256 keys from PEM files and a
//! JWKS file; refused algorithms; tokens in the URL or a cookie; refresh;
//! namespace subscribe permissions and subscription tokens.

use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use switchyard_client::v1::SubscribeRequest;
use switchyard_client::{Client, ClientError, Encoding, Options};
use switchyard_core::config::{Config, NamespaceConfig, SubscribePermission};
use switchyard_testkit::raw;
use switchyard_testkit::{TestNode, test_config, within};

/// Key files made with openssl for one test, removed on drop.
struct Keys {
    dir: PathBuf,
}

impl Keys {
    fn new() -> Keys {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("switchyard-keys-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let run = |args: &[&str]| {
            assert!(Command::new("openssl").current_dir(&dir).args(args).status().unwrap().success(), "{args:?}");
        };
        run(&["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", "rsa.key"]);
        run(&["pkey", "-in", "rsa.key", "-pubout", "-out", "rsa.pub"]);
        run(&["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", "ec.key"]);
        run(&["pkey", "-in", "ec.key", "-pubout", "-out", "ec.pub"]);
        Keys { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn encoding(&self, alg: Algorithm) -> EncodingKey {
        match alg {
            Algorithm::RS256 => EncodingKey::from_rsa_pem(&std::fs::read(self.path("rsa.key")).unwrap()).unwrap(),
            Algorithm::ES256 => EncodingKey::from_ec_pem(&std::fs::read(self.path("ec.key")).unwrap()).unwrap(),
            _ => unreachable!(),
        }
    }

    /// A JWKS file holding both public keys, with kids `rsa-1` and `ec-1`.
    fn jwks(&self) -> PathBuf {
        let mut keys = Vec::new();
        for (alg, kid) in [(Algorithm::RS256, "rsa-1"), (Algorithm::ES256, "ec-1")] {
            let mut jwk = Jwk::from_encoding_key(&self.encoding(alg), alg).unwrap();
            jwk.common.key_id = Some(kid.into());
            keys.push(jwk);
        }
        let path = self.path("jwks.json");
        std::fs::write(&path, serde_json::to_vec(&JwkSet { keys }).unwrap()).unwrap();
        path
    }
}

impl Drop for Keys {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

fn token(alg: Algorithm, key: &EncodingKey, kid: Option<&str>, claims: serde_json::Value) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    encode(&header, &claims, key).unwrap()
}

async fn connect_with(node: &TestNode, token: &str) -> Result<Client, ClientError> {
    let client = Client::connect(&node.ws_url(), Options::new(Encoding::Json)).await?;
    client.connect_command(token).await.map(|_| client)
}

#[tokio::test]
async fn rs256_and_es256_from_pem_files_and_jwks() {
    let keys = Keys::new();
    for use_jwks in [false, true] {
        let mut config = test_config();
        config.auth.allow_anonymous = false;
        if use_jwks {
            config.auth.jwks_file = Some(keys.jwks());
        } else {
            config.auth.public_key_files = vec![keys.path("rsa.pub"), keys.path("ec.pub")];
        }
        let node = TestNode::start(config).await;
        for (alg, kid) in [(Algorithm::RS256, "rsa-1"), (Algorithm::ES256, "ec-1")] {
            let claims = serde_json::json!({"sub": "ann", "exp": now() + 600});
            let good = token(alg, &keys.encoding(alg), use_jwks.then_some(kid), claims);
            let client = connect_with(&node, &good).await.unwrap_or_else(|e| panic!("{alg:?} jwks={use_jwks}: {e}"));
            client.subscribe("notify#ann").await.unwrap();
        }
        // Expired, and signed by another key.
        let expired = token(
            Algorithm::RS256,
            &keys.encoding(Algorithm::RS256),
            Some("rsa-1"),
            serde_json::json!({"sub": "ann", "exp": now() - 3600}),
        );
        assert_eq!(connect_with(&node, &expired).await.err().and_then(|e| e.code()), Some(101));
        let other = Keys::new();
        let forged = token(
            Algorithm::ES256,
            &other.encoding(Algorithm::ES256),
            Some("ec-1"),
            serde_json::json!({"sub": "ann", "exp": now() + 600}),
        );
        assert_eq!(connect_with(&node, &forged).await.err().and_then(|e| e.code()), Some(101));
    }
}

#[tokio::test]
async fn alg_none_and_algorithm_confusion_are_refused() {
    let keys = Keys::new();
    let mut config = test_config();
    config.auth.public_key_files = vec![keys.path("rsa.pub")];
    config.auth.hmac_secret = None;
    let node = TestNode::start(config).await;
    // HS256 "signed" with the RSA public key as the secret: the classic confusion.
    let public_pem = std::fs::read(keys.path("rsa.pub")).unwrap();
    let confused = token(
        Algorithm::HS256,
        &EncodingKey::from_secret(&public_pem),
        None,
        serde_json::json!({"sub": "eve", "exp": now() + 600}),
    );
    let mut client = Client::connect(&node.ws_url(), Options::new(Encoding::Json)).await.unwrap();
    assert_eq!(client.connect_command(&confused).await.err().and_then(|e| e.code()), Some(101));
    let closed = within("the close", client.closed()).await;
    assert_eq!(closed.map(|c| c.0), Some(4003));
    // alg: none, unsigned.
    use base64::Engine as _;
    let b64 = |v: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
    let none = format!(
        "{}.{}.",
        b64(r#"{"alg":"none","typ":"JWT"}"#),
        b64(&format!(r#"{{"sub":"eve","exp":{}}}"#, now() + 600))
    );
    assert_eq!(connect_with(&node, &none).await.err().and_then(|e| e.code()), Some(101));
}

fn hs256(secret: &str, claims: serde_json::Value) -> String {
    token(Algorithm::HS256, &EncodingKey::from_secret(secret.as_bytes()), None, claims)
}

fn hs_config() -> Config {
    let mut config = test_config();
    config.auth.hmac_secret = Some("s3cret".into());
    config.auth.allow_anonymous = false;
    config.auth.token_query_param = Some("token".into());
    config.auth.token_cookie = Some("sy_token".into());
    config
}

#[tokio::test]
async fn a_token_can_come_in_the_url_or_a_cookie() {
    let node = TestNode::start(hs_config()).await;
    let good = hs256("s3cret", serde_json::json!({"sub": "ann", "exp": now() + 600}));
    // No connect command: the first command runs as the token's user.
    let url = format!("ws://{}/ws?token={good}", node.addr);
    let client = Client::connect(&url, Options::new(Encoding::Json)).await.unwrap();
    client.subscribe("notify#ann").await.unwrap();
    let mut ws = raw::connect_with(node.addr, &[("cookie", &format!("theme=dark; sy_token={good}"))]).await.unwrap();
    raw::send_text(&mut ws, r#"{"id": 1, "subscribe": {"channel": "notify#ann"}}"#).await.unwrap();
    assert_eq!(raw::next(&mut ws).await, raw::Seen::Message(br#"{"id":1,"subscribe":{}}"#.to_vec()));
    // Without one: anonymous is off here.
    let anonymous = Client::connect(&node.ws_url(), Options::new(Encoding::Json)).await.unwrap();
    assert_eq!(anonymous.subscribe("news").await.unwrap_err().code(), Some(101));
}

#[tokio::test]
async fn an_expiring_token_must_be_refreshed() {
    let mut config = hs_config();
    config.auth.refresh_grace = Duration::from_millis(300);
    let node = TestNode::start(config).await;
    // Expires in a second: refreshed, the connection stays.
    let short = hs256("s3cret", serde_json::json!({"sub": "ann", "exp": now() + 1}));
    let refreshed = Client::connect(&node.ws_url(), Options::new(Encoding::Json)).await.unwrap();
    let reply = refreshed.connect_command(&short).await.unwrap();
    assert!(reply.expires_in.is_some_and(|s| s <= 1));
    let longer = hs256("s3cret", serde_json::json!({"sub": "ann", "exp": now() + 600}));
    let refresh =
        switchyard_client::v1::client_frame::Command::Refresh(switchyard_client::v1::RefreshRequest { token: longer });
    assert!(
        matches!(refreshed.command(refresh).await.unwrap(), switchyard_client::v1::server_frame::Message::Refresh(r) if r.expires_in > 500)
    );
    // Another user's token does not refresh.
    let bobs = hs256("s3cret", serde_json::json!({"sub": "bob", "exp": now() + 600}));
    let refresh =
        switchyard_client::v1::client_frame::Command::Refresh(switchyard_client::v1::RefreshRequest { token: bobs });
    assert_eq!(refreshed.command(refresh).await.unwrap_err().code(), Some(101));
    // Not refreshed: closed with 4003 once exp and the grace have passed.
    let mut lapsing = Client::connect(&node.ws_url(), Options::new(Encoding::Json)).await.unwrap();
    lapsing.connect_command(&short).await.unwrap();
    let closed = within("the expiry", lapsing.closed()).await;
    assert_eq!(closed.map(|c| c.0), Some(4003));
    node.wait_for_sample("switchyard_token_expirations_total", "", 1.0).await;
    refreshed.subscribe("notify#ann").await.unwrap();
}

#[tokio::test]
async fn namespace_permissions_and_subscription_tokens() {
    let mut config = hs_config();
    config.auth.allow_anonymous = true;
    let members = NamespaceConfig { subscribe: SubscribePermission::Authenticated, ..Default::default() };
    let private = NamespaceConfig { subscribe: SubscribePermission::Token, ..Default::default() };
    config.namespaces.insert("members".into(), members);
    config.namespaces.insert("private".into(), private);
    let node = TestNode::start(config).await;

    let anonymous = Client::connect(&node.ws_url(), Options::new(Encoding::Json)).await.unwrap();
    anonymous.subscribe("news").await.unwrap();
    assert_eq!(anonymous.subscribe("members:lounge").await.unwrap_err().code(), Some(103));

    let limited =
        hs256("s3cret", serde_json::json!({"sub": "ann", "exp": now() + 600, "channels": ["members:*", "news"]}));
    let ann = connect_with(&node, &limited).await.unwrap();
    ann.subscribe("members:lounge").await.unwrap();
    ann.subscribe("news").await.unwrap();
    assert_eq!(ann.subscribe("weather").await.unwrap_err().code(), Some(103), "outside the channels claim");

    let full = hs256("s3cret", serde_json::json!({"sub": "ann", "exp": now() + 600}));
    let ann = connect_with(&node, &full).await.unwrap();
    assert_eq!(ann.subscribe("private:board").await.unwrap_err().code(), Some(103));
    let subscription = |sub: &str, channel: &str| {
        hs256("s3cret", serde_json::json!({"sub": sub, "channel": channel, "exp": now() + 600}))
    };
    let wrong_channel = SubscribeRequest {
        channel: "private:board".into(),
        token: subscription("ann", "private:other"),
        ..Default::default()
    };
    assert_eq!(ann.subscribe_with(wrong_channel).await.unwrap_err().code(), Some(103));
    let wrong_user = SubscribeRequest {
        channel: "private:board".into(),
        token: subscription("bob", "private:board"),
        ..Default::default()
    };
    assert_eq!(ann.subscribe_with(wrong_user).await.unwrap_err().code(), Some(103));
    let right = SubscribeRequest {
        channel: "private:board".into(),
        token: subscription("ann", "private:board"),
        ..Default::default()
    };
    ann.subscribe_with(right).await.unwrap();
}

//! Connect tokens: HS256 JWTs with `sub` and `exp`.

use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use std::time::{SystemTime, UNIX_EPOCH};
use switchyard_client::{Client, ClientError, Encoding, Options};
use switchyard_testkit::{TestNode, test_config, within};

const SECRET: &str = "a test secret of some length";

fn token(secret: &str, sub: &str, exp_from_now: i64) -> String {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64;
    let claims = serde_json::json!({"sub": sub, "exp": now + exp_from_now});
    encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(secret.as_bytes())).unwrap()
}

async fn node() -> TestNode {
    let mut config = test_config();
    config.auth.hmac_secret = Some(SECRET.into());
    config.auth.allow_anonymous = false;
    TestNode::start(config).await
}

async fn refused_with(client: &mut Client, error: ClientError) {
    assert_eq!(error.code(), Some(101), "{error}");
    let closed = within("the close", client.closed()).await;
    assert_eq!(closed.map(|c| c.0), Some(4003));
}

#[tokio::test]
async fn a_valid_token_names_the_user_and_opens_their_channel() {
    let node = node().await;
    let alice = Client::connect(&node.ws_url(), Options::new(Encoding::Json)).await.unwrap();
    alice.connect_command(&token(SECRET, "alice", 600)).await.unwrap();
    alice.subscribe("notify#alice").await.unwrap();
    assert_eq!(alice.subscribe("notify#bob").await.unwrap_err().code(), Some(103));
    let mut sub = Client::connect(&node.ws_url(), Options::new(Encoding::Protobuf)).await.unwrap();
    sub.connect_command(&token(SECRET, "bob", 600)).await.unwrap();
    sub.subscribe("news").await.unwrap();
    alice.publish("news", "1").await.unwrap();
    let p = within("the publication", sub.next_publication()).await.unwrap();
    assert_eq!(p.info.unwrap().user, "alice");
}

#[tokio::test]
async fn bad_tokens_and_no_token_are_refused() {
    let node = node().await;
    for bad in [token(SECRET, "alice", -3600), token("another secret", "alice", 600), "garbage".to_owned()] {
        let mut client = Client::connect(&node.ws_url(), Options::new(Encoding::Json)).await.unwrap();
        let error = client.connect_command(&bad).await.unwrap_err();
        refused_with(&mut client, error).await;
    }
    let mut anonymous = Client::connect(&node.ws_url(), Options::new(Encoding::Json)).await.unwrap();
    let error = anonymous.subscribe("news").await.unwrap_err();
    refused_with(&mut anonymous, error).await;
}

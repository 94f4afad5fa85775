//! Publishing extras: idempotency keys (from two nodes at once, by FCALL,
//! and again after the window) and the latest value on subscribe.

use serde_json::json;
use std::time::Duration;
use switchyard_client::v1::client_frame::Command;
use switchyard_client::v1::server_frame::Message;
use switchyard_client::v1::{PublishRequest, SubscribeRequest};
use switchyard_client::{Client, Encoding, Options};
use switchyard_core::config::Config;
use switchyard_testkit::http::api;
use switchyard_testkit::{RedisServer, TestNode, test_config, with_history, within};

fn config(redis: &RedisServer) -> Config {
    let mut config = with_history(test_config(), "chat", 100);
    config.broker.redis_url = Some(redis.url());
    config.broker.idempotency_window = Duration::from_secs(2);
    config.api.key = Some("k".into());
    config
}

async fn keyed(node: &TestNode, data: u32, key: &str) -> serde_json::Value {
    let body = json!({"channel": "chat:orders", "data": data, "idempotency_key": key});
    let (status, answer) = api(node.addr, "k", "/api/publish", body).await;
    assert_eq!(status, 200, "{answer}");
    answer["result"].clone()
}

#[tokio::test]
async fn a_key_publishes_once_within_its_window() {
    let redis = RedisServer::start().await;
    let a = TestNode::start(config(&redis)).await;
    let b = TestNode::start(config(&redis)).await;
    let mut subscriber = Client::connect(&a.ws_url(), Options::new(Encoding::Json)).await.unwrap();
    subscriber.subscribe("chat:orders").await.unwrap();

    // Two nodes at once with the same key: one publication, one answer.
    let (first, second) = tokio::join!(keyed(&a, 1, "order-42"), keyed(&b, 2, "order-42"));
    assert_eq!(first, second, "both callers get the first result");
    // Twice by FCALL with another key.
    let once = redis.cli(&["FCALL", "switchyard_publish", "1", "chat:orders", "3", "order-43"]).await;
    let twice = redis.cli(&["FCALL", "switchyard_publish", "1", "chat:orders", "4", "order-43"]).await;
    assert_eq!(once, twice);
    // A client's publish with a key.
    let request = PublishRequest {
        channel: "chat:orders".into(),
        data: "5".into(),
        idempotency_key: "order-44".into(),
        ..Default::default()
    };
    let reply = |request: PublishRequest| subscriber.command(Command::Publish(request));
    let Message::Publish(p1) = reply(request.clone()).await.unwrap() else { panic!() };
    let Message::Publish(p2) = reply(request).await.unwrap() else { panic!() };
    assert_eq!(p1, p2);
    assert_eq!(p1.offset, Some(3));
    // Exactly three publications came.
    let mut offsets = Vec::new();
    within("three publications", async {
        while offsets.len() < 3 {
            offsets.push(subscriber.next_publication().await.unwrap().offset.unwrap());
        }
    })
    .await;
    assert_eq!(offsets, [1, 2, 3]);
    // Bad keys are refused.
    let (status, answer) = api(
        a.addr,
        "k",
        "/api/publish",
        json!({"channel": "chat:orders", "data": 1, "idempotency_key": "x".repeat(65)}),
    )
    .await;
    assert_eq!((status, answer["error"]["code"].clone()), (400, json!(107)));

    // After the window, the key publishes again.
    within("the window to pass", async {
        loop {
            if keyed(&a, 6, "order-42").await["offset"] == json!(4) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
}

#[tokio::test]
async fn a_late_subscriber_gets_the_latest_value() {
    let redis = RedisServer::start().await;
    let node = TestNode::start(config(&redis)).await;
    for n in 1..=3 {
        let (status, _) = api(node.addr, "k", "/api/publish", json!({"channel": "chat:prices", "data": n})).await;
        assert_eq!(status, 200);
    }
    let client = Client::connect(&node.ws_url(), Options::new(Encoding::Protobuf)).await.unwrap();
    let latest = SubscribeRequest { channel: "chat:prices".into(), latest: true, ..Default::default() };
    let result = client.subscribe_with(latest).await.unwrap();
    assert_eq!(result.offset, Some(3));
    assert_eq!(result.publications.len(), 1);
    assert_eq!((&result.publications[0].data[..], result.publications[0].offset), (&b"3"[..], Some(3)));
    // Without `latest`, only the position.
    let plain = client.subscribe("chat:other").await.unwrap();
    assert!(plain.publications.is_empty());
}

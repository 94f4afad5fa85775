//! Publish receipts: how many nodes had subscribers and how many
//! connections a publication was queued to, from a real cluster; a node
//! that does not answer is left out and counted, and the reply still comes.

use serde_json::json;
use std::path::Path;
use switchyard_client::v1::client_frame::Command;
use switchyard_client::v1::server_frame::Message;
use switchyard_client::v1::{PublishRequest, Receipt};
use switchyard_client::{Client, Encoding, Options};
use switchyard_core::config::Config;
use switchyard_testkit::http::api;
use switchyard_testkit::{GatewayProcess, RedisServer, TestNode, test_config, within};

fn config(redis: &RedisServer) -> Config {
    let mut config = test_config();
    config.broker.redis_url = Some(redis.url());
    config.api.key = Some("k".into());
    config
}

async fn subscribers(url: &str, n: usize) -> Vec<Client> {
    let mut clients = Vec::new();
    for _ in 0..n {
        let client = Client::connect(url, Options::new(Encoding::Json)).await.unwrap();
        client.subscribe("news").await.unwrap();
        clients.push(client);
    }
    clients
}

async fn publish_with_receipt(node: &TestNode) -> serde_json::Value {
    let (status, body) =
        api(node.addr, "k", "/api/publish", json!({"channel": "news", "data": 1, "receipt": true})).await;
    assert_eq!(status, 200, "{body}");
    body["result"]["receipt"].clone()
}

#[tokio::test]
async fn receipts_count_nodes_and_connections_and_say_who_did_not_answer() {
    let redis = RedisServer::start().await;
    let a = TestNode::start(config(&redis)).await;
    let b = TestNode::start(config(&redis)).await;
    let url = redis.url();
    let mut c = GatewayProcess::start(
        Path::new(env!("CARGO_BIN_EXE_switchyard")),
        &[],
        &[("SWITCHYARD_REDIS_URL", url.as_str())],
    )
    .await;
    let _on_a = subscribers(&a.ws_url(), 2).await;
    let _on_b = subscribers(&b.ws_url(), 3).await;

    // Over the HTTP API, and as a client (from a node without subscribers).
    assert_eq!(publish_with_receipt(&a).await, json!({"nodes": 2, "clients": 5, "unanswered": 0}));
    let publisher = Client::connect(&c.ws_url(), Options::new(Encoding::Protobuf)).await.unwrap();
    let request = PublishRequest { channel: "news".into(), data: "2".into(), receipt: true, ..Default::default() };
    let reply = publisher.command(Command::Publish(request)).await.unwrap();
    let Message::Publish(result) = reply else { panic!("not a publish reply: {reply:?}") };
    assert_eq!(result.receipt, Some(Receipt { nodes: 2, clients: 5, unanswered: 0 }));
    // Without `receipt`, nothing is asked.
    let (_, body) = api(a.addr, "k", "/api/publish", json!({"channel": "news", "data": 3})).await;
    assert!(body["result"].get("receipt").is_none(), "{body}");

    // A third node with a subscriber stops answering (SIGSTOP): it got the
    // publication but says nothing; the reply comes after the timeout
    // without it.
    let _on_c = subscribers(&c.ws_url(), 1).await;
    assert_eq!(publish_with_receipt(&a).await, json!({"nodes": 3, "clients": 6, "unanswered": 0}));
    c.pause().await;
    let receipt = within("the receipt, without the stopped node", publish_with_receipt(&a)).await;
    assert_eq!(receipt, json!({"nodes": 2, "clients": 5, "unanswered": 1}));
    c.kill();
}

#[tokio::test]
async fn a_single_node_counts_itself() {
    let mut config = test_config();
    config.api.key = Some("k".into());
    let node = TestNode::start(config).await;
    assert_eq!(publish_with_receipt(&node).await, json!({"nodes": 0, "clients": 0, "unanswered": 0}));
    let _subscribers = subscribers(&node.ws_url(), 4).await;
    assert_eq!(publish_with_receipt(&node).await, json!({"nodes": 1, "clients": 4, "unanswered": 0}));
}

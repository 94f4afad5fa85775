//! The HTTP side of a node: health, readiness, metrics, the connection limit.

use switchyard_client::{Client, ClientError, Encoding, Options};
use switchyard_testkit::http::{get, sample};
use switchyard_testkit::{TestNode, raw, test_config, within};

#[tokio::test]
async fn health_readiness_and_unknown_paths() {
    let node = TestNode::start(test_config()).await;
    assert_eq!(get(node.addr, "/healthz").await.unwrap().0, 200);
    assert_eq!(get(node.addr, "/readyz").await.unwrap(), (200, "ready\n".into()));
    assert_eq!(get(node.addr, "/nope").await.unwrap().0, 404);
    // /ws without an upgrade.
    assert_eq!(get(node.addr, "/ws").await.unwrap().0, 426);
}

#[tokio::test]
async fn every_fixed_metric_is_exported() {
    let node = TestNode::start(test_config()).await;
    let mut sub = Client::connect(&node.ws_url(), Options::new(Encoding::Json)).await.unwrap();
    sub.subscribe("news").await.unwrap();
    sub.publish("news", "1").await.unwrap();
    within("the publication", sub.next_publication()).await.unwrap();
    let closer = Client::connect(&node.ws_url(), Options::new(Encoding::Json)).await.unwrap();
    closer.close().await;
    node.wait_for_sample("switchyard_connections_closed_total", "code=\"1000\"", 1.0).await;
    node.wait_for_sample("switchyard_delivery_latency_seconds_count", "", 1.0).await;

    let metrics = node.metrics().await;
    for name in [
        "switchyard_connections",
        "switchyard_connections_accepted_total",
        "switchyard_connections_closed_total",
        "switchyard_subscriptions",
        "switchyard_channels",
        "switchyard_messages_received_total",
        "switchyard_messages_sent_total",
        "switchyard_bytes_received_total",
        "switchyard_bytes_sent_total",
        "switchyard_broker_published_total",
        "switchyard_broker_received_total",
        "switchyard_delivery_latency_seconds",
        "switchyard_heartbeat_timeouts_total",
        "switchyard_slow_consumer_disconnects_total",
    ] {
        assert!(metrics.contains(&format!("# TYPE {name} ")), "{name} is missing from:\n{metrics}");
    }
    assert!(metrics.contains("# TYPE switchyard_delivery_latency_seconds histogram"));
    assert!(metrics.contains("switchyard_delivery_latency_seconds_bucket{le=\"0.05\"}"));
    assert_eq!(sample(&metrics, "switchyard_connections", ""), 1.0);
    assert_eq!(sample(&metrics, "switchyard_subscriptions", ""), 1.0);
    assert_eq!(sample(&metrics, "switchyard_channels", ""), 1.0);
    assert_eq!(sample(&metrics, "switchyard_connections_accepted_total", ""), 2.0);
    assert_eq!(sample(&metrics, "switchyard_broker_published_total", ""), 1.0);
    assert!(!metrics.contains("news"), "no label may hold a channel name");
}

#[tokio::test]
async fn the_connection_limit_refuses_with_503_before_the_upgrade() {
    let mut config = test_config();
    config.limits.max_connections = 2;
    let node = TestNode::start(config).await;
    let first = Client::connect(&node.ws_url(), Options::new(Encoding::Json)).await.unwrap();
    let second = Client::connect(&node.ws_url(), Options::new(Encoding::Json)).await.unwrap();
    let third = Client::connect(&node.ws_url(), Options::new(Encoding::Json)).await;
    assert!(matches!(third, Err(ClientError::Refused(503))));
    node.wait_for_sample("switchyard_connections_refused_total", "reason=\"limit\"", 1.0).await;
    // Those in keep working; once one leaves, a new one gets in.
    second.subscribe("news").await.unwrap();
    first.close().await;
    within("a free place", async {
        loop {
            if let Ok(c) = Client::connect(&node.ws_url(), Options::new(Encoding::Json)).await {
                return c;
            }
            tokio::task::yield_now().await;
        }
    })
    .await;
}

#[tokio::test]
async fn metrics_move_to_the_internal_listener_when_one_is_set() {
    let mut config = test_config();
    config.internal_listen = Some("127.0.0.1:0".parse().unwrap());
    let node = TestNode::start(config).await;
    let internal = node.internal_addr.unwrap();
    assert_eq!(get(node.addr, "/metrics").await.unwrap().0, 404);
    assert_eq!(get(internal, "/metrics").await.unwrap().0, 200);
    assert_eq!(get(internal, "/readyz").await.unwrap().0, 200);
    assert_eq!(get(node.addr, "/readyz").await.unwrap().0, 200);
    // No WebSocket on the internal listener.
    assert!(raw::connect(internal, None).await.is_err());
}

//! A subscriber that stops reading is closed with 4008, and nobody else
//! slows down or loses anything.

use std::time::Duration;
use switchyard_client::{Client, Encoding, Options};
use switchyard_testkit::http::sample;
use switchyard_testkit::raw::{self, Seen};
use switchyard_testkit::{TestNode, test_config, within};

#[tokio::test]
async fn a_stalled_reader_is_disconnected_and_others_get_everything() {
    let mut config = test_config();
    config.client.max_queue_bytes = 64 * 1024;
    config.client.max_message_size = 16 * 1024;
    config.client.close_timeout = Duration::from_millis(500);
    let node = TestNode::start(config).await;

    let mut stalled = raw::connect(node.addr, None).await.unwrap();
    raw::send_text(&mut stalled, r#"{"id": 1, "subscribe": {"channel": "firehose"}}"#).await.unwrap();
    assert_eq!(raw::next(&mut stalled).await, Seen::Message(br#"{"id":1,"subscribe":{}}"#.to_vec()));
    // From here on `stalled` reads nothing.

    let mut reader = Client::connect(&node.ws_url(), Options::new(Encoding::Json)).await.unwrap();
    reader.subscribe("firehose").await.unwrap();
    let publisher = Client::connect(&node.ws_url(), Options::new(Encoding::Protobuf)).await.unwrap();
    let payload = format!("\"{}\"", "x".repeat(8 * 1024));

    let counting = tokio::spawn(async move {
        let mut n = 0u64;
        while let Ok(p) = reader.next_publication().await {
            n += 1;
            if p.data.starts_with(b"\"end") {
                return n;
            }
        }
        n
    });

    // Publish until the node gives up on `stalled` (the loopback buffers
    // absorb some megabytes first), bounded in count.
    let mut published = 0u64;
    while sample(&node.metrics().await, "switchyard_slow_consumer_disconnects_total", "") < 1.0 {
        for _ in 0..100 {
            publisher.publish("firehose", payload.clone()).await.unwrap();
            published += 1;
        }
        assert!(published < 20_000, "the stalled reader was never disconnected");
    }
    publisher.publish("firehose", "\"end\"").await.unwrap();
    published += 1;
    let received = within("the reader to get everything", counting).await.unwrap();
    assert_eq!(received, published);

    node.wait_for_sample("switchyard_connections_closed_total", "code=\"4008\"", 1.0).await;
    assert_eq!(node.node.connections.len(), 2);
}

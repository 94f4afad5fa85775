//! Heartbeats: pings on idle connections, and 4011 for a silent client.

use std::time::Duration;
use switchyard_client::{Client, Encoding, Event, Options};
use switchyard_testkit::http::sample;
use switchyard_testkit::raw::{self, Seen};
use switchyard_testkit::{TestNode, test_config, within};

#[tokio::test]
async fn a_silent_client_is_closed_with_4011() {
    let mut config = test_config();
    config.client.ping_interval = Duration::from_millis(200);
    config.client.pong_timeout = Duration::from_millis(300);
    let node = TestNode::start(config).await;
    // A raw socket answers nothing: no pong frames, no pong messages.
    let mut ws = raw::connect(node.addr, None).await.unwrap();
    let mut saw_ping_frame = false;
    let mut saw_ping_message = false;
    let code = within("the heartbeat close", async {
        loop {
            match raw::next(&mut ws).await {
                Seen::Ping => saw_ping_frame = true,
                Seen::Message(m) if m == br#"{"ping":{}}"# => saw_ping_message = true,
                Seen::Message(m) => assert!(String::from_utf8_lossy(&m).contains(r#""code":4011"#), "{m:?}"),
                Seen::Close(code, _) => return code,
                Seen::Dropped => return None,
            }
        }
    })
    .await;
    assert_eq!(code, Some(4011));
    assert!(saw_ping_frame && saw_ping_message);
    assert_eq!(sample(&node.metrics().await, "switchyard_heartbeat_timeouts_total", ""), 1.0);
}

#[tokio::test]
async fn a_client_that_answers_stays_connected() {
    let mut config = test_config();
    config.client.ping_interval = Duration::from_millis(100);
    // Generous: the machine may stall, and a stall must not fail this test.
    config.client.pong_timeout = Duration::from_secs(5);
    let node = TestNode::start(config).await;
    let mut client = Client::connect(&node.ws_url(), Options::new(Encoding::Json)).await.unwrap();
    let connected = client.connect_command("").await.unwrap();
    assert_eq!(connected.ping_interval, 1);
    let mut pings = 0;
    within("five pings", async {
        while pings < 5 {
            match client.next_event().await {
                Some(Event::Ping) => pings += 1,
                other => panic!("unexpected {other:?}"),
            }
        }
    })
    .await;
    client.subscribe("news").await.unwrap();
    assert_eq!(sample(&node.metrics().await, "switchyard_heartbeat_timeouts_total", ""), 0.0);
}

#[tokio::test]
async fn ws_pongs_alone_keep_a_client_alive() {
    let mut config = test_config();
    config.client.ping_interval = Duration::from_millis(100);
    config.client.pong_timeout = Duration::from_secs(5);
    let node = TestNode::start(config).await;
    // Answers WebSocket pings (as browsers do) but never sends `pong` messages.
    let mut options = Options::new(Encoding::Protobuf);
    options.answer_pings = false;
    let mut client = Client::connect(&node.ws_url(), options).await.unwrap();
    let mut pings = 0;
    within("five pings", async {
        while pings < 5 {
            if let Some(Event::Ping) = client.next_event().await {
                pings += 1;
            }
        }
    })
    .await;
    client.subscribe("news").await.unwrap();
}

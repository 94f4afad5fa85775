//! Shutdown: readiness turns 503, connections are closed with 1001 (after a
//! `disconnect` push with `reconnect: true`), and the node stops.

use switchyard_client::{Client, Encoding, Event, Options};
use switchyard_testkit::http::get;
use switchyard_testkit::{GatewayProcess, TestNode, test_config, within};

async fn expect_going_away(client: &mut Client) {
    let mut disconnect = None;
    let closed = within("the drain to reach this client", async {
        loop {
            match client.next_event().await {
                Some(Event::Disconnect(d)) => disconnect = Some(d),
                Some(Event::Closed(close)) => return close,
                Some(_) => {}
                None => return None,
            }
        }
    })
    .await;
    assert_eq!(closed.map(|(code, _)| code), Some(1001));
    let disconnect = disconnect.expect("a disconnect push before the close");
    assert_eq!(disconnect.code, 1001);
    assert!(disconnect.reconnect);
}

#[tokio::test]
async fn draining_closes_everyone_with_1001_and_readiness_says_503() {
    let mut config = test_config();
    config.internal_listen = Some("127.0.0.1:0".parse().unwrap());
    let node = TestNode::start(config).await;
    let internal = node.internal_addr.unwrap();
    let mut clients = Vec::new();
    for _ in 0..10 {
        let c = Client::connect(&node.ws_url(), Options::new(Encoding::Json)).await.unwrap();
        c.subscribe("news").await.unwrap();
        clients.push(c);
    }
    node.begin_shutdown();
    within("/readyz to say 503", async {
        while get(internal, "/readyz").await.map(|r| r.0).unwrap_or(503) != 503 {
            tokio::task::yield_now().await;
        }
    })
    .await;
    for client in &mut clients {
        expect_going_away(client).await;
    }
    within("the node to stop", node.stop()).await;
}

#[tokio::test]
async fn sigterm_drains_and_exits_0() {
    let mut process = GatewayProcess::start(
        std::path::Path::new(env!("CARGO_BIN_EXE_switchyard")),
        &[],
        &[("SWITCHYARD_SHUTDOWN__DRAIN_PERIOD", "300ms")],
    )
    .await;
    let mut clients = Vec::new();
    for encoding in [Encoding::Json, Encoding::Protobuf, Encoding::Json] {
        let c = Client::connect(&process.ws_url(), Options::new(encoding)).await.unwrap();
        c.subscribe("news").await.unwrap();
        clients.push(c);
    }
    process.terminate();
    for client in &mut clients {
        expect_going_away(client).await;
    }
    assert_eq!(within("the process to exit", process.wait()).await, Some(0));
}

/// With only the public listener, the drain is visible there: `/readyz`
/// answers 503 (not "connection refused"), `/metrics` stays readable, and
/// new upgrades are refused, until the last connection is gone.
#[tokio::test]
async fn the_public_port_answers_during_the_drain() {
    let node = TestNode::start(test_config()).await;
    // A peer that never answers the close keeps the drain going.
    let stuck = switchyard_testkit::raw::connect(node.addr, Some("switchyard.v1.json")).await.unwrap();
    node.begin_shutdown();
    within("/readyz on the public port to say 503", async {
        loop {
            match get(node.addr, "/readyz").await {
                Ok((503, body)) => {
                    assert_eq!(body, "draining\n");
                    return;
                }
                Ok(_) => tokio::task::yield_now().await,
                Err(e) => panic!("the public port stopped answering during the drain: {e}"),
            }
        }
    })
    .await;
    let (status, metrics) = get(node.addr, "/metrics").await.unwrap();
    assert_eq!(status, 200);
    assert!(metrics.contains("switchyard_ready 0"), "{metrics}");
    let refused = switchyard_testkit::raw::connect(node.addr, Some("switchyard.v1.json")).await;
    assert!(matches!(refused, Err(fastwebsockets::WebSocketError::InvalidStatusCode(503))));
    drop(stuck);
    within("the node to stop", node.stop()).await;
}

//! Publish and subscribe over real sockets, in both encodings.

use switchyard_client::{Client, Encoding, Options};
use switchyard_testkit::{TestNode, raw, test_config, within};

async fn client(node: &TestNode, encoding: Encoding) -> Client {
    Client::connect(&node.ws_url(), Options::new(encoding)).await.expect("connect")
}

#[tokio::test]
async fn json_and_protobuf_clients_interoperate_both_ways() {
    let mut config = test_config();
    config.namespaces.insert("chat".into(), Default::default());
    let node = TestNode::start(config).await;
    let mut json = client(&node, Encoding::Json).await;
    let mut proto = client(&node, Encoding::Protobuf).await;
    json.subscribe("chat:room1").await.unwrap();
    proto.subscribe("chat:room1").await.unwrap();

    json.publish("chat:room1", br#"{"text": "from json", "n": 1.50}"#.to_vec()).await.unwrap();
    for c in [&mut json, &mut proto] {
        let p = within("the JSON publication", c.next_publication()).await.unwrap();
        assert_eq!(p.channel, "chat:room1");
        // Verbatim: spacing and number formatting survive.
        assert_eq!(&p.data[..], br#"{"text": "from json", "n": 1.50}"#);
        assert!(p.info.is_some_and(|i| !i.client.is_empty()));
    }

    proto.publish("chat:room1", br#"[1,2,3]"#.to_vec()).await.unwrap();
    for c in [&mut json, &mut proto] {
        let p = within("the protobuf publication", c.next_publication()).await.unwrap();
        assert_eq!(&p.data[..], b"[1,2,3]");
    }

    // A binary payload reaches JSON subscribers as data_b64, protobuf ones as is.
    proto.publish("chat:room1", vec![0u8, 159, 146, 150]).await.unwrap();
    let p = within("binary to protobuf", proto.next_publication()).await.unwrap();
    assert_eq!(&p.data[..], &[0u8, 159, 146, 150]);
    let p = within("binary to json", json.next_publication()).await.unwrap();
    assert_eq!(&p.data[..], &[0u8, 159, 146, 150]);
}

#[tokio::test]
async fn fixed_json_shapes_on_the_wire() {
    let node = TestNode::start(test_config()).await;
    let mut ws = raw::connect(node.addr, Some("switchyard.v1.json")).await.unwrap();
    raw::send_text(&mut ws, r#"{"id": 1, "connect": {}}"#).await.unwrap();
    let raw::Seen::Message(reply) = raw::next(&mut ws).await else { panic!("no connect reply") };
    let reply: serde_json::Value = serde_json::from_slice(&reply).unwrap();
    assert_eq!(reply["id"], 1);
    assert!(reply["connect"]["client"].is_string());
    assert!(reply["connect"]["session"].as_str().is_some_and(|s| s.len() >= 32));
    assert_eq!(reply["connect"]["ping_interval"], 25);

    raw::send_text(&mut ws, r#"{"id": 2, "subscribe": {"channel": "news"}}"#).await.unwrap();
    assert_eq!(raw::next(&mut ws).await, raw::Seen::Message(br#"{"id":2,"subscribe":{}}"#.to_vec()));
    raw::send_text(&mut ws, r#"{"id": 4, "publish": {"channel": "news", "data": {"text": "hi"}}}"#).await.unwrap();
    // The push (the publisher is subscribed too) and the reply, in either order.
    let client = reply["connect"]["client"].as_str().unwrap();
    let publication =
        format!(r#"{{"pub":{{"channel":"news","data":{{"text": "hi"}},"info":{{"client":"{client}","user":""}}}}}}"#);
    let mut got = Vec::new();
    for _ in 0..2 {
        let raw::Seen::Message(m) = raw::next(&mut ws).await else { panic!("expected a message") };
        got.push(String::from_utf8(m).unwrap());
    }
    got.sort();
    assert_eq!(got, vec![r#"{"id":4,"publish":{}}"#.to_owned(), publication]);

    raw::send_text(&mut ws, r#"{"id": 3, "unsubscribe": {"channel": "news"}}"#).await.unwrap();
    assert_eq!(raw::next(&mut ws).await, raw::Seen::Message(br#"{"id":3,"unsubscribe":{}}"#.to_vec()));
    // ack and pong get no reply: the next reply is for id 5.
    raw::send_text(&mut ws, r#"{"ack": {"channel": "news", "offset": 42}}"#).await.unwrap();
    raw::send_text(&mut ws, r#"{"pong": {}}"#).await.unwrap();
    raw::send_text(&mut ws, r#"{"id": 5, "unsubscribe": {"channel": "news"}}"#).await.unwrap();
    assert_eq!(raw::next(&mut ws).await, raw::Seen::Message(br#"{"id":5,"unsubscribe":{}}"#.to_vec()));
}

#[tokio::test]
async fn no_subprotocol_means_json_and_unknown_ones_are_refused() {
    let node = TestNode::start(test_config()).await;
    let mut ws = raw::connect(node.addr, None).await.unwrap();
    raw::send_text(&mut ws, r#"{"id": 1, "subscribe": {"channel": "news"}}"#).await.unwrap();
    assert_eq!(raw::next(&mut ws).await, raw::Seen::Message(br#"{"id":1,"subscribe":{}}"#.to_vec()));
    let refused = raw::connect(node.addr, Some("mqtt")).await;
    assert!(matches!(refused, Err(fastwebsockets::WebSocketError::InvalidStatusCode(400))));
}

#[tokio::test]
async fn unsubscribed_clients_get_nothing_more() {
    let node = TestNode::start(test_config()).await;
    let mut a = client(&node, Encoding::Json).await;
    let b = client(&node, Encoding::Json).await;
    a.subscribe("news").await.unwrap();
    a.subscribe("other").await.unwrap();
    a.unsubscribe("news").await.unwrap();
    b.publish("news", b"1".to_vec()).await.unwrap();
    b.publish("other", b"2".to_vec()).await.unwrap();
    // Publications on one connection arrive in order: "2" first means "1" never came.
    let p = within("the publication on `other`", a.next_publication()).await.unwrap();
    assert_eq!(p.channel, "other");
    assert_eq!(node.node.hub.subscriber_count("news"), 0);
}

#[tokio::test]
async fn publications_arrive_in_publish_order() {
    let node = TestNode::start(test_config()).await;
    let mut sub = client(&node, Encoding::Protobuf).await;
    let publisher = client(&node, Encoding::Json).await;
    sub.subscribe("seq").await.unwrap();
    for i in 0..500 {
        publisher.publish("seq", format!("{i}")).await.unwrap();
    }
    for i in 0..500 {
        let p = within("the next publication", sub.next_publication()).await.unwrap();
        assert_eq!(p.data, format!("{i}").as_bytes());
    }
}

#[tokio::test]
async fn with_a_write_delay_every_publication_arrives_in_order_in_both_encodings() {
    let mut config = test_config();
    config.client.write_delay = std::time::Duration::from_millis(5);
    let node = TestNode::start(config).await;
    let mut json = client(&node, Encoding::Json).await;
    let mut proto = client(&node, Encoding::Protobuf).await;
    let publisher = client(&node, Encoding::Json).await;
    json.subscribe("seq").await.unwrap();
    proto.subscribe("seq").await.unwrap();
    // Each publish waits for its reply, which waits for a tick.
    for i in 0..100 {
        publisher.publish("seq", format!("{i}")).await.unwrap();
    }
    for sub in [&mut json, &mut proto] {
        for i in 0..100 {
            let p = within("the next publication", sub.next_publication()).await.unwrap();
            assert_eq!(p.data, format!("{i}").as_bytes());
        }
    }
    // The replies went through the write clock too, and a close still does.
    assert_eq!(json.close().await.map(|(code, _)| code), Some(1000));
}

#[tokio::test]
async fn closing_cleanly_leaves_every_channel() {
    let node = TestNode::start(test_config()).await;
    let c = client(&node, Encoding::Json).await;
    c.subscribe("a").await.unwrap();
    c.subscribe("b").await.unwrap();
    assert_eq!(node.node.hub.channel_count(), 2);
    assert_eq!(c.close().await.map(|(code, _)| code), Some(1000));
    within("the channels to empty", async {
        while node.node.hub.channel_count() > 0 || !node.node.connections.is_empty() {
            tokio::task::yield_now().await;
        }
    })
    .await;
}

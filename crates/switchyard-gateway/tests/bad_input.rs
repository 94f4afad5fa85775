//! Every documented error reply and close code, each counted in a metric,
//! and none of them disturbing another connection.

use fastwebsockets::{Frame, OpCode, Payload};
use switchyard_client::{Client, Encoding, Options};
use switchyard_testkit::http::sample;
use switchyard_testkit::raw::{self, RawSocket, Seen};
use switchyard_testkit::{TestNode, test_config, within};

async fn json_socket(node: &TestNode) -> RawSocket {
    raw::connect(node.addr, Some("switchyard.v1.json")).await.expect("connect")
}

/// Sends `command` and returns the `error.code` of the reply.
async fn error_code(ws: &mut RawSocket, command: &str) -> (u64, u64) {
    raw::send_text(ws, command).await.unwrap();
    let Seen::Message(reply) = within("a reply", raw::next(ws)).await else { panic!("no reply to {command}") };
    let reply: serde_json::Value = serde_json::from_slice(&reply).unwrap();
    (
        reply["id"].as_u64().unwrap_or(0),
        reply["error"]["code"].as_u64().unwrap_or_else(|| panic!("not an error: {reply}")),
    )
}

async fn closed_with(ws: &mut RawSocket) -> (Option<u16>, Vec<String>) {
    within("the close frame", raw::until_close(ws)).await
}

#[tokio::test]
async fn error_replies_keep_the_connection_open() {
    let mut config = test_config();
    config.client.max_channels = 2;
    let no_publish = switchyard_core::config::NamespaceConfig { allow_publish: false, ..Default::default() };
    config.namespaces.insert("feed".into(), no_publish);
    let node = TestNode::start(config).await;
    let mut ws = json_socket(&node).await;

    assert_eq!(error_code(&mut ws, r#"{"id": 1, "frobnicate": {}}"#).await, (1, 104));
    assert_eq!(error_code(&mut ws, r#"{"id": 2, "subscribe": {"channel": "bad channel"}}"#).await, (2, 107));
    assert_eq!(error_code(&mut ws, r#"{"id": 3, "subscribe": {"channel": 7}}"#).await, (3, 107));
    assert_eq!(error_code(&mut ws, r#"{"id": 4, "subscribe": {"channel": "nope:x"}}"#).await, (4, 102));
    assert_eq!(error_code(&mut ws, r#"{"id": 5, "subscribe": {"channel": "notify#42"}}"#).await, (5, 103));
    assert_eq!(error_code(&mut ws, r#"{"id": 6, "publish": {"channel": "feed:x", "data": 1}}"#).await, (6, 103));
    assert_eq!(error_code(&mut ws, r#"{"id": 7, "publish": {"channel": "news"}}"#).await, (7, 107));
    assert_eq!(error_code(&mut ws, r#"{"id": 8}"#).await, (8, 104));
    assert_eq!(error_code(&mut ws, r#"{"id": 9, "subscribe": {}, "publish": {}}"#).await, (9, 107));
    assert_eq!(error_code(&mut ws, r#"{"id": -1, "subscribe": {"channel": "a"}}"#).await, (0, 107));
    assert_eq!(error_code(&mut ws, r#"{"subscribe": {"channel": "a"}}"#).await, (0, 107));
    let long = "x".repeat(256);
    assert_eq!(error_code(&mut ws, &format!(r#"{{"id": 10, "subscribe": {{"channel": "{long}"}}}}"#)).await, (10, 107));
    raw::send_text(&mut ws, r#"{"id": 11, "subscribe": {"channel": "a"}}"#).await.unwrap();
    assert_eq!(raw::next(&mut ws).await, Seen::Message(br#"{"id":11,"subscribe":{}}"#.to_vec()));
    assert_eq!(error_code(&mut ws, r#"{"id": 12, "subscribe": {"channel": "a"}}"#).await, (12, 105));
    raw::send_text(&mut ws, r#"{"id": 13, "subscribe": {"channel": "b"}}"#).await.unwrap();
    assert_eq!(raw::next(&mut ws).await, Seen::Message(br#"{"id":13,"subscribe":{}}"#.to_vec()));
    assert_eq!(error_code(&mut ws, r#"{"id": 14, "subscribe": {"channel": "c"}}"#).await, (14, 106));
    assert_eq!(error_code(&mut ws, r#"{"id": 15, "connect": {}}"#).await, (15, 107));
    let mut fresh = json_socket(&node).await;
    assert_eq!(error_code(&mut fresh, r#"{"id": 1, "connect": {"token": "not.a.jwt"}}"#).await, (1, 101));
    assert_eq!(closed_with(&mut fresh).await.0, Some(4003));

    let metrics = node.metrics().await;
    for (code, n) in [("104", 2.0), ("107", 8.0), ("102", 1.0), ("103", 2.0), ("105", 1.0), ("106", 1.0), ("101", 1.0)]
    {
        let label = format!("code=\"{code}\"");
        assert_eq!(sample(&metrics, "switchyard_command_errors_total", &label), n, "errors with {code}");
    }
}

/// A close code for each kind of bad message, and the metric that counts it.
#[tokio::test]
async fn bad_messages_close_with_their_codes() {
    let mut config = test_config();
    config.client.max_message_size = 1024;
    let node = TestNode::start(config).await;
    let mut bystander = Client::connect(&node.ws_url(), Options::new(Encoding::Json)).await.unwrap();
    bystander.subscribe("news").await.unwrap();

    type Case = (&'static str, Frame<'static>, u16);
    let cases: Vec<Case> = vec![
        ("unparseable JSON", Frame::text(Payload::Owned(b"{nope".to_vec())), 4001),
        ("JSON that is not an object", Frame::text(Payload::Owned(b"[1,2]".to_vec())), 4001),
        ("a binary frame on a JSON connection", Frame::binary(Payload::Owned(b"{}".to_vec())), 4001),
        ("invalid UTF-8", Frame::text(Payload::Owned(vec![b'"', 0xff, 0xfe, b'"'])), 1007),
        ("an oversize frame", Frame::text(Payload::Owned(vec![b' '; 1025])), 1009),
        (
            "a continuation without a start",
            Frame::new(true, OpCode::Continuation, None, Payload::Owned(b"x".to_vec())),
            1002,
        ),
    ];
    for (what, frame, expected) in cases {
        let mut ws = json_socket(&node).await;
        ws.write_frame(frame).await.unwrap();
        let (code, messages) = closed_with(&mut ws).await;
        assert_eq!(code, Some(expected), "{what}");
        // The disconnect push comes first, with the same code.
        let disconnect: serde_json::Value = serde_json::from_str(messages.last().expect("a disconnect push")).unwrap();
        assert_eq!(disconnect["disconnect"]["code"], expected, "{what}");
    }

    // Framing errors the WebSocket library must not let through.
    for (what, fin, first_byte_bits, payload) in [
        ("a reserved opcode", true, 0x3, vec![]),
        ("a reserved bit", true, 0x40 | 0x1, b"{}".to_vec()),
        ("a ping over 125 bytes", true, 0x9, vec![0; 126]),
        ("a fragmented ping", false, 0x9, vec![]),
    ] {
        let ws = json_socket(&node).await;
        let mut ws = raw::write_unchecked(ws, fin, first_byte_bits, &payload).await.unwrap();
        assert_eq!(closed_with(&mut ws).await.0, Some(1002), "{what}");
    }

    // Protobuf connections: garbage bytes and text frames.
    for (frame, expected) in [
        (Frame::binary(Payload::Owned(vec![0xff, 0xff, 0xff, 0xff])), 4001),
        (Frame::text(Payload::Owned(b"{}".to_vec())), 4001),
    ] {
        let mut ws = raw::connect(node.addr, Some("switchyard.v1.proto")).await.unwrap();
        ws.write_frame(frame).await.unwrap();
        assert_eq!(closed_with(&mut ws).await.0, Some(expected));
    }

    // An oversize message made of small fragments: capped after reassembly.
    let mut ws = json_socket(&node).await;
    ws.write_frame(Frame::new(false, OpCode::Text, None, Payload::Owned(vec![b' '; 600]))).await.unwrap();
    ws.write_frame(Frame::new(false, OpCode::Continuation, None, Payload::Owned(vec![b' '; 600]))).await.unwrap();
    assert_eq!(closed_with(&mut ws).await.0, Some(1009));

    // Invalid UTF-8 split across fragments.
    let mut ws = json_socket(&node).await;
    ws.write_frame(Frame::new(false, OpCode::Text, None, Payload::Owned(vec![b'"', 0xce]))).await.unwrap();
    ws.write_frame(Frame::new(true, OpCode::Continuation, None, Payload::Owned(vec![0x28, b'"']))).await.unwrap();
    assert_eq!(closed_with(&mut ws).await.0, Some(1007));

    // A fragmented message that is fine is handled like any other.
    let mut ws = json_socket(&node).await;
    ws.write_frame(Frame::new(false, OpCode::Text, None, Payload::Owned(br#"{"id": 1, "subscr"#.to_vec())))
        .await
        .unwrap();
    ws.write_frame(Frame::new(
        true,
        OpCode::Continuation,
        None,
        Payload::Owned(br#"ibe": {"channel": "x"}}"#.to_vec()),
    ))
    .await
    .unwrap();
    assert_eq!(raw::next(&mut ws).await, Seen::Message(br#"{"id":1,"subscribe":{}}"#.to_vec()));

    // The bystander saw none of it and still gets its publications.
    let publisher = Client::connect(&node.ws_url(), Options::new(Encoding::Json)).await.unwrap();
    publisher.publish("news", b"\"still here\"".to_vec()).await.unwrap();
    let p = within("the bystander's publication", bystander.next_publication()).await.unwrap();
    assert_eq!(&p.data[..], b"\"still here\"");

    let metrics = node.metrics().await;
    for (code, n) in [("4001", 4.0), ("1007", 2.0), ("1009", 2.0), ("1002", 5.0)] {
        node.wait_for_sample("switchyard_connections_closed_total", &format!("code=\"{code}\""), n).await;
    }
    assert!(sample(&metrics, "switchyard_messages_received_total", "") > 0.0);
}

#[tokio::test]
async fn a_refused_token_closes_with_4003_when_anonymous_is_off() {
    let mut config = test_config();
    config.auth.allow_anonymous = false;
    let node = TestNode::start(config).await;
    let mut ws = json_socket(&node).await;
    raw::send_text(&mut ws, r#"{"id": 1, "subscribe": {"channel": "news"}}"#).await.unwrap();
    let (code, messages) = closed_with(&mut ws).await;
    assert_eq!(code, Some(4003));
    let reply: serde_json::Value = serde_json::from_str(&messages[0]).unwrap();
    assert_eq!(reply["id"], 1);
    assert_eq!(reply["error"]["code"], 101);
}

#[tokio::test]
async fn close_handshake_is_echoed() {
    let node = TestNode::start(test_config()).await;
    let mut ws = json_socket(&node).await;
    ws.write_frame(Frame::close(1000, b"bye")).await.unwrap();
    assert_eq!(closed_with(&mut ws).await.0, Some(1000));
    // Close payloads that break RFC 6455 §7.4 and §5.5.1.
    for (payload, expected) in [(1005u16.to_be_bytes().to_vec(), 1002), (vec![3], 1002), (vec![3, 232, 0xff], 1007)] {
        let ws = json_socket(&node).await;
        let mut ws = raw::write_unchecked(ws, true, 0x8, &payload).await.unwrap();
        let (code, messages) = closed_with(&mut ws).await;
        assert_eq!(code, Some(expected), "close payload {payload:?}");
        assert!(messages.last().is_some_and(|m| m.contains("disconnect")));
    }
}

#[tokio::test]
async fn pings_are_answered_with_pongs() {
    let node = TestNode::start(test_config()).await;
    let mut ws = json_socket(&node).await;
    ws.write_frame(Frame::new(true, OpCode::Ping, None, Payload::Owned(b"hello".to_vec()))).await.unwrap();
    let frame = within("the pong", ws.read_frame()).await.unwrap();
    assert_eq!(frame.opcode, OpCode::Pong);
    assert_eq!(&frame.payload[..], b"hello");
}

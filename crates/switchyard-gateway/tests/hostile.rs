//! Hostile input against one running node, one attack after another. Each
//! gets its documented answer and is counted; the node stays up, and a
//! well-behaved subscriber on it keeps receiving throughout.

use fastwebsockets::{Frame, OpCode, Payload};
use std::time::Duration;
use switchyard_client::{Client, Encoding, Options};
use switchyard_core::config::Config;
use switchyard_testkit::http::{get, sample};
use switchyard_testkit::raw::{self, RawSocket, Seen};
use switchyard_testkit::{TestNode, test_config, within};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn hostile_config() -> Config {
    let mut config = test_config();
    config.client.max_message_size = 4096;
    config.client.max_channels = 100;
    config.client.commands_per_second = 100;
    config.client.commands_burst = 20_000;
    config.client.connect_timeout = Duration::from_millis(500);
    config.limits.handshake_timeout = Duration::from_millis(500);
    config.limits.allowed_origins = vec!["https://app.example.com".into()];
    config
}

/// A subscriber that must keep getting publications between attacks.
struct Bystander {
    subscriber: Client,
    publisher: Client,
    n: u32,
}

impl Bystander {
    async fn new(node: &TestNode) -> Bystander {
        let subscriber = Client::connect(&node.ws_url(), Options::new(Encoding::Protobuf)).await.unwrap();
        subscriber.subscribe("calm").await.unwrap();
        let publisher = Client::connect(&node.ws_url(), Options::new(Encoding::Json)).await.unwrap();
        Bystander { subscriber, publisher, n: 0 }
    }

    async fn still_served(&mut self, after: &str) {
        self.n += 1;
        self.publisher.publish("calm", self.n.to_string()).await.unwrap_or_else(|e| panic!("after {after}: {e}"));
        let p = within(after, self.subscriber.next_publication()).await.unwrap();
        assert_eq!(p.data, self.n.to_string().as_bytes(), "after {after}");
    }
}

async fn socket(node: &TestNode) -> RawSocket {
    raw::connect(node.addr, Some("switchyard.v1.json")).await.unwrap()
}

async fn close_code(ws: &mut RawSocket) -> Option<u16> {
    within("the close", raw::until_close(ws)).await.0
}

#[tokio::test]
async fn a_node_under_attack_keeps_serving_the_others() {
    let node = TestNode::start(hostile_config()).await;
    let mut calm = Bystander::new(&node).await;

    // Oversize frame, oversize fragmented message, invalid UTF-8.
    let mut ws = socket(&node).await;
    ws.write_frame(Frame::text(Payload::Owned(vec![b' '; 5000]))).await.unwrap();
    assert_eq!(close_code(&mut ws).await, Some(1009));
    calm.still_served("an oversize frame").await;
    let mut ws = socket(&node).await;
    ws.write_frame(Frame::new(false, OpCode::Text, None, Payload::Owned(vec![b' '; 2000]))).await.unwrap();
    for _ in 0..3 {
        if ws
            .write_frame(Frame::new(false, OpCode::Continuation, None, Payload::Owned(vec![b' '; 2000])))
            .await
            .is_err()
        {
            break;
        }
    }
    assert_eq!(close_code(&mut ws).await, Some(1009));
    calm.still_served("an oversize fragmented message").await;
    let mut ws = socket(&node).await;
    ws.write_frame(Frame::text(Payload::Owned(vec![0xc3, 0x28]))).await.unwrap();
    assert_eq!(close_code(&mut ws).await, Some(1007));
    calm.still_served("invalid UTF-8").await;

    // Garbage instead of a handshake: an HTTP 400, and the socket closed.
    let mut tcp = TcpStream::connect(node.addr).await.unwrap();
    tcp.write_all(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage\r\n\r\n").await.unwrap();
    let mut answer = Vec::new();
    within("the garbage to be refused", tcp.read_to_end(&mut answer)).await.unwrap();
    assert!(answer.starts_with(b"HTTP/1.1 400"), "{}", String::from_utf8_lossy(&answer));
    calm.still_served("garbage instead of a handshake").await;

    // Slowloris: half a request head, then nothing. Dropped at the handshake timeout.
    let mut tcp = TcpStream::connect(node.addr).await.unwrap();
    tcp.write_all(b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n").await.unwrap();
    let mut answer = Vec::new();
    within("the slow handshake to be dropped", tcp.read_to_end(&mut answer)).await.unwrap();
    calm.still_served("a slow handshake").await;

    // An origin that is not allowed: 403 before any upgrade.
    let refused = raw::connect_with(node.addr, &[("origin", "https://evil.example")]).await;
    assert!(matches!(refused, Err(fastwebsockets::WebSocketError::InvalidStatusCode(403))));
    raw::connect_with(node.addr, &[("origin", "https://app.example.com")]).await.unwrap();

    // A WebSocket that never says anything: closed with 4003.
    let mut silent = socket(&node).await;
    assert_eq!(close_code(&mut silent).await, Some(4003));

    // Malformed JSON and protobuf; unknown commands.
    let mut ws = socket(&node).await;
    raw::send_text(&mut ws, "{\"id\": 1, \"subscribe\": {").await.unwrap();
    assert_eq!(close_code(&mut ws).await, Some(4001));
    let mut ws = raw::connect(node.addr, Some("switchyard.v1.proto")).await.unwrap();
    ws.write_frame(Frame::binary(Payload::Owned(vec![0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f]))).await.unwrap();
    assert_eq!(close_code(&mut ws).await, Some(4001));
    let mut ws = socket(&node).await;
    for id in 1..=20 {
        raw::send_text(&mut ws, &format!("{{\"id\": {id}, \"drop_tables\": {{}}}}")).await.unwrap();
        let Seen::Message(reply) = raw::next(&mut ws).await else { panic!("no reply") };
        assert!(String::from_utf8_lossy(&reply).contains("\"code\":104"));
    }
    calm.still_served("malformed and unknown commands").await;

    // 10,000 subscribe attempts on one connection: 100 succeed, the rest get 106.
    let mut ws = socket(&node).await;
    for i in 0..10_000 {
        raw::send_text(&mut ws, &format!("{{\"id\": {}, \"subscribe\": {{\"channel\": \"c{i}\"}}}}", i + 1))
            .await
            .unwrap();
    }
    let (mut ok, mut limit) = (0, 0);
    within("10,000 replies", async {
        while ok + limit < 10_000 {
            let Seen::Message(reply) = raw::next(&mut ws).await else { panic!("closed early") };
            let reply = String::from_utf8_lossy(&reply);
            if reply.contains("\"subscribe\":{}") {
                ok += 1;
            } else if reply.contains("\"code\":106") {
                limit += 1;
            } else {
                panic!("unexpected {reply}");
            }
        }
    })
    .await;
    assert_eq!((ok, limit), (100, 9_900));
    calm.still_served("10,000 subscribes").await;

    // A flood of messages: past the burst each is refused, and a client that
    // keeps going is closed with 4029.
    let mut ws = socket(&node).await;
    raw::send_text(&mut ws, "{\"id\": 1, \"connect\": {}}").await.unwrap();
    let mut sent = 0;
    while sent < 45_000 {
        if raw::send_text(&mut ws, "{\"pong\": {}}").await.is_err() {
            break;
        }
        sent += 1;
    }
    assert_eq!(close_code(&mut ws).await, Some(4029));
    calm.still_served("a flood").await;

    // Counted, and the node is healthy.
    for (code, at_least) in [("1009", 2.0), ("1007", 1.0), ("4001", 2.0), ("4003", 1.0), ("4029", 1.0)] {
        node.wait_for_sample("switchyard_connections_closed_total", &format!("code=\"{code}\""), at_least).await;
    }
    let metrics = node.metrics().await;
    assert_eq!(sample(&metrics, "switchyard_command_errors_total", "code=\"106\""), 9_900.0);
    assert_eq!(sample(&metrics, "switchyard_command_errors_total", "code=\"104\""), 20.0);
    assert_eq!(sample(&metrics, "switchyard_connections_refused_total", "reason=\"origin\""), 1.0);
    assert!(sample(&metrics, "switchyard_connect_timeouts_total", "") >= 1.0);
    assert_eq!(get(node.addr, "/readyz").await.unwrap().0, 200);
}

#[tokio::test]
async fn connections_per_address_are_limited_behind_a_trusted_proxy() {
    let mut config = test_config();
    config.limits.max_connections_per_ip = 2;
    config.limits.trusted_proxy_header = Some("x-forwarded-for".into());
    config.limits.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
    let node = TestNode::start(config).await;
    let from = |ip: &'static str| [("x-forwarded-for", ip)];
    let _a1 = raw::connect_with(node.addr, &from("198.51.100.7")).await.unwrap();
    let _a2 = raw::connect_with(node.addr, &from("10.0.0.1, 198.51.100.7")).await.unwrap();
    let third = raw::connect_with(node.addr, &from("198.51.100.7")).await;
    assert!(matches!(third, Err(fastwebsockets::WebSocketError::InvalidStatusCode(429))));
    // Another address is not affected; a closed connection frees its place.
    let _b = raw::connect_with(node.addr, &from("203.0.113.9")).await.unwrap();
    drop(_a1);
    within("a place to free up", async {
        while raw::connect_with(node.addr, &from("198.51.100.7")).await.is_err() {
            tokio::task::yield_now().await;
        }
    })
    .await;
    node.wait_for_sample("switchyard_connections_refused_total", "reason=\"ip_limit\"", 1.0).await;
}

#[tokio::test]
async fn a_flood_of_unknown_commands_is_rate_limited_like_any_other() {
    let mut config = test_config();
    config.client.commands_per_second = 100;
    config.client.commands_burst = 200;
    let node = TestNode::start(config).await;
    let mut calm = Bystander::new(&node).await;
    let mut ws = socket(&node).await;
    let (mut unknown, mut limited) = (0, 0);
    for id in 1..=2_000 {
        if raw::send_text(&mut ws, &format!("{{\"id\": {id}, \"frobnicate\": {{}}}}")).await.is_err() {
            break;
        }
    }
    let (code, replies) = within("the close", raw::until_close(&mut ws)).await;
    for reply in &replies {
        if reply.contains("\"code\":104") {
            unknown += 1;
        } else if reply.contains("\"code\":109") {
            limited += 1;
        }
    }
    assert_eq!(code, Some(4029), "a client that keeps going is closed");
    assert!(unknown < 2_000, "not every unknown command was run: {unknown}");
    assert!(limited >= 1, "the messages over the rate are refused with 109");
    calm.still_served("a flood of unknown commands").await;
    node.wait_for_sample("switchyard_connections_closed_total", "code=\"4029\"", 1.0).await;
    node.wait_for_sample("switchyard_command_errors_total", "code=\"109\"", 1.0).await;
}

#[tokio::test]
async fn new_connections_per_address_are_rate_limited() {
    let mut config = test_config();
    config.limits.connects_per_second_per_ip = 1;
    config.limits.connects_burst_per_ip = 3;
    config.limits.trusted_proxy_header = Some("x-forwarded-for".into());
    config.limits.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
    let node = TestNode::start(config).await;
    let from = |ip: &'static str| [("x-forwarded-for", ip)];
    let mut kept = Vec::new();
    let mut refused = 0;
    // Far over the burst, in far less than the seconds it takes to refill.
    for _ in 0..30 {
        match raw::connect_with(node.addr, &from("198.51.100.7")).await {
            Ok(ws) => kept.push(ws),
            Err(fastwebsockets::WebSocketError::InvalidStatusCode(429)) => refused += 1,
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert!(kept.len() >= 3, "the burst passes: {}", kept.len());
    assert!(refused >= 1, "the rest get 429");
    // Another address is not affected.
    let mut other = raw::connect_with(node.addr, &from("203.0.113.9")).await.unwrap();
    raw::send_text(&mut other, "{\"id\": 1, \"connect\": {}}").await.unwrap();
    assert!(matches!(raw::next(&mut other).await, Seen::Message(m) if m.starts_with(b"{\"id\":1,\"connect\"")));
    node.wait_for_sample("switchyard_connections_refused_total", "reason=\"connect_rate\"", refused as f64).await;
}

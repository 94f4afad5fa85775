//! History, recovery and gap repair on channels whose namespace keeps
//! history: nothing lost, nothing reordered.

use prost::Message as _;
use std::time::Duration;
use switchyard_client::v1::{StreamPosition, SubscribeRequest};
use switchyard_client::{Client, ClientError, Encoding, Event, Options};
use switchyard_core::config::Config;
use switchyard_proto::v1::Envelope;
use switchyard_testkit::{RedisServer, TestNode, test_config, with_history, within};

fn redis_config(redis: &RedisServer, size: usize) -> Config {
    let mut config = with_history(test_config(), "chat", size);
    config.broker.redis_url = Some(redis.url());
    config.api.key = Some("k".into());
    config
}

async fn client(node: &TestNode, encoding: Encoding) -> Client {
    Client::connect(&node.ws_url(), Options::new(encoding)).await.expect("connect")
}

/// Publishes each number of `numbers` (as JSON) to `channel`, in order.
async fn publish_numbers(publisher: &Client, channel: &str, numbers: impl IntoIterator<Item = u64>) {
    for i in numbers {
        publisher.publish(channel, i.to_string()).await.unwrap();
    }
}

/// Reads publications until offset `last`, checking each comes once, in order.
async fn offsets_through(client: &mut Client, mut next: u64, last: u64) {
    within("publications in offset order", async {
        while next <= last {
            let p = client.next_publication().await.unwrap();
            assert_eq!(p.offset, Some(next), "expected offset {next}, got {:?}", p.offset);
            next += 1;
        }
    })
    .await;
}

#[tokio::test]
async fn every_publish_path_gets_the_next_offset() {
    let redis = RedisServer::start().await;
    let a = TestNode::start(redis_config(&redis, 100)).await;
    let b = TestNode::start(redis_config(&redis, 100)).await;
    let mut subscriber = client(&a, Encoding::Protobuf).await;
    let subscribed = subscriber.subscribe("chat:room").await.unwrap();
    assert_eq!(subscribed.offset, Some(0));
    let publisher = client(&b, Encoding::Json).await;

    let first = publisher.publish("chat:room", "1").await.unwrap();
    assert_eq!(first.offset, Some(1));
    let epoch = first.epoch.clone().unwrap();
    assert!(!epoch.is_empty());
    let fcall = redis.cli(&["FCALL", "switchyard_publish", "1", "chat:room", "2"]).await;
    assert_eq!(fcall, format!("{epoch}\n2\n"));
    let (status, body) = api(&b, r#"{"channel":"chat:room","data":3}"#).await;
    assert_eq!(status, 200);
    assert_eq!(body["result"], serde_json::json!({"epoch": epoch, "offset": 3}));
    offsets_through(&mut subscriber, 1, 3).await;
    // Channels without history have no offsets.
    let plain = publisher.publish("plain", "1").await.unwrap();
    assert_eq!((plain.epoch, plain.offset), (None, None));
}

async fn api(node: &TestNode, body: &str) -> (u16, serde_json::Value) {
    let request = hyper::Request::post("/api/publish")
        .header("host", node.addr.to_string())
        .header("authorization", "apikey k")
        .body(http_body_util::Full::new(bytes::Bytes::from(body.to_owned())))
        .unwrap();
    let (status, text) = switchyard_testkit::http::request(node.addr, request).await.unwrap();
    (status, serde_json::from_str(&text).unwrap())
}

#[tokio::test]
async fn a_client_away_while_1000_are_published_recovers_them_all() {
    let redis = RedisServer::start().await;
    let a = TestNode::start(redis_config(&redis, 2000)).await;
    let b = TestNode::start(redis_config(&redis, 2000)).await;
    let publisher = client(&b, Encoding::Protobuf).await;
    publish_numbers(&publisher, "chat:away", 0..5).await;
    let mut away = client(&a, Encoding::Json).await;
    let at = away.subscribe("chat:away").await.unwrap();
    assert_eq!(at.offset, Some(5));
    publisher.publish("chat:away", "\"seen\"").await.unwrap();
    offsets_through(&mut away, 6, 6).await;
    away.close().await;

    for i in 0..1000 {
        publisher.publish("chat:away", format!("{{\"n\":{i}}}")).await.unwrap();
    }
    // Back, on the other node, from where it left off.
    let mut back = client(&b, Encoding::Json).await;
    let request = SubscribeRequest {
        channel: "chat:away".into(),
        recover: true,
        epoch: at.epoch.clone().unwrap(),
        offset: 6,
        ..Default::default()
    };
    let recovered = back.subscribe_with(request).await.unwrap();
    assert_eq!(recovered.recovered, Some(true));
    assert_eq!(recovered.offset, Some(1006));
    let offsets: Vec<u64> = recovered.publications.iter().map(|p| p.offset.unwrap()).collect();
    assert_eq!(offsets, (7..=1006).collect::<Vec<u64>>());
    assert_eq!(&recovered.publications[0].data[..], br#"{"n":0}"#);
    // Live ones follow, with no gap and no duplicate at the seam.
    publish_numbers(&publisher, "chat:away", 0..10).await;
    offsets_through(&mut back, 1007, 1016).await;
    b.wait_for_sample("switchyard_recoveries_total", "outcome=\"recovered\"", 1.0).await;
}

#[tokio::test]
async fn a_position_history_no_longer_holds_is_reported() {
    let node = TestNode::start(with_history(test_config(), "chat", 10)).await;
    let publisher = client(&node, Encoding::Json).await;
    let mut subscriber = client(&node, Encoding::Json).await;
    let at = subscriber.subscribe("chat:busy").await.unwrap();
    publish_numbers(&publisher, "chat:busy", 0..50).await;
    offsets_through(&mut subscriber, 1, 50).await;
    subscriber.unsubscribe("chat:busy").await.unwrap();
    let request = SubscribeRequest {
        channel: "chat:busy".into(),
        recover: true,
        epoch: at.epoch.clone().unwrap(),
        offset: 0,
        ..Default::default()
    };
    let result = subscriber.subscribe_with(request).await.unwrap();
    assert_eq!(result.recovered, Some(false), "offsets 1..=40 are trimmed");
    assert!(result.publications.is_empty());
    assert_eq!(result.offset, Some(50));
    let since = StreamPosition { epoch: at.epoch.clone().unwrap(), offset: 5 };
    let error = subscriber.history("chat:busy", Some(since), 0).await.unwrap_err();
    assert_eq!(error.code(), Some(112));
    // Another epoch cannot be recovered either.
    subscriber.unsubscribe("chat:busy").await.unwrap();
    let request = SubscribeRequest {
        channel: "chat:busy".into(),
        recover: true,
        epoch: "old".into(),
        offset: 45,
        ..Default::default()
    };
    assert_eq!(subscriber.subscribe_with(request).await.unwrap().recovered, Some(false));
    node.wait_for_sample("switchyard_recoveries_total", "outcome=\"unrecoverable\"", 2.0).await;
}

#[tokio::test]
async fn the_history_command_pages_through_a_channel() {
    let node = TestNode::start(with_history(test_config(), "chat", 100)).await;
    let c = client(&node, Encoding::Protobuf).await;
    publish_numbers(&c, "chat:log", 1..=20).await;
    let newest = c.history("chat:log", None, 5).await.unwrap();
    let offsets =
        |h: &switchyard_client::v1::HistoryResult| h.publications.iter().map(|p| p.offset.unwrap()).collect::<Vec<_>>();
    assert_eq!(offsets(&newest), vec![16, 17, 18, 19, 20]);
    assert_eq!(newest.offset, 20);
    let page =
        c.history("chat:log", Some(StreamPosition { epoch: newest.epoch.clone(), offset: 10 }), 5).await.unwrap();
    assert_eq!(offsets(&page), vec![11, 12, 13, 14, 15]);
    let error = c.history("plain", None, 5).await.unwrap_err();
    assert!(matches!(error, ClientError::Server(ref e) if e.code == 107), "{error}");
}

#[tokio::test]
async fn killing_the_nodes_pubsub_connection_loses_nothing() {
    let redis = RedisServer::start().await;
    let a = TestNode::start(redis_config(&redis, 5000)).await;
    let b = TestNode::start(redis_config(&redis, 5000)).await;
    let mut json = client(&a, Encoding::Json).await;
    let mut proto = client(&a, Encoding::Protobuf).await;
    json.subscribe("chat:flow").await.unwrap();
    proto.subscribe("chat:flow").await.unwrap();
    let publisher = client(&b, Encoding::Json).await;
    publish_numbers(&publisher, "chat:flow", 0..100).await;
    // Cut the node's pub/sub connection and publish at once: whether that
    // publication beats the node's reconnect or not, it must arrive.
    let out = redis.script("CLIENT KILL TYPE pubsub\nFCALL switchyard_publish 1 chat:flow \"in the gap\"\n").await;
    // Every node listens to the control channel: both nodes' pub/sub
    // connections go.
    assert_eq!(out.lines().next(), Some("2"), "two pub/sub connections killed: {out}");
    publish_numbers(&publisher, "chat:flow", 0..100).await;
    for subscriber in [&mut json, &mut proto] {
        offsets_through(subscriber, 1, 201).await;
    }
    a.wait_for_sample("switchyard_broker_reconnects_total", "", 1.0).await;
    a.wait_for_sample("switchyard_broker_resubscribes_total", "", 1.0).await;
    // Nobody was disconnected: both still answer commands, with no close in between.
    for subscriber in [&mut json, &mut proto] {
        subscriber.subscribe("plain").await.unwrap();
        assert!(!matches!(
            tokio::time::timeout(Duration::ZERO, subscriber.next_event()).await,
            Ok(Some(Event::Closed(_) | Event::Disconnect(_)))
        ));
    }
}

#[tokio::test]
async fn a_publication_pubsub_dropped_is_repaired_from_the_stream() {
    let redis = RedisServer::start().await;
    let node = TestNode::start(redis_config(&redis, 100)).await;
    let mut subscriber = client(&node, Encoding::Json).await;
    subscriber.subscribe("chat:lossy").await.unwrap();
    let first = subscriber.publish("chat:lossy", "1").await.unwrap();
    offsets_through(&mut subscriber, 1, 1).await;
    // Offset 2 reaches the stream but never pub/sub, as a message lost on
    // the way would.
    let epoch = first.epoch.unwrap();
    let lost = Envelope {
        channel: "chat:lossy".into(),
        data: "2".into(),
        epoch: epoch.clone(),
        offset: 2,
        ..Default::default()
    };
    assert_eq!(redis.cli(&["HINCRBY", "switchyard:{chat:lossy}:meta", "offset", "1"]).await.trim(), "2");
    redis.cli_with_stdin(&["XADD", "switchyard:{chat:lossy}:stream", "2-0", "e"], &lost.encode_to_vec()).await;
    // Offset 3 shows the gap; 2 is read from the stream and delivered first.
    subscriber.publish("chat:lossy", "3").await.unwrap();
    offsets_through(&mut subscriber, 2, 3).await;
    node.wait_for_sample("switchyard_broker_gap_repairs_total", "", 1.0).await;
}

#[tokio::test]
async fn after_redis_loses_the_history_the_new_epoch_arrives_from_offset_one() {
    let redis = RedisServer::start().await;
    let node = TestNode::start(redis_config(&redis, 100)).await;
    let publisher = client(&node, Encoding::Json).await;
    publish_numbers(&publisher, "chat:lost", 0..5).await;
    // Subscribed at offset 5 of the first epoch.
    let mut subscriber = client(&node, Encoding::Json).await;
    let at = subscriber.subscribe("chat:lost").await.unwrap();
    assert_eq!(at.offset, Some(5));
    // Redis loses every key (the function library stays): the channel
    // starts a new epoch at offset 1.
    assert_eq!(redis.cli(&["FLUSHALL"]).await.trim(), "OK");
    let first = publisher.publish("chat:lost", "\"new\"").await.unwrap();
    assert_eq!(first.offset, Some(1));
    assert_ne!(first.epoch, at.epoch);
    publish_numbers(&publisher, "chat:lost", 2..=6).await;
    // Offsets 1..5 of the new epoch are not the ones the subscriber had.
    offsets_through(&mut subscriber, 1, 6).await;
}

/// Acks decide where a resume starts: what follows the acked offset is
/// replayed, not only what follows the last delivered one.
#[tokio::test]
async fn a_resumed_session_replays_exactly_what_follows_the_acked_offset() {
    let redis = RedisServer::start().await;
    let a = TestNode::start(redis_config(&redis, 100)).await;
    let b = TestNode::start(redis_config(&redis, 100)).await;
    let mut first = client(&a, Encoding::Json).await;
    let session = first.connect_command("").await.unwrap().session;
    first.subscribe("chat:acked").await.unwrap();
    let publisher = client(&b, Encoding::Json).await;
    publish_numbers(&publisher, "chat:acked", 1..=10).await;
    offsets_through(&mut first, 1, 10).await;
    // Delivered through 10, acknowledged through 4.
    first.ack("chat:acked", 4).await.unwrap();
    first.close().await;

    let mut resumed = client(&b, Encoding::Protobuf).await;
    let request = switchyard_client::v1::ConnectRequest { resume: session, ..Default::default() };
    let reply = resumed.connect_with(request).await.unwrap();
    assert_eq!(reply.resumed, Some(true));
    assert_eq!(reply.channels.len(), 1);
    publish_numbers(&publisher, "chat:acked", 11..=11).await;
    offsets_through(&mut resumed, 5, 11).await;
}

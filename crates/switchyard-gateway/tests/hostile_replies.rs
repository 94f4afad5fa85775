//! Replies are not publications: a recovery, a `history` or a `presence`
//! larger than one reply holds (`client.max_reply_bytes`) is answered in a
//! form that fits (`recovered: false`, the publications that fit with a
//! way to page on, error 106), in both encodings and over SSE, and never
//! closes the asker as a slow consumer; the connect reply of a resume
//! always arrives.

use serde_json::json;
use switchyard_client::{Client, ClientError, Encoding, Options};
use switchyard_core::config::{Config, NamespaceConfig};
use switchyard_proto::v1::client_frame::Command;
use switchyard_proto::v1::server_frame::Message;
use switchyard_proto::v1::{ConnectRequest, PresenceRequest, PresenceStatsRequest, StreamPosition, SubscribeRequest};
use switchyard_testkit::http::sample;
use switchyard_testkit::sse::SseStream;
use switchyard_testkit::{TestNode, test_config, with_history, within};

/// Small limits, so that a few publications pass one reply: 16 KiB of
/// replies (8 KiB of publications after the headroom), 4 KiB messages.
fn config() -> Config {
    let mut config = with_history(test_config(), "chat", 1000);
    config.client.max_message_size = 4096;
    config.client.max_queue_bytes = 16 * 1024;
    config.client.max_reply_bytes = 16 * 1024;
    config.namespaces.insert("room".into(), NamespaceConfig { presence: true, ..Default::default() });
    config
}

async fn client(node: &TestNode, encoding: Encoding) -> Client {
    let client = Client::connect(&node.ws_url(), Options::new(encoding)).await.unwrap();
    client.connect_command("").await.unwrap();
    client
}

/// Publishes `count` publications of about `size` bytes on `channel`.
async fn publish(node: &TestNode, channel: &str, count: usize, size: usize) {
    let publisher = client(node, Encoding::Json).await;
    for n in 0..count {
        let data = json!(format!("{n}:{}", "x".repeat(size))).to_string();
        publisher.publish(channel, data).await.unwrap();
    }
}

fn recover_from(channel: &str, epoch: &str, offset: u64) -> SubscribeRequest {
    SubscribeRequest { channel: channel.into(), recover: true, epoch: epoch.into(), offset, ..Default::default() }
}

#[tokio::test]
async fn large_recoveries_and_histories_are_answered_in_what_fits() {
    let node = TestNode::start(config()).await;
    // (publications, bytes each): one that fits a reply, two that do not.
    for (channel, count, size) in [("chat:small", 5, 200), ("chat:big", 20, 2000), ("chat:many", 200, 100)] {
        publish(&node, channel, count, size).await;
        for encoding in [Encoding::Json, Encoding::Protobuf] {
            let subscriber = client(&node, encoding).await;
            let epoch = subscriber.history(channel, None, 1).await.unwrap().epoch;
            // Recovery from the start: everything, or `recovered: false`.
            let result = subscriber.subscribe_with(recover_from(channel, &epoch, 0)).await.unwrap();
            let fits = count * (size + 100) < 8 * 1024;
            assert_eq!(result.recovered, Some(fits), "{channel} {encoding:?}");
            assert_eq!(result.publications.len(), if fits { count } else { 0 }, "{channel} {encoding:?}");
            // History pages on from the last publication it got, to the top.
            let mut seen = Vec::new();
            let mut since = StreamPosition { epoch: epoch.clone(), offset: 0 };
            loop {
                let page = subscriber.history(channel, Some(since.clone()), 0).await.unwrap();
                assert!(!page.publications.is_empty(), "{channel}: a page with nothing would loop");
                seen.extend(page.publications.iter().map(|p| p.offset.unwrap()));
                since.offset = *seen.last().unwrap();
                if since.offset == page.offset {
                    break;
                }
            }
            assert_eq!(seen, (1..=count as u64).collect::<Vec<_>>(), "{channel} {encoding:?}: every page in order");
            // The newest that fit, without `since`.
            let newest = subscriber.history(channel, None, 0).await.unwrap();
            assert_eq!(newest.publications.last().and_then(|p| p.offset), Some(count as u64));
            // Still connected, still answered.
            subscriber.history(channel, None, 1).await.unwrap();
        }
    }
    let metrics = node.metrics().await;
    assert_eq!(sample(&metrics, "switchyard_slow_consumer_disconnects_total", ""), 0.0);
    assert!(sample(&metrics, "switchyard_recoveries_total", "outcome=\"too_large\"") >= 4.0);
}

#[tokio::test]
async fn a_resume_past_the_budget_still_gets_its_connect_reply() {
    let node = TestNode::start(config()).await;
    let fresh = Client::connect(&node.ws_url(), Options::new(Encoding::Json)).await.unwrap();
    let token = fresh.connect_command("").await.unwrap().session;
    let sub = fresh.subscribe_with(SubscribeRequest { channel: "chat:resumed".into(), ..Default::default() });
    let at = sub.await.unwrap();
    fresh.close().await;
    publish(&node, "chat:resumed", 20, 2000).await;
    let again = Client::connect(&node.ws_url(), Options::new(Encoding::Protobuf)).await.unwrap();
    let reply = again.connect_with(ConnectRequest { resume: token, ..Default::default() }).await.unwrap();
    assert_eq!(reply.resumed, Some(true));
    assert_eq!(reply.channels.len(), 1);
    assert!(!reply.channels[0].recovered, "too much to replay: the client reads history instead");
    assert_eq!(reply.channels[0].epoch, at.epoch.unwrap());
    again.history("chat:resumed", None, 1).await.unwrap();
}

#[tokio::test]
async fn a_large_presence_says_to_count_instead() {
    let node = TestNode::start(config()).await;
    let mut members = Vec::new();
    for _ in 0..120 {
        let member = client(&node, Encoding::Json).await;
        member.subscribe("room:full").await.unwrap();
        members.push(member);
    }
    for encoding in [Encoding::Json, Encoding::Protobuf] {
        let asker = client(&node, encoding).await;
        let presence = asker.command(Command::Presence(PresenceRequest { channel: "room:full".into() })).await;
        match presence {
            Err(ClientError::Server(e)) => assert_eq!(e.code, 106, "{}", e.message),
            other => panic!("{other:?}"),
        }
        let stats = asker.command(Command::PresenceStats(PresenceStatsRequest { channel: "room:full".into() })).await;
        assert!(matches!(stats, Ok(Message::PresenceStats(s)) if s.num_clients == 120));
    }
    assert_eq!(sample(&node.metrics().await, "switchyard_slow_consumer_disconnects_total", ""), 0.0);
}

#[tokio::test]
async fn a_stream_that_recovers_too_much_is_told_so_and_stays() {
    let node = TestNode::start(config()).await;
    publish(&node, "chat:streamed", 20, 2000).await;
    let probe = client(&node, Encoding::Json).await;
    let epoch = probe.history("chat:streamed", None, 1).await.unwrap().epoch;
    let mut stream = SseStream::open(node.addr, &format!("recover={epoch}:0:chat:streamed")).await.unwrap();
    assert_eq!(stream.status, 200);
    let sub = within("the sub push", async {
        loop {
            let frame = stream.next_frame().await.expect("the stream stays");
            if frame.get("sub").is_some() {
                return frame;
            }
        }
    })
    .await;
    assert_eq!(sub["sub"]["channel"], "chat:streamed");
    assert_eq!(sub["sub"]["recovered"], false, "{sub}");
    // Nothing was replayed, and the stream gets what comes next.
    probe.publish("chat:streamed", "\"next\"").await.unwrap();
    let next = within("the next publication", stream.next_frame()).await.unwrap();
    assert_eq!(next["pub"]["data"], "next", "{next}");
    assert_eq!(sample(&node.metrics().await, "switchyard_slow_consumer_disconnects_total", ""), 0.0);
}

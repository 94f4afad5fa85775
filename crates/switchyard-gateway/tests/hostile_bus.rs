//! One message on the bus cannot silence a channel: raw Envelopes published
//! on a history channel's pub/sub name with a made-up position (an offset
//! past the stream's top, behind it, a foreign epoch, none) are checked
//! against the stream, dropped and counted where the stream does not hold
//! them, and never hold back the real publications, on a single Redis and
//! on a Redis Cluster.

use prost::Message as _;
use std::time::Duration;
use switchyard_client::{Client, Encoding, Event, Options};
use switchyard_core::config::Config;
use switchyard_proto::v1::Envelope;
use switchyard_testkit::http::sample;
use switchyard_testkit::{RedisCluster, RedisServer, TestNode, test_config, with_history, within};

fn config(redis_url: Option<String>, cluster: Vec<String>) -> Config {
    let mut config = with_history(test_config(), "chat", 100);
    config.broker.redis_url = redis_url;
    config.broker.redis_cluster = cluster;
    config.broker.heartbeat_interval = Duration::from_millis(200);
    config
}

/// Reads publications until one with `offset` came; returns every offset
/// and payload seen on the way.
async fn until_offset(subscriber: &mut Client, offset: u64) -> Vec<(u64, String)> {
    within(&format!("offset {offset}"), async {
        let mut seen = Vec::new();
        loop {
            match subscriber.next_event().await {
                Some(Event::Publication(p)) => {
                    let at = p.offset.unwrap_or(0);
                    seen.push((at, String::from_utf8_lossy(&p.data).into_owned()));
                    if at == offset {
                        return seen;
                    }
                }
                Some(Event::Closed(close)) => panic!("closed: {close:?}"),
                Some(_) => {}
                None => panic!("the connection ended"),
            }
        }
    })
    .await
}

/// The forgeries, published raw (`publish` sends bytes on the channel's
/// pub/sub name), between real publications; every real one arrives, once,
/// in order, and nothing forged does.
async fn forgeries_are_dropped<F, Fut>(node: &TestNode, channel: &str, publish: F)
where
    F: Fn(String, Vec<u8>) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let publisher = Client::connect(&node.ws_url(), Options::new(Encoding::Json)).await.unwrap();
    let mut subscriber = Client::connect(&node.ws_url(), Options::new(Encoding::Json)).await.unwrap();
    subscriber.subscribe(channel).await.unwrap();
    let first = publisher.publish(channel, "\"real 1\"").await.unwrap();
    let epoch = first.epoch.clone().unwrap();
    assert_eq!(until_offset(&mut subscriber, 1).await, [(1, "\"real 1\"".to_owned())]);
    let forged = |epoch: &str, offset: u64, label: &str| {
        Envelope {
            channel: channel.to_owned(),
            data: format!("\"forged {label}\"").into(),
            epoch: epoch.to_owned(),
            offset,
            published_at_us: 1,
            ..Default::default()
        }
        .encode_to_vec()
    };
    let mut expected = vec![(1, "\"real 1\"".to_owned())];
    let mut next = 2;
    for (label, bytes) in [
        ("ahead", forged(&epoch, 100, "ahead")),
        ("far ahead", forged(&epoch, 1_000_000, "far ahead")),
        ("behind", forged(&epoch, 1, "behind")),
        ("foreign epoch", forged("f0reign", 1, "foreign epoch")),
        ("foreign epoch ahead", forged("f0reign", 50, "foreign epoch ahead")),
    ] {
        publish(channel.to_owned(), bytes).await;
        // The next twenty real publications all arrive, in order.
        for _ in 0..20 {
            let data = format!("\"real {next}\"");
            assert_eq!(publisher.publish(channel, data.clone()).await.unwrap().offset, Some(next), "after {label}");
            expected.push((next, data));
            next += 1;
        }
    }
    let mut seen = vec![(1, "\"real 1\"".to_owned())];
    seen.extend(until_offset(&mut subscriber, next - 1).await);
    assert_eq!(seen, expected, "every real publication, once, in order, and nothing forged");
    // The forgeries past the stream or in another epoch were counted.
    let metrics = node.metrics().await;
    assert!(sample(&metrics, "switchyard_broker_malformed_total", "") >= 3.0, "counted");
}

#[tokio::test]
async fn forged_positions_cannot_silence_a_channel_on_one_redis() {
    let redis = RedisServer::start().await;
    let node = TestNode::start(config(Some(redis.url()), Vec::new())).await;
    forgeries_are_dropped(&node, "chat:forged", |channel, bytes| {
        let redis = &redis;
        async move {
            redis.cli_with_stdin(&["PUBLISH", &format!("switchyard:{{{channel}}}")], &bytes).await;
        }
    })
    .await;
    // A raw Envelope without an offset is delivered live, as documented,
    // and holds nothing back either.
    let publisher = Client::connect(&node.ws_url(), Options::new(Encoding::Json)).await.unwrap();
    let mut subscriber = Client::connect(&node.ws_url(), Options::new(Encoding::Json)).await.unwrap();
    subscriber.subscribe("chat:raw").await.unwrap();
    let raw = Envelope { channel: "chat:raw".into(), data: "\"raw\"".into(), ..Default::default() };
    redis.cli_with_stdin(&["PUBLISH", "switchyard:{chat:raw}"], &raw.encode_to_vec()).await;
    publisher.publish("chat:raw", "\"real\"").await.unwrap();
    let seen = until_offset(&mut subscriber, 1).await;
    assert_eq!(seen, [(0, "\"raw\"".to_owned()), (1, "\"real\"".to_owned())]);
}

#[tokio::test]
async fn forged_positions_cannot_silence_a_channel_on_a_redis_cluster() {
    let cluster = RedisCluster::start().await;
    let node = TestNode::start(config(None, cluster.urls())).await;
    forgeries_are_dropped(&node, "chat:sharded", |channel, bytes| {
        let cluster = &cluster;
        async move {
            let key = format!("switchyard:{{{channel}}}");
            let owner = cluster.owner_of(cluster.slot_of(&key).await).await;
            cluster.nodes[owner].cli_with_stdin(&["SPUBLISH", &key], &bytes).await;
        }
    })
    .await;
}

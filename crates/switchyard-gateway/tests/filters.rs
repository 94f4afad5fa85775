//! Tags and filters on real nodes over a real Redis: publications tagged by
//! a client, by `POST /api/publish` and by `FCALL switchyard_publish`
//! reach only the subscribers whose filter passes them, with their tags;
//! malformed filters and tags are refused with 107; and a filtered
//! subscription that reconnects recovers exactly the matching publications
//! it missed, with no gap reported.

use std::collections::HashMap;
use std::time::Duration;
use switchyard_client::v1::{Filter, PublishRequest, SubscribeRequest};
use switchyard_client::{Client, Encoding, Options, Session, SessionEvent, SessionOptions, SubscribeOptions};
use switchyard_core::config::Config;
use switchyard_testkit::http::{api, sample};
use switchyard_testkit::{RedisServer, TestNode, test_config, with_history, within};

fn config(redis: &RedisServer) -> Config {
    let mut config = with_history(test_config(), "prices", 1000);
    config.broker.redis_url = Some(redis.url());
    config.api.key = Some("k".into());
    config
}

fn leaf(key: &str, cmp: &str, val: &str) -> Filter {
    Filter { key: key.into(), cmp: cmp.into(), val: val.into(), ..Default::default() }
}

fn tags(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn filtered(channel: &str, filter: Filter) -> SubscribeRequest {
    SubscribeRequest { channel: channel.into(), filter: Some(filter), ..Default::default() }
}

#[tokio::test]
async fn only_matching_publications_arrive_with_their_tags() {
    let redis = RedisServer::start().await;
    let a = TestNode::start(config(&redis)).await;
    let b = TestNode::start(config(&redis)).await;
    let btc_or_big = Filter {
        op: "or".into(),
        nodes: vec![
            Filter { key: "ticker".into(), cmp: "in".into(), vals: vec!["BTC".into()], ..Default::default() },
            leaf("size", "gte", "100"),
        ],
        ..Default::default()
    };
    let mut subscribers = Vec::new();
    for encoding in [Encoding::Json, Encoding::Protobuf] {
        let client = Client::connect(&b.ws_url(), Options::new(encoding)).await.unwrap();
        client.subscribe_with(filtered("prices:spot", btc_or_big.clone())).await.unwrap();
        subscribers.push(client);
    }
    let mut everything = Client::connect(&b.ws_url(), Options::new(Encoding::Json)).await.unwrap();
    everything.subscribe("prices:spot").await.unwrap();

    for bad in [
        leaf("ticker", "like", "B%"),
        leaf("size", "gt", "many"),
        Filter { op: "not".into(), ..Default::default() },
        Filter { key: "ticker".into(), cmp: "in".into(), val: "BTC".into(), ..Default::default() },
    ] {
        let refused = everything.subscribe_with(filtered("prices:other", bad.clone())).await;
        assert_eq!(refused.unwrap_err().code(), Some(107), "{bad:?}");
    }

    // Three ways in: a client's publish, the HTTP API, the Redis function.
    let publisher = Client::connect(&a.ws_url(), Options::new(Encoding::Json)).await.unwrap();
    let publish = |data: &str, pairs: &[(&str, &str)]| PublishRequest {
        channel: "prices:spot".into(),
        data: data.to_owned().into(),
        tags: tags(pairs),
        ..Default::default()
    };
    publisher.publish_with(publish("1", &[("ticker", "BTC")])).await.unwrap();
    publisher.publish_with(publish("2", &[("ticker", "ETH"), ("size", "5")])).await.unwrap();
    let too_many: Vec<(String, String)> = (0..33).map(|i| (format!("k{i}"), "v".to_owned())).collect();
    let too_many: Vec<(&str, &str)> = too_many.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(publisher.publish_with(publish("0", &too_many)).await.unwrap_err().code(), Some(107));
    let body = serde_json::json!({"channel": "prices:spot", "data": 3, "tags": {"ticker": "ETH", "size": "250"}});
    assert_eq!(api(a.addr, "k", "/api/publish", body).await.0, 200);
    let fcall = redis.cli(&["FCALL", "switchyard_publish", "1", "prices:spot", "4", "", r#"{"ticker":"SOL"}"#]).await;
    assert!(fcall.ends_with("4\n"), "{fcall}");
    let fcall = redis.cli(&["FCALL", "switchyard_publish", "1", "prices:spot", "5", "", r#"{"ticker":"BTC"}"#]).await;
    assert!(fcall.ends_with("5\n"), "{fcall}");
    let bad = redis.cli(&["FCALL", "switchyard_publish", "1", "prices:spot", "6", "", r#"{"ticker":7}"#]).await;
    assert!(bad.contains("ERR usage"), "{bad}");

    let mut all = Vec::new();
    within("every publication", async {
        while all.len() < 5 {
            all.push(everything.next_publication().await.unwrap());
        }
    })
    .await;
    assert_eq!(all[2].tags, tags(&[("ticker", "ETH"), ("size", "250")]));
    assert_eq!(all[3].tags, tags(&[("ticker", "SOL")]));
    for subscriber in &mut subscribers {
        let mut got = Vec::new();
        within("the matching publications", async {
            while got.len() < 3 {
                got.push(subscriber.next_publication().await.unwrap());
            }
        })
        .await;
        let data: Vec<&[u8]> = got.iter().map(|p| &p.data[..]).collect();
        assert_eq!(data, [&b"1"[..], b"3", b"5"]);
        assert_eq!(got.iter().map(|p| p.offset.unwrap()).collect::<Vec<_>>(), [1, 3, 5]);
        assert_eq!(got[0].tags, tags(&[("ticker", "BTC")]));
    }
}

/// Publishes `n` on `prices:book`, every third tagged BTC, the rest ETH.
async fn publish_tagged(redis: &RedisServer, n: u64) {
    let ticker = if n.is_multiple_of(3) { "BTC" } else { "ETH" };
    let (data, tags) = (n.to_string(), format!(r#"{{"ticker":"{ticker}"}}"#));
    redis.cli(&["FCALL", "switchyard_publish", "1", "prices:book", &data, "", &tags]).await;
}

#[tokio::test]
async fn a_filtered_subscription_recovers_exactly_the_matching_publications() {
    let redis = RedisServer::start().await;
    let first = TestNode::start(config(&redis)).await;
    let second = TestNode::start(config(&redis)).await;
    let mut options = SessionOptions::new(Options::new(Encoding::Json));
    options.min_reconnect_delay = Duration::from_millis(50);
    options.max_reconnect_delay = Duration::from_millis(200);
    let mut session = Session::start(vec![first.ws_url(), second.ws_url()], options);
    session.connected().await.unwrap();
    let only_btc = SubscribeOptions { filter: Some(leaf("ticker", "eq", "BTC")), ..Default::default() };
    session.subscribe_with("prices:book", only_btc).await.unwrap();
    for n in 1..=30 {
        publish_tagged(&redis, n).await;
    }
    // The session's node goes away; what is published meanwhile is
    // recovered on the other one, filtered as it was subscribed.
    first.stop().await;
    for n in 31..=60 {
        publish_tagged(&redis, n).await;
    }
    let mut offsets = Vec::new();
    within("every matching publication", async {
        while offsets.last() != Some(&60) {
            match session.next_event().await.unwrap() {
                SessionEvent::Publication(p) => {
                    assert_eq!(p.tags["ticker"], "BTC");
                    offsets.push(p.offset.unwrap());
                }
                SessionEvent::Gap(gap) => panic!("no gap for what the filter left out: {gap:?}"),
                _ => {}
            }
        }
    })
    .await;
    assert_eq!(offsets, (1..=60).filter(|n| n % 3 == 0).collect::<Vec<u64>>());
    // It came back by resuming its saved session, filter and all.
    let metrics = second.metrics().await;
    assert_eq!(sample(&metrics, "switchyard_session_resumes_total", r#"outcome="resumed""#), 1.0, "{metrics}");
    session.close().await;
}

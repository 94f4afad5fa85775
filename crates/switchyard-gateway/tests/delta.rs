//! Delta compression on real nodes over a real Redis: a subscriber that
//! asks for Fossil deltas gets one full publication, then deltas that
//! rebuild every document exactly (both encodings, across nodes); one that
//! joins mid-stream starts full; a namespace without `delta` grants none;
//! and a delta that does not apply (changed on the way) never reaches the
//! application: the Rust session subscribes again with recovery.

use bytes::Bytes;
use std::time::Duration;
use switchyard_client::v1::{Publication, SubscribeRequest};
use switchyard_client::{Client, Encoding, Options, Session, SessionEvent, SessionOptions, SubscribeOptions};
use switchyard_core::config::{Config, NamespaceConfig};
use switchyard_proto::fossil;
use switchyard_testkit::fault::{FaultProxy, Path};
use switchyard_testkit::http::sample;
use switchyard_testkit::{RedisServer, TestNode, test_config, within};

fn config(redis: Option<&RedisServer>) -> Config {
    let mut config = test_config();
    config.broker.redis_url = redis.map(RedisServer::url);
    let state =
        NamespaceConfig { delta: true, history_size: 100, history_ttl: Duration::from_secs(600), ..Default::default() };
    config.namespaces.insert("state".into(), state);
    config.namespaces.insert("plain".into(), NamespaceConfig::default());
    config
}

/// A 2 KiB document of which one small part changes with `n`.
fn document(n: u32) -> String {
    let rows: Vec<String> = (0..24)
        .map(|i| format!(r#"{{"id":{i},"name":"instrument {i}","bid":{},"ask":{}}}"#, 100 + i, 101 + i))
        .collect();
    format!(r#"{{"seq":{n},"book":[{}],"status":"open {n}"}}"#, rows.join(","))
}

fn ask_delta(channel: &str) -> SubscribeRequest {
    SubscribeRequest { channel: channel.into(), delta: "fossil".into(), ..Default::default() }
}

/// Rebuilds each publication's data from the previous one.
fn rebuild(publications: &[Publication]) -> Vec<Bytes> {
    let mut previous = Bytes::new();
    publications
        .iter()
        .map(|p| {
            let data = match p.delta {
                true => Bytes::from(fossil::apply(&previous, &p.data, 1 << 20).expect("the delta applies")),
                false => p.data.clone(),
            };
            previous = data.clone();
            data
        })
        .collect()
}

async fn take(client: &mut Client, count: usize) -> Vec<Publication> {
    let mut got = Vec::new();
    within("the publications", async {
        while got.len() < count {
            got.push(client.next_publication().await.unwrap());
        }
    })
    .await;
    got
}

#[tokio::test]
async fn deltas_cross_nodes_and_rebuild_every_document() {
    let redis = RedisServer::start().await;
    let a = TestNode::start(config(Some(&redis))).await;
    let b = TestNode::start(config(Some(&redis))).await;
    let publisher = Client::connect(&a.ws_url(), Options::new(Encoding::Json)).await.unwrap();
    let mut subscribers = Vec::new();
    for encoding in [Encoding::Json, Encoding::Protobuf] {
        let client = Client::connect(&b.ws_url(), Options::new(encoding)).await.unwrap();
        let reply = client.subscribe_with(ask_delta("state:game")).await.unwrap();
        assert_eq!(reply.delta, Some(true), "granted in a namespace with delta");
        subscribers.push(client);
    }
    // Asked where the namespace has no delta: not granted, all full.
    let mut plain = Client::connect(&b.ws_url(), Options::new(Encoding::Json)).await.unwrap();
    assert_eq!(plain.subscribe_with(ask_delta("plain:game")).await.unwrap().delta, None);
    let refused = plain.subscribe_with(SubscribeRequest { delta: "zstd".into(), ..ask_delta("plain:other") }).await;
    assert_eq!(refused.unwrap_err().code(), Some(107));
    // With a filter too: deltas against what the filter passed.
    let filter = switchyard_client::v1::Filter { key: "k".into(), cmp: "ex".into(), ..Default::default() };
    let filtered = SubscribeRequest { filter: Some(filter), ..ask_delta("state:filtered") };
    assert_eq!(plain.subscribe_with(filtered).await.unwrap().delta, Some(true));

    for n in 0..3 {
        publisher.publish("state:game", document(n)).await.unwrap();
        publisher.publish("plain:game", document(n)).await.unwrap();
    }
    let mut late = Client::connect(&b.ws_url(), Options::new(Encoding::Json)).await.unwrap();
    late.subscribe_with(ask_delta("state:game")).await.unwrap();
    for n in 3..6 {
        publisher.publish("state:game", document(n)).await.unwrap();
    }

    let expected: Vec<Bytes> = (0..6).map(|n| Bytes::from(document(n))).collect();
    for subscriber in &mut subscribers {
        let got = take(subscriber, 6).await;
        let kinds: Vec<bool> = got.iter().map(|p| p.delta).collect();
        assert_eq!(kinds, [false, true, true, true, true, true]);
        assert_eq!(rebuild(&got), expected);
        assert!(got[1].data.len() * 10 < got[0].data.len(), "{} against {}", got[1].data.len(), got[0].data.len());
    }
    let got = take(&mut late, 3).await;
    assert_eq!(got.iter().map(|p| p.delta).collect::<Vec<_>>(), [false, true, true], "a late subscriber starts full");
    assert_eq!(rebuild(&got), expected[3..]);
    let got = take(&mut plain, 3).await;
    assert!(got.iter().all(|p| !p.delta));
}

#[tokio::test]
async fn a_delta_that_does_not_apply_is_replaced_by_recovery() {
    let node = TestNode::start(config(None)).await;
    let proxy = FaultProxy::start(node.addr).await;
    // The delta of offset 7 loses its final `;` on the way: it no longer
    // applies, and the session must not hand the application anything made
    // of it.
    proxy.set(Path::Tamper { from: br#";","offset":7,"#, to: br#":","offset":7,"# });
    let mut options = SessionOptions::new(Options::new(Encoding::Json));
    options.min_reconnect_delay = Duration::from_millis(50);
    let mut session = Session::start(vec![format!("ws://{}/ws", proxy.addr)], options);
    session.connected().await.unwrap();
    let delta = SubscribeOptions { delta: true, ..Default::default() };
    session.subscribe_with("state:doc", delta).await.unwrap();
    let publisher = Client::connect(&node.ws_url(), Options::new(Encoding::Json)).await.unwrap();
    for n in 1..=10 {
        publisher.publish("state:doc", document(n)).await.unwrap();
    }
    let mut seen = Vec::new();
    within("ten documents", async {
        while seen.len() < 10 {
            match session.next_event().await.unwrap() {
                SessionEvent::Publication(p) => seen.push((p.offset, p.delta, p.data)),
                SessionEvent::Gap(gap) => panic!("no gap: {gap:?}"),
                _ => {}
            }
        }
    })
    .await;
    let expected: Vec<_> = (1..=10).map(|n| (Some(u64::from(n)), false, Bytes::from(document(n)))).collect();
    assert_eq!(seen, expected);
    let metrics = node.metrics().await;
    assert_eq!(sample(&metrics, "switchyard_recoveries_total", r#"outcome="recovered""#), 1.0, "{metrics}");
    session.close().await;
}

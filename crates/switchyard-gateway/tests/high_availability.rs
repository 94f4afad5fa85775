//! Redis high availability, with real processes: a Sentinel failover and a
//! Redis Cluster promotion under a steady flow on a history channel, each
//! ending in a consistent history for every client; a history that went
//! back in time (as a failover that lost its tail leaves it) moving the
//! channel to a new epoch; and one channel's slow repair not holding back
//! another channel.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use switchyard_client::v1::Publication;
use switchyard_client::{Client, ClientError, Encoding, Options};
use switchyard_core::config::Config;
use switchyard_testkit::sentinel::{MASTER, SentinelGroup};
use switchyard_testkit::{RedisCluster, RedisServer, TestNode, test_config, with_history, within};

const CHANNEL: &str = "chat:flow";

fn config() -> Config {
    with_history(test_config(), "chat", 10_000)
}

async fn client(node: &TestNode) -> Client {
    Client::connect(&node.ws_url(), Options::new(Encoding::Json)).await.unwrap()
}

/// Publishes 1, 2, 3, ... on [`CHANNEL`] from a client of `node` until
/// stopped, through refusals (108 while Redis fails over).
struct Flow {
    stop: Arc<AtomicBool>,
    published: Arc<AtomicU64>,
    refused: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<u64>,
}

impl Flow {
    async fn start(node: &TestNode) -> Flow {
        let publisher = client(node).await;
        let (stop, published, refused) =
            (Arc::<AtomicBool>::default(), Arc::<AtomicU64>::default(), Arc::<AtomicU64>::default());
        let (s, p, r) = (Arc::clone(&stop), Arc::clone(&published), Arc::clone(&refused));
        let task = tokio::spawn(async move {
            let mut n = 0;
            while !s.load(Ordering::Relaxed) {
                match publisher.publish(CHANNEL, (n + 1).to_string()).await {
                    Ok(_) => {
                        n += 1;
                        p.store(n, Ordering::Relaxed);
                    }
                    Err(ClientError::Server(e)) if e.code == 108 || e.code == 100 => {
                        r.fetch_add(1, Ordering::Relaxed);
                        // Pacing a retry, not waiting for an event.
                        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                    }
                    Err(e) => panic!("publish failed: {e}"),
                }
            }
            n
        });
        Flow { stop, published, refused, task }
    }

    async fn until_published(&self, n: u64) {
        within(&format!("{n} publications"), async {
            while self.published.load(Ordering::Relaxed) < n {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await; // polling interval
            }
        })
        .await;
    }

    /// Stops; the last number published.
    async fn stop(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        within("the publisher to stop", self.task).await.unwrap()
    }
}

/// Two nodes on `config`, a subscriber of [`CHANNEL`] on each, and a flow
/// published through the first, 100 publications in.
struct Flowing {
    a: TestNode,
    b: TestNode,
    on_a: Client,
    on_b: Client,
    flow: Flow,
}

async fn flowing(config: Config) -> Flowing {
    let (a, b) = (TestNode::start(config.clone()).await, TestNode::start(config).await);
    let (on_a, on_b) = (client(&a).await, client(&b).await);
    on_a.subscribe(CHANNEL).await.unwrap();
    on_b.subscribe(CHANNEL).await.unwrap();
    let flow = Flow::start(&a).await;
    flow.until_published(100).await;
    Flowing { a, b, on_a, on_b, flow }
}

/// What a subscriber received, until the publication of `last`.
async fn received_until(subscriber: &mut Client, last: u64) -> Vec<Publication> {
    let mut seen = Vec::new();
    within(&format!("publication {last}"), async {
        loop {
            let p = subscriber.next_publication().await.expect("the connection stays");
            let done = p.data == last.to_string().as_bytes();
            seen.push(p);
            if done {
                return;
            }
        }
    })
    .await;
    seen
}

/// Every offset a client holds is the publication with that offset in the
/// channel's history now, or it was told of a new epoch after it; no
/// offset came twice with different data; within an epoch offsets only
/// rise.
async fn assert_consistent(reader: &Client, received: &[Publication]) {
    let history = reader.history(CHANNEL, None, 10_000).await.unwrap();
    let now: HashMap<u64, &[u8]> = history.publications.iter().map(|p| (p.offset.unwrap_or(0), &p.data[..])).collect();
    let mut seen: HashMap<(String, u64), &[u8]> = HashMap::new();
    let mut last: HashMap<&str, u64> = HashMap::new();
    for (i, p) in received.iter().enumerate() {
        let (epoch, offset) = (p.epoch.clone().unwrap_or_default(), p.offset.unwrap_or(0));
        if let Some(before) = seen.insert((epoch.clone(), offset), &p.data[..]) {
            assert_eq!(before, &p.data[..], "offset {offset} of {epoch} came twice with different data");
        }
        let previous = last.insert(p.epoch.as_deref().unwrap_or(""), offset);
        assert!(previous.is_none_or(|o| o < offset), "offset {offset} of {epoch} after {previous:?}");
        if epoch == history.epoch {
            assert_eq!(now.get(&offset).copied(), Some(&p.data[..]), "offset {offset} differs from the history");
        } else {
            let told = received[i..].iter().any(|later| later.epoch != p.epoch);
            assert!(told, "{epoch}:{offset} is not in the history and no new epoch followed");
        }
    }
}

#[tokio::test]
async fn a_sentinel_failover_costs_no_connection_and_leaves_a_consistent_history() {
    let mut group = SentinelGroup::start().await;
    let mut config = config();
    config.broker.sentinels = group.sentinel_urls();
    config.broker.sentinel_master = Some(MASTER.into());
    let Flowing { a, b, mut on_a, mut on_b, flow } = flowing(config).await;

    group.primary.kill().await;
    group.wait_for_promotion().await;
    for node in [&a, &b] {
        node.wait_for_sample("switchyard_broker_failovers_total", "", 1.0).await;
    }
    let after = flow.published.load(Ordering::Relaxed) + 100;
    flow.until_published(after).await;
    let refused = flow.refused.load(Ordering::Relaxed);
    let last = flow.stop().await;

    let (seen_a, seen_b) = (received_until(&mut on_a, last).await, received_until(&mut on_b, last).await);
    let reader = client(&b).await;
    assert_consistent(&reader, &seen_a).await;
    assert_consistent(&reader, &seen_b).await;
    // Publishes while no primary answered were refused, not hung; the
    // subscribers' connections stayed (received_until fails on a close).
    assert!(refused >= 1, "the failover took a second at least: some publishes were refused");
}

#[tokio::test]
async fn a_cluster_promotion_leaves_a_consistent_history() {
    let mut cluster = RedisCluster::start_with_replicas(1).await;
    let mut config = config();
    config.broker.redis_cluster = cluster.urls();
    let Flowing { a: _a, b, mut on_a, mut on_b, flow } = flowing(config).await;

    let slot = cluster.slot_of(CHANNEL).await;
    let owner = cluster.owner_of(slot).await;
    cluster.nodes[owner].kill().await;
    within("a replica to take over the slot", async {
        while cluster.owner_of(slot).await == owner {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await; // polling interval
        }
    })
    .await;
    let after = flow.published.load(Ordering::Relaxed) + 100;
    flow.until_published(after).await;
    let last = flow.stop().await;

    let (seen_a, seen_b) = (received_until(&mut on_a, last).await, received_until(&mut on_b, last).await);
    let reader = client(&b).await;
    assert_consistent(&reader, &seen_a).await;
    assert_consistent(&reader, &seen_b).await;
}

#[tokio::test]
async fn a_history_that_went_back_moves_the_channel_to_a_new_epoch() {
    let redis = RedisServer::start().await;
    let mut config = config();
    config.broker.redis_url = Some(redis.url());
    let (a, b) = (TestNode::start(config.clone()).await, TestNode::start(config).await);
    let (mut on_a, mut on_b) = (client(&a).await, client(&b).await);
    on_a.subscribe(CHANNEL).await.unwrap();
    on_b.subscribe(CHANNEL).await.unwrap();
    let publisher = client(&a).await;
    for n in 1..=10 {
        publisher.publish(CHANNEL, n.to_string()).await.unwrap();
    }
    let seen_a = received_until(&mut on_a, 10).await;
    received_until(&mut on_b, 10).await;
    let epoch = seen_a[0].epoch.clone().unwrap();

    // What a promoted replica that missed the last three would hold.
    let (meta, stream) = (format!("switchyard:{{{CHANNEL}}}:meta"), format!("switchyard:{{{CHANNEL}}}:stream"));
    redis.cli(&["XDEL", &stream, "8-0", "9-0", "10-0"]).await;
    redis.cli(&["XSETID", &stream, "7-0"]).await;
    redis.cli(&["HSET", &meta, "offset", "7"]).await;

    // The next publish reuses offset 8 under the same epoch...
    let reused = publisher.publish(CHANNEL, "\"new\"").await.unwrap();
    assert_eq!((reused.epoch.as_deref(), reused.offset), (Some(epoch.as_str()), Some(8)));
    // ...which no subscriber takes for their 8: the channel moves to a new
    // epoch, whose first publication is that one.
    for subscriber in [&mut on_a, &mut on_b] {
        let next = within("the publication in the new epoch", subscriber.next_publication()).await.unwrap();
        assert_eq!(&next.data[..], b"\"new\"");
        assert_ne!(next.epoch.as_deref(), Some(epoch.as_str()), "a new epoch");
        assert_eq!(next.offset, Some(1));
    }
    let then = publisher.publish(CHANNEL, "\"after\"").await.unwrap();
    assert_eq!(then.offset, Some(2));
    for subscriber in [&mut on_a, &mut on_b] {
        let next = within("the next publication", subscriber.next_publication()).await.unwrap();
        assert_eq!((&next.data[..], next.offset), (&b"\"after\""[..], Some(2)));
    }
    for node in [&a, &b] {
        node.wait_for_sample("switchyard_broker_regressions_total", "", 1.0).await;
    }
    // A client that held offset 10 of the old epoch is told it cannot recover.
    let late = client(&b).await;
    let request = switchyard_client::v1::SubscribeRequest {
        channel: CHANNEL.into(),
        recover: true,
        epoch,
        offset: 10,
        ..Default::default()
    };
    assert_eq!(late.subscribe_with(request).await.unwrap().recovered, Some(false));
}

#[tokio::test]
async fn a_channel_under_repair_does_not_hold_back_another() {
    let cluster = RedisCluster::start().await;
    // Two channels on different masters.
    let slow = "chat:slow";
    let slow_owner = cluster.owner_of(cluster.slot_of(slow).await).await;
    let mut fast = String::new();
    for n in 0.. {
        fast = format!("chat:fast{n}");
        if cluster.owner_of(cluster.slot_of(&fast).await).await != slow_owner {
            break;
        }
    }
    let mut config = config();
    config.broker.redis_cluster = cluster.urls();
    let node = TestNode::start(config).await;
    let mut subscriber = client(&node).await;
    subscriber.subscribe(slow).await.unwrap();
    subscriber.subscribe(&fast).await.unwrap();
    let publisher = client(&node).await;
    publisher.publish(slow, "\"s1\"").await.unwrap();
    publisher.publish(&fast, "\"f1\"").await.unwrap();
    let first: Vec<Vec<u8>> = within("the first two", async {
        let mut v = Vec::new();
        while v.len() < 2 {
            v.push(subscriber.next_publication().await.unwrap().data.to_vec());
        }
        v
    })
    .await;
    assert_eq!(first.len(), 2);

    // Offset 2 of the slow channel reaches its stream but not pub/sub; offset
    // 3 shows the gap, and its master pauses writes at once, so the repair's
    // read of the stream waits there.
    let master = &cluster.nodes[slow_owner];
    let epoch = publisher.history(slow, None, 1).await.unwrap().epoch;
    let lost = switchyard_proto::v1::Envelope {
        channel: slow.into(),
        data: "\"s2\"".into(),
        epoch,
        offset: 2,
        ..Default::default()
    };
    use prost::Message as _;
    master.cli(&["HINCRBY", &format!("switchyard:{{{slow}}}:meta"), "offset", "1"]).await;
    master.cli_with_stdin(&["XADD", &format!("switchyard:{{{slow}}}:stream"), "2-0", "e"], &lost.encode_to_vec()).await;
    let answer = master
        .script(&format!("MULTI\nFCALL switchyard_publish 1 {slow} '\"s3\"'\nCLIENT PAUSE 60000 WRITE\nEXEC\n"))
        .await;
    assert!(answer.contains("OK"), "{answer}");

    // The other channel flows meanwhile.
    for n in 2..=5 {
        publisher.publish(&fast, format!("\"f{n}\"")).await.unwrap();
    }
    let mut order = Vec::new();
    within("the fast channel's publications", async {
        while order.len() < 4 {
            let p = subscriber.next_publication().await.unwrap();
            order.push(String::from_utf8(p.data.to_vec()).unwrap());
        }
    })
    .await;
    assert_eq!(order, ["\"f2\"", "\"f3\"", "\"f4\"", "\"f5\""], "nothing of the slow channel before its repair");
    node.wait_for_sample("switchyard_broker_repairs_queued", "", 1.0).await;

    // Once the master takes writes again, the repair fills the gap in order.
    master.cli(&["CLIENT", "UNPAUSE"]).await;
    let rest: Vec<String> = within("the slow channel's publications", async {
        let mut v = Vec::new();
        while v.len() < 2 {
            v.push(String::from_utf8(subscriber.next_publication().await.unwrap().data.to_vec()).unwrap());
        }
        v
    })
    .await;
    assert_eq!(rest, ["\"s2\"", "\"s3\""]);
}

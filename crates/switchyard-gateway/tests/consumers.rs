//! Consumers of the application's queues, with real processes: two nodes
//! share a Redis stream's consumer group; the node that holds it is
//! SIGKILLed in the middle of the flow, and every entry still reaches its
//! channel exactly once, in the stream's order; an entry published and
//! left unacknowledged by a reader that died publishes nothing the second
//! time; poison entries are set aside while the rest flows.

use std::path::Path;
use std::time::Duration;
use switchyard_client::{Client, Encoding, Options};
use switchyard_testkit::http::sample;
use switchyard_testkit::scratch::ScratchDir;
use switchyard_testkit::{GatewayProcess, RedisServer, within};

const STREAM: &str = "switchyard:publish";

async fn node(redis: &RedisServer, config: &Path) -> GatewayProcess {
    let url = redis.url();
    let env = [
        ("SWITCHYARD_REDIS_URL", url.as_str()),
        ("SWITCHYARD_NAMESPACES__ORDERS__HISTORY_SIZE", "10000"),
        ("SWITCHYARD_NAMESPACES__ORDERS__HISTORY_TTL", "10m"),
    ];
    let config = config.to_str().unwrap();
    GatewayProcess::start(Path::new(env!("CARGO_BIN_EXE_switchyard")), &["--config", config], &env).await
}

/// XADDs entries `from..=to`, each to `orders:a` or `orders:b` by parity,
/// in one redis-cli call.
async fn add(redis: &RedisServer, from: u64, to: u64) {
    let lines: String = (from..=to)
        .map(|n| format!("XADD {STREAM} * channel orders:{} data {n}\n", if n % 2 == 0 { "a" } else { "b" }))
        .collect();
    redis.script(&lines).await;
}

/// The data of a channel's publications, oldest first, from its history.
async fn history(client: &Client, channel: &str) -> Vec<u64> {
    let history = client.history(channel, None, 10_000).await.unwrap();
    history.publications.iter().map(|p| std::str::from_utf8(&p.data).unwrap().parse().unwrap()).collect()
}

async fn holds(node: &GatewayProcess) -> bool {
    sample(&node.metrics().await, "switchyard_consumer_partitions_held", r#"consumer="events""#) > 0.0
}

#[tokio::test]
async fn a_redis_stream_reaches_its_channels_once_and_in_order_through_a_node_kill() {
    let redis = RedisServer::start().await;
    let scratch = ScratchDir::new("consumers");
    let config = scratch.path().join("switchyard.toml");
    std::fs::write(
        &config,
        "[[consumers]]\nname = \"events\"\nkind = \"redis_stream\"\nclaim_after = \"1s\"\nbatch = 20\n",
    )
    .unwrap();

    // A node without consumers loads the function library.
    let empty = scratch.path().join("empty.toml");
    std::fs::write(&empty, "").unwrap();
    node(&redis, &empty).await.kill();
    // A reader that died: entry 0 was published (with the key the
    // consumer gives it) and never acknowledged.
    redis.cli(&["XGROUP", "CREATE", STREAM, "switchyard", "0", "MKSTREAM"]).await;
    let id = redis.cli(&["XADD", STREAM, "*", "channel", "orders:a", "data", "0"]).await;
    let id = id.trim();
    redis.cli(&["XREADGROUP", "GROUP", "switchyard", "ghost", "COUNT", "1", "STREAMS", STREAM, ">"]).await;
    let key = format!("events:{id}");
    let reply = redis.cli(&["FCALL", "switchyard_publish", "1", "orders:a", "0", &key]).await;
    assert!(reply.ends_with("\n1\n"), "{reply}");
    // Poison: no channel, tags that are not an object, a namespace that
    // does not exist.
    redis
        .script(&format!(
            "XADD {STREAM} * data 1\nXADD {STREAM} * channel orders:a data x tags [1]\nXADD {STREAM} * channel nope:x data 1\n"
        ))
        .await;

    let mut a = node(&redis, &config).await;
    let mut b = node(&redis, &config).await;
    add(&redis, 1, 200).await;
    let reader = Client::connect(&b.ws_url(), Options::new(Encoding::Json)).await.unwrap();
    within("the first entries", async {
        while history(&reader, "orders:a").await.len() < 20 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    // Kill whichever node holds the stream, in the middle of the flow.
    let (holder, survivor) = match holds(&a).await {
        true => (&mut a, &b),
        false => (&mut b, &a),
    };
    holder.kill();
    add(&redis, 201, 400).await;
    let reader = Client::connect(&survivor.ws_url(), Options::new(Encoding::Json)).await.unwrap();
    let expected_a: Vec<u64> = (0..=400).filter(|n| n % 2 == 0).collect();
    let expected_b: Vec<u64> = (1..=400).filter(|n| n % 2 == 1).collect();
    within("every entry", async {
        while history(&reader, "orders:a").await.len() < expected_a.len()
            || history(&reader, "orders:b").await.len() < expected_b.len()
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert_eq!(history(&reader, "orders:a").await, expected_a, "once each, in order");
    assert_eq!(history(&reader, "orders:b").await, expected_b, "once each, in order");
    assert!(holds(survivor).await, "the survivor took the stream over");
    // Everything acknowledged; the poison set aside with its reason.
    within("every entry acknowledged", async {
        while !redis.cli(&["XPENDING", STREAM, "switchyard"]).await.starts_with("0\n") {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert_eq!(redis.cli(&["XLEN", &format!("{STREAM}:dead")]).await.trim(), "3");
    let dead = redis.cli(&["XRANGE", &format!("{STREAM}:dead"), "-", "+"]).await;
    assert!(dead.contains("no channel field") && dead.contains("tags") && dead.contains("102"), "{dead}");
    // The registry (and so the admin page) shows who holds it.
    within("the survivor's share in the registry", async {
        while !redis.cli(&["HGETALL", "switchyard:{nodes}"]).await.contains(r#""consumers":{"events":{"partitions":1"#)
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    let metrics = survivor.metrics().await;
    assert!(sample(&metrics, "switchyard_consumer_entries_total", r#"consumer="events",outcome="published""#) > 0.0);
}

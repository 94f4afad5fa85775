//! Consumers of the application's queues, with real processes: two nodes
//! share a Redis stream's consumer group, a PostgreSQL outbox's
//! partitions, or a JetStream durable consumer (through a NATS restart); the node that holds them is SIGKILLed in the middle of the
//! flow, and every entry still reaches its channel exactly once, in the
//! source's order; an entry published and left unacknowledged by a reader
//! that died publishes nothing the second time; rows of transactions that
//! rolled back never publish; poison entries are set aside while the rest
//! flows.

use std::path::Path;
use std::time::Duration;
use switchyard_client::{Client, Encoding, Options};
use switchyard_testkit::http::sample;
use switchyard_testkit::nats::NatsServer;
use switchyard_testkit::postgres::PostgresServer;
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

/// Waits until `orders:a` has 20 publications (read on `b`), then SIGKILLs
/// whichever of the two nodes holds the consumer `events`; the survivor.
async fn kill_the_holder<'n>(a: &'n mut GatewayProcess, b: &'n mut GatewayProcess) -> &'n GatewayProcess {
    let reader = Client::connect(&b.ws_url(), Options::new(Encoding::Json)).await.unwrap();
    within("the first entries", async {
        while history(&reader, "orders:a").await.len() < 20 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let (holder, survivor) = match holds(a).await {
        true => (a, b),
        false => (b, a),
    };
    holder.kill();
    survivor
}

/// Waits on `survivor` for entries 0 or 1 to 400 on `orders:a` (even) and
/// `orders:b` (odd), and checks each came once, in order.
async fn every_entry_once_in_order(survivor: &GatewayProcess, first: u64) {
    let reader = Client::connect(&survivor.ws_url(), Options::new(Encoding::Json)).await.unwrap();
    let expected_a: Vec<u64> = (first..=400).filter(|n| n % 2 == 0).collect();
    let expected_b: Vec<u64> = (first..=400).filter(|n| n % 2 == 1).collect();
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
    // Kill whichever node holds the stream, in the middle of the flow.
    let survivor = kill_the_holder(&mut a, &mut b).await;
    add(&redis, 201, 400).await;
    every_entry_once_in_order(survivor, 0).await;
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

/// The outbox table and its notifying trigger, as docs/consumers.md gives them.
const OUTBOX: &str = include_str!("../../../docs/examples/outbox.sql");

const INSERT: &str = "INSERT INTO switchyard_outbox (channel, data, partition) VALUES ($1, $2::text::jsonb, $3)";

/// Transactions `from..to` of one writer, 10 rows each over four channels
/// (two per partition); every seventh rolls back. Adds what committed to
/// `committed`, by channel.
async fn write(db: &mut tokio_postgres::Client, from: i64, to: i64, committed: &mut [Vec<i64>; 4]) {
    for t in from..to {
        let tx = db.transaction().await.unwrap();
        let mut rows = Vec::new();
        for i in 0..10 {
            let n = t * 10 + i;
            let c = (n % 4) as usize;
            let data = format!(r#"{{"n": {n}}}"#);
            tx.execute(INSERT, &[&format!("orders:{c}"), &data, &((c % 2) as i32)]).await.unwrap();
            rows.push((c, n));
        }
        if t % 7 == 6 {
            tx.rollback().await.unwrap();
        } else {
            tx.commit().await.unwrap();
            for (c, n) in rows {
                committed[c].push(n);
            }
        }
    }
}

/// `n` of each publication's data (`{"n": N}`), from the channel's history.
async fn numbers(client: &Client, channel: &str) -> Vec<i64> {
    let history = client.history(channel, None, 10_000).await.unwrap();
    history
        .publications
        .iter()
        .map(|p| serde_json::from_slice::<serde_json::Value>(&p.data).unwrap()["n"].as_i64().unwrap())
        .collect()
}

#[tokio::test]
async fn an_outbox_publishes_committed_rows_once_in_order_through_a_node_kill() {
    let redis = RedisServer::start().await;
    let postgres = PostgresServer::start().await;
    let mut db = postgres.client("app").await;
    db.batch_execute(OUTBOX).await.unwrap();
    let scratch = ScratchDir::new("outbox");
    let config = scratch.path().join("switchyard.toml");
    std::fs::write(
        &config,
        format!(
            "[[consumers]]\nname = \"orders\"\nkind = \"postgres_outbox\"\npostgres_url = \"{}\"\n\
             partitions = 2\nclaim_after = \"1s\"\npoll_interval = \"200ms\"\n",
            postgres.url()
        ),
    )
    .unwrap();
    let mut a = node(&redis, &config).await;
    let mut b = node(&redis, &config).await;

    // One writer, 100 transactions of 10 rows over four channels (two per
    // partition); every seventh transaction rolls back.
    let mut committed: [Vec<i64>; 4] = Default::default();
    write(&mut db, 0, 50, &mut committed).await;
    let reader = Client::connect(&b.ws_url(), Options::new(Encoding::Json)).await.unwrap();
    within("the first rows", async {
        while numbers(&reader, "orders:0").await.len() < 20 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    // A poison row: a namespace that does not exist.
    db.execute(INSERT, &[&"nope:x", &r#"{"n": -1}"#, &0i32]).await.unwrap();
    // Kill a node that holds a partition, in the middle of the flow.
    let held = |m: String| sample(&m, "switchyard_consumer_partitions_held", r#"consumer="orders""#) > 0.0;
    let (victim, survivor) = match held(a.metrics().await) {
        true => (&mut a, &b),
        false => (&mut b, &a),
    };
    victim.kill();
    write(&mut db, 50, 100, &mut committed).await;
    let reader = Client::connect(&survivor.ws_url(), Options::new(Encoding::Json)).await.unwrap();
    within("every committed row", async {
        loop {
            let mut done = true;
            for (c, rows) in committed.iter().enumerate() {
                done &= numbers(&reader, &format!("orders:{c}")).await.len() >= rows.len();
            }
            if done {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    for (c, rows) in committed.iter().enumerate() {
        assert_eq!(&numbers(&reader, &format!("orders:{c}")).await, rows, "orders:{c}: once each, in id order");
    }
    let left: i64 = db.query_one("SELECT count(*) FROM switchyard_outbox", &[]).await.unwrap().get(0);
    assert_eq!(left, 0, "every row published is deleted");
    let dead = db.query_one("SELECT channel, reason FROM switchyard_outbox_dead", &[]).await.unwrap();
    assert_eq!(dead.get::<_, String>(0), "nope:x");
    assert!(dead.get::<_, String>(1).starts_with("102"), "{}", dead.get::<_, String>(1));
    let metrics = survivor.metrics().await;
    assert_eq!(sample(&metrics, "switchyard_consumer_partitions_held", r#"consumer="orders""#), 2.0, "it took both");
}

/// Publishes messages `from..=to` to JetStream: even ones name their
/// channel in the header, odd ones by their subject.
async fn send(js: &async_nats::jetstream::Context, from: u64, to: u64) {
    for n in from..=to {
        let ack = match n % 2 {
            0 => {
                let mut headers = async_nats::HeaderMap::new();
                headers.insert("Switchyard-Channel", "orders:a");
                js.publish_with_headers("events.ignored", headers, n.to_string().into()).await
            }
            _ => js.publish("events.orders:b", n.to_string().into()).await,
        };
        ack.unwrap().await.unwrap();
    }
}

#[tokio::test]
async fn a_jetstream_stream_reaches_its_channels_once_and_in_order_through_a_node_kill_and_a_restart() {
    let redis = RedisServer::start().await;
    let mut nats = NatsServer::start().await;
    let connect = async |url: String| async_nats::jetstream::new(async_nats::connect(url).await.unwrap());
    let js = connect(nats.url()).await;
    js.create_stream(async_nats::jetstream::stream::Config {
        name: "EVENTS".into(),
        subjects: vec!["events.>".into()],
        storage: async_nats::jetstream::stream::StorageType::File,
        ..Default::default()
    })
    .await
    .unwrap();
    let scratch = ScratchDir::new("jetstream");
    let config = scratch.path().join("switchyard.toml");
    let toml = format!(
        "[[consumers]]\nname = \"events\"\nkind = \"nats_jetstream\"\nnats_url = \"{}\"\nstream = \"EVENTS\"\n\
         claim_after = \"1s\"\nbatch = 20\n",
        nats.url()
    );
    std::fs::write(&config, toml).unwrap();
    let mut a = node(&redis, &config).await;
    let mut b = node(&redis, &config).await;
    send(&js, 1, 200).await;
    let survivor = kill_the_holder(&mut a, &mut b).await;
    send(&js, 201, 300).await;
    nats.restart().await;
    let js = connect(nats.url()).await;
    send(&js, 301, 400).await;
    // A poison message: tags that are not an object.
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Switchyard-Tags", "[1]");
    js.publish_with_headers("events.orders:a", headers, "-1".into()).await.unwrap().await.unwrap();
    every_entry_once_in_order(survivor, 1).await;
    within("the poison set aside", async {
        let set_aside = r#"consumer="events",outcome="set_aside""#;
        while sample(&survivor.metrics().await, "switchyard_consumer_entries_total", set_aside) < 1.0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
}

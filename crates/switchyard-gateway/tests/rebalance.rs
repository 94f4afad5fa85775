//! Active rebalancing through a real haproxy (least connections), with
//! real `switchyard` processes (each with metrics of its own): two nodes
//! hold 1,000 sessions on a history channel with a steady flow of
//! publications; a third node starts; the first two shed their excess with
//! 4012, the sessions move and resume, the cluster settles within the
//! tolerance of the mean, nobody misses or repeats an offset, and nobody
//! sheds again once it settled.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use switchyard_client::{Encoding, Options, Session, SessionEvent, SessionOptions};
use switchyard_testkit::haproxy::Haproxy;
use switchyard_testkit::http::sample;
use switchyard_testkit::redis::free_port;
use switchyard_testkit::{GatewayProcess, RedisServer, within};

const CLIENTS: usize = 1000;

/// A node on `redis`, listening on `listen`, rebalancing every 300 ms.
async fn node(redis: &RedisServer, listen: SocketAddr) -> GatewayProcess {
    let url = redis.url();
    let env = [
        ("SWITCHYARD_REDIS_URL", url.as_str()),
        ("SWITCHYARD_NAMESPACES__CHAT__HISTORY_SIZE", "10000"),
        ("SWITCHYARD_NAMESPACES__CHAT__HISTORY_TTL", "10m"),
        ("SWITCHYARD_BROKER__HEARTBEAT_INTERVAL", "200ms"),
        ("SWITCHYARD_REBALANCE__ENABLED", "true"),
        ("SWITCHYARD_REBALANCE__INTERVAL", "300ms"),
        ("SWITCHYARD_REBALANCE__MAX_PER_SECOND", "200"),
    ];
    GatewayProcess::start_on(Path::new(env!("CARGO_BIN_EXE_switchyard")), listen, &[], &env).await
}

/// What `node`'s metrics say of `name` (an unlabelled series).
async fn read(node: &GatewayProcess, name: &str) -> u64 {
    sample(&node.metrics().await, name, "") as u64
}

async fn counts(nodes: &[&GatewayProcess]) -> Vec<usize> {
    let mut counts = Vec::new();
    for node in nodes {
        counts.push(read(node, "switchyard_connections").await as usize);
    }
    counts
}

fn balanced(counts: &[usize]) -> bool {
    let mean = counts.iter().sum::<usize>() as f64 / counts.len() as f64;
    counts.iter().all(|&c| (c as f64 - mean).abs() <= mean * 0.1 + 1.0)
}

#[tokio::test]
async fn a_new_node_gets_its_share_and_nothing_is_lost() {
    let redis = RedisServer::start().await;
    let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
    let a = node(&redis, loopback).await;
    let b = node(&redis, loopback).await;
    // The third node's place in the balancer, down until it starts.
    let c_addr = SocketAddr::from(([127, 0, 0, 1], free_port(None)));
    let proxy = Haproxy::start_with(&[a.addr, b.addr, c_addr], "leastconn").await;

    let logs: Vec<Arc<Mutex<Vec<u64>>>> = (0..CLIENTS).map(|_| Arc::default()).collect();
    let mut sessions = Vec::new();
    for log in &logs {
        let mut options = SessionOptions::new(Options::new(Encoding::Json));
        options.min_reconnect_delay = Duration::from_millis(20);
        options.max_reconnect_delay = Duration::from_millis(200);
        let mut session = Session::start(vec![format!("ws://{}/ws", proxy.addr)], options);
        session.connected().await.unwrap();
        session.subscribe("chat:rebalance").await.unwrap();
        let log = log.clone();
        sessions.push(tokio::spawn(async move {
            while let Some(event) = session.next_event().await {
                if let SessionEvent::Publication(p) = event {
                    log.lock().unwrap().push(p.offset.unwrap_or(0));
                }
            }
        }));
    }
    // A steady flow, as from a backend, until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let published = Arc::new(AtomicU64::new(0));
    let flow = {
        let (url, stop, published) = (redis.url(), stop.clone(), published.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let n = published.load(Ordering::Relaxed) + 1;
                let out = tokio::process::Command::new("redis-cli")
                    .args(["-u", &url, "FCALL", "switchyard_publish", "1", "chat:rebalance", &n.to_string()])
                    .output()
                    .await
                    .unwrap();
                assert!(out.status.success());
                published.store(n, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    assert_eq!(counts(&[&a, &b]).await.iter().sum::<usize>(), CLIENTS);

    let started = std::time::Instant::now();
    let c = node(&redis, c_addr).await;
    let nodes = [&a, &b, &c];
    within("each node to hold the mean ±10 %", async {
        loop {
            let now = counts(&nodes).await;
            if balanced(&now) && now.iter().sum::<usize>() == CLIENTS {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    eprintln!("balanced {:?} after the third node started: {:?}", started.elapsed(), counts(&nodes).await);
    // It settles: a window of four checks on every node with nobody
    // shedding (a loop would never give one), and it stays balanced.
    let shed = async |n: &GatewayProcess| read(n, "switchyard_rebalance_shed_total").await;
    let checks = async |n: &GatewayProcess| read(n, "switchyard_rebalance_checks_total").await;
    within("a quiet window of four checks", async {
        loop {
            let mut then = Vec::new();
            for n in nodes {
                then.push((shed(n).await, checks(n).await));
            }
            for (n, &(_, checked)) in nodes.iter().zip(&then) {
                while checks(n).await < checked + 4 {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
            let mut quiet = true;
            for (n, &(shed_then, _)) in nodes.iter().zip(&then) {
                quiet &= shed(n).await == shed_then;
            }
            if quiet {
                return;
            }
        }
    })
    .await;
    let settled = counts(&nodes).await;
    assert!(balanced(&settled), "{settled:?}");
    assert_eq!(shed(&c).await, 0, "the new node never sheds");
    // From half and half to a third each: a third moves (and a little more,
    // as counts a heartbeat old meet clients on their way); a loop would not stop.
    let total = shed(&a).await + shed(&b).await;
    assert!(total <= (CLIENTS / 3) as u64 + (CLIENTS / 20) as u64, "shed {total} to move {}", CLIENTS / 3);

    // Every session has every offset since it subscribed, once, in order.
    stop.store(true, Ordering::Relaxed);
    flow.await.unwrap();
    let last = published.load(Ordering::Relaxed);
    within("every session to reach the last offset", async {
        while logs.iter().any(|l| l.lock().unwrap().last() != Some(&last)) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    for log in &logs {
        let log = log.lock().unwrap();
        let first = log[0];
        assert_eq!(*log, (first..=last).collect::<Vec<_>>(), "a session missed or repeated an offset");
    }
    for session in sessions {
        session.abort();
    }
}

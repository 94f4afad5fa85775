//! Active rebalancing through a real haproxy (least connections): two
//! nodes hold 1,000 sessions on a history channel with a steady flow of
//! publications; a third node starts; the first two shed their excess with
//! 4012, the sessions move and resume, the cluster settles within the
//! tolerance of the mean, nobody misses or repeats an offset, and nobody
//! sheds again once it settled.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use switchyard_client::{Encoding, Options, Session, SessionEvent, SessionOptions};
use switchyard_core::config::Config;
use switchyard_testkit::haproxy::Haproxy;
use switchyard_testkit::redis::free_port;
use switchyard_testkit::{RedisServer, TestNode, test_config, with_history, within};

const CLIENTS: usize = 1000;

fn config(redis: &RedisServer) -> Config {
    let mut config = with_history(test_config(), "chat", 10_000);
    config.broker.redis_url = Some(redis.url());
    config.broker.heartbeat_interval = Duration::from_millis(200);
    config.rebalance.enabled = true;
    config.rebalance.interval = Duration::from_millis(300);
    config.rebalance.max_per_second = 200;
    config
}

fn balanced(counts: &[usize]) -> bool {
    let mean = counts.iter().sum::<usize>() as f64 / counts.len() as f64;
    counts.iter().all(|&c| (c as f64 - mean).abs() <= mean * 0.1 + 1.0)
}

#[tokio::test]
async fn a_new_node_gets_its_share_and_nothing_is_lost() {
    let redis = RedisServer::start().await;
    let a = TestNode::start(config(&redis)).await;
    let b = TestNode::start(config(&redis)).await;
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
    let (a_before, b_before) = (a.node.connections.len(), b.node.connections.len());
    assert_eq!(a_before + b_before, CLIENTS);

    let started = std::time::Instant::now();
    let mut c_config = config(&redis);
    c_config.listen = c_addr;
    let c = TestNode::start(c_config).await;
    let nodes = [&a, &b, &c];
    let counts = || nodes.iter().map(|n| n.node.connections.len()).collect::<Vec<_>>();
    within("each node to hold the mean ±10 %", async {
        while !(balanced(&counts()) && counts().iter().sum::<usize>() == CLIENTS) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    eprintln!("balanced {:?} after the third node started: {:?}", started.elapsed(), counts());
    // It settles: a window of four checks on every node with nobody
    // shedding (a loop would never give one), and it stays balanced.
    let shed = |n: &TestNode| n.node.rebalance.shed.load(Ordering::Relaxed);
    let checks = |n: &TestNode| n.node.rebalance.checks.load(Ordering::Relaxed);
    within("a quiet window of four checks", async {
        loop {
            let (shed_then, checks_then): (Vec<u64>, Vec<u64>) = nodes.iter().map(|n| (shed(n), checks(n))).unzip();
            while nodes.iter().zip(&checks_then).any(|(n, &c)| checks(n) < c + 4) {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            if nodes.iter().map(|n| shed(n)).collect::<Vec<_>>() == shed_then {
                return;
            }
        }
    })
    .await;
    assert!(balanced(&counts()), "{:?}", counts());
    assert_eq!(shed(&c), 0, "the new node never sheds");
    // From half and half to a third each: a third moves (and a little more,
    // as counts a heartbeat old meet clients on their way); a loop would not stop.
    let total = shed(&a) + shed(&b);
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

//! Nodes dying and nodes restarting, with real `switchyard` processes and a
//! real Redis: clients that come back with their resume token miss nothing
//! on channels with history, and a rolling restart closes nobody abnormally.

use std::path::Path;
use std::sync::{Arc, Mutex};
use switchyard_testkit::follower::{Seen, follow};
use switchyard_testkit::{GatewayProcess, RedisServer, within};

const CHANNEL: &str = "chat:live";

fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_switchyard"))
}

async fn gateway(redis: &RedisServer) -> GatewayProcess {
    let url = redis.url();
    let env = [
        ("SWITCHYARD_REDIS_URL", url.as_str()),
        ("SWITCHYARD_NAMESPACES__CHAT__HISTORY_SIZE", "10000"),
        ("SWITCHYARD_NAMESPACES__CHAT__HISTORY_TTL", "10m"),
        ("SWITCHYARD_SHUTDOWN__DRAIN_PERIOD", "300ms"),
    ];
    GatewayProcess::start(binary(), &[], &env).await
}

/// Publishes `count` publications through Redis, as a backend does.
async fn publish(redis: &RedisServer, from: u64, count: u64) {
    for n in from..from + count {
        let reply = redis.cli(&["FCALL", "switchyard_publish", "1", CHANNEL, &n.to_string()]).await;
        assert!(reply.ends_with(&format!("\n{n}\n")), "offset {n}: {reply}");
    }
}

#[tokio::test]
async fn clients_of_a_killed_node_resume_elsewhere_and_miss_nothing() {
    let redis = RedisServer::start().await;
    let mut doomed = gateway(&redis).await;
    let survivor = gateway(&redis).await;
    let live = Arc::new(Mutex::new(survivor.ws_url()));
    let mut clients = Vec::new();
    let seen: Vec<Arc<Mutex<Seen>>> = (0..4).map(|_| Arc::default()).collect();
    for s in &seen {
        clients.push(tokio::spawn(follow(CHANNEL.into(), doomed.ws_url(), live.clone(), 300, s.clone())));
    }
    // Everyone subscribed before the first publication.
    within("four subscriptions", async {
        while redis.cli(&["PUBSUB", "NUMSUB", "switchyard:{chat:live}"]).await != "switchyard:{chat:live}\n1\n" {
            tokio::task::yield_now().await;
        }
    })
    .await;
    let subscribed = |s: &Arc<Mutex<Seen>>| s.lock().unwrap().is_in();
    within("the clients to be in", async {
        while !seen.iter().all(subscribed) {
            tokio::task::yield_now().await;
        }
    })
    .await;
    publish(&redis, 1, 100).await;
    doomed.kill();
    publish(&redis, 101, 200).await;
    for client in clients {
        within("every client to reach offset 300", client).await.unwrap();
    }
    for s in &seen {
        let s = s.lock().unwrap();
        s.assert_complete(300);
        assert_eq!(s.closes, vec![None], "one abnormal close: the kill");
    }
}

#[tokio::test]
async fn a_rolling_restart_loses_nothing_and_closes_nobody_abnormally() {
    let redis = RedisServer::start().await;
    let mut a = gateway(&redis).await;
    let mut b = gateway(&redis).await;
    let live = Arc::new(Mutex::new(b.ws_url()));
    let seen: Vec<Arc<Mutex<Seen>>> = (0..4).map(|_| Arc::default()).collect();
    let mut clients = Vec::new();
    for (i, s) in seen.iter().enumerate() {
        let first = if i % 2 == 0 { a.ws_url() } else { b.ws_url() };
        clients.push(tokio::spawn(follow(CHANNEL.into(), first, live.clone(), 600, s.clone())));
    }
    within("the clients to be in", async {
        while !seen.iter().all(|s| s.lock().unwrap().is_in()) {
            tokio::task::yield_now().await;
        }
    })
    .await;

    publish(&redis, 1, 100).await;
    // Restart a: its clients move to b.
    a.terminate();
    assert_eq!(within("a to exit", a.wait()).await, Some(0));
    publish(&redis, 101, 200).await;
    let a2 = gateway(&redis).await;
    *live.lock().unwrap() = a2.ws_url();
    // Restart b: everyone moves to the new a.
    b.terminate();
    publish(&redis, 301, 100).await;
    assert_eq!(within("b to exit", b.wait()).await, Some(0));
    publish(&redis, 401, 200).await;
    for client in clients {
        within("every client to reach offset 600", client).await.unwrap();
    }
    for s in &seen {
        let s = s.lock().unwrap();
        s.assert_complete(600);
        assert!(s.closes.iter().all(|c| *c == Some(1001)), "only 1001 closes: {:?}", s.closes);
        assert!(!s.closes.is_empty());
    }
}

//! The cluster registry, `GET /api/nodes`, and the operator's commands.

use std::process::Command;
use std::time::Duration;
use switchyard_client::{Client, Encoding, Options};
use switchyard_testkit::http::get;
use switchyard_testkit::{RedisServer, TestNode, test_config, within};

fn switchyard(args: &[&str]) -> (i32, String) {
    let out =
        Command::new(env!("CARGO_BIN_EXE_switchyard")).args(args).env_remove("SWITCHYARD_REDIS_URL").output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned())
}

async fn node(redis: &RedisServer) -> TestNode {
    let mut config = test_config();
    config.broker.redis_url = Some(redis.url());
    config.broker.heartbeat_interval = Duration::from_secs(1);
    config.api.key = Some("k".into());
    TestNode::start(config).await
}

async fn listed(node: &TestNode) -> Vec<String> {
    let request = hyper::Request::get("/api/nodes")
        .header("host", node.addr.to_string())
        .header("authorization", "apikey k")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let (_, body) = switchyard_testkit::http::request(node.addr, request).await.unwrap();
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    let mut names: Vec<String> =
        body["result"]["nodes"].as_array().unwrap().iter().map(|n| n["name"].as_str().unwrap().to_owned()).collect();
    names.sort();
    names
}

#[tokio::test]
async fn nodes_register_and_expire() {
    let redis = RedisServer::start().await;
    let a = node(&redis).await;
    let b = node(&redis).await;
    let c = node(&redis).await;
    let mut all = vec![a.node.name.clone(), b.node.name.clone(), c.node.name.clone()];
    all.sort();
    within("three registered nodes", async {
        while listed(&a).await != all {
            tokio::task::yield_now().await;
        }
    })
    .await;
    a.wait_for_sample("switchyard_cluster_nodes", "", 3.0).await;

    let (code, table) = switchyard(&["nodes", "--redis", &redis.url()]);
    assert_eq!(code, 0);
    for name in &all {
        assert!(table.contains(name.as_str()), "{table}");
    }

    // A node that stops heartbeating drops out when its entry expires.
    let gone = c.node.name.clone();
    c.stop().await;
    within("the stopped node to expire", async {
        while listed(&a).await.contains(&gone) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert_eq!(listed(&b).await.len(), 2);
    assert_eq!(get(a.addr, "/readyz").await.unwrap().0, 200);
}

#[tokio::test]
async fn the_publish_command_reaches_subscribers() {
    let redis = RedisServer::start().await;
    let a = node(&redis).await;
    let mut subscriber = Client::connect(&a.ws_url(), Options::new(Encoding::Json)).await.unwrap();
    subscriber.subscribe("ops").await.unwrap();
    let (code, out) = switchyard(&["publish", "--redis", &redis.url(), "ops", r#"{"maintenance": true}"#]);
    assert_eq!((code, out.trim()), (0, r#"["",0]"#));
    let p = within("the publication", subscriber.next_publication()).await.unwrap();
    assert_eq!(&p.data[..], br#"{"maintenance": true}"#);
}

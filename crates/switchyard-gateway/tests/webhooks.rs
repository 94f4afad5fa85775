//! Webhooks of switchyard's own protocol (`[[webhooks]]`) from two nodes on
//! a real Redis to a real HTTP receiver: each transition once per cluster,
//! signed with `X-Switchyard-Signature`.

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use std::collections::HashSet;
use switchyard_client::{Client, Encoding, Options};
use switchyard_core::config::{Config, NamespaceConfig, WebhookConfig};
use switchyard_gateway::pusher::signing;
use switchyard_testkit::token::{SECRET, hs256};
use switchyard_testkit::{RedisServer, TestNode, test_config, within};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

const HOOK_SECRET: &str = "hook-secret";

/// One request as the receiver got it: its signature header and body.
struct Received {
    signature: String,
    body: String,
}

/// An HTTP server on a free port that hands every request it gets to the test.
async fn receiver() -> (String, mpsc::UnboundedReceiver<Received>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hooks", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { return };
            let tx = tx.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                    let tx = tx.clone();
                    async move {
                        let signature = req
                            .headers()
                            .get("x-switchyard-signature")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("")
                            .to_owned();
                        let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                        let _ = tx.send(Received { signature, body: String::from_utf8_lossy(&body).into_owned() });
                        Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::new())))
                    }
                });
                let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
            });
        }
    });
    (url, rx)
}

fn config(redis: &RedisServer, url: &str) -> Config {
    let mut config = test_config();
    config.broker.redis_url = Some(redis.url());
    config.auth.hmac_secret = Some(SECRET.into());
    config.namespaces.insert("room".into(), NamespaceConfig { presence: true, ..NamespaceConfig::default() });
    let webhook = format!("url = \"{url}\"\nsecret = \"{HOOK_SECRET}\"\nbatch_delay = \"10ms\"\n");
    config.webhooks = vec![toml::from_str::<WebhookConfig>(&webhook).unwrap()];
    config.validate().unwrap()
}

async fn user(node: &TestNode, user: &str) -> Client {
    let client = Client::connect(&node.ws_url(), Options::new(Encoding::Json)).await.unwrap();
    client.connect_command(&hs256(user, json!({}))).await.unwrap();
    client
}

/// Every event received so far and until `done` holds, each request's
/// signature checked, each event id once.
struct Events {
    rx: mpsc::UnboundedReceiver<Received>,
    events: Vec<Value>,
    ids: HashSet<String>,
}

impl Events {
    async fn until(&mut self, what: &str, done: impl Fn(&[Value]) -> bool) {
        within(what, async {
            while !done(&self.events) {
                let received = self.rx.recv().await.expect("the receiver runs");
                let expected = format!("sha256={}", signing::sign(HOOK_SECRET, &received.body));
                assert_eq!(received.signature, expected, "every request is signed");
                let body: Value = serde_json::from_str(&received.body).unwrap();
                assert!(body["time_ms"].as_u64().is_some());
                for event in body["events"].as_array().unwrap() {
                    if self.ids.insert(event["id"].as_str().unwrap().to_owned()) {
                        self.events.push(event.clone());
                    }
                }
            }
        })
        .await
    }

    /// `name` or `name:user` of the events about `channel`, in order.
    fn about(&self, channel: &str) -> Vec<String> {
        self.events
            .iter()
            .filter(|e| e["channel"] == channel)
            .map(|e| match e["user_id"].as_str() {
                Some(user) => format!("{}:{user}", e["name"].as_str().unwrap()),
                None => e["name"].as_str().unwrap().to_owned(),
            })
            .collect()
    }
}

fn has(events: &[Value], name: &str, channel: &str) -> bool {
    events.iter().any(|e| e["name"] == name && e["channel"] == channel)
}

#[tokio::test]
async fn own_channels_announce_occupancy_and_members_once_across_nodes() {
    let redis = RedisServer::start().await;
    let (url, rx) = receiver().await;
    let a = TestNode::start(config(&redis, &url)).await;
    let b = TestNode::start(config(&redis, &url)).await;
    let mut events = Events { rx, events: Vec::new(), ids: HashSet::new() };

    let ada = user(&a, "ada").await;
    let bob = user(&b, "bob").await;
    ada.subscribe("room:1").await.unwrap();
    bob.subscribe("room:1").await.unwrap();
    events.until("both members", |e| e.iter().filter(|e| e["name"] == "member_added").count() == 2).await;
    ada.unsubscribe("room:1").await.unwrap();
    bob.unsubscribe("room:1").await.unwrap();
    events.until("the vacancy", |e| has(e, "channel_vacated", "room:1")).await;
    // Each node sends in order: once a marker of each has come, anything
    // either had queued before has too.
    let (on_a, on_b) = (user(&a, "m").await, user(&b, "m").await);
    on_a.subscribe("marker-a").await.unwrap();
    on_b.subscribe("marker-b").await.unwrap();
    events
        .until("the markers", |e| has(e, "channel_occupied", "marker-a") && has(e, "channel_occupied", "marker-b"))
        .await;

    let about = events.about("room:1");
    assert_eq!(about.first().map(String::as_str), Some("channel_occupied"), "{about:?}");
    assert_eq!(about.last().map(String::as_str), Some("channel_vacated"), "{about:?}");
    let mut members: Vec<&String> = about[1..about.len() - 1].iter().collect();
    members.sort();
    assert_eq!(
        members,
        ["member_added:ada", "member_added:bob", "member_removed:ada", "member_removed:bob"],
        "each once: {about:?}"
    );
    let added = events.events.iter().find(|e| e["name"] == "member_added").unwrap();
    assert!(added["id"].as_str().is_some_and(|id| !id.is_empty()), "events carry an id: {added}");
}

//! The HTTP API: publish, broadcast, nodes; keys and errors.

use bytes::Bytes;
use http_body_util::Full;
use switchyard_client::{Client, Encoding, Options};
use switchyard_testkit::http::get;
use switchyard_testkit::{TestNode, test_config, with_history, within};

async fn node_with_key() -> TestNode {
    let mut config = test_config();
    config.api.key = Some("s3cret".into());
    TestNode::start(config).await
}

async fn call(node: &TestNode, method: &str, path: &str, key: Option<&str>, body: &str) -> (u16, serde_json::Value) {
    let mut request = hyper::Request::builder().method(method).uri(path).header("host", node.addr.to_string());
    if let Some(key) = key {
        request = request.header("authorization", format!("apikey {key}"));
    }
    let request = request.body(Full::new(Bytes::from(body.to_owned()))).unwrap();
    let (status, text) = switchyard_testkit::http::request(node.addr, request).await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)))
}

#[tokio::test]
async fn publish_and_broadcast_reach_subscribers_verbatim() {
    let node = node_with_key().await;
    let mut sub = Client::connect(&node.ws_url(), Options::new(Encoding::Json)).await.unwrap();
    sub.subscribe("news").await.unwrap();
    sub.subscribe("alerts").await.unwrap();

    let (status, body) =
        call(&node, "POST", "/api/publish", Some("s3cret"), r#"{"channel":"news","data":{"a": [1, 2]}}"#).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, serde_json::json!({"result": {"epoch": "", "offset": 0}}));
    let p = within("the API publication", sub.next_publication()).await.unwrap();
    assert_eq!(&p.data[..], br#"{"a": [1, 2]}"#);
    assert!(p.info.is_none(), "a backend publish has no client info");

    let (status, body) =
        call(&node, "POST", "/api/broadcast", Some("s3cret"), r#"{"channels":["news","alerts","bad name"],"data":7}"#)
            .await;
    assert_eq!(status, 200, "{body}");
    let responses = body["result"]["responses"].as_array().unwrap();
    assert_eq!(responses[0]["result"]["offset"], 0);
    assert_eq!(responses[1]["channel"], "alerts");
    assert_eq!(responses[2]["error"]["code"], 107);
    let mut got = vec![
        within("broadcast 1", sub.next_publication()).await.unwrap().channel,
        within("broadcast 2", sub.next_publication()).await.unwrap().channel,
    ];
    got.sort();
    assert_eq!(got, ["alerts", "news"]);
}

#[tokio::test]
async fn errors_use_the_protocol_codes() {
    let node = node_with_key().await;
    let (status, body) = call(&node, "POST", "/api/publish", None, r#"{"channel":"news","data":1}"#).await;
    assert_eq!((status, body["error"]["code"].as_u64()), (401, Some(101)));
    let (status, body) = call(&node, "POST", "/api/publish", Some("wrong"), r#"{"channel":"news","data":1}"#).await;
    assert_eq!((status, body["error"]["code"].as_u64()), (401, Some(101)));
    let (status, body) = call(&node, "POST", "/api/publish", Some("s3cret"), r#"{"channel":"news"}"#).await;
    assert_eq!((status, body["error"]["code"].as_u64()), (400, Some(107)));
    let (status, body) = call(&node, "POST", "/api/publish", Some("s3cret"), "not json").await;
    assert_eq!((status, body["error"]["code"].as_u64()), (400, Some(107)));
    let (status, body) = call(&node, "POST", "/api/publish", Some("s3cret"), r#"{"channel":"nope:x","data":1}"#).await;
    assert_eq!((status, body["error"]["code"].as_u64()), (400, Some(102)));
    let huge = format!(r#"{{"channel":"news","data":"{}"}}"#, "x".repeat(2 << 20));
    let (status, body) = call(&node, "POST", "/api/publish", Some("s3cret"), &huge).await;
    assert_eq!((status, body["error"]["code"].as_u64()), (413, Some(106)));
    // A known route with the wrong method: 405, and what it takes.
    for (method, path) in [("GET", "/api/publish"), ("GET", "/api/disconnect"), ("POST", "/api/history")] {
        let (status, body) = call(&node, method, path, Some("s3cret"), "").await;
        assert_eq!((status, body["error"]["code"].as_u64()), (405, Some(107)), "{method} {path}");
    }
    let (status, _) = call(&node, "GET", "/api/nothing", Some("s3cret"), "").await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn the_api_is_off_without_a_key() {
    let node = TestNode::start(test_config()).await;
    assert_eq!(get(node.addr, "/api/nodes").await.unwrap().0, 404);
    let (status, _) = call(&node, "POST", "/api/publish", Some(""), r#"{"channel":"news","data":1}"#).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn nodes_lists_this_node_on_the_memory_broker() {
    let node = node_with_key().await;
    let nodes = within("the node to register", async {
        loop {
            let (_, body) = call(&node, "GET", "/api/nodes", Some("s3cret"), "").await;
            let nodes = body["result"]["nodes"].as_array().cloned().unwrap_or_default();
            if !nodes.is_empty() {
                return nodes;
            }
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert_eq!(nodes.len(), 1);
    assert_eq!(nodes[0]["name"], node.node.name.as_str());
    assert_eq!(nodes[0]["address"], node.addr.to_string());
}

#[tokio::test]
async fn history_pages_through_a_channel() {
    let mut config = with_history(test_config(), "chat", 10);
    config.api.key = Some("s3cret".into());
    let node = TestNode::start(config).await;
    let mut epoch = String::new();
    for n in 1..=5 {
        let (status, body) =
            call(&node, "POST", "/api/publish", Some("s3cret"), &format!(r#"{{"channel":"chat:x","data":{n}}}"#)).await;
        assert_eq!(status, 200);
        assert_eq!(body["result"]["offset"], n);
        epoch = body["result"]["epoch"].as_str().unwrap().to_owned();
    }
    let (status, body) = call(&node, "GET", "/api/history?channel=chat:x&limit=2", Some("s3cret"), "").await;
    assert_eq!(status, 200, "{body}");
    let offsets = |b: &serde_json::Value| -> Vec<u64> {
        b["result"]["publications"].as_array().unwrap().iter().map(|p| p["offset"].as_u64().unwrap()).collect()
    };
    assert_eq!(offsets(&body), vec![4, 5]);
    assert_eq!(body["result"]["publications"][1]["data"], 5);
    let path = format!("/api/history?channel=chat:x&epoch={epoch}&offset=3");
    let (_, body) = call(&node, "GET", &path, Some("s3cret"), "").await;
    assert_eq!(offsets(&body), vec![4, 5]);
    let (status, body) = call(&node, "GET", "/api/history?channel=chat:x&epoch=old&offset=3", Some("s3cret"), "").await;
    assert_eq!((status, body["error"]["code"].as_u64()), (400, Some(112)));
    let (status, body) = call(&node, "GET", "/api/history?channel=news", Some("s3cret"), "").await;
    assert_eq!((status, body["error"]["code"].as_u64()), (400, Some(107)));
}

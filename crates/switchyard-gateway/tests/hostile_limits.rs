//! Hostile input, round two: numbers and nesting at their limits, the same
//! limits on every entry point, and safe defaults for browsers. Each class
//! with variants, against real nodes and a real Redis; each answer is the
//! documented one, and nothing else is disturbed.

use bytes::Bytes;
use http_body_util::Full;
use serde_json::{Value, json};
use std::net::SocketAddr;
use switchyard_client::{Client, ClientError, Encoding, Options};
use switchyard_core::config::Config;
use switchyard_proto::v1::{ConnectRequest, StreamPosition, SubscribeRequest};
use switchyard_testkit::http::{request, sample};
use switchyard_testkit::raw;
use switchyard_testkit::sse::{SseStream, command};
use switchyard_testkit::token::{SECRET, hs256};
use switchyard_testkit::{RedisServer, TestNode, test_config, with_history, within};

fn config(redis: &RedisServer) -> Config {
    let mut config = with_history(test_config(), "chat", 100);
    config.broker.redis_url = Some(redis.url());
    config.api.key = Some("k".into());
    config.auth.hmac_secret = Some(SECRET.into());
    config
}

async fn call(addr: SocketAddr, method: &str, path: &str, body: &str, headers: &[(&str, &str)]) -> (u16, Value) {
    let mut req = hyper::Request::builder().method(method).uri(path).header("host", addr.to_string());
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let req = req.body(Full::new(Bytes::from(body.to_owned()))).unwrap();
    let (status, text) = request(addr, req).await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

async fn api(node: &TestNode, method: &str, path: &str, body: &str) -> (u16, Value) {
    call(node.addr, method, path, body, &[("authorization", "apikey k")]).await
}

async fn client(node: &TestNode, encoding: Encoding) -> Client {
    let client = Client::connect(&node.ws_url(), Options::new(encoding)).await.unwrap();
    client.connect_command("").await.unwrap();
    client
}

fn server_error(result: Result<impl std::fmt::Debug, ClientError>) -> (u32, String) {
    match result {
        Err(ClientError::Server(e)) => (e.code, e.message),
        other => panic!("an error reply, not {other:?}"),
    }
}

#[tokio::test]
async fn numbers_at_the_edge_of_their_range_get_a_clear_answer() {
    let redis = RedisServer::start().await;
    let node = TestNode::start(config(&redis)).await;
    let publisher = client(&node, Encoding::Json).await;
    let epoch = publisher.publish("chat:big", "1").await.unwrap().epoch.unwrap();
    for offset in [99_999_999_999_999, 100_000_000_000_000, 1 << 53, u64::MAX - 1, u64::MAX] {
        for encoding in [Encoding::Json, Encoding::Protobuf] {
            let c = client(&node, encoding).await;
            // Past the stream's top: not recovered, but subscribed.
            let request = SubscribeRequest {
                channel: "chat:big".into(),
                recover: true,
                epoch: epoch.clone(),
                offset,
                ..Default::default()
            };
            let result = c.subscribe_with(request).await.unwrap();
            assert_eq!((result.recovered, result.offset), (Some(false), Some(1)), "recover from {offset}");
            let since = StreamPosition { epoch: epoch.clone(), offset };
            let history = c.history("chat:big", Some(since), 0).await.unwrap();
            assert!(history.publications.is_empty(), "history after {offset}");
        }
        let (status, body) =
            api(&node, "GET", &format!("/api/history?channel=chat:big&epoch={epoch}&offset={offset}"), "").await;
        assert_eq!(status, 200, "{body}");
    }
    // An ack past the top, then a resume: the channel is restored (not
    // recovered), never dropped in silence.
    let c = Client::connect(&node.ws_url(), Options::new(Encoding::Json)).await.unwrap();
    let session = c.connect_command("").await.unwrap().session;
    c.subscribe("chat:big").await.unwrap();
    c.ack("chat:big", 100_000_000_000_000).await.unwrap();
    c.close().await;
    let again = Client::connect(&node.ws_url(), Options::new(Encoding::Json)).await.unwrap();
    let reply = again.connect_with(ConnectRequest { resume: session, ..Default::default() }).await.unwrap();
    assert_eq!(reply.resumed, Some(true));
    assert_eq!(
        reply.channels.iter().map(|c| (c.channel.as_str(), c.recovered)).collect::<Vec<_>>(),
        [("chat:big", false)]
    );
    // No reply carries Redis's own text.
    let (code, message) = server_error(publisher.history("nope:x", None, 0).await);
    assert_eq!(code, 102, "{message}");
    assert!(!message.contains("ERR") && !message.contains("@user_function"), "{message}");
}

#[tokio::test]
async fn deep_nesting_is_refused_at_publish_and_never_served_as_null() {
    let redis = RedisServer::start().await;
    let node = TestNode::start(config(&redis)).await;
    let nested = |depth: usize| format!("{}1{}", "[".repeat(depth), "]".repeat(depth));
    let objects = |depth: usize| format!("{}1{}", "{\"a\":".repeat(depth), "}".repeat(depth));
    for data in [nested(65), objects(65), nested(200)] {
        for encoding in [Encoding::Json, Encoding::Protobuf] {
            let c = client(&node, encoding).await;
            let (code, message) = server_error(c.publish("chat:deep", data.clone()).await);
            assert_eq!(code, 107, "{message}");
        }
        let (status, body) =
            api(&node, "POST", "/api/publish", &format!(r#"{{"channel":"chat:deep","data":{data}}}"#)).await;
        assert_eq!((status, body["error"]["code"].as_u64()), (400, Some(107)), "{body}");
    }
    // Up to the limit, every entry point takes it and serves it back.
    let c = client(&node, Encoding::Json).await;
    c.publish("chat:deep", nested(64)).await.unwrap();
    let (status, body) = api(&node, "GET", "/api/history?channel=chat:deep", "").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"]["publications"].as_array().map(Vec::len), Some(1));
    // A backend bypasses the node (FCALL): the history that holds it is an
    // error, never `{"result": null}` with 200.
    let reply = redis.cli(&["FCALL", "switchyard_publish", "1", "chat:deeper", &nested(200)]).await;
    assert!(!reply.contains("ERR"), "{reply}");
    let (status, body) = api(&node, "GET", "/api/history?channel=chat:deeper", "").await;
    assert_ne!(status, 200, "{body}");
    assert_eq!(body["error"]["code"].as_u64(), Some(100), "{body}");
}

#[tokio::test]
async fn every_entry_point_applies_the_same_limits() {
    let redis = RedisServer::start().await;
    let mut config = config(&redis);
    config.client.max_message_size = 4096;
    config.client.commands_per_second = 5;
    config.client.commands_burst = 5;
    let node = TestNode::start(config).await;

    // One message size for every command, whatever the transport.
    let mut stream = SseStream::open(node.addr, "").await.unwrap();
    let session =
        within("connect", stream.next_frame()).await.unwrap()["connect"]["session"].as_str().unwrap().to_owned();
    let big = format!(r#"{{"id": 1, "publish": {{"channel": "chat:x", "data": "{}"}}}}"#, "x".repeat(5000));
    let (status, body) = command(node.addr, &session, &[&big]).await;
    assert_eq!((status, body["error"]["code"].as_u64()), (413, Some(106)), "{body}");

    // Query parameters are percent-decoded everywhere.
    let (status, body) = api(&node, "GET", "/api/history?channel=chat%3Ax", "").await;
    assert_eq!(status, 200, "{body}");

    // One user-id limit: a token's `sub` past it is refused at connect; one
    // at it can be disconnected by the API.
    for (user, accepted) in [("u".repeat(256), false), ("u".repeat(10_000), false), ("u".repeat(255), true)] {
        let c = Client::connect(&node.ws_url(), Options::new(Encoding::Json)).await.unwrap();
        let result = c.connect_command(&hs256(&user, json!({}))).await;
        assert_eq!(result.is_ok(), accepted, "a sub of {} bytes", user.len());
        if accepted {
            let (status, _) = api(&node, "POST", "/api/disconnect", &json!({"user": user}).to_string()).await;
            assert_eq!(status, 200);
            let mut c = c;
            assert_eq!(within("the disconnect", c.closed()).await.map(|(code, _)| code), Some(4003));
        }
    }
    // `nbf` is honoured.
    let later = switchyard_core::clock::unix_seconds() + 600;
    let c = Client::connect(&node.ws_url(), Options::new(Encoding::Json)).await.unwrap();
    let (code, _) = server_error(c.connect_command(&hs256("early", json!({"nbf": later}))).await);
    assert_eq!(code, 101);

    // After a disconnect, an SSE session's commands answer 410, and its
    // stream ends with its `disconnect` event.
    let pings: Vec<String> =
        (1..=30).map(|i| format!(r#"{{"id": {i}, "presence_stats": {{"channel": "x"}}}}"#)).collect();
    let pings: Vec<&str> = pings.iter().map(String::as_str).collect();
    command(node.addr, &session, &pings).await;
    within("the disconnect event", async {
        while let Some(frame) = stream.next_frame().await {
            if frame.get("disconnect").is_some() {
                assert_eq!(frame["disconnect"]["code"], 4029);
                return;
            }
        }
        panic!("the stream ended without its disconnect");
    })
    .await;
    assert_eq!(within("the end of the stream", stream.next()).await, None);
    let (status, _) = command(node.addr, &session, &[r#"{"id": 1, "presence_stats": {"channel": "x"}}"#]).await;
    assert_eq!(status, 410);

    // A refused resume (another user's token) leaves the token to its owner.
    let ada = Client::connect(&node.ws_url(), Options::new(Encoding::Json)).await.unwrap();
    let token = ada.connect_command(&hs256("ada", json!({}))).await.unwrap().session;
    ada.subscribe("chat:ada").await.unwrap();
    ada.close().await;
    let eve = Client::connect(&node.ws_url(), Options::new(Encoding::Json)).await.unwrap();
    let request = ConnectRequest { token: hs256("eve", json!({})), resume: token.clone(), ..Default::default() };
    assert_eq!(eve.connect_with(request).await.unwrap().resumed, Some(false));
    let ada = Client::connect(&node.ws_url(), Options::new(Encoding::Json)).await.unwrap();
    let request = ConnectRequest { token: hs256("ada", json!({})), resume: token, ..Default::default() };
    assert_eq!(ada.connect_with(request).await.unwrap().resumed, Some(true));

    // An empty payload from a backend is refused, as a client's is.
    let reply = redis.cli(&["FCALL", "switchyard_publish", "1", "chat:x", ""]).await;
    assert!(reply.contains("must not be empty"), "{reply}");

    // A registry entry that is not a node's is skipped and counted.
    redis.cli_with_stdin(&["HSET", "switchyard:{nodes}", "garbage"], &[0xff, 0xfe, 0x00]).await;
    redis.cli(&["HSET", "switchyard:{nodes}", "json", "{\"not\": \"a node\"}"]).await;
    let (status, body) = api(&node, "GET", "/api/nodes", "").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"]["nodes"][0]["name"], node.node.name.as_str());
    assert!(sample(&node.metrics().await, "switchyard_broker_malformed_total", "") >= 2.0);
}

#[tokio::test]
async fn browsers_cannot_use_cookie_credentials_from_another_site() {
    let redis = RedisServer::start().await;
    let mut cookies = config(&redis);
    cookies.auth.token_cookie = Some("jwt".into());
    let node = TestNode::start(cookies).await;
    let own = format!("http://{}", node.addr);
    let cookie = format!("jwt={}", hs256("ada", json!({})));
    // Another site's page: refused, on both transports; the node's own
    // page, and clients without an Origin, are not.
    let refused = raw::connect_with(node.addr, &[("origin", "https://evil.example"), ("cookie", &cookie)]).await;
    assert!(refused.is_err(), "a WebSocket from another site with the user's cookie");
    let stream = SseStream::open_with(node.addr, "", &[("origin", "https://evil.example"), ("cookie", &cookie)]).await;
    assert_eq!(stream.unwrap().status, 403);
    raw::connect_with(node.addr, &[("origin", &own), ("cookie", &cookie)]).await.unwrap();
    let stream = SseStream::open_with(node.addr, "", &[("origin", &own), ("cookie", &cookie)]).await.unwrap();
    assert_eq!(stream.status, 200);
    raw::connect_with(node.addr, &[("cookie", &cookie)]).await.unwrap();
    // A refused command is not a refused connection.
    let before = sample(&node.metrics().await, "switchyard_connections_refused_total", "reason=\"origin\"");
    let (status, _) = call(node.addr, "POST", "/sse/command", "{}", &[("origin", "https://evil.example")]).await;
    assert_eq!(status, 403);
    let metrics = node.metrics().await;
    assert_eq!(sample(&metrics, "switchyard_connections_refused_total", "reason=\"origin\""), before);
    assert!(sample(&metrics, "switchyard_sse_command_errors_total", "reason=\"origin\"") >= 1.0);

    // With an explicit list, only its origins get a credentialed answer.
    let mut listed = config(&redis);
    listed.limits.allowed_origins = vec!["https://app.example".into()];
    let node = TestNode::start(listed).await;
    let (status, _) = call(node.addr, "OPTIONS", "/sse/command", "", &[("origin", "https://evil.example")]).await;
    assert_eq!(status, 403);
    let req = hyper::Request::options("/sse/command")
        .header("host", node.addr.to_string())
        .header("origin", "https://app.example")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let (status, _) = request(node.addr, req).await.unwrap();
    assert_eq!(status, 204);
}

#[tokio::test]
async fn wrong_admin_passwords_lock_out_their_own_address_only() {
    let redis = RedisServer::start().await;
    let mut config = config(&redis);
    config.admin.password = Some("pw".into());
    config.admin.public = true;
    config.limits.trusted_proxy_header = Some("x-forwarded-for".into());
    config.limits.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
    let node = TestNode::start(config).await;
    let login = |from: &'static str, password: &'static str| {
        let addr = node.addr;
        async move {
            let body = json!({"password": password}).to_string();
            call(addr, "POST", "/admin/login", &body, &[("x-forwarded-for", from)]).await.0
        }
    };
    for _ in 0..5 {
        assert_eq!(login("203.0.113.7", "guess").await, 401);
    }
    assert_eq!(login("203.0.113.7", "pw").await, 429, "the guesser's address is locked");
    assert_eq!(login("198.51.100.1", "pw").await, 200, "the operator's is not");
}

#[tokio::test]
async fn a_publication_larger_than_a_reply_is_named_not_paged_over_in_silence() {
    let redis = RedisServer::start().await;
    let node = TestNode::start(config(&redis)).await;
    // A backend publishes 1.2 MB through Redis (the node's own limits do
    // not apply to FCALL); a reply holds 1 MiB.
    let big = format!("\"{}\"", "x".repeat(1_200_000));
    redis.cli_with_stdin(&["FCALL", "switchyard_publish", "1", "chat:huge"], big.as_bytes()).await;
    let c = client(&node, Encoding::Json).await;
    let epoch = c.history("chat:huge", None, 0).await.unwrap().epoch;
    let since = StreamPosition { epoch, offset: 0 };
    let (code, message) = server_error(c.history("chat:huge", Some(since), 0).await);
    assert_eq!(code, 106, "{message}");
    assert!(message.contains("publication 1"), "{message}");
}

//! The fallback transport against real nodes: Server-Sent Events down,
//! `POST /sse/command` up, through a real haproxy with round robin and no
//! affinity, so commands land on either node; a stream whose node is
//! SIGKILLed resumes on the other with nothing lost; hostile input.

use serde_json::{Value, json};
use std::path::Path;
use switchyard_testkit::haproxy::Haproxy;
use switchyard_testkit::http::sample;
use switchyard_testkit::sse::{SseStream, command, post};
use switchyard_testkit::token::{SECRET, hs256};
use switchyard_testkit::{GatewayProcess, RedisServer, TestNode, test_config, with_history, within};

async fn gateway(redis: &RedisServer) -> GatewayProcess {
    let url = redis.url();
    let env = [
        ("SWITCHYARD_REDIS_URL", url.as_str()),
        ("SWITCHYARD_AUTH_HMAC_SECRET", SECRET),
        ("SWITCHYARD_NAMESPACES__CHAT__HISTORY_SIZE", "1000"),
        ("SWITCHYARD_NAMESPACES__CHAT__HISTORY_TTL", "10m"),
    ];
    GatewayProcess::start(Path::new(env!("CARGO_BIN_EXE_switchyard")), &[], &env).await
}

/// Reads frames until one has `key`, returning it (skipping the rest).
async fn until_key(stream: &mut SseStream, key: &str) -> Value {
    within(key, async {
        loop {
            let frame = stream.next_frame().await.unwrap_or_else(|| panic!("the stream ended before {key}"));
            if frame.get(key).is_some() {
                return frame;
            }
        }
    })
    .await
}

/// The offsets of `pub`s on `channel` until `last`.
async fn offsets_until(stream: &mut SseStream, channel: &str, last: u64) -> Vec<u64> {
    let mut seen = Vec::new();
    within("publications", async {
        while seen.last() != Some(&last) {
            let frame = stream.next_frame().await.expect("the stream is open");
            if frame["pub"]["channel"] == channel {
                seen.push(frame["pub"]["offset"].as_u64().unwrap());
            }
        }
    })
    .await;
    seen
}

async fn metrics(node: &GatewayProcess) -> String {
    switchyard_testkit::http::get(node.addr, "/metrics").await.unwrap().1
}

#[tokio::test]
async fn an_sse_client_behind_round_robin_loses_nothing_when_its_node_dies() {
    let redis = RedisServer::start().await;
    let a = gateway(&redis).await;
    let b = gateway(&redis).await;
    let mut nodes = [a, b];
    let proxy = Haproxy::start(&[nodes[0].addr, nodes[1].addr]).await;

    let token = hs256("ada", json!({}));
    let mut stream = SseStream::open(proxy.addr, &format!("token={token}&channel=chat%3Asse")).await.unwrap();
    assert_eq!(stream.status, 200);
    let connect = until_key(&mut stream, "connect").await;
    assert!(connect.get("id").is_none(), "the stream's first frame: the connect reply, no id");
    let session = connect["connect"]["session"].as_str().unwrap().to_owned();
    assert_eq!(until_key(&mut stream, "sub").await["sub"]["channel"], "chat:sse");

    // Commands through the balancer, in order, whichever node they land on.
    for n in 1..=4 {
        let publish = format!(r#"{{"id": {n}, "publish": {{"channel": "chat:sse", "data": {n}}}}}"#);
        let (status, answer) = command(proxy.addr, &session, &[&publish]).await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["result"]["replies"][0]["publish"]["offset"], json!(n));
    }
    let history = r#"{"id": 9, "history": {"channel": "chat:sse", "limit": 2}}"#;
    let unknown = r#"{"id": 10, "frobnicate": {}}"#;
    let (_, answer) = command(proxy.addr, &session, &[history, unknown]).await;
    let replies = &answer["result"]["replies"];
    assert_eq!(replies[0]["history"]["offset"], json!(4));
    assert_eq!(replies[0]["history"]["publications"].as_array().unwrap().len(), 2);
    assert_eq!(replies[1]["error"]["code"], json!(104), "an unknown command is answered in its place");
    let routed: f64 = {
        let (m0, m1) = (metrics(&nodes[0]).await, metrics(&nodes[1]).await);
        let remote = |m: &str| sample(m, "switchyard_sse_command_requests_total", "route=\"remote\"");
        remote(&m0) + remote(&m1)
    };
    assert!(routed >= 1.0, "round robin sent some commands to the node without the stream");

    for n in 5..=100u64 {
        redis.cli(&["FCALL", "switchyard_publish", "1", "chat:sse", &n.to_string()]).await;
    }
    let seen = offsets_until(&mut stream, "chat:sse", 100).await;
    assert_eq!(seen, (1..=100).collect::<Vec<_>>(), "every publication once, in order");
    let (status, _) = command(proxy.addr, &session, &[r#"{"ack": {"channel": "chat:sse", "offset": 100}}"#]).await;
    assert_eq!(status, 200);

    // Its node dies; what is published meanwhile is replayed after a resume.
    let streams = |m: &str| sample(m, "switchyard_transport_connections", "transport=\"sse\"");
    let dead = if streams(&metrics(&nodes[0]).await) == 1.0 { 0 } else { 1 };
    let live = 1 - dead;
    nodes[dead].kill();
    within("the stream to end with its node", async {
        while let Some(event) = stream.next().await {
            assert!(event.contains("ping"), "nothing more but pings: {event}");
        }
    })
    .await;
    for n in 101..=150u64 {
        redis.cli(&["FCALL", "switchyard_publish", "1", "chat:sse", &n.to_string()]).await;
    }
    let (status, answer) = command(nodes[live].addr, &session, &[r#"{"id": 11, "presence": {"channel": "x"}}"#]).await;
    assert_eq!((status, answer["error"]["code"].clone()), (410, json!(108)), "a session whose node is gone");
    let mut resumed = SseStream::open(proxy.addr, &format!("token={token}&resume={session}")).await.unwrap();
    let connect = until_key(&mut resumed, "connect").await;
    assert_eq!(connect["connect"]["resumed"], json!(true));
    let seen = offsets_until(&mut resumed, "chat:sse", 150).await;
    // Replayed in order from the last saved ack (acks are saved at most a
    // second late, and the node was killed at once): what came before is
    // what a client drops as seen.
    let first = seen[0];
    assert!(first <= 101, "nothing missing: the replay starts at {first}");
    assert_eq!(seen, (first..=150).collect::<Vec<_>>(), "in order, each once");
}

#[tokio::test]
async fn hostile_input_on_both_endpoints() {
    let mut config = with_history(test_config(), "chat", 100);
    config.auth.hmac_secret = Some(SECRET.into());
    config.auth.allow_anonymous = false;
    config.client.max_message_size = 1024;
    config.client.commands_per_second = 10;
    config.client.commands_burst = 20;
    config.limits.allowed_origins = vec!["https://app.example.com".into()];
    let node = TestNode::start(config).await;
    let calm_token = hs256("calm", json!({}));
    let mut calm = SseStream::open(node.addr, &format!("token={calm_token}&channel=news")).await.unwrap();
    let calm_session = until_key(&mut calm, "connect").await["connect"]["session"].as_str().unwrap().to_owned();

    // A bad token: the error, then the close, on the stream.
    let mut bad = SseStream::open(node.addr, "token=not-a-jwt").await.unwrap();
    assert_eq!(until_key(&mut bad, "error").await["error"]["code"], json!(101));
    assert_eq!(until_key(&mut bad, "disconnect").await["disconnect"]["code"], json!(4003));
    assert_eq!(bad.next().await, None);
    // A channel the token may not use is refused, the stream stays.
    let ada = hs256("ada", json!({}));
    let mut partial =
        SseStream::open(node.addr, &format!("token={ada}&channel=notify%23bob&channel=news")).await.unwrap();
    assert_eq!(until_key(&mut partial, "error").await["error"]["code"], json!(103));
    assert_eq!(until_key(&mut partial, "sub").await["sub"]["channel"], "news");
    // A malformed recover parameter.
    let bad_recover = SseStream::open(node.addr, &format!("token={ada}&recover=nonsense")).await.unwrap();
    assert_eq!(bad_recover.status, 400);

    // Commands: unknown sessions, bodies over the limit, bodies that are not JSON.
    let (status, answer) = command(node.addr, "nobody.0000", &[r#"{"id": 1, "presence": {"channel": "x"}}"#]).await;
    assert_eq!((status, answer["error"]["code"].clone()), (410, json!(108)));
    let (status, answer) = post(node.addr, vec![b'x'; 10_000]).await;
    assert_eq!((status, answer["error"]["code"].clone()), (413, json!(106)));
    let (status, answer) = post(node.addr, b"{not json".to_vec()).await;
    assert_eq!((status, answer["error"]["code"].clone()), (400, json!(107)));
    // A flood of commands: 109, then the stream closes with 4029.
    let mut flooder = SseStream::open(node.addr, &format!("token={ada}")).await.unwrap();
    let session = until_key(&mut flooder, "connect").await["connect"]["session"].as_str().unwrap().to_owned();
    let pongs: Vec<String> =
        (1..=60).map(|i| format!(r#"{{"id": {i}, "presence_stats": {{"channel": "x"}}}}"#)).collect();
    let pongs: Vec<&str> = pongs.iter().map(String::as_str).collect();
    let (_, answer) = command(node.addr, &session, &pongs).await;
    assert!(answer.to_string().contains("\"code\":109"), "{answer}");
    assert_eq!(until_key(&mut flooder, "disconnect").await["disconnect"]["code"], json!(4029));

    // A disallowed origin on both endpoints.
    let request = hyper::Request::get("/sse?token=x")
        .header("host", node.addr.to_string())
        .header("origin", "https://evil.example.com")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    assert_eq!(switchyard_testkit::http::request(node.addr, request).await.unwrap().0, 403);

    // Nothing else was touched: the calm stream still gets its channel.
    let publisher_token = hs256("pub", json!({}));
    let publish = r#"{"id": 1, "publish": {"channel": "news", "data": "still here"}}"#;
    let mut publisher = SseStream::open(node.addr, &format!("token={publisher_token}")).await.unwrap();
    let session = until_key(&mut publisher, "connect").await["connect"]["session"].as_str().unwrap().to_owned();
    assert_eq!(command(node.addr, &session, &[publish]).await.0, 200);
    assert_eq!(until_key(&mut calm, "pub").await["pub"]["data"], json!("still here"));
    let (status, _) = command(node.addr, &calm_session, &[r#"{"ack": {"channel": "news", "offset": 1}}"#]).await;
    assert_eq!(status, 200);
    let metrics = node.metrics().await;
    assert!(sample(&metrics, "switchyard_sse_command_errors_total", "reason=\"unknown_session\"") >= 1.0);
    assert!(sample(&metrics, "switchyard_sse_command_errors_total", "reason=\"too_large\"") >= 1.0);
    // The calm, the partial and the publisher's streams stay; the others are gone.
    within("three open streams", async {
        while sample(&node.metrics().await, "switchyard_transport_connections", "transport=\"sse\"") != 3.0 {
            tokio::task::yield_now().await;
        }
    })
    .await;
}

#[tokio::test]
async fn a_stream_recovers_a_channel_from_a_position() {
    let mut config = with_history(test_config(), "chat", 100);
    config.api.key = Some("k".into());
    let node = TestNode::start(config).await;
    let mut epoch = String::new();
    for n in 1..=5 {
        let (status, body) =
            switchyard_testkit::http::api(node.addr, "k", "/api/publish", json!({"channel": "chat:r", "data": n}))
                .await;
        assert_eq!(status, 200);
        epoch = body["result"]["epoch"].as_str().unwrap().to_owned();
    }
    let mut stream = SseStream::open(node.addr, &format!("recover={epoch}%3A2%3Achat%3Ar")).await.unwrap();
    let sub = until_key(&mut stream, "sub").await;
    assert_eq!(sub["sub"]["offset"], json!(5));
    assert_eq!(offsets_until(&mut stream, "chat:r", 5).await, vec![3, 4, 5], "what followed offset 2, then live");
    switchyard_testkit::http::api(node.addr, "k", "/api/publish", json!({"channel": "chat:r", "data": 6})).await;
    assert_eq!(offsets_until(&mut stream, "chat:r", 6).await, vec![6]);
}

#[tokio::test]
async fn with_a_write_delay_a_stream_gets_every_publication_in_order() {
    let mut config = with_history(test_config(), "chat", 100);
    config.api.key = Some("k".into());
    config.client.write_delay = std::time::Duration::from_millis(5);
    let node = TestNode::start(config).await;
    let mut stream = SseStream::open(node.addr, "channel=chat%3Ad").await.unwrap();
    assert_eq!(until_key(&mut stream, "sub").await["sub"]["channel"], "chat:d");
    for n in 1..=50 {
        let publish = json!({"channel": "chat:d", "data": n});
        assert_eq!(switchyard_testkit::http::api(node.addr, "k", "/api/publish", publish).await.0, 200);
    }
    assert_eq!(offsets_until(&mut stream, "chat:d", 50).await, (1..=50).collect::<Vec<u64>>());
}

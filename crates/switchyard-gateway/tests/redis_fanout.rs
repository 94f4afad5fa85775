//! Many nodes, one Redis: every publish path reaches every subscriber on
//! every node, once, in order; one Redis subscription per channel per node;
//! nothing needs a reconnect when Redis restarts.

use bytes::Bytes;
use prost::Message as _;
use switchyard_client::{Client, ClientError, Encoding, Event, Options};
use switchyard_core::config::Config;
use switchyard_proto::v1::Envelope;
use switchyard_testkit::http::{get, sample};
use switchyard_testkit::{RedisServer, TestNode, test_config, with_history, within};

fn config_for(redis: &RedisServer) -> Config {
    let mut config = test_config();
    config.broker.redis_url = Some(redis.url());
    config.api.key = Some("test-key".into());
    config
}

async fn client(node: &TestNode, encoding: Encoding) -> Client {
    Client::connect(&node.ws_url(), Options::new(encoding)).await.expect("connect")
}

async fn api_publish(node: &TestNode, channel: &str, data: &str) -> (u16, String) {
    use http_body_util::Full;
    let body = format!(r#"{{"channel": "{channel}", "data": {data}}}"#);
    let request = hyper::Request::post("/api/publish")
        .header("host", node.addr.to_string())
        .header("authorization", "apikey test-key")
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    switchyard_testkit::http::request(node.addr, request).await.unwrap()
}

/// Reads publications until `expected` have come, in order, and then the
/// `sentinel`: nothing more, nothing twice.
async fn expect_exactly(client: &mut Client, expected: &[String], sentinel: &str) {
    let mut got = Vec::new();
    within("every publication", async {
        loop {
            let p = client.next_publication().await.unwrap();
            let text = String::from_utf8(p.data.to_vec()).unwrap();
            if text == sentinel {
                return;
            }
            got.push(text);
        }
    })
    .await;
    assert_eq!(got, expected);
}

#[tokio::test]
async fn every_publish_path_reaches_every_node_once_in_order() {
    let redis = RedisServer::start().await;
    let a = TestNode::start(config_for(&redis)).await;
    let b = TestNode::start(config_for(&redis)).await;
    let c = TestNode::start(config_for(&redis)).await;
    let mut json_on_a = client(&a, Encoding::Json).await;
    let mut proto_on_a = client(&a, Encoding::Protobuf).await;
    let mut json_on_c = client(&c, Encoding::Json).await;
    for s in [&json_on_a, &proto_on_a, &json_on_c] {
        s.subscribe("news").await.unwrap();
    }
    let publisher_on_b = client(&b, Encoding::Json).await;

    let mut expected = Vec::new();
    for i in 0..20 {
        let data = format!(r#"{{"from":"client on b","n":{i}}}"#);
        publisher_on_b.publish("news", data.clone()).await.unwrap();
        expected.push(data);

        let data = format!(r#"{{"from":"fcall","n":{i}}}"#);
        assert_eq!(redis.cli(&["FCALL", "switchyard_publish", "1", "news", &data]).await, "\n0\n");
        expected.push(data);

        let data = format!(r#"{{"from":"raw publish","n":{i}}}"#);
        let envelope = Envelope { channel: "news".into(), data: Bytes::from(data.clone()), ..Default::default() };
        let receivers = redis.cli_with_stdin(&["PUBLISH", "switchyard:{news}"], &envelope.encode_to_vec()).await;
        assert_eq!(receivers.trim(), "2", "one subscription per interested node (a and c)");
        expected.push(data);

        let data = format!(r#"{{"from":"api on c","n":{i}}}"#);
        assert_eq!(api_publish(&c, "news", &data).await, (200, r#"{"result":{"epoch":"","offset":0}}"#.to_owned()));
        expected.push(data);
    }
    publisher_on_b.publish("news", "\"end\"").await.unwrap();
    for subscriber in [&mut json_on_a, &mut proto_on_a, &mut json_on_c] {
        expect_exactly(subscriber, &expected, "\"end\"").await;
    }
}

#[tokio::test]
async fn a_thousand_local_subscribers_cost_one_redis_subscription() {
    let redis = RedisServer::start().await;
    let node = TestNode::start(config_for(&redis)).await;
    let mut clients = Vec::new();
    for _ in 0..1000 {
        clients.push(client(&node, Encoding::Protobuf).await);
    }
    for c in &clients {
        c.subscribe("crowd").await.unwrap();
    }
    let numsub = redis.cli(&["PUBSUB", "NUMSUB", "switchyard:{crowd}"]).await;
    assert_eq!(numsub, "switchyard:{crowd}\n1\n");
    // Everyone gets a publication.
    redis.cli(&["FCALL", "switchyard_publish", "1", "crowd", "\"all\""]).await;
    for c in &mut clients {
        assert_eq!(&within("the publication", c.next_publication()).await.unwrap().data[..], b"\"all\"");
    }
    // Half leave: still one. All leave: none.
    for c in clients.drain(..500) {
        c.close().await;
    }
    assert_eq!(redis.cli(&["PUBSUB", "NUMSUB", "switchyard:{crowd}"]).await, "switchyard:{crowd}\n1\n");
    for c in clients.drain(..) {
        c.unsubscribe("crowd").await.unwrap();
    }
    within("the Redis subscription to go", async {
        while redis.cli(&["PUBSUB", "NUMSUB", "switchyard:{crowd}"]).await != "switchyard:{crowd}\n0\n" {
            tokio::task::yield_now().await;
        }
    })
    .await;
}

#[tokio::test]
async fn redis_restarting_under_load_loses_no_connection() {
    let mut redis = RedisServer::start().await;
    let a = TestNode::start(config_for(&redis)).await;
    let b = TestNode::start(config_for(&redis)).await;
    let mut subscriber = client(&a, Encoding::Json).await;
    subscriber.subscribe("live").await.unwrap();
    let publisher = client(&b, Encoding::Json).await;
    publisher.publish("live", "\"before\"").await.unwrap();
    assert_eq!(&within("a publication", subscriber.next_publication()).await.unwrap().data[..], b"\"before\"");

    redis.kill().await;
    // Publishes now fail with 108, and the nodes say they are not ready.
    within("a publish to fail with 108", async {
        loop {
            match publisher.publish("live", "\"during\"").await {
                Err(ClientError::Server(e)) if e.code == 108 => return,
                Ok(_) => tokio::task::yield_now().await,
                Err(e) => panic!("unexpected {e}"),
            }
        }
    })
    .await;
    within("/readyz to say 503", async {
        while get(a.addr, "/readyz").await.unwrap().0 != 503 {
            tokio::task::yield_now().await;
        }
    })
    .await;
    let (status, body) = api_publish(&b, "live", "1").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("\"code\":108"));

    redis.restart().await;
    within("/readyz to say 200", async {
        while get(a.addr, "/readyz").await.unwrap().0 != 200 || get(b.addr, "/readyz").await.unwrap().0 != 200 {
            tokio::task::yield_now().await;
        }
    })
    .await;
    // Delivery resumes on the same connections, with no action from anyone.
    publisher.publish("live", "\"after\"").await.unwrap();
    let after = within("a publication after the restart", async {
        loop {
            match subscriber.next_event().await {
                Some(Event::Publication(p)) if &p.data[..] == b"\"after\"" => return p,
                Some(Event::Publication(_)) | Some(Event::Ping) => {}
                other => panic!("unexpected {other:?}"),
            }
        }
    })
    .await;
    assert_eq!(after.channel, "live");
    let metrics = a.metrics().await;
    assert!(sample(&metrics, "switchyard_broker_reconnects_total", "") >= 1.0, "{metrics}");
    assert!(sample(&metrics, "switchyard_broker_resubscribes_total", "") >= 1.0, "{metrics}");
}

#[tokio::test]
async fn malformed_messages_on_redis_are_dropped_and_counted() {
    let redis = RedisServer::start().await;
    let node = TestNode::start(config_for(&redis)).await;
    let mut subscriber = client(&node, Encoding::Json).await;
    subscriber.subscribe("news").await.unwrap();
    redis.cli_with_stdin(&["PUBLISH", "switchyard:{news}"], &[0xff, 0xff, 0xff, 0x01]).await;
    let wrong_channel = Envelope { channel: "other".into(), data: Bytes::from_static(b"1"), ..Default::default() };
    redis.cli_with_stdin(&["PUBLISH", "switchyard:{news}"], &wrong_channel.encode_to_vec()).await;
    redis.cli(&["FCALL", "switchyard_publish", "1", "news", "\"fine\""]).await;
    let p = within("the good publication", subscriber.next_publication()).await.unwrap();
    assert_eq!(&p.data[..], b"\"fine\"");
    node.wait_for_sample("switchyard_broker_malformed_total", "", 2.0).await;
}

#[tokio::test]
async fn redis_auth_and_acl_users_work() {
    // A password for the default user, and an ACL user with its own and
    // no more rights than docs/redis.md says a gateway needs.
    let acl = "~* &switchyard:* +@connection +@pubsub +fcall +fcall_ro +function|load +time +hset +hgetall +hdel \
               +set +getdel +hget +hmget +hincrby +hvals +xadd +xrange +xrevrange +pexpire +pttl +del +zadd +zrem \
               +zscore +zrangebyscore +zremrangebyscore";
    let mut args = vec!["--requirepass", "default-pass", "--user", "gateway", "on", ">gateway-pass"];
    args.extend(acl.split(' '));
    let redis = RedisServer::start_with_args(&args).await;
    let port = redis.port;
    let urls =
        [format!("redis://:default-pass@127.0.0.1:{port}"), format!("redis://gateway:gateway-pass@127.0.0.1:{port}")];
    for (i, url) in urls.into_iter().enumerate() {
        let history_channel = format!("chat:secure{i}");
        let mut config = with_history(test_config(), "chat", 10);
        config.broker.redis_url = Some(url.clone());
        let room = switchyard_core::config::NamespaceConfig { presence: true, join_leave: true, ..Default::default() };
        config.namespaces.insert("room".into(), room);
        let node = TestNode::start(config).await;
        let mut subscriber = client(&node, Encoding::Json).await;
        subscriber.connect_command("").await.unwrap();
        subscriber.subscribe("secure").await.unwrap();
        subscriber.subscribe(&history_channel).await.unwrap();
        subscriber.publish("secure", "\"ok\"").await.unwrap();
        let p = within("the publication", subscriber.next_publication()).await.unwrap();
        assert_eq!(&p.data[..], b"\"ok\"", "{url}");
        assert_eq!(subscriber.publish(&history_channel, "1").await.unwrap().offset, Some(1), "{url}");
        let p = within("the history publication", subscriber.next_publication()).await.unwrap();
        assert_eq!(p.offset, Some(1));
        assert_eq!(subscriber.history(&history_channel, None, 5).await.unwrap().publications.len(), 1);
        // Presence, its refresh and its announcements.
        subscriber.subscribe("room:r").await.unwrap();
        let presence = switchyard_proto::v1::PresenceRequest { channel: "room:r".into() };
        let reply = subscriber.command(switchyard_proto::v1::client_frame::Command::Presence(presence)).await;
        assert!(matches!(reply, Ok(switchyard_proto::v1::server_frame::Message::Presence(p)) if p.clients.len() == 1));
        switchyard_gateway::refresh_presence(&node.node, std::time::Duration::from_secs(60)).await;
        subscriber.unsubscribe("room:r").await.unwrap();
        assert_eq!(sample(&node.metrics().await, "switchyard_broker_errors_total", "operation=\"presence\""), 0.0);
        // Sessions are saved before replies: none failed for want of a right.
        let metrics = node.metrics().await;
        assert_eq!(sample(&metrics, "switchyard_broker_errors_total", "operation=\"session\""), 0.0, "{url}");
    }
    // A backend with the same rights can publish through the function.
    let as_gateway = ["--user", "gateway", "--pass", "gateway-pass", "--no-auth-warning"];
    let reply = redis.cli(&[&as_gateway[..], &["FCALL", "switchyard_publish", "1", "secure", "1"]].concat()).await;
    assert_eq!(reply, "\n0\n");
    let mut config = test_config();
    config.broker.redis_url = Some(format!("redis://gateway:wrong@127.0.0.1:{port}"));
    let refused = switchyard_gateway::Node::connect(config.validate().unwrap()).await;
    assert!(refused.is_err(), "a wrong password must not connect");
}

#[tokio::test]
async fn rediss_tls_works_with_a_configured_ca() {
    let redis = RedisServer::start_tls().await;
    let mut config = test_config();
    config.broker.redis_url = Some(redis.url());
    config.broker.tls_ca_file = redis.tls_ca.clone();
    let node = TestNode::start(config).await;
    let mut subscriber = client(&node, Encoding::Json).await;
    subscriber.subscribe("tls").await.unwrap();
    assert_eq!(redis.cli(&["FCALL", "switchyard_publish", "1", "tls", "\"encrypted\""]).await, "\n0\n");
    let p = within("the publication over TLS", subscriber.next_publication()).await.unwrap();
    assert_eq!(&p.data[..], b"\"encrypted\"");
    // Without the CA, the node does not trust the server.
    let mut config = test_config();
    config.broker.redis_url = Some(redis.url());
    assert!(switchyard_gateway::Node::connect(config.validate().unwrap()).await.is_err());
}

#[tokio::test]
async fn nodes_starting_together_replace_an_older_library() {
    let redis = RedisServer::start().await;
    // An older library that answers version 0.
    let older = "#!lua name=switchyard\nredis.register_function{function_name='switchyard_version', \
                 callback=function() return 0 end, flags={'no-writes'}}";
    assert_eq!(redis.cli(&["FUNCTION", "LOAD", older]).await.trim(), "switchyard");
    assert_eq!(redis.cli(&["FCALL_RO", "switchyard_version", "0"]).await.trim(), "0");
    let (a, b) = tokio::join!(TestNode::start(config_for(&redis)), TestNode::start(config_for(&redis)));
    let version = switchyard_broker::redis::library::VERSION.to_string();
    assert_eq!(redis.cli(&["FCALL_RO", "switchyard_version", "0"]).await.trim(), version);
    // Both work.
    let mut subscriber = client(&a, Encoding::Json).await;
    subscriber.subscribe("news").await.unwrap();
    client(&b, Encoding::Json).await.publish("news", "1").await.unwrap();
    assert_eq!(&within("the publication", subscriber.next_publication()).await.unwrap().data[..], b"1");

    // A node never downgrades a newer library.
    let newer = older.replace("return 0", "return 1000");
    redis.cli(&["FUNCTION", "LOAD", "REPLACE", &newer]).await;
    let _c = TestNode::start(config_for(&redis)).await;
    assert_eq!(redis.cli(&["FCALL_RO", "switchyard_version", "0"]).await.trim(), "1000");
}

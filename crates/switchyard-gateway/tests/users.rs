//! Server-side subscriptions and user operations on real nodes and a real
//! Redis (and a Redis Cluster, where the control channel must cross
//! shards): through the HTTP API, through each `FCALL`, and from a token's
//! `subs` claim.

use serde_json::json;
use switchyard_client::{Client, Encoding, Event, Options};
use switchyard_core::config::Config;
use switchyard_testkit::http::api;
use switchyard_testkit::token::{SECRET, hs256};
use switchyard_testkit::{RedisCluster, RedisServer, TestNode, test_config, with_history, within};

fn config(redis: &RedisServer) -> Config {
    let mut config = with_history(test_config(), "chat", 100);
    config.broker.redis_url = Some(redis.url());
    config.auth.hmac_secret = Some(SECRET.into());
    config.api.key = Some("k".into());
    config
}

async fn user(node: &TestNode, user: &str, claims: serde_json::Value) -> Client {
    let client = Client::connect(&node.ws_url(), Options::new(Encoding::Json)).await.unwrap();
    client.connect_command(&hs256(user, claims)).await.unwrap();
    client
}

/// The next push that is not a ping, as a short text: `sub news`,
/// `unsub news`, `pub news <data>`, `disconnect <code> <reason>`,
/// `closed <code>`.
async fn next_push(client: &mut Client) -> String {
    within("a push", async {
        loop {
            return match client.next_event().await {
                Some(Event::Subscribed(s)) => format!("sub {}", s.channel),
                Some(Event::Unsubscribed(u)) => format!("unsub {}", u.channel),
                Some(Event::Publication(p)) => format!("pub {} {}", p.channel, String::from_utf8_lossy(&p.data)),
                Some(Event::Disconnect(d)) => format!("disconnect {} {}", d.code, d.reason),
                Some(Event::Closed(c)) => format!("closed {}", c.map_or(0, |(code, _)| code)),
                None => "gone".into(),
                Some(_) => continue,
            };
        }
    })
    .await
}

#[tokio::test]
async fn user_operations_reach_every_connection_of_the_user_on_every_node() {
    let redis = RedisServer::start().await;
    let a = TestNode::start(config(&redis)).await;
    let b = TestNode::start(config(&redis)).await;
    let mut on_a = user(&a, "ada", json!({})).await;
    let mut on_b = user(&b, "ada", json!({})).await;
    let mut other = user(&b, "bob", json!({})).await;
    let publisher = user(&a, "pub", json!({})).await;

    // subscribe: a `sub` push, then the publications.
    let (status, body) = api(a.addr, "k", "/api/subscribe", json!({"user": "ada", "channel": "news"})).await;
    assert_eq!((status, body), (200, json!({"result": {}})));
    for client in [&mut on_a, &mut on_b] {
        assert_eq!(next_push(client).await, "sub news");
    }
    publisher.publish("news", "1").await.unwrap();
    for client in [&mut on_a, &mut on_b] {
        assert_eq!(next_push(client).await, "pub news 1");
    }
    // The channels of the cluster, with subscribers summed over the nodes.
    other.subscribe("news").await.unwrap();
    let (status, body) = api(b.addr, "k", "/api/channels", json!({"prefix": "ne"})).await;
    let expected = json!({"result": {"channels": {"news": {"num_clients": 3}}, "unanswered": []}});
    assert_eq!((status, body), (200, expected));

    // unsubscribe: an `unsub` push, and no publication after it.
    let (status, _) = api(b.addr, "k", "/api/unsubscribe", json!({"user": "ada", "channel": "news"})).await;
    assert_eq!(status, 200);
    for client in [&mut on_a, &mut on_b] {
        assert_eq!(next_push(client).await, "unsub news");
    }
    publisher.publish("news", "2").await.unwrap();
    assert_eq!(next_push(&mut other).await, "pub news 2");

    // The same through Redis, as a backend without HTTP does.
    redis.cli(&["FCALL", "switchyard_subscribe_user", "0", "ada", "chat:room"]).await;
    for client in [&mut on_a, &mut on_b] {
        assert_eq!(next_push(client).await, "sub chat:room");
    }
    redis.cli(&["FCALL", "switchyard_publish", "1", "chat:room", "4"]).await;
    for client in [&mut on_a, &mut on_b] {
        assert_eq!(next_push(client).await, "pub chat:room 4");
    }
    redis.cli(&["FCALL", "switchyard_unsubscribe_user", "0", "ada", "chat:room"]).await;
    for client in [&mut on_a, &mut on_b] {
        assert_eq!(next_push(client).await, "unsub chat:room");
    }

    // disconnect: every connection of the user, with the code and reason.
    let (status, _) =
        api(b.addr, "k", "/api/disconnect", json!({"user": "ada", "code": 4008, "reason": "go away"})).await;
    assert_eq!(status, 200);
    for client in [&mut on_a, &mut on_b] {
        assert_eq!(next_push(client).await, "disconnect 4008 go away");
        assert_eq!(next_push(client).await, "closed 4008");
    }
    // Others are untouched.
    publisher.publish("news", "5").await.unwrap();
    assert_eq!(next_push(&mut other).await, "pub news 5");
    // And through Redis, with the default code (4003: do not reconnect).
    let mut again = user(&b, "ada", json!({})).await;
    redis.cli(&["FCALL", "switchyard_disconnect_user", "0", "ada"]).await;
    assert_eq!(next_push(&mut again).await, "disconnect 4003 unauthorized");
    assert_eq!(next_push(&mut again).await, "closed 4003");
    // Bad requests are refused with 107.
    let (status, body) = api(a.addr, "k", "/api/disconnect", json!({"user": "ada", "code": 1234})).await;
    assert_eq!((status, body["error"]["code"].clone()), (400, json!(107)));
    let (status, body) = api(a.addr, "k", "/api/subscribe", json!({"user": "", "channel": "news"})).await;
    assert_eq!((status, body["error"]["code"].clone()), (400, json!(107)));
    assert!(redis.cli(&["FCALL", "switchyard_disconnect_user", "0"]).await.contains("usage"));
    a.wait_for_sample("switchyard_user_operations_total", "kind=\"disconnect\"", 1.0).await;
}

#[tokio::test]
async fn a_tokens_subs_claim_subscribes_at_connect() {
    let redis = RedisServer::start().await;
    let node = TestNode::start(config(&redis)).await;
    let publisher = user(&node, "pub", json!({})).await;
    publisher.publish("chat:room", "1").await.unwrap();
    let mut client = user(&node, "ada", json!({"subs": ["chat:room", "news", "nope:x"]})).await;
    // Each `sub` comes before the channel's publications; a channel that
    // cannot be joined (unknown namespace) is skipped.
    assert_eq!(next_push(&mut client).await, "sub chat:room");
    assert_eq!(next_push(&mut client).await, "sub news");
    publisher.publish("chat:room", "2").await.unwrap();
    publisher.publish("news", "3").await.unwrap();
    assert_eq!(next_push(&mut client).await, "pub chat:room 2");
    assert_eq!(next_push(&mut client).await, "pub news 3");
    // Subscribed as if by `subscribe`: the client may leave.
    client.unsubscribe("news").await.unwrap();
    publisher.publish("news", "4").await.unwrap();
    publisher.publish("chat:room", "5").await.unwrap();
    assert_eq!(next_push(&mut client).await, "pub chat:room 5");
}

#[tokio::test]
async fn user_operations_cross_the_shards_of_a_redis_cluster() {
    let cluster = RedisCluster::start().await;
    let node = |cluster: &RedisCluster| {
        let mut config = test_config();
        config.broker.redis_cluster = cluster.urls();
        config.auth.hmac_secret = Some(SECRET.into());
        config.api.key = Some("k".into());
        config
    };
    let a = TestNode::start(node(&cluster)).await;
    let b = TestNode::start(node(&cluster)).await;
    let mut on_a = user(&a, "ada", json!({})).await;
    let mut on_b = user(&b, "ada", json!({})).await;
    let (status, _) = api(a.addr, "k", "/api/subscribe", json!({"user": "ada", "channel": "news"})).await;
    assert_eq!(status, 200);
    for client in [&mut on_a, &mut on_b] {
        assert_eq!(next_push(client).await, "sub news");
    }
    // An FCALL on whichever shard: every node hears it.
    for (i, shard) in cluster.nodes.iter().enumerate() {
        let op = if i % 2 == 0 { "switchyard_unsubscribe_user" } else { "switchyard_subscribe_user" };
        let reply = shard.cli(&["FCALL", op, "0", "ada", "news"]).await;
        assert!(reply.trim().parse::<u64>().is_ok(), "{reply}");
        let expected = if i % 2 == 0 { "unsub news" } else { "sub news" };
        for client in [&mut on_a, &mut on_b] {
            assert_eq!(next_push(client).await, expected);
        }
    }
    // Three shards: unsubscribed, subscribed, unsubscribed.
    let (status, body) = api(b.addr, "k", "/api/channels", json!({})).await;
    assert_eq!((status, body), (200, json!({"result": {"channels": {}, "unanswered": []}})));
}

#[tokio::test]
async fn connections_per_user_are_capped() {
    let redis = RedisServer::start().await;
    let mut capped = config(&redis);
    capped.limits.max_connections_per_user = 2;
    let node = TestNode::start(capped).await;
    let _first = user(&node, "ada", json!({})).await;
    let second = user(&node, "ada", json!({})).await;
    let mut third = Client::connect(&node.ws_url(), Options::new(Encoding::Json)).await.unwrap();
    let refused = third.connect_command(&hs256("ada", json!({}))).await.unwrap_err();
    assert_eq!(refused.code(), Some(106));
    assert_eq!(third.closed().await.map(|(code, _)| code), Some(4009));
    // Other users are not affected; a closed connection frees its place.
    let _bob = user(&node, "bob", json!({})).await;
    second.close().await;
    within("a place for ada", async {
        loop {
            let client = Client::connect(&node.ws_url(), Options::new(Encoding::Json)).await.unwrap();
            if client.connect_command(&hs256("ada", json!({}))).await.is_ok() {
                return;
            }
        }
    })
    .await;
    node.wait_for_sample("switchyard_connections_refused_total", "reason=\"user_limit\"", 1.0).await;
}

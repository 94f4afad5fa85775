//! Presence and join/leave across real nodes on a real Redis: two nodes in
//! this process and one `switchyard` process that is SIGKILLed.

use serde_json::json;
use std::path::Path;
use switchyard_client::{Client, Encoding, Event, Options};
use switchyard_core::config::{Config, NamespaceConfig};
use switchyard_proto::v1::client_frame::Command;
use switchyard_proto::v1::server_frame::Message;
use switchyard_proto::v1::{ClientInfo, PresenceRequest, PresenceStatsRequest, PresenceStatsResult};
use switchyard_testkit::http::api;
use switchyard_testkit::token::{SECRET, hs256};
use switchyard_testkit::{GatewayProcess, RedisServer, TestNode, test_config, within};

const ROOM: &str = "room:r1";
const TTL: &str = "3s";

fn config(redis: &RedisServer) -> Config {
    let mut config = test_config();
    config.broker.redis_url = Some(redis.url());
    config.broker.presence_ttl = humantime::parse_duration(TTL).unwrap();
    config.auth.hmac_secret = Some(SECRET.into());
    config.api.key = Some("k".into());
    let room = NamespaceConfig { presence: true, join_leave: true, ..Default::default() };
    config.namespaces.insert("room".into(), room);
    config.namespaces.insert("quiet".into(), NamespaceConfig::default());
    config
}

async fn process(redis: &RedisServer) -> GatewayProcess {
    let url = redis.url();
    let env = [
        ("SWITCHYARD_REDIS_URL", url.as_str()),
        ("SWITCHYARD_AUTH_HMAC_SECRET", SECRET),
        ("SWITCHYARD_BROKER__PRESENCE_TTL", TTL),
        ("SWITCHYARD_NAMESPACES__ROOM__PRESENCE", "true"),
        ("SWITCHYARD_NAMESPACES__ROOM__JOIN_LEAVE", "true"),
    ];
    GatewayProcess::start(Path::new(env!("CARGO_BIN_EXE_switchyard")), &[], &env).await
}

/// A client of `user` on `url`, subscribed to the room; returns it and its
/// client id.
async fn member(url: &str, user: &str, encoding: Encoding) -> (Client, String) {
    let client = Client::connect(url, Options::new(encoding)).await.unwrap();
    let token = hs256(user, json!({"info": {"name": user.to_uppercase()}}));
    let connected = client.connect_command(&token).await.unwrap();
    client.subscribe(ROOM).await.unwrap();
    (client, connected.client)
}

/// The next join (true) or leave (false) on the room, skipping the rest.
async fn next_member_event(client: &mut Client) -> (bool, ClientInfo) {
    within("a join or leave", async {
        loop {
            match client.next_event().await.expect("the connection is open") {
                Event::Join(e) if e.channel == ROOM => return (true, e.info.unwrap()),
                Event::Leave(e) if e.channel == ROOM => return (false, e.info.unwrap()),
                Event::Closed(close) => panic!("closed: {close:?}"),
                _ => {}
            }
        }
    })
    .await
}

/// Nothing but `expected` joins and leaves, in any order, then a marker
/// publication: no event twice, none missing.
async fn exactly(client: &mut Client, publisher: &Client, expected: &[(bool, &str)]) {
    let mut got = Vec::new();
    for _ in expected {
        let (join, info) = next_member_event(client).await;
        got.push((join, info.client));
    }
    let marker = format!("marker-{}", rand_id());
    publisher.publish(ROOM, format!("\"{marker}\"")).await.unwrap();
    within("the marker", async {
        loop {
            match client.next_event().await.expect("open") {
                Event::Publication(p) if p.data == format!("\"{marker}\"").as_bytes() => return,
                Event::Join(e) | Event::Leave(e) => panic!("an extra join or leave: {e:?}"),
                _ => {}
            }
        }
    })
    .await;
    let mut want: Vec<(bool, String)> = expected.iter().map(|(j, c)| (*j, c.to_string())).collect();
    got.sort();
    want.sort();
    assert_eq!(got, want);
}

fn rand_id() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
}

async fn presence_of(client: &Client) -> Vec<(String, String, String)> {
    let Message::Presence(result) =
        client.command(Command::Presence(PresenceRequest { channel: ROOM.into() })).await.unwrap()
    else {
        panic!("not a presence reply")
    };
    let mut members: Vec<_> = result
        .clients
        .into_iter()
        .map(|(id, info)| {
            assert_eq!(id, info.client);
            (info.client, info.user, String::from_utf8(info.info.to_vec()).unwrap())
        })
        .collect();
    members.sort();
    members
}

#[tokio::test]
async fn presence_and_join_leave_across_three_nodes_and_a_node_death() {
    let redis = RedisServer::start().await;
    let a = TestNode::start(config(&redis)).await;
    let b = TestNode::start(config(&redis)).await;
    let mut doomed = process(&redis).await;

    let publisher = Client::connect(&a.ws_url(), Options::new(Encoding::Json)).await.unwrap();
    // Each subscriber gets its own join, after its subscribe reply.
    let (mut ada, ada_id) = member(&a.ws_url(), "ada", Encoding::Json).await;
    exactly(&mut ada, &publisher, &[(true, &ada_id)]).await;
    let (mut ada2, ada2_id) = member(&b.ws_url(), "ada", Encoding::Protobuf).await;
    exactly(&mut ada, &publisher, &[(true, &ada2_id)]).await;
    exactly(&mut ada2, &publisher, &[(true, &ada2_id)]).await;
    let (mut bob, bob_id) = member(&doomed.ws_url(), "bob", Encoding::Json).await;
    for client in [&mut ada, &mut ada2, &mut bob] {
        exactly(client, &publisher, &[(true, &bob_id)]).await;
    }

    // Everyone, with the token's info, from any node; users counted once.
    let mut all = vec![
        (ada_id.clone(), "ada".to_string(), r#"{"name":"ADA"}"#.to_string()),
        (ada2_id.clone(), "ada".to_string(), r#"{"name":"ADA"}"#.to_string()),
        (bob_id.clone(), "bob".to_string(), r#"{"name":"BOB"}"#.to_string()),
    ];
    all.sort();
    assert_eq!(presence_of(&ada).await, all);
    assert_eq!(presence_of(&ada2).await, all);
    let stats = ada.command(Command::PresenceStats(PresenceStatsRequest { channel: ROOM.into() })).await.unwrap();
    assert_eq!(stats, Message::PresenceStats(PresenceStatsResult { num_clients: 3, num_users: 2 }));
    let (status, body) = api(b.addr, "k", "/api/presence_stats", json!({"channel": ROOM})).await;
    assert_eq!((status, body), (200, json!({"result": {"num_clients": 3, "num_users": 2}})));
    let (status, body) = api(a.addr, "k", "/api/presence", json!({"channel": ROOM})).await;
    assert_eq!(status, 200);
    assert_eq!(body["result"]["clients"][&bob_id], json!({"client": bob_id, "user": "bob", "info": {"name": "BOB"}}));

    // The third node dies: once its client's entry expires, whoever finds
    // it so announces one leave, which both others get.
    doomed.kill();
    exactly(&mut ada, &publisher, &[(false, &bob_id)]).await;
    exactly(&mut ada2, &publisher, &[(false, &bob_id)]).await;
    // The live clients' entries, older than the dead one's, are there:
    // their nodes refreshed them past the TTL.
    let live: Vec<String> = presence_of(&ada).await.into_iter().map(|m| m.0).collect();
    let mut expected = vec![ada_id.clone(), ada2_id.clone()];
    expected.sort();
    assert_eq!(live, expected);

    // Unsubscribing removes the entry at once and says so once.
    ada2.unsubscribe(ROOM).await.unwrap();
    let live: Vec<String> = presence_of(&ada).await.into_iter().map(|m| m.0).collect();
    assert_eq!(live, vec![ada_id.clone()]);
    exactly(&mut ada, &publisher, &[(false, &ada2_id)]).await;
    // A closed connection too.
    drop(ada2);
    let (cyd, cyd_id) = member(&b.ws_url(), "cyd", Encoding::Json).await;
    exactly(&mut ada, &publisher, &[(true, &cyd_id)]).await;
    cyd.close().await;
    exactly(&mut ada, &publisher, &[(false, &cyd_id)]).await;

    // A namespace without presence answers 107.
    let error = ada.command(Command::Presence(PresenceRequest { channel: "quiet:x".into() })).await.unwrap_err();
    assert_eq!(error.code(), Some(107));
}

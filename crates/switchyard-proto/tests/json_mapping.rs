//! The JSON mapping of the wire types: the fixed shapes of the contract,
//! round trips, and decoders that never panic on any input.

use bytes::Bytes;
use proptest::prelude::*;
use prost::Message as _;
use switchyard_proto::json::{self, FrameError};
use switchyard_proto::v1::{
    ClientFrame, ClientInfo, ConnectResult, Envelope, Publication, PublishRequest, PublishResult, ServerFrame,
    SubscribeRequest, SubscribeResult, client_frame::Command, server_frame::Message,
};

fn server(id: u32, message: Message) -> String {
    String::from_utf8(json::encode_server_frame(&ServerFrame { id, message: Some(message) })).unwrap()
}

#[test]
fn fixed_client_shapes_decode() {
    let frame = json::decode_client_frame(
        r#"{"id": 2, "subscribe": {"channel": "news", "recover": true, "epoch": "e1", "offset": 41}}"#,
    )
    .unwrap();
    assert_eq!(frame.id, 2);
    assert_eq!(
        frame.command,
        Some(Command::Subscribe(SubscribeRequest {
            channel: "news".into(),
            recover: true,
            epoch: "e1".into(),
            offset: 41,
            ..Default::default()
        }))
    );
    let frame = json::decode_client_frame(r#"{"id": 4, "publish": {"channel": "chat:room1", "data": {"text": "hi"}}}"#)
        .unwrap();
    let Some(Command::Publish(p)) = frame.command else { panic!() };
    assert_eq!(&p.data[..], br#"{"text": "hi"}"#);
    // The id may come last, and unknown fields inside a command are ignored.
    let frame = json::decode_client_frame(r#"{"unsubscribe": {"channel": "news", "future": 1}, "id": 3}"#).unwrap();
    assert_eq!(frame.id, 3);
    let frame = json::decode_client_frame(r#"{"ack": {"channel": "news", "offset": 42}}"#).unwrap();
    assert_eq!(frame.id, 0);
    assert!(matches!(frame.command, Some(Command::Ack(_))));
    assert!(matches!(json::decode_client_frame(r#"{"pong": {}}"#).unwrap().command, Some(Command::Pong(_))));
}

#[test]
fn fixed_server_shapes_encode() {
    let connect = ConnectResult { client: "c1".into(), session: "s1".into(), ping_interval: 25, ..Default::default() };
    assert_eq!(
        server(1, Message::Connect(connect)),
        r#"{"id":1,"connect":{"client":"c1","session":"s1","ping_interval":25}}"#
    );
    let subscribed =
        SubscribeResult { epoch: Some("e1".into()), offset: Some(41), recovered: Some(true), ..Default::default() };
    assert_eq!(
        server(2, Message::Subscribe(subscribed)),
        r#"{"id":2,"subscribe":{"epoch":"e1","offset":41,"recovered":true}}"#
    );
    let published = PublishResult { epoch: Some("e1".into()), offset: Some(42), receipt: None };
    assert_eq!(server(4, Message::Publish(published)), r#"{"id":4,"publish":{"epoch":"e1","offset":42}}"#);
    let publication = Publication {
        channel: "news".into(),
        data: Bytes::from_static(br#"{"text":"hi"}"#),
        offset: Some(42),
        epoch: Some("e1".into()),
        ..Default::default()
    };
    assert_eq!(
        server(0, Message::Pub(publication)),
        r#"{"pub":{"channel":"news","data":{"text":"hi"},"offset":42,"epoch":"e1"}}"#
    );
    // Tags ride along; a delta is a JSON string and says so.
    let tagged = Publication {
        channel: "prices".into(),
        data: Bytes::from_static(b"x\n3:abc1;"),
        tags: [("ticker".to_owned(), "BTC".to_owned())].into(),
        delta: true,
        ..Default::default()
    };
    let text = server(0, Message::Pub(tagged.clone()));
    assert_eq!(text, r#"{"pub":{"channel":"prices","data":"x\n3:abc1;","tags":{"ticker":"BTC"},"delta":true}}"#);
    assert_eq!(json::decode_server_frame(&text).unwrap().message, Some(Message::Pub(tagged)));
    // 64-bit integers stay numbers, whatever proto3's JSON mapping does.
    let published = PublishResult { epoch: Some("e".into()), offset: Some(u64::MAX), receipt: None };
    assert!(server(5, Message::Publish(published)).contains(r#""offset":18446744073709551615"#));
}

#[test]
fn presence_and_server_subscription_shapes() {
    use switchyard_proto::v1::{
        ClientFrame, ClientInfo, MemberEvent, PresenceResult, PresenceStatsResult, ServerSubscribe, ServerUnsubscribe,
    };
    let ada = ClientInfo { client: "n1-7".into(), user: "42".into(), info: Bytes::from_static(br#"{"name":"Ada"}"#) };
    let anonymous = ClientInfo { client: "n1-8".into(), ..Default::default() };
    let presence = PresenceResult { clients: [("n1-7".to_owned(), ada.clone())].into_iter().collect() };
    assert_eq!(
        server(8, Message::Presence(presence)),
        r#"{"id":8,"presence":{"clients":{"n1-7":{"client":"n1-7","user":"42","info":{"name":"Ada"}}}}}"#
    );
    assert_eq!(server(8, Message::Presence(PresenceResult::default())), r#"{"id":8,"presence":{"clients":{}}}"#);
    let stats = PresenceStatsResult { num_clients: 3, num_users: 2 };
    assert_eq!(
        server(9, Message::PresenceStats(stats)),
        r#"{"id":9,"presence_stats":{"num_clients":3,"num_users":2}}"#
    );
    let join = MemberEvent { channel: "chat:r1".into(), info: Some(anonymous) };
    assert_eq!(
        server(0, Message::Join(join.clone())),
        r#"{"join":{"channel":"chat:r1","info":{"client":"n1-8","user":""}}}"#
    );
    assert_eq!(
        server(0, Message::Leave(join)),
        r#"{"leave":{"channel":"chat:r1","info":{"client":"n1-8","user":""}}}"#
    );
    let sub = ServerSubscribe { channel: "news".into(), epoch: Some("e1".into()), offset: Some(41), recovered: None };
    assert_eq!(server(0, Message::Sub(sub)), r#"{"sub":{"channel":"news","epoch":"e1","offset":41}}"#);
    let sub = ServerSubscribe { channel: "news".into(), ..Default::default() };
    assert_eq!(server(0, Message::Sub(sub)), r#"{"sub":{"channel":"news"}}"#);
    assert_eq!(
        server(0, Message::Unsub(ServerUnsubscribe { channel: "news".into() })),
        r#"{"unsub":{"channel":"news"}}"#
    );
    let frame: ClientFrame = json::decode_client_frame(r#"{"id": 8, "presence": {"channel": "chat:r1"}}"#).unwrap();
    assert!(
        matches!(frame.command, Some(switchyard_proto::v1::client_frame::Command::Presence(p)) if p.channel == "chat:r1")
    );
    let frame = json::decode_client_frame(r#"{"id": 9, "presence_stats": {"channel": "chat:r1"}}"#).unwrap();
    assert!(matches!(frame.command, Some(switchyard_proto::v1::client_frame::Command::PresenceStats(_))));
}

#[test]
fn binary_payloads_go_out_as_data_b64_and_come_back() {
    let publication = Publication { channel: "c".into(), data: Bytes::from_static(&[0, 255, 1]), ..Default::default() };
    let text = server(0, Message::Pub(publication.clone()));
    assert_eq!(text, r#"{"pub":{"channel":"c","data_b64":"AP8B"}}"#);
    let decoded = json::decode_server_frame(&text).unwrap();
    assert_eq!(decoded.message, Some(Message::Pub(publication)));
}

#[test]
fn frame_errors_keep_the_id() {
    assert_eq!(
        json::decode_client_frame(r#"{"id": 9, "nope": {}}"#).unwrap_err(),
        FrameError::Unknown { id: 9, kind: "nope".into() }
    );
    assert!(matches!(
        json::decode_client_frame(r#"{"id": 9, "subscribe": 5}"#),
        Err(FrameError::Invalid { id: 9, .. })
    ));
    assert!(matches!(
        json::decode_client_frame(r#"{"id": 9, "a": {}, "b": {}}"#),
        Err(FrameError::Shape { id: 9, .. })
    ));
    assert!(matches!(json::decode_client_frame(r#"{"id": "9", "pong": {}}"#), Err(FrameError::Invalid { id: 0, .. })));
    assert!(matches!(json::decode_client_frame("nope"), Err(FrameError::Malformed(_))));
    assert!(matches!(json::decode_client_frame("{\"id\": 1} trailing"), Err(FrameError::Malformed(_))));
}

fn arb_json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        "[a-z0-9 é\"\\\\]{0,8}".prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
            prop::collection::btree_map("[a-z_]{1,8}", inner, 0..4)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn json_decoder_never_panics_on_bytes(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        if let Ok(text) = std::str::from_utf8(&bytes) {
            let _ = json::decode_client_frame(text);
            let _ = json::decode_server_frame(text);
        }
    }

    #[test]
    fn json_decoder_never_panics_on_json(value in arb_json_value(), kind in "(id|connect|subscribe|unsubscribe|publish|ack|pong|pub|x)") {
        let frame = serde_json::json!({ "id": 1, kind: value });
        let text = frame.to_string();
        let _ = json::decode_client_frame(&text);
        let _ = json::decode_server_frame(&text);
    }

    #[test]
    fn protobuf_decoders_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = ClientFrame::decode(&bytes[..]);
        let _ = ServerFrame::decode(&bytes[..]);
        let _ = Envelope::decode(&bytes[..]);
    }

    #[test]
    fn publish_data_round_trips_verbatim(value in arb_json_value(), id in 1u32..) {
        let data = serde_json::to_string_pretty(&value).unwrap();
        let frame = ClientFrame {
            id,
            command: Some(Command::Publish(PublishRequest { channel: "c".into(), data: Bytes::from(data.clone()), ..Default::default() })),
        };
        let text = String::from_utf8(json::encode_client_frame(&frame).unwrap()).unwrap();
        let decoded = json::decode_client_frame(&text).unwrap();
        prop_assert_eq!(decoded, frame);
    }

    #[test]
    fn publications_round_trip(data in prop::collection::vec(any::<u8>(), 1..64), offset in any::<Option<u64>>(), user in "[a-z]{0,4}") {
        let publication = Publication {
            channel: "c".into(),
            data: Bytes::from(data),
            offset,
            epoch: offset.map(|_| "e".to_owned()),
            info: Some(ClientInfo { client: "x".into(), user, ..Default::default() }),
            ..Default::default()
        };
        let text = server(0, Message::Pub(publication.clone()));
        let decoded = json::decode_server_frame(&text).unwrap();
        // A payload that is valid JSON travels as `data` and is read back
        // trimmed of surrounding white space, as any JSON value.
        let Some(Message::Pub(back)) = decoded.message else { panic!("not a pub") };
        match json::raw::as_json(&publication.data) {
            Some(raw) => prop_assert_eq!(&back.data[..], raw.get().as_bytes()),
            None => prop_assert_eq!(&back.data, &publication.data),
        }
        prop_assert_eq!(back.offset, publication.offset);
        prop_assert_eq!(back.info, publication.info);
    }
}

#[test]
fn rpc_has_the_fixed_shapes() {
    let frame =
        json::decode_client_frame(r#"{"id": 10, "rpc": {"method": "profile.get", "data": {"id": 7}}}"#).unwrap();
    let Some(Command::Rpc(rpc)) = frame.command else { panic!("{frame:?}") };
    assert_eq!((rpc.method.as_str(), &rpc.data[..]), ("profile.get", &br#"{"id": 7}"#[..]));
    let reply = ServerFrame {
        id: 10,
        message: Some(Message::Rpc(switchyard_proto::v1::RpcResult { data: r#"{"name":"Ada"}"#.into() })),
    };
    assert_eq!(json::encode_server_frame(&reply), br#"{"id":10,"rpc":{"data":{"name":"Ada"}}}"#);
    // Connect data goes to the connect proxy; absent data is left out.
    let frame = json::decode_client_frame(r#"{"id": 1, "connect": {"data": {"device": "ios"}}}"#).unwrap();
    let Some(Command::Connect(connect)) = frame.command else { panic!() };
    assert_eq!(&connect.data[..], br#"{"device": "ios"}"#);
    let frame = switchyard_proto::v1::ClientFrame { id: 1, command: Some(Command::Connect(connect_without_data())) };
    assert_eq!(json::encode_client_frame(&frame).unwrap(), br#"{"id":1,"connect":{"token":"t","resume":""}}"#);
}

fn connect_without_data() -> switchyard_proto::v1::ConnectRequest {
    switchyard_proto::v1::ConnectRequest { token: "t".into(), ..Default::default() }
}

//! One contract per kind of shared state, and every implementation run
//! through the same cases: the in-memory one (a single node), the Redis
//! one on a real `redis-server`, and the same on a real 3-master Redis
//! Cluster (sharded pub/sub, keys spread over shards). A case states what the trait promises, not
//! how an implementation keeps it.

use std::sync::Arc;
use std::time::Duration;
use switchyard_broker::{
    Announce, Change, NodeInfo, PublicationSink, PublishOptions, RedisSettings, RedisTarget, RedisTls, Stores,
    StreamPosition, unix_seconds,
};
use switchyard_proto::v1::control::Op;
use switchyard_proto::v1::{ClientInfo, Control, Envelope, UserChannel};
use switchyard_testkit::{RedisCluster, RedisServer, within};
use tokio::sync::mpsc;

/// What reaches a node through its sink.
#[derive(Debug)]
enum Delivered {
    Envelope(Box<Envelope>),
    Control(Control),
}

struct Sink(mpsc::UnboundedSender<Delivered>);

impl PublicationSink for Sink {
    fn deliver(&self, envelope: Envelope) {
        let _ = self.0.send(Delivered::Envelope(Box::new(envelope)));
    }
    fn control(&self, message: Control) {
        let _ = self.0.send(Delivered::Control(message));
    }
}

const HISTORY: PublishOptions = PublishOptions {
    history_size: 10,
    history_ttl: Duration::from_secs(600),
    history_meta_ttl: Duration::from_secs(3600),
};

/// One backend under test: its stores, what its sink received, and the
/// Redis it runs on (kept alive for the case).
struct Backend {
    name: &'static str,
    stores: Stores,
    delivered: mpsc::UnboundedReceiver<Delivered>,
    _redis: Option<RedisServer>,
    _cluster: Option<RedisCluster>,
}

impl Backend {
    async fn next(&mut self, what: &str) -> Delivered {
        within(what, self.delivered.recv()).await.expect("the sink is alive")
    }

    /// The next presence event (join or leave) on `channel`, skipping
    /// anything else.
    async fn next_event(&mut self, channel: &str) -> (bool, ClientInfo) {
        let e = self.next_envelope(channel).await;
        match (e.join, e.leave) {
            (Some(info), _) => (true, info),
            (None, Some(info)) => (false, info),
            _ => unreachable!("next_envelope returns presence events"),
        }
    }

    /// The next presence event's Envelope on `channel`.
    async fn next_envelope(&mut self, channel: &str) -> Envelope {
        loop {
            if let Delivered::Envelope(e) = self.next("a presence event").await
                && e.channel == channel
                && (e.join.is_some() || e.leave.is_some())
            {
                return *e;
            }
        }
    }

    /// Nothing more arrives before `marker` (published after the events
    /// under test, so it comes after anything they caused).
    async fn nothing_before_marker(&mut self, channel: &str) {
        let marker = Envelope { channel: channel.into(), data: "marker".into(), ..Default::default() };
        self.stores.broker.publish(marker, PublishOptions::default()).await.unwrap();
        loop {
            match self.next("the marker").await {
                Delivered::Envelope(e) if e.data == "marker" => return,
                Delivered::Envelope(e) if e.join.is_some() || e.leave.is_some() => {
                    panic!("{}: an extra presence event: {e:?}", self.name)
                }
                _ => {}
            }
        }
    }
}

async fn on_redis(target: RedisTarget) -> (Stores, mpsc::UnboundedReceiver<Delivered>) {
    let settings = RedisSettings {
        target,
        prefix: "contract".into(),
        tls: RedisTls::default(),
        namespaces: vec![("chat".into(), HISTORY)],
        node: "n1".into(),
        idempotency_window: Duration::from_secs(300),
        health_timeout: Duration::from_secs(2),
    };
    let (tx, delivered) = mpsc::unbounded_channel();
    (Stores::redis(settings, Arc::new(Sink(tx))).await.expect("connect to Redis"), delivered)
}

async fn backends() -> Vec<Backend> {
    let (tx, delivered) = mpsc::unbounded_channel();
    let stores = Stores::memory(Arc::new(Sink(tx)), Duration::from_secs(300));
    let memory = Backend { name: "memory", stores, delivered, _redis: None, _cluster: None };
    let redis = RedisServer::start().await;
    let (stores, delivered) = on_redis(RedisTarget::Standalone(redis.url())).await;
    let standalone = Backend { name: "redis", stores, delivered, _redis: Some(redis), _cluster: None };
    let cluster = RedisCluster::start().await;
    let (stores, delivered) = on_redis(RedisTarget::Cluster(cluster.urls())).await;
    let clustered = Backend { name: "redis-cluster", stores, delivered, _redis: None, _cluster: Some(cluster) };
    vec![memory, standalone, clustered]
}

fn member(client: &str, user: &str) -> ClientInfo {
    ClientInfo { client: client.into(), user: user.into(), info: r#"{"name":"N"}"#.into() }
}

#[tokio::test]
async fn broker_delivers_publications_in_order_and_keeps_history() {
    for mut b in backends().await {
        b.stores.broker.subscribe(&["chat:c".into()]).await.unwrap();
        let mut positions = Vec::new();
        for n in 1..=3 {
            let envelope = Envelope { channel: "chat:c".into(), data: n.to_string().into(), ..Default::default() };
            positions.push(b.stores.broker.publish(envelope, HISTORY).await.unwrap());
        }
        assert_eq!(positions.iter().map(|p| p.offset).collect::<Vec<_>>(), [1, 2, 3], "{}", b.name);
        for n in 1..=3u64 {
            let Delivered::Envelope(e) = b.next("a publication").await else { panic!("{}: not a publication", b.name) };
            assert_eq!((e.offset, e.data.clone()), (n, n.to_string().into()), "{}", b.name);
        }
        let since = StreamPosition::new(positions[0].epoch.clone(), 1);
        let history = b.stores.broker.history("chat:c", Some(&since), 10, HISTORY).await.unwrap();
        assert!(history.complete, "{}", b.name);
        assert_eq!(history.publications.iter().map(|e| e.offset).collect::<Vec<_>>(), [2, 3], "{}", b.name);
        assert_eq!(history.position, positions[2], "{}", b.name);
    }
}

#[tokio::test]
async fn broker_control_messages_reach_every_node_and_the_named_one() {
    for mut b in backends().await {
        let message = |user: &str| Control {
            op: Some(Op::SubscribeUser(UserChannel { user: user.into(), channel: "news".into() })),
        };
        b.stores.broker.send_control(None, message("to all")).await.unwrap();
        b.stores.broker.send_control(Some("n1"), message("to n1")).await.unwrap();
        // Two channels: no order between them.
        let mut got = Vec::new();
        for _ in 0..2 {
            match b.next("a control message").await {
                Delivered::Control(Control { op: Some(Op::SubscribeUser(u)) }) => got.push(u.user),
                other => panic!("{}: {other:?}", b.name),
            }
        }
        got.sort();
        assert_eq!(got, ["to all", "to n1"], "{}", b.name);
    }
}

#[tokio::test]
async fn sessions_are_taken_once_and_never_revived() {
    for b in backends().await {
        let sessions = &b.stores.sessions;
        let ttl = Duration::from_secs(60);
        sessions.save("t1", b"one", ttl, false).await.unwrap();
        sessions.save("t1", b"two", ttl, true).await.unwrap();
        // Reading leaves it where it is.
        assert_eq!(sessions.get("t1").await.unwrap().as_deref(), Some(&b"two"[..]), "{}", b.name);
        assert_eq!(sessions.get("t1").await.unwrap().as_deref(), Some(&b"two"[..]), "{}: read twice", b.name);
        assert_eq!(sessions.take("t1").await.unwrap().as_deref(), Some(&b"two"[..]), "{}", b.name);
        assert_eq!(sessions.get("t1").await.unwrap(), None, "{}: read after the take", b.name);
        assert_eq!(sessions.take("t1").await.unwrap(), None, "{}: taken twice", b.name);
        sessions.save("t1", b"late", ttl, true).await.unwrap();
        assert_eq!(sessions.take("t1").await.unwrap(), None, "{}: revived by an update", b.name);
        assert_eq!(sessions.take("never").await.unwrap(), None, "{}", b.name);
    }
}

#[tokio::test]
async fn a_lease_has_one_holder_until_it_expires_or_is_released() {
    for b in backends().await {
        let leases = &b.stores.leases;
        let long = Duration::from_secs(60);
        assert!(leases.acquire("orders:0", "a", long).await.unwrap(), "{}", b.name);
        assert!(!leases.acquire("orders:0", "b", long).await.unwrap(), "{}: taken", b.name);
        assert!(leases.acquire("orders:0", "a", long).await.unwrap(), "{}: renewed by its holder", b.name);
        assert!(leases.acquire("orders:1", "b", long).await.unwrap(), "{}: another lease", b.name);
        leases.release("orders:0", "b").await.unwrap();
        assert!(!leases.acquire("orders:0", "b", long).await.unwrap(), "{}: released by another", b.name);
        leases.release("orders:0", "a").await.unwrap();
        assert!(leases.acquire("orders:0", "b", long).await.unwrap(), "{}: released", b.name);
        // One that is not renewed goes to the next who asks once it expires.
        assert!(leases.acquire("orders:2", "a", Duration::from_millis(200)).await.unwrap());
        within("the lease to expire", async {
            while !leases.acquire("orders:2", "b", long).await.unwrap() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        assert!(!leases.acquire("orders:2", "a", long).await.unwrap(), "{}: expired, then taken", b.name);
    }
}

#[tokio::test]
async fn the_registry_lists_live_nodes_only() {
    for b in backends().await {
        let now = unix_seconds();
        let node = |name: &str, expires_at: u64| NodeInfo {
            name: name.into(),
            version: "test".into(),
            address: "127.0.0.1:1".into(),
            connections: 1,
            subscriptions: 2,
            channels: 3,
            started_at: now - 10,
            updated_at: now,
            expires_at,
            ready: true,
            messages_in: 0,
            messages_out: 0,
            broker_up: true,
            consumers: Default::default(),
        };
        b.stores.registry.register(&node("b-live", now + 60)).await.unwrap();
        b.stores.registry.register(&node("a-live", now + 60)).await.unwrap();
        b.stores.registry.register(&node("gone", now - 1)).await.unwrap();
        let names: Vec<String> = b.stores.registry.nodes().await.unwrap().into_iter().map(|n| n.name).collect();
        assert_eq!(names, ["a-live", "b-live"], "{}", b.name);
    }
}

#[tokio::test]
async fn presence_lists_members_and_announces_each_event_once() {
    for mut b in backends().await {
        let presence = b.stores.presence.clone();
        let ttl = Duration::from_secs(60);
        let loud = Announce::Clients;
        b.stores.broker.subscribe(&["room".into()]).await.unwrap();
        let first = presence.add("room", &[member("c1", "u1"), member("c2", "u1")], ttl, loud).await.unwrap();
        assert_eq!(first.len(), 2, "{}: each new entry is reported", b.name);
        // Adding again (a refresh by a node) is not a second join.
        assert!(presence.add("room", &[member("c1", "u1")], ttl, loud).await.unwrap().is_empty(), "{}", b.name);
        presence.add("room", &[member("c3", "u2")], ttl, loud).await.unwrap();
        let mut joined = Vec::new();
        for _ in 0..3 {
            let (join, info) = b.next_event("room").await;
            assert!(join, "{}", b.name);
            joined.push(info);
        }
        joined.sort_by(|x, y| x.client.cmp(&y.client));
        assert_eq!(joined, [member("c1", "u1"), member("c2", "u1"), member("c3", "u2")], "{}", b.name);
        b.nothing_before_marker("room").await;

        let (mut members, _) = presence.members("room", loud).await.unwrap();
        members.sort_by(|x, y| x.client.cmp(&y.client));
        assert_eq!(members, joined, "{}", b.name);
        assert_eq!(switchyard_broker::presence::stats(&members), (3, 2), "{}: users counted once", b.name);

        let removed = presence.remove("room", "c2", loud).await.unwrap();
        assert_eq!(removed, [Change { joined: false, member: member("c2", "u1") }], "{}", b.name);
        assert!(presence.remove("room", "c2", loud).await.unwrap().is_empty(), "{}", b.name);
        assert_eq!(b.next_event("room").await, (false, member("c2", "u1")), "{}", b.name);
        b.nothing_before_marker("room").await;
        let clients: Vec<String> =
            presence.members("room", loud).await.unwrap().0.into_iter().map(|m| m.client).collect();
        assert!(!clients.contains(&"c2".to_string()), "{}", b.name);

        // Quietly, nothing is said, and the caller is still told.
        b.stores.broker.subscribe(&["quiet".into()]).await.unwrap();
        assert_eq!(presence.add("quiet", &[member("q", "u")], ttl, Announce::Quietly).await.unwrap().len(), 1);
        assert_eq!(presence.remove("quiet", "q", Announce::Quietly).await.unwrap().len(), 1);
        assert!(presence.members("quiet", Announce::Quietly).await.unwrap().0.is_empty(), "{}", b.name);
        b.nothing_before_marker("quiet").await;
    }
}

#[tokio::test]
async fn presence_per_user_announces_a_users_first_arrival_and_last_departure() {
    for mut b in backends().await {
        let presence = b.stores.presence.clone();
        let ttl = Duration::from_secs(60);
        let users = Announce::Users;
        let channel = "pusher:1/presence-r";
        b.stores.broker.subscribe(&[channel.into()]).await.unwrap();
        let first = presence.add(channel, &[member("1.1", "ada")], ttl, users).await.unwrap();
        assert_eq!(first, [Change { joined: true, member: member("1.1", "ada") }], "{}", b.name);
        // A second connection of the same user is no arrival.
        assert!(presence.add(channel, &[member("1.2", "ada")], ttl, users).await.unwrap().is_empty(), "{}", b.name);
        let join = b.next_envelope(channel).await;
        assert_eq!(join.join, Some(member("1.1", "ada")), "{}", b.name);
        assert_eq!(join.except_socket, "1.1", "{}: not announced to the connection that brought it", b.name);
        b.nothing_before_marker(channel).await;
        assert!(presence.remove(channel, "1.1", users).await.unwrap().is_empty(), "{}: ada is still here", b.name);
        b.nothing_before_marker(channel).await;
        let last = presence.remove(channel, "1.2", users).await.unwrap();
        assert_eq!(last, [Change { joined: false, member: member("1.2", "ada") }], "{}", b.name);
        assert_eq!(b.next_event(channel).await, (false, member("1.2", "ada")), "{}", b.name);
        // She comes back: an arrival again.
        assert_eq!(presence.add(channel, &[member("1.3", "ada")], ttl, users).await.unwrap().len(), 1, "{}", b.name);
    }
}

#[tokio::test]
async fn presence_entries_expire_unless_refreshed_and_leave_once() {
    for mut b in backends().await {
        let presence = b.stores.presence.clone();
        b.stores.broker.subscribe(&["room".into()]).await.unwrap();
        let short = Duration::from_millis(300);
        let long = Duration::from_secs(60);
        let loud = Announce::Clients;
        presence.add("room", &[member("kept", "u1")], long, loud).await.unwrap();
        presence.add("room", &[member("dying", "u2")], short, loud).await.unwrap();
        for _ in 0..2 {
            assert!(b.next_event("room").await.0, "{}", b.name);
        }
        // A refresh extends what is there and names what is not.
        let refreshed = presence.refresh("room", &["kept".into(), "unknown".into()], long, loud).await.unwrap();
        assert_eq!(refreshed.missing, ["unknown"], "{}", b.name);
        // Whoever reads presence after the expiry finds it gone; many
        // readers, one leave, reported to one of them.
        let mut reported = Vec::new();
        within("the entry to expire", async {
            loop {
                let (members, changes) = presence.members("room", loud).await.unwrap();
                reported.extend(changes);
                if !members.iter().any(|m| m.client == "dying") {
                    break;
                }
                tokio::task::yield_now().await;
            }
        })
        .await;
        for _ in 0..5 {
            reported.extend(presence.members("room", loud).await.unwrap().1);
        }
        assert_eq!(reported, [Change { joined: false, member: member("dying", "u2") }], "{}", b.name);
        assert_eq!(b.next_event("room").await, (false, member("dying", "u2")), "{}", b.name);
        b.nothing_before_marker("room").await;
        let refreshed = presence.refresh("room", &["dying".into()], long, loud).await.unwrap();
        assert_eq!(refreshed.missing, ["dying"], "{}: a refresh does not bring an entry back", b.name);
        let clients: Vec<String> =
            presence.members("room", loud).await.unwrap().0.into_iter().map(|m| m.client).collect();
        assert_eq!(clients, ["kept"], "{}", b.name);
    }
}

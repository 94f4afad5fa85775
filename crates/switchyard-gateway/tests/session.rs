//! The Rust client's `Session` against real nodes: a node SIGKILLed under a
//! steady flow leaves the application with every offset once, in order;
//! `wss://` with rustls; commands that settle within their timeout.

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use switchyard_client::{ClientError, Encoding, Options, Session, SessionEvent, SessionOptions, SessionState};
use switchyard_testkit::redis::make_certificates;
use switchyard_testkit::{GatewayProcess, RedisServer, TestNode, test_config, within};

async fn gateway(redis: &RedisServer) -> GatewayProcess {
    let url = redis.url();
    let env = [
        ("SWITCHYARD_REDIS_URL", url.as_str()),
        ("SWITCHYARD_NAMESPACES__CHAT__HISTORY_SIZE", "10000"),
        ("SWITCHYARD_NAMESPACES__CHAT__HISTORY_TTL", "10m"),
    ];
    GatewayProcess::start(Path::new(env!("CARGO_BIN_EXE_switchyard")), &[], &env).await
}

fn options(encoding: Encoding) -> SessionOptions {
    let mut options = SessionOptions::new(Options::new(encoding));
    options.min_reconnect_delay = Duration::from_millis(50);
    options.max_reconnect_delay = Duration::from_millis(500);
    options.ack_interval = Duration::from_millis(50);
    options
}

/// Offsets of the publications of `channel` until `last`, and the gaps.
async fn offsets_until(session: &mut Session, last: u64) -> (Vec<u64>, usize) {
    let (mut seen, mut gaps) = (Vec::new(), 0);
    within("the last offset", async {
        while seen.last() != Some(&last) {
            match session.next_event().await.expect("the session is open") {
                SessionEvent::Publication(p) => seen.push(p.offset.unwrap_or(0)),
                SessionEvent::Gap(_) => gaps += 1,
                _ => {}
            }
        }
    })
    .await;
    (seen, gaps)
}

#[tokio::test]
async fn a_node_killed_under_a_steady_flow_costs_the_application_nothing() {
    for encoding in [Encoding::Json, Encoding::Protobuf] {
        let redis = RedisServer::start().await;
        let mut doomed = gateway(&redis).await;
        let survivor = gateway(&redis).await;
        let mut session = Session::start(vec![doomed.ws_url(), survivor.ws_url()], options(encoding));
        session.connected().await.unwrap();
        session.subscribe("chat:flow").await.unwrap();
        for n in 1..=100u64 {
            redis.cli(&["FCALL", "switchyard_publish", "1", "chat:flow", &n.to_string()]).await;
        }
        let (first, _) = offsets_until(&mut session, 100).await;
        doomed.kill();
        for n in 101..=300u64 {
            redis.cli(&["FCALL", "switchyard_publish", "1", "chat:flow", &n.to_string()]).await;
        }
        let (rest, gaps) = offsets_until(&mut session, 300).await;
        let all: Vec<u64> = first.into_iter().chain(rest).collect();
        assert_eq!(all, (1..=300).collect::<Vec<_>>(), "{encoding:?}");
        assert_eq!(gaps, 0);
        assert_eq!(session.state(), SessionState::Connected);
        session.close().await;
    }
}

#[tokio::test]
async fn wss_with_rustls_and_commands_that_settle() {
    let scratch = switchyard_testkit::scratch::ScratchDir::new("session-tls");
    let dir = scratch.path();
    make_certificates(dir);
    let mut config = test_config();
    config.tls.cert = Some(dir.join("redis.crt"));
    config.tls.key = Some(dir.join("redis.key"));
    let node = TestNode::start(config).await;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_file(dir.join("ca.crt")).unwrap()).unwrap();
    let tls = rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth();
    let mut connection = Options::new(Encoding::Json);
    connection.tls = Some(Arc::new(tls));
    let url = format!("wss://127.0.0.1:{}/ws", node.addr.port());
    let mut session = Session::start(vec![url], SessionOptions::new(connection));
    session.connected().await.unwrap();
    session.subscribe("news").await.unwrap();
    session.publish("news", r#"{"over":"tls"}"#).await.unwrap();
    let publication = within("the publication", async {
        loop {
            if let Some(SessionEvent::Publication(p)) = session.next_event().await {
                return p;
            }
        }
    })
    .await;
    assert_eq!(&publication.data[..], br#"{"over":"tls"}"#);

    // Nothing listens here: a command waits for a connection that never
    // comes and fails after its timeout, as does waiting to connect.
    let mut options = SessionOptions::new(Options::new(Encoding::Json));
    options.timeout = Duration::from_millis(300);
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let mut nowhere = Session::start(vec![format!("ws://{free}/ws")], options);
    assert!(matches!(nowhere.connected().await, Err(ClientError::Timeout)));
    assert!(matches!(nowhere.publish("news", "1").await, Err(ClientError::Timeout)));
    nowhere.close().await;
}
